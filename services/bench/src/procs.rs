//! What the bench starts and measures: throw-away databases, a throw-away nats-server, and
//! `oms` processes (the binary the bench itself runs from) on free ports, with their peak RSS.

use anyhow::Context;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a bench machine).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The URL of database `name` on the server of `url`.
pub fn database_on(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("//") && !server.ends_with('/') => server,
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// A database of the bench's own, dropped when this is dropped (with force, so a process
/// still holding connections does not keep it).
pub struct Database {
    admin_url: String,
    /// Its name.
    pub name: String,
    /// A URL to it, with the admin URL's credentials.
    pub url: String,
}

impl Database {
    /// Creates `oms_bench_<label>_<random>` on the server of `admin_url`.
    pub async fn create(admin_url: &str, label: &str) -> anyhow::Result<Self> {
        let name = format!(
            "oms_bench_{label}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .context("connect to Postgres (DATABASE_URL)")?;
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            url: database_on(admin_url, &name),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Dropped from sync code: a short blocking connection of its own.
        let url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&url).await.ok()?;
                sqlx::query(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("bench: could not drop database {}", self.name);
        }
    }
}

/// A nats-server with JetStream, its store in a temporary directory, stopped on drop.
pub struct Nats {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts `binary` on a free port and waits until it accepts connections.
    pub fn start(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("oms-bench-nats-")
            .tempdir()?;
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start nats-server {}", binary.display()))?;
        let nats = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nats)
    }

    /// The process id: its CPU is part of what the whole pipeline costs.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The settings every `oms` process of the bench gets.
#[derive(Debug, Clone)]
pub struct OmsEnv {
    /// The `oms` binary.
    pub binary: PathBuf,
    /// The database (the admin's login; the service sets its own role per connection).
    pub database_url: String,
    /// The nats-server.
    pub nats_url: String,
    /// The token secret the bench mints with.
    pub jwt_secret: String,
}

/// Runs `oms <args>` to completion and returns its stdout; fails with its stderr.
pub fn oms_run(env: &OmsEnv, args: &[&str]) -> anyhow::Result<String> {
    let output = command(env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run oms {}", args.join(" ")))?;
    anyhow::ensure!(
        output.status.success(),
        "oms {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn command(env: &OmsEnv) -> Command {
    let mut command = Command::new(&env.binary);
    command
        .env_remove("OMS_LOG_FORMAT")
        .env_remove("OMS_DB_POOL_SIZE")
        .env_remove("OMS_STREAM")
        .env_remove("OMS_DB_ROLE")
        .env_remove("OMS_MIGRATION_DATABASE_URL")
        .env("OMS_LOG", "warn")
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", &env.database_url)
        .env("NATS_URL", &env.nats_url)
        .env("OMS_JWT_SECRET", &env.jwt_secret)
        .env(
            "OMS_ANCHOR_KEY",
            format!("bench-anchor-{}", Uuid::new_v4().simple()),
        )
        .env(
            "OMS_DATA_KEY",
            format!("bench-data-key-{}", Uuid::new_v4().simple()),
        )
        .env_remove("OMS_DATA_KEY_FILE");
    command
}

/// A running `oms serve`, stopped on drop.
pub struct Serve {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: tempfile::NamedTempFile,
}

/// The token the bench's services serve `/metrics` under on their API listener (a throw-away
/// service on loopback; long enough for the service's minimum).
const METRICS_TOKEN: &str = "bench-metrics-token-of-a-throw-away-service";

impl Serve {
    /// Starts `oms serve --role <role>` with no rate limits (the load comes from one address
    /// and few tenants on purpose) and no operator listener, and waits for `/ready`.
    pub async fn start(env: &OmsEnv, role: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = tempfile::Builder::new()
            .prefix("oms-bench-serve-")
            .tempfile()?;
        let child = command(env)
            .args(["serve", "--role", role])
            .env("OMS_BIND", format!("127.0.0.1:{port}"))
            .env("OMS_RATE_LIMIT", "0")
            .env("OMS_IP_RATE_LIMIT", "0")
            .env("OMS_METRICS_BIND", "")
            .env("OMS_METRICS_TOKEN", METRICS_TOKEN)
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()
            .context("start oms serve")?;
        let mut serve = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(format!("{}/ready", serve.base)).send().await {
                if response.status().is_success() {
                    return Ok(serve);
                }
            }
            if let Some(status) = serve.child.try_wait()? {
                anyhow::bail!("oms serve exited ({status}): {}", serve.log_tail());
            }
            if Instant::now() > deadline {
                anyhow::bail!("oms serve was not ready in 60 s: {}", serve.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a counter or gauge without labels on its `/metrics` (None: not there).
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> Option<f64> {
        let text = http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                (metric == name).then(|| value.trim().parse().ok())?
            })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident set so far, MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        peak_rss_mb(self.pid())
    }

    /// The end of its log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then waits (SIGKILL after 20 s).
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `VmHWM` of a process (its peak resident set), MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_moved_to_another_database() {
        assert_eq!(
            database_on("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_on("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(database_on("postgres://h:5432", "x"), "postgres://h:5432/x");
    }

    #[test]
    fn the_peak_rss_of_this_process_is_read() {
        let mb = peak_rss_mb(std::process::id()).expect("VmHWM of this process");
        assert!(mb > 0.0);
    }
}
