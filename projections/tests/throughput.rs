//! What applying costs, over an event store filled with many copies of the trading scenario:
//! one event per transaction (how the projector used to apply each message) against batches
//! (how it applies a fetch now), and a rebuild (`oms replay`'s shape: the tenant's rows cleared
//! and its events applied in large pages inside one transaction). The rows each way must be
//! identical; the rates are printed.
//!
//! Small by default, so it runs with the other tests. To measure, make it large and keep the
//! database for `oms replay`:
//!
//! ```text
//! OMS_THROUGHPUT_COPIES=2000 OMS_THROUGHPUT_KEEP=1 \
//!   cargo nextest run --release -p oms-projections --test throughput --no-capture
//! ```

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use common::{trade, Db};
use oms_projections::{checkpoints, EventRecord, Projection};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Tenants the copies are spread over.
const TENANTS: usize = 4;
/// Copies of the scenario in flight at once in a tenant (their events interleave, as orders
/// placed side by side do).
const IN_FLIGHT: usize = 16;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `text` with every quoted UUID replaced by its image under `map` (new ones made as needed),
/// except `keep`.
fn remap(text: &str, map: &mut BTreeMap<Uuid, Uuid>, keep: Uuid) -> String {
    text.split('"')
        .map(|piece| match Uuid::parse_str(piece) {
            Ok(id) if piece.len() == 36 && id != keep => {
                map.entry(id).or_insert_with(Uuid::new_v4).to_string()
            }
            _ => piece.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\"")
}

/// Fills the event store with `copies` copies of the scenario per tenant (fresh ids each) and
/// returns the tenants with their heads.
async fn fill(db: &Db, copies: usize) -> Vec<(Uuid, i64)> {
    let template = trade(Uuid::new_v4(), db.today().await).await;
    let source = template.log.tenant;
    let mut tenants = Vec::new();
    for t in 0..TENANTS {
        let tenant = Uuid::new_v4();
        sqlx::query("insert into tenants (id, name, slug) values ($1, $2, $3)")
            .bind(tenant)
            .bind(format!("Tenant {t}"))
            .bind(format!("t-{}", tenant.simple()))
            .execute(&db.pool)
            .await
            .unwrap();
        // Copies in flight side by side: event i of each copy of a round, then event i + 1.
        let mut log: Vec<EventRecord> = Vec::new();
        for round in (0..copies).step_by(IN_FLIGHT) {
            let width = IN_FLIGHT.min(copies - round);
            let mut maps = vec![BTreeMap::new(); width];
            for event in &template.log.events {
                for map in maps.iter_mut() {
                    let mut copy = event.clone();
                    copy.tenant_id = tenant;
                    copy.aggregate_id = *map.entry(event.aggregate_id).or_insert_with(Uuid::new_v4);
                    copy.payload =
                        serde_json::from_str(&remap(&event.payload.to_string(), map, source))
                            .unwrap();
                    copy.position = log.len() as i64 + 1;
                    log.push(copy);
                }
            }
        }
        for page in log.chunks(5000) {
            let column = |f: fn(&EventRecord) -> Value| page.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence, \
                     event_type, event_version, payload, metadata, recorded_at, hash) \
                 select $1, *, '\\x00'::bytea from unnest($2::int8[], $3::text[], $4::uuid[], \
                     $5::int8[], $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], \
                     $10::timestamptz[])",
            )
            .bind(tenant)
            .bind(page.iter().map(|e| e.position).collect::<Vec<_>>())
            .bind(
                page.iter()
                    .map(|e| e.aggregate_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(page.iter().map(|e| e.aggregate_id).collect::<Vec<_>>())
            .bind(page.iter().map(|e| e.sequence).collect::<Vec<_>>())
            .bind(
                page.iter()
                    .map(|e| e.event_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                page.iter()
                    .map(|e| e.event_version.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(column(|e| e.payload.clone()))
            .bind(column(|e| e.metadata.clone()))
            .bind(page.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
            .execute(&db.pool)
            .await
            .unwrap();
        }
        sqlx::query("insert into tenant_heads (tenant_id, position) values ($1, $2)")
            .bind(tenant)
            .bind(log.len() as i64)
            .execute(&db.pool)
            .await
            .unwrap();
        tenants.push((tenant, log.len() as i64));
    }
    sqlx::query("analyze events")
        .execute(&db.pool)
        .await
        .unwrap();
    tenants
}

type Row = (
    Uuid,
    i64,
    String,
    Uuid,
    i64,
    String,
    String,
    Value,
    Value,
    DateTime<Utc>,
);

/// The tenant's events after `after`, up to `limit` of them, as the projections see them (the
/// store's range read; the scenario needs no upcasting).
async fn events_after(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    after: i64,
    limit: i64,
) -> Vec<EventRecord> {
    let rows: Vec<Row> = sqlx::query_as(
        "select tenant_id, position, aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata, recorded_at \
         from events where tenant_id = $1 and position > $2 order by position limit $3",
    )
    .bind(tenant)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| EventRecord {
            tenant_id: r.0,
            position: r.1,
            aggregate_type: r.2,
            aggregate_id: r.3,
            sequence: r.4,
            event_type: r.5,
            event_version: r.6,
            payload: r.7,
            metadata: r.8,
            recorded_at: r.9,
        })
        .collect()
}

/// Applies the tenant's events after each projection's checkpoint, up to `until`, `batch` per
/// transaction, as the projector does (checkpoint locked, rows applied, checkpoint moved).
/// Returns events applied per projection.
async fn project(pool: &PgPool, tenant: Uuid, batch: i64, until: i64) -> u64 {
    let mut applied = 0;
    for projection in Projection::ALL {
        loop {
            let mut tx = pool.begin().await.unwrap();
            let checkpoint = checkpoints::lock(&mut tx, projection, tenant)
                .await
                .unwrap();
            let limit = batch.min(until - checkpoint);
            if limit <= 0 {
                break;
            }
            let events = events_after(&mut tx, tenant, checkpoint, limit).await;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            projection.apply_batch(&mut tx, &events).await.unwrap();
            checkpoints::advance(&mut tx, projection, tenant, last)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            applied += events.len() as u64;
        }
    }
    applied / Projection::ALL.len() as u64
}

/// A rebuild of every projection of `tenant` in one transaction each, `page` events per read.
async fn rebuild(pool: &PgPool, tenant: Uuid, page: i64) {
    for projection in Projection::ALL {
        let mut tx = pool.begin().await.unwrap();
        checkpoints::lock(&mut tx, projection, tenant)
            .await
            .unwrap();
        checkpoints::clear(&mut tx, projection, tenant)
            .await
            .unwrap();
        let mut position = 0;
        loop {
            let events = events_after(&mut tx, tenant, position, page).await;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            projection.apply_batch(&mut tx, &events).await.unwrap();
            position = last;
        }
        checkpoints::advance(&mut tx, projection, tenant, position)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

/// Every row of the tenant's read tables, as sorted JSON text.
async fn rows_of(pool: &PgPool, tenant: Uuid) -> BTreeMap<&'static str, Vec<String>> {
    let mut all = BTreeMap::new();
    for projection in Projection::ALL {
        for table in projection.tables() {
            let rows: Vec<String> = sqlx::query_scalar(&format!(
                "select to_jsonb(t)::text from read.{table} t where tenant_id = $1 order by 1"
            ))
            .bind(tenant)
            .fetch_all(pool)
            .await
            .unwrap();
            all.insert(*table, rows);
        }
    }
    all
}

fn rate(events: f64, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64();
    format!(
        "{events:.0} events in {seconds:.2}s: {:.0} events/s",
        events / seconds.max(1e-6)
    )
}

#[tokio::test]
async fn batches_and_rebuilds_equal_one_event_at_a_time_over_a_large_store() {
    let copies = knob("OMS_THROUGHPUT_COPIES", 3);
    let db = Db::fresh().await;
    let started = Instant::now();
    let tenants = fill(&db, copies).await;
    let total: i64 = tenants.iter().map(|(_, head)| head).sum();
    eprintln!("filled: {}", rate(total as f64, started));

    // Tenant 0: the first part one event per transaction, the rest in batches of 500.
    let (first, head) = tenants[0];
    let single = (head / 4).min(1500);
    let started = Instant::now();
    let applied = project(&db.pool, first, 1, single).await;
    eprintln!(
        "one event per transaction, every projection: {}",
        rate(applied as f64, started)
    );
    let started = Instant::now();
    let applied = project(&db.pool, first, 500, head).await;
    eprintln!(
        "batches of 500, every projection: {}",
        rate(applied as f64, started)
    );
    let projected = rows_of(&db.pool, first).await;
    assert!(!projected["order_history"].is_empty());

    // A rebuild of every tenant, pages of 5000: the same rows as the projector's.
    let started = Instant::now();
    for (tenant, _) in &tenants {
        rebuild(&db.pool, *tenant, 5000).await;
    }
    eprintln!(
        "rebuild of every projection, store events: {}",
        rate(total as f64, started)
    );
    assert_eq!(rows_of(&db.pool, first).await, projected);

    if std::env::var("OMS_THROUGHPUT_KEEP").is_ok() {
        eprintln!("kept database {} ({total} events)", db.name);
    } else {
        db.drop().await;
    }
}
