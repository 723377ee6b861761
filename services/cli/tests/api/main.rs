//! Black-box API tests: the service on a random port over a fresh database, called over HTTP
//! as a client would.

mod helpers;

mod asyncapi;
mod audit;
mod backup;
mod bad_input;
mod claims;
mod concurrency;
mod db_roles;
mod docs;
mod erasure;
mod errors;
mod event_size;
mod fuzz;
mod idempotency;
mod in_doubt;
mod isolation;
mod lifecycle;
mod limits;
mod lot_stock;
mod lots;
mod matrix;
mod nats_trust;
mod openapi;
mod operations;
mod outage;
mod queries;
mod readside;
mod reference;
mod walkthrough;
