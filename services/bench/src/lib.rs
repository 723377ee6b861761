//! `oms bench`: the service measured as its users meet it — over HTTP, with the whole order
//! life cycle as the command mix — against the baselines, all in one run on throw-away
//! databases and a throw-away nats-server, so the figures are ratios taken under the same
//! conditions on a shared, noisy machine.
//!
//! The run, in order (see docs/benchmarks.md):
//! 1. **write path**: `oms serve --role api`; the mix over T tenants with C clients
//!    (`write_http_cmd_per_s`), then growth (1 and many tenants), p99 at half the maximum
//!    rate, and command latency on a short and on a long order;
//! 2. **postgres-es baseline**: the same mix through cqrs-es and postgres-es behind a thin
//!    axum handler ([`baseline`]), same client (`postgres_es_http_cmd_per_s`);
//! 3. **pipeline**: one `oms serve` (api, relay, projector) under the mix, with the
//!    projection lag of sampled commands and the backlog at the end (`pipeline_*`);
//! 4. **rebuild**: a store bulk-loaded through the store's own append, then `oms replay`
//!    timed as a process ([`loader`]).
//!
//! `make bench` runs Postgres's own ceiling (scripts/pg-ceiling.sh) first and passes it in.

pub mod baseline;
pub mod client;
pub mod cpu;
pub mod loader;
pub mod procs;

use client::{round, MixOptions, MixStats, Percentiles, Tenant};
use oms_api::auth::TokenKeys;
use procs::{Database, Nats, OmsEnv, Serve};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// What to measure, and with what.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// An admin URL of the Postgres server; the bench creates and drops its own databases.
    pub database_url: String,
    /// The `oms` binary to start (normally the running one).
    pub oms_bin: PathBuf,
    /// A nats-server (>= 2.10) binary.
    pub nats_bin: PathBuf,
    /// Seconds of the main runs (write path, baseline, pipeline).
    pub seconds: u64,
    /// Seconds of each growth and half-rate run.
    pub growth_seconds: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Tenants of the main runs.
    pub tenants: usize,
    /// Tenant counts of the growth runs (besides `tenants`).
    pub growth_tenants: Vec<usize>,
    /// Order sizes (events) for the latency-by-order-size runs.
    pub order_events: Vec<usize>,
    /// Timed commands per order size.
    pub order_samples: usize,
    /// Store sizes (events) to rebuild; the last is the headline.
    pub rebuild_events: Vec<u64>,
    /// The longest one `oms replay` may take before it is stopped (its rate so far is
    /// reported).
    pub rebuild_timeout: Duration,
    /// The longest the read side may take to drain after the pipeline run.
    pub drain_timeout: Duration,
    /// Postgres's ceiling (transactions/s of scripts/pg-ceiling.sh in the same run).
    pub pg_ceiling_tps: Option<f64>,
    /// Skip the postgres-es baseline.
    pub skip_baseline: bool,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n.max(1))
}

/// Runs everything and returns the summary (the JSON written to docs/bench/latest.json).
pub async fn run(options: &BenchOptions) -> anyhow::Result<Value> {
    let started = Instant::now();
    let secret = format!("bench-{}", Uuid::new_v4().simple());
    let keys = TokenKeys::new(&secret);
    let http = client::http_client(options.clients)?;
    let mut summary = serde_json::Map::new();
    summary.insert("machine".into(), machine(&options.database_url).await);
    summary.insert(
        "settings".into(),
        json!({
            "seconds": options.seconds, "growth_seconds": options.growth_seconds,
            "clients": options.clients, "tenants": options.tenants,
            "growth_tenants": options.growth_tenants, "order_events": options.order_events,
            "rebuild_events": options.rebuild_events,
        }),
    );
    summary.insert("pg_ceiling_tps".into(), json!(options.pg_ceiling_tps));
    let mut rss: Vec<(String, f64)> = Vec::new();

    // 1. The write path: the api role alone.
    eprintln!(
        "bench: write path (oms serve --role api), {} clients, {} tenants, {} s",
        options.clients, options.tenants, options.seconds
    );
    let nats = Nats::start(&options.nats_bin)?;
    let write_db = Database::create(&options.database_url, "write").await?;
    let env = OmsEnv {
        binary: options.oms_bin.clone(),
        database_url: write_db.url.clone(),
        nats_url: nats.url.clone(),
        jwt_secret: secret.clone(),
    };
    procs::oms_run(&env, &["migrate"])?;
    let serve = Serve::start(&env, "api").await?;
    let most = options
        .growth_tenants
        .iter()
        .copied()
        .chain([options.tenants])
        .max()
        .unwrap_or(options.tenants);
    let all_tenants = client::make_tenants(&http, &serve.base, &keys, most, "w", false).await?;
    let tenants = Arc::new(all_tenants[..options.tenants].to_vec());
    let cpu_before = cpu::read(&options.database_url, &write_db.name, serve.pid(), None).await;
    let write = mix(
        &http,
        &serve.base,
        tenants.clone(),
        options.clients,
        secs(options.seconds),
        0.0,
        None,
    )
    .await?;
    let cpu_after = cpu::read(&options.database_url, &write_db.name, serve.pid(), None).await;
    record_mix(&mut summary, "write_http", &write);
    summary["write_http"]["cpu_ms_per_command"] =
        cpu::per_command(&cpu_before, &cpu_after, write.commands());
    eprintln!(
        "  CPU per command (ms): {}",
        summary["write_http"]["cpu_ms_per_command"]
    );
    // How many commands shared a transaction (group commit), over the whole run.
    let batches = serve.metric(&http, "oms_group_commit_batches_total").await;
    let grouped = serve.metric(&http, "oms_group_commit_commands_total").await;
    let alone = serve.metric(&http, "oms_group_commit_alone_total").await;
    if let (Some(batches), Some(grouped)) = (batches, grouped) {
        let mean = if batches > 0.0 {
            grouped / batches
        } else {
            0.0
        };
        eprintln!("  group commit: {grouped} commands in {batches} transactions (mean {mean:.2}), {} sent back to run alone", alone.unwrap_or(0.0));
        summary["write_http"]["group_commit"] = json!({
            "transactions": batches,
            "commands": grouped,
            "mean_batch": round(mean, 2),
            "alone": alone,
        });
    }

    let mut growth = vec![
        json!({"tenants": options.tenants, "cmd_per_s": round(write.per_second(), 1), "p99_ms": write.overall().p99}),
    ];
    for &count in &options.growth_tenants {
        if count == options.tenants {
            continue;
        }
        eprintln!(
            "bench: write path with {count} tenant(s), {} s",
            options.growth_seconds
        );
        let subset = Arc::new(all_tenants[..count].to_vec());
        let stats = mix(
            &http,
            &serve.base,
            subset,
            options.clients,
            secs(options.growth_seconds),
            0.0,
            None,
        )
        .await?;
        growth.push(json!({"tenants": count, "cmd_per_s": round(stats.per_second(), 1), "p99_ms": stats.overall().p99, "server_errors": stats.server_errors()}));
    }
    growth.sort_by_key(|g| g["tenants"].as_u64());
    summary.insert("growth_tenants".into(), Value::Array(growth));

    let half = write.per_second() / 2.0;
    eprintln!(
        "bench: write path at half the maximum ({half:.0} cmd/s), {} s",
        options.growth_seconds
    );
    let at_half = mix(
        &http,
        &serve.base,
        tenants.clone(),
        options.clients,
        secs(options.growth_seconds),
        half,
        None,
    )
    .await?;
    summary.insert("p99_ms_at_half_max".into(), json!(at_half.overall().p99));
    summary.insert("at_half_max".into(), at_half.to_json());

    let mut sizes = Vec::new();
    // The shortest order once; every longer one grown both ways, since a note lengthens the
    // document every answer carries and a header change does not.
    let shortest = options.order_events.iter().copied().min();
    for &events in &options.order_events {
        for growth in [client::Growth::HeaderChanges, client::Growth::Notes] {
            if growth == client::Growth::Notes && Some(events) == shortest {
                continue;
            }
            eprintln!(
                "bench: commands on an order of {events} events ({})",
                growth.name()
            );
            sizes.push(
                client::order_size_latency(
                    &http,
                    &serve.base,
                    &tenants[0],
                    events,
                    options.order_samples,
                    growth,
                )
                .await?,
            );
        }
    }
    summary.insert("growth_order_events".into(), Value::Array(sizes));
    let mut server_errors = write.server_errors() + at_half.server_errors();
    if let Some(mb) = serve.peak_rss_mb() {
        rss.push(("oms serve --role api".into(), mb));
    }
    serve.stop();

    // 2. The postgres-es baseline, same client, same mix.
    if !options.skip_baseline {
        eprintln!(
            "bench: postgres-es baseline over HTTP, {} s",
            options.seconds
        );
        let db = Database::create(&options.database_url, "pges").await?;
        let server = baseline::Server::start(&options.oms_bin, &db.url).await?;
        let tenants = Arc::new(
            client::make_tenants(&http, &server.base, &keys, options.tenants, "b", true).await?,
        );
        let cpu_before = cpu::read(&options.database_url, &db.name, server.pid(), None).await;
        let stats = mix(
            &http,
            &server.base,
            tenants,
            options.clients,
            secs(options.seconds),
            0.0,
            None,
        )
        .await?;
        let cpu_after = cpu::read(&options.database_url, &db.name, server.pid(), None).await;
        record_mix(&mut summary, "postgres_es_http", &stats);
        summary["postgres_es_http"]["cpu_ms_per_command"] =
            cpu::per_command(&cpu_before, &cpu_after, stats.commands());
        eprintln!(
            "  CPU per command (ms): {}",
            summary["postgres_es_http"]["cpu_ms_per_command"]
        );
        if let Some(mb) = server.peak_rss_mb() {
            rss.push(("postgres-es baseline server".into(), mb));
        }
        drop(server);
    } else {
        summary.insert("postgres_es_http_cmd_per_s".into(), Value::Null);
    }

    // 3. The whole pipeline in one process, with the read side's lag.
    eprintln!(
        "bench: whole pipeline (oms serve), {} s, projection lag sampled",
        options.seconds
    );
    {
        let nats = Nats::start(&options.nats_bin)?;
        let db = Database::create(&options.database_url, "pipeline").await?;
        let env = OmsEnv {
            binary: options.oms_bin.clone(),
            database_url: db.url.clone(),
            nats_url: nats.url.clone(),
            jwt_secret: secret.clone(),
        };
        procs::oms_run(&env, &["migrate"])?;
        let serve = Serve::start(&env, "all").await?;
        let tenants = Arc::new(
            client::make_tenants(&http, &serve.base, &keys, options.tenants, "p", false).await?,
        );
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(client::watch_lag(pool.clone(), receiver));
        let cpu_before = cpu::read(
            &options.database_url,
            &db.name,
            serve.pid(),
            Some(nats.pid()),
        )
        .await;
        let stats = mix(
            &http,
            &serve.base,
            tenants.clone(),
            options.clients,
            secs(options.seconds),
            0.0,
            Some(sender),
        )
        .await?;
        let ended = Instant::now();
        let cpu_after = cpu::read(
            &options.database_url,
            &db.name,
            serve.pid(),
            Some(nats.pid()),
        )
        .await;
        let backlog_at_end = client::backlog(&pool).await?;
        let mut drained = None;
        loop {
            if client::backlog(&pool).await? == 0 {
                drained = Some(ended.elapsed());
                break;
            }
            if ended.elapsed() > options.drain_timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lags = watcher.await??;
        let lag = Percentiles::of(lags.clone());
        eprintln!(
            "  {:.0} cmd/s, lag p99 {:.1} ms, backlog {backlog_at_end} events at the end, drained in {}",
            stats.per_second(),
            lag.p99,
            drained.map_or("(not in time)".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        );
        summary.insert(
            "pipeline_http_cmd_per_s".into(),
            json!(round(stats.per_second(), 1)),
        );
        summary.insert("pipeline_lag_p50_ms".into(), json!(lag.p50));
        summary.insert("pipeline_lag_p99_ms".into(), json!(lag.p99));
        summary.insert("pipeline_lag_max_ms".into(), json!(lag.max));
        summary.insert("pipeline_lag_samples".into(), json!(lags.len()));
        summary.insert("pipeline_backlog_at_end".into(), json!(backlog_at_end));
        summary.insert(
            "pipeline_drain_s".into(),
            json!(drained.map(|d| round(d.as_secs_f64(), 3))),
        );
        summary.insert("pipeline_http".into(), stats.to_json());
        // Commands, and the read side's work they caused while the run lasted (the backlog
        // at the end is small and drained within a second).
        summary["pipeline_http"]["cpu_ms_per_command"] =
            cpu::per_command(&cpu_before, &cpu_after, stats.commands());
        eprintln!(
            "  CPU per command (ms): {}",
            summary["pipeline_http"]["cpu_ms_per_command"]
        );
        server_errors += stats.server_errors();

        // The lag at a steady 1,000 commands/s (or the maximum, when that is lower).
        let rate = 1000f64.min(stats.per_second() * 0.9).max(1.0);
        eprintln!(
            "bench: whole pipeline at {rate:.0} cmd/s, {} s, projection lag sampled",
            options.growth_seconds
        );
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let watcher = tokio::spawn(client::watch_lag(pool.clone(), receiver));
        let paced = mix(
            &http,
            &serve.base,
            tenants,
            options.clients,
            secs(options.growth_seconds),
            rate,
            Some(sender),
        )
        .await?;
        let lag = Percentiles::of(watcher.await??);
        eprintln!(
            "  {:.0} cmd/s, lag p50 {:.1} ms, p99 {:.1} ms",
            paced.per_second(),
            lag.p50,
            lag.p99
        );
        summary.insert(
            "pipeline_paced".into(),
            json!({"target_cmd_per_s": round(rate, 0), "cmd_per_s": round(paced.per_second(), 1),
                   "lag_p50_ms": lag.p50, "lag_p99_ms": lag.p99, "lag_max_ms": lag.max,
                   "p99_ms": paced.overall().p99}),
        );
        server_errors += paced.server_errors();
        if let Some(mb) = serve.peak_rss_mb() {
            rss.push(("oms serve (api, relay, projector)".into(), mb));
        }
        pool.close().await;
        serve.stop();
    }

    // 4. Rebuild: bulk-loaded stores, `oms replay` of every projection.
    let mut rebuilds = Vec::new();
    for &events in &options.rebuild_events {
        eprintln!("bench: rebuild of {events} events (bulk load, then oms replay)");
        let db = Database::create(&options.database_url, "rebuild").await?;
        let env = OmsEnv {
            binary: options.oms_bin.clone(),
            database_url: db.url.clone(),
            nats_url: nats.url.clone(),
            jwt_secret: secret.clone(),
        };
        procs::oms_run(&env, &["migrate"])?;
        let loaded = loader::load(&write_db.url, &db.url, options.tenants, events).await?;
        eprintln!(
            "  loaded {} events in {:.1} s",
            loaded.events, loaded.seconds
        );
        let replay = loader::replay(&env, options.rebuild_timeout).await?;
        eprintln!(
            "  replayed in {:.1} s: {:.0} events/s{}",
            replay.seconds,
            loaded.events as f64 / replay.seconds.max(1e-9) * replay.fraction_done,
            if replay.finished {
                ""
            } else {
                " (stopped at the time limit; rate so far)"
            }
        );
        let per_s = loaded.events as f64 * replay.fraction_done / replay.seconds.max(1e-9);
        rebuilds.push(json!({
            "events": loaded.events, "load_s": round(loaded.seconds, 2),
            "load_events_per_s": round(loaded.events as f64 / loaded.seconds.max(1e-9), 0),
            "replay_s": round(replay.seconds, 2), "finished": replay.finished,
            "events_per_s": round(per_s, 0), "peak_rss_mb": replay.peak_rss_mb.map(|m| round(m, 1)),
        }));
        if let Some(mb) = replay.peak_rss_mb {
            rss.push((format!("oms replay ({events} events)"), mb));
        }
    }
    if let Some(last) = rebuilds.last() {
        summary.insert("rebuild_events".into(), last["events"].clone());
        summary.insert("rebuild_events_per_s".into(), last["events_per_s"].clone());
        summary.insert("rebuild_s".into(), last["replay_s"].clone());
    }
    summary.insert("growth_rebuild".into(), Value::Array(rebuilds));

    summary.insert(
        "peak_rss_mb".into(),
        json!(round(rss.iter().map(|(_, mb)| *mb).fold(0.0, f64::max), 1)),
    );
    summary.insert(
        "peak_rss_mb_by_process".into(),
        rss.iter()
            .map(|(name, mb)| (name.clone(), json!(round(*mb, 1))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    summary.insert("server_errors".into(), json!(server_errors));
    if let Some(ceiling) = options.pg_ceiling_tps.filter(|c| *c > 0.0) {
        let ratio = |key: &str| {
            summary
                .get(key)
                .and_then(Value::as_f64)
                .map(|v| round(v / ceiling, 3))
        };
        let ratios = json!({
            "write_http_to_pg_ceiling": ratio("write_http_cmd_per_s"),
            "postgres_es_http_to_pg_ceiling": ratio("postgres_es_http_cmd_per_s"),
            "pipeline_http_to_pg_ceiling": ratio("pipeline_http_cmd_per_s"),
        });
        summary.insert("ratios".into(), ratios);
    }
    let write_to_pges = match (
        summary.get("write_http_cmd_per_s").and_then(Value::as_f64),
        summary
            .get("postgres_es_http_cmd_per_s")
            .and_then(Value::as_f64),
    ) {
        (Some(oms), Some(pges)) if pges > 0.0 => Some(round(oms / pges, 3)),
        _ => None,
    };
    if let Some(Value::Object(ratios)) = summary.get_mut("ratios") {
        ratios.insert("write_http_to_postgres_es".into(), json!(write_to_pges));
    } else {
        summary.insert(
            "ratios".into(),
            json!({"write_http_to_postgres_es": write_to_pges}),
        );
    }
    summary.insert(
        "bench_s".into(),
        json!(round(started.elapsed().as_secs_f64(), 1)),
    );
    drop(write_db);
    drop(nats);
    Ok(Value::Object(summary))
}

/// Prints a measured mix's rate and p99, and records it in the summary as `<key>_cmd_per_s`
/// (the headline figure) and `<key>` (every figure), the way each workload is reported.
fn record_mix(summary: &mut serde_json::Map<String, Value>, key: &str, stats: &client::MixStats) {
    eprintln!(
        "  {:.0} cmd/s, p99 {:.2} ms",
        stats.per_second(),
        stats.overall().p99
    );
    summary.insert(
        format!("{key}_cmd_per_s"),
        json!(round(stats.per_second(), 1)),
    );
    summary.insert(key.into(), stats.to_json());
}

async fn mix(
    http: &reqwest::Client,
    base: &str,
    tenants: Arc<Vec<Tenant>>,
    clients: usize,
    duration: Duration,
    rate: f64,
    lag: Option<tokio::sync::mpsc::UnboundedSender<client::Committed>>,
) -> anyhow::Result<MixStats> {
    client::run_mix(
        http,
        tenants,
        MixOptions {
            base: base.to_string(),
            clients,
            duration,
            rate,
            sample_every: 10,
            lag,
        },
    )
    .await
}

/// The machine: cores, memory, Postgres's version.
async fn machine(database_url: &str) -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| round(kb / 1024.0 / 1024.0, 1));
    let postgres = async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(database_url).await.ok()?;
        // Whether the run's connections are encrypted: TLS costs every round trip on both
        // sides, so figures with and without it do not compare.
        sqlx::query_as::<_, (String, bool)>(
            "select current_setting('server_version'), \
                    coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)",
        )
        .fetch_one(&mut conn)
        .await
        .ok()
    }
    .await;
    json!({"cores": cores, "memory_gb": memory_gb, "postgres": postgres.as_ref().map(|p| &p.0),
           "postgres_tls": postgres.map(|p| p.1), "os": std::env::consts::OS})
}

/// The fields every summary has (`make bench-smoke` checks them).
pub const REQUIRED_FIELDS: &[&str] = &[
    "pg_ceiling_tps",
    "write_http_cmd_per_s",
    "postgres_es_http_cmd_per_s",
    "pipeline_http_cmd_per_s",
    "pipeline_lag_p99_ms",
    "p99_ms_at_half_max",
    "rebuild_events",
    "rebuild_events_per_s",
    "peak_rss_mb",
    "growth_tenants",
    "growth_order_events",
    "growth_rebuild",
    "machine",
];

/// The summary as one table: each figure beside its baselines, with the ratios.
pub fn table(summary: &Value) -> String {
    let f = |key: &str| summary.get(key).and_then(Value::as_f64);
    let ceiling = f("pg_ceiling_tps");
    let pges = f("postgres_es_http_cmd_per_s");
    let ratio = |v: Option<f64>, base: Option<f64>| match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2} ×", v / b),
        _ => "—".into(),
    };
    let num = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}"));
    let ms = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1} ms"));
    let mut out = String::new();
    let mut row = |a: &str, b: String, c: String, d: String| {
        out.push_str(&format!("| {a:<64} | {b:>20} | {c:>12} | {d:>13} |\n"));
    };
    row(
        "measured",
        "oms".into(),
        "/ pg-ceiling".into(),
        "/ postgres-es".into(),
    );
    row("---", "---".into(), "---".into(), "---".into());
    row(
        "pg-ceiling (pgbench), tps",
        num(ceiling),
        ratio(ceiling, ceiling),
        "".into(),
    );
    row(
        "postgres-es over HTTP, mix, cmd/s",
        num(pges),
        ratio(pges, ceiling),
        ratio(pges, pges),
    );
    let write = f("write_http_cmd_per_s");
    row(
        "write path over HTTP (--role api), cmd/s",
        num(write),
        ratio(write, ceiling),
        ratio(write, pges),
    );
    let p = summary
        .get("pipeline_http_cmd_per_s")
        .and_then(Value::as_f64);
    row(
        "whole pipeline over HTTP (one oms serve), cmd/s",
        num(p),
        ratio(p, ceiling),
        ratio(p, pges),
    );
    row(
        "write path p99",
        ms(summary["write_http"]["p99_ms"].as_f64()),
        "".into(),
        "".into(),
    );
    row(
        "p99 at half the maximum rate",
        ms(f("p99_ms_at_half_max")),
        "".into(),
        "".into(),
    );
    row(
        "pipeline lag p50 / p99",
        format!(
            "{} / {}",
            ms(f("pipeline_lag_p50_ms")),
            ms(f("pipeline_lag_p99_ms"))
        ),
        "".into(),
        "".into(),
    );
    row(
        "pipeline backlog at end (events)",
        num(f("pipeline_backlog_at_end")),
        "".into(),
        "".into(),
    );
    row(
        "pipeline drained after (s)",
        f("pipeline_drain_s").map_or("not in time".into(), |v| format!("{v:.2}")),
        "".into(),
        "".into(),
    );
    let paced = &summary["pipeline_paced"];
    row(
        &format!(
            "pipeline lag p99 at {} cmd/s (paced)",
            num(paced["target_cmd_per_s"].as_f64())
        ),
        ms(paced["lag_p99_ms"].as_f64()),
        "".into(),
        "".into(),
    );
    for g in summary["growth_tenants"].as_array().into_iter().flatten() {
        row(
            &format!("write path, {} tenant(s): cmd/s, p99", g["tenants"]),
            format!(
                "{} / {}",
                num(g["cmd_per_s"].as_f64()),
                ms(g["p99_ms"].as_f64())
            ),
            ratio(g["cmd_per_s"].as_f64(), ceiling),
            "".into(),
        );
    }
    for g in summary["growth_order_events"]
        .as_array()
        .into_iter()
        .flatten()
    {
        row(
            &format!(
                "command on an order of {} events ({}): p50, p99",
                g["events"],
                g["grown_with"].as_str().unwrap_or("notes")
            ),
            format!(
                "{} / {}",
                ms(g["p50_ms"].as_f64()),
                ms(g["p99_ms"].as_f64())
            ),
            "".into(),
            "".into(),
        );
    }
    for g in summary["growth_rebuild"].as_array().into_iter().flatten() {
        row(
            &format!(
                "oms replay, {} events{}",
                g["events"],
                if g["finished"] == json!(false) {
                    " (stopped)"
                } else {
                    ""
                }
            ),
            format!("{} ev/s", num(g["events_per_s"].as_f64())),
            format!("{} s", g["replay_s"]),
            "".into(),
        );
    }
    row(
        "peak RSS of any oms process (MB)",
        num(f("peak_rss_mb")),
        "".into(),
        "".into(),
    );
    out
}
