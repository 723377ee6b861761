//! `read.checkpoints`: how far each projection of each tenant has applied the tenant's events.
//! Written in the same transaction as the read models it describes, so a read model and its
//! checkpoint never disagree; the projector, a rebuild and read-your-writes all go through here.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::Projection;

/// Locks and returns the (projection, tenant) checkpoint, creating it at 0, and scopes the
/// transaction to the tenant for row-level security. Held until the caller commits, so one
/// writer at a time applies a tenant's events to a projection.
pub async fn lock(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "insert into read.checkpoints (tenant_id, projection) values ($1, $2)
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(projection.name())
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "select position from read.checkpoints
          where tenant_id = $1 and projection = $2 for update",
    )
    .bind(tenant)
    .bind(projection.name())
    .fetch_one(&mut *conn)
    .await
}

/// Moves a checkpoint locked by [`lock`] in the same transaction.
pub async fn advance(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update read.checkpoints set position = $3, updated_at = now()
          where tenant_id = $1 and projection = $2",
    )
    .bind(tenant)
    .bind(projection.name())
    .bind(position)
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
