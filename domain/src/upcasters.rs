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
    fn current_events_are_not_upcast() {
        for upcaster in all() {
            assert!(!upcaster.can_upcast("PurchaseOrderCreated", PURCHASE_ORDER_CREATED_VERSION));
            assert!(!upcaster.can_upcast("PurchaseOrderApproved", "1.0"));
        }
    }
}
