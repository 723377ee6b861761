use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;

use super::*;
use crate::changes::{diff, FieldChange};
use crate::error::DomainError;
use crate::fixtures::services;
use crate::values::{
    Code, CreditTerms, Email, LongText, Name, PaymentTerms, ShortText, WeightUnit,
};
use crate::{UniqueKeyChange, UniqueKeys};

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
    let patch = supplier_patch(json!({"name": "Acme Meats", "email": null, "phone": "555-0100"}));
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

#[tokio::test]
async fn erasure_clears_exactly_the_personal_fields_and_only_once() {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut supplier = acme();
    supplier.contact_name = Some(Name::parse("Ann Smith").unwrap());
    supplier.phone = Some(ShortText::parse("555-0100").unwrap());
    supplier.address = Some(LongText::parse("1 Dock Rd").unwrap());
    let registered = ReferenceEvent::Registered {
        details: supplier.clone(),
    };
    TestFramework::<SupplierAggregate>::with(services())
        .given(vec![registered.clone()])
        .when_async(ReferenceCommand::ErasePersonalData { at })
        .await
        .then_expect_events(vec![ReferenceEvent::PersonalDataErased { at }]);
    let mut state = SupplierAggregate::default();
    state.apply(registered.clone());
    state.apply(ReferenceEvent::PersonalDataErased { at });
    let left = state.details.clone().unwrap();
    assert_eq!(
        (left.contact_name, left.email, left.phone, left.address),
        (None, None, None, None)
    );
    assert_eq!(
        left.name, supplier.name,
        "the company's name is not personal"
    );
    assert_eq!(left.payment_terms, supplier.payment_terms);
    assert_eq!(state.personal_data_erased_at, Some(at));
    // Erased once: again, or setting personal data again, is refused; other changes are not.
    let erased = vec![registered, ReferenceEvent::PersonalDataErased { at }];
    TestFramework::<SupplierAggregate>::with(services())
        .given(erased.clone())
        .when_async(ReferenceCommand::ErasePersonalData { at })
        .await
        .then_expect_error_message("cannot erase personal data: it was already erased");
    TestFramework::<SupplierAggregate>::with(services())
        .given(erased.clone())
        .when_async(ReferenceCommand::Update(supplier_patch(
            json!({"email": "new@acme.example"}),
        )))
        .await
        .then_expect_error_message("cannot set personal data: its personal data was erased");
    TestFramework::<SupplierAggregate>::with(services())
        .given(erased)
        .when_async(ReferenceCommand::Update(supplier_patch(
            json!({"code": "ACM2"}),
        )))
        .await
        .then_expect_events(vec![ReferenceEvent::Updated {
            changes: [(
                "code".to_string(),
                FieldChange {
                    from: json!("ACME"),
                    to: json!("ACM2"),
                },
            )]
            .into_iter()
            .collect(),
            details: left_with_code(&state, "ACM2"),
        }]);
    // Kinds without personal data have nothing to erase.
    TestFramework::<ProductAggregate>::with(services())
        .given(vec![ReferenceEvent::Registered {
            details: beef_trim(),
        }])
        .when_async(ReferenceCommand::ErasePersonalData { at })
        .await
        .then_expect_error_message("cannot erase personal data: a product holds no personal data");
    assert_eq!(Product::personal_fields(), &[] as &[&str]);
    assert_eq!(
        Customer::personal_fields(),
        &["contact_name", "email", "phone", "address"]
    );
}

fn left_with_code(state: &SupplierAggregate, code_text: &str) -> Supplier {
    let mut details = state.details.clone().unwrap();
    details.code = Some(code(code_text));
    details
}
