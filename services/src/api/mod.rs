//! The HTTP API (axum): one router per resource, merged here, behind the layers every request
//! passes (request id, tracing, body limit, panic catcher).
//!
//! Handlers are thin: extract (token, tenant, If-Match, Idempotency-Key, body) → build a
//! command from parsed types → run it through [`crate::commands::Commands`] → map the result.

pub mod audit;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod purchase_orders;
pub mod queries;
pub mod rate_limit;
pub mod reference;
pub mod reply;
pub mod sales_orders;
pub mod tenants;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use sqlx::PgPool;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::TokenKeys;
use crate::commands::Commands;
use crate::metrics::Metrics;
use error::ApiError;

/// The largest request body accepted (API.md: 413 above 1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The command pipeline (and through it the event store).
    pub commands: Commands,
    /// The pool, for queries outside the pipeline.
    pub pool: PgPool,
    /// Token verification.
    pub keys: TokenKeys,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// NATS, when the service is connected to it (readiness reports on it).
    pub nats: Option<async_nats::Client>,
    /// Per-tenant request limits (none: unlimited).
    pub rate_limiter: Option<Arc<rate_limit::RateLimiter>>,
}

/// The router with all routes and layers.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .merge(tenants::router())
        .merge(reference::router())
        .merge(purchase_orders::router())
        .merge(sales_orders::router())
        .merge(audit::router());
    Router::new()
        .nest("/api/v1", api)
        .merge(ops::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "a handler panicked".into(),
            ))
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %request_id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// A bound, not yet running API server (tests bind port 0 and ask for the port).
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds `addr` and builds the router over `state`.
    pub async fn build(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: router(state),
        })
    }

    /// The port it is bound to.
    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
