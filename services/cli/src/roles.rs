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
//!   pipeline's lag per tenant, rendered exactly as the API renders its `/metrics`. It names
//!   every tenant, so the rule is the API's: served without authentication on the operator's
//!   listener (`OMS_METRICS_BIND`, [`operator_router`]), and on `--bind` only to a request
//!   bearing `OMS_METRICS_TOKEN` (404 without one configured).
//!
//! They are served with the API's server loop (`oms_api::serve`: the same header-read
//! time-out); shutdown stops accepting and lets the requests in flight finish.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oms_api::config::Secret;
use oms_api::metrics::Metrics;
use oms_relay::Relay;
use prometheus_client::registry::Registry;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    metrics_token: Option<Secret>,
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

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [
                (header::CONTENT_TYPE, self.content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.body,
        )
            .into_response()
    }
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
            metrics_token: None,
        }
    }

    /// The same endpoints serving `/metrics` on `--bind` to requests bearing `token` (none:
    /// 404 there).
    pub fn with_metrics_token(mut self, token: Option<Secret>) -> Self {
        self.metrics_token = token;
        self
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

/// The router of the three endpoints on `--bind` (`/metrics` behind the metrics token); any
/// other path is 404, any other method 405.
pub fn router(endpoints: Arc<Endpoints>) -> Router {
    Router::new()
        .route(
            "/health",
            get(|State(e): State<Arc<Endpoints>>| async move { e.health() }),
        )
        .route(
            "/ready",
            get(|State(e): State<Arc<Endpoints>>| async move { e.ready().await }),
        )
        .route(
            "/metrics",
            get(
                |State(e): State<Arc<Endpoints>>, headers: HeaderMap| async move {
                    match oms_api::bearer_matches(e.metrics_token.as_ref(), &headers) {
                        Ok(()) => e.metrics().await.into_response(),
                        Err(refusal) => refusal.into_response(),
                    }
                },
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            endpoints.clone(),
            count,
        ))
        .with_state(endpoints)
}

/// The operator's listener of a relay or projector process: `/metrics` without
/// authentication, nothing else.
pub fn operator_router(endpoints: Arc<Endpoints>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(e): State<Arc<Endpoints>>| async move { e.metrics().await }),
        )
        .layer(axum::middleware::from_fn_with_state(
            endpoints.clone(),
            count,
        ))
        .with_state(endpoints)
}

/// Counts every response by status, as the API does.
async fn count(
    State(e): State<Arc<Endpoints>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    e.metrics.response(response.status().as_u16());
    response
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting and lets
/// the requests in flight finish; a client that takes longer than `header_read_timeout` to
/// send its headers is disconnected.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) {
    oms_api::serve(
        listener,
        router,
        header_read_timeout,
        shutdown.cancelled_owned(),
    )
    .await;
}
