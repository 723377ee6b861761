//! Upcasters: how stored events of older versions are read as the current version.
//!
//! Stored events are never rewritten (the hash chain covers them as they were written); an
//! old version is transformed when it is read, before it is deserialised. Each upcaster names
//! the event type and the version it produces and transforms every older payload of that type.
//!
//! # The worked example: `PurchaseOrderCreated` 1.0 → 2.0.0
//!
//! Version 1.0 of `PurchaseOrderCreated` named the supplier `vendor_id` in its header, as the
//! system it replaced did. Version 2.0.0 calls it `supplier_id`, like every other place of the
//! domain. The event enum only knows 2.0.0; [`purchase_order_created_v1_to_v2`] renames the
//! field of a 1.0 payload. See docs/audit.md, "Evolving events".

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster};
use serde_json::Value;

/// The current version of `PurchaseOrderCreated`.
pub const PURCHASE_ORDER_CREATED_VERSION: &str = "2.0.0";

/// Every upcaster of the domain, for the event store to apply on read.
pub fn all() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "PurchaseOrderCreated",
        PURCHASE_ORDER_CREATED_VERSION,
        Box::new(purchase_order_created_v1_to_v2),
    ))]
}

/// `{"Created": {"header": {"vendor_id": …}}}` → `{"Created": {"header": {"supplier_id": …}}}`.
/// A payload without `vendor_id` is returned unchanged.
pub fn purchase_order_created_v1_to_v2(mut payload: Value) -> Value {
    if let Some(header) = payload
        .get_mut("Created")
        .and_then(|created| created.get_mut("header"))
        .and_then(Value::as_object_mut)
    {
        if let Some(vendor) = header.remove("vendor_id") {
            header.insert("supplier_id".into(), vendor);
        }
    }
    payload
}

/// An upcast payload in exactly the form the current version writes: read into the
/// aggregate's event enum and written back, so that fields the old version did not have
/// appear (with their defaults, `null` for the optional ones) as in any new event. What the
/// relay publishes then matches the current version's schema ([`crate::schema`]) whichever
/// version an event was stored in. A payload that does not read, or of an unknown aggregate
/// type, is returned unchanged.
pub fn as_written_now(aggregate_type: &str, payload: Value) -> Value {
    use crate::reference::{Carrier, Customer, Plant, Product, Supplier};
    use crate::reference::{
        CarrierEvent, CustomerEvent, PlantEvent, ProductEvent, ReferenceKind, SupplierEvent,
    };

    fn round_trip<E: serde::Serialize + serde::de::DeserializeOwned>(payload: Value) -> Value {
        match serde_json::from_value::<E>(payload.clone()) {
            Ok(event) => serde_json::to_value(event).unwrap_or(payload),
            Err(_) => payload,
        }
    }
    if aggregate_type == crate::purchase_order::PURCHASE_ORDER_TYPE {
        round_trip::<crate::purchase_order::PurchaseOrderEvent>(payload)
    } else if aggregate_type == crate::sales_order::SALES_ORDER_TYPE {
        round_trip::<crate::sales_order::SalesOrderEvent>(payload)
    } else if aggregate_type == Supplier::TYPE {
        round_trip::<SupplierEvent>(payload)
    } else if aggregate_type == Customer::TYPE {
        round_trip::<CustomerEvent>(payload)
    } else if aggregate_type == Product::TYPE {
        round_trip::<ProductEvent>(payload)
    } else if aggregate_type == Plant::TYPE {
        round_trip::<PlantEvent>(payload)
    } else if aggregate_type == Carrier::TYPE {
        round_trip::<CarrierEvent>(payload)
    } else {
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purchase_order::PurchaseOrderEvent;
    use cqrs_es::persist::SerializedEvent;
    use cqrs_es::DomainEvent;
    use serde_json::json;

    fn v1_created() -> SerializedEvent {
        SerializedEvent::new(
            "0190a000-0000-7000-8000-000000000001".into(),
            1,
            "purchase_order".into(),
            "PurchaseOrderCreated".into(),
            "1.0".into(),
            json!({"Created": {
                "order_number": "PO-000001",
                "header": {"vendor_id": "0190a000-0000-7000-8000-0000000000aa", "order_date": "2026-11-02",
                           "currency": "USD", "weight_unit": "LB", "logistics": "supplier_delivery"},
                "lines": [], "total": "0.00"}}),
            json!({}),
        )
    }

    #[test]
    fn a_version_1_created_event_reads_as_version_2() {
        let stored = v1_created();
        let upcasters = all();
        let upcaster = upcasters
            .iter()
            .find(|u| u.can_upcast(&stored.event_type, &stored.event_version))
            .expect("an upcaster for 1.0");
        let current = upcaster.upcast(stored);
        assert_eq!(current.event_version, PURCHASE_ORDER_CREATED_VERSION);
        let event: PurchaseOrderEvent = serde_json::from_value(current.payload).unwrap();
        let PurchaseOrderEvent::Created { header, .. } = &event else {
            panic!("{event:?}")
        };
        assert_eq!(
            header.supplier_id.to_string(),
            "0190a000-0000-7000-8000-0000000000aa"
        );
        assert_eq!(event.event_version(), PURCHASE_ORDER_CREATED_VERSION);
    }

    #[test]
    fn a_version_1_payload_does_not_deserialise_without_its_upcaster() {
        assert!(serde_json::from_value::<PurchaseOrderEvent>(v1_created().payload).is_err());
    }

    #[test]
    fn an_upcast_payload_is_written_as_the_current_version_writes_it() {
        let upcast = purchase_order_created_v1_to_v2(v1_created().payload);
        let header = &upcast["Created"]["header"];
        assert!(header.get("plant_id").is_none(), "the old payload lacks it");
        let now = as_written_now("purchase_order", upcast.clone());
        assert_eq!(now["Created"]["header"]["plant_id"], Value::Null);
        assert!(now["Created"]["header"]
            .as_object()
            .unwrap()
            .contains_key("plant_id"));
        let event: PurchaseOrderEvent = serde_json::from_value(upcast).unwrap();
        assert_eq!(now, serde_json::to_value(event).unwrap());
        // Unknown types and unreadable payloads pass through.
        assert_eq!(as_written_now("widget", json!({"a": 1})), json!({"a": 1}));
        assert_eq!(
            as_written_now("purchase_order", json!({"Nope": 1})),
            json!({"Nope": 1})
        );
    }

    #[test]
    fn current_events_are_not_upcast() {
        for upcaster in all() {
            assert!(!upcaster.can_upcast("PurchaseOrderCreated", PURCHASE_ORDER_CREATED_VERSION));
            assert!(!upcaster.can_upcast("PurchaseOrderApproved", "1.0"));
        }
    }
}
