//! The chaos run: `oms serve` split into its roles (api, relay, projector as separate
//! processes) over a Postgres cluster and a nats-server of its own, driven by concurrent
//! clients through whole purchase- and sales-order lifecycles on several tenants, every
//! command with an Idempotency-Key and retried with the same key until it gets a definite
//! answer — while a driver, at random moments, SIGKILLs and restarts the api, the relay and the
//! projector, kills and restarts nats-server on its store, and crashes Postgres
//! (`pg_ctl stop -m immediate`) and starts it again.
//!
//! Afterwards, with the load stopped and the pipeline drained, it checks that every command
//! answered 2xx has its events in the store at the position and version it was told, that every
//! command took effect at most once, that positions are gapless and the hash chains verify,
//! that the read models equal a fresh rebuild and their checkpoints the heads, that the stream
//! holds each (tenant, position) exactly once and carries the stored event, and that the lag
//! is back to 0. It prints the figures, and writes them as JSON to `CHAOS_JSON` when that is
//! set (`make chaos` sets it to docs/reliability/chaos.json).
//!
//! `#[ignore]`d so that the workspace's test run does not start it; `make chaos` runs it for
//! `CHAOS_SECONDS` (600), and `make test` runs a short version. Settings (environment):
//! `CHAOS_SECONDS` (60), `CHAOS_CLIENTS` (8), `CHAOS_TENANTS` (4), `CHAOS_RATE` (commands per
//! second over all clients; 0 = as fast as the service answers; default 50), `CHAOS_GAP_MIN` /
//! `CHAOS_GAP_MAX` (seconds between faults; 5 / 11), `CHAOS_DRAIN_SECONDS` (300), `CHAOS_SEED`,
//! `CHAOS_JSON`, `OMS_NATS_SERVER_BIN`. Postgres server binaries (initdb, pg_ctl) ≥ 15 must be
//! installed; as root the cluster runs as the `postgres` user (scripts/lib.sh: `run_as`).

#[allow(dead_code)]
#[path = "common_nats.rs"]
mod common_nats;

use common_nats::NatsServer;
use futures::StreamExt;
use oms_api::auth::{Role, TokenKeys};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const SECRET: &str = "chaos-run-secret-that-is-longer-than-32-characters";
/// The key the relay signs anchors with, and `oms audit verify` checks them with.
const ANCHOR_KEY: &str = "a-test-anchor-key-of-at-least-32-bytes";
const OMS: &str = env!("CARGO_BIN_EXE_oms");
/// The run's own copy of [`OMS`], so that a rebuild during the run does not change what is
/// restarted.
static OMS_COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn oms_bin() -> &'static Path {
    OMS_COPY
        .get()
        .map(PathBuf::as_path)
        .unwrap_or(Path::new(OMS))
}
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// How long one command may keep retrying (no answer, 5xx) before it is "in doubt".
const COMMAND_BUDGET: Duration = Duration::from_secs(60);
/// One HTTP attempt.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a recovery is measured before it counts as "not recovered".
const RECOVERY_BOUND: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Settings

#[derive(Debug, Clone)]
struct Settings {
    seconds: u64,
    clients: usize,
    tenants: usize,
    rate: f64,
    gap: (f64, f64),
    downtime: (f64, f64),
    seed: u64,
    json: Option<PathBuf>,
    /// How long the pipeline may take to drain once the load has stopped.
    drain: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not valid")),
        _ => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let seed = env_or(
            "CHAOS_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1),
        );
        let settings = Self {
            seconds: env_or("CHAOS_SECONDS", 60),
            clients: env_or("CHAOS_CLIENTS", 8),
            tenants: env_or("CHAOS_TENANTS", 4),
            rate: env_or("CHAOS_RATE", 50.0),
            gap: (env_or("CHAOS_GAP_MIN", 5.0), env_or("CHAOS_GAP_MAX", 11.0)),
            downtime: (0.3, 3.0),
            seed,
            drain: Duration::from_secs(env_or("CHAOS_DRAIN_SECONDS", 300)),
            json: std::env::var_os("CHAOS_JSON")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        assert!(settings.seconds >= 10, "CHAOS_SECONDS must be at least 10");
        assert!(settings.clients >= 1 && settings.tenants >= 1);
        assert!(settings.gap.0 > 0.0 && settings.gap.1 >= settings.gap.0);
        settings
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: Postgres, the oms roles (nats-server is common_nats's)

/// `bash -c 'source scripts/lib.sh; <script>' chaos <args>`: the project's own helpers.
fn lib_sh(script: &str, args: &[&str]) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -eu; source \"$OMS_CHAOS_LIB\"; {script}"))
        .arg("chaos")
        .args(args)
        .env("OMS_CHAOS_LIB", format!("{ROOT}/scripts/lib.sh"))
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The last `n` lines of a file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let all = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = all.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A Postgres cluster of the run's own, on a free port, created with initdb in the run's
/// directory and started, crashed and restarted with pg_ctl (as the `postgres` user when the
/// run is root: initdb refuses root).
struct Postgres {
    bindir: String,
    user: String,
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    fn init(dir: &Path) -> Self {
        let bindir = text(&lib_sh("pg_server_bindir || true", &[]).stdout);
        assert!(
            !bindir.is_empty(),
            "the chaos run needs PostgreSQL >= 15 server binaries (initdb, pg_ctl): install the \
             distribution's postgresql package (scripts/ensure-postgres.sh does when it starts \
             a local cluster)"
        );
        let me = text(&Command::new("id").arg("-un").output().unwrap().stdout);
        let user = if me == "root" {
            let exists = Command::new("getent")
                .args(["passwd", "postgres"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !exists {
                let made = lib_sh(
                    "as_root useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres",
                    &[],
                );
                assert!(
                    made.status.success(),
                    "useradd postgres: {}",
                    text(&made.stderr)
                );
            }
            "postgres".to_string()
        } else {
            me
        };
        let dir = dir.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        if user != text(&Command::new("id").arg("-un").output().unwrap().stdout) {
            let chown = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown the cluster's directory to {user}");
        }
        let pg = Self {
            bindir,
            user,
            dir,
            port: free_port(),
            running: false,
        };
        let initdb = pg.run_as(&[
            &format!("{}/initdb", pg.bindir),
            "-D",
            &pg.data(),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]);
        assert!(
            initdb.status.success(),
            "initdb failed: {}\n{}",
            text(&initdb.stdout),
            text(&initdb.stderr)
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn run_as(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec![self.user.as_str()];
        all.extend_from_slice(args);
        lib_sh("run_as \"$@\"", &all)
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let pg_ctl = format!("{}/pg_ctl", self.bindir);
        let data = self.data();
        let mut all = vec![pg_ctl.as_str(), "-D", data.as_str()];
        all.extend_from_slice(args);
        self.run_as(&all)
    }

    fn start(&mut self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.log().display().to_string();
        let started = self.pg_ctl(&["-l", &log, "-w", "-t", "120", "-s", "-o", &options, "start"]);
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}\n{}",
            text(&started.stderr),
            tail(&self.log(), 30)
        );
        self.running = true;
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, without a checkpoint;
    /// the next start runs crash recovery.
    fn crash(&mut self) {
        let stopped = self.pg_ctl(&["-m", "immediate", "-w", "-t", "60", "-s", "stop"]);
        assert!(
            stopped.status.success(),
            "pg_ctl stop -m immediate failed: {}",
            text(&stopped.stderr)
        );
        self.running = false;
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "-s", "stop"]);
        }
    }
}

/// One role of `oms serve` as a child process, its output appended to a log file.
struct RoleProcess {
    role: &'static str,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl RoleProcess {
    fn new(role: &'static str, dir: &Path, env: Vec<(String, String)>) -> Self {
        Self {
            role,
            port: free_port(),
            env,
            log: dir.join(format!("{role}.log")),
            child: None,
        }
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the role's log file");
        let mut command = Command::new(oms_bin());
        command
            .args(["serve", "--role", self.role])
            .env_remove("OMS_LOG_FORMAT")
            .env_remove("OMS_DB_POOL_SIZE")
            .env_remove("OMS_STREAM")
            .env("OMS_LOG", "info,sqlx=warn")
            .env("OMS_BIND", format!("127.0.0.1:{}", self.port))
            .env("OMS_RATE_LIMIT", "0")
            // Every client is on 127.0.0.1, polling readiness through the restarts.
            .env("OMS_IP_RATE_LIMIT", "0")
            // Three roles on one host: no operator listener; /metrics on the API's port with
            // the token instead.
            .env("OMS_METRICS_BIND", "")
            .env("OMS_METRICS_TOKEN", METRICS_TOKEN)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(command.spawn().expect("oms serve starts"));
    }

    /// SIGKILL, as in a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then the exit (SIGKILL after `bound`).
    fn terminate(&mut self, bound: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, when the process has ended on its own.
    fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the driver can kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Api,
    Relay,
    Projector,
    Nats,
    Postgres,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Api,
        Kind::Relay,
        Kind::Projector,
        Kind::Nats,
        Kind::Postgres,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Relay => "relay",
            Kind::Projector => "projector",
            Kind::Nats => "nats",
            Kind::Postgres => "postgres",
        }
    }
}

/// Everything the run started. Field order is drop order: the roles first, then NATS and
/// Postgres, then the directory their files live in.
struct Cluster {
    api: Mutex<RoleProcess>,
    relay: Mutex<RoleProcess>,
    projector: Mutex<RoleProcess>,
    nats: Mutex<NatsServer>,
    pg: Mutex<Postgres>,
    /// Held so that it outlives the processes whose files it holds.
    _dir: Workdir,
}

impl Cluster {
    fn role(&self, kind: Kind) -> &Mutex<RoleProcess> {
        match kind {
            Kind::Api => &self.api,
            Kind::Relay => &self.relay,
            Kind::Projector => &self.projector,
            _ => unreachable!("{kind:?} is not an oms role"),
        }
    }

    fn kill(&self, kind: Kind) {
        match kind {
            Kind::Nats => self.nats.lock().unwrap().kill(),
            Kind::Postgres => self.pg.lock().unwrap().crash(),
            role => self.role(role).lock().unwrap().kill(),
        }
    }

    fn restart(&self, kind: Kind) {
        match kind {
            Kind::Nats => self.nats.lock().unwrap().restart(),
            Kind::Postgres => self.pg.lock().unwrap().start(),
            role => self.role(role).lock().unwrap().spawn(),
        }
    }
}

/// The run's temporary directory: removed afterwards, kept (and named) when the run failed.
struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.0.take() {
                let kept = dir.keep();
                eprintln!(
                    "chaos: the run failed; its logs and data are kept in {}",
                    kept.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The clients

/// A tenant and what its orders need.
#[derive(Debug, Clone)]
struct Tenant {
    id: Uuid,
    token: String,
    supplier: String,
    product: String,
    customer: String,
}

/// One command as the client saw it.
#[derive(Debug, Clone)]
struct Record {
    key: String,
    tenant: Uuid,
    command: &'static str,
    /// The aggregate it was sent to (for a create: the id it was answered with).
    aggregate: Option<Uuid>,
    /// Every attempt's status (0: no answer).
    statuses: Vec<u16>,
    /// The definite answer's status; None when the budget ran out first (in doubt).
    answer: Option<u16>,
    replayed: bool,
    position: Option<i64>,
    version: Option<i64>,
}

impl Record {
    fn ok(&self) -> bool {
        self.answer.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Counters shared by the clients, for the progress lines.
#[derive(Default)]
struct Counters {
    commands: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
}

/// Spaces commands out to `rate` per second over all clients (no pacing at 0).
struct Pacer {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(rate: f64) -> Self {
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

struct Client {
    id: usize,
    run: String,
    base: String,
    http: reqwest::Client,
    counters: Arc<Counters>,
    pacer: Arc<Pacer>,
    stop: Arc<AtomicBool>,
    records: Vec<Record>,
    sequence: u64,
}

impl Client {
    /// Sends one command with its own Idempotency-Key, retrying with the same key and the same
    /// bytes on no answer and on 5xx until a definite answer or the budget; returns the body
    /// of a 2xx.
    async fn command(
        &mut self,
        tenant: &Tenant,
        command: &'static str,
        path: &str,
        body: Value,
        aggregate: Option<Uuid>,
    ) -> Option<Value> {
        // Once the load is told to stop, no new command starts (the one in flight finishes).
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        self.pacer.wait().await;
        self.sequence += 1;
        let key = format!("{}-{}-{}", self.run, self.id, self.sequence);
        let bytes = serde_json::to_vec(&body).unwrap();
        let url = format!("{}{path}", self.base);
        let deadline = Instant::now() + COMMAND_BUDGET;
        let mut record = Record {
            key: key.clone(),
            tenant: tenant.id,
            command,
            aggregate,
            statuses: Vec::new(),
            answer: None,
            replayed: false,
            position: None,
            version: None,
        };
        self.counters.commands.fetch_add(1, Ordering::Relaxed);
        let mut backoff = Duration::from_millis(50);
        let mut answer = None;
        loop {
            let sent = self
                .http
                .post(&url)
                .bearer_auth(&tenant.token)
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(bytes.clone())
                .send()
                .await;
            match sent {
                Err(_) => record.statuses.push(0),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let replayed = response
                        .headers()
                        .get("idempotent-replayed")
                        .is_some_and(|v| v.as_bytes() == b"true");
                    match response.bytes().await {
                        // A cut body is no answer.
                        Err(_) => record.statuses.push(0),
                        Ok(body) => {
                            record.statuses.push(status);
                            if status == 503 {
                                self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            if status < 500 {
                                record.answer = Some(status);
                                record.replayed = replayed;
                                answer = Some(body);
                                break;
                            }
                        }
                    }
                }
            }
            if Instant::now() + backoff >= deadline {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        let mut result = None;
        if record.ok() {
            let body: Value = answer
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            record.position = body["position"].as_i64();
            record.version = body["version"].as_i64();
            if record.aggregate.is_none() {
                record.aggregate = body["id"].as_str().and_then(|s| s.parse().ok());
            }
            self.counters.ok.fetch_add(1, Ordering::Relaxed);
            result = Some(body);
        } else if let (Some(status), Some(body)) = (record.answer, &answer) {
            eprintln!(
                "chaos: client {} {command} {key} answered {status}: {}",
                self.id,
                String::from_utf8_lossy(body)
            );
        }
        self.records.push(record);
        result
    }
}

fn line_id(order: &Value) -> Option<String> {
    order["lines"][0]["line_id"].as_str().map(str::to_string)
}

/// One purchase order through its lifecycle, then a sales order sourced from it through its
/// own. Stops at the first command without a 2xx (the order is abandoned).
async fn order_pair(client: &mut Client, tenant: &Tenant, rng: &mut StdRng) -> Option<()> {
    let weight = rng.random_range(1_000..40_000);
    let received = format!("{}.5", weight - rng.random_range(1..100));
    let po = client
        .command(
            tenant,
            "po.create",
            "/api/v1/purchase-orders",
            json!({
                "supplier_id": tenant.supplier, "order_date": "2026-11-02",
                "lines": [{"product_id": tenant.product, "weight": weight.to_string(), "price_per_unit": "2.1575"}]
            }),
            None,
        )
        .await?;
    let po_id: Uuid = po["id"].as_str()?.parse().ok()?;
    let po_line = line_id(&po)?;
    let base = format!("/api/v1/purchase-orders/{po_id}");
    for action in ["submit", "approve"] {
        let name = if action == "submit" {
            "po.submit"
        } else {
            "po.approve"
        };
        client
            .command(
                tenant,
                name,
                &format!("{base}/{action}"),
                json!({}),
                Some(po_id),
            )
            .await?;
    }
    let receipt = client
        .command(
            tenant,
            "po.receipt",
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-09", "complete": true,
                   "lines": [{"line_id": po_line, "weight": received}]}),
            Some(po_id),
        )
        .await?;
    let outstanding = receipt["outstanding"].as_str()?.to_string();
    client
        .command(
            tenant,
            "po.payment",
            &format!("{base}/payments"),
            json!({"amount": outstanding, "paid_on": "2026-11-10", "method": "wire"}),
            Some(po_id),
        )
        .await?;
    client
        .command(
            tenant,
            "po.close",
            &format!("{base}/close"),
            json!({}),
            Some(po_id),
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
            None,
        )
        .await?;
    let so_id: Uuid = so["id"].as_str()?.parse().ok()?;
    let so_line = line_id(&so)?;
    let base = format!("/api/v1/sales-orders/{so_id}");
    client
        .command(
            tenant,
            "so.confirm",
            &format!("{base}/confirm"),
            json!({}),
            Some(so_id),
        )
        .await?;
    client
        .command(
            tenant,
            "so.ship",
            &format!("{base}/ship"),
            json!({"shipped_on": "2026-11-05", "carrier_release_number": format!("R-{}", client.sequence),
                   "lines": [{"line_id": so_line, "weight": received}]}),
            Some(so_id),
        )
        .await?;
    client
        .command(
            tenant,
            "so.deliver",
            &format!("{base}/deliver"),
            json!({"delivered_on": "2026-11-06"}),
            Some(so_id),
        )
        .await?;
    let invoice = client
        .command(
            tenant,
            "so.invoice",
            &format!("{base}/invoice"),
            json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"}),
            Some(so_id),
        )
        .await?;
    let outstanding = invoice["outstanding"].as_str()?.to_string();
    client
        .command(
            tenant,
            "so.payment",
            &format!("{base}/payments"),
            json!({"amount": outstanding, "paid_on": "2026-11-07", "method": "ach"}),
            Some(so_id),
        )
        .await?;
    client
        .command(
            tenant,
            "so.close",
            &format!("{base}/close"),
            json!({}),
            Some(so_id),
        )
        .await?;
    Some(())
}

/// A client's loop: order pairs on random tenants until told to stop.
async fn client_loop(mut client: Client, tenants: Arc<Vec<Tenant>>, seed: u64) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    while !client.stop.load(Ordering::SeqCst) {
        let tenant = tenants[rng.random_range(0..tenants.len())].clone();
        let _ = order_pair(&mut client, &tenant, &mut rng).await;
    }
    client.records
}

// ---------------------------------------------------------------------------------------------
// The pipeline's progress, read straight from the run's database

/// Every tenant's head position.
async fn heads(pool: &PgPool) -> Result<HashMap<Uuid, i64>, sqlx::Error> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as("select tenant_id, position from tenant_heads")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Per tenant: the relay's checkpoint and the lowest checkpoint over every projection (0 when
/// a projection has none yet).
async fn progress(pool: &PgPool) -> Result<HashMap<Uuid, (i64, i64)>, sqlx::Error> {
    let projections: Vec<&str> = oms_projections::Projection::ALL
        .iter()
        .map(|p| p.name())
        .collect();
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "select h.tenant_id,
                coalesce((select r.position from relay_checkpoints r where r.tenant_id = h.tenant_id), 0),
                coalesce((select min(coalesce(c.position, 0))
                            from unnest($1::text[]) as p(name)
                            left join read.checkpoints c
                              on c.tenant_id = h.tenant_id and c.projection = p.name), 0)
           from tenant_heads h",
    )
    .bind(&projections)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, r, p)| (t, (r, p))).collect())
}

/// Whether the relay and every read model have reached `targets`.
async fn caught_up(pool: &PgPool, targets: &HashMap<Uuid, i64>) -> Result<bool, sqlx::Error> {
    let now = progress(pool).await?;
    Ok(targets.iter().all(|(tenant, target)| {
        now.get(tenant)
            .is_some_and(|(relay, read)| relay >= target && read >= target)
    }))
}

/// Events committed but not yet applied to every read model, over all tenants.
async fn lag(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let heads = heads(pool).await?;
    let now = progress(pool).await?;
    Ok(heads
        .iter()
        .map(|(t, h)| h - now.get(t).map(|p| p.1).unwrap_or(0))
        .sum())
}

// ---------------------------------------------------------------------------------------------
// The driver

/// One fault.
#[derive(Debug, Clone)]
struct Kill {
    kind: Kind,
    /// Seconds into the load.
    at_s: f64,
    /// How long it was down.
    down_s: f64,
    /// From the restart until a command committed after it was relayed and in every read model
    /// (see [`measure_recovery`]); None when not within the bound.
    recovery_s: Option<f64>,
}

async fn api_ready(http: &reqwest::Client, api: &str) -> bool {
    http.get(format!("{api}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
}

/// From `restarted` until a command committed after the restart has been published by the
/// relay and applied to every read model: the first moment any tenant's head moves past where
/// it was at the restart (which needs the api, Postgres and the command path back), then until
/// the relay's and every projection's checkpoints reach the heads as they were at that moment.
/// Once the load has stopped, the heads as they are stand in for a new commit.
async fn measure_recovery(
    pool: PgPool,
    restarted: Instant,
    load_stopped: Arc<AtomicBool>,
) -> Option<f64> {
    let deadline = restarted + RECOVERY_BOUND;
    let pause = || tokio::time::sleep(Duration::from_millis(50));
    let total = |heads: &HashMap<Uuid, i64>| heads.values().sum::<i64>();
    let at_restart = loop {
        match heads(&pool).await {
            Ok(heads) => break total(&heads),
            Err(_) if Instant::now() < deadline => pause().await,
            Err(_) => return None,
        }
    };
    let targets = loop {
        match heads(&pool).await {
            Ok(heads) if total(&heads) > at_restart || load_stopped.load(Ordering::SeqCst) => {
                break heads
            }
            _ if Instant::now() < deadline => pause().await,
            _ => return None,
        }
    };
    loop {
        if caught_up(&pool, &targets).await.unwrap_or(false) {
            return Some(restarted.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline {
            return None;
        }
        pause().await;
    }
}

/// At random moments until `until`: kill one thing (kinds dealt from a shuffled deck, so every
/// kind comes up as often), leave it down a moment, start it again, and measure the recovery.
async fn driver(
    cluster: Arc<Cluster>,
    pool: PgPool,
    load_stopped: Arc<AtomicBool>,
    settings: Settings,
    started: Instant,
    until: Instant,
) -> Vec<Kill> {
    let mut rng = StdRng::seed_from_u64(settings.seed ^ 0x6b69_6c6c);
    let mut deck: Vec<Kind> = Vec::new();
    let mut kills = Vec::new();
    let mut recoveries = Vec::new();
    loop {
        let gap = Duration::from_secs_f64(rng.random_range(settings.gap.0..=settings.gap.1));
        let down =
            Duration::from_secs_f64(rng.random_range(settings.downtime.0..=settings.downtime.1));
        if Instant::now() + gap + down >= until {
            break;
        }
        tokio::time::sleep(gap).await;
        if deck.is_empty() {
            deck = Kind::ALL.to_vec();
            deck.shuffle(&mut rng);
        }
        let kind = deck.pop().unwrap();
        let at_s = started.elapsed().as_secs_f64();
        let killed_at = Instant::now();
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.kill(kind))
            .await
            .expect("kill");
        tokio::time::sleep(down).await;
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.restart(kind))
            .await
            .expect("restart");
        let restarted = Instant::now();
        let down_s = (restarted - killed_at).as_secs_f64();
        eprintln!(
            "chaos: [{at_s:6.1}s] killed {:<9} (down {down_s:.1}s, kill #{})",
            kind.name(),
            kills.len() + 1
        );
        recoveries.push(tokio::spawn(measure_recovery(
            pool.clone(),
            restarted,
            load_stopped.clone(),
        )));
        kills.push(Kill {
            kind,
            at_s,
            down_s,
            recovery_s: None,
        });
    }
    for (kill, recovery) in kills.iter_mut().zip(recoveries) {
        kill.recovery_s = recovery.await.ok().flatten();
    }
    kills
}

/// A role process that ended without being killed: a finding. It is started again so the run
/// goes on.
#[derive(Debug, Clone)]
struct Exit {
    role: &'static str,
    status: String,
    log: String,
}

async fn monitor(cluster: Arc<Cluster>, stop: Arc<AtomicBool>) -> Vec<Exit> {
    let mut exits = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        for kind in [Kind::Api, Kind::Relay, Kind::Projector] {
            let mut role = cluster.role(kind).lock().unwrap();
            if let Some(status) = role.exited() {
                let exit = Exit {
                    role: role.role,
                    status: status.to_string(),
                    log: tail(&role.log, 20),
                };
                eprintln!(
                    "chaos: the {} role exited on its own ({}); starting it again. Its log:\n{}",
                    exit.role, exit.status, exit.log
                );
                role.spawn();
                exits.push(exit);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    exits
}

// ---------------------------------------------------------------------------------------------
// Checks

#[derive(Debug, Clone)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Items that disagree (events, rows, commands, messages).
    mismatches: u64,
    detail: String,
}

impl Check {
    fn new(name: &'static str, mismatches: u64, detail: String) -> Self {
        Self {
            name,
            ok: mismatches == 0,
            mismatches,
            detail,
        }
    }
}

/// Up to a few examples of a kind of problem, for the details.
#[derive(Default)]
struct Examples(Vec<String>, u64);

impl Examples {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.1 += 1;
        if self.0.len() < 5 {
            self.0.push(example());
        }
    }

    fn count(&self) -> u64 {
        self.1
    }

    fn show(&self) -> String {
        if self.1 == 0 {
            String::new()
        } else {
            format!("; e.g. {}", self.0.join(" | "))
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    tenant_id: Uuid,
    position: i64,
    aggregate_id: Uuid,
    sequence: i64,
    key: Option<String>,
    request_id: Option<String>,
    hash: Vec<u8>,
}

/// What the event store says about the commands, checked against what the clients were told.
struct StoreFacts {
    events: Vec<EventRow>,
    heads: HashMap<Uuid, i64>,
}

impl StoreFacts {
    async fn load(pool: &PgPool) -> Self {
        let events: Vec<EventRow> = sqlx::query_as(
            "select tenant_id, position, aggregate_id, sequence,
                    metadata->>'idempotency_key' as key, metadata->>'request_id' as request_id, hash
               from events order by tenant_id, position",
        )
        .fetch_all(pool)
        .await
        .expect("read the events");
        Self {
            events,
            heads: heads(pool).await.expect("read the heads"),
        }
    }

    /// The events of each (tenant, idempotency key).
    fn by_key(&self) -> HashMap<(Uuid, &str), Vec<&EventRow>> {
        let mut groups: HashMap<(Uuid, &str), Vec<&EventRow>> = HashMap::new();
        for event in &self.events {
            if let Some(key) = &event.key {
                groups
                    .entry((event.tenant_id, key.as_str()))
                    .or_default()
                    .push(event);
            }
        }
        groups
    }
}

/// Every command answered 2xx has its events, on its aggregate, ending at the position and the
/// version it was told; every key took effect once (one request, one aggregate, one
/// contiguous run of positions); nothing was written for a command refused or never sent.
fn check_commands(records: &[Record], facts: &StoreFacts) -> (Vec<Check>, u64, u64) {
    let groups = facts.by_key();
    let mut answered = Examples::default();
    for record in records.iter().filter(|r| r.ok()) {
        let Some(events) = groups.get(&(record.tenant, record.key.as_str())) else {
            answered.add(|| {
                format!(
                    "{} {} answered but has no event",
                    record.command, record.key
                )
            });
            continue;
        };
        let aggregates: HashSet<Uuid> = events.iter().map(|e| e.aggregate_id).collect();
        let last_position = events.iter().map(|e| e.position).max();
        let last_sequence = events.iter().map(|e| e.sequence).max();
        if record.aggregate.is_none() || aggregates != HashSet::from([record.aggregate.unwrap()]) {
            answered.add(|| {
                format!(
                    "{} {}: told aggregate {:?}, events on {aggregates:?}",
                    record.command, record.key, record.aggregate
                )
            });
        } else if last_position != record.position || last_sequence != record.version {
            answered.add(|| {
                format!(
                    "{} {}: told position {:?} version {:?}, events end at {last_position:?} / {last_sequence:?}",
                    record.command, record.key, record.position, record.version
                )
            });
        }
    }

    let sent: HashMap<(Uuid, &str), &Record> = records
        .iter()
        .map(|r| ((r.tenant, r.key.as_str()), r))
        .collect();
    let mut twice = Examples::default();
    let mut unasked = Examples::default();
    let (mut in_doubt_committed, mut in_doubt) = (0, 0);
    for ((tenant, key), events) in &groups {
        let requests: HashSet<&Option<String>> = events.iter().map(|e| &e.request_id).collect();
        let aggregates: HashSet<Uuid> = events.iter().map(|e| e.aggregate_id).collect();
        let (first, last) = (events[0].position, events[events.len() - 1].position);
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
        let contiguous = last - first + 1 == events.len() as i64
            && sequences.windows(2).all(|w| w[1] == w[0] + 1);
        if requests.len() != 1 || aggregates.len() != 1 || !contiguous {
            twice.add(|| {
                format!(
                    "key {key}: {} events from {} request(s) on {} aggregate(s), positions {:?}",
                    events.len(),
                    requests.len(),
                    aggregates.len(),
                    events.iter().map(|e| e.position).collect::<Vec<_>>()
                )
            });
        }
        match sent.get(&(*tenant, *key)) {
            None => unasked.add(|| format!("key {key} was never sent")),
            Some(record) if record.answer.is_some() && !record.ok() => unasked.add(|| {
                format!(
                    "{} {key} answered {:?} but wrote events at {first}..={last}",
                    record.command, record.answer
                )
            }),
            Some(record) if record.answer.is_none() => in_doubt_committed += 1,
            Some(_) => {}
        }
    }
    in_doubt += records.iter().filter(|r| r.answer.is_none()).count() as u64;
    let unkeyed = facts.events.iter().filter(|e| e.key.is_none()).count() as u64;
    if unkeyed > 0 {
        unasked.1 += unkeyed;
        unasked
            .0
            .push(format!("{unkeyed} event(s) without an idempotency key"));
    }
    let ok = records.iter().filter(|r| r.ok()).count();
    (
        vec![
            Check::new(
                "every 2xx has its events at the position and version it was told",
                answered.count(),
                format!("{ok} commands answered 2xx{}", answered.show()),
            ),
            Check::new(
                "every command took effect at most once (retries included)",
                twice.count(),
                format!(
                    "{} keys with events; {} commands retried{}",
                    groups.len(),
                    records.iter().filter(|r| r.statuses.len() > 1).count(),
                    twice.show()
                ),
            ),
            Check::new(
                "nothing written for a refused or unsent command",
                unasked.count(),
                format!(
                    "{in_doubt} in doubt at the end of their budget, {in_doubt_committed} of them committed{}",
                    unasked.show()
                ),
            ),
        ],
        in_doubt,
        in_doubt_committed,
    )
}

/// Positions 1..head, each once, per tenant.
fn check_gapless(facts: &StoreFacts) -> Check {
    let mut per_tenant: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for event in &facts.events {
        per_tenant
            .entry(event.tenant_id)
            .or_default()
            .push(event.position);
    }
    let mut bad = Examples::default();
    for (tenant, head) in &facts.heads {
        let positions = per_tenant.remove(tenant).unwrap_or_default();
        let expected: Vec<i64> = (1..=*head).collect();
        if positions != expected {
            let missing = expected.iter().filter(|p| !positions.contains(p)).count();
            bad.add(|| {
                format!(
                    "tenant {tenant}: head {head}, {} events, {missing} positions missing",
                    positions.len()
                )
            });
        }
    }
    for tenant in per_tenant.keys() {
        bad.add(|| format!("events of tenant {tenant} without a head"));
    }
    Check::new(
        "per-tenant positions gapless (1..head)",
        bad.count(),
        format!(
            "{} tenants, {} events{}",
            facts.heads.len(),
            facts.events.len(),
            bad.show()
        ),
    )
}

async fn check_chains(
    pool: &PgPool,
    facts: &StoreFacts,
    database_url: &str,
    nats_url: &str,
) -> Check {
    let store = oms_store::EventStore::new(pool.clone());
    let mut bad = Examples::default();
    let mut checked = 0;
    for tenant in facts.heads.keys() {
        let report = store.verify_chain(*tenant).await.expect("verify a chain");
        checked += report.events_checked;
        if !report.ok {
            bad.add(|| format!("tenant {tenant} breaks at {:?}", report.first_bad_position));
        }
    }
    // And the `oms audit verify` an auditor runs, against the anchors published to NATS.
    let verify = oms(
        &["audit", "verify"],
        &[
            ("DATABASE_URL", database_url),
            ("NATS_URL", nats_url),
            ("OMS_ANCHOR_KEY", ANCHOR_KEY),
        ],
        Duration::from_secs(300),
    )
    .await;
    let mut anchors = 0;
    for line in verify.stdout.lines() {
        if let Ok(report) = serde_json::from_str::<Value>(line) {
            anchors += report["anchors_checked"].as_u64().unwrap_or(0);
        }
    }
    if !verify.ok {
        bad.add(|| {
            format!(
                "oms audit verify failed: {} {}",
                verify.stdout, verify.stderr
            )
        });
    }
    Check::new(
        "hash chains verify (and match the anchors)",
        bad.count(),
        format!(
            "{checked} events recomputed; `oms audit verify`: {anchors} anchors checked{}",
            bad.show()
        ),
    )
}

fn check_checkpoints(heads: &HashMap<Uuid, i64>, progress: &HashMap<Uuid, (i64, i64)>) -> Check {
    let mut bad = Examples::default();
    for (tenant, head) in heads {
        let (relay, read) = progress.get(tenant).copied().unwrap_or((0, 0));
        if relay != *head || read != *head {
            bad.add(|| format!("tenant {tenant}: head {head}, relay {relay}, read models {read}"));
        }
    }
    Check::new(
        "relay and read-model checkpoints equal the heads (lag 0)",
        bad.count(),
        format!("{} tenants{}", heads.len(), bad.show()),
    )
}

/// The read models as the running projector left them, against `oms replay`'s rebuild.
async fn check_rebuild(pool: &PgPool, database_url: &str) -> Check {
    let tables: Vec<&str> = oms_projections::Projection::ALL
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    sqlx::query("drop schema if exists chaos_snapshot cascade")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("create schema chaos_snapshot")
        .execute(pool)
        .await
        .unwrap();
    let mut rows = 0i64;
    for table in &tables {
        sqlx::query(&format!(
            "create table chaos_snapshot.{table} as select * from read.{table}"
        ))
        .execute(pool)
        .await
        .unwrap();
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from chaos_snapshot.{table}"))
            .fetch_one(pool)
            .await
            .unwrap();
        rows += n;
    }
    let replay = oms(
        &["replay"],
        &[("DATABASE_URL", database_url)],
        Duration::from_secs(900),
    )
    .await;
    let mut bad = Examples::default();
    if !replay.ok {
        bad.add(|| format!("oms replay failed: {}", replay.stderr));
    }
    for table in &tables {
        let (only_live, only_rebuilt): (i64, i64) = sqlx::query_as(&format!(
            "select (select count(*) from (select to_jsonb(s) from chaos_snapshot.{table} s
                                           except all select to_jsonb(r) from read.{table} r) a),
                    (select count(*) from (select to_jsonb(r) from read.{table} r
                                           except all select to_jsonb(s) from chaos_snapshot.{table} s) b)"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        // A changed row is on both sides; a missing or extra one on one.
        let differ = only_live.max(only_rebuilt);
        if differ > 0 {
            bad.1 += u64::try_from(differ).unwrap_or(0) - 1;
            bad.add(|| {
                format!("read.{table}: {only_live} live rows not in the rebuild, {only_rebuilt} rebuilt rows not live")
            });
        }
    }
    sqlx::query("drop schema chaos_snapshot cascade")
        .execute(pool)
        .await
        .unwrap();
    Check::new(
        "every read model equals a fresh rebuild (oms replay)",
        bad.count(),
        format!(
            "{} tables, {rows} rows compared{}",
            tables.len(),
            bad.show()
        ),
    )
}

/// Every message of the stream: (tenant, position) once each, its Nats-Msg-Id, and a body that
/// is the stored event (its chain hash recomputed from the body).
async fn check_stream(nats: async_nats::Client, facts: &StoreFacts) -> Check {
    let jetstream = async_nats::jetstream::new(nats);
    let mut stream = jetstream
        .get_stream("OMS_EVENTS")
        .await
        .expect("the stream exists");
    let total = stream.info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            name: Some(format!("chaos-check-{}", Uuid::new_v4().simple())),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let stored: HashMap<(Uuid, i64), &Vec<u8>> = facts
        .events
        .iter()
        .map(|e| ((e.tenant_id, e.position), &e.hash))
        .collect();
    let mut seen: HashMap<(Uuid, i64), u32> = HashMap::new();
    let mut bad_body = Examples::default();
    let mut read = 0u64;
    let mut empty_rounds = 0;
    while read < total && empty_rounds < 3 {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("fetch");
        let mut got = 0;
        while let Some(Ok(message)) = batch.next().await {
            got += 1;
            read += 1;
            let Ok(event) = serde_json::from_slice::<oms_store::StoredEvent>(&message.payload)
            else {
                bad_body.add(|| format!("message {read} does not parse"));
                continue;
            };
            let at = (event.tenant_id, event.position);
            *seen.entry(at).or_default() += 1;
            let headers = message.headers.as_ref();
            let id = headers
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string());
            if id.as_deref() != Some(format!("{}:{}", at.0, at.1).as_str()) {
                bad_body.add(|| format!("{at:?} has Nats-Msg-Id {id:?}"));
            }
            let omitted = headers
                .and_then(|h| h.get("Oms-Payload"))
                .is_some_and(|v| v.as_str() == "omitted");
            let Some(hash) = stored.get(&at) else {
                bad_body.add(|| format!("{at:?} is not in the store"));
                continue;
            };
            let matches = if omitted {
                &event.hash == *hash
            } else {
                let previous = if at.1 == 1 {
                    oms_store::GENESIS.to_vec()
                } else {
                    stored
                        .get(&(at.0, at.1 - 1))
                        .map(|h| h.to_vec())
                        .unwrap_or_default()
                };
                oms_store::hash::chain_hash(&previous, &event).as_slice() == hash.as_slice()
                    && &event.hash == *hash
            };
            if !matches {
                bad_body.add(|| format!("{at:?}: the message is not the stored event"));
            }
        }
        empty_rounds = if got == 0 { empty_rounds + 1 } else { 0 };
    }
    let duplicates: u64 = seen.values().map(|n| u64::from(n - 1)).sum();
    let missing = stored.keys().filter(|k| !seen.contains_key(k)).count() as u64;
    let mismatches = duplicates + missing + bad_body.count();
    Check::new(
        "the stream holds each (tenant, position) once, carrying the stored event",
        mismatches,
        format!(
            "{total} messages, {read} read; {duplicates} duplicates, {missing} missing{}",
            bad_body.show()
        ),
    )
}

/// The token that opens the api's /metrics on its own port.
const METRICS_TOKEN: &str = "chaos-metrics-token";

/// The lag the api's /metrics reports (relay and projections, events), summed.
async fn metrics_lag(http: &reqwest::Client, api: &str) -> Result<i64, String> {
    let body = http
        .get(format!("{api}/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let mut lag = 0;
    let mut series = 0;
    for line in body.lines() {
        if line.starts_with("oms_relay_lag_events{")
            || line.starts_with("oms_projection_lag_events{")
        {
            series += 1;
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("cannot read {line:?}"))?;
            lag += value as i64;
        }
    }
    if series == 0 {
        return Err("no lag series in /metrics".into());
    }
    Ok(lag)
}

// ---------------------------------------------------------------------------------------------
// Running `oms`

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `oms <args>` with `env`, killed after `bound`.
async fn oms(args: &[&str], env: &[(&str, &str)], bound: Duration) -> Ran {
    let mut command = tokio::process::Command::new(oms_bin());
    command
        .args(args)
        .env("OMS_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    match tokio::time::timeout(bound, command.output()).await {
        Ok(Ok(output)) => Ran {
            ok: output.status.success(),
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
        },
        Ok(Err(err)) => Ran {
            ok: false,
            stdout: String::new(),
            stderr: err.to_string(),
        },
        Err(_) => Ran {
            ok: false,
            stdout: String::new(),
            stderr: format!("oms {} did not finish within {bound:?}", args.join(" ")),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

async fn wait_ready(http: &reqwest::Client, api: &str, cluster: &Cluster, bound: Duration) {
    let deadline = Instant::now() + bound;
    while !api_ready(http, api).await {
        if Instant::now() >= deadline {
            let log = cluster.api.lock().unwrap().log.clone();
            panic!(
                "the api never said /ready within {bound:?}:\n{}",
                tail(&log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything the run started, and how to reach it.
struct Stack {
    cluster: Arc<Cluster>,
    /// The harness's own pool on the run's database.
    pool: PgPool,
    http: reqwest::Client,
    api_url: String,
    database_url: String,
    nats_url: String,
    tenants: Arc<Vec<Tenant>>,
    /// The reference data's commands.
    setup: Vec<Record>,
}

impl Stack {
    fn client(&self, id: usize, run: &str, load: &Load) -> Client {
        Client {
            id,
            run: run.to_string(),
            base: self.api_url.clone(),
            http: self.http.clone(),
            counters: load.counters.clone(),
            pacer: load.pacer.clone(),
            stop: load.stop.clone(),
            records: Vec::new(),
            sequence: 0,
        }
    }
}

/// What the clients share.
struct Load {
    counters: Arc<Counters>,
    pacer: Arc<Pacer>,
    stop: Arc<AtomicBool>,
}

impl Load {
    fn new(rate: f64) -> Self {
        Self {
            counters: Arc::new(Counters::default()),
            pacer: Arc::new(Pacer::new(rate)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Postgres (its database migrated, the tenants created with `oms`), nats-server, the three
/// roles, and each tenant's supplier, product and customer.
async fn start(settings: &Settings, run: &str) -> Stack {
    // A directory the cluster's user can enter (tempdir makes it 0700).
    let dir = tempfile::Builder::new()
        .prefix("oms-chaos-")
        .tempdir()
        .expect("a temporary directory");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let workdir = Workdir(Some(dir));
    let root = workdir.path().to_path_buf();
    let copy = root.join("oms");
    std::fs::copy(OMS, &copy).expect("copy the oms binary");
    let _ = OMS_COPY.set(copy);

    let mut pg = Postgres::init(&root);
    pg.start();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url("postgres"))
        .await
        .expect("connect to the run's Postgres");
    sqlx::query("create database oms")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let database_url = pg.url("oms");
    let migrated = oms(
        &["migrate"],
        &[("DATABASE_URL", &database_url)],
        Duration::from_secs(120),
    )
    .await;
    assert!(migrated.ok, "oms migrate: {}", migrated.stderr);
    let keys = TokenKeys::new(SECRET);
    let mut tenants = Vec::new();
    for n in 0..settings.tenants {
        let created = oms(
            &[
                "tenant",
                "create",
                "--name",
                &format!("Chaos Meats {n}"),
                "--slug",
                &format!("chaos-{n}"),
            ],
            &[("DATABASE_URL", &database_url)],
            Duration::from_secs(60),
        )
        .await;
        assert!(created.ok, "oms tenant create: {}", created.stderr);
        let id: Uuid = created.stdout.trim().parse().expect("a tenant id");
        tenants.push(Tenant {
            id,
            token: keys.mint(
                "chaos-client",
                Some("Chaos Client"),
                Some(id),
                vec![Role::Admin],
                chrono::Duration::hours(48),
            ),
            supplier: String::new(),
            product: String::new(),
            customer: String::new(),
        });
    }

    let nats = NatsServer::start();
    let nats_url = nats.url();
    let env = vec![
        ("DATABASE_URL".to_string(), database_url.clone()),
        ("NATS_URL".to_string(), nats_url.clone()),
        ("OMS_JWT_SECRET".to_string(), SECRET.to_string()),
        (
            "OMS_DATA_KEY".to_string(),
            "a-test-data-key-of-at-least-32-bytes-long".to_string(),
        ),
        // The relay signs anchors and refuses to start without a key.
        ("OMS_ANCHOR_KEY".to_string(), ANCHOR_KEY.to_string()),
    ];
    let mut api = RoleProcess::new("api", &root, env.clone());
    let mut relay = RoleProcess::new("relay", &root, env.clone());
    let mut projector = RoleProcess::new("projector", &root, env);
    api.spawn();
    relay.spawn();
    projector.spawn();
    let api_url = format!("http://127.0.0.1:{}", api.port);
    let cluster = Arc::new(Cluster {
        api: Mutex::new(api),
        relay: Mutex::new(relay),
        projector: Mutex::new(projector),
        nats: Mutex::new(nats),
        pg: Mutex::new(pg),
        _dir: workdir,
    });
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    wait_ready(&http, &api_url, &cluster, Duration::from_secs(120)).await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect(&database_url)
        .await
        .expect("the run's database");
    let mut stack = Stack {
        cluster,
        pool,
        http,
        api_url,
        database_url,
        nats_url,
        tenants: Arc::new(Vec::new()),
        setup: Vec::new(),
    };

    // Reference data, through the API with keys like everything else.
    let mut setup = stack.client(0, run, &Load::new(0.0));
    for tenant in &mut tenants {
        let t = tenant.clone();
        let mut create = async |command, path, body| {
            let created = setup.command(&t, command, path, body, None).await;
            created.unwrap_or_else(|| panic!("{command} failed"))["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        tenant.supplier = create(
            "supplier.create",
            "/api/v1/suppliers",
            json!({"name": "Prairie Packers", "code": "PRA", "credit_terms": "net_30"}),
        )
        .await;
        tenant.product = create(
            "product.create",
            "/api/v1/products",
            json!({"code": "BF-8020", "description": "Beef trim 80/20", "protein": "beef", "uom": "LB"}),
        )
        .await;
        tenant.customer = create(
            "customer.create",
            "/api/v1/customers",
            json!({"name": "Metro Grocers", "code": "MET"}),
        )
        .await;
    }
    stack.tenants = Arc::new(tenants);
    stack.setup = setup.records;
    stack
}

/// What the load and the faults came to.
struct Outcome {
    records: Vec<Record>,
    kills: Vec<Kill>,
    load_s: f64,
    drain_s: f64,
    drained: bool,
    peak_lag: i64,
    /// The lag /metrics reported once drained.
    metrics_lag: Result<i64, String>,
    exits: Vec<Exit>,
    /// Each role's exit on SIGTERM at the end (None: killed after the bound).
    stopped: Vec<(&'static str, Option<ExitStatus>)>,
}

/// The clients and the driver for `settings.seconds`; then the drain, and the roles stopped.
async fn load(stack: &Stack, settings: &Settings, run: &str) -> Outcome {
    let load = Load::new(settings.rate);
    let started = Instant::now();
    let until = started + Duration::from_secs(settings.seconds);
    let clients: Vec<_> = (1..=settings.clients)
        .map(|id| {
            tokio::spawn(client_loop(
                stack.client(id, run, &load),
                stack.tenants.clone(),
                settings.seed.wrapping_add(id as u64),
            ))
        })
        .collect();
    let monitor_stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(monitor(stack.cluster.clone(), monitor_stop.clone()));
    let driver = tokio::spawn(driver(
        stack.cluster.clone(),
        stack.pool.clone(),
        load.stop.clone(),
        settings.clone(),
        started,
        until,
    ));
    let mut peak_lag = 0i64;
    let mut reported = Instant::now();
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        let lag = match tokio::time::timeout(Duration::from_secs(5), lag(&stack.pool)).await {
            Ok(Ok(lag)) => Some(lag),
            _ => None,
        };
        peak_lag = peak_lag.max(lag.unwrap_or(0));
        if reported.elapsed() >= Duration::from_secs(15) || Instant::now() >= until {
            reported = Instant::now();
            eprintln!(
                "chaos: [{:6.1}s] {} commands, {} answered 2xx, {} answers 503; read-model lag {} events",
                started.elapsed().as_secs_f64(),
                load.counters.commands.load(Ordering::Relaxed),
                load.counters.ok.load(Ordering::Relaxed),
                load.counters.unavailable.load(Ordering::Relaxed),
                lag.map(|l| l.to_string()).unwrap_or("?".into()),
            );
        }
    }
    load.stop.store(true, Ordering::SeqCst);
    let mut records = stack.setup.clone();
    for handle in clients {
        records.extend(handle.await.expect("a client"));
    }
    let load_s = started.elapsed().as_secs_f64();
    eprintln!("chaos: load stopped after {load_s:.1}s; draining");

    // Drain: every tenant's relay and read models at its head.
    let drain_started = Instant::now();
    let mut drained = false;
    while drain_started.elapsed() < settings.drain {
        if let Ok(targets) = heads(&stack.pool).await {
            if caught_up(&stack.pool, &targets).await.unwrap_or(false) {
                drained = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();
    let kills = driver.await.expect("the driver");
    let mut metrics_lag_read = Err("not read".to_string());
    for _ in 0..20 {
        metrics_lag_read = metrics_lag(&stack.http, &stack.api_url).await;
        if metrics_lag_read.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    monitor_stop.store(true, Ordering::SeqCst);
    let exits = monitor.await.expect("the monitor");
    let mut stopped = Vec::new();
    for kind in [Kind::Api, Kind::Relay, Kind::Projector] {
        let cluster = stack.cluster.clone();
        let status = tokio::task::spawn_blocking(move || {
            cluster
                .role(kind)
                .lock()
                .unwrap()
                .terminate(Duration::from_secs(30))
        })
        .await
        .unwrap();
        stopped.push((kind.name(), status));
    }
    Outcome {
        records,
        kills,
        load_s,
        drain_s,
        drained,
        peak_lag,
        metrics_lag: metrics_lag_read,
        exits,
        stopped,
    }
}

/// Every check, over the stopped pipeline; and how many commands were in doubt (and of those,
/// committed).
async fn check(stack: &Stack, outcome: &Outcome, facts: &StoreFacts) -> (Vec<Check>, u64, u64) {
    let now = progress(&stack.pool).await.expect("the checkpoints");
    let (mut checks, in_doubt, in_doubt_committed) = check_commands(&outcome.records, facts);
    checks.push(check_gapless(facts));
    checks.push(check_chains(&stack.pool, facts, &stack.database_url, &stack.nats_url).await);
    let mut checkpoints = check_checkpoints(&facts.heads, &now);
    if !outcome.drained {
        checkpoints.ok = false;
        checkpoints.detail += &format!("; not drained within {:.0} s", outcome.drain_s);
    }
    checks.push(checkpoints);
    checks.push(match &outcome.metrics_lag {
        Ok(lag) => Check::new(
            "lag in /metrics back to 0",
            u64::try_from(*lag).unwrap_or(1),
            format!("relay + projection lag events: {lag}"),
        ),
        Err(err) => Check {
            name: "lag in /metrics back to 0",
            ok: false,
            mismatches: 0,
            detail: err.clone(),
        },
    });
    let nats = async_nats::connect(&stack.nats_url)
        .await
        .expect("connect to NATS");
    checks.push(check_stream(nats, facts).await);
    checks.push(check_rebuild(&stack.pool, &stack.database_url).await);
    let stopped = outcome
        .stopped
        .iter()
        .map(|(role, status)| match status {
            Some(status) => format!("{role} {status}"),
            None => format!("{role} killed 30 s after SIGTERM"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    checks.push(Check {
        name: "no role exited on its own",
        ok: outcome.exits.is_empty(),
        mismatches: 0,
        detail: if outcome.exits.is_empty() {
            format!("on SIGTERM at the end: {stopped}")
        } else {
            format!("{:?}", outcome.exits)
        },
    });
    let refused: Vec<&Record> = outcome
        .records
        .iter()
        .filter(|r| r.answer.is_some() && !r.ok())
        .collect();
    checks.push(Check {
        name: "every definite answer to a valid command was 2xx",
        ok: refused.is_empty(),
        mismatches: 0,
        detail: format!(
            "{} refused{}",
            refused.len(),
            refused
                .iter()
                .take(5)
                .map(|r| format!("; {} {} → {:?}", r.command, r.key, r.answer))
                .collect::<String>()
        ),
    });
    (checks, in_doubt, in_doubt_committed)
}

/// The figures, as written to `CHAOS_JSON`.
fn figures(
    settings: &Settings,
    started_at: chrono::DateTime<chrono::Utc>,
    outcome: &Outcome,
    events: usize,
    checks: &[Check],
    in_doubt: (u64, u64),
) -> Value {
    let records = &outcome.records;
    // A 2xx replayed from the idempotency record: an earlier attempt committed, and its answer
    // was a 503 or was lost.
    let replays: Vec<&Record> = records.iter().filter(|r| r.ok() && r.replayed).collect();
    let attempts: Vec<u16> = records
        .iter()
        .flat_map(|r| r.statuses.iter().copied())
        .collect();
    let count = |f: &dyn Fn(u16) -> bool| attempts.iter().filter(|s| f(**s)).count();
    let answered_2xx = records.iter().filter(|r| r.ok()).count();
    let mut kills = serde_json::Map::new();
    let mut recovery = serde_json::Map::new();
    for kind in Kind::ALL {
        let of_kind: Vec<&Kill> = outcome.kills.iter().filter(|k| k.kind == kind).collect();
        kills.insert(kind.name().into(), json!(of_kind.len()));
        let mut times: Vec<f64> = of_kind.iter().filter_map(|k| k.recovery_s).collect();
        times.sort_by(|a, b| a.total_cmp(b));
        recovery.insert(
            kind.name().into(),
            json!({
                "n": of_kind.len(),
                "p50_s": percentile(&times, 0.5).map(|v| round(v, 2)),
                "max_s": times.last().map(|v| round(*v, 2)),
                "not_recovered": of_kind.len() - times.len(),
            }),
        );
    }
    kills.insert("total".into(), json!(outcome.kills.len()));
    json!({
        "started_at": started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "settings": {
            "seconds": settings.seconds, "clients": settings.clients, "tenants": settings.tenants,
            "rate_cmd_s": settings.rate, "fault_gap_s": [settings.gap.0, settings.gap.1],
            "downtime_s": [settings.downtime.0, settings.downtime.1], "seed": settings.seed,
        },
        "duration_s": round(outcome.load_s, 1),
        "drain_s": round(outcome.drain_s, 1),
        "commands": {
            "sent": records.len(),
            "answered_2xx": answered_2xx,
            "replayed_2xx": replays.len(),
            "committed_though_answered_503": replays.iter().filter(|r| {
                let earlier = &r.statuses[..r.statuses.len() - 1];
                !earlier.is_empty() && earlier.iter().all(|s| *s == 503)
            }).count(),
            "retried": records.iter().filter(|r| r.statuses.len() > 1).count(),
            "refused": records.iter().filter(|r| r.answer.is_some() && !r.ok()).count(),
            "in_doubt": in_doubt.0,
            "in_doubt_committed": in_doubt.1,
            "attempts": attempts.len(),
            "attempts_503": count(&|s| s == 503),
            "attempts_other_5xx": count(&|s| s >= 500 && s != 503),
            "attempts_without_answer": count(&|s| s == 0),
            "per_second_2xx": round(answered_2xx as f64 / outcome.load_s, 1),
        },
        "events": events,
        "peak_lag_events": outcome.peak_lag,
        "mismatches": checks.iter().map(|c| c.mismatches).sum::<u64>(),
        "kills": kills,
        "recovery_s": recovery,
        "checks": checks.iter().map(|c| json!({
            "name": c.name, "ok": c.ok, "mismatches": c.mismatches, "detail": c.detail,
        })).collect::<Vec<_>>(),
        "replays": replays.iter().map(|r| json!({
            "command": r.command, "key": r.key, "attempts": r.statuses,
        })).collect::<Vec<_>>(),
        "kill_log": outcome.kills.iter().map(|k| json!({
            "kind": k.kind.name(), "at_s": round(k.at_s, 1), "down_s": round(k.down_s, 2),
            "recovery_s": k.recovery_s.map(|v| round(v, 2)),
        })).collect::<Vec<_>>(),
    })
}

/// The figures as a table.
fn table(figures: &Value) -> String {
    let mut out = String::new();
    let c = &figures["commands"];
    let _ = writeln!(
        out,
        "\nchaos run: {} s of load ({} clients, {} tenants), drained in {} s",
        figures["duration_s"],
        figures["settings"]["clients"],
        figures["settings"]["tenants"],
        figures["drain_s"]
    );
    let _ = writeln!(
        out,
        "  commands  sent {}  2xx {} ({} replayed, {} of them after a 503)  retried {}  refused {}  in doubt {} ({} committed)",
        c["sent"], c["answered_2xx"], c["replayed_2xx"], c["committed_though_answered_503"], c["retried"], c["refused"], c["in_doubt"], c["in_doubt_committed"]
    );
    let _ = writeln!(
        out,
        "  attempts  {}  503 {}  other 5xx {}  no answer {}  ({} 2xx/s)",
        c["attempts"],
        c["attempts_503"],
        c["attempts_other_5xx"],
        c["attempts_without_answer"],
        c["per_second_2xx"]
    );
    let _ = writeln!(
        out,
        "  events    {}  peak read-model lag {}  mismatches {}",
        figures["events"], figures["peak_lag_events"], figures["mismatches"]
    );
    let _ = writeln!(
        out,
        "  recovery: from the restart until a command committed after it is in every read model"
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>5} {:>10} {:>10} {:>14}",
        "kill", "n", "p50 s", "max s", "not recovered"
    );
    let show = |v: &Value| v.as_f64().map(|v| format!("{v:.2}")).unwrap_or("-".into());
    for kind in Kind::ALL {
        let r = &figures["recovery_s"][kind.name()];
        let _ = writeln!(
            out,
            "  {:<10} {:>5} {:>10} {:>10} {:>14}",
            kind.name(),
            r["n"],
            show(&r["p50_s"]),
            show(&r["max_s"]),
            r["not_recovered"]
        );
    }
    let _ = writeln!(out, "  {:<10} {:>5}", "total", figures["kills"]["total"]);
    for check in figures["checks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  [{}] {} — {}",
            if check["ok"] == true { " ok " } else { "FAIL" },
            check["name"].as_str().unwrap_or_default(),
            check["detail"].as_str().unwrap_or_default()
        );
    }
    out
}

/// The order the figures are written in: the headline first, the details last (serde_json
/// sorts an object's keys; nested objects stay sorted).
const FIGURE_ORDER: [&str; 13] = [
    "started_at",
    "duration_s",
    "commands",
    "events",
    "mismatches",
    "kills",
    "recovery_s",
    "drain_s",
    "peak_lag_events",
    "settings",
    "checks",
    "replays",
    "kill_log",
];

/// Pretty JSON of `figures` with its top-level keys in [`FIGURE_ORDER`].
fn headline_first(figures: &Value) -> String {
    let mut out = String::from("{\n");
    let fields: Vec<String> = FIGURE_ORDER
        .iter()
        .filter_map(|key| figures.get(*key).map(|value| (key, value)))
        .map(|(key, value)| {
            let pretty = serde_json::to_string_pretty(value).unwrap();
            format!("  {key:?}: {}", pretty.replace('\n', "\n  "))
        })
        .collect();
    out += &fields.join(",\n");
    out += "\n}\n";
    debug_assert_eq!(
        serde_json::from_str::<Value>(&out).ok().as_ref(),
        Some(figures)
    );
    out
}

async fn run(settings: Settings) {
    eprintln!("chaos: {settings:?}");
    let started_at = chrono::Utc::now();
    let run = format!("chaos-{}", settings.seed);
    let stack = start(&settings, &run).await;
    let outcome = load(&stack, &settings, &run).await;
    let facts = StoreFacts::load(&stack.pool).await;
    let (checks, in_doubt, in_doubt_committed) = check(&stack, &outcome, &facts).await;
    let figures = figures(
        &settings,
        started_at,
        &outcome,
        facts.events.len(),
        &checks,
        (in_doubt, in_doubt_committed),
    );
    eprintln!("{}", table(&figures));
    if let Some(path) = &settings.json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, headline_first(&figures)).expect("write the figures");
        eprintln!("chaos: figures written to {}", path.display());
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    assert!(
        figures["mismatches"] == 0 && failed.is_empty(),
        "the chaos run failed: {} mismatches; failed checks: {failed:?}",
        figures["mismatches"]
    );
}

/// Resolves on SIGINT or SIGTERM, so that an interrupted run still stops what it started.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the chaos run: `make chaos` (10 minutes), or its short version in `make test`"]
async fn chaos_run_loses_nothing_and_applies_nothing_twice() {
    let settings = Settings::from_env();
    let bound = Duration::from_secs(settings.seconds) + Duration::from_secs(1500);
    tokio::select! {
        outcome = tokio::time::timeout(bound, run(settings)) => {
            outcome.unwrap_or_else(|_| panic!("the chaos run did not finish within {bound:?}"));
        }
        _ = interrupted() => panic!("the chaos run was interrupted"),
    }
}
