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
//! They are served with axum, as the API is; shutdown stops accepting and lets the requests in
//! flight finish.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use oms_api::metrics::Metrics;
use oms_relay::Relay;
use prometheus_client::registry::Registry;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
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
        }
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

/// The router of the three endpoints; any other path is 404, any other method 405.
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
            get(|State(e): State<Arc<Endpoints>>| async move { e.metrics().await }),
        )
        .layer(axum::middleware::from_fn_with_state(
            endpoints.clone(),
            |State(e): State<Arc<Endpoints>>,
             request: axum::extract::Request,
             next: axum::middleware::Next| async move {
                let response = next.run(request).await;
                e.metrics.response(response.status().as_u16());
                response
            },
        ))
        .with_state(endpoints)
}

/// Serves `endpoints` on `listener` until `shutdown` is cancelled, then stops accepting and
/// lets the requests in flight finish.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>, shutdown: CancellationToken) {
    if let Err(err) = axum::serve(listener, router(endpoints))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %err, "endpoints: serving failed");
    }
}
