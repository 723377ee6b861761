//! `oms bench`: commands per second through the service's own command pipeline, against
//! postgres-es running the same aggregate and commands (the baseline), and the projection
//! throughput — all measured in one run on a throw-away database, so the figures are ratios
//! taken under the same conditions. `make bench` adds Postgres's own ceiling for a
//! command-shaped transaction (scripts/pg-ceiling.sh) to the report.

use chrono::NaiveDate;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::CqrsFramework;
use oms_domain::purchase_order::{
    NewLine, NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand, PurchaseOrderHeader,
};
use oms_domain::reference::{Product, Reference, ReferenceCommand, Supplier};
use oms_domain::services::{DomainServices, InMemoryLookups, ReferenceType, SystemClock};
use oms_domain::values::{OrderNumber, UnitPrice, Weight};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

use oms_store::idempotency::Reply;
use oms_store::EventStore;
use oms_store::{Actor, CommandContext, Commands, NumberSeries};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A URL of the Postgres server (any database on it); the bench creates and drops its own.
    pub database_url: String,
    /// Seconds per workload.
    pub seconds: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Tenants the clients spread over.
    pub tenants: usize,
}

/// One workload's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Throughput {
    /// Commands completed.
    pub commands: u64,
    /// Commands per second.
    pub per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// The bench's report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchReport {
    /// Clients.
    pub clients: usize,
    /// Tenants.
    pub tenants: usize,
    /// Seconds per workload.
    pub seconds: u64,
    /// Creating purchase orders through the service's pipeline (tenant positions, hash chain,
    /// order-number series, unique keys, reference lookups, the rendered document).
    pub oms: Throughput,
    /// The same aggregate and commands through postgres-es (event-store mode): no tenants, no
    /// positions, no hashes, no number series, no uniqueness.
    pub postgres_es: Throughput,
    /// Events applied per second by a full catch-up of every projection from the event store.
    pub projection_events_per_second: f64,
}

fn database_on(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => url.to_string(),
    }
}

fn summarise(mut latencies: Vec<Duration>, elapsed: Duration) -> Throughput {
    latencies.sort_unstable();
    let at = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    Throughput {
        commands: latencies.len() as u64,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

fn header(supplier: Uuid) -> PurchaseOrderHeader {
    PurchaseOrderHeader {
        supplier_id: supplier,
        order_date: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap_or_default(),
        currency: Default::default(),
        weight_unit: Default::default(),
        logistics: Default::default(),
        plant_id: None,
        carrier_id: None,
        pickup_date: None,
        delivery_date: None,
        payment_terms: None,
        supplier_confirmation_number: None,
        carrier_release_number: None,
        notes: None,
    }
}

fn line(product: Uuid) -> Result<NewLine, anyhow::Error> {
    Ok(NewLine {
        line_id: Uuid::now_v7(),
        product_id: product,
        weight: Weight::parse("40000")?,
        price_per_unit: UnitPrice::parse("2.1575")?,
        quantity: None,
        description: None,
    })
}

fn context(tenant: Uuid) -> CommandContext {
    CommandContext {
        tenant,
        actor: Actor {
            subject: "bench".into(),
            name: None,
        },
        request_id: Uuid::now_v7().to_string(),
        correlation_id: "bench".into(),
        causation_id: None,
        expected_version: None,
        idempotency: None,
    }
}

/// Runs the bench on a database of its own, dropped afterwards.
pub async fn run(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let name = format!("oms_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&options.database_url).await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let url = database_on(&options.database_url, &name);
    let result = run_on(&url, options).await;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await?;
    result
}

async fn run_on(url: &str, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(options.clients + 4).unwrap_or(32))
        .connect(url)
        .await?;
    oms_store::migrate::run(&pool).await?;
    let store = EventStore::new(pool.clone());
    let commands = Commands::new(store.clone(), Arc::new(SystemClock));
    let render = |_: &oms_store::Loaded<Reference<Supplier>>, _: i64| Reply {
        status: 201,
        body: json!({}),
        headers: Vec::new(),
    };

    // Tenants, each with a supplier and a product.
    let mut tenants = Vec::new();
    let mut lookups = InMemoryLookups::new();
    for n in 0..options.tenants {
        let tenant =
            oms_store::tenants::create(&pool, &format!("Bench {n}"), &format!("bench-{n}"))
                .await?
                .id;
        let supplier = Uuid::now_v7();
        let product = Uuid::now_v7();
        let details: Supplier = serde_json::from_value(json!({"name": format!("Supplier {n}")}))?;
        commands
            .execute::<Reference<Supplier>, _, _>(
                &context(tenant),
                supplier,
                None,
                |_| ReferenceCommand::Register(details.clone()),
                render,
            )
            .await?;
        let item: Product = serde_json::from_value(
            json!({"code": format!("P{n}"), "description": "Beef trim", "protein": "beef"}),
        )?;
        commands
            .execute::<Reference<Product>, _, _>(
                &context(tenant),
                product,
                None,
                |_| ReferenceCommand::Register(item.clone()),
                |_, _| Reply {
                    status: 201,
                    body: json!({}),
                    headers: Vec::new(),
                },
            )
            .await?;
        lookups = lookups
            .with_reference(ReferenceType::Supplier, supplier, true)
            .with_reference(ReferenceType::Product, product, true);
        tenants.push((tenant, supplier, product));
    }
    let tenants = Arc::new(tenants);

    let oms = workload(options, {
        let commands = commands.clone();
        let tenants = tenants.clone();
        move |worker, i| {
            let commands = commands.clone();
            let (tenant, supplier, product) = tenants[(worker + i) % tenants.len()];
            async move {
                let line = line(product)?;
                commands
                    .execute::<PurchaseOrder, _, _>(
                        &context(tenant),
                        Uuid::now_v7(),
                        Some(NumberSeries::PURCHASE_ORDER),
                        |number| {
                            PurchaseOrderCommand::Create(NewPurchaseOrder {
                                order_number: OrderNumber::parse(
                                    number.as_deref().unwrap_or("PO-0"),
                                )
                                .unwrap_or_else(|_| OrderNumber::assigned("PO", 0)),
                                header: header(supplier),
                                lines: vec![line.clone()],
                            })
                        },
                        |loaded, position| {
                            let mut body = oms_projections::documents::purchase_order(
                                &loaded.aggregate,
                                &loaded.stamp(),
                            );
                            // The API answers with the tenant's position (see oms-api).
                            if let Some(map) = body.as_object_mut() {
                                map.insert("position".into(), json!(position));
                            }
                            Reply {
                                status: 201,
                                body,
                                headers: Vec::new(),
                            }
                        },
                    )
                    .await?;
                Ok(())
            }
        }
    })
    .await?;

    // The baseline: postgres-es, its own table, the same aggregate and commands.
    sqlx::raw_sql(
        "create table pges_events (
             aggregate_type text not null, aggregate_id text not null,
             sequence bigint check (sequence >= 0) not null, event_type text not null,
             event_version text not null, payload json not null, metadata json not null,
             primary key (aggregate_type, aggregate_id, sequence));
         create table pges_snapshots (
             aggregate_type text not null, aggregate_id text not null,
             last_sequence bigint not null, current_snapshot bigint not null, payload json not null,
             primary key (aggregate_type, aggregate_id, last_sequence));",
    )
    .execute(&pool)
    .await?;
    let repository = postgres_es::PostgresEventRepository::new(pool.clone())
        .with_tables("pges_events", "pges_snapshots");
    let services = DomainServices::new(Arc::new(lookups), Arc::new(SystemClock));
    let framework = Arc::new(CqrsFramework::new(
        PersistedEventStore::<_, PurchaseOrder>::new_event_store(repository),
        vec![],
        services,
    ));
    let postgres_es = workload(options, {
        let tenants = tenants.clone();
        move |worker, i| {
            let framework = framework.clone();
            let (_, supplier, product) = tenants[(worker + i) % tenants.len()];
            async move {
                let command = PurchaseOrderCommand::Create(NewPurchaseOrder {
                    order_number: OrderNumber::parse(&format!("B-{worker}-{i}"))?,
                    header: header(supplier),
                    lines: vec![line(product)?],
                });
                framework
                    .execute(&Uuid::now_v7().to_string(), command)
                    .await
                    .map_err(|err| anyhow::anyhow!("{err}"))?;
                Ok(())
            }
        }
    })
    .await?;

    // The read side: every projection of every tenant, caught up from the event store.
    let started = Instant::now();
    let applied = oms_projector::catch_up_all(&store, 1000).await?;
    let projection_events_per_second = applied as f64 / started.elapsed().as_secs_f64();

    Ok(BenchReport {
        clients: options.clients,
        tenants: options.tenants,
        seconds: options.seconds,
        oms,
        postgres_es,
        projection_events_per_second,
    })
}

/// Runs `operation(worker, iteration)` from `clients` workers until the time is up.
async fn workload<F, Fut>(options: &BenchOptions, operation: F) -> anyhow::Result<Throughput>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..options.clients {
        let operation = operation.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                operation(worker, i).await?;
                latencies.push(t.elapsed());
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(summarise(latencies, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_sorted_latencies() {
        let latencies = (1..=100).map(Duration::from_millis).collect();
        let t = summarise(latencies, Duration::from_secs(2));
        assert_eq!(t.commands, 100);
        assert!((t.per_second - 50.0).abs() < 1e-9);
        assert!((t.p50_ms - 51.0).abs() < 1e-9 || (t.p50_ms - 50.0).abs() < 1e-9);
        assert!((t.p99_ms - 99.0).abs() < 1e-9 || (t.p99_ms - 100.0).abs() < 1e-9);
    }
}
