//! oms-api: the HTTP API (axum). One router per resource, merged here behind the layers every
//! request passes (request id, tracing, body limit, panic catcher).
//!
//! # Layout
//!
//! - Resources, one router each (private modules): `tenants`, `reference` (suppliers,
//!   customers, products, plants, carriers), `purchase_orders` and `sales_orders` (with what
//!   they share in `orders`), `lots` (lots and recall traces), `audit`, and `ops` (health,
//!   readiness, metrics, OpenAPI, docs). [`asyncapi`] is the document of the events on NATS,
//!   for integrators, served beside the OpenAPI one.
//!   Each registers its handlers with utoipa-axum, so a route and its OpenAPI entry are one
//!   registration; `openapi` holds the document's description, tags and security scheme.
//! - The edge: `request_ids` (bounds on the request, correlation and causation ids,
//!   checked before any other layer), `extract` (token, tenant, If-Match, Idempotency-Key,
//!   JSON body — each refuses bad input with a problem before a handler runs),
//!   `known_tenants` (a token's tenant must exist), `reply` (a command's outcome as a
//!   response), `queries` (reads from the read models), `rate_limit` (governor, per tenant
//!   and per client address), the request time-out, and [`serve`] (the server loop, with its
//!   header-read time-out).
//! - The public surface, for the `oms` binary and the black-box tests: [`AppState`] and
//!   [`Application`] (what handlers reach, and the server tests start on port 0), [`config`],
//!   [`auth`] (tokens and roles), [`error`] (the one error type, problem+json) and
//!   [`metrics`] (the registry the relay and projector add their counters to).
//!
//! Handlers are thin: extract → build a domain command from parsed types → run it through
//! [`oms_store::Commands`] → map the result. This crate depends on the store (and through it
//! the domain and the projections); only the `oms` binary depends on it.

pub mod asyncapi;
mod audit;
pub mod auth;
pub mod config;
pub mod error;
mod extract;
mod known_tenants;
mod lots;
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

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sqlx::PgPool;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use ops::bearer_matches;

use crate::auth::TokenKeys;
use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use error::ApiError;
use oms_domain::services::SystemClock;
use oms_store::{Commands, EventStore};

/// The largest request body accepted (API.md: 413 above 1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach. Cloned for every request (each extractor and layer takes its
/// own), so it is one shared allocation: cloning the parts themselves (the token validation's
/// sets, the NATS client, the pipeline) showed in profiles of the write path.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Debug)]
pub struct Shared {
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
    /// Per-address limits on what a tenant's limit does not cover (none: unlimited).
    pub(crate) ip_limiter: Option<Arc<rate_limit::IpLimiter>>,
    /// The token that opens `/metrics` on the API's listener (none: 404 there).
    pub(crate) metrics_token: Option<Secret>,
    /// How long a request may run before it is answered 503 and dropped.
    pub(crate) request_timeout: Duration,
    /// How long a client may take to send a request's headers.
    pub(crate) header_read_timeout: Duration,
    /// The tenants recently seen to exist (a token for any other is refused).
    pub(crate) tenants: Arc<known_tenants::KnownTenants>,
    /// The anchor keys and bound of `GET /audit/verify`, and the tenants whose verification
    /// is running (one at a time per tenant).
    pub(crate) verification: Arc<audit::Verification>,
}

impl AppState {
    /// The state over `pool`; `metrics` may already carry other roles' counters.
    pub fn new(
        pool: PgPool,
        config: &Config,
        nats: Option<async_nats::Client>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut store = EventStore::new(pool.clone());
        if let Some(key) = &config.data_key {
            store = store.with_master_key(key.clone());
        }
        let commands =
            Commands::new(store, Arc::new(SystemClock)).with_group_commit(config.group_commit);
        metrics.register_group_commit(commands.group_commit_counters());
        Self(Arc::new(Shared {
            commands,
            pool,
            keys: TokenKeys::new(config.jwt_secret.expose())
                .with_max_lifetime(config.jwt_max_lifetime)
                .with_issuer_and_audience(config.jwt_issuer.clone(), config.jwt_audience.clone()),
            metrics,
            nats,
            rate_limiter: config.rate_limit.map(|(per_second, burst)| {
                Arc::new(rate_limit::RateLimiter::new(rate_limit::RateLimit {
                    per_second,
                    burst,
                }))
            }),
            tenants: Arc::new(known_tenants::KnownTenants::new()),
            ip_limiter: config.ip_rate_limit.map(|(per_second, burst)| {
                Arc::new(rate_limit::IpLimiter::new(rate_limit::RateLimit {
                    per_second,
                    burst,
                }))
            }),
            metrics_token: config.metrics_token.clone(),
            request_timeout: config.request_timeout,
            header_read_timeout: config.header_read_timeout,
            verification: Arc::new(audit::Verification::new(
                config.anchor_keys.clone(),
                config.anchor_max_age,
            )),
        }))
    }
}

/// The router with all routes and layers.
pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let request_id = HeaderName::from_static("x-request-id");
    // The resources' routes and their OpenAPI entries come from the same registrations.
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(tenants::router())
        .merge(reference::router())
        .merge(purchase_orders::router())
        .merge(sales_orders::router())
        .merge(lots::router())
        .merge(audit::router())
        .split_for_parts();
    api.merge(ops::router(openapi::complete(document)))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A handler that overruns is dropped (its transaction rolls back, unless its COMMIT
        // was already sent: then the idempotency record tells, as after any lost answer).
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |err: tower::BoxError| async move {
                        if err.is::<tower::timeout::error::Elapsed>() {
                            ApiError::Unavailable(format!(
                                "the request took longer than {} s and was abandoned; a command's \
                             outcome is then unknown: retry it with the same Idempotency-Key \
                             or X-Request-Id",
                                timeout.as_secs_f64()
                            ))
                        } else {
                            ApiError::Internal(err.to_string())
                        }
                    },
                ))
                .layer(tower::timeout::TimeoutLayer::new(timeout)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_by_ip,
        ))
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
    header_read_timeout: Duration,
}

impl Application {
    /// Binds `addr` and builds the router over `state`.
    pub async fn build(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        Self::bind(addr, router(state.clone()), &state).await
    }

    /// Binds `addr` for the operator's listener: `/metrics` without authentication
    /// (`OMS_METRICS_BIND`).
    pub async fn build_operator(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        Self::bind(addr, ops::operator_router(state.clone()), &state).await
    }

    async fn bind(addr: SocketAddr, router: Router, state: &AppState) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            router,
            header_read_timeout: state.header_read_timeout,
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
        serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            shutdown,
        )
        .await;
        Ok(())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets the
/// requests in flight finish and closes idle connections. A client that has not sent a
/// request's headers within `header_read_timeout` — counted from the connection's start or the
/// end of its previous response, so an idle connection is closed too — is disconnected
/// (slowloris: many connections trickling headers would otherwise hold sockets and tasks for
/// ever), which `axum::serve` cannot set. HTTP/1.1 only: detecting HTTP/2 would wait for the
/// client's first bytes with no bound, and HTTP/2 belongs on the TLS proxy in front. Handlers
/// see the peer's address as `ConnectInfo<SocketAddr>` (the per-address limit needs it).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin (as
                    // axum::serve does); per-connection errors are the client's.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(peer).await;
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
