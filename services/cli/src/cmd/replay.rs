//! `oms replay`: rebuilds read models from the event store with the projector's own apply
//! code: each tenant in one transaction for every chosen projection (the old rows stay visible
//! until it commits), `--jobs` tenants side by side, with progress on stderr.

use anyhow::Context;
use oms_projections::Projection;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use crate::connect::{connect_and_migrate, DbArgs};

/// What to rebuild.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Rebuild only this projection (repeatable): reference_data, orders, order_history.
    #[arg(long = "projection")]
    projections: Vec<String>,
    /// Rebuild only this tenant (repeatable).
    #[arg(long = "tenant")]
    tenants: Vec<Uuid>,
    /// Events read per page (each page is applied as one batch to every chosen projection).
    /// A page is held in memory as decoded events: 1,000 kept a million-event replay's peak
    /// RSS about 25 MB lower than 2,000, at the same rate.
    #[arg(long, default_value_t = 1000)]
    batch: i64,
    /// Tenants rebuilt side by side, each in its own transaction on its own connection.
    #[arg(long, default_value_t = 2)]
    jobs: u32,
}

/// Rebuilds the chosen projections of the chosen tenants.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let projections = if args.projections.is_empty() {
        Projection::ALL.to_vec()
    } else {
        args.projections
            .iter()
            .map(|name| {
                Projection::from_name(name).ok_or_else(|| {
                    oms_projector::replay::ReplayError::UnknownProjection(name.clone())
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    if args.batch < 1 {
        anyhow::bail!("--batch must be at least 1");
    }
    if args.jobs < 1 {
        anyhow::bail!("--jobs must be at least 1");
    }
    connect_and_migrate(&args.db.database_url)
        .await?
        .close()
        .await;
    // One connection per tenant rebuilt side by side: each holds its tenant's transaction.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(args.jobs)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&args.db.database_url)
        .await
        .context("cannot connect to the database")?;
    let store = super::data_keys::store(pool)?;
    let tenants = oms_projector::replay::tenants(&store, &args.tenants).await?;
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
    let done = Arc::new(AtomicU64::new(0));
    let last_line = Arc::new(Mutex::new(std::time::Instant::now()));
    let report = {
        let bar = bar.clone();
        Arc::new(move |n: u64| {
            let done = done.fetch_add(n, Ordering::Relaxed) + n;
            match &bar {
                Some(bar) => bar.set_position(done),
                None => {
                    let mut last = last_line.lock().unwrap_or_else(|e| e.into_inner());
                    if last.elapsed() >= std::time::Duration::from_secs(1) || done == total {
                        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                        let eta = (total.saturating_sub(done)) as f64 / rate.max(0.001);
                        eprintln!(
                            "replay: {done}/{total} events, {rate:.0} events/s, ETA {eta:.0}s"
                        );
                        *last = std::time::Instant::now();
                    }
                }
            }
        })
    };
    // Each tenant in one transaction for every chosen projection; `--jobs` workers take tenants
    // from one queue.
    let queue: Arc<Mutex<Vec<Uuid>>> = Arc::new(Mutex::new(
        tenants.iter().rev().map(|(tenant, _)| *tenant).collect(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.jobs {
        let (store, projections, queue, report) = (
            store.clone(),
            projections.clone(),
            queue.clone(),
            report.clone(),
        );
        let (bar, batch) = (bar.clone(), args.batch);
        workers.spawn(async move {
            let mut rebuilt = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(tenant) = next else { break };
                if let Some(bar) = &bar {
                    bar.set_message(tenant.to_string());
                }
                let mut progress = |n: u64| report(n);
                rebuilt.extend(
                    oms_projector::replay::rebuild_tenant(
                        &store,
                        &projections,
                        tenant,
                        batch,
                        &mut progress,
                    )
                    .await?,
                );
            }
            Ok::<_, oms_projector::ProjectorError>(rebuilt)
        });
    }
    let mut rebuilt = Vec::new();
    while let Some(result) = workers.join_next().await {
        rebuilt.extend(result??);
    }
    rebuilt.sort_by_key(|r| (r.projection, r.tenant));
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
