//! `oms replay`: rebuilds read models from the event store with the projector's own apply
//! code.
//!
//! Each tenant is rebuilt in one transaction for all the chosen projections: lock their
//! checkpoints (the projector waits), delete the tenant's rows of the projections' tables, read
//! the tenant's events in large pages (each page once, for every projection) and feed them to a
//! [`Rebuild`] (each order folded once, in memory across pages, for orders and history alike;
//! history rows written page by page; each order's rows written once), move the checkpoints to
//! the last position, commit. Tenants are independent: `oms replay` rebuilds several side by
//! side. Readers keep seeing the previous rows until the commit and the new ones after it (MVCC
//! makes the swap atomic), an interrupted replay rolls back and leaves the live rows as they
//! were, and the projector continues from the rebuilt checkpoint.

use oms_projections::apply::{Rebuild, CAPACITY};
use oms_projections::Projection;
use uuid::Uuid;

use oms_projections::checkpoints::{self, Durability};
use oms_store::EventStore;

use crate::apply::{into_record, ProjectorError};

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
    let mut rebuilt = rebuild_tenant(store, &[projection], tenant, batch, progress).await?;
    Ok(rebuilt.pop().unwrap_or(Rebuilt {
        projection,
        tenant,
        events: 0,
        position: 0,
    }))
}

/// Rebuilds `projections` for `tenant` in one transaction, reading each page of `batch` events
/// once for all of them; `progress` is told how many events were applied (per projection)
/// after each page.
///
/// The checkpoints are locked first (in one statement, in the same order as the projector
/// locks them, so the two never deadlock) and the tenant's rows deleted; the pages go to a [`Rebuild`], which folds each
/// order in memory across pages and writes its rows once; then the checkpoints move and the
/// transaction commits. The projector waits for the commit and continues from the rebuilt
/// positions; readers see the old rows until the commit and the new ones after it.
pub async fn rebuild_tenant(
    store: &EventStore,
    projections: &[Projection],
    tenant: Uuid,
    batch: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Vec<Rebuilt>, ProjectorError> {
    rebuild_tenant_holding(store, projections, tenant, batch, CAPACITY, progress).await
}

/// [`rebuild_tenant`] holding at most `capacity` orders of a kind in memory (see
/// [`Rebuild::with_capacity`]): the rows are the same whatever it is.
pub async fn rebuild_tenant_holding(
    store: &EventStore,
    projections: &[Projection],
    tenant: Uuid,
    batch: i64,
    capacity: usize,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Vec<Rebuilt>, ProjectorError> {
    let mut projections = projections.to_vec();
    projections.sort();
    projections.dedup();
    let mut tx = store.pool().begin().await?;
    // The rebuilt rows' large values (documents, states, changes) are compressed with lz4
    // where the server has it: several times cheaper than the default pglz, and invisible to
    // readers (a value reads the same however it is compressed).
    sqlx::query(
        "select set_config('default_toast_compression', 'lz4', true) from pg_settings \
          where name = 'default_toast_compression' and 'lz4' = any(enumvals)",
    )
    .execute(&mut *tx)
    .await?;
    checkpoints::lock_many(&mut tx, &projections, tenant, Durability::Flushed).await?;
    for projection in &projections {
        checkpoints::clear(&mut tx, *projection, tenant).await?;
    }
    let mut rebuild = Rebuild::with_capacity(tenant, &projections, capacity);
    let mut position = 0;
    let mut applied = 0;
    loop {
        let events =
            EventStore::events_between(&mut *tx, tenant, position, i64::MAX, batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        store.prepare(&mut *tx, &events).await?;
        let records: Vec<_> = events
            .into_iter()
            .map(|event| into_record(store, event))
            .collect();
        rebuild.apply(&mut tx, &records).await?;
        let count = u64::try_from(records.len()).unwrap_or_default();
        applied += count;
        position = last;
        progress(count * u64::try_from(projections.len()).unwrap_or_default());
    }
    rebuild.finish(&mut tx).await?;
    for projection in &projections {
        checkpoints::advance(&mut tx, *projection, tenant, position).await?;
    }
    tx.commit().await?;
    Ok(projections
        .into_iter()
        .map(|projection| Rebuilt {
            projection,
            tenant,
            events: applied,
            position,
        })
        .collect())
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
