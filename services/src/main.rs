//! `oms`: the single entry point. `oms serve` runs the API (and the relay and projector roles),
//! `oms migrate` applies migrations, `oms token` mints a development token, `oms tenant`
//! provisions tenants.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use oms::auth::{Role, TokenKeys};
use oms::config::{Config, DEV_JWT_SECRET};
use std::net::SocketAddr;
use std::process::ExitCode;
use uuid::Uuid;

/// Event-sourced, multi-tenant order management for meat traders.
#[derive(Debug, Parser)]
#[command(name = "oms", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (api, relay and projector roles; one alone with --role).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DbArgs),
    /// Mint a token for local use.
    Token(TokenArgs),
    /// Create or list tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Rebuild read models from the event store.
    Replay(ReplayArgs),
    /// Audit: an order's history and past state, exports, chain verification.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure commands per second against postgres-es and Postgres's own ceiling.
    Bench(BenchArgs),
    /// Manage analysts' SQL logins to the read models.
    Analyst {
        #[command(subcommand)]
        command: AnalystCommand,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// A URL of the Postgres server; the bench creates and drops a database of its own.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,
    /// Seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Tenants the clients spread over.
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Postgres's own ceiling (transactions/s of scripts/pg-ceiling.sh, same run) to report
    /// ratios to.
    #[arg(long)]
    ceiling: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Rebuild only this projection (repeatable): reference_data, orders, order_history.
    #[arg(long = "projection")]
    projections: Vec<String>,
    /// Rebuild only this tenant (repeatable).
    #[arg(long = "tenant")]
    tenants: Vec<Uuid>,
    /// Events read per batch.
    #[arg(long, default_value_t = 1000)]
    batch: i64,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// An order as it was (now, or at --as-of) and its events up to then.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The order's id, or its order number (then --tenant is needed when several tenants
        /// have one).
        order: String,
        /// An RFC 3339 instant.
        #[arg(long)]
        as_of: Option<String>,
        /// The tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every event of a tenant with metadata, position and hash, streamed.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant.
        #[arg(long)]
        tenant: Uuid,
        /// Only events recorded at or after this RFC 3339 instant.
        #[arg(long)]
        from: Option<String>,
        /// Only events recorded at or before this RFC 3339 instant.
        #[arg(long)]
        to: Option<String>,
        /// ndjson (verifiable offline) or csv.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: oms::audit::ExportFormat,
        /// The file to write (default: standard output). Written whole or not at all.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Recompute hash chains (and compare them with the anchors in NATS), or verify an
    /// export file offline.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Verify this NDJSON export instead of the database.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// NATS, for the anchors.
        #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// Do not compare with the anchors.
        #[arg(long)]
        no_anchors: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AnalystCommand {
    /// Create a Postgres login that can only SELECT the read models of one tenant; prints its
    /// password and a connection URL.
    CreateLogin {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant whose rows it sees.
        #[arg(long)]
        tenant: Uuid,
        /// The login name (lowercase letters, digits, '_'; 3 to 63 characters).
        #[arg(long)]
        name: String,
        /// The password (default: a random one, printed).
        #[arg(long, env = "OMS_ANALYST_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct DbArgs {
    /// Postgres URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/oms",
        hide_env_values = true
    )]
    database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServeRole {
    /// api, relay and projector in one process.
    All,
    /// The HTTP API only.
    Api,
    /// The relay (event store → NATS) only.
    Relay,
    /// The projector (NATS → read models) only.
    Projector,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Where the API listens.
    #[arg(long, env = "OMS_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// NATS URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The HS256 secret tokens are signed with.
    #[arg(long, env = "OMS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
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
    /// Connections in the database pool.
    #[arg(long, env = "OMS_DB_POOL_SIZE", default_value_t = 32)]
    pool_size: u32,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The tenant (omit for platform_admin).
    #[arg(long)]
    tenant: Option<Uuid>,
    /// The actor (`sub`).
    #[arg(long, default_value = "dev")]
    sub: String,
    /// The actor's display name.
    #[arg(long)]
    name: Option<String>,
    /// Roles, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "admin")]
    roles: Vec<Role>,
    /// Hours until it expires.
    #[arg(long, default_value_t = 24)]
    ttl_hours: i64,
    /// The secret (default: the development secret).
    #[arg(long, env = "OMS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints its id.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Unique handle (lowercase letters, digits, '-').
        #[arg(long)]
        slug: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("OMS_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("OMS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(db) => {
            let pool = connect(&db.database_url).await?;
            oms::migrate::run(&pool).await.context("migration failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token(args) => {
            let secret = args
                .jwt_secret
                .unwrap_or_else(|| DEV_JWT_SECRET.to_string());
            if args.tenant.is_none() && !args.roles.contains(&Role::PlatformAdmin) {
                anyhow::bail!("a token without --tenant is for platform_admin: pass --roles platform_admin or a --tenant");
            }
            if args.ttl_hours <= 0 {
                anyhow::bail!("--ttl-hours must be positive");
            }
            let token = TokenKeys::new(&secret).mint(
                &args.sub,
                args.name.as_deref(),
                args.tenant,
                args.roles,
                chrono::Duration::hours(args.ttl_hours),
            );
            println!("{token}");
            Ok(())
        }
        Command::Replay(args) => replay(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Audit { command } => audit(command).await,
        Command::Analyst { command } => match command {
            AnalystCommand::CreateLogin {
                db,
                tenant,
                name,
                password,
            } => {
                let pool = connect_and_migrate(&db.database_url).await?;
                if oms::tenants::find(&pool, tenant).await?.is_none() {
                    anyhow::bail!("there is no tenant {tenant}");
                }
                let password = password.unwrap_or_else(|| {
                    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
                });
                let mut conn = pool.acquire().await?;
                oms_projections::analysts::create_login(&mut conn, tenant, &name, &password)
                    .await?;
                let url = url_for_login(&db.database_url, &name, &password);
                println!("login:    {name}");
                println!("password: {password}");
                println!("psql \"{url}\"");
                Ok(())
            }
        },
        Command::Tenant { command } => match command {
            TenantCommand::Create { db, name, slug } => {
                let pool = connect_and_migrate(&db.database_url).await?;
                let tenant = oms::tenants::create(&pool, &name, &slug).await?;
                println!("{}", tenant.id);
                Ok(())
            }
            TenantCommand::List { db } => {
                let pool = connect_and_migrate(&db.database_url).await?;
                for tenant in oms::tenants::list(&pool).await? {
                    println!("{}\t{}\t{}", tenant.id, tenant.slug, tenant.name);
                }
                Ok(())
            }
        },
    }
}

/// The database URL with another user and password (for an analyst's connection string).
fn url_for_login(database_url: &str, login: &str, password: &str) -> String {
    match database_url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{login}:{password}@{host}")
        }
        None => database_url.to_string(),
    }
}

/// A small pool for a one-shot command; gives up after a few seconds rather than hanging.
async fn connect(url: &str) -> anyhow::Result<sqlx::PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot connect to the database")
}

async fn connect_and_migrate(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let pool = connect(url).await?;
    oms::migrate::run(&pool).await.context("migration failed")?;
    Ok(pool)
}

/// The relay's and the stream's settings from the command line.
fn stream_config(args: &ServeArgs) -> oms::relay::RelayConfig {
    oms::relay::RelayConfig {
        stream: args.stream.clone(),
        duplicate_window: std::time::Duration::from_secs(args.stream_duplicate_window_secs),
        max_age: std::time::Duration::from_secs(args.stream_max_age_secs),
        ..Default::default()
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let streams = stream_config(&args);
    let jwt_secret = match (args.jwt_secret, args.demo) {
        (Some(secret), _) if !secret.is_empty() => secret,
        (_, true) => {
            tracing::warn!("OMS_JWT_SECRET is not set; using the development secret (demo mode)");
            DEV_JWT_SECRET.to_string()
        }
        (_, false) => anyhow::bail!("set OMS_JWT_SECRET (or run with --demo for local use)"),
    };
    let mut config = Config::local(args.db.database_url, jwt_secret);
    config.bind = args.bind;
    config.nats_url = args.nats_url;
    config.pool_size = args.pool_size;
    config.rate_limit = (args.rate_limit > 0.0).then_some((args.rate_limit, args.rate_limit * 2.0));

    let pool = oms::app::pool(&config)?;
    oms::app::migrate_when_reachable(&pool)
        .await
        .context("migration failed")?;
    let nats = oms::app::nats(&config.nats_url).await;
    let state = oms::app::state(pool.clone(), &config, nats);

    // One shutdown signal for every role.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    let mut roles = Vec::new();
    let store = oms::store::EventStore::new(pool.clone());
    if matches!(
        args.role,
        ServeRole::All | ServeRole::Relay | ServeRole::Projector
    ) {
        let Some(client) = state.nats.clone() else {
            anyhow::bail!(
                "the relay and projector roles need NATS at {}",
                config.nats_url
            );
        };
        let jetstream = async_nats::jetstream::new(client);
        if matches!(args.role, ServeRole::All | ServeRole::Relay) {
            let relay_config = streams.clone();
            let relay = oms::relay::Relay::new(store.clone(), jetstream.clone(), relay_config);
            state.metrics.attach_relay(relay.metrics());
            // Anchors: each tenant's head published outside the database (docs/audit.md).
            let anchorer = oms::audit::Anchorer::new(
                store.clone(),
                jetstream.clone(),
                100,
                std::time::Duration::from_secs(10),
            );
            roles.push(tokio::spawn(anchorer.run(stopped.clone())));
            let stopped = stopped.clone();
            roles.push(tokio::spawn(async move {
                if let Err(err) = relay.run(stopped).await {
                    tracing::error!(error = %err, "relay stopped");
                }
            }));
        }
        if matches!(args.role, ServeRole::All | ServeRole::Projector) {
            // The projector needs the stream; the relay creates it, and so does this.
            let relay_config = streams.clone();
            let jetstream_for_stream = jetstream.clone();
            let projector_config = oms::projector::ProjectorConfig {
                stream: streams.stream.clone(),
                ..Default::default()
            };
            let projector =
                oms::projector::Projector::new(store.clone(), jetstream, projector_config);
            state.metrics.attach_projector(projector.metrics());
            let stopped = stopped.clone();
            roles.push(tokio::spawn(async move {
                while oms::relay::ensure_stream(&jetstream_for_stream, &relay_config)
                    .await
                    .is_err()
                {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                if let Err(err) = projector.run(stopped).await {
                    tracing::error!(error = %err, "projector stopped");
                }
            }));
        }
    }
    let runs_api = matches!(args.role, ServeRole::All | ServeRole::Api);
    if !runs_api {
        tracing::info!(role = ?args.role, "running");
        for role in roles {
            let _ = role.await;
        }
        return Ok(());
    }
    let mut stopped_api = stopped.clone();
    let shutdown = async move {
        let _ = stopped_api.wait_for(|stop| *stop).await;
    };
    let app = oms::api::Application::build(config.bind, state)
        .await
        .context("cannot bind")?;
    let url = format!("http://{}:{}", config.bind.ip(), app.port());
    if args.demo {
        let tenant = match oms::tenants::find_by_slug(&pool, "demo").await? {
            Some(tenant) => tenant,
            None => oms::tenants::create(&pool, "Demo Meats", "demo").await?,
        };
        let token = TokenKeys::new(config.jwt_secret.expose()).mint(
            "demo-admin",
            Some("Demo Admin"),
            Some(tenant.id),
            vec![Role::Admin],
            chrono::Duration::days(7),
        );
        println!("oms is serving at {url}  (API docs: {url}/docs)");
        println!("demo tenant: {}", tenant.id);
        println!("admin token (7 days):\nexport TOKEN={token}");
    }
    tracing::info!(%url, "listening");
    app.run_until_stopped(shutdown).await?;
    for role in roles {
        let _ = role.await;
    }
    Ok(())
}

fn parse_instant(name: &str, value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            anyhow::anyhow!(
                "{name} must be an RFC 3339 timestamp like 2026-11-02T15:00:00Z, not {value:?}"
            )
        })
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use oms_projections::Projection;
    use std::io::IsTerminal;
    let projections = if args.projections.is_empty() {
        Projection::ALL.to_vec()
    } else {
        args.projections
            .iter()
            .map(|name| {
                Projection::from_name(name)
                    .ok_or_else(|| oms::replay::ReplayError::UnknownProjection(name.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if args.batch < 1 {
        anyhow::bail!("--batch must be at least 1");
    }
    let pool = connect_and_migrate(&args.db.database_url).await?;
    let store = oms::store::EventStore::new(pool);
    let tenants = oms::replay::tenants(&store, &args.tenants).await?;
    let total: u64 = tenants
        .iter()
        .map(|(_, head)| u64::try_from(*head).unwrap_or(0))
        .sum::<u64>()
        * u64::try_from(projections.len()).unwrap_or(1);
    let started = std::time::Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} events  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let mut done = 0u64;
    let mut last_line = std::time::Instant::now();
    let mut rebuilt = Vec::new();
    for projection in &projections {
        for (tenant, _) in &tenants {
            if let Some(bar) = &bar {
                bar.set_message(format!("{} / {tenant}", projection.name()));
            }
            let mut progress = |n: u64| {
                done += n;
                match &bar {
                    Some(bar) => bar.set_position(done),
                    None => {
                        if last_line.elapsed() >= std::time::Duration::from_secs(1) || done == total
                        {
                            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                            let eta = (total.saturating_sub(done)) as f64 / rate.max(0.001);
                            eprintln!(
                                "replay: {done}/{total} events, {rate:.0} events/s, ETA {eta:.0}s"
                            );
                            last_line = std::time::Instant::now();
                        }
                    }
                }
            };
            let result =
                oms::replay::rebuild(&store, *projection, *tenant, args.batch, &mut progress)
                    .await?;
            rebuilt.push(result);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let events: u64 = rebuilt.iter().map(|r| r.events).sum();
    println!(
        "replayed {events} events into {} projection(s) for {} tenant(s) in {seconds:.2}s ({:.0} events/s)",
        projections.len(),
        tenants.len(),
        events as f64 / seconds.max(0.001)
    );
    for r in &rebuilt {
        println!(
            "  {:<15} {}  {} events, checkpoint {}",
            r.projection.name(),
            r.tenant,
            r.events,
            r.position
        );
    }
    Ok(())
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Show {
            db,
            order,
            as_of,
            tenant,
            json,
        } => {
            let as_of = as_of.map(|v| parse_instant("--as-of", &v)).transpose()?;
            let pool = connect(&db.database_url).await?;
            let store = oms::store::EventStore::new(pool);
            let shown = oms::audit_show::show(&store, &order, tenant, as_of).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown.to_json())?);
            } else {
                print!("{}", shown.to_text());
            }
            Ok(())
        }
        AuditCommand::Export {
            db,
            tenant,
            from,
            to,
            format,
            output,
        } => {
            let from = from.map(|v| parse_instant("--from", &v)).transpose()?;
            let to = to.map(|v| parse_instant("--to", &v)).transpose()?;
            let pool = connect(&db.database_url).await?;
            if oms::tenants::find(&pool, tenant).await?.is_none() {
                anyhow::bail!("there is no tenant {tenant}");
            }
            match output {
                None => {
                    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
                    let summary =
                        oms::audit::export(&pool, tenant, from, to, format, &mut out).await?;
                    eprintln!(
                        "exported {} events, last position {}, last hash {}",
                        summary.events, summary.last_position, summary.last_hash
                    );
                }
                Some(path) => {
                    // Written to a temporary file beside the target and renamed when complete:
                    // a failed export leaves nothing half-written.
                    let dir = path
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or_else(|| std::path::Path::new("."));
                    let temporary = tempfile::Builder::new()
                        .prefix(".oms-export-")
                        .tempfile_in(dir)
                        .with_context(|| format!("cannot write to {}", dir.display()))?;
                    let file = tokio::fs::File::from_std(
                        temporary
                            .reopen()
                            .with_context(|| format!("cannot write to {}", dir.display()))?,
                    );
                    let mut out = tokio::io::BufWriter::new(file);
                    let summary =
                        oms::audit::export(&pool, tenant, from, to, format, &mut out).await?;
                    temporary
                        .persist(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "exported {} events to {}, last position {}, last hash {}",
                        summary.events,
                        path.display(),
                        summary.last_position,
                        summary.last_hash
                    );
                }
            }
            Ok(())
        }
        AuditCommand::Verify {
            db,
            tenant,
            file,
            nats_url,
            no_anchors,
        } => {
            if let Some(file) = file {
                let report = oms::audit::verify_file(&file)
                    .await
                    .with_context(|| format!("cannot read {}", file.display()))?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                if !report.ok {
                    anyhow::bail!(
                        "the export is broken at line {} ({})",
                        report.first_bad_line.unwrap_or_default(),
                        report.problem.unwrap_or_default()
                    );
                }
                return Ok(());
            }
            let pool = connect(&db.database_url).await?;
            let store = oms::store::EventStore::new(pool.clone());
            let tenants: Vec<Uuid> = match tenant {
                Some(tenant) => {
                    if oms::tenants::find(&pool, tenant).await?.is_none() {
                        anyhow::bail!("there is no tenant {tenant}");
                    }
                    vec![tenant]
                }
                None => oms::tenants::list(&pool)
                    .await?
                    .into_iter()
                    .map(|t| t.id)
                    .collect(),
            };
            let jetstream = if no_anchors {
                None
            } else {
                let client = tokio::time::timeout(std::time::Duration::from_secs(5), async_nats::connect(&nats_url))
                    .await
                    .map_err(|_| anyhow::anyhow!("NATS at {nats_url} did not answer (use --no-anchors to verify without them)"))?
                    .with_context(|| format!("cannot reach NATS at {nats_url} for the anchors (use --no-anchors to verify without them)"))?;
                Some(async_nats::jetstream::new(client))
            };
            let mut broken = Vec::new();
            for tenant in tenants {
                let report = match &jetstream {
                    Some(jetstream) => {
                        let anchors = oms::audit::anchors(jetstream, tenant)
                            .await
                            .map_err(|e| anyhow::anyhow!("reading the anchors: {e}"))?;
                        serde_json::to_value(
                            oms::audit::verify_with_anchors(&store, tenant, &anchors).await?,
                        )?
                    }
                    None => serde_json::to_value(store.verify_chain(tenant).await?)?,
                };
                let mut line = serde_json::json!({ "tenant": tenant });
                if let (Some(map), Some(extra)) = (line.as_object_mut(), report.as_object()) {
                    map.extend(extra.clone());
                }
                if report["ok"] != true {
                    broken.push((tenant, report["first_bad_position"].clone()));
                }
                println!("{}", serde_json::to_string(&line)?);
            }
            if !broken.is_empty() {
                let list: Vec<String> = broken
                    .iter()
                    .map(|(t, p)| format!("{t} at position {p}"))
                    .collect();
                anyhow::bail!("the chain is broken: {}", list.join("; "));
            }
            Ok(())
        }
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.seconds == 0 || args.clients == 0 || args.tenants == 0 {
        anyhow::bail!("--seconds, --clients and --tenants must be at least 1");
    }
    let options = oms::bench::BenchOptions {
        database_url: args.database_url,
        seconds: args.seconds,
        clients: args.clients,
        tenants: args.tenants,
    };
    eprintln!(
        "bench: {} clients over {} tenants, {} s per workload",
        options.clients, options.tenants, options.seconds
    );
    let report = oms::bench::run(&options).await?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(ceiling), Some(map)) = (args.ceiling, value.as_object_mut()) {
            map.insert("pg_ceiling_tps".into(), serde_json::json!(ceiling));
            map.insert(
                "oms_to_ceiling".into(),
                serde_json::json!(report.oms.per_second / ceiling),
            );
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let line = |name: &str, t: &oms::bench::Throughput| {
        println!(
            "{name:<34} {:>9.0} commands/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} commands)",
            t.per_second, t.p50_ms, t.p99_ms, t.commands
        );
    };
    line("oms: create purchase order", &report.oms);
    line("postgres-es baseline: same command", &report.postgres_es);
    println!(
        "{:<34} {:>9.2}",
        "oms / postgres-es",
        report.oms.per_second / report.postgres_es.per_second
    );
    if let Some(ceiling) = args.ceiling {
        println!(
            "{:<34} {:>9.0} transactions/s",
            "pg-ceiling (same run)", ceiling
        );
        println!(
            "{:<34} {:>9.2}",
            "oms / pg-ceiling",
            report.oms.per_second / ceiling
        );
        println!(
            "{:<34} {:>9.2}",
            "postgres-es / pg-ceiling",
            report.postgres_es.per_second / ceiling
        );
    }
    println!(
        "{:<34} {:>9.0} events/s (all projections, catch-up from the event store)",
        "projection apply", report.projection_events_per_second
    );
    Ok(())
}
