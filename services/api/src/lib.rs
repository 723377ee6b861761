//! oms-api: the HTTP API (axum). One router per resource, merged here behind the layers every
//! request passes (request id, tracing, body limit, panic catcher).
//!
//! # Layout
//!
//! - Resources, one router each (private modules): `tenants`, `reference` (suppliers,
//!   customers, products, plants, carriers), `purchase_orders` and `sales_orders` (with what
//!   they share in `orders`), `audit`, and `ops` (health, readiness, metrics, OpenAPI, docs).
//!   Each registers its handlers with utoipa-axum, so a route and its OpenAPI entry are one
//!   registration; `openapi` holds the document's description, tags and security scheme.
//! - The edge: `request_ids` (bounds on the request, correlation and causation ids,
//!   checked before any other layer), `extract` (token, tenant, If-Match, Idempotency-Key,
//!   JSON body — each refuses bad input with a problem before a handler runs),
//!   `known_tenants` (a token's tenant must exist), `reply` (a command's outcome as a
//!   response), `queries` (reads from the read models), `rate_limit` (governor, per tenant).
//! - The public surface, for the `oms` binary and the black-box tests: [`AppState`] and
//!   [`Application`] (what handlers reach, and the server tests start on port 0), [`config`],
//!   [`auth`] (tokens and roles), [`error`] (the one error type, problem+json) and
//!   [`metrics`] (the registry the relay and projector add their counters to).
//!
//! Handlers are thin: extract → build a domain command from parsed types → run it through
//! [`oms_store::Commands`] → map the result. This crate depends on the store (and through it
//! the domain and the projections); only the `oms` binary depends on it.

mod audit;
pub mod auth;
pub mod config;
pub mod error;
mod extract;
mod known_tenants;
pub mod metrics;
mod openapi;
mod ops;
mod orders;
mod purchase_orders;
mod queries;
mod rate_limit;
mod reference;
mod reply;
mod request_ids;
mod sales_orders;
mod schemas;
mod tenants;

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
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::metrics::Metrics;
use error::ApiError;
use oms_domain::services::SystemClock;
use oms_store::{Commands, EventStore};

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
    /// The tenants recently seen to exist (a token for any other is refused).
    pub(crate) tenants: Arc<known_tenants::KnownTenants>,
}

impl AppState {
    /// The state over `pool`; `metrics` may already carry other roles' counters.
    pub fn new(
        pool: PgPool,
        config: &Config,
        nats: Option<async_nats::Client>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            commands: Commands::new(EventStore::new(pool.clone()), Arc::new(SystemClock)),
            pool,
            keys: TokenKeys::new(config.jwt_secret.expose())
                .with_max_lifetime(config.jwt_max_lifetime),
            metrics,
            nats,
            rate_limiter: config.rate_limit.map(|(per_second, burst)| {
                Arc::new(rate_limit::RateLimiter::new(rate_limit::RateLimit {
                    per_second,
                    burst,
                }))
            }),
            tenants: Arc::new(known_tenants::KnownTenants::new()),
        }
    }
}

/// The router with all routes and layers.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    // The resources' routes and their OpenAPI entries come from the same registrations.
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(tenants::router())
        .merge(reference::router())
        .merge(purchase_orders::router())
        .merge(sales_orders::router())
        .merge(audit::router())
        .split_for_parts();
    api.merge(ops::router(openapi::complete(document)))
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
        // Outermost: an id header out of bounds is refused before any layer echoes, logs or
        // stores it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_ids::refuse_bad_ids,
        ))
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
