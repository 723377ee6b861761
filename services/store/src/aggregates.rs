//! What the services need to know about each aggregate type of the domain, in one place.

use cqrs_es::persist::SerializedEvent;
use oms_domain::purchase_order::{PurchaseOrderEvent, PURCHASE_ORDER_TYPE};
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, ReferenceEvent, ReferenceKind, Supplier,
};
use oms_domain::sales_order::{SalesOrderEvent, SALES_ORDER_TYPE};
use oms_domain::{LotMovement, UniqueKeyChange, UniqueKeys};
use serde::de::DeserializeOwned;

fn keys_of<E: DeserializeOwned + UniqueKeys>(event: &SerializedEvent) -> Vec<UniqueKeyChange> {
    serde_json::from_value::<E>(event.payload.clone())
        .map(|e| e.unique_key_changes())
        .unwrap_or_default()
}

/// The unique keys a serialised event of any domain aggregate claims or releases (for
/// [`crate::repository::TenantEventRepository`]).
pub fn unique_keys_of(event: &SerializedEvent) -> Vec<UniqueKeyChange> {
    match event.aggregate_type.as_str() {
        PURCHASE_ORDER_TYPE => keys_of::<PurchaseOrderEvent>(event),
        SALES_ORDER_TYPE => keys_of::<SalesOrderEvent>(event),
        t if t == Supplier::TYPE => keys_of::<ReferenceEvent<Supplier>>(event),
        t if t == Customer::TYPE => keys_of::<ReferenceEvent<Customer>>(event),
        t if t == Product::TYPE => keys_of::<ReferenceEvent<Product>>(event),
        t if t == Plant::TYPE => keys_of::<ReferenceEvent<Plant>>(event),
        t if t == Carrier::TYPE => keys_of::<ReferenceEvent<Carrier>>(event),
        _ => Vec::new(),
    }
}

/// The lots a serialised event receives or ships (orders only; nothing else moves lots).
pub fn lot_movements_of(event: &SerializedEvent) -> Vec<LotMovement> {
    fn of<E: DeserializeOwned + UniqueKeys>(event: &SerializedEvent) -> Vec<LotMovement> {
        serde_json::from_value::<E>(event.payload.clone())
            .map(|e| e.lot_movements())
            .unwrap_or_default()
    }
    match event.aggregate_type.as_str() {
        PURCHASE_ORDER_TYPE => of::<PurchaseOrderEvent>(event),
        SALES_ORDER_TYPE => of::<SalesOrderEvent>(event),
        _ => Vec::new(),
    }
}
