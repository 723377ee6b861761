//! `oms serve`: the api, relay and projector roles — all in one process by default, or one
//! alone with `--role`, so production can scale them apart.
//!
//! Every process answers `/health`, `/ready` and `/metrics` on `--bind`: the API's own
//! endpoints when it runs the API, and otherwise those of [`crate::roles`] (the relay's or the
//! projector's counters, the pipeline's lag, and for a relay its failing tenants).
//!
//! Shutdown: SIGTERM or SIGINT cancels one token that every role watches. The API stops
//! accepting connections and lets requests in flight finish; the relay and the projector
//! finish their current batch; the process exits 0. If that takes longer than
//! `--shutdown-timeout-secs`, it exits 1 with what was still running.

use anyhow::Context;
use oms_api::auth::{Role, TokenKeys};
use oms_api::config::{Config, DEV_JWT_SECRET};
use oms_api::metrics::Metrics;
use oms_api::{AppState, Application};
use oms_projector::{Projector, ProjectorConfig};
use oms_relay::anchors::Anchorer;
use oms_relay::{Relay, RelayConfig};
use oms_store::EventStore;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connect::DbArgs;
use crate::roles::{self, Endpoints};

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeRole {
    /// api, relay and projector in one process.
    All,
    /// The HTTP API only.
    Api,
    /// The relay (event store → NATS) only.
    Relay,
    /// The projector (NATS → read models) only.
    Projector,
}

/// How to serve.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The owner's URL, which the migrations run through at start-up (default: DATABASE_URL,
    /// with the login's own role). When that login may not migrate and migrations are
    /// pending, the start fails: run `oms migrate` as the owner.
    #[arg(long, env = "OMS_MIGRATION_DATABASE_URL", hide_env_values = true)]
    migration_database_url: Option<String>,
    /// The role the service's connections run as (set at connection start-up): its privileges
    /// and row-level security apply even when DATABASE_URL logs in as the owner or a
    /// superuser. Empty: the login's own role.
    #[arg(long, env = "OMS_DB_ROLE", default_value = oms_api::config::SERVICE_ROLE)]
    db_role: String,
    /// The longest one statement of the service may run, in seconds; 0 leaves the server's
    /// setting.
    #[arg(long, env = "OMS_STATEMENT_TIMEOUT_SECS", default_value_t = 30)]
    statement_timeout_secs: u64,
    /// Whether commands decided at the same moment share one transaction (group commit);
    /// `false` runs each in a transaction of its own.
    #[arg(long, env = "OMS_GROUP_COMMIT", default_value_t = true, action = clap::ArgAction::Set)]
    group_commit: bool,
    /// Where the API listens; a relay or projector process serves its health, readiness and
    /// metrics there.
    #[arg(long, env = "OMS_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    #[command(flatten)]
    nats: crate::nats::NatsArgs,
    /// The longest a token may be valid for, in hours (counted from its `iat`).
    #[arg(long, env = "OMS_JWT_MAX_LIFETIME_HOURS", default_value_t = 168)]
    jwt_max_lifetime_hours: u32,
    /// Which role to run.
    #[arg(long, value_enum, default_value = "all")]
    role: ServeRole,
    /// Create a demo tenant on first run and print its id, an admin token and the URL.
    #[arg(long)]
    demo: bool,
    /// The JetStream stream the relay publishes to and the projector reads.
    #[arg(long, env = "OMS_STREAM", default_value = "OMS_EVENTS")]
    stream: String,
    /// How long JetStream drops republished events by their id, in seconds (when the relay
    /// creates the stream).
    #[arg(long, env = "OMS_STREAM_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    stream_duplicate_window_secs: u64,
    /// How long the stream keeps events, in seconds; 0 keeps them for ever (when the relay
    /// creates the stream). The event store stays the record either way.
    #[arg(long, env = "OMS_STREAM_MAX_AGE_SECS", default_value_t = 0)]
    stream_max_age_secs: u64,
    /// Requests per second each tenant may make (a burst of twice as many is allowed); 0
    /// turns the limit off.
    #[arg(long, env = "OMS_RATE_LIMIT", default_value_t = 500.0)]
    rate_limit: f64,
    #[command(flatten)]
    limits: LimitArgs,
    /// Connections in the database pool.
    #[arg(long, env = "OMS_DB_POOL_SIZE", default_value_t = 32)]
    pool_size: u32,
    /// Seconds to wait, after SIGTERM or SIGINT, for requests in flight and the relay's and
    /// projector's current batches before giving up (exit 1).
    #[arg(long, env = "OMS_SHUTDOWN_TIMEOUT_SECS", default_value_t = 20)]
    shutdown_timeout_secs: u64,
    /// How old, in seconds, an event may be before `GET /audit/verify` needs a signed anchor
    /// to cover it (the relay anchors every 10 s). The anchor key itself comes from
    /// `OMS_ANCHOR_KEY` or `OMS_ANCHOR_KEY_FILE` only.
    #[arg(long, env = "OMS_ANCHOR_MAX_AGE_SECS", default_value_t = 300)]
    anchor_max_age_secs: u64,
}

/// The bounds on what one client can make the service do, and where metrics are served.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Requests per second each client address may make on what a tenant's limit does not
    /// cover: the unauthenticated and platform routes, and requests refused 401 (a burst of
    /// twice as many is allowed); 0 turns the limit off.
    #[arg(long, env = "OMS_IP_RATE_LIMIT", default_value_t = 20.0)]
    ip_rate_limit: f64,
    /// The longest a request may run, in seconds, before it is answered 503 and abandoned.
    #[arg(long, env = "OMS_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// The longest a client may take to send a request's headers, in seconds, before its
    /// connection is closed.
    #[arg(long, env = "OMS_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// The operator's listener, serving `/metrics` without authentication (it names every
    /// tenant: keep it on loopback or a private network); empty: none. On `--bind`, `/metrics`
    /// answers only requests bearing `OMS_METRICS_TOKEN`, and is 404 without one configured.
    #[arg(long, env = "OMS_METRICS_BIND", default_value = "127.0.0.1:9464")]
    metrics_bind: String,
    /// The `iss` every token must carry (and `oms token` mints); unset: not checked.
    #[arg(long, env = "OMS_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The `aud` every token must carry (and `oms token` mints); unset: not checked.
    #[arg(long, env = "OMS_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
}

impl LimitArgs {
    /// Sets the limits on `config`; the metrics token comes from the environment only
    /// (`OMS_METRICS_TOKEN`), never the command line where `ps` would show it.
    fn apply(&self, config: &mut Config) {
        config.ip_rate_limit =
            (self.ip_rate_limit > 0.0).then_some((self.ip_rate_limit, self.ip_rate_limit * 2.0));
        config.request_timeout = Duration::from_secs(self.request_timeout_secs.max(1));
        config.header_read_timeout = Duration::from_secs(self.header_read_timeout_secs.max(1));
        config.metrics_token = std::env::var("OMS_METRICS_TOKEN")
            .ok()
            .filter(|token| !token.is_empty())
            .map(oms_api::config::Secret::new);
        config.jwt_issuer = self.jwt_issuer.clone().filter(|i| !i.is_empty());
        config.jwt_audience = self.jwt_audience.clone().filter(|a| !a.is_empty());
    }

    /// The operator's listener, if one is configured.
    fn metrics_bind(&self) -> anyhow::Result<Option<SocketAddr>> {
        let bind = self.metrics_bind.trim();
        if bind.is_empty() {
            return Ok(None);
        }
        bind.parse()
            .map(Some)
            .with_context(|| format!("OMS_METRICS_BIND {bind:?} is not an address:port"))
    }
}

impl ServeArgs {
    fn runs(&self, role: ServeRole) -> bool {
        self.role == ServeRole::All || self.role == role
    }

    /// The relay's and the stream's settings from the command line.
    fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            stream: self.stream.clone(),
            duplicate_window: Duration::from_secs(self.stream_duplicate_window_secs),
            max_age: Duration::from_secs(self.stream_max_age_secs),
            ..Default::default()
        }
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down within the bound.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let jwt_secret = jwt_secret(|name| std::env::var(name).ok(), args.demo)?;
    // Checked before the database is touched: NATS settings that cannot work stop the start.
    let nats_settings = args.nats.settings().context("NATS settings")?;
    let anchor_key = anchor_key(
        |name| std::env::var(name).ok(),
        args.demo,
        args.runs(ServeRole::Relay),
    )?;
    let data_key = data_key(|name| std::env::var(name).ok(), args.demo)?;
    let mut config = Config::local(args.db.database_url.clone(), jwt_secret);
    config.data_key = Some(data_key.clone());
    config.jwt_max_lifetime = chrono::Duration::hours(i64::from(args.jwt_max_lifetime_hours));
    config.bind = args.bind;
    config.nats_url = args.nats.redacted_url();
    config.pool_size = args.pool_size;
    config.rate_limit = (args.rate_limit > 0.0).then_some((args.rate_limit, args.rate_limit * 2.0));
    args.limits.apply(&mut config);
    // The current key first; keys of before a rotation still check the anchors they signed.
    config.anchor_keys = anchor_key.iter().cloned().collect();
    if !config.anchor_keys.is_empty() {
        config
            .anchor_keys
            .extend(oms_store::audit::AnchorKey::previous_from_env(|name| {
                std::env::var(name).ok()
            })?);
    }
    config.anchor_max_age = Duration::from_secs(args.anchor_max_age_secs);
    let metrics_bind = args.limits.metrics_bind()?;

    config.db_role = Some(args.db_role.clone()).filter(|role| !role.is_empty());
    config.statement_timeout = Duration::from_secs(args.statement_timeout_secs);
    config.group_commit = args.group_commit;

    // Migrations run with the login's own role (the owner), not the service's.
    let migrations = crate::connect::migration_pool(
        args.migration_database_url
            .as_deref()
            .unwrap_or(&args.db.database_url),
    )?;
    oms_store::migrate::apply_or_check(&migrations).await?;
    migrations.close().await;
    let pool = config.pool().context("DATABASE_URL is not usable")?;
    crate::connect::check_service_role(&pool, config.db_role.as_deref()).await?;
    let nats = nats(&nats_settings, &args.nats).await;
    let store = EventStore::new(pool.clone()).with_master_key(data_key);

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut registry = Registry::default();
    // The relay, kept for the health endpoints of a relay process (its failing tenants).
    let mut relay_handle = None;
    if args.runs(ServeRole::Relay) || args.runs(ServeRole::Projector) {
        let Some(client) = nats.clone() else {
            anyhow::bail!(
                "the relay and projector roles need NATS at {}",
                config.nats_url
            );
        };
        let jetstream = async_nats::jetstream::new(client);
        if args.runs(ServeRole::Relay) {
            let relay = Relay::new(store.clone(), jetstream.clone(), args.relay_config());
            relay.metrics().register(&mut registry);
            relay_handle = Some(relay.clone());
            // Anchors: each tenant's head, signed, published outside the database
            // (docs/audit.md). `anchor_key` refused to start the relay without a key.
            let Some(key) = anchor_key.clone() else {
                anyhow::bail!("the relay role needs an anchor key");
            };
            let anchorer = Anchorer::new(
                store.clone(),
                jetstream.clone(),
                key,
                100,
                Duration::from_secs(10),
            );
            tasks.spawn(anchorer.run(shutdown.clone()));
            let stop = shutdown.clone();
            tasks.spawn(async move {
                if let Err(err) = relay.run(stop).await {
                    tracing::error!(error = %err, "relay stopped");
                }
            });
        }
        if args.runs(ServeRole::Projector) {
            let stream = args.relay_config();
            let projector = Projector::new(
                store.clone(),
                jetstream.clone(),
                ProjectorConfig {
                    stream: stream.stream.clone(),
                    ..Default::default()
                },
            );
            projector.metrics().register(&mut registry);
            let stop = shutdown.clone();
            tasks.spawn(async move {
                // The projector needs the stream; the relay creates it, and so does this.
                while oms_relay::ensure_stream(&jetstream, &stream).await.is_err() {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                if let Err(err) = projector.run(stop).await {
                    tracing::error!(error = %err, "projector stopped");
                }
            });
        }
    }
    if args.runs(ServeRole::Api) {
        // Every command leaves an idempotency record; the API processes take the expired ones
        // away again.
        tasks.spawn(purge_idempotency_records(pool.clone(), shutdown.clone()));
        let state = AppState::new(
            pool.clone(),
            &config,
            nats,
            Arc::new(Metrics::new(registry)),
        );
        if let Some(addr) = metrics_bind {
            let operator = Application::build_operator(addr, state.clone())
                .await
                .with_context(|| format!("cannot bind OMS_METRICS_BIND {addr}"))?;
            tracing::info!(url = %format!("http://{}:{}/metrics", addr.ip(), operator.port()), "serving metrics");
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let _ = operator.run_until_stopped(stop.cancelled_owned()).await;
            });
        }
        let app = Application::build(config.bind, state)
            .await
            .context("cannot bind")?;
        let url = format!("http://{}:{}", config.bind.ip(), app.port());
        if args.demo {
            print_demo(&pool, &config, &url).await?;
        }
        tracing::info!(%url, "listening");
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(err) = app.run_until_stopped(stop.cancelled_owned()).await {
                tracing::error!(error = %err, "the API server failed");
            }
        });
    } else {
        let role = match args.role {
            ServeRole::Relay => "relay",
            _ => "projector",
        };
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot bind {}", config.bind))?;
        let address = listener.local_addr().context("cannot bind")?;
        let endpoints = Arc::new(
            Endpoints::new(role, pool.clone(), nats, registry, relay_handle)
                .with_metrics_token(config.metrics_token.clone()),
        );
        tracing::info!(role, url = %format!("http://{address}"), "running; serving /health, /ready and /metrics");
        if let Some(addr) = metrics_bind {
            let operator = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind OMS_METRICS_BIND {addr}"))?;
            tracing::info!(url = %format!("http://{}/metrics", operator.local_addr()?), "serving metrics");
            tasks.spawn(roles::serve(
                operator,
                roles::operator_router(endpoints.clone()),
                shutdown.clone(),
                config.header_read_timeout,
            ));
        }
        tasks.spawn(roles::serve(
            listener,
            roles::router(endpoints),
            shutdown.clone(),
            config.header_read_timeout,
        ));
    }
    tasks.close();

    wait_for_signal().await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let bound = Duration::from_secs(args.shutdown_timeout_secs);
    if tokio::time::timeout(bound, tasks.wait()).await.is_err() {
        anyhow::bail!(
            "{} task(s) still running {}s after the shutdown signal; exiting anyway",
            tasks.len(),
            bound.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// The anchor key, from `OMS_ANCHOR_KEY` or the file `OMS_ANCHOR_KEY_FILE` names (never the
/// command line). The relay signs anchors with it and the API checks them, so a relay
/// (`needed`) refuses to start without one — unsigned anchors would vouch for nothing — except
/// with `--demo`, which takes the public development key and says so. A key that is given
/// must be usable (at least 32 bytes, a readable file) whatever the role.
fn anchor_key(
    env: impl Fn(&str) -> Option<String>,
    demo: bool,
    needed: bool,
) -> anyhow::Result<Option<oms_store::audit::AnchorKey>> {
    use oms_store::audit::AnchorKey;
    match AnchorKey::from_env(env)? {
        Some(key) => Ok(Some(key)),
        None if demo => {
            tracing::warn!(
                "OMS_ANCHOR_KEY is not set; signing anchors with the public development key \
                 (demo mode): anyone can forge them"
            );
            Ok(Some(AnchorKey::development()))
        }
        None if needed => anyhow::bail!(
            "the relay signs the anchors: set OMS_ANCHOR_KEY or OMS_ANCHOR_KEY_FILE (at least \
             32 bytes; or run with --demo for local use)"
        ),
        None => Ok(None),
    }
}

/// The master key of personal data (`OMS_DATA_KEY` or the file `OMS_DATA_KEY_FILE` names;
/// never the command line). Without one the service refuses to start — personal data would
/// be wrapped by a key anyone can read — except with `--demo`, which takes the public
/// development key and says so.
fn data_key(
    env: impl Fn(&str) -> Option<String>,
    demo: bool,
) -> anyhow::Result<oms_store::personal::MasterKey> {
    use oms_store::personal::MasterKey;
    match MasterKey::from_env(env)? {
        Some(key) => Ok(key),
        None if demo => {
            tracing::warn!(
                "OMS_DATA_KEY is not set; wrapping personal data keys with the public \
                 development key (demo mode): it protects nothing"
            );
            Ok(MasterKey::development())
        }
        None => anyhow::bail!(
            "personal data is encrypted: set OMS_DATA_KEY or OMS_DATA_KEY_FILE (at least 32 \
             bytes; or run with --demo for local use)"
        ),
    }
}

/// The shortest signing secret accepted outside `--demo`: HS256's key should be at least as
/// long as its 32-byte hash.
const MIN_SECRET_BYTES: usize = 32;

/// The secret tokens are signed with, from `OMS_JWT_SECRET` or the file `OMS_JWT_SECRET_FILE`
/// names — never from the command line, where `ps` would show it. Outside `--demo` it must
/// not be the development secret (anyone can read it in this repository and mint an admin
/// token) and must have at least [`MIN_SECRET_BYTES`] bytes.
fn jwt_secret(env: impl Fn(&str) -> Option<String>, demo: bool) -> anyhow::Result<String> {
    let secret = match (env("OMS_JWT_SECRET"), env("OMS_JWT_SECRET_FILE")) {
        (Some(secret), _) if !secret.is_empty() => Some(secret),
        (_, Some(path)) if !path.is_empty() => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read OMS_JWT_SECRET_FILE {path}"))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        _ => None,
    };
    if demo {
        return Ok(secret.unwrap_or_else(|| {
            tracing::warn!("OMS_JWT_SECRET is not set; using the development secret (demo mode)");
            DEV_JWT_SECRET.to_string()
        }));
    }
    match secret {
        None => anyhow::bail!(
            "set OMS_JWT_SECRET or OMS_JWT_SECRET_FILE (or run with --demo for local use)"
        ),
        Some(secret) if secret == DEV_JWT_SECRET => anyhow::bail!(
            "OMS_JWT_SECRET is the development secret, which anyone can read: set a secret of \
             your own (or run with --demo for local use)"
        ),
        Some(secret) if secret.len() < MIN_SECRET_BYTES => anyhow::bail!(
            "OMS_JWT_SECRET has {} bytes; it needs at least {MIN_SECRET_BYTES} (or run with \
             --demo for local use)",
            secret.len()
        ),
        Some(secret) => Ok(secret),
    }
}

/// Deletes idempotency records past their retention every ten minutes, in batches so that no
/// statement holds many rows; several API processes doing it at once is harmless.
async fn purge_idempotency_records(pool: PgPool, shutdown: CancellationToken) {
    const BATCH: i64 = 10_000;
    loop {
        loop {
            match oms_store::idempotency::purge_expired(&pool, BATCH).await {
                Ok(deleted) if deleted == u64::try_from(BATCH).unwrap_or(u64::MAX) => {
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                Ok(deleted) => {
                    if deleted > 0 {
                        tracing::info!(deleted, "expired idempotency records purged");
                    }
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "purging expired idempotency records failed");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Resolves on the first SIGTERM (what `docker stop` and Kubernetes send) or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `--demo`: the demo tenant (created on first run), an admin token and where to start.
async fn print_demo(pool: &PgPool, config: &Config, url: &str) -> anyhow::Result<()> {
    let tenant = match oms_store::tenants::find_by_slug(pool, "demo").await? {
        Some(tenant) => tenant,
        None => oms_store::tenants::create(pool, "Demo Meats", "demo").await?,
    };
    let token = TokenKeys::new(config.jwt_secret.expose())
        .with_issuer_and_audience(config.jwt_issuer.clone(), config.jwt_audience.clone())
        .mint(
            "demo-admin",
            Some("Demo Admin"),
            Some(tenant.id),
            vec![Role::Admin],
            chrono::Duration::days(7),
        );
    println!("oms is serving at {url}  (API docs: {url}/docs)");
    println!("demo tenant: {}", tenant.id);
    println!("admin token (7 days):\nexport TOKEN={token}");
    Ok(())
}

/// Connects to NATS in the background: the API serves (and `/ready` says 503) while NATS is
/// unreachable, and the client reconnects by itself. The URL is logged without its
/// credentials.
async fn nats(
    settings: &crate::nats::NatsSettings,
    args: &crate::nats::NatsArgs,
) -> Option<async_nats::Client> {
    match settings.connect_in_background().await {
        Ok(client) => Some(client),
        Err(err) => {
            tracing::warn!(url = %args.redacted_url(), error = %err, "the NATS URL is not usable");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_relay_needs_an_anchor_key_outside_demo_and_a_given_key_must_be_long() {
        let long = "a".repeat(32);
        assert!(anchor_key(env(&[]), false, true).is_err());
        assert!(anchor_key(env(&[("OMS_ANCHOR_KEY", "short")]), false, false).is_err());
        assert!(anchor_key(env(&[("OMS_ANCHOR_KEY", "short")]), true, true).is_err());
        assert!(anchor_key(env(&[]), false, false).unwrap().is_none());
        let given = anchor_key(env(&[("OMS_ANCHOR_KEY", &long)]), false, true)
            .unwrap()
            .unwrap();
        assert_ne!(given.id(), oms_store::audit::AnchorKey::development().id());
        assert_eq!(
            anchor_key(env(&[]), true, true).unwrap().unwrap().id(),
            oms_store::audit::AnchorKey::development().id()
        );
    }

    #[test]
    fn outside_demo_the_secret_must_be_given_long_and_not_the_development_one() {
        let long = "x".repeat(MIN_SECRET_BYTES);
        assert_eq!(
            jwt_secret(env(&[("OMS_JWT_SECRET", &long)]), false).unwrap(),
            long
        );
        for vars in [
            &[][..],
            &[("OMS_JWT_SECRET", "")],
            &[("OMS_JWT_SECRET", "short")],
            &[("OMS_JWT_SECRET", DEV_JWT_SECRET)],
        ] {
            assert!(jwt_secret(env(vars), false).is_err(), "{vars:?}");
        }
        // --demo takes anything, and the development secret when none is given.
        assert_eq!(jwt_secret(env(&[]), true).unwrap(), DEV_JWT_SECRET);
        assert_eq!(
            jwt_secret(env(&[("OMS_JWT_SECRET", "short")]), true).unwrap(),
            "short"
        );
    }

    #[test]
    fn the_secret_may_come_from_a_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let secret = "y".repeat(40);
        std::fs::write(file.path(), format!("{secret}\n")).unwrap();
        let path = file.path().to_str().unwrap();
        assert_eq!(
            jwt_secret(env(&[("OMS_JWT_SECRET_FILE", path)]), false).unwrap(),
            secret
        );
        assert!(jwt_secret(env(&[("OMS_JWT_SECRET_FILE", "/nonexistent/oms")]), false).is_err());
    }
}
