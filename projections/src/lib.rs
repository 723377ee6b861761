//! Read models: their definitions and the code that applies events to them.
//!
//! # Layout
//!
//! - [`documents`]: the JSON documents of orders and reference items — what the API answers
//!   with (commands and queries alike) and what the read models store.
//! - [`Projection`]: the named projections. Each owns some tables of the `read` schema and has
//!   one checkpoint per tenant; the projector and `oms replay` both feed events to
//!   [`Projection::apply_batch`] (or [`Projection::apply`], a batch of one), in tenant position
//!   order.
//! - [`queries`]: the SQL behind the API's lists (filters, sort, keyset cursors), details,
//!   order history and the recall traces of lots (forward from a lot, backward from a sales
//!   order).
//! - [`checkpoints`]: `read.checkpoints`, how far each projection of each tenant has applied.
//! - [`analysts`]: analysts' read-only Postgres logins, one tenant each.
//!
//! The tables and views themselves are in `migrations/` (0002 creates them; later migrations
//! change them); the analysts' guide (`docs/analysts.md`) describes them.
//!
//! This crate knows nothing of NATS or HTTP. It depends on the domain (whose `apply` it reuses
//! to fold an order's state, so a read model cannot disagree with its aggregate) and on sqlx.

pub mod analysts;
pub mod apply;
pub mod checkpoints;
pub mod documents;
mod encoding;
pub mod queries;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// An event as the projections see it: a stored event after upcasting.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The tenant's event number (gapless).
    pub position: i64,
    /// `purchase_order`, `sales_order`, `supplier`, …
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// The aggregate's event number.
    pub sequence: i64,
    /// `PurchaseOrderApproved`, …
    pub event_type: String,
    /// The payload's version (after upcasting: the current one).
    pub event_version: String,
    /// The event (the domain event enum's serde form).
    pub payload: Value,
    /// `actor`, `actor_name`, `request_id`, `correlation_id`, `causation_id`, `idempotency_key`.
    pub metadata: Value,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Why an event could not be applied. The projector does not move its checkpoint (and does
/// not ack) on either: the event is retried.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The payload does not deserialise into its aggregate's event type, or does not fit the
    /// read model's state (a bug or a missing upcaster).
    #[error("event at position {position} does not fit the read model: {message}")]
    Payload {
        /// The event's tenant position.
        position: i64,
        /// What went wrong.
        message: String,
    },
}

/// The named projections. Each owns tables of the `read` schema and keeps one checkpoint per
/// tenant in `read.checkpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// `read.suppliers`, `read.customers`, `read.products`, `read.plants`, `read.carriers`.
    ReferenceData,
    /// `read.purchase_orders`, `read.purchase_order_lines`, `read.sales_orders`,
    /// `read.sales_order_lines`, `read.claims`, `read.lots`, `read.lot_movements` (payables,
    /// receivables, aging, volume, margin and the claims' summaries are views over these and the
    /// reference tables).
    Orders,
    /// `read.order_history`: one row per event of an order (and `read.order_history_states`,
    /// its own fold of each order, for the before/after values).
    OrderHistory,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 3] = [
        Projection::ReferenceData,
        Projection::Orders,
        Projection::OrderHistory,
    ];

    /// Its name: the checkpoint key, the `--projection` argument, the consumer's name.
    pub fn name(self) -> &'static str {
        match self {
            Projection::ReferenceData => "reference_data",
            Projection::Orders => "orders",
            Projection::OrderHistory => "order_history",
        }
    }

    /// The projection called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The tables (in schema `read`) it writes.
    pub fn tables(self) -> &'static [&'static str] {
        apply::tables(self)
    }

    /// Applies one event (of any aggregate type: events the projection does not care about
    /// change nothing) inside the caller's transaction. The caller has set
    /// `app.tenant_id` for the transaction and guarantees tenant position order.
    pub async fn apply(
        self,
        conn: &mut sqlx::PgConnection,
        event: &EventRecord,
    ) -> Result<(), ProjectionError> {
        apply::apply(self, conn, event).await
    }

    /// Applies a batch of events (of the tenant the transaction is scoped to, in position
    /// order) inside the caller's transaction, with a few statements per table whatever the batch's
    /// size: what the projector and `oms replay` use, so that a batch costs about what one
    /// event does. The caller has set `app.tenant_id` for the transaction.
    pub async fn apply_batch(
        self,
        conn: &mut sqlx::PgConnection,
        events: &[EventRecord],
    ) -> Result<(), ProjectionError> {
        apply::apply_batch(self, conn, events).await
    }
}
