//! `oms bench`: commands per second through the service's pipeline against postgres-es and
//! Postgres's own ceiling, measured in one run (see `oms-bench`).

/// What to measure.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
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

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.seconds == 0 || args.clients == 0 || args.tenants == 0 {
        anyhow::bail!("--seconds, --clients and --tenants must be at least 1");
    }
    let options = oms_bench::BenchOptions {
        database_url: args.database_url,
        seconds: args.seconds,
        clients: args.clients,
        tenants: args.tenants,
    };
    eprintln!(
        "bench: {} clients over {} tenants, {} s per workload",
        options.clients, options.tenants, options.seconds
    );
    let report = oms_bench::run(&options).await?;
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
    let line = |name: &str, t: &oms_bench::Throughput| {
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
