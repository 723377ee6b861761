//! `oms serve` shuts down gracefully: on SIGTERM it stops accepting connections, finishes the
//! requests in flight with complete responses, and exits 0 in time; every customer a client
//! was told was created is in the event store afterwards; its logs on a pipe carry no colour
//! codes.

#[path = "../../store/tests/common_db.rs"]
mod common_db;
#[allow(dead_code)]
#[path = "common_nats.rs"]
mod common_nats;

use common_db::{database_url, fresh_database};
use common_nats::NatsServer;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oms_api::auth::{Role, TokenKeys};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "a-test-secret-that-is-at-least-32-characters";
/// Clients looping POST /customers during the signal.
const CLIENTS: usize = 8;
/// How long the process may take, from SIGTERM to its exit.
const EXIT_BOUND: Duration = Duration::from_secs(15);
/// What the process is told it may take (less than `EXIT_BOUND`, so a hang shows as exit 1
/// with the server's own message rather than as our timeout).
const SHUTDOWN_TIMEOUT_SECS: &str = "10";

/// A running `oms serve`, killed if the test fails before it exits; its stderr collected by
/// a thread.
struct Serve {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Serve {
    fn start(envs: &[(&str, &str)], bind: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oms"));
        command
            .args([
                "serve",
                "--bind",
                bind,
                "--shutdown-timeout-secs",
                SHUTDOWN_TIMEOUT_SECS,
            ])
            .env_remove("OMS_BIND")
            .env_remove("OMS_LOG_FORMAT")
            .env_remove("OMS_SHUTDOWN_TIMEOUT_SECS")
            // Several servers run at once: none takes the default metrics port.
            .env("OMS_METRICS_BIND", "")
            .env("OMS_LOG", "info,sqlx=warn")
            // The relay role signs anchors and refuses to start without a key.
            .env("OMS_ANCHOR_KEY", "a-test-anchor-key-of-at-least-32-bytes")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("oms serve starts");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = std::io::BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || loop {
            let mut line = Vec::new();
            match pipe.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => sink.lock().unwrap().extend_from_slice(&line),
            }
        });
        Self {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the exit, at most `bound`.
    async fn wait(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// All of stderr, once the process has exited and the pipe is closed.
    fn finish_stderr(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stderr reader");
        }
        self.stderr()
    }

    /// Waits (at most `bound`) until stderr contains `text`.
    async fn wait_for_log(&mut self, text: &str, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if self.stderr().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one request of the burst came to.
#[derive(Debug)]
enum Outcome {
    /// 201 with a complete JSON body naming the customer.
    Created {
        id: String,
        /// The signal had been sent when the request was sent.
        sent_after_kill: bool,
        /// The signal had been sent when the whole body had been read.
        completed_after_kill: bool,
    },
    /// No response at all (refused, reset or closed before a status line) after the signal:
    /// the server going away, as it should.
    Refused(String),
    /// Anything else: an error status, a cut body, a body without an id, a timeout, or a
    /// connection error before the signal.
    Bad(String),
}

/// Loops POST /api/v1/customers until the connection is refused after the signal (or the
/// deadline), recording every outcome.
async fn client(
    worker: usize,
    url: String,
    token: String,
    killed: Arc<AtomicBool>,
    deadline: Instant,
) -> Vec<Outcome> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut outcomes = Vec::new();
    for n in 0.. {
        if Instant::now() >= deadline {
            break;
        }
        let sent_after_kill = killed.load(Ordering::SeqCst);
        let sent = http
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"name": format!("Customer {worker}-{n}")}))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                if killed.load(Ordering::SeqCst) && !err.is_timeout() {
                    outcomes.push(Outcome::Refused(format!("{err:?}")));
                } else {
                    outcomes.push(Outcome::Bad(format!("no response: {err:?}")));
                }
                break;
            }
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => {
                outcomes.push(Outcome::Bad(format!(
                    "status {status} but the body was cut: {err:?}"
                )));
                continue;
            }
        };
        let completed_after_kill = killed.load(Ordering::SeqCst);
        let text = String::from_utf8_lossy(&body);
        if status != reqwest::StatusCode::CREATED {
            outcomes.push(Outcome::Bad(format!("status {status}: {text}")));
            continue;
        }
        match serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        {
            Some(id) => outcomes.push(Outcome::Created {
                id,
                sent_after_kill,
                completed_after_kill,
            }),
            None => outcomes.push(Outcome::Bad(format!("201 without a JSON id: {text}"))),
        }
    }
    outcomes
}

/// Reads from `stream` until `done(bytes so far)` or EOF, at most `bound`.
async fn read_until(
    stream: &mut TcpStream,
    bound: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(bound, async {
        let mut buf = [0u8; 4096];
        while !done(&bytes) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits an HTTP/1.1 response into status, lower-cased head and body; the body must be
/// complete (Content-Length bytes, or chunks up to the last one).
fn parse_response(bytes: &[u8]) -> Result<(u16, String, Vec<u8>), String> {
    let text = String::from_utf8_lossy(bytes);
    let end = find(bytes, b"\r\n\r\n").ok_or_else(|| format!("no complete head: {text:?}"))?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status: {text:?}"))?;
    let rest = &bytes[end + 4..];
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
    };
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| "bad content-length")?;
        if rest.len() != length {
            return Err(format!(
                "content-length {length} but {} bytes: {text:?}",
                rest.len()
            ));
        }
        return Ok((status, head, rest.to_vec()));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let (mut body, mut at) = (Vec::new(), 0);
        loop {
            let line_end = find(&rest[at..], b"\r\n").ok_or("a cut chunk size")? + at;
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[at..line_end])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .map_err(|_| "a bad chunk size")?;
            at = line_end + 2;
            if size == 0 {
                return Ok((status, head, body));
            }
            if rest.len() < at + size + 2 {
                return Err(format!("a cut chunk: {text:?}"));
            }
            body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    Err(format!("neither content-length nor chunked: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_requests_in_flight_and_exits_zero_in_time() {
    let (db_name, pool) = fresh_database(4).await;
    let nats = NatsServer::start();
    let tenant = oms_store::tenants::create(&pool, "Acme", "acme")
        .await
        .expect("a tenant");
    let token = TokenKeys::new(SECRET).mint(
        "admin",
        Some("Admin"),
        Some(tenant.id),
        vec![Role::Admin],
        chrono::Duration::hours(1),
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut serve = Serve::start(
        &[
            ("DATABASE_URL", &database_url(&db_name)),
            ("NATS_URL", &nats.url()),
            ("OMS_JWT_SECRET", SECRET),
            ("OMS_DATA_KEY", "a-test-data-key-of-at-least-32-bytes-long"),
            ("OMS_RATE_LIMIT", "0"),
        ],
        &format!("127.0.0.1:{port}"),
    );

    // Ready: Postgres, migrations and NATS (bounded).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = serve.exited() {
            panic!(
                "oms serve exited before it was ready ({status}):\n{}",
                serve.finish_stderr()
            );
        }
        let ready = http.get(format!("{base}/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never said 200:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The burst.
    let killed = Arc::new(AtomicBool::new(false));
    let clients_deadline = Instant::now() + Duration::from_secs(60);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            tokio::spawn(client(
                worker,
                format!("{base}/api/v1/customers"),
                token.clone(),
                killed.clone(),
                clients_deadline,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One request held in flight for certain: its head is sent with `Expect: 100-continue`,
    // and the server's `100 Continue` says the handler is reading its body. The body is sent
    // only once the server has seen the signal and stopped accepting connections.
    let body = json!({"name": "Held across the signal"}).to_string();
    let mut held = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect for the held request");
    let head = format!(
        "POST /api/v1/customers HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        body.len()
    );
    held.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until(&mut held, Duration::from_secs(10), |b| {
        find(b, b"\r\n\r\n").is_some()
    })
    .await;
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "the held request got no 100 Continue: {:?}",
        String::from_utf8_lossy(&interim)
    );

    // SIGTERM, with the burst and the held request in flight.
    assert!(
        serve.exited().is_none(),
        "oms serve exited during the burst:\n{}",
        serve.finish_stderr()
    );
    killed.store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    kill(serve.pid(), Signal::SIGTERM).expect("SIGTERM");

    assert!(
        serve
            .wait_for_log("shutting down", Duration::from_secs(10))
            .await,
        "no \"shutting down\" after SIGTERM:\n{}",
        serve.stderr()
    );
    // It stops accepting connections while the held request is still open.
    let refusing = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            serve.exited().is_none(),
            "oms serve exited with a request in flight:\n{}",
            serve.finish_stderr()
        );
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < refusing,
            "oms serve still accepts connections 5 s after \"shutting down\""
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        serve.exited().is_none(),
        "oms serve exited with a request in flight:\n{}",
        serve.finish_stderr()
    );

    // The held request still gets its complete answer; then the server closes the connection.
    held.write_all(body.as_bytes()).await.unwrap();
    let answer = read_until(&mut held, Duration::from_secs(10), |_| false).await;
    let (status, answer_head, answer_body) = parse_response(&answer).unwrap_or_else(|err| {
        panic!(
            "the held request's answer is not complete: {err}\n{}",
            serve.stderr()
        )
    });
    assert_eq!(
        status,
        201,
        "{answer_head}\n{}",
        String::from_utf8_lossy(&answer_body)
    );
    let held_id = serde_json::from_slice::<Value>(&answer_body)
        .expect("the held request's body is JSON")["id"]
        .as_str()
        .expect("with an id")
        .to_string();

    // Exits 0 within the bound.
    let status = serve
        .wait(EXIT_BOUND.saturating_sub(killed_at.elapsed()))
        .await;
    let exited_after = killed_at.elapsed();
    let stderr = if status.is_some() {
        serve.finish_stderr()
    } else {
        serve.stderr()
    };
    let status = status.unwrap_or_else(|| {
        panic!("oms serve still running {EXIT_BOUND:?} after SIGTERM:\n{stderr}")
    });
    assert!(
        status.success(),
        "oms serve exited with {status} after SIGTERM:\n{stderr}"
    );

    // The burst: complete 201s, or no response at all once the server was going away.
    let mut outcomes = Vec::new();
    for client in clients {
        let done = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("the clients stop once the server is gone")
            .expect("a client task");
        outcomes.extend(done);
    }
    let bad: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Bad(why) => Some(why),
            _ => None,
        })
        .collect();
    assert!(bad.is_empty(), "{} bad outcome(s): {bad:#?}", bad.len());
    let mut told = BTreeSet::new();
    let (mut before, mut across, mut after) = (0, 0, 0);
    let mut refused = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Created {
                id,
                sent_after_kill,
                completed_after_kill,
            } => {
                assert!(told.insert(id.clone()), "id {id} answered twice");
                match (sent_after_kill, completed_after_kill) {
                    (false, false) => before += 1,
                    (false, true) => across += 1,
                    _ => after += 1,
                }
            }
            Outcome::Refused(why) => refused.push(why.as_str()),
            Outcome::Bad(_) => unreachable!(),
        }
    }
    eprintln!(
        "burst: {} created ({before} before SIGTERM, {across} sent before and answered after, \
         {after} sent after), {} without a response after SIGTERM; held request answered; \
         refusing connections {refused_after:?} and exited {exited_after:?} after SIGTERM; \
         first connection error: {:?}",
        told.len(),
        refused.len(),
        refused.first()
    );
    assert!(before > 0, "the burst created nothing before the signal");
    // The burst overlapped the signal: requests sent before it were answered after it.
    assert!(
        across + after > 0,
        "no burst request was answered after SIGTERM"
    );
    assert!(told.insert(held_id.clone()), "id {held_id} answered twice");

    // Every customer a client was told about is in the event store, and nothing else.
    let events: i64 = sqlx::query_scalar(
        "select count(*) from events where tenant_id = $1 and aggregate_type = 'customer'",
    )
    .bind(tenant.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(events as usize, told.len(), "events vs 201s");
    let stored: BTreeSet<String> = sqlx::query_scalar::<_, uuid::Uuid>(
        "select distinct aggregate_id from events where tenant_id = $1 and aggregate_type = 'customer'",
    )
    .bind(tenant.id)
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|id| id.to_string())
    .collect();
    assert_eq!(stored, told, "the customers stored vs the 201s");

    // Logs on a pipe: plain text, no colour codes.
    assert!(
        !stderr.contains("\x1b["),
        "ANSI escapes in the logs:\n{stderr}"
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
}
