//! Shared fixtures for the domain's unit tests: known ids, a fixed "today", and services
//! whose lookups know those ids.

use std::sync::Arc;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::order::ClaimStatus;
use crate::services::{
    DomainServices, FixedClock, InMemoryLookups, LotSummary, ReferenceType, SalesClaimSummary,
};
use crate::values::{LotNumber, Money, UnitPrice, Weight, WeightUnit};

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
/// Another purchase order, which sources no line of the sales claims below but one.
pub(crate) const OTHER_PO: Uuid = Uuid::from_u128(0xa002);
/// An open sales claim on a line sourced from [`SOURCE_PO`].
pub(crate) const SALES_CLAIM: Uuid = Uuid::from_u128(0x5c01);
/// A rejected sales claim on a line sourced from [`SOURCE_PO`].
pub(crate) const REJECTED_SALES_CLAIM: Uuid = Uuid::from_u128(0x5c02);
/// An open sales claim on a line sourced from [`OTHER_PO`] only.
pub(crate) const OTHER_SALES_CLAIM: Uuid = Uuid::from_u128(0x5c03);
/// The sales order the sales claims are on.
pub(crate) const CLAIMED_SO: Uuid = Uuid::from_u128(0x50c1);
/// Lot A123 of [`SUPPLIER`], 30000 received on [`SOURCE_PO`].
pub(crate) const LOT_A: Uuid = Uuid::from_u128(0x107a);
/// Lot B456 of [`SUPPLIER`], 10000 received on [`SOURCE_PO`].
pub(crate) const LOT_B: Uuid = Uuid::from_u128(0x107b);

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
        .with_purchase_order(OTHER_PO)
        .with_sales_claim(SALES_CLAIM, sales_claim(ClaimStatus::Open, SOURCE_PO))
        .with_sales_claim(
            REJECTED_SALES_CLAIM,
            sales_claim(ClaimStatus::Rejected, SOURCE_PO),
        )
        .with_sales_claim(OTHER_SALES_CLAIM, sales_claim(ClaimStatus::Open, OTHER_PO))
        .with_lot(LOT_A, lot("A123", "30000"))
        .with_lot(LOT_B, lot("B456", "10000"))
}

fn sales_claim(status: ClaimStatus, source: Uuid) -> SalesClaimSummary {
    SalesClaimSummary {
        sales_order_id: CLAIMED_SO,
        status,
        source_purchase_order_ids: vec![source],
    }
}

fn lot(number: &str, received: &str) -> LotSummary {
    LotSummary {
        purchase_order_id: SOURCE_PO,
        supplier_id: SUPPLIER,
        lot_number: LotNumber::parse(number).unwrap(),
        received_weight: weight(received),
        weight_unit: WeightUnit::Lb,
    }
}

pub(crate) fn services_with(lookups: InMemoryLookups) -> DomainServices {
    DomainServices::new(Arc::new(lookups), Arc::new(FixedClock(date(TODAY))))
}

pub(crate) fn services() -> DomainServices {
    services_with(lookups())
}
