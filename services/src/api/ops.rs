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

/// Prometheus text: the process's counters, and per tenant the relay's and each
/// projection's lag in events and in seconds (from the oldest event not yet relayed or
/// applied to now), read from the checkpoints at scrape time.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    match lag(&state.pool).await {
        Ok(lag) => text.push_str(&lag),
        Err(err) => tracing::warn!(error = %err, "metrics: lag not available"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn lag(pool: &sqlx::PgPool) -> Result<String, sqlx::Error> {
    use std::fmt::Write;
    // "relay" is the relay; the others are projections. Seconds: from the recorded_at of the
    // first event past the checkpoint (0 when caught up).
    let rows: Vec<(uuid::Uuid, String, i64, f64)> = sqlx::query_as(
        "with progress as (
             select tenant_id, 'relay' as stage, position from relay_checkpoints
             union all
             select h.tenant_id, p.name, coalesce(c.position, 0)
               from tenant_heads h
              cross join unnest($1::text[]) as p(name)
               left join read.checkpoints c on c.tenant_id = h.tenant_id and c.projection = p.name
         )
         select h.tenant_id, p.stage, h.position - p.position,
                coalesce(extract(epoch from now() - e.recorded_at), 0)::float8
           from progress p
           join tenant_heads h on h.tenant_id = p.tenant_id
           left join events e on e.tenant_id = p.tenant_id and e.position = p.position + 1
          order by 1, 2",
    )
    .bind(
        oms_projections::Projection::ALL
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await?;
    let mut out = String::new();
    out.push_str("# HELP oms_relay_lag_events Events committed but not yet published, per tenant.\n# TYPE oms_relay_lag_events gauge\n");
    out.push_str("# HELP oms_relay_lag_seconds Age of the oldest event not yet published, per tenant.\n# TYPE oms_relay_lag_seconds gauge\n");
    out.push_str("# HELP oms_projection_lag_events Events committed but not yet applied, per tenant and projection.\n# TYPE oms_projection_lag_events gauge\n");
    out.push_str("# HELP oms_projection_lag_seconds Age of the oldest event not yet applied (commit to read model), per tenant and projection.\n# TYPE oms_projection_lag_seconds gauge\n");
    for (tenant, stage, events, seconds) in rows {
        if stage == "relay" {
            let _ = writeln!(out, "oms_relay_lag_events{{tenant=\"{tenant}\"}} {events}");
            let _ = writeln!(
                out,
                "oms_relay_lag_seconds{{tenant=\"{tenant}\"}} {seconds:.3}"
            );
        } else {
            let _ = writeln!(
                out,
                "oms_projection_lag_events{{tenant=\"{tenant}\",projection=\"{stage}\"}} {events}"
            );
            let _ = writeln!(out, "oms_projection_lag_seconds{{tenant=\"{tenant}\",projection=\"{stage}\"}} {seconds:.3}");
        }
    }
    Ok(out)
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
