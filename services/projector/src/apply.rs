//! Applying events to the read models: what a delivered message names (with any gap before
//! it), or a catch-up, each in a transaction with the (projection, tenant) checkpoint — and
//! both straight from the event store. A message only says which (tenant, position) to apply
//! up to; what is applied are the store's rows.

use oms_projections::checkpoints::{self, Durability};
use oms_projections::{EventRecord, Projection, ProjectionError};
use oms_store::{EventStore, StoredEvent};
use uuid::Uuid;

/// What happened to one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, after filling a gap of this many events from the store.
    Applied {
        /// Events read from the store first.
        gap_filled: u64,
    },
    /// At or below the checkpoint: nothing done.
    Duplicate,
    /// The event store has no event at the message's (tenant, position): nothing applied, the
    /// checkpoint unmoved. The message is forged or corrupted (or names a tenant that is gone).
    Refused,
}

/// Why an event was not applied (it stays unacked and is redelivered).
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The read model refused the event.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// A message that is not an event.
    #[error("not an event message: {0}")]
    Message(String),
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
}

/// The event as the projections see it, upcast.
pub fn record(store: &EventStore, event: &StoredEvent) -> EventRecord {
    into_record(store, event.clone())
}

/// [`record`] of an event not needed afterwards: its payload and metadata are moved, not
/// copied.
pub fn into_record(store: &EventStore, event: StoredEvent) -> EventRecord {
    let (tenant_id, position, aggregate_id, sequence, recorded_at) = (
        event.tenant_id,
        event.position,
        event.aggregate_id,
        event.sequence,
        event.recorded_at,
    );
    // The row's type, whatever an upcaster makes of the serialised event's.
    let aggregate_type = event.aggregate_type.clone();
    let upcast = store.into_upcast(event);
    EventRecord {
        tenant_id,
        position,
        aggregate_type,
        aggregate_id,
        sequence,
        event_type: upcast.event_type,
        event_version: upcast.event_version,
        payload: upcast.payload,
        metadata: upcast.metadata,
        recorded_at,
    }
}

/// What a delivered message led to, with how its content compared with the event store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Applied (from the store), a duplicate, or refused.
    pub outcome: Outcome,
    /// The fields of the message that disagree with the store's row at its position (empty
    /// when they agree, or when the store's row was not read: a duplicate or a refusal). A
    /// message whose fields disagree is forged or corrupted; the store's row was applied.
    pub disagreeing: Vec<&'static str>,
}

/// Applies, for `projection`, what the event store holds up to the (tenant, position) that a
/// delivered message names, in one transaction with the checkpoint. Nothing of the message
/// but its tenant and position is applied: the store's rows after the checkpoint, up to and
/// including that position, are read in one indexed range read and applied in order (the
/// event itself and any gap before it). A position the store does not have — beyond the
/// tenant's head, of a tenant that does not exist — is [`Outcome::Refused`]: nothing is
/// applied and the checkpoint stays where it was.
pub async fn apply_event(
    store: &EventStore,
    projection: Projection,
    delivered: &StoredEvent,
) -> Result<Outcome, ProjectorError> {
    Ok(apply_delivered(store, projection, delivered).await?.outcome)
}

/// [`apply_event`], also telling which fields of the message disagree with the store's row.
pub async fn apply_delivered(
    store: &EventStore,
    projection: Projection,
    delivered: &StoredEvent,
) -> Result<Delivery, ProjectorError> {
    let mut deliveries =
        apply_deliveries(store, projection, delivered.tenant_id, &[delivered]).await?;
    Ok(deliveries.pop().unwrap_or(Delivery {
        outcome: Outcome::Refused,
        disagreeing: Vec::new(),
    }))
}

/// Applies, for `projection`, what the event store holds up to the highest of the
/// (`tenant`, position)s that several delivered messages name, in one transaction with the
/// checkpoint: [`apply_deliveries_to`] for one projection.
pub async fn apply_deliveries(
    store: &EventStore,
    projection: Projection,
    tenant: Uuid,
    delivered: &[&StoredEvent],
) -> Result<Vec<Delivery>, ProjectorError> {
    let mut per_projection = apply_deliveries_to(store, &[projection], tenant, delivered).await?;
    Ok(per_projection.pop().unwrap_or_default())
}

/// Applies, for each of `projections`, what the event store holds up to the highest of the
/// (`tenant`, position)s that several delivered messages name, all in one transaction with
/// their checkpoints: one statement locks the checkpoints, one range read takes the store's
/// rows after the lowest of them, each projection applies its part as one batch, one
/// statement moves the checkpoints, one commit. Returns, per projection (in the order
/// given), one [`Delivery`] per message, in the order given.
///
/// The projector applies a fetch to every projection at once: the fixed cost of a
/// transaction (begin, lock, read, move, commit) is paid once per tenant group instead of
/// once per projection, and the events are read once.
///
/// Each message keeps its own outcome per projection: at or below that projection's
/// checkpoint (or a position already named earlier in `delivered`) it is a duplicate; a
/// position the store does not have (beyond the tenant's head, a tenant that does not exist,
/// a position below 1) is refused — and the store's rows are applied only up to the highest
/// position that is not, so a forged position neither moves a checkpoint nor stops the
/// others. Messages whose `tenant_id` is not `tenant` are refused too (the caller groups by
/// tenant). If one projection fails, nothing is committed: the caller applies the
/// projections one by one to keep the others moving.
pub async fn apply_deliveries_to(
    store: &EventStore,
    projections: &[Projection],
    tenant: Uuid,
    delivered: &[&StoredEvent],
) -> Result<Vec<Vec<Delivery>>, ProjectorError> {
    let refused = || Delivery {
        outcome: Outcome::Refused,
        disagreeing: Vec::new(),
    };
    let all_refused = || {
        projections
            .iter()
            .map(|_| delivered.iter().map(|_| refused()).collect())
            .collect()
    };
    // Positions start at 1; the one past the largest cannot be named in the range read below,
    // and no tenant reaches it.
    let named = |event: &StoredEvent| {
        event.tenant_id == tenant && event.position >= 1 && event.position < i64::MAX
    };
    let Some(highest) = delivered
        .iter()
        .filter(|event| named(event))
        .map(|event| event.position)
        .max()
    else {
        return Ok(all_refused());
    };
    if projections.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.pool().begin().await?;
    let checkpoints =
        checkpoints::lock_many(&mut tx, projections, tenant, Durability::Deferred).await?;
    let lowest = checkpoints.iter().copied().min().unwrap_or_default();
    let events = if highest > lowest {
        // Positions are gapless, so the store has a position exactly when this read reaches it.
        EventStore::events_between(&mut *tx, tenant, lowest, highest + 1, i64::MAX).await?
    } else {
        Vec::new()
    };
    let row_at = |position: i64| {
        events
            .binary_search_by_key(&position, |event| event.position)
            .ok()
            .map(|i| &events[i])
    };
    // Each message is compared with the store's row once, not once per projection.
    let compared: Vec<Vec<&'static str>> = delivered
        .iter()
        .map(|event| match row_at(event.position) {
            Some(stored) if named(event) => disagreement(event, stored),
            _ => Vec::new(),
        })
        .collect();
    let mut outcomes = Vec::with_capacity(projections.len());
    // (index in `projections`, projection, its checkpoint, the position it applies through)
    let mut moves = Vec::new();
    for (&projection, &checkpoint) in projections.iter().zip(&checkpoints) {
        let mut seen = std::collections::HashSet::new();
        let deliveries: Vec<Delivery> = delivered
            .iter()
            .zip(&compared)
            .map(|(event, compared)| {
                if !named(event) {
                    return refused();
                }
                if event.position <= checkpoint || !seen.insert(event.position) {
                    return Delivery {
                        outcome: Outcome::Duplicate,
                        disagreeing: Vec::new(),
                    };
                }
                match row_at(event.position) {
                    Some(_) => Delivery {
                        outcome: Outcome::Applied { gap_filled: 0 },
                        disagreeing: compared.clone(),
                    },
                    None => refused(),
                }
            })
            .collect();
        let through = delivered
            .iter()
            .zip(&deliveries)
            .filter(|(_, delivery)| matches!(delivery.outcome, Outcome::Applied { .. }))
            .map(|(event, _)| event.position)
            .max();
        if let Some(through) = through {
            moves.push((outcomes.len(), projection, checkpoint, through));
        }
        outcomes.push(deliveries);
    }
    if moves.is_empty() {
        // Also undoes the checkpoint rows `lock_many` may have inserted for an unknown tenant.
        tx.rollback().await?;
        return Ok(outcomes);
    }
    // Sorted by position: each projection's part is a slice of it.
    let through = moves.iter().map(|&(_, _, _, through)| through).max();
    let events = &events[..events.partition_point(|event| Some(event.position) <= through)];
    store.prepare(&mut *tx, events).await?;
    let records: Vec<EventRecord> = events.iter().map(|event| record(store, event)).collect();
    let part = |checkpoint: i64, through: i64| {
        let from = records.partition_point(|record| record.position <= checkpoint);
        let to = records.partition_point(|record| record.position <= through);
        &records[from..to]
    };
    for &(_, projection, checkpoint, through) in &moves {
        projection
            .apply_batch(&mut tx, part(checkpoint, through))
            .await?;
    }
    let positions: Vec<(Projection, i64)> = moves
        .iter()
        .map(|&(_, projection, _, through)| (projection, through))
        .collect();
    checkpoints::advance_many(&mut tx, tenant, &positions).await?;
    tx.commit().await?;
    // The events applied that no message named were gaps filled from the store; they are
    // counted on each projection's first applied message.
    for &(index, _, checkpoint, through) in &moves {
        let deliveries = &mut outcomes[index];
        let applied = part(checkpoint, through).len();
        let named_applied = deliveries
            .iter()
            .filter(|delivery| matches!(delivery.outcome, Outcome::Applied { .. }))
            .count()
            .min(applied);
        if let Some(first) = deliveries
            .iter_mut()
            .find(|delivery| matches!(delivery.outcome, Outcome::Applied { .. }))
        {
            first.outcome = Outcome::Applied {
                gap_filled: u64::try_from(applied - named_applied).unwrap_or_default(),
            };
        }
    }
    Ok(outcomes)
}

/// The fields of a delivered envelope that differ from the store's row at its position. A
/// message by reference carries no payload (and perhaps no metadata): what it left out is not
/// compared.
fn disagreement(delivered: &StoredEvent, stored: &StoredEvent) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            fields.push(name);
        }
    };
    check("hash", delivered.hash == stored.hash);
    check(
        "aggregate_type",
        delivered.aggregate_type == stored.aggregate_type,
    );
    check(
        "aggregate_id",
        delivered.aggregate_id == stored.aggregate_id,
    );
    check("sequence", delivered.sequence == stored.sequence);
    check("event_type", delivered.event_type == stored.event_type);
    check(
        "event_version",
        delivered.event_version == stored.event_version,
    );
    check("recorded_at", delivered.recorded_at == stored.recorded_at);
    check(
        "payload",
        delivered.payload.is_null() || delivered.payload == stored.payload,
    );
    check(
        "metadata",
        delivered.metadata.is_null() || delivered.metadata == stored.metadata,
    );
    fields
}

/// Applies, straight from the event store, everything of `tenant` after the projection's
/// checkpoint, in batches of one transaction each. Returns how many events were applied.
pub async fn catch_up(
    store: &EventStore,
    projection: Projection,
    tenant: Uuid,
    batch: i64,
) -> Result<u64, ProjectorError> {
    let mut applied = 0;
    loop {
        let mut tx = store.pool().begin().await?;
        let checkpoint =
            checkpoints::lock_with(&mut tx, projection, tenant, Durability::Deferred).await?;
        let events =
            EventStore::events_between(&mut *tx, tenant, checkpoint, i64::MAX, batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.commit().await?;
            return Ok(applied);
        };
        store.prepare(&mut *tx, &events).await?;
        let count = u64::try_from(events.len()).unwrap_or_default();
        let records: Vec<EventRecord> = events
            .into_iter()
            .map(|event| into_record(store, event))
            .collect();
        projection.apply_batch(&mut tx, &records).await?;
        checkpoints::advance(&mut tx, projection, tenant, last).await?;
        tx.commit().await?;
        applied += count;
    }
}

/// Catches every projection of every tenant up from the event store. Returns how many events
/// were applied.
pub async fn catch_up_all(store: &EventStore, batch: i64) -> Result<u64, ProjectorError> {
    let tenants: Vec<Uuid> = store.heads().await?.into_iter().map(|(t, _)| t).collect();
    let mut applied = 0;
    for tenant in tenants {
        for projection in Projection::ALL {
            applied += catch_up(store, projection, tenant, batch).await?;
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> StoredEvent {
        StoredEvent {
            tenant_id: Uuid::nil(),
            position: 7,
            aggregate_type: "supplier".into(),
            aggregate_id: Uuid::nil(),
            sequence: 1,
            event_type: "SupplierRegistered".into(),
            event_version: "1.0".into(),
            payload: json!({"name": "Prairie Packers"}),
            metadata: json!({"actor": "mary"}),
            recorded_at: Default::default(),
            hash: vec![1; 32],
        }
    }

    #[test]
    fn a_message_equal_to_the_stores_row_disagrees_in_nothing() {
        assert!(disagreement(&event(), &event()).is_empty());
    }

    #[test]
    fn a_changed_payload_hash_or_aggregate_is_named() {
        let mut forged = event();
        forged.payload = json!({"name": "FORGED"});
        forged.hash = vec![0; 32];
        forged.aggregate_id = Uuid::from_u128(1);
        assert_eq!(
            disagreement(&forged, &event()),
            ["hash", "aggregate_id", "payload"]
        );
    }

    #[test]
    fn what_a_message_by_reference_leaves_out_is_not_compared() {
        let mut reference = event();
        reference.payload = serde_json::Value::Null;
        reference.metadata = serde_json::Value::Null;
        assert!(disagreement(&reference, &event()).is_empty());
    }
}
