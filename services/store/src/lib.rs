//! oms-store: the write side. Every SQL statement over the event store and the small tables
//! written in the same transaction as events (tenant heads, unique keys, number series,
//! idempotency records, tenants), the hash chain, the command pipeline, and the migrations.
//!
//! # Layout
//!
//! The flow of a command through this crate, in the order a reader meets it:
//!
//! - [`Commands`] (`pipeline.rs`): runs one command in one transaction — idempotency lookup,
//!   load, If-Match, number assignment, the aggregate's `handle` (with [`TxLookups`] through
//!   the same transaction), append, idempotency record, commit.
//! - [`EventStore`] (`event_store.rs`): appends with gapless per-tenant positions (the tenant's
//!   head row is taken last, just before commit) and reads events back; `event.rs` holds
//!   [`StoredEvent`], the one envelope, and what an append returns or refuses; [`hash`] the
//!   per-tenant chain.
//! - [`idempotency`], [`tenants`]: the per-tenant tables written beside the events.
//! - [`repository`]: cqrs-es's `PersistedEventRepository` over the same store, so cqrs-es's own
//!   framework runs on it too; [`aggregates`] says which unique keys each aggregate's events
//!   claim.
//! - [`audit`]: streaming export, offline verification of an export, anchors, and an order as
//!   it was at an instant; [`progress`] reports how far each stage is behind the heads.
//! - [`migrate`]: the embedded migrations (`migrations/` at the top of the repository).
//!
//! Dependencies point one way: this crate uses `oms-domain` (which decides) and
//! `oms-projections` (whose documents a command answers with). The relay, the projector and the
//! API build on it; it knows nothing of them, of HTTP or of NATS.

pub mod aggregates;
pub mod audit;
mod decided;
mod event;
mod event_store;
pub mod group_commit;
pub mod hash;
pub mod idempotency;
mod lookups;
pub mod migrate;
pub mod personal;
mod pipeline;
pub mod progress;
pub mod repository;
pub mod tenants;

pub use event::{
    format_timestamp, AppendError, Appended, ChainReport, FoldError, Head, NewEvent, StoredEvent,
    PAYLOAD_HEADER, PAYLOAD_OMITTED,
};
pub use event_store::EventStore;
pub use hash::GENESIS;
pub use lookups::{SharedTx, TxLookups};
pub use pipeline::{
    Actor, CommandContext, CommandError, Commands, Executed, Loaded, OmsAggregate,
    MAX_EVENT_PAYLOAD_BYTES,
};

/// The series a command may take a number from (defined by the domain, counted here).
pub use oms_domain::NumberSeries;

/// Whether a database error means "Postgres is unavailable" (a client should retry: 503)
/// rather than a bug.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // connection exceptions, operator intervention (shutdown, recovery), insufficient
            // resources
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }),
        _ => false,
    }
}
