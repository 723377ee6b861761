//! `oms replay`: rebuilds read models from the event store with the projector's own apply
//! code, one (projection, tenant) transaction at a time, with progress on stderr.

use oms_projections::Projection;
use std::io::IsTerminal;
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
    /// Events read per batch.
    #[arg(long, default_value_t = 1000)]
    batch: i64,
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
    let pool = connect_and_migrate(&args.db.database_url).await?;
    let store = oms_store::EventStore::new(pool);
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
            let result = oms_projector::replay::rebuild(
                &store,
                *projection,
                *tenant,
                args.batch,
                &mut progress,
            )
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
