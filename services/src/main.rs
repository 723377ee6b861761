//! `oms`: the single entry point. `oms serve` runs the API (and the relay and projector roles),
//! `oms migrate` applies migrations, `oms token` mints a development token, `oms tenant`
//! provisions tenants.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use oms::auth::{Role, TokenKeys};
use oms::config::{Config, Secret, DEV_JWT_SECRET};
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    config.database_url = Secret::new(config.database_url.expose());

    let pool = oms::app::pool(&config)?;
    oms::app::migrate_when_reachable(&pool)
        .await
        .context("migration failed")?;
    let nats = oms::app::nats(&config.nats_url).await;
    let state = oms::app::state(pool.clone(), &config, nats);

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let runs_api = matches!(args.role, ServeRole::All | ServeRole::Api);
    if matches!(
        args.role,
        ServeRole::All | ServeRole::Relay | ServeRole::Projector
    ) {
        // The read side (relay to NATS, projectors into read models) is the next milestone;
        // until then commands are served straight from the event store.
        tracing::info!(role = ?args.role, "relay and projector roles are not implemented yet; nothing to run for them");
    }
    if !runs_api {
        shutdown.await;
        return Ok(());
    }
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
    Ok(())
}
