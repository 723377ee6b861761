//! The rows of the event store and what an append returns or refuses.

use chrono::{DateTime, Utc};
use oms_domain::{LotMovement, UniqueKeyChange};
use serde_json::Value;
use uuid::Uuid;

use serde::{Deserialize, Serialize};

/// A recorded event: a row of the event store, and — in its serde form — what the relay
/// publishes on NATS, what the projector receives, and what an export line carries. One
/// envelope everywhere, so what travels is what the hash chain covers — except that the relay
/// publishes an event stored in an older version upcast to the current one (marked
/// `Oms-Stored-Version`; [`crate::EventStore::upcast_stored`]), which exports never do.
///
/// On the wire `recorded_at` is RFC 3339 with six fractional digits (the precision Postgres
/// keeps and the chain hashes) and `hash` is lowercase hex.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoredEvent {
    /// The tenant the event belongs to.
    pub tenant_id: Uuid,
    /// The tenant's event number (1, 2, 3, … without gaps).
    pub position: i64,
    /// `purchase_order`, `sales_order`, `supplier`, …
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The aggregate's event number (1, 2, 3, …).
    pub sequence: i64,
    /// `PurchaseOrderCreated`, …
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: String,
    /// The event.
    pub payload: Value,
    /// Actor, request, correlation and causation ids, idempotency key.
    pub metadata: Value,
    /// When the event was recorded.
    #[serde(with = "timestamp")]
    #[schemars(
        with = "String",
        regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
    )]
    pub recorded_at: DateTime<Utc>,
    /// `SHA-256(previous hash ‖ canonical bytes)`.
    #[serde(with = "hex::serde")]
    #[schemars(with = "String", regex(pattern = r"^[0-9a-f]{64}$"))]
    pub hash: Vec<u8>,
}

/// The chain's timestamp form (six fractional digits, UTC) as the serde form of
/// `recorded_at`, so a serialised event hashes to the same bytes as the stored row.
mod timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_timestamp(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The NATS header that marks a message whose body is the envelope without its payload (an
/// event larger than a NATS message, published by reference): the projector reads such an
/// event from the store. Defined here, with the envelope, because the relay that sets it and
/// the projector that reads it do not depend on each other.
pub const PAYLOAD_HEADER: &str = "Oms-Payload";

/// [`PAYLOAD_HEADER`]'s value when the payload was left out.
pub const PAYLOAD_OMITTED: &str = "omitted";

/// An event about to be appended; the store gives it its position, time and hash.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `purchase_order`, …
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The aggregate's event number this event takes.
    pub sequence: i64,
    /// `PurchaseOrderCreated`, …
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: String,
    /// The event.
    pub payload: Value,
    /// Actor, request and correlation ids.
    pub metadata: Value,
    /// The uniqueness keys this event claims or releases.
    pub unique_keys: Vec<UniqueKeyChange>,
    /// The lots this event receives or ships: the append moves their stock and refuses a
    /// shipment of more than is left ([`AppendError::OverShipped`]).
    pub lot_movements: Vec<LotMovement>,
}

impl NewEvent {
    /// The unique keys this event claims, as `(scope, key)`: what an append inserts into the
    /// unique keys (releases are applied one by one, see [`NewEvent::only_claims`]).
    pub fn claims(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.unique_keys.iter().filter_map(|change| match change {
            UniqueKeyChange::Claim { scope, key } => Some((*scope, key.as_str())),
            UniqueKeyChange::Release { .. } => None,
        })
    }

    /// Whether every unique-key change of the event is a claim: such events' keys can be
    /// claimed together in one statement; a release must be applied in its place in order.
    pub fn only_claims(&self) -> bool {
        self.unique_keys
            .iter()
            .all(|change| matches!(change, UniqueKeyChange::Claim { .. }))
    }

    /// Whether the event must be appended by its command alone, never in a group-commit
    /// batch: what the batch writer does not do. It releases unique keys (applied one by one,
    /// in order), moves lots' stock (checked before the head is taken), or writes or erases a
    /// supplier's or customer's personal data (sealed, or its key destroyed, with the keyring).
    pub fn runs_alone(&self) -> bool {
        !self.only_claims()
            || !self.lot_movements.is_empty()
            || crate::personal::needs_keyring(self)
    }
}

/// Why an append did not happen. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the aggregate first (the sequence is taken).
    #[error("the aggregate was changed by another writer")]
    Conflict,
    /// A per-tenant unique key (order number, invoice number, code) is held by another aggregate.
    #[error("{key} is already used")]
    Duplicate {
        /// `purchase_order_number`, `supplier_code`, …
        scope: String,
        /// The value that is taken.
        key: String,
    },
    /// A shipment would take more of a lot than is left of it: another shipment took it first.
    #[error("lot {lot_id} has {left} left, less than the {taken} this shipment takes")]
    OverShipped {
        /// The first lot (in id order) that has too little left.
        lot_id: Uuid,
        /// What is left of it (received less shipped), in the unit it was received in.
        left: rust_decimal::Decimal,
        /// What the shipment takes of it.
        taken: rust_decimal::Decimal,
    },
    /// The tenant has no head row: it does not exist.
    #[error("unknown tenant")]
    UnknownTenant,
    /// Postgres failed or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A stored event that does not deserialise into its aggregate's event type (a bug or a
/// missing upcaster, never a client's fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("event at position {position} does not deserialise: {message}")]
pub struct FoldError {
    /// The tenant position of the event.
    pub position: i64,
    /// What serde said.
    pub message: String,
}

/// What an append wrote.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The rows as stored, in position order.
    pub events: Vec<StoredEvent>,
    /// The tenant's position after the append.
    pub position: i64,
}

/// The tenant's newest position and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The newest position (0 before the first event).
    pub position: i64,
    /// The newest event's hash (`GENESIS` before the first event).
    pub hash: Vec<u8>,
}

/// The outcome of recomputing a tenant's hash chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// True when every event's stored hash and position matched the recomputation and the
    /// head row agrees with the newest event.
    pub ok: bool,
    /// How many events were read.
    pub events_checked: u64,
    /// The head row's position.
    pub head_position: i64,
    /// The head row's hash, hex.
    pub head_hash: String,
    /// The first position where the chain breaks (a changed, missing, inserted or reordered
    /// event), if any.
    pub first_bad_position: Option<i64>,
}

/// The timestamp form the chain covers: RFC 3339, UTC, exactly six fractional digits.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Truncates a timestamp to the microseconds Postgres keeps, so the hash computed before the
/// insert equals the one recomputed from the stored row.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    let micros = at.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(at)
}
