//! A real nats-server (≥ 2.10, JetStream, file store in a temporary directory) on a random
//! port, started by the test, that the test can kill and restart on the same port and store.
//! The binary comes from `OMS_NATS_SERVER_BIN` (set by `make test`), else from PATH or the
//! project's `.tools/` when new enough.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server child process.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// A configuration file (in `store`) and the environment its `$VARIABLES` come from, for
    /// a server started with [`NatsServer::start_with_config`].
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

fn version_ok(binary: &std::path::Path) -> bool {
    let Ok(output) = Command::new(binary).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // "nats-server: v2.15.1"
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

fn find_binary() -> PathBuf {
    if let Ok(path) = std::env::var("OMS_NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(root.join(".tools/python/bin/nats-server"));
    candidates
        .into_iter()
        .find(|p| p.is_file() && version_ok(p))
        .expect("a nats-server >= 2.10 is needed: run the tests with `make test`, or set OMS_NATS_SERVER_BIN")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server on a free port with an empty store.
    pub fn start() -> Self {
        let mut server = Self {
            binary: find_binary(),
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary directory"),
            child: None,
            config: None,
        };
        server.spawn();
        server
    }

    /// Starts a server like [`NatsServer::start`] whose configuration file also holds
    /// `config` (users, permissions, TLS…), with `env` in its environment for the
    /// `$VARIABLES` the configuration names.
    pub fn start_with_config(config: &str, env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            binary: find_binary(),
            port: free_port(),
            store: tempfile::tempdir().expect("a temporary directory"),
            child: None,
            config: None,
        };
        let file = server.store.path().join("nats-server.conf");
        std::fs::write(
            &file,
            format!(
                "listen: \"127.0.0.1:{}\"\njetstream {{ store_dir: {:?} }}\n{config}\n",
                server.port,
                server.store.path().join("jetstream")
            ),
        )
        .expect("write the nats-server configuration");
        let env = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        server.config = Some((file, env));
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        if let Some((file, env)) = &self.config {
            let child = Command::new(&self.binary)
                .arg("-c")
                .arg(file)
                .envs(env.iter().map(|(name, value)| (name, value)))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server starts");
            self.child = Some(child);
            self.wait_until_up();
            return;
        }
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A client that keeps reconnecting.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
