//! Applying events to the read models: one delivered event with its gap fill, or a catch-up
//! straight from the event store, each in a transaction with the (projection, tenant)
//! checkpoint.

use oms_projections::{checkpoints, EventRecord, Projection, ProjectionError};
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
    let upcast = store.upcast(event);
    EventRecord {
        tenant_id: event.tenant_id,
        position: event.position,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: upcast.event_type,
        event_version: upcast.event_version,
        payload: upcast.payload,
        metadata: event.metadata.clone(),
        recorded_at: event.recorded_at,
    }
}

/// Applies one delivered event for `projection` in one transaction, with the checkpoint and
/// the gap fill.
pub async fn apply_event(
    store: &EventStore,
    projection: Projection,
    event: &StoredEvent,
) -> Result<Outcome, ProjectorError> {
    let mut tx = store.pool().begin().await?;
    let checkpoint = checkpoints::lock(&mut tx, projection, event.tenant_id).await?;
    if event.position <= checkpoint {
        tx.commit().await?;
        return Ok(Outcome::Duplicate);
    }
    let mut gap_filled = 0;
    if event.position > checkpoint + 1 {
        let missing = EventStore::events_between(
            &mut *tx,
            event.tenant_id,
            checkpoint,
            event.position,
            i64::MAX,
        )
        .await?;
        for missed in &missing {
            projection.apply(&mut tx, &record(store, missed)).await?;
        }
        gap_filled = u64::try_from(missing.len()).unwrap_or_default();
    }
    projection.apply(&mut tx, &record(store, event)).await?;
    checkpoints::advance(&mut tx, projection, event.tenant_id, event.position).await?;
    tx.commit().await?;
    Ok(Outcome::Applied { gap_filled })
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
        let checkpoint = checkpoints::lock(&mut tx, projection, tenant).await?;
        let events =
            EventStore::events_between(&mut *tx, tenant, checkpoint, i64::MAX, batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.commit().await?;
            return Ok(applied);
        };
        for event in &events {
            projection.apply(&mut tx, &record(store, event)).await?;
        }
        checkpoints::advance(&mut tx, projection, tenant, last).await?;
        tx.commit().await?;
        applied += u64::try_from(events.len()).unwrap_or_default();
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
