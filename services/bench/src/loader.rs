//! The bulk loader for the rebuild figures: real order streams (those the write-path run made
//! over HTTP) copied, with fresh ids and order numbers, into a fresh store through the store's
//! own append (`EventStore::append_in`: positions, hash chain, many events per transaction),
//! until the store holds the asked number of events; and `oms replay` timed as a process.
//!
//! The copies claim no unique keys (the order numbers are renumbered so they stay distinct);
//! the rebuild does not read the unique keys.

use crate::procs::OmsEnv;
use oms_store::{EventStore, NewEvent};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use uuid::Uuid;

/// What was loaded.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Events appended.
    pub events: u64,
    /// How long it took.
    pub seconds: f64,
}

#[derive(Debug, Clone)]
struct Template {
    aggregate_type: String,
    aggregate_id: Uuid,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
}

/// Events per transaction.
const BATCH: usize = 2000;

/// Copies the busiest tenant of `source_url` into `tenants` new tenants of `target_url` (a
/// migrated, empty store) until it holds `events` events.
pub async fn load(
    source_url: &str,
    target_url: &str,
    tenants: usize,
    events: u64,
) -> anyhow::Result<Loaded> {
    let source = PgPoolOptions::new()
        .max_connections(1)
        .connect(source_url)
        .await?;
    let busiest: Uuid = sqlx::query_scalar(
        "select tenant_id from events group by tenant_id order by count(*) desc limit 1",
    )
    .fetch_one(&source)
    .await?;
    let rows: Vec<(String, Uuid, i64, String, String, Value, Value)> = sqlx::query_as(
        "select aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
           from events where tenant_id = $1 order by position",
    )
    .bind(busiest)
    .fetch_all(&source)
    .await?;
    source.close().await;
    let template: Vec<Template> = rows
        .into_iter()
        .map(
            |(
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version,
                payload,
                metadata,
            )| Template {
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                event_version,
                payload,
                metadata,
            },
        )
        .collect();
    let is_order = |t: &Template| t.aggregate_type.ends_with("order");
    let references: Vec<Template> = template.iter().filter(|t| !is_order(t)).cloned().collect();
    let orders: Vec<Template> = template.iter().filter(|t| is_order(t)).cloned().collect();
    anyhow::ensure!(
        !orders.is_empty(),
        "the write-path run left no orders to copy"
    );
    let reference_ids: HashSet<Uuid> = references.iter().map(|t| t.aggregate_id).collect();

    let target = PgPoolOptions::new()
        .max_connections(3)
        .connect(target_url)
        .await?;
    let store = EventStore::new(target.clone());
    let started = Instant::now();
    let tenants = tenants.max(1);
    let share = events.div_ceil(tenants as u64);
    let mut tasks = Vec::new();
    for n in 0..tenants {
        let tenant =
            oms_store::tenants::create(&target, &format!("Rebuild {n}"), &format!("rebuild-{n}"))
                .await
                .map_err(|err| anyhow::anyhow!("create a tenant: {err}"))?
                .id;
        let store = store.clone();
        let references = references.clone();
        let orders = orders.clone();
        let reference_ids = reference_ids.clone();
        let target_events = share.min(events.saturating_sub(share * n as u64));
        tasks.push(tokio::spawn(async move {
            let mut copier = Copier {
                tenant,
                source_tenant: busiest,
                reference_map: HashMap::new(),
                reference_ids,
                numbers: HashMap::new(),
            };
            let mut batch = Vec::with_capacity(BATCH);
            let mut written = 0u64;
            for event in &references {
                if written + batch.len() as u64 >= target_events {
                    break;
                }
                let mut clone = HashMap::new();
                batch.push(copier.copy(event, &mut clone, true));
            }
            'outer: loop {
                let mut clone = HashMap::new();
                for event in &orders {
                    if written + batch.len() as u64 >= target_events {
                        break 'outer;
                    }
                    batch.push(copier.copy(event, &mut clone, false));
                    if batch.len() >= BATCH {
                        written += flush(&store, tenant, &mut batch).await?;
                    }
                }
            }
            written += flush(&store, tenant, &mut batch).await?;
            anyhow::Ok(written)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    target.close().await;
    Ok(Loaded {
        events: total,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn flush(store: &EventStore, tenant: Uuid, batch: &mut Vec<NewEvent>) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let events = std::mem::take(batch);
    let count = events.len() as u64;
    let mut tx = store.pool().begin().await?;
    store
        .append_in(&mut tx, tenant, events)
        .await
        .map_err(|err| anyhow::anyhow!("append: {err}"))?;
    tx.commit().await?;
    Ok(count)
}

struct Copier {
    tenant: Uuid,
    source_tenant: Uuid,
    /// The template's reference ids → this tenant's.
    reference_map: HashMap<String, String>,
    reference_ids: HashSet<Uuid>,
    /// The last number given per series prefix (`PO`, `SO`, `INV`, …).
    numbers: HashMap<String, u64>,
}

impl Copier {
    fn copy(
        &mut self,
        event: &Template,
        clone: &mut HashMap<String, String>,
        reference: bool,
    ) -> NewEvent {
        let mut payload = event.payload.clone();
        let mut metadata = event.metadata.clone();
        self.rewrite(&mut payload, None, clone);
        self.rewrite(&mut metadata, None, clone);
        let id = event.aggregate_id.to_string();
        let aggregate_id = if reference {
            self.reference_map
                .entry(id.clone())
                .or_insert_with(|| Uuid::now_v7().to_string())
                .parse()
                .unwrap_or_else(|_| Uuid::now_v7())
        } else {
            clone
                .entry(id)
                .or_insert_with(|| Uuid::now_v7().to_string())
                .parse()
                .unwrap_or_else(|_| Uuid::now_v7())
        };
        NewEvent {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload,
            metadata,
            unique_keys: Vec::new(),
            lot_movements: Vec::new(),
        }
    }

    /// Gives every id a fresh one (the tenant's reference data its tenant-wide one, every
    /// other id one per copy) and every `*_number` like `PO-000012` the next of its series.
    fn rewrite(
        &mut self,
        value: &mut Value,
        key: Option<&str>,
        clone: &mut HashMap<String, String>,
    ) {
        match value {
            Value::String(s) => {
                if let Ok(id) = s.parse::<Uuid>() {
                    if id == self.source_tenant {
                        *s = self.tenant.to_string();
                    } else if self.reference_ids.contains(&id) {
                        *s = self
                            .reference_map
                            .entry(s.clone())
                            .or_insert_with(|| Uuid::now_v7().to_string())
                            .clone();
                    } else {
                        *s = clone
                            .entry(s.clone())
                            .or_insert_with(|| Uuid::now_v7().to_string())
                            .clone();
                    }
                } else if key.is_some_and(|k| k.ends_with("_number")) {
                    if let Some((prefix, digits)) = s.rsplit_once('-') {
                        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                            let renumbered = match clone.get(s.as_str()) {
                                Some(done) => done.clone(),
                                None => {
                                    let next = self.numbers.entry(prefix.to_string()).or_default();
                                    *next += 1;
                                    let fresh =
                                        format!("{prefix}-{:0width$}", *next, width = digits.len());
                                    clone.insert(s.clone(), fresh.clone());
                                    fresh
                                }
                            };
                            *s = renumbered;
                        }
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.rewrite(item, key, clone);
                }
            }
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.rewrite(v, Some(k.as_str()), clone);
                }
            }
            _ => {}
        }
    }
}

/// How a replay went.
#[derive(Debug, Clone, Copy)]
pub struct Replayed {
    /// Wall time (up to the limit).
    pub seconds: f64,
    /// Whether it finished within the limit.
    pub finished: bool,
    /// The share of the work done (1 when finished; from its last progress line otherwise).
    pub fraction_done: f64,
    /// The process's peak resident set, MB.
    pub peak_rss_mb: Option<f64>,
}

/// Runs `oms replay` (every projection, every tenant) on `env`'s database, timed; stopped
/// after `limit`, when the rate so far (from its progress lines) is what is reported.
pub async fn replay(env: &OmsEnv, limit: Duration) -> anyhow::Result<Replayed> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&env.binary)
        .arg("replay")
        .env("DATABASE_URL", &env.database_url)
        .env("OMS_LOG", "warn")
        .env_remove("OMS_DB_ROLE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take();
    let fraction = std::sync::Arc::new(std::sync::Mutex::new(0.0f64));
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let fraction = fraction.clone();
        let tail = tail.clone();
        tokio::spawn(async move {
            let Some(stderr) = stderr else { return };
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // "replay: 1234/5678 events, …"
                if let Some(rest) = line.strip_prefix("replay: ") {
                    if let Some((done, rest)) = rest.split_once('/') {
                        let total = rest.split_whitespace().next().unwrap_or("0");
                        if let (Ok(done), Ok(total)) = (done.parse::<f64>(), total.parse::<f64>()) {
                            if total > 0.0 {
                                *fraction.lock().unwrap_or_else(|e| e.into_inner()) = done / total;
                            }
                        }
                    }
                }
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        })
    };
    let mut peak = None;
    let deadline = started + limit;
    let status = loop {
        if let Some(pid) = pid {
            if let Some(mb) = crate::procs::peak_rss_mb(pid) {
                peak = Some(mb);
            }
        }
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let _ = reader.await;
    match status {
        Some(status) => {
            anyhow::ensure!(
                status.success(),
                "oms replay failed ({status}): {}",
                tail.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
            );
            Ok(Replayed {
                seconds,
                finished: true,
                fraction_done: 1.0,
                peak_rss_mb: peak,
            })
        }
        None => Ok(Replayed {
            seconds,
            finished: false,
            fraction_done: *fraction.lock().unwrap_or_else(|e| e.into_inner()),
            peak_rss_mb: peak,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn copier(reference: Uuid, source_tenant: Uuid) -> Copier {
        Copier {
            tenant: Uuid::now_v7(),
            source_tenant,
            reference_map: HashMap::new(),
            reference_ids: [reference].into_iter().collect(),
            numbers: HashMap::new(),
        }
    }

    #[test]
    fn a_copy_gets_fresh_ids_and_numbers_but_keeps_its_tenants_reference_data() {
        let supplier = Uuid::now_v7();
        let source_tenant = Uuid::now_v7();
        let order = Uuid::now_v7();
        let line = Uuid::now_v7();
        let mut copier = copier(supplier, source_tenant);
        let payload = json!({"supplier_id": supplier, "order_number": "PO-000007",
                             "lines": [{"line_id": line, "source_purchase_order_id": order}],
                             "tenant": source_tenant, "weight": "40000"});

        let mut first_clone = HashMap::new();
        let mut first = payload.clone();
        copier.rewrite(&mut first, None, &mut first_clone);
        let mut again = json!({"line_id": line});
        copier.rewrite(&mut again, None, &mut first_clone);
        let mut second_clone = HashMap::new();
        let mut second = payload.clone();
        copier.rewrite(&mut second, None, &mut second_clone);

        // Reference data: one id per tenant, the same in every copy.
        assert_ne!(first["supplier_id"], json!(supplier));
        assert_eq!(first["supplier_id"], second["supplier_id"]);
        // Order ids: fresh per copy, consistent within one.
        assert_ne!(first["lines"][0]["line_id"], json!(line));
        assert_eq!(first["lines"][0]["line_id"], again["line_id"]);
        assert_ne!(first["lines"][0]["line_id"], second["lines"][0]["line_id"]);
        assert_ne!(
            first["lines"][0]["source_purchase_order_id"],
            second["lines"][0]["source_purchase_order_id"]
        );
        // Numbers: the next of the series, same width; the tenant is the new one.
        assert_eq!(first["order_number"], json!("PO-000001"));
        assert_eq!(second["order_number"], json!("PO-000002"));
        assert_eq!(first["tenant"], json!(copier.tenant));
        // Everything else is left alone.
        assert_eq!(first["weight"], json!("40000"));
    }
}
