//! The JetStream side of the relay: the stream, and the subject, message id and body of an
//! event. An event travels as the store's envelope ([`StoredEvent`]) in its serde form — whole
//! when it fits in a NATS message, by reference when it does not (see [`encode`]).

use async_nats::jetstream::{self, stream};
use oms_store::StoredEvent;
use serde_json::Value;
use uuid::Uuid;

use crate::{RelayConfig, RelayError};

/// The header (and its value) of a message sent by reference: the store's wire contract.
pub use oms_store::{PAYLOAD_HEADER, PAYLOAD_OMITTED};

/// The header naming the message's tenant (its id), so a consumer can route or filter
/// without parsing the body.
pub const TENANT_HEADER: &str = "Oms-Tenant";
/// The header carrying the event's position: the tenant's gapless event number.
pub const POSITION_HEADER: &str = "Oms-Position";
/// The header carrying the event's sequence within its aggregate.
pub const SEQUENCE_HEADER: &str = "Oms-Sequence";
/// The header naming the event's type (`PurchaseOrderCreated`, …), which selects its schema.
pub const EVENT_TYPE_HEADER: &str = "Oms-Event-Type";
/// The header naming the event's aggregate type (`purchase_order`, …).
pub const AGGREGATE_TYPE_HEADER: &str = "Oms-Aggregate-Type";
/// The header present only on an event that was stored in an older version and upcast on
/// its way out: the version it was stored (and hashed) in.
pub const STORED_VERSION_HEADER: &str = "Oms-Stored-Version";

/// Bytes of a message's `max_payload` kept for its headers when deciding whether an event's
/// body fits. `max_payload` bounds headers and body together; the relay's headers (message
/// id, tenant, position, sequence, event and aggregate type, [`PAYLOAD_HEADER`]) take about
/// 250 bytes, so 4 KiB leaves room for headers added later without a second guess.
pub const HEADER_HEADROOM: usize = 4 * 1024;

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

/// The largest body the relay publishes whole, given the `max_payload` of the server it is
/// connected to: what is left once [`HEADER_HEADROOM`] is kept for the headers.
pub fn body_limit(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_HEADROOM)
}

/// A message body for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The envelope in its serde form, whole or without its payload.
    pub body: Vec<u8>,
    /// The payload (and, if even that was not enough, the metadata) was left out: the
    /// message carries the event by reference and is marked with [`PAYLOAD_HEADER`].
    pub omitted: bool,
}

/// The body of `event`'s message when at most `limit` bytes may be sent: the whole envelope
/// if it fits; otherwise the envelope with `payload` set to null — its identity (tenant,
/// position, aggregate, sequence, type, version, time and hash) stays, so a reader can fetch
/// the event from the store and check it — and, should that still not fit, with `metadata`
/// null as well. An envelope that does not fit even then is an error (it cannot happen with
/// NATS's smallest sensible limits: what is left is a few hundred bytes).
pub fn encode(event: &StoredEvent, limit: usize) -> Result<Encoded, RelayError> {
    let whole = to_vec(event)?;
    if whole.len() <= limit {
        return Ok(Encoded {
            body: whole,
            omitted: false,
        });
    }
    let mut reference = without_payload(event);
    reference.metadata = event.metadata.clone();
    let body = to_vec(&reference)?;
    if body.len() <= limit {
        return Ok(Encoded {
            body,
            omitted: true,
        });
    }
    reference.metadata = Value::Null;
    let body = to_vec(&reference)?;
    if body.len() <= limit {
        return Ok(Encoded {
            body,
            omitted: true,
        });
    }
    Err(RelayError::Publish(format!(
        "even a reference to the event ({} bytes) exceeds the {limit} bytes a message may carry",
        body.len()
    )))
}

/// `event`'s envelope with a null payload and metadata, without copying either of them.
fn without_payload(event: &StoredEvent) -> StoredEvent {
    StoredEvent {
        tenant_id: event.tenant_id,
        position: event.position,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        payload: Value::Null,
        metadata: Value::Null,
        recorded_at: event.recorded_at,
        hash: event.hash.clone(),
    }
}

fn to_vec(event: &StoredEvent) -> Result<Vec<u8>, RelayError> {
    serde_json::to_vec(event).map_err(|err| RelayError::Publish(err.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(payload: Value, metadata: Value) -> StoredEvent {
        StoredEvent {
            tenant_id: Uuid::nil(),
            position: 7,
            aggregate_type: "purchase_order".into(),
            aggregate_id: Uuid::nil(),
            sequence: 2,
            event_type: "PurchaseOrderNoteAdded".into(),
            event_version: "1.0".into(),
            payload,
            metadata,
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            hash: vec![1; 32],
        }
    }

    fn decode(body: &[u8]) -> StoredEvent {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn an_event_that_fits_travels_whole() {
        let event = event(json!({"NoteAdded": {"text": "hi"}}), json!({"actor": "a"}));
        let encoded = encode(&event, 10_000).unwrap();
        assert!(!encoded.omitted);
        assert_eq!(decode(&encoded.body), event);
    }

    #[test]
    fn an_event_over_the_limit_travels_without_its_payload_but_with_its_identity() {
        let event = event(json!({"text": "x".repeat(5_000)}), json!({"actor": "a"}));
        let encoded = encode(&event, 1_000).unwrap();
        assert!(encoded.omitted);
        assert!(encoded.body.len() <= 1_000);
        let reference = decode(&encoded.body);
        assert_eq!(reference.payload, Value::Null);
        assert_eq!(reference.metadata, event.metadata);
        assert_eq!(
            (
                reference.position,
                reference.hash.clone(),
                reference.sequence
            ),
            (event.position, event.hash.clone(), event.sequence)
        );
    }

    #[test]
    fn metadata_is_left_out_too_only_when_the_reference_would_still_not_fit() {
        let event = event(
            json!("x".repeat(5_000)),
            json!({"request_id": "r".repeat(5_000)}),
        );
        let encoded = encode(&event, 1_000).unwrap();
        assert!(encoded.omitted);
        let reference = decode(&encoded.body);
        assert_eq!(
            (reference.payload, reference.metadata),
            (Value::Null, Value::Null)
        );
    }

    #[test]
    fn a_limit_too_small_for_any_reference_is_an_error() {
        let event = event(json!("x".repeat(5_000)), Value::Null);
        assert!(encode(&event, 50).is_err());
    }

    #[test]
    fn the_body_limit_keeps_room_for_the_headers() {
        assert_eq!(body_limit(1024 * 1024), 1024 * 1024 - HEADER_HEADROOM);
        assert_eq!(body_limit(100), 0);
    }
}
