//! Configuration from the environment (and the command line, which `clap` maps onto the same
//! names). Secrets are wrapped so they never reach a log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A value that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The secret `make run` and `oms token` use when `OMS_JWT_SECRET` is not set. Only `serve
/// --demo` accepts it; production must set its own.
pub const DEV_JWT_SECRET: &str = "oms-dev-secret-change-me";

/// What the service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the API listens (`OMS_BIND`).
    pub bind: SocketAddr,
    /// The Postgres URL (`DATABASE_URL`).
    pub database_url: Secret,
    /// The NATS URL (`NATS_URL`).
    pub nats_url: String,
    /// The HS256 secret tokens are signed with (`OMS_JWT_SECRET`).
    pub jwt_secret: Secret,
    /// The longest a token may be valid for (`OMS_JWT_MAX_LIFETIME_HOURS`).
    pub jwt_max_lifetime: chrono::Duration,
    /// Connections in the pool (`OMS_DB_POOL_SIZE`).
    pub pool_size: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// Requests per second per tenant, and the burst (None: unlimited).
    pub rate_limit: Option<(f64, f64)>,
}

impl Config {
    /// Defaults for tests and local runs: binds 127.0.0.1:0.
    pub fn local(database_url: impl Into<String>, jwt_secret: impl Into<String>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Secret::new(database_url),
            nats_url: "nats://127.0.0.1:4222".into(),
            jwt_secret: Secret::new(jwt_secret),
            jwt_max_lifetime: crate::auth::DEFAULT_MAX_LIFETIME,
            pool_size: 32,
            acquire_timeout: Duration::from_secs(3),
            rate_limit: None,
        }
    }
}

impl Config {
    /// A pool that connects lazily: the service starts (and answers 503) while Postgres is
    /// down, and recovers by itself when it returns.
    pub fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.pool_size)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy(self.database_url.expose())
    }
}
