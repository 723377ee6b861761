//! Operations endpoints (no auth): health, readiness, metrics, the OpenAPI document and the
//! interactive docs.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_scalar::{Scalar, Servable};

use super::AppState;
use crate::migrate;

/// Health, readiness, metrics and docs.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .merge(Scalar::with_url("/docs", super::openapi::ApiDoc::openapi()))
}

/// The process is up.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres answers, every migration is applied, and NATS is connected (when configured);
/// 503 with what is missing otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    let postgres = sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(&state.pool)
        .await
        .is_ok();
    let migrations = postgres && migrate::is_up_to_date(&state.pool).await.unwrap_or(false);
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

/// Prometheus text.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document, generated from the handlers' annotations.
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(super::openapi::ApiDoc::openapi())
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
