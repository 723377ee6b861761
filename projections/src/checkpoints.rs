//! `read.checkpoints`: how far each projection of each tenant has applied the tenant's events.
//! Written in the same transaction as the read models it describes, so a read model and its
//! checkpoint never disagree; the projector, a rebuild and read-your-writes all go through here.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::Projection;

/// Whether the commit of a transaction that moves a checkpoint waits for its WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// As the server is configured: what a rebuild or an operator's command commits is there
    /// after a crash once the commit has returned.
    Flushed,
    /// The commit returns before the flush (`synchronous_commit` off, for this transaction
    /// only). For the projector: a read model and its checkpoint are committed together, so a
    /// crash of Postgres loses both or neither, and what it lost is still in the event store.
    /// The messages were acknowledged, but the sweeper finds the checkpoint behind the head
    /// and applies the rest from the store. In exchange the projector does not wait for a
    /// flush per tenant and projection.
    Deferred,
}

/// Locks and returns the (projection, tenant) checkpoint, creating it at 0, and scopes the
/// transaction to the tenant for row-level security, with commits flushed as configured (see
/// [`lock_with`]).
pub async fn lock(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
) -> Result<i64, sqlx::Error> {
    lock_with(conn, projection, tenant, Durability::Flushed).await
}

/// [`lock`], choosing whether the transaction's commit waits for its WAL flush. Held until
/// the caller commits, so one writer at a time applies a tenant's events to a projection.
pub async fn lock_with(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
    durability: Durability,
) -> Result<i64, sqlx::Error> {
    Ok(lock_many(conn, &[projection], tenant, durability).await?[0])
}

/// Locks and returns the checkpoints of several projections of `tenant` (in the order of
/// `projections`), as [`lock_with`] does one: the projector applies a tenant's events to
/// every projection in one transaction, and locks their checkpoints in one statement.
///
/// The rows exist after a tenant's first event, so the lock is tried first and rows are
/// only created when some are missing: one statement on every transaction of the projector.
pub async fn lock_many(
    conn: &mut PgConnection,
    projections: &[Projection],
    tenant: Uuid,
    durability: Durability,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query(
        "select set_config('app.tenant_id', $1, true),
                set_config('synchronous_commit',
                           case when $2 then 'off' else current_setting('synchronous_commit') end,
                           true)",
    )
    .bind(tenant.to_string())
    .bind(durability == Durability::Deferred)
    .execute(&mut *conn)
    .await?;
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    // Locked in the projections' name order, whoever asks, so two writers of overlapping
    // sets never wait for each other in a cycle.
    let select = || {
        sqlx::query_as::<_, (String, i64)>(
            "select projection, position from read.checkpoints
              where tenant_id = $1 and projection = any($2)
              order by projection for update",
        )
        .bind(tenant)
        .bind(&names)
    };
    let mut rows = select().fetch_all(&mut *conn).await?;
    if rows.len() < names.len() {
        sqlx::query(
            "insert into read.checkpoints (tenant_id, projection)
             select $1, unnest($2::text[]) order by 2
             on conflict do nothing",
        )
        .bind(tenant)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
        rows = select().fetch_all(&mut *conn).await?;
    }
    names
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(projection, _)| projection == name)
                .map(|(_, position)| *position)
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// Moves a checkpoint locked by [`lock`] in the same transaction.
pub async fn advance(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
    position: i64,
) -> Result<(), sqlx::Error> {
    advance_many(conn, tenant, &[(projection, position)]).await
}

/// Moves several checkpoints of `tenant` locked by [`lock_many`] in the same transaction, in
/// one statement.
pub async fn advance_many(
    conn: &mut PgConnection,
    tenant: Uuid,
    positions: &[(Projection, i64)],
) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = positions.iter().map(|(p, _)| p.name()).collect();
    let values: Vec<i64> = positions.iter().map(|(_, position)| *position).collect();
    sqlx::query(
        "update read.checkpoints c set position = v.position, updated_at = now()
           from unnest($2::text[], $3::bigint[]) as v(projection, position)
          where c.tenant_id = $1 and c.projection = v.projection",
    )
    .bind(tenant)
    .bind(&names)
    .bind(&values)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every checkpoint: `(tenant, projection, position)`, for the sweeper to compare with the
/// tenants' heads.
pub async fn all(pool: &PgPool) -> Result<Vec<(Uuid, Projection, i64)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, i64)> =
        sqlx::query_as("select tenant_id, projection, position from read.checkpoints")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(tenant, name, position)| {
            Projection::from_name(&name).map(|projection| (tenant, projection, position))
        })
        .collect())
}

/// The lowest checkpoint of `tenant` over every projection (0 if one has none yet): the
/// position up to which every read model of the tenant is complete.
pub async fn read_models_position(pool: &PgPool, tenant: Uuid) -> Result<i64, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select projection, position from read.checkpoints where tenant_id = $1")
            .bind(tenant)
            .fetch_all(pool)
            .await?;
    Ok(Projection::ALL
        .iter()
        .map(|p| {
            rows.iter()
                .find(|(name, _)| name == p.name())
                .map(|(_, position)| *position)
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0))
}

/// Deletes `tenant`'s rows from every table of `projection`, inside the caller's transaction:
/// where a rebuild starts, after [`lock`] and before the events are applied again.
pub async fn clear(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        // Table names come from the projection's own constant list, never from input.
        sqlx::query(&format!("delete from read.{table} where tenant_id = $1"))
            .bind(tenant)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
