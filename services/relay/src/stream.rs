//! The JetStream side of the relay: the stream, and the subject and message id of an event.
//! An event travels as the store's envelope ([`StoredEvent`]) in its serde form.

use async_nats::jetstream::{self, stream};
use oms_store::StoredEvent;
use uuid::Uuid;

use crate::{RelayConfig, RelayError};

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
