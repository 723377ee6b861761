//! The oms service: the event store adapter, the command pipeline, the HTTP API, and the
//! `oms` command that runs them.
//!
//! # Layout
//!
//! The flow of a command, in the order a reader meets it:
//!
//! - [`api`]: axum routers, extractors and the problem+json error type. Handlers extract the
//!   token, headers and body, build a domain command, and hand it to [`commands`].
//! - [`commands`]: the pipeline that runs one command in one transaction: idempotency lookup,
//!   load, If-Match, number assignment, the aggregate's `handle`, append, idempotency record.
//! - [`store`]: the tenant-partitioned event store: gapless per-tenant positions, the hash
//!   chain, unique keys, number series, and cqrs-es's `PersistedEventRepository` over it.
//! - [`idempotency`], [`tenants`], [`auth`], [`metrics`], [`config`], [`migrate`]: the pieces
//!   around it.
//! - [`aggregates`]: what the services need to know about each domain aggregate type.
//! - [`app`]: start-up: pool, migrations, state, and the roles of `oms serve`.
//!
//! Dependencies point one way: this crate uses `oms-domain` (which decides) and
//! `oms-projections` (which shapes read models); nothing depends on the api.

pub mod aggregates;
pub mod api;
pub mod app;
pub mod audit;
pub mod audit_show;
pub mod auth;
pub mod bench;
pub mod commands;
pub mod config;
pub mod idempotency;
pub mod metrics;
pub mod migrate;
pub mod projector;
pub mod relay;
pub mod replay;
pub mod store;
pub mod tenants;
