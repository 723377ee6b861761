//! Reference data: suppliers, customers, products, plants and carriers.
//!
//! The five kinds share one aggregate, [`Reference<K>`], and differ only in their details
//! type `K` (a [`ReferenceKind`]). Each kind's details struct is also its create body and
//! has a PATCH body (`SupplierPatch`, ...) where every field is optional. Changes are
//! events like everything else, so reference data has an audit trail too.

use std::fmt::Debug;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::changes::{diff, Changes};
use crate::error::DomainError;
use crate::services::{DomainServices, ReferenceType};
use crate::values::{
    not_null, patchable, CarrierType, Code, CreditTerms, Edible, Email, FreshOrFrozen, LongText,
    Name, NetOrCatch, PackageType, PaymentTerms, Protein, ShortText, WeightUnit,
};
use crate::{UniqueKeyChange, UniqueKeys};

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
}

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
            reference: $reference:ident, name: $name_field:ident,
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
        }
    };
}

reference_kind! {
    /// A company the business buys from.
    Supplier, SupplierPatch {
        type: "supplier", prefix: "Supplier", scope: "supplier_code",
        reference: Supplier, name: name,
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
        reference: Customer, name: name,
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
        reference: Product, name: description,
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
        reference: Plant, name: name,
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
        reference: Carrier, name: name,
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

/// One piece of reference data of kind `K`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(serialize = "K: Serialize", deserialize = "K: DeserializeOwned"))]
pub struct Reference<K> {
    /// The current details; `None` until registered.
    pub details: Option<K>,
    /// Whether it may be put on new orders and lines.
    pub active: bool,
}

impl<K> Default for Reference<K> {
    fn default() -> Self {
        Self {
            details: None,
            active: false,
        }
    }
}

impl<K> Reference<K> {
    /// Whether it has been registered.
    pub fn exists(&self) -> bool {
        self.details.is_some()
    }
}

/// What can be asked of reference data.
#[derive(Clone, Debug)]
pub enum ReferenceCommand<K: ReferenceKind> {
    /// Register new reference data (active).
    Register(K),
    /// Change details and/or the active flag.
    Update(K::Patch),
}

/// What happened to reference data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(serialize = "K: Serialize", deserialize = "K: DeserializeOwned"))]
pub enum ReferenceEvent<K> {
    /// Registered, active.
    Registered {
        /// The details as registered.
        details: K,
    },
    /// Details changed.
    Updated {
        /// The fields that changed, before and after (a code change is read from here).
        changes: Changes,
        /// All details after the change.
        details: K,
    },
    /// No longer usable on new orders and lines.
    Deactivated,
    /// Usable again.
    Reactivated,
}

impl<K: ReferenceKind> DomainEvent for ReferenceEvent<K> {
    fn event_type(&self) -> String {
        let name = match self {
            Self::Registered { .. } => "Registered",
            Self::Updated { .. } => "Updated",
            Self::Deactivated => "Deactivated",
            Self::Reactivated => "Reactivated",
        };
        format!("{}{}", K::EVENT_PREFIX, name)
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

impl<K: ReferenceKind> UniqueKeys for ReferenceEvent<K> {
    fn unique_key_changes(&self) -> Vec<UniqueKeyChange> {
        match self {
            Self::Registered { details } => details
                .code()
                .map(|code| UniqueKeyChange::Claim {
                    scope: K::CODE_SCOPE,
                    key: code.as_str().to_owned(),
                })
                .into_iter()
                .collect(),
            Self::Updated { changes, .. } => {
                let Some(change) = changes.get("code") else {
                    return Vec::new();
                };
                let mut keys = Vec::new();
                if let Some(old) = change.from.as_str() {
                    keys.push(UniqueKeyChange::Release {
                        scope: K::CODE_SCOPE,
                        key: old.to_owned(),
                    });
                }
                if let Some(new) = change.to.as_str() {
                    keys.push(UniqueKeyChange::Claim {
                        scope: K::CODE_SCOPE,
                        key: new.to_owned(),
                    });
                }
                keys
            }
            Self::Deactivated | Self::Reactivated => Vec::new(),
        }
    }
}

impl<K: ReferenceKind> Aggregate for Reference<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = ReferenceCommand<K>;
    type Event = ReferenceEvent<K>;
    type Error = DomainError;
    type Services = DomainServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ReferenceCommand::Register(details) => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists);
                }
                sink.write(ReferenceEvent::Registered { details }, self)
                    .await;
            }
            ReferenceCommand::Update(patch) => {
                let current = self.details.as_ref().ok_or(DomainError::NotFound)?;
                let details = current.patched(&patch);
                let changes = diff(current, &details);
                let activation = match K::patch_active(&patch) {
                    Some(true) if !self.active => Some(ReferenceEvent::Reactivated),
                    Some(false) if self.active => Some(ReferenceEvent::Deactivated),
                    _ => None,
                };
                if !changes.is_empty() {
                    sink.write(ReferenceEvent::Updated { changes, details }, self)
                        .await;
                }
                if let Some(event) = activation {
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReferenceEvent::Registered { details } => {
                self.details = Some(details);
                self.active = true;
            }
            ReferenceEvent::Updated { details, .. } => self.details = Some(details),
            ReferenceEvent::Deactivated => self.active = false,
            ReferenceEvent::Reactivated => self.active = true,
        }
    }
}

/// A supplier aggregate.
pub type SupplierAggregate = Reference<Supplier>;
/// A customer aggregate.
pub type CustomerAggregate = Reference<Customer>;
/// A product aggregate.
pub type ProductAggregate = Reference<Product>;
/// A plant aggregate.
pub type PlantAggregate = Reference<Plant>;
/// A carrier aggregate.
pub type CarrierAggregate = Reference<Carrier>;

/// Events of a supplier.
pub type SupplierEvent = ReferenceEvent<Supplier>;
/// Events of a customer.
pub type CustomerEvent = ReferenceEvent<Customer>;
/// Events of a product.
pub type ProductEvent = ReferenceEvent<Product>;
/// Events of a plant.
pub type PlantEvent = ReferenceEvent<Plant>;
/// Events of a carrier.
pub type CarrierEvent = ReferenceEvent<Carrier>;

/// Commands to a supplier.
pub type SupplierCommand = ReferenceCommand<Supplier>;
/// Commands to a customer.
pub type CustomerCommand = ReferenceCommand<Customer>;
/// Commands to a product.
pub type ProductCommand = ReferenceCommand<Product>;
/// Commands to a plant.
pub type PlantCommand = ReferenceCommand<Plant>;
/// Commands to a carrier.
pub type CarrierCommand = ReferenceCommand<Carrier>;

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;
    use crate::changes::FieldChange;
    use crate::fixtures::services;

    fn code(text: &str) -> Code {
        Code::parse(text).unwrap()
    }

    fn beef_trim() -> Product {
        serde_json::from_value(json!({
            "code": "BF-8020",
            "description": "Beef trim 80/20",
            "protein": "beef",
            "package_type": "combo_bins",
        }))
        .unwrap()
    }

    fn acme() -> Supplier {
        Supplier {
            name: Name::parse("Acme Packing").unwrap(),
            code: Some(code("ACME")),
            contact_name: None,
            email: Some(Email::parse("sales@acme.example").unwrap()),
            phone: None,
            address: None,
            payment_terms: Some(PaymentTerms::Wire),
            credit_terms: None,
        }
    }

    fn supplier_patch(value: serde_json::Value) -> SupplierPatch {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn register_records_the_details_and_claims_the_code() {
        TestFramework::<SupplierAggregate>::with(services())
            .given_no_previous_events()
            .when_async(ReferenceCommand::Register(acme()))
            .await
            .then_expect_events(vec![ReferenceEvent::Registered { details: acme() }]);
        let event = SupplierEvent::Registered { details: acme() };
        assert_eq!(event.event_type(), "SupplierRegistered");
        assert_eq!(event.event_version(), "1.0");
        assert_eq!(
            event.unique_key_changes(),
            vec![UniqueKeyChange::Claim {
                scope: "supplier_code",
                key: "ACME".to_owned(),
            }]
        );
    }

    #[tokio::test]
    async fn register_without_a_code_claims_nothing() {
        let mut details = acme();
        details.code = None;
        assert!(SupplierEvent::Registered { details }
            .unique_key_changes()
            .is_empty());
    }

    #[tokio::test]
    async fn registered_reference_data_is_active() {
        let mut supplier = SupplierAggregate::default();
        supplier.apply(ReferenceEvent::Registered { details: acme() });
        assert!(supplier.active);
        assert!(supplier.exists());
        assert_eq!(supplier.details.as_ref().unwrap().name(), "Acme Packing");
    }

    #[tokio::test]
    async fn register_twice_is_already_exists() {
        TestFramework::<ProductAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered {
                details: beef_trim(),
            }])
            .when_async(ReferenceCommand::Register(beef_trim()))
            .await
            .then_expect_error(DomainError::AlreadyExists);
    }

    #[tokio::test]
    async fn update_of_a_missing_reference_is_not_found() {
        TestFramework::<CarrierAggregate>::with(services())
            .given_no_previous_events()
            .when_async(ReferenceCommand::Update(CarrierPatch::default()))
            .await
            .then_expect_error(DomainError::NotFound);
    }

    #[tokio::test]
    async fn update_records_only_the_fields_that_changed() {
        let patch =
            supplier_patch(json!({"name": "Acme Meats", "email": null, "phone": "555-0100"}));
        let mut details = acme();
        details.name = Name::parse("Acme Meats").unwrap();
        details.email = None;
        details.phone = Some(ShortText::parse("555-0100").unwrap());
        let changes = diff(&acme(), &details);
        assert_eq!(
            changes.keys().collect::<Vec<_>>(),
            ["email", "name", "phone"]
        );
        assert_eq!(
            changes["email"],
            FieldChange {
                from: json!("sales@acme.example"),
                to: serde_json::Value::Null,
            }
        );
        let updated = SupplierEvent::Updated {
            changes: changes.clone(),
            details: details.clone(),
        };
        assert_eq!(updated.event_type(), "SupplierUpdated");
        assert!(updated.unique_key_changes().is_empty());
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered { details: acme() }])
            .when_async(ReferenceCommand::Update(patch))
            .await
            .then_expect_events(vec![ReferenceEvent::Updated { changes, details }]);
    }

    #[tokio::test]
    async fn update_that_changes_nothing_writes_nothing() {
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered { details: acme() }])
            .when_async(ReferenceCommand::Update(supplier_patch(
                json!({"name": "Acme Packing", "code": "ACME", "active": true}),
            )))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_code_change_releases_the_old_code_and_claims_the_new() {
        let mut details = beef_trim();
        details.code = code("BF-8020-CB");
        let changes = diff(&beef_trim(), &details);
        TestFramework::<ProductAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered {
                details: beef_trim(),
            }])
            .when_async(ReferenceCommand::Update(ProductPatch {
                code: Some(code("BF-8020-CB")),
                ..Default::default()
            }))
            .await
            .then_expect_events(vec![ReferenceEvent::Updated {
                changes: changes.clone(),
                details: details.clone(),
            }]);
        assert_eq!(
            ProductEvent::Updated { changes, details }.unique_key_changes(),
            vec![
                UniqueKeyChange::Release {
                    scope: "product_code",
                    key: "BF-8020".to_owned(),
                },
                UniqueKeyChange::Claim {
                    scope: "product_code",
                    key: "BF-8020-CB".to_owned(),
                },
            ]
        );
    }

    #[tokio::test]
    async fn clearing_an_optional_code_only_releases_it() {
        let mut details = acme();
        details.code = None;
        let event = SupplierEvent::Updated {
            changes: diff(&acme(), &details),
            details,
        };
        assert_eq!(
            event.unique_key_changes(),
            vec![UniqueKeyChange::Release {
                scope: "supplier_code",
                key: "ACME".to_owned(),
            }]
        );
    }

    #[tokio::test]
    async fn deactivate_and_reactivate_follow_the_active_flag() {
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered { details: acme() }])
            .when_async(ReferenceCommand::Update(supplier_patch(
                json!({"active": false}),
            )))
            .await
            .then_expect_events(vec![ReferenceEvent::Deactivated]);
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![
                ReferenceEvent::Registered { details: acme() },
                ReferenceEvent::Deactivated,
            ])
            .when_async(ReferenceCommand::Update(supplier_patch(
                json!({"active": true}),
            )))
            .await
            .then_expect_events(vec![ReferenceEvent::Reactivated]);
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![
                ReferenceEvent::Registered { details: acme() },
                ReferenceEvent::Deactivated,
            ])
            .when_async(ReferenceCommand::Update(supplier_patch(
                json!({"active": false}),
            )))
            .await
            .then_expect_events(vec![]);
        assert_eq!(
            SupplierEvent::Deactivated.event_type(),
            "SupplierDeactivated"
        );
        assert_eq!(PlantEvent::Reactivated.event_type(), "PlantReactivated");
    }

    #[tokio::test]
    async fn an_update_with_details_and_deactivation_writes_both_in_order() {
        let mut details = acme();
        details.credit_terms = Some(CreditTerms::Net30);
        TestFramework::<SupplierAggregate>::with(services())
            .given(vec![ReferenceEvent::Registered { details: acme() }])
            .when_async(ReferenceCommand::Update(supplier_patch(
                json!({"credit_terms": "net_30", "active": false}),
            )))
            .await
            .then_expect_events(vec![
                ReferenceEvent::Updated {
                    changes: diff(&acme(), &details),
                    details,
                },
                ReferenceEvent::Deactivated,
            ]);
    }

    #[test]
    fn create_and_patch_bodies_refuse_unknown_fields_and_bad_values() {
        assert!(serde_json::from_value::<Supplier>(json!({"name": "A", "colour": "red"})).is_err());
        assert!(serde_json::from_value::<Supplier>(json!({"name": "  "})).is_err());
        assert!(serde_json::from_value::<Supplier>(json!({"name": "A", "email": "nope"})).is_err());
        assert!(serde_json::from_value::<SupplierPatch>(json!({"nme": "A"})).is_err());
        assert!(serde_json::from_value::<SupplierPatch>(json!({"name": null})).is_err());
        assert!(serde_json::from_value::<CarrierPatch>(json!({"carrier_type": "ship"})).is_err());
        let carrier: Carrier = serde_json::from_value(
            json!({"name": "Fast Freight", "code": "FF", "carrier_type": "truck"}),
        )
        .unwrap();
        assert_eq!(carrier.mc_number, None);
        assert_eq!(beef_trim().uom, WeightUnit::Lb);
        assert_eq!(beef_trim().name(), "Beef trim 80/20");
    }

    #[test]
    fn patch_fields_distinguish_absent_null_and_value() {
        let patch = supplier_patch(json!({"phone": null, "address": "1 Dock Rd"}));
        assert_eq!(patch.phone, Some(None));
        assert_eq!(
            patch.address,
            Some(Some(LongText::parse("1 Dock Rd").unwrap()))
        );
        assert_eq!(patch.email, None);
        assert_eq!(patch.name, None);
        let round_trip: SupplierPatch =
            serde_json::from_value(serde_json::to_value(&patch).unwrap()).unwrap();
        assert_eq!(round_trip, patch);
    }

    #[test]
    fn kinds_name_their_aggregate_type_and_scope() {
        assert_eq!(<SupplierAggregate as Aggregate>::TYPE, "supplier");
        assert_eq!(<CustomerAggregate as Aggregate>::TYPE, "customer");
        assert_eq!(<ProductAggregate as Aggregate>::TYPE, "product");
        assert_eq!(<PlantAggregate as Aggregate>::TYPE, "plant");
        assert_eq!(<CarrierAggregate as Aggregate>::TYPE, "carrier");
        assert_eq!(Customer::CODE_SCOPE, "customer_code");
        assert_eq!(Plant::REFERENCE_TYPE.aggregate_type(), Plant::TYPE);
        assert_eq!(crate::scope_field(Carrier::CODE_SCOPE), "code");
        assert_eq!(crate::scope_field("sales_order_number"), "order_number");
        assert_eq!(crate::scope_field("invoice_number"), "invoice_number");
    }
}
