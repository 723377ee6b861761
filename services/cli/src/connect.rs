//! What the one-shot subcommands share: the `--database-url` argument and a small pool.

use anyhow::Context;
use sqlx::PgPool;

/// The database a subcommand works on.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// Postgres URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/oms",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// A small pool for a one-shot command; gives up after a few seconds rather than hanging.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot connect to the database")
}

/// [`connect`], then apply the migrations; a login that may not apply them (the service's)
/// goes on when none is pending.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<PgPool> {
    let pool = connect(url).await?;
    oms_store::migrate::apply_or_check(&pool).await?;
    Ok(pool)
}

/// A one-connection pool, opened lazily, with the login's own role: what migrations run
/// through (`oms serve`'s own pool sets the service's role, which may not create tables).
pub fn migration_pool(url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy(url)
        .context("the migration database URL is not usable")
}

/// Opens one connection of the service's pool, so that a login that may not take the
/// service's role stops the start with what to do, instead of every request failing. Other
/// failures (Postgres restarting, say) are left to the pool, which retries.
pub async fn check_service_role(pool: &PgPool, role: Option<&str>) -> anyhow::Result<()> {
    let Some(role) = role else {
        return Ok(());
    };
    match pool.acquire().await {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {
            anyhow::bail!(
                "the DATABASE_URL login may not run as {role}: {}. Connect as the service's \
                 login (a member of {role}), or grant it: `grant {role} to <login>` \
                 (docs/operations.md, \"Database roles\")",
                error.message()
            )
        }
        _ => Ok(()),
    }
}

/// Parses an RFC 3339 instant given to `name`.
pub fn parse_instant(name: &str, value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            anyhow::anyhow!(
                "{name} must be an RFC 3339 timestamp like 2026-11-02T15:00:00Z, not {value:?}"
            )
        })
}
