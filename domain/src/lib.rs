//! Orders domain: aggregates, commands, events and value types for an event-sourced,
//! multi-tenant order-management service for meat traders.
//!
//! The crate is pure: no I/O, nothing of HTTP, SQL or NATS. It decides; the crates under
//! `services/` store, relay, project and serve. Every business rule lives in an aggregate's
//! `handle`, which validates everything first and only then writes events; `apply` only
//! assigns. Events are past tense and carry the derived facts (line amounts, totals, amount
//! due, payment status) so that read models stay simple.
//!
//! # Layout
//!
//! - [`values`]: value types that cannot hold invalid values (weights, prices, money,
//!   currency, names, codes, choice lists) and the PATCH serde helpers.
//! - [`changes`]: before/after maps carried by "changed" events, for history.
//! - [`error`]: [`error::DomainError`], the one error all aggregates return.
//! - [`services`]: what `handle` may consult (lookups of other aggregates, today's date).
//! - [`reference`](mod@reference): one generic aggregate for suppliers, customers, products, plants and
//!   carriers.
//! - [`order`]: pieces shared by purchase and sales orders (payments, notes, claims,
//!   refunds, the outstanding formula).
//! - [`purchase_order`]: the purchase order aggregate (buying from suppliers).
//! - [`sales_order`]: the sales order aggregate (selling to customers).
//! - [`upcasters`]: how stored events of older versions are read as the current version.
//! - [`schema`]: the JSON Schema of every event type, generated from the event enums, for the
//!   contract published to integrators.
//!
//! Uniqueness that spans aggregates (order numbers, invoice numbers, codes) is declared by
//! each event through [`UniqueKeys`]; the event store enforces it in the append transaction.
//! The numbers the service assigns come from a [`NumberSeries`].

pub mod changes;
pub mod error;
pub mod order;
pub mod purchase_order;
pub mod reference;
pub mod sales_order;
pub mod schema;
pub mod services;
pub mod upcasters;
pub mod values;

#[cfg(test)]
mod fixtures;

pub use values::NumberSeries;

/// The schema generator the event types derive `JsonSchema` with, for crates that describe
/// their own types beside the events (the store's envelope) with the same version of it.
pub use schemars;

use reference::{Carrier, Customer, Plant, Product, ReferenceKind, Supplier};

/// A per-tenant uniqueness key that an event takes or gives up (order numbers, invoice
/// and credit note numbers, reference codes, lots, sales claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UniqueKeyChange {
    /// The event takes the key; the append fails if another aggregate holds it.
    Claim {
        /// The kind of key, such as "purchase_order_number" or "product_code".
        scope: &'static str,
        /// The key itself.
        key: String,
    },
    /// The event gives the key up.
    Release {
        /// The kind of key.
        scope: &'static str,
        /// The key itself.
        key: String,
    },
}

/// Implemented by every event enum; the event store writes these in the append transaction.
pub trait UniqueKeys {
    /// The keys this event claims or releases, in order (releases before claims).
    fn unique_key_changes(&self) -> Vec<UniqueKeyChange>;

    /// The lots this event receives or ships. The store keeps each lot's received and shipped
    /// weight and refuses, in the append transaction, an event that would ship more of a lot
    /// than was received: only there are two shipments racing for the same lot serialised.
    fn lot_movements(&self) -> Vec<LotMovement> {
        Vec::new()
    }
}

/// Weight of one lot received or shipped by an event, in the unit of the purchase order that
/// received the lot (a shipment's unit must be the same; the sales order checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotMovement {
    /// The lot, by the id its receipt gave it.
    pub lot_id: uuid::Uuid,
    /// Weight received of it (zero on a shipment).
    pub received: rust_decimal::Decimal,
    /// Weight shipped of it (zero on a receipt).
    pub shipped: rust_decimal::Decimal,
}

/// Every uniqueness scope an event may name: the only kinds of key the store's unique keys
/// hold.
pub const UNIQUE_SCOPES: &[&str] = &[
    NumberSeries::PURCHASE_ORDER.scope,
    NumberSeries::SALES_ORDER.scope,
    NumberSeries::INVOICE.scope,
    NumberSeries::CREDIT_NOTE.scope,
    sales_order::SALES_CLAIM_SCOPE,
    purchase_order::PASSED_ON_SALES_CLAIM_SCOPE,
    purchase_order::LOT_NUMBER_SCOPE,
    purchase_order::LOT_ID_SCOPE,
    Supplier::CODE_SCOPE,
    Customer::CODE_SCOPE,
    Product::CODE_SCOPE,
    Plant::CODE_SCOPE,
    Carrier::CODE_SCOPE,
];

/// The request field a conflict on `scope` should be reported on ("order_number",
/// "invoice_number", "credit_note_number", "lot_number", "claim_id", "source_sales_claim_id",
/// "lot_id" or "code"), so a client sees which of its fields to change.
pub fn scope_field(scope: &str) -> &'static str {
    if scope == NumberSeries::PURCHASE_ORDER.scope || scope == NumberSeries::SALES_ORDER.scope {
        "order_number"
    } else if scope == NumberSeries::INVOICE.scope {
        "invoice_number"
    } else if scope == NumberSeries::CREDIT_NOTE.scope {
        "credit_note_number"
    } else if scope == purchase_order::LOT_NUMBER_SCOPE {
        "lot_number"
    } else if scope == purchase_order::LOT_ID_SCOPE {
        "lot_id"
    } else if scope == sales_order::SALES_CLAIM_SCOPE {
        "claim_id"
    } else if scope == purchase_order::PASSED_ON_SALES_CLAIM_SCOPE {
        "source_sales_claim_id"
    } else {
        "code"
    }
}
