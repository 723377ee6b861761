//! The load client: C clients on keep-alive connections, each running whole order pairs (a
//! purchase order through its life, then a sales order sourced from it through its own) on
//! tenants picked in turn, as a real client would, with latency per command type and the
//! answers counted by status.

use oms_api::auth::{Role, TokenKeys};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// One tenant as the clients see it: its token and the reference data its orders name.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant's id.
    pub id: Uuid,
    /// An admin token of the tenant.
    pub token: String,
    /// A supplier of the tenant.
    pub supplier: String,
    /// A product of the tenant.
    pub product: String,
    /// A customer of the tenant.
    pub customer: String,
}

/// An HTTP client with keep-alive connections, as many as there are clients.
pub fn http_client(clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1) * 2)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Creates `count` tenants through the platform API, each with a supplier, a product and a
/// customer made through the tenant's own API, and mints each an admin token. `baseline`:
/// the postgres-es server has no tenants; its reference data is made the same way.
pub async fn make_tenants(
    http: &reqwest::Client,
    base: &str,
    keys: &TokenKeys,
    count: usize,
    label: &str,
    baseline: bool,
) -> anyhow::Result<Vec<Tenant>> {
    let platform = keys.mint(
        "bench-platform",
        None,
        None,
        vec![Role::PlatformAdmin],
        chrono::Duration::hours(4),
    );
    let mut tenants = Vec::with_capacity(count);
    for n in 0..count {
        let id = if baseline {
            Uuid::now_v7()
        } else {
            let created = post(
                http,
                &format!("{base}/api/v1/tenants"),
                &platform,
                json!({"name": format!("Bench {label} {n}"), "slug": format!("bench-{label}-{n}")}),
            )
            .await?;
            uuid_of(&created)?
        };
        let token = keys.mint(
            "bench-client",
            Some("Bench Client"),
            Some(id),
            vec![Role::Admin],
            chrono::Duration::hours(4),
        );
        let supplier = post(
            http,
            &format!("{base}/api/v1/suppliers"),
            &token,
            json!({"name": "Prairie Packers", "code": "PRA", "credit_terms": "net_30"}),
        )
        .await?;
        let product = post(
            http,
            &format!("{base}/api/v1/products"),
            &token,
            json!({"code": "BF-8020", "description": "Beef trim 80/20", "protein": "beef", "uom": "LB"}),
        )
        .await?;
        let customer = post(
            http,
            &format!("{base}/api/v1/customers"),
            &token,
            json!({"name": "Metro Grocers", "code": "MET"}),
        )
        .await?;
        tenants.push(Tenant {
            id,
            token,
            supplier: uuid_of(&supplier)?.to_string(),
            product: uuid_of(&product)?.to_string(),
            customer: uuid_of(&customer)?.to_string(),
        });
    }
    Ok(tenants)
}

fn uuid_of(body: &Value) -> anyhow::Result<Uuid> {
    body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no id in {body}"))
}

/// One POST that must succeed (set-up, not measured).
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("idempotency-key", Uuid::now_v7().to_string())
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "POST {url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Latencies of one command type and how its answers went.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Latencies of the successful attempts.
    pub latencies: Vec<Duration>,
}

/// What one run of the mix measured.
#[derive(Debug, Clone, Default)]
pub struct MixStats {
    /// Successful commands' latencies by command type (`po.create`, …).
    pub by_command: BTreeMap<&'static str, Samples>,
    /// Answers that were not 2xx, by status (0: no answer).
    pub errors_by_status: BTreeMap<u16, u64>,
    /// 409/412 answers retried (counted in `errors_by_status` too).
    pub retries: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl MixStats {
    fn merge(&mut self, other: MixStats) {
        for (name, samples) in other.by_command {
            self.by_command
                .entry(name)
                .or_default()
                .latencies
                .extend(samples.latencies);
        }
        for (status, n) in other.errors_by_status {
            *self.errors_by_status.entry(status).or_default() += n;
        }
        self.retries += other.retries;
    }

    /// Successful commands.
    pub fn commands(&self) -> u64 {
        self.by_command
            .values()
            .map(|s| s.latencies.len() as u64)
            .sum()
    }

    /// Successful commands per second.
    pub fn per_second(&self) -> f64 {
        self.commands() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers of 500 or above (0 = none).
    pub fn server_errors(&self) -> u64 {
        self.errors_by_status
            .iter()
            .filter(|(status, _)| **status >= 500 || **status == 0)
            .map(|(_, n)| n)
            .sum()
    }

    /// Latency percentiles over every command type.
    pub fn overall(&self) -> Percentiles {
        Percentiles::of(
            self.by_command
                .values()
                .flat_map(|s| s.latencies.iter().copied())
                .collect(),
        )
    }

    /// The figures as JSON: overall and per command type.
    pub fn to_json(&self) -> Value {
        let per_command: serde_json::Map<String, Value> = self
            .by_command
            .iter()
            .map(|(name, samples)| {
                let p = Percentiles::of(samples.latencies.clone());
                (
                    (*name).to_string(),
                    json!({"count": samples.latencies.len(), "p50_ms": p.p50, "p95_ms": p.p95, "p99_ms": p.p99, "max_ms": p.max}),
                )
            })
            .collect();
        let overall = self.overall();
        json!({
            "commands": self.commands(),
            "seconds": round(self.elapsed.as_secs_f64(), 2),
            "cmd_per_s": round(self.per_second(), 1),
            "p50_ms": overall.p50, "p95_ms": overall.p95, "p99_ms": overall.p99, "max_ms": overall.max,
            "errors_by_status": self.errors_by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "retries": self.retries,
            "per_command": per_command,
        })
    }
}

/// Rounds to `digits` decimals (for the JSON summary).
pub fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `latencies`.
    pub fn of(mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            if latencies.is_empty() {
                return 0.0;
            }
            let rank = (q * latencies.len() as f64).ceil() as usize;
            let index = rank.clamp(1, latencies.len()) - 1;
            round(latencies[index].as_secs_f64() * 1000.0, 2)
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Spaces the clients' commands to a rate (all clients together); none: as fast as they go.
pub struct Pacer {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// At most `rate` commands per second; 0 or less: unlimited.
    pub fn new(rate: f64) -> Self {
        Self {
            interval: (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate)),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// A command's answer as the lag watcher needs it: the tenant, its position, and when the
/// answer arrived.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The tenant.
    pub tenant: Uuid,
    /// The `position` in the answer.
    pub position: i64,
    /// When the answer arrived.
    pub at: Instant,
}

/// How to run the mix.
pub struct MixOptions {
    /// The service's base URL.
    pub base: String,
    /// Concurrent clients.
    pub clients: usize,
    /// How long.
    pub duration: Duration,
    /// Commands per second over all clients; 0: as fast as they go.
    pub rate: f64,
    /// Every n-th successful command's answer goes to `lag` (when set).
    pub sample_every: u64,
    /// Where sampled answers go.
    pub lag: Option<mpsc::UnboundedSender<Committed>>,
}

/// Runs the mix over `tenants` for the duration.
pub async fn run_mix(
    http: &reqwest::Client,
    tenants: Arc<Vec<Tenant>>,
    options: MixOptions,
) -> anyhow::Result<MixStats> {
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = Arc::new(Pacer::new(options.rate));
    let sampled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..options.clients {
        let mut client = Client {
            http: http.clone(),
            base: options.base.clone(),
            stats: MixStats::default(),
            pacer: pacer.clone(),
            stop: stop.clone(),
            lag: options.lag.clone(),
            sample_every: options.sample_every.max(1),
            sampled: sampled.clone(),
            version: 0,
        };
        let tenants = tenants.clone();
        workers.push(tokio::spawn(async move {
            let mut turn = worker;
            while !client.stop.load(Ordering::Relaxed) {
                let tenant = &tenants[turn % tenants.len()];
                turn += options.clients.max(1);
                let _ = order_pair(&mut client, tenant, turn).await;
            }
            client.stats
        }));
    }
    tokio::time::sleep(options.duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut stats = MixStats::default();
    for worker in workers {
        stats.merge(worker.await?);
    }
    // Commands in flight when the time was up finish after it; they count, over the time
    // they took.
    stats.elapsed = elapsed.max(started.elapsed().min(elapsed + Duration::from_secs(1)));
    Ok(stats)
}

struct Client {
    http: reqwest::Client,
    base: String,
    stats: MixStats,
    pacer: Arc<Pacer>,
    stop: Arc<AtomicBool>,
    lag: Option<mpsc::UnboundedSender<Committed>>,
    sample_every: u64,
    sampled: Arc<AtomicU64>,
    /// The version of the order the last answer was about (for If-Match).
    version: i64,
}

impl Client {
    /// One command: a fresh Idempotency-Key, If-Match with the order's version when it has
    /// one; 409 and 412 are retried (counted) a few times without If-Match, as a client that
    /// re-reads would; the body of the 2xx, or None.
    async fn command(
        &mut self,
        tenant: &Tenant,
        name: &'static str,
        path: &str,
        body: Value,
        if_match: bool,
    ) -> Option<Value> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        self.pacer.wait().await;
        let url = format!("{}{path}", self.base);
        let bytes = serde_json::to_vec(&body).ok()?;
        let key = Uuid::now_v7().to_string();
        let mut version = if_match.then_some(self.version);
        for attempt in 0..5 {
            let mut request = self
                .http
                .post(&url)
                .bearer_auth(&tenant.token)
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(bytes.clone());
            if let Some(version) = version {
                request = request.header("if-match", format!("\"{version}\""));
            }
            let started = Instant::now();
            let answer = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.bytes().await.ok().map(|body| (status, body))
                }
                Err(_) => None,
            };
            let latency = started.elapsed();
            let Some((status, body)) = answer else {
                *self.stats.errors_by_status.entry(0).or_default() += 1;
                return None;
            };
            if (200..300).contains(&status) {
                self.stats
                    .by_command
                    .entry(name)
                    .or_default()
                    .latencies
                    .push(latency);
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(v) = body["version"].as_i64() {
                    self.version = v;
                }
                if let (Some(lag), Some(position)) = (&self.lag, body["position"].as_i64()) {
                    if self.sampled.fetch_add(1, Ordering::Relaxed) % self.sample_every == 0 {
                        let _ = lag.send(Committed {
                            tenant: tenant.id,
                            position,
                            at: Instant::now(),
                        });
                    }
                }
                return Some(body);
            }
            *self.stats.errors_by_status.entry(status).or_default() += 1;
            if (status == 409 || status == 412) && attempt < 4 {
                self.stats.retries += 1;
                // The same key would replay a stored refusal: a retry is a new request.
                version = None;
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                continue;
            }
            if status >= 500 {
                eprintln!(
                    "bench: {name} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            return None;
        }
        None
    }
}

fn first_line(order: &Value) -> Option<String> {
    order["lines"][0]["line_id"].as_str().map(str::to_string)
}

/// One purchase order with three lines through its life, then a sales order sourced from it
/// through its own: 13 commands. Stops at the first command without a 2xx.
async fn order_pair(client: &mut Client, tenant: &Tenant, n: usize) -> Option<()> {
    let weight = 20_000 + (n * 37) % 20_000;
    let lines: Vec<Value> = (0..3)
        .map(|i| json!({"product_id": tenant.product, "weight": (weight + i * 100).to_string(), "price_per_unit": "2.1575"}))
        .collect();
    let po = client
        .command(
            tenant,
            "po.create",
            "/api/v1/purchase-orders",
            json!({"supplier_id": tenant.supplier, "order_date": "2026-11-02", "lines": lines}),
            false,
        )
        .await?;
    let po_id = po["id"].as_str()?.to_string();
    let base = format!("/api/v1/purchase-orders/{po_id}");
    client
        .command(
            tenant,
            "po.submit",
            &format!("{base}/submit"),
            json!({}),
            true,
        )
        .await?;
    client
        .command(
            tenant,
            "po.approve",
            &format!("{base}/approve"),
            json!({}),
            true,
        )
        .await?;
    let received: Vec<Value> = po["lines"]
        .as_array()?
        .iter()
        .map(|line| json!({"line_id": line["line_id"], "weight": format!("{}.5", line["weight"].as_str().unwrap_or("100").split('.').next().unwrap_or("100").parse::<u64>().unwrap_or(100) - 7)}))
        .collect();
    let receipt = client
        .command(
            tenant,
            "po.receipt",
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-09", "complete": true, "lines": received}),
            true,
        )
        .await?;
    let outstanding = receipt["outstanding"].as_str()?.to_string();
    client
        .command(
            tenant,
            "po.payment",
            &format!("{base}/payments"),
            json!({"amount": outstanding, "paid_on": "2026-11-10", "method": "wire"}),
            true,
        )
        .await?;
    client
        .command(
            tenant,
            "po.close",
            &format!("{base}/close"),
            json!({}),
            true,
        )
        .await?;

    let so = client
        .command(
            tenant,
            "so.create",
            "/api/v1/sales-orders",
            json!({
                "customer_id": tenant.customer, "order_date": "2026-11-02",
                "lines": [{"product_id": tenant.product, "weight": weight.to_string(), "price_per_unit": "2.3050",
                           "source_purchase_order_id": po_id}]
            }),
            false,
        )
        .await?;
    let so_id = so["id"].as_str()?.to_string();
    let so_line = first_line(&so)?;
    let base = format!("/api/v1/sales-orders/{so_id}");
    client
        .command(
            tenant,
            "so.confirm",
            &format!("{base}/confirm"),
            json!({}),
            true,
        )
        .await?;
    client
        .command(
            tenant,
            "so.ship",
            &format!("{base}/ship"),
            json!({"shipped_on": "2026-11-05", "carrier_release_number": format!("R-{n}"),
                   "lines": [{"line_id": so_line, "weight": format!("{}.5", weight - 3)}]}),
            true,
        )
        .await?;
    client
        .command(
            tenant,
            "so.deliver",
            &format!("{base}/deliver"),
            json!({"delivered_on": "2026-11-06"}),
            true,
        )
        .await?;
    let invoice = client
        .command(
            tenant,
            "so.invoice",
            &format!("{base}/invoice"),
            json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"}),
            true,
        )
        .await?;
    let outstanding = invoice["outstanding"].as_str()?.to_string();
    client
        .command(
            tenant,
            "so.payment",
            &format!("{base}/payments"),
            json!({"amount": outstanding, "paid_on": "2026-11-07", "method": "ach"}),
            true,
        )
        .await?;
    client
        .command(
            tenant,
            "so.close",
            &format!("{base}/close"),
            json!({}),
            true,
        )
        .await?;
    Some(())
}

/// How a long order is made long: what its events do to the order's document, and so to
/// every command's answer (which is the whole document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Notes: the document lists every one (999 notes: about 95 KB to render, record and send).
    Notes,
    /// Header changes of the draft: the document stays the size of a 10-event order's, so only
    /// the length of the history differs.
    HeaderChanges,
}

impl Growth {
    /// Its name in the summary and the table.
    pub fn name(self) -> &'static str {
        match self {
            Growth::Notes => "notes",
            Growth::HeaderChanges => "header changes",
        }
    }
}

/// Latency of a command on a purchase order that already has `events` events: the order is
/// brought to size with untimed commands (`growth`), then `samples` header changes are timed.
pub async fn order_size_latency(
    http: &reqwest::Client,
    base: &str,
    tenant: &Tenant,
    events: usize,
    samples: usize,
    growth: Growth,
) -> anyhow::Result<Value> {
    let po = post(
        http,
        &format!("{base}/api/v1/purchase-orders"),
        &tenant.token,
        json!({"supplier_id": tenant.supplier, "order_date": "2026-11-02",
               "lines": [{"product_id": tenant.product, "weight": "1000", "price_per_unit": "2.1575"}]}),
    )
    .await?;
    let id = po["id"].as_str().unwrap_or_default().to_string();
    let url = format!("{base}/api/v1/purchase-orders/{id}/notes");
    let order_url = format!("{base}/api/v1/purchase-orders/{id}");
    let mut version = po["version"].as_i64().unwrap_or(1);
    // One writer: concurrent commands on one order would only race each other.
    while version < events as i64 {
        let body = match growth {
            Growth::Notes => {
                post(
                    http,
                    &url,
                    &tenant.token,
                    json!({"text": "a note to make the stream long"}),
                )
                .await?
            }
            Growth::HeaderChanges => {
                let response = http
                    .patch(&order_url)
                    .bearer_auth(&tenant.token)
                    .header("idempotency-key", Uuid::now_v7().to_string())
                    .json(&json!({"notes": format!("untimed change {version}")}))
                    .send()
                    .await?;
                let status = response.status();
                let text = response.text().await?;
                anyhow::ensure!(status.is_success(), "PATCH {order_url}: {status}: {text}");
                serde_json::from_str(&text)?
            }
        };
        version = body["version"].as_i64().unwrap_or(version + 1);
    }
    // Timed: header changes (an order takes at most 1,000 notes, and any number of changes
    // while in draft), each a command that loads the order, decides and appends one event.
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let started = Instant::now();
        let response = http
            .patch(&order_url)
            .bearer_auth(&tenant.token)
            .header("idempotency-key", Uuid::now_v7().to_string())
            .json(&json!({"notes": format!("timed change {n}")}))
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        latencies.push(started.elapsed());
        anyhow::ensure!(status.is_success(), "PATCH {order_url}: {status}: {text}");
    }
    let p = Percentiles::of(latencies);
    Ok(
        json!({"events": version, "grown_with": growth.name(), "samples": samples,
               "p50_ms": p.p50, "p99_ms": p.p99, "max_ms": p.max}),
    )
}

/// The lag watcher: for every sampled answer, the time until every read model of its tenant
/// has reached its position (polled from `read.checkpoints` every few milliseconds).
pub async fn watch_lag(
    pool: sqlx::PgPool,
    mut answers: mpsc::UnboundedReceiver<Committed>,
) -> anyhow::Result<Vec<Duration>> {
    let projections: Vec<String> = oms_projections::Projection::ALL
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let mut pending: Vec<Committed> = Vec::new();
    let mut lags = Vec::new();
    let mut closed = false;
    loop {
        loop {
            match answers.try_recv() {
                Ok(answer) => pending.push(answer),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed && pending.is_empty() {
            return Ok(lags);
        }
        if pending.is_empty() {
            match answers.recv().await {
                Some(answer) => pending.push(answer),
                None => return Ok(lags),
            }
            continue;
        }
        let reached = read_positions(&pool, &projections).await?;
        let now = Instant::now();
        pending.retain(|answer| {
            if reached.get(&answer.tenant).copied().unwrap_or(0) >= answer.position {
                lags.push(now.saturating_duration_since(answer.at));
                false
            } else if now.duration_since(answer.at) > Duration::from_secs(120) {
                // Never reached within the bound: counted as the bound.
                lags.push(Duration::from_secs(120));
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Per tenant, the lowest position every read model has reached (a tenant missing from the
/// answer has a read model that has applied nothing yet).
///
/// Polled every few milliseconds while the pipeline runs, on the same cores, so it is one
/// scan of the checkpoints' few rows: a correlated subquery per tenant cost several times
/// more and showed in the pipeline's Postgres CPU.
pub async fn read_positions(
    pool: &sqlx::PgPool,
    projections: &[String],
) -> anyhow::Result<HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "select tenant_id, min(position) from read.checkpoints
          where projection = any($1)
          group by tenant_id
         having count(*) = cardinality($1)",
    )
    .bind(projections)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Events committed but not yet in every read model, over all tenants.
pub async fn backlog(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    let projections: Vec<String> = oms_projections::Projection::ALL
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let reached = read_positions(pool, &projections).await?;
    let heads: Vec<(Uuid, i64)> = sqlx::query_as("select tenant_id, position from tenant_heads")
        .fetch_all(pool)
        .await?;
    Ok(heads
        .iter()
        .map(|(tenant, head)| (head - reached.get(tenant).copied().unwrap_or(0)).max(0))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p95, 95.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(p.max, 100.0);
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn server_errors_count_5xx_and_no_answer_but_not_conflicts() {
        let mut stats = MixStats::default();
        stats.errors_by_status.insert(409, 3);
        stats.errors_by_status.insert(412, 1);
        assert_eq!(stats.server_errors(), 0);
        stats.errors_by_status.insert(503, 2);
        stats.errors_by_status.insert(0, 1);
        assert_eq!(stats.server_errors(), 3);
    }
}
