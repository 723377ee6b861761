//! Shared fixtures for the domain's unit tests: known ids, a fixed "today", and services
//! whose lookups know those ids.

use std::sync::Arc;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::services::{DomainServices, FixedClock, InMemoryLookups, ReferenceType};
use crate::values::{Money, UnitPrice, Weight};

pub(crate) const SUPPLIER: Uuid = Uuid::from_u128(0x5001);
pub(crate) const INACTIVE_SUPPLIER: Uuid = Uuid::from_u128(0x5002);
pub(crate) const CUSTOMER: Uuid = Uuid::from_u128(0xc001);
pub(crate) const INACTIVE_CUSTOMER: Uuid = Uuid::from_u128(0xc002);
pub(crate) const BEEF: Uuid = Uuid::from_u128(0xb001);
pub(crate) const PORK: Uuid = Uuid::from_u128(0xb002);
pub(crate) const INACTIVE_PRODUCT: Uuid = Uuid::from_u128(0xb003);
pub(crate) const PLANT: Uuid = Uuid::from_u128(0x9001);
pub(crate) const CARRIER: Uuid = Uuid::from_u128(0xca01);
pub(crate) const INACTIVE_CARRIER: Uuid = Uuid::from_u128(0xca02);
pub(crate) const SOURCE_PO: Uuid = Uuid::from_u128(0xa001);
pub(crate) const UNKNOWN: Uuid = Uuid::from_u128(0xdead);
pub(crate) const LINE_1: Uuid = Uuid::from_u128(0x1001);
pub(crate) const LINE_2: Uuid = Uuid::from_u128(0x1002);
pub(crate) const LINE_3: Uuid = Uuid::from_u128(0x1003);

/// The date the fixed clock says it is.
pub(crate) const TODAY: &str = "2024-06-15";

pub(crate) fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

pub(crate) fn weight(text: &str) -> Weight {
    Weight::parse(text).unwrap()
}

pub(crate) fn price(text: &str) -> UnitPrice {
    UnitPrice::parse(text).unwrap()
}

pub(crate) fn money(text: &str) -> Money {
    Money::parse(text).unwrap()
}

pub(crate) fn lookups() -> InMemoryLookups {
    use ReferenceType::*;
    InMemoryLookups::new()
        .with_reference(Supplier, SUPPLIER, true)
        .with_reference(Supplier, INACTIVE_SUPPLIER, false)
        .with_reference(Customer, CUSTOMER, true)
        .with_reference(Customer, INACTIVE_CUSTOMER, false)
        .with_reference(Product, BEEF, true)
        .with_reference(Product, PORK, true)
        .with_reference(Product, INACTIVE_PRODUCT, false)
        .with_reference(Plant, PLANT, true)
        .with_reference(Carrier, CARRIER, true)
        .with_reference(Carrier, INACTIVE_CARRIER, false)
        .with_purchase_order(SOURCE_PO)
}

pub(crate) fn services_with(lookups: InMemoryLookups) -> DomainServices {
    DomainServices::new(Arc::new(lookups), Arc::new(FixedClock(date(TODAY))))
}

pub(crate) fn services() -> DomainServices {
    services_with(lookups())
}
