//! `oms bench`: the service over HTTP under the whole order mix, against Postgres's own
//! ceiling and the postgres-es baseline, in one run (see `oms-bench` and docs/benchmarks.md).
//! It starts what it measures itself: `oms serve` (this binary), a nats-server and throw-away
//! databases.

use std::path::PathBuf;
use std::time::Duration;

/// What to measure.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// An admin URL of the Postgres server; the bench creates and drops databases of its own.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,
    /// A nats-server (>= 2.10) binary for the throw-away NATS of the run.
    #[arg(long, env = "OMS_NATS_SERVER_BIN", default_value = "nats-server")]
    nats_server_bin: PathBuf,
    /// Seconds of the write-path, baseline and pipeline runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of each growth run and of the run at half the maximum rate.
    #[arg(long, default_value_t = 10)]
    growth_seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Tenants the clients spread over.
    #[arg(long, default_value_t = 20)]
    tenants: usize,
    /// Tenant counts of the growth runs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,200")]
    growth_tenants: Vec<usize>,
    /// Order sizes, in events, whose command latency is measured (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    order_events: Vec<usize>,
    /// Timed commands per order size.
    #[arg(long, default_value_t = 50)]
    order_samples: usize,
    /// Store sizes, in events, to rebuild (comma-separated; the last is the headline).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    rebuild_events: Vec<u64>,
    /// The longest one `oms replay` may run, in seconds, before it is stopped and its rate
    /// so far reported.
    #[arg(long, default_value_t = 240)]
    rebuild_timeout_secs: u64,
    /// The longest the read side may take to drain after the pipeline run, in seconds.
    #[arg(long, default_value_t = 60)]
    drain_timeout_secs: u64,
    /// Postgres's own ceiling (transactions/s of scripts/pg-ceiling.sh, same run).
    #[arg(long)]
    ceiling: Option<f64>,
    /// Skip the postgres-es baseline.
    #[arg(long)]
    skip_baseline: bool,
    /// Write the JSON summary here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Fail unless the summary has every field and no command was answered 5xx (the smoke
    /// run of `make test`).
    #[arg(long)]
    check: bool,
    /// Serve the postgres-es baseline on this address instead (the bench starts it so).
    #[arg(long, hide = true)]
    serve_baseline: Option<std::net::SocketAddr>,
}

/// Runs the benchmark and prints its table (and writes the JSON summary).
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(bind) = args.serve_baseline {
        return oms_bench::baseline::serve(&args.database_url, bind).await;
    }
    if args.seconds == 0 || args.clients == 0 || args.tenants == 0 {
        anyhow::bail!("--seconds, --clients and --tenants must be at least 1");
    }
    if args.growth_tenants.contains(&0) {
        anyhow::bail!("--growth-tenants must all be at least 1");
    }
    let options = oms_bench::BenchOptions {
        database_url: args.database_url,
        oms_bin: std::env::current_exe()?,
        nats_bin: args.nats_server_bin,
        seconds: args.seconds,
        growth_seconds: args.growth_seconds,
        clients: args.clients,
        tenants: args.tenants,
        growth_tenants: args.growth_tenants,
        order_events: args.order_events,
        order_samples: args.order_samples.max(1),
        rebuild_events: args.rebuild_events,
        rebuild_timeout: Duration::from_secs(args.rebuild_timeout_secs.max(1)),
        drain_timeout: Duration::from_secs(args.drain_timeout_secs.max(1)),
        pg_ceiling_tps: args.ceiling,
        skip_baseline: args.skip_baseline,
    };
    let summary = oms_bench::run(&options).await?;
    println!("{}", oms_bench::table(&summary));
    if let Some(path) = &args.json_out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")?;
        eprintln!("bench: summary written to {}", path.display());
    }
    if args.check {
        let missing: Vec<&str> = oms_bench::REQUIRED_FIELDS
            .iter()
            .copied()
            .filter(|field| summary.get(*field).is_none_or(|v| v.is_null()))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "the summary lacks {}",
            missing.join(", ")
        );
        let errors = summary["server_errors"].as_u64().unwrap_or(u64::MAX);
        anyhow::ensure!(
            errors == 0,
            "{errors} commands were answered 5xx or not at all"
        );
        let commands = summary["write_http"]["commands"].as_u64().unwrap_or(0);
        anyhow::ensure!(commands > 0, "the write path completed no command");
    }
    Ok(())
}
