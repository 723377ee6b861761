//! `oms replay`: rebuilds read models from the event store with the projector's own apply
//! code.
//!
//! Each (projection, tenant) is rebuilt in one transaction: lock its checkpoint (the
//! projector waits), delete the tenant's rows of the projection's tables, read the tenant's
//! events in batches and apply each, move the checkpoint to the last position, commit. Readers
//! keep seeing the previous rows until the commit and the new ones after it (MVCC makes the
//! swap atomic), an interrupted replay rolls back and leaves the live rows as they were, and the
//! projector continues from the rebuilt checkpoint.

use oms_projections::Projection;
use uuid::Uuid;

use oms_projections::checkpoints;
use oms_store::EventStore;

use crate::apply::{record, ProjectorError};

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// The projection.
    pub projection: Projection,
    /// The tenant.
    pub tenant: Uuid,
    /// Events applied.
    pub events: u64,
    /// The checkpoint it ends at.
    pub position: i64,
}

/// Rebuilds `projection` for `tenant`, reading `batch` events at a time; `progress` is told
/// how many events were applied after each batch.
pub async fn rebuild(
    store: &EventStore,
    projection: Projection,
    tenant: Uuid,
    batch: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Rebuilt, ProjectorError> {
    let mut tx = store.pool().begin().await?;
    checkpoints::lock(&mut tx, projection, tenant).await?;
    checkpoints::clear(&mut tx, projection, tenant).await?;
    let mut position = 0;
    let mut applied = 0;
    loop {
        let events =
            EventStore::events_between(&mut *tx, tenant, position, i64::MAX, batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        let records: Vec<_> = events.iter().map(|event| record(store, event)).collect();
        projection.apply_batch(&mut tx, &records).await?;
        applied += u64::try_from(events.len()).unwrap_or_default();
        position = last;
        progress(u64::try_from(events.len()).unwrap_or_default());
    }
    checkpoints::advance(&mut tx, projection, tenant, position).await?;
    tx.commit().await?;
    Ok(Rebuilt {
        projection,
        tenant,
        events: applied,
        position,
    })
}

/// The tenants to rebuild: the given ones (each must exist) or every tenant, with their head
/// positions (the number of events a rebuild of one projection reads).
pub async fn tenants(store: &EventStore, only: &[Uuid]) -> Result<Vec<(Uuid, i64)>, ReplayError> {
    let all: Vec<(Uuid, i64)> = store
        .heads()
        .await?
        .into_iter()
        .map(|(tenant, head)| (tenant, head.position))
        .collect();
    if only.is_empty() {
        return Ok(all);
    }
    only.iter()
        .map(|wanted| {
            all.iter()
                .find(|(tenant, _)| tenant == wanted)
                .copied()
                .ok_or(ReplayError::UnknownTenant(*wanted))
        })
        .collect()
}

/// Why a replay did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No such tenant.
    #[error("there is no tenant {0}")]
    UnknownTenant(Uuid),
    /// No such projection.
    #[error("there is no projection {0} (known: reference_data, orders, order_history)")]
    UnknownProjection(String),
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Applying failed.
    #[error(transparent)]
    Projector(#[from] ProjectorError),
}
