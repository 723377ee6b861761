//! Start-up: the pool, the migrations, the API state, and the roles `oms serve` runs.

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

use crate::api::AppState;
use crate::auth::TokenKeys;
use crate::commands::Commands;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::EventStore;
use oms_domain::services::SystemClock;

/// A pool that connects lazily: the service starts (and answers 503) while Postgres is down,
/// and recovers by itself when it returns.
pub fn pool(config: &Config) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(config.pool_size)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy(config.database_url.expose())
}

/// Applies the migrations, waiting (with a log line every few seconds) until Postgres answers.
pub async fn migrate_when_reachable(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match crate::migrate::run(pool).await {
            Ok(()) => return Ok(()),
            Err(sqlx::migrate::MigrateError::Execute(err))
                if crate::api::error::is_unavailable(&err) =>
            {
                tracing::warn!(error = %err, "postgres is not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

/// The API's state over `pool`.
pub fn state(pool: PgPool, config: &Config, nats: Option<async_nats::Client>) -> AppState {
    let store = EventStore::new(pool.clone());
    AppState {
        commands: Commands::new(store, Arc::new(SystemClock)),
        pool,
        keys: TokenKeys::new(config.jwt_secret.expose()),
        metrics: Arc::new(Metrics::default()),
        nats,
        rate_limiter: config.rate_limit.map(|(per_second, burst)| {
            Arc::new(crate::api::rate_limit::RateLimiter::new(
                crate::api::rate_limit::RateLimit { per_second, burst },
            ))
        }),
    }
}

/// Connects to NATS in the background: the API serves (and `/ready` says 503) while NATS is
/// unreachable, and the client reconnects by itself.
pub async fn nats(url: &str) -> Option<async_nats::Client> {
    match async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
    {
        Ok(client) => Some(client),
        Err(err) => {
            tracing::warn!(error = %err, url, "NATS URL is not usable");
            None
        }
    }
}
