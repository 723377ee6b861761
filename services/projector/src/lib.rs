//! oms-projector: applies events to the read models — from NATS JetStream as they are relayed,
//! and straight from the event store to fill gaps, catch up and rebuild.
//!
//! # Layout
//!
//! - [`Projector`] (`projector.rs`): one durable pull consumer per projection, and the sweeper
//!   that catches up, from the store, any (projection, tenant) that stopped moving.
//! - `apply.rs` ([`apply_event`], [`catch_up`]): what one message names (the store's rows up
//!   to its position) or a catch-up, each in a transaction with the (projection, tenant)
//!   checkpoint of `oms_projections::checkpoints`.
//! - [`replay`]: `oms replay` — a rebuild of a projection for a tenant, swapped in at commit.
//!
//! NATS is not trusted: a delivered message only names a (tenant, position), and what is
//! applied are the event store's rows up to it, read in the apply's transaction — for whole
//! messages and those the relay sent by reference (too large for a NATS message:
//! [`PAYLOAD_HEADER`]) alike. A position the store does not have is refused. It depends on the
//! store and the projections; the relay, on the other side of NATS, is not known here.

mod apply;
mod projector;
pub mod replay;

pub use apply::{
    apply_delivered, apply_deliveries, apply_deliveries_to, apply_event, catch_up, catch_up_all,
    record, Delivery, Outcome, ProjectorError,
};
pub use projector::{
    ProjectionLabel, Projector, ProjectorConfig, ProjectorMetrics, PAYLOAD_HEADER, PAYLOAD_OMITTED,
};
