//! Operations endpoints (no auth): health, readiness, the OpenAPI and AsyncAPI documents and
//! the interactive docs; and metrics, which name every tenant, so they are served on the
//! operator's listener ([`operator_router`], `OMS_METRICS_BIND`) and, on the API's own
//! listener, only to a request bearing `OMS_METRICS_TOKEN` (404 without one configured).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::AppState;
use crate::error::ApiError;
use oms_store::migrate;
use subtle::ConstantTimeEq;

/// Health, readiness, metrics and docs; `openapi` is the document the API's routers were
/// registered with (see [`crate::router`]).
pub fn router(openapi: serde_json::Value) -> Router<AppState> {
    let document = Arc::new(openapi);
    let events = Arc::new(crate::asyncapi::document());
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(guarded_metrics))
        .route(
            OPENAPI_PATH,
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .route(
            ASYNCAPI_PATH,
            get(move || async move { Json(events.as_ref().clone()) }),
        )
        .merge(docs())
}

/// The operator's listener: `GET /metrics` without authentication, and nothing else. Bind it
/// where only operators and Prometheus reach it (loopback, or a private network).
pub fn operator_router(state: AppState) -> axum::Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Where the OpenAPI document is served; the docs page reads it from there too.
pub(crate) const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Where the AsyncAPI document of the events on NATS is served (public, like the OpenAPI one:
/// it describes the contract, not any tenant's data).
pub(crate) const ASYNCAPI_PATH: &str = "/api/v1/asyncapi.json";

/// Swagger UI at `/docs` (`/docs` redirects to `/docs/`), its scripts and styles compiled into
/// the binary so that the page works without internet access. It reads the document served at
/// [`OPENAPI_PATH`] rather than a copy of its own, and its online spec validator (which would
/// send the document to another host) is off.
fn docs() -> SwaggerUi {
    SwaggerUi::new("/docs").config(Config::new([OPENAPI_PATH]).validator_url("none"))
}

/// The process is up.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres answers, every migration is applied, and NATS is connected (when configured);
/// 503 with what is missing otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    let (postgres, migrations) = match migrate::is_up_to_date(&state.pool).await {
        Ok(up_to_date) => (true, up_to_date),
        Err(_) => (false, false),
    };
    let nats = state
        .nats
        .as_ref()
        .map(|client| client.connection_state() == async_nats::connection::State::Connected);
    let ok = postgres && migrations && nats.unwrap_or(true);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ok,
            "postgres": postgres,
            "migrations": migrations,
            "nats": nats,
        })),
    )
        .into_response()
}

/// `/metrics` on the API's listener: 404 unless a metrics token is configured (as if there
/// were no such endpoint), 401 unless the request bears it.
async fn guarded_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = bearer_matches(state.metrics_token.as_ref(), &headers) {
        return refusal.into_response();
    }
    metrics(State(state)).await
}

/// Checks `Authorization: Bearer <token>` against `expected` in constant time: `Ok` when it
/// matches, a 404 problem when no token is configured, a 401 problem otherwise. The relay's
/// and projector's processes guard their `/metrics` with it too.
pub fn bearer_matches(
    expected: Option<&crate::config::Secret>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "the metrics need `Authorization: Bearer <OMS_METRICS_TOKEN>`".into(),
        ))
    }
}

/// Prometheus text: the process's counters (the relay's and projector's too, when this
/// process runs them), and per tenant the relay's and each projection's lag in events and in
/// seconds (from the oldest event not yet relayed or applied to now), read at scrape time.
async fn metrics(State(state): State<AppState>) -> Response {
    let names: Vec<&str> = oms_projections::Projection::ALL
        .iter()
        .map(|p| p.name())
        .collect();
    let lag = match oms_store::progress::lag(&state.pool, &names).await {
        Ok(lag) => lag,
        Err(err) => {
            tracing::warn!(error = %err, "metrics: lag not available");
            Vec::new()
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&lag),
    )
        .into_response()
}

/// Counts every response by status.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.response(response.status().as_u16());
    response
}
