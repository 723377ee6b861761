//! Audit (auditor, admin): the tenant's event feed in position order and the verification of
//! its hash chain.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::BTreeMap;

use super::error::ApiError;
use super::extract::{ApiQuery, TenantUser};
use super::AppState;
use crate::auth::Permission;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Audit routes.
pub fn router() -> OpenApiRouter<AppState> {
    // Each route is registered from its handler's `#[utoipa::path]`: the router and the
    // OpenAPI document cannot disagree.
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(verify))
}

/// The tenant's events after `after_position`, in position order, with metadata and hash.
#[utoipa::path(get, path = "/api/v1/audit/events", tag = "audit",
    params(("after_position" = Option<i64>, Query), ("limit" = Option<u32>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, description = "`{items: [event], next_after_position}`"), (status = 403, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    user: TenantUser,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    user.require(Permission::Audit)?;
    let after = match params.get("after_position") {
        None => 0,
        Some(v) => v.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
            ApiError::BadRequest(format!("after_position must be a position, not {v}"))
        })?,
    };
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to 1000, not {v}")))?,
    };
    let rows =
        oms_store::EventStore::events_between(&state.pool, user.tenant, after, i64::MAX, limit)
            .await?;
    let next = rows.last().map(|e| e.position);
    let items: Vec<_> = rows.iter().map(super::queries::event_json).collect();
    Ok(Json(json!({ "items": items, "next_after_position": next })).into_response())
}

/// Recomputes the tenant's hash chain: `{ok, events_checked, head_position, head_hash,
/// first_bad_position}`.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "the verification report"), (status = 403, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify(State(state): State<AppState>, user: TenantUser) -> Result<Response, ApiError> {
    user.require(Permission::Audit)?;
    let report = state.commands.store().verify_chain(user.tenant).await?;
    Ok(Json(report).into_response())
}
