//! Configuration from the environment (and the command line, which `clap` maps onto the same
//! names). Secrets are wrapped so they never reach a log line.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a pooled connection may sit idle and still be handed out without a ping. sqlx
/// pings each connection as it is put back, so one reused within this time was alive a
/// moment ago; Postgres restarting in between breaks it, and the statement that meets it
/// fails with the restart's other casualties (the client is answered 503 and may retry).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

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

/// The group role the service runs as (created by migration 0006): SELECT and INSERT on the
/// events, what the commands, the relay and the projector write, the read models under
/// row-level security.
pub const SERVICE_ROLE: &str = "oms_service";

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
    /// The role every connection of the pool runs as (`OMS_DB_ROLE`, default `oms_service`),
    /// set at connection start-up: a deployment that logs in as the owner or a superuser still
    /// runs with the service's privileges and under row-level security. None (or empty) keeps
    /// the login's own role.
    pub db_role: Option<String>,
    /// The longest one statement of the service may run (`OMS_STATEMENT_TIMEOUT_SECS`), so that
    /// no request or query holds a connection for ever; zero leaves the server's setting. A
    /// statement that needs longer lifts it for its own transaction: `set local
    /// statement_timeout = ...`.
    pub statement_timeout: Duration,
    /// Requests per second per tenant, and the burst (None: unlimited).
    pub rate_limit: Option<(f64, f64)>,
    /// Requests per second per client IP address on the routes a tenant's limit does not
    /// cover (unauthenticated, platform, and refused 401), and the burst (None: unlimited;
    /// `OMS_IP_RATE_LIMIT`).
    pub ip_rate_limit: Option<(f64, f64)>,
    /// The longest a request may take before it is answered 503 and its work dropped
    /// (`OMS_REQUEST_TIMEOUT_SECS`).
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's headers before the connection is
    /// closed (`OMS_HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// The token that opens `/metrics` on the API's listener (`OMS_METRICS_TOKEN`; None: 404
    /// there, metrics only on the operator listener).
    pub metrics_token: Option<Secret>,
    /// The `iss` every token must carry (`OMS_JWT_ISSUER`; None: not checked).
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (`OMS_JWT_AUDIENCE`; None: not checked).
    pub jwt_audience: Option<String>,
    /// The keys anchors may be signed with (`OMS_ANCHOR_KEY` or `OMS_ANCHOR_KEY_FILE`), for
    /// `GET /audit/verify`; empty: the verification answers 503.
    pub anchor_keys: Vec<oms_store::audit::AnchorKey>,
    /// The master key that wraps personal data keys (`OMS_DATA_KEY`); `None`: the public
    /// development key (`--demo` and tests only: `oms serve` refuses to start without one).
    pub data_key: Option<oms_store::personal::MasterKey>,
    /// How old an event may be before a valid anchor must cover it
    /// (`OMS_ANCHOR_MAX_AGE_SECS`).
    pub anchor_max_age: Duration,
    /// Whether commands decided at the same moment share one transaction (`OMS_GROUP_COMMIT`,
    /// default on; off runs each command in a transaction of its own, for comparison).
    pub group_commit: bool,
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
            db_role: Some(SERVICE_ROLE.to_string()),
            statement_timeout: Duration::from_secs(30),
            rate_limit: None,
            ip_rate_limit: None,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            metrics_token: None,
            group_commit: true,
            jwt_issuer: None,
            jwt_audience: None,
            anchor_keys: Vec::new(),
            data_key: None,
            anchor_max_age: oms_store::audit::DEFAULT_MAX_ANCHOR_AGE,
        }
    }
}

impl Config {
    /// A pool that connects lazily: the service starts (and answers 503) while Postgres is
    /// down, and recovers by itself when it returns.
    ///
    /// The role and the statement timeout are startup options of every connection (no extra
    /// round trip, and they hold for the relay's LISTEN connection too). Migrations need the
    /// login's own role (the owner): they do not go through this pool.
    pub fn pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        let mut options: sqlx::postgres::PgConnectOptions = self.database_url.expose().parse()?;
        if let Some(role) = self.db_role.as_deref().filter(|role| !role.is_empty()) {
            // Startup options are separated by spaces and not quoted: a plain identifier only.
            let plain = role.len() <= 63
                && role.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && role
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(sqlx::Error::Configuration(
                    format!(
                        "OMS_DB_ROLE {role:?} is not a plain role name (lowercase letters, \
                         digits and '_')"
                    )
                    .into(),
                ));
            }
            options = options.options([("role", role)]);
        }
        if !self.statement_timeout.is_zero() {
            let millis = self.statement_timeout.as_millis();
            options = options.options([("statement_timeout", format!("{millis}ms"))]);
        }
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.pool_size)
            .acquire_timeout(self.acquire_timeout)
            // sqlx pings a connection when it goes back to the pool and, by default, again
            // before handing it out: two round trips per use, for every statement a command
            // runs outside its batch. A connection just put back was checked then; only one
            // that has sat idle for a while (long enough for Postgres to have restarted
            // meanwhile) is checked again before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options))
    }
}
