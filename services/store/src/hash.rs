//! The per-tenant hash chain.
//!
//! Each event's hash is `SHA-256(previous hash ‖ canonical bytes of the event)`, where the
//! previous hash of a tenant's first event is 32 zero bytes. The canonical bytes cover every
//! column an auditor relies on (tenant, position, aggregate, sequence, type, version, payload,
//! metadata, recorded_at), so changing, deleting, inserting or swapping a row breaks the chain
//! at that position.
//!
//! The encoding is JSON with object keys sorted by their UTF-8 bytes and no white space. It is
//! written here rather than left to `serde_json`, whose key order depends on a cargo feature
//! that any crate in the build may switch on.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::StoredEvent;

/// Re-exported: the timestamp form the chain covers is the envelope's.
pub use crate::event::{format_timestamp, to_stored_precision};

/// The hash a tenant's chain starts from: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// The canonical bytes of an event: the input of its hash, and what an offline verifier
/// recomputes from an export. Every field but the hash itself is covered.
pub fn canonical_bytes(fields: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Keys in sorted order; values encoded canonically.
    out.extend_from_slice(b"{\"aggregate_id\":");
    write_str(&mut out, &fields.aggregate_id.to_string());
    out.extend_from_slice(b",\"aggregate_type\":");
    write_str(&mut out, &fields.aggregate_type);
    out.extend_from_slice(b",\"event_type\":");
    write_str(&mut out, &fields.event_type);
    out.extend_from_slice(b",\"event_version\":");
    write_str(&mut out, &fields.event_version);
    out.extend_from_slice(b",\"metadata\":");
    write_value(&mut out, &fields.metadata);
    out.extend_from_slice(b",\"payload\":");
    write_value(&mut out, &fields.payload);
    out.extend_from_slice(b",\"position\":");
    out.extend_from_slice(fields.position.to_string().as_bytes());
    out.extend_from_slice(b",\"recorded_at\":");
    write_str(&mut out, &format_timestamp(fields.recorded_at));
    out.extend_from_slice(b",\"sequence\":");
    out.extend_from_slice(fields.sequence.to_string().as_bytes());
    out.extend_from_slice(b",\"tenant_id\":");
    write_str(&mut out, &fields.tenant_id.to_string());
    out.push(b'}');
    out
}

/// `SHA-256(previous ‖ canonical bytes)`.
pub fn chain_hash(previous: &[u8], fields: &StoredEvent) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_bytes(fields));
    hasher.finalize().into()
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping is canonical (only the escapes JSON requires).
    out.extend_from_slice(
        serde_json::to_string(s)
            .expect("a string always serialises")
            .as_bytes(),
    );
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, &map[key]);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(out, s),
        // Numbers, booleans and null have one form in serde_json.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use serde_json::json;

    fn fields(payload: &Value, metadata: &Value) -> StoredEvent {
        StoredEvent {
            tenant_id: uuid::Uuid::nil(),
            position: 1,
            aggregate_type: "purchase_order".into(),
            aggregate_id: uuid::Uuid::nil(),
            sequence: 1,
            event_type: "PurchaseOrderApproved".into(),
            event_version: "1.0".into(),
            payload: payload.clone(),
            metadata: metadata.clone(),
            recorded_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            hash: Vec::new(),
        }
    }

    #[test]
    fn canonical_bytes_do_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"é"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":"é","y":[1,2]},"b":1}"#).unwrap();
        let meta = json!({});
        assert_eq!(
            canonical_bytes(&fields(&a, &meta)),
            canonical_bytes(&fields(&b, &meta))
        );
    }

    #[test]
    fn any_change_to_the_payload_or_the_previous_hash_changes_the_hash() {
        let meta = json!({"actor": "mary"});
        let p1 = json!({"amount": "10.00"});
        let p2 = json!({"amount": "10.01"});
        let h1 = chain_hash(&GENESIS, &fields(&p1, &meta));
        assert_ne!(h1, chain_hash(&GENESIS, &fields(&p2, &meta)));
        assert_ne!(h1, chain_hash(&[1; 32], &fields(&p1, &meta)));
        assert_eq!(h1, chain_hash(&GENESIS, &fields(&p1, &meta)));
    }

    #[test]
    fn timestamps_are_encoded_with_six_fraction_digits() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        assert_eq!(format_timestamp(at), "2023-11-14T22:13:20.000000Z");
    }
}
