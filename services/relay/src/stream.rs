//! The JetStream side of the relay: the stream, the subject and message id of an event, and
//! the form an event travels in.

use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use oms_store::StoredEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{RelayConfig, RelayError};

/// An event as it travels on NATS: the stored row, with its hash in hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The tenant's position.
    pub position: i64,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// The aggregate's sequence.
    pub sequence: i64,
    /// The event type.
    pub event_type: String,
    /// The payload's version as stored.
    pub event_version: String,
    /// The event.
    pub payload: serde_json::Value,
    /// Actor, request and correlation ids.
    pub metadata: serde_json::Value,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Its chain hash, hex.
    pub hash: String,
}

impl From<&StoredEvent> for EventMessage {
    fn from(event: &StoredEvent) -> Self {
        Self {
            tenant_id: event.tenant_id,
            position: event.position,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            recorded_at: event.recorded_at,
            hash: hex::encode(&event.hash),
        }
    }
}

impl EventMessage {
    /// Back to the stored form (for upcasting and applying).
    pub fn into_stored(self) -> StoredEvent {
        StoredEvent {
            tenant_id: self.tenant_id,
            position: self.position,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
            hash: hex::decode(self.hash).unwrap_or_default(),
        }
    }
}

/// The subject an event is published on.
pub fn subject(event: &StoredEvent) -> String {
    format!(
        "oms.events.{}.{}.{}",
        event.tenant_id, event.aggregate_type, event.aggregate_id
    )
}

/// The message id JetStream deduplicates on.
pub fn message_id(tenant: Uuid, position: i64) -> String {
    format!("{tenant}:{position}")
}

/// Creates the stream if it is missing (subjects `oms.events.>`, file storage).
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    config: &RelayConfig,
) -> Result<stream::Stream, RelayError> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec!["oms.events.>".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: config.duplicate_window,
            max_age: config.max_age,
            ..Default::default()
        })
        .await
        .map_err(|err| RelayError::Stream(err.to_string()))
}
