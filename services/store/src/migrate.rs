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
