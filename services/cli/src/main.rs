//! `oms`: the single entry point. Each subcommand lives in its own file under `cmd/`; this file
//! parses the command line, sets up logging, and dispatches.

mod cmd;
mod connect;
mod nats;
mod roles;
mod telemetry;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of the system allocator. A profile of `oms serve` under the bench's mix
/// spent about a fifth of the process's CPU in glibc's malloc and free (consolidating and
/// unlinking chunks): every request, event and row is JSON built and dropped. mimalloc's
/// thread-local free lists make those short-lived allocations cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(cmd::serve::ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(connect::DbArgs),
    /// Mint a token for local use.
    Token(cmd::token::TokenArgs),
    /// Create or list tenants.
    Tenant {
        #[command(subcommand)]
        command: cmd::tenant::TenantCommand,
    },
    /// Rebuild read models from the event store.
    Replay(cmd::replay::ReplayArgs),
    /// Audit: an order's history and past state, exports, chain verification.
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
    /// Measure commands per second against postgres-es and Postgres's own ceiling.
    Bench(cmd::bench::BenchArgs),
    /// The master key of personal data: rotate it.
    DataKeys {
        #[command(subcommand)]
        command: cmd::data_keys::DataKeysCommand,
    },
    /// Manage analysts' SQL logins to the read models.
    Analyst {
        #[command(subcommand)]
        command: cmd::analyst::AnalystCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init();
    let result = match Cli::parse().command {
        Command::Serve(args) => cmd::serve::run(args).await,
        Command::Migrate(db) => cmd::migrate::run(db).await,
        Command::Token(args) => cmd::token::run(args),
        Command::Tenant { command } => cmd::tenant::run(command).await,
        Command::Replay(args) => cmd::replay::run(args).await,
        Command::Audit { command } => cmd::audit::run(command).await,
        Command::Bench(args) => cmd::bench::run(args).await,
        Command::Analyst { command } => cmd::analyst::run(command).await,
        Command::DataKeys { command } => cmd::data_keys::run(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
