//! The five kinds of reference data and what distinguishes one from another: each kind's
//! details (also its create body), its PATCH body, and its names in the event store.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::services::ReferenceType;
use crate::values::{
    not_null, patchable, CarrierType, Code, CreditTerms, Edible, Email, FreshOrFrozen, LongText,
    Name, NetOrCatch, PackageType, PaymentTerms, Protein, ShortText, WeightUnit,
};

/// What distinguishes one kind of reference data from another.
pub trait ReferenceKind:
    Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync + 'static
{
    /// Aggregate type in the event store: "supplier", "customer", "product", "plant",
    /// "carrier".
    const TYPE: &'static str;
    /// Prefix of event type names: "Supplier" gives "SupplierRegistered", ...
    const EVENT_PREFIX: &'static str;
    /// Uniqueness scope of the code: "supplier_code", ...
    const CODE_SCOPE: &'static str;
    /// The kind as orders look it up.
    const REFERENCE_TYPE: ReferenceType;
    /// The PATCH body: every field optional (nullable ones double-optional) plus `active`.
    type Patch: DeserializeOwned + Clone + Debug + Send + Sync;

    /// The code, unique per tenant, if this one has one.
    fn code(&self) -> Option<&Code>;
    /// The display name (a product's description).
    fn name(&self) -> &str;
    /// These details with the patch applied.
    fn patched(&self, patch: &Self::Patch) -> Self;
    /// The `active` flag the patch asks for, if any.
    fn patch_active(patch: &Self::Patch) -> Option<bool>;

    /// The fields that hold a person's data (contact name, e-mail, phone, address): the
    /// store encrypts them with the item's own data key, and erasure clears them. Empty for
    /// kinds that name no person.
    fn personal_fields() -> &'static [&'static str] {
        &[]
    }

    /// These details with every personal field cleared: what is left after erasure.
    fn without_personal_data(&self) -> Self {
        let fields = Self::personal_fields();
        if fields.is_empty() {
            return self.clone();
        }
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let serde_json::Value::Object(map) = &mut value {
            for field in fields {
                map.remove(*field);
            }
        }
        serde_json::from_value(value).unwrap_or_else(|_| self.clone())
    }
}

/// The personal fields of suppliers and customers (see [`ReferenceKind::personal_fields`]).
pub const PERSONAL_FIELDS: &[&str] = &["contact_name", "email", "phone", "address"];

/// Reads a code field whether it is required or optional.
trait CodeField {
    /// The code, if any.
    fn as_code(&self) -> Option<&Code>;
}

impl CodeField for Code {
    fn as_code(&self) -> Option<&Code> {
        Some(self)
    }
}

impl CodeField for Option<Code> {
    fn as_code(&self) -> Option<&Code> {
        self.as_ref()
    }
}

/// Declares a kind's details struct, its PATCH struct and its [`ReferenceKind`] impl from
/// one field list, so the five kinds cannot drift apart.
macro_rules! reference_kind {
    (
        $(#[$meta:meta])*
        $kind:ident, $patch:ident {
            type: $type:literal, prefix: $prefix:literal, scope: $scope:literal,
            reference: $reference:ident, name: $name_field:ident, personal: $personal:expr,
        }
        required { $($(#[$rmeta:meta])* $rfield:ident: $rtype:ty,)* }
        optional { $($(#[$ometa:meta])* $ofield:ident: $otype:ty,)* }
    ) => {
        patchable! {
            $(#[$meta])*
            #[serde(deny_unknown_fields)]
            $kind;
            #[doc = concat!("PATCH body for a ", $type, ": absent fields stay as they are, `null` clears an optional field, `active` deactivates or reactivates.")]
            $patch;
            required { $($(#[$rmeta])* $rfield: $rtype,)* }
            optional { $($(#[$ometa])* $ofield: $otype,)* }
            extra {
                /// `false` deactivates, `true` reactivates; absent leaves it.
                #[serde(default, with = "not_null", skip_serializing_if = "Option::is_none")]
                active: Option<bool>,
            }
        }

        impl ReferenceKind for $kind {
            const TYPE: &'static str = $type;
            const EVENT_PREFIX: &'static str = $prefix;
            const CODE_SCOPE: &'static str = $scope;
            const REFERENCE_TYPE: ReferenceType = ReferenceType::$reference;
            type Patch = $patch;

            fn code(&self) -> Option<&Code> {
                self.code.as_code()
            }

            fn name(&self) -> &str {
                self.$name_field.as_str()
            }

            fn patched(&self, patch: &$patch) -> Self {
                $kind::patched(self, patch)
            }

            fn patch_active(patch: &$patch) -> Option<bool> {
                patch.active
            }

            fn personal_fields() -> &'static [&'static str] {
                $personal
            }
        }
    };
}

reference_kind! {
    /// A company the business buys from.
    Supplier, SupplierPatch {
        type: "supplier", prefix: "Supplier", scope: "supplier_code",
        reference: Supplier, name: name, personal: PERSONAL_FIELDS,
    }
    required {
        /// The supplier's name.
        name: Name,
    }
    optional {
        /// A short code, unique per tenant.
        code: Code,
        /// Who to talk to.
        contact_name: Name,
        /// Contact e-mail.
        email: Email,
        /// Contact phone.
        phone: ShortText,
        /// Postal address.
        address: LongText,
        /// How the supplier is usually paid.
        payment_terms: PaymentTerms,
        /// When the supplier is usually paid.
        credit_terms: CreditTerms,
    }
}

reference_kind! {
    /// A company the business sells to.
    Customer, CustomerPatch {
        type: "customer", prefix: "Customer", scope: "customer_code",
        reference: Customer, name: name, personal: PERSONAL_FIELDS,
    }
    required {
        /// The customer's name.
        name: Name,
    }
    optional {
        /// A short code, unique per tenant.
        code: Code,
        /// Who to talk to.
        contact_name: Name,
        /// Contact e-mail.
        email: Email,
        /// Contact phone.
        phone: ShortText,
        /// Postal address.
        address: LongText,
        /// How the customer usually pays.
        payment_terms: PaymentTerms,
        /// When the customer usually pays.
        credit_terms: CreditTerms,
        /// The customer's trade (retail, food service, processing...).
        industry: ShortText,
    }
}

reference_kind! {
    /// Something the business trades, such as 80/20 beef trim in combo bins.
    Product, ProductPatch {
        type: "product", prefix: "Product", scope: "product_code",
        reference: Product, name: description, personal: &[],
    }
    required {
        /// A short code, unique per tenant.
        code: Code,
        /// What it is; also its display name.
        description: Name,
        /// The animal it comes from.
        protein: Protein,
        /// The unit it is usually traded in (defaults to LB).
        #[serde(default)]
        uom: WeightUnit,
    }
    optional {
        /// Fresh or frozen.
        fresh_or_frozen: FreshOrFrozen,
        /// How it is packed.
        package_type: PackageType,
        /// Net or catch weight.
        net_or_catch: NetOrCatch,
        /// Edible or not.
        edible: Edible,
    }
}

reference_kind! {
    /// A packing plant product is picked up from or delivered to.
    Plant, PlantPatch {
        type: "plant", prefix: "Plant", scope: "plant_code",
        reference: Plant, name: name, personal: &[],
    }
    required {
        /// The plant's name.
        name: Name,
        /// A short code, unique per tenant.
        code: Code,
    }
    optional {
        /// The USDA establishment number.
        establishment_number: ShortText,
        /// Postal address.
        address: LongText,
        /// What kind of plant (slaughter, processing, cold storage...).
        plant_type: ShortText,
    }
}

reference_kind! {
    /// A company that moves freight.
    Carrier, CarrierPatch {
        type: "carrier", prefix: "Carrier", scope: "carrier_code",
        reference: Carrier, name: name, personal: &[],
    }
    required {
        /// The carrier's name.
        name: Name,
        /// A short code, unique per tenant.
        code: Code,
        /// How it moves freight.
        carrier_type: CarrierType,
    }
    optional {
        /// Motor carrier (MC) number.
        mc_number: ShortText,
        /// US DOT number.
        dot_number: ShortText,
    }
}
