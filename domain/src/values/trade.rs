//! The trade's choice lists for products and freight: the words buyers, plants and carriers
//! use.

use super::choice::choice;

choice!(
    /// The unit every weight and price on an order is in.
    #[derive(Default)]
    WeightUnit {
        /// Pounds (the default).
        #[default]
        Lb => "LB",
        /// Kilograms.
        Kg => "KG",
    }
);

choice!(
    /// The animal a product comes from.
    Protein {
        /// Beef.
        Beef => "beef",
        /// Pork.
        Pork => "pork",
        /// Chicken.
        Chicken => "chicken",
        /// Turkey.
        Turkey => "turkey",
        /// Lamb.
        Lamb => "lamb",
        /// Fish.
        Fish => "fish",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// Whether a product ships fresh or frozen.
    FreshOrFrozen {
        /// Fresh (chilled).
        Fresh => "fresh",
        /// Frozen.
        Frozen => "frozen",
    }
);

choice!(
    /// How a product is packed.
    PackageType {
        /// Wax-lined boxes.
        BoxedWaxLined => "boxed_wax_lined",
        /// Boxes packed with CO2.
        BoxedCo2 => "boxed_co2",
        /// Combo bins.
        ComboBins => "combo_bins",
        /// Totes.
        Totes => "totes",
        /// Bags.
        Bags => "bags",
        /// Bulk.
        Bulk => "bulk",
        /// Poly, multiple pieces.
        PolyMultiple => "poly_multiple",
        /// Unwrapped.
        Nude => "nude",
    }
);

choice!(
    /// Whether a product is sold at a fixed (net) weight or at what the scale says (catch).
    NetOrCatch {
        /// Fixed weight.
        Net => "net",
        /// Catch weight: invoiced at the weighed amount.
        Catch => "catch",
    }
);

choice!(
    /// Whether a product is fit for human consumption.
    Edible {
        /// Edible.
        Edible => "edible",
        /// Inedible.
        Inedible => "inedible",
        /// Both edible and inedible.
        EdibleAndInedible => "edible_and_inedible",
    }
);

choice!(
    /// Who moves the load from the plant.
    #[derive(Default)]
    Logistics {
        /// The supplier delivers (the default).
        #[default]
        SupplierDelivery => "supplier_delivery",
        /// The customer picks up.
        CustomerPickup => "customer_pickup",
        /// We pick up.
        WePickup => "we_pickup",
    }
);

choice!(
    /// How a carrier moves freight.
    CarrierType {
        /// Truck.
        Truck => "truck",
        /// Rail.
        Rail => "rail",
        /// Air.
        Air => "air",
        /// Sea.
        Sea => "sea",
        /// Anything else.
        Other => "other",
    }
);
