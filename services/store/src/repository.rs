//! cqrs-es's [`PersistedEventRepository`] over the event store, for one tenant.
//!
//! `PersistedEventRepository` has no context parameter, so the tenant lives in the repository
//! instance: one per tenant is cheap (they share the pool). With it, cqrs-es's own
//! `PersistedEventStore::new_event_store` and `CqrsFramework` run on the tenant-partitioned
//! store, with positions, the hash chain and unique keys exactly as the service's own command
//! pipeline writes them (both go through [`EventStore::append_in`]).
//!
//! Snapshots are not stored: use the event-store mode only (cqrs-es 0.5.0's snapshot and
//! aggregate-store modes apply each new event twice).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use oms_domain::UniqueKeyChange;
use serde_json::Value;
use uuid::Uuid;

use crate::{AppendError, EventStore, NewEvent, StoredEvent};

/// Finds the unique keys an event claims or releases from its serialised form.
pub type UniqueKeysOf = fn(&SerializedEvent) -> Vec<UniqueKeyChange>;

/// The event store seen by cqrs-es, for one tenant.
#[derive(Debug, Clone)]
pub struct TenantEventRepository {
    store: EventStore,
    tenant: Uuid,
    unique_keys: UniqueKeysOf,
}

impl TenantEventRepository {
    /// A repository of `tenant`'s events; `unique_keys` reads an event's unique-key claims
    /// (use [`crate::aggregates::unique_keys_of`] for the domain's aggregates).
    pub fn new(store: EventStore, tenant: Uuid, unique_keys: UniqueKeysOf) -> Self {
        Self {
            store,
            tenant,
            unique_keys,
        }
    }

    fn serialized(&self, event: &StoredEvent) -> SerializedEvent {
        self.store.upcast(event)
    }
}

fn parse_id(aggregate_id: &str) -> Result<Uuid, PersistenceError> {
    Uuid::parse_str(aggregate_id).map_err(|err| {
        PersistenceError::UnknownError(format!("aggregate ids are UUIDs: {err}").into())
    })
}

fn database(err: sqlx::Error) -> PersistenceError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(err))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

impl PersistedEventRepository for TenantEventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self
            .store
            .load_stream(self.tenant, A::TYPE, parse_id(aggregate_id)?)
            .await
            .map_err(database)?;
        Ok(events.iter().map(|e| self.serialized(e)).collect())
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(events
            .into_iter()
            .filter(|e| e.sequence > last_sequence)
            .collect())
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut new_events = Vec::with_capacity(events.len());
        for event in events {
            new_events.push(NewEvent {
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: parse_id(&event.aggregate_id)?,
                sequence: i64::try_from(event.sequence)
                    .map_err(|err| PersistenceError::UnknownError(Box::new(err)))?,
                event_type: event.event_type.clone(),
                event_version: event.event_version.clone(),
                payload: event.payload.clone(),
                metadata: event.metadata.clone(),
                unique_keys: (self.unique_keys)(event),
                lot_movements: crate::aggregates::lot_movements_of(event),
            });
        }
        match self.store.append(self.tenant, new_events).await {
            Ok(_) => Ok(()),
            Err(AppendError::Conflict) => Err(PersistenceError::OptimisticLockError),
            Err(AppendError::Database(err)) => Err(database(err)),
            Err(other) => Err(PersistenceError::UnknownError(Box::new(other))),
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(replay_stream(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        // Every event of this aggregate type of the tenant, in position (commit) order.
        let rows = sqlx::query_as::<_, StoredEvent>(crate::event_store::select_events!(
            "where tenant_id = $1 and aggregate_type = $2 order by position"
        ))
        .bind(self.tenant)
        .bind(A::TYPE)
        .fetch_all(self.store.pool())
        .await
        .map_err(database)?;
        self.store
            .prepare(self.store.pool(), &rows)
            .await
            .map_err(database)?;
        Ok(replay_stream(
            rows.iter().map(|e| self.serialized(e)).collect(),
        ))
    }
}

fn replay_stream(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    stream
}
