//! oms-relay: carries each tenant's events, in position order, from the event store to a NATS
//! JetStream stream, and publishes each tenant's head (the anchors) outside the database.
//!
//! # Layout
//!
//! - [`Relay`] (`relay.rs`): the loop — wake on `LISTEN`, poll as well, lock a tenant's
//!   checkpoint, publish its next events with their `Nats-Msg-Id`, wait for the acks, move the
//!   checkpoint; each tenant on its own, so one that cannot be published is marked
//!   ([`FailingTenant`]), backed off and retried while the others go on. The checkpoint table
//!   (`relay_checkpoints`) is this crate's; events are read through [`oms_store::EventStore`].
//! - `stream.rs` ([`ensure_stream`], [`subject`], [`message_id`], [`encode`]): the stream, the
//!   subjects, message ids and bodies. An event travels as the store's envelope,
//!   `oms_store::StoredEvent`, in its serde form — by reference (without its payload, marked
//!   [`PAYLOAD_HEADER`]` = `[`PAYLOAD_OMITTED`]) when it is larger than a NATS message.
//! - [`anchors`]: the anchors' stream, the [`anchors::Anchorer`] that publishes them, and the
//!   reader an auditor's verification uses.
//!
//! It depends on the store only; the projector, on the other side of NATS, is not known here.

pub mod anchors;
mod relay;
mod stream;

pub use relay::{
    FailingTenant, Relay, RelayConfig, RelayError, RelayMetrics, TenantLabel, NOTIFY_CHANNEL,
};
pub use stream::{
    body_limit, encode, ensure_stream, message_id, subject, Encoded, AGGREGATE_TYPE_HEADER,
    EVENT_TYPE_HEADER, HEADER_HEADROOM, PAYLOAD_HEADER, PAYLOAD_OMITTED, POSITION_HEADER,
    SEQUENCE_HEADER, STORED_VERSION_HEADER, TENANT_HEADER,
};
