//! The embedded migrations: one linear sequence, applied by `oms migrate` and at start-up.

use sqlx::migrate::Migrator;
use sqlx::PgPool;

/// Every migration under `migrations/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Applies the migrations that are not applied yet. Safe to run concurrently: sqlx takes an
/// advisory lock.
pub async fn run(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Whether every embedded migration is applied.
pub async fn is_up_to_date(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(applied).unwrap_or_default() >= MIGRATOR.iter().count())
}

/// Applies the migrations, waiting (with a log line every few seconds) until Postgres answers:
/// a service started before its database comes up waits for it instead of exiting.
pub async fn run_when_reachable(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut delay = std::time::Duration::from_millis(250);
    loop {
        match run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(err)) if crate::is_unavailable(&err) => {
                tracing::warn!(error = %err, "postgres is not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Why the schema could not be brought up to date: the migrations failed and some are still
/// pending. The usual cause is a login that is not the database's owner (the service's own
/// login, whose role may not create or alter tables).
#[derive(Debug, thiserror::Error)]
#[error(
    "migrations are pending and cannot be applied: {source}. Run `oms migrate` as the \
     database's owner (or give `oms serve` the owner's URL in OMS_MIGRATION_DATABASE_URL)"
)]
pub struct PendingMigrations {
    /// What applying them failed with.
    #[source]
    pub source: sqlx::migrate::MigrateError,
}

/// What `oms serve` and the one-shot commands do at start-up: apply the pending migrations
/// through `pool` (waiting for Postgres, as [`run_when_reachable`]), which must connect with
/// the login's own role (the owner; not the service's pool, whose `role` may not create
/// tables). When that fails but every migration is applied already — a service login that
/// may not migrate, with the owner having migrated — it goes on; otherwise
/// [`PendingMigrations`].
pub async fn apply_or_check(pool: &PgPool) -> Result<(), PendingMigrations> {
    let Err(source) = run_when_reachable(pool).await else {
        return Ok(());
    };
    match is_up_to_date(pool).await {
        Ok(true) => {
            tracing::info!(
                reason = %source,
                "this login does not apply migrations; every migration is applied already"
            );
            Ok(())
        }
        _ => Err(PendingMigrations { source }),
    }
}
