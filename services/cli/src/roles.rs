//! The operations endpoints of a process that runs the relay or the projector without the API
//! (`oms serve --role relay|projector`): `GET /health`, `GET /ready` and `GET /metrics` on
//! `--bind`, so that every role can be probed by its orchestrator and scraped by Prometheus
//! when the roles are scaled apart — not only the one that serves the API.
//!
//! - `/health`: the process is up (200).
//! - `/ready`: Postgres answers with every migration applied, and NATS is connected; 503 with
//!   what is missing otherwise. A relay also lists the tenants it cannot publish for
//!   (`failing_tenants`: tenant, position, reason, since). They are a detail, not a reason to
//!   be unready: the relay keeps relaying every other tenant, and restarting it would not
//!   help the failing one.
//! - `/metrics`: the process's own registry (the relay's or the projector's counters) with the
//!   pipeline's lag per tenant, rendered exactly as the API renders its `/metrics`.
//!
//! Three fixed `GET` endpoints for probes and scrapers need no router or framework, and this
//! crate does not depend on one: they are answered by a small HTTP/1.1 responder over tokio —
//! one request per connection (`Connection: close`), a bounded request head, time limits on
//! reading and writing. It stops accepting on shutdown and lets the connections it has finish.

use oms_api::metrics::Metrics;
use oms_relay::Relay;
use prometheus_client::registry::Registry;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The largest request head read (request line and headers); a probe's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The content type of `/metrics`, as the API serves it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints of a relay or projector process report on.
#[derive(Debug)]
pub struct Endpoints {
    role: &'static str,
    pool: PgPool,
    nats: Option<async_nats::Client>,
    metrics: Metrics,
    relay: Option<Relay>,
}

/// A response: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Reply {
    fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
        }
    }
}

impl Endpoints {
    /// The endpoints of a process running `role` (`relay` or `projector`) over `pool` and
    /// `nats`; `registry` holds the role's counters; `relay` is the relay whose failing tenants
    /// `/ready` lists (when the process runs one).
    pub fn new(
        role: &'static str,
        pool: PgPool,
        nats: Option<async_nats::Client>,
        registry: Registry,
        relay: Option<Relay>,
    ) -> Self {
        Self {
            role,
            pool,
            nats,
            metrics: Metrics::new(registry),
            relay,
        }
    }

    /// Answers `method` on `path` (the request target without its query).
    pub async fn respond(&self, method: &str, path: &str) -> Reply {
        let reply = match (method, path) {
            ("GET" | "HEAD", "/health") => self.health(),
            ("GET" | "HEAD", "/ready") => self.ready().await,
            ("GET" | "HEAD", "/metrics") => self.metrics().await,
            (_, "/health" | "/ready" | "/metrics") => Reply::json(
                405,
                &json!({"error": "method not allowed; use GET or HEAD"}),
            ),
            _ => Reply::json(
                404,
                &json!({"error": "no such endpoint; this process serves /health, /ready and /metrics"}),
            ),
        };
        self.metrics.response(reply.status);
        reply
    }

    /// The process is up.
    fn health(&self) -> Reply {
        Reply::json(200, &json!({"status": "ok", "role": self.role}))
    }

    /// Postgres answers with every migration applied, and NATS is connected; for a relay, the
    /// tenants it cannot publish for, as a detail.
    async fn ready(&self) -> Reply {
        let (postgres, migrations) = match oms_store::migrate::is_up_to_date(&self.pool).await {
            Ok(up_to_date) => (true, up_to_date),
            Err(_) => (false, false),
        };
        let nats = self.nats.as_ref().is_some_and(|client| {
            client.connection_state() == async_nats::connection::State::Connected
        });
        let ready = postgres && migrations && nats;
        let mut body = json!({
            "ready": ready,
            "role": self.role,
            "postgres": postgres,
            "migrations": migrations,
            "nats": nats,
        });
        if let Some(relay) = &self.relay {
            body["failing_tenants"] = json!(relay.failing());
        }
        Reply::json(if ready { 200 } else { 503 }, &body)
    }

    /// The role's counters and the pipeline's lag per tenant (read now; left out, with a
    /// warning, when Postgres does not answer).
    async fn metrics(&self) -> Reply {
        let names: Vec<&str> = oms_projections::Projection::ALL
            .iter()
            .map(|p| p.name())
            .collect();
        let lag = match oms_store::progress::lag(&self.pool, &names).await {
            Ok(lag) => lag,
            Err(err) => {
                tracing::warn!(error = %err, "metrics: lag not available");
                Vec::new()
            }
        };
        Reply {
            status: 200,
            content_type: OPENMETRICS,
            body: self.metrics.render(&lag),
        }
    }
}

/// Serves `endpoints` on `listener` until `shutdown` is cancelled, then stops accepting and
/// waits for the connections it has (each bounded by its time limits).
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let endpoints = endpoints.clone();
                    connections.spawn(async move { answer(stream, &endpoints).await });
                }
                Err(err) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %err, "endpoints: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Reads one request, answers it and closes the connection.
async fn answer(mut stream: TcpStream, endpoints: &Endpoints) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await else {
        return;
    };
    let (reply, with_body) = match request_line(&head) {
        Some((method, path)) => (endpoints.respond(method, path).await, method != "HEAD"),
        None => (
            Reply::json(400, &json!({"error": "not an HTTP/1.x request"})),
            true,
        ),
    };
    let response = encode(&reply, with_body);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
}

/// The request head (up to the blank line), or `None` if the client closed first or sent
/// more than [`MAX_HEAD`] bytes without one. A body, if any, is not read.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return String::from_utf8(head).ok();
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
}

/// The method and the path (without the query) of an HTTP/1.x request line.
fn request_line(head: &str) -> Option<(&str, &str)> {
    let line = head.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Some((method, path))
}

/// The response's bytes (without the body for `HEAD`, with its length either way).
fn encode(reply: &Reply, with_body: bool) -> Vec<u8> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if reply.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if with_body {
        response.extend_from_slice(reply.body.as_bytes());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_gives_its_method_and_path_without_the_query() {
        assert_eq!(
            request_line("GET /metrics?x=1 HTTP/1.1\r\nHost: a"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line("HEAD /ready HTTP/1.0"),
            Some(("HEAD", "/ready"))
        );
    }

    #[test]
    fn anything_but_an_http_1_request_line_is_refused() {
        for line in [
            "",
            "GET",
            "GET /ready",
            "GET /ready HTTP/2",
            "GET ready HTTP/1.1",
            "GET / x HTTP/1.1",
        ] {
            assert_eq!(request_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_head_response_has_the_length_but_not_the_body() {
        let reply = Reply::json(200, &json!({"status": "ok"}));
        let text = String::from_utf8(encode(&reply, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Length: {}\r\n", reply.body.len())));
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
