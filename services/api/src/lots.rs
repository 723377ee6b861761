//! Lots and recalls: `GET /lots` (filters `q` = lot-number prefix, `supplier_id`,
//! `purchase_order_id`), `GET /lots/{id}`, `GET /lots/{id}/trace` (forward: the lot's receipt,
//! every shipment, what is left) and `GET /sales-orders/{id}/trace` (backward: each line's
//! lots with their purchase order, supplier, plant and establishment number). All read the
//! read models (`read.lots`, `read.lot_movements`), like every other GET, and accept
//! `?min_position=`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_projections::queries::{self, Resource};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, TenantUser};
use super::queries::{min_position, settled_miss, wait_for_position};
use super::AppState;
use crate::auth::Permission;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Lot routes.
pub fn router() -> OpenApiRouter<AppState> {
    // Each route is registered from its handler's `#[utoipa::path]`: the router and the
    // OpenAPI document cannot disagree.
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(trace))
        .routes(routes!(sales_order_trace))
}

/// Lists the tenant's received lots with filters (`q`: lot-number prefix, `supplier_id`,
/// `purchase_order_id`), `sort`, `limit`, `cursor`; CSV with `Accept: text/csv` or
/// `?format=csv`. Each lot carries what has shipped of it and what is left.
#[utoipa::path(get, path = "/api/v1/lots", tag = "lots",
    params(("q" = Option<String>, Query, description = "lot-number prefix"), ("supplier_id" = Option<Uuid>, Query), ("purchase_order_id" = Option<Uuid>, Query),
           ("sort" = Option<String>, Query, description = "field or -field: created_at, received_on, lot_number"),
           ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("min_position" = Option<i64>, Query), ("format" = Option<String>, Query, description = "json or csv")),
    responses((status = 200, description = "`{items: [lot], next_cursor}` or CSV")), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    user: TenantUser,
    headers: axum::http::HeaderMap,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    super::queries::list(&state, &user, Resource::Lots, &headers, params).await
}

/// One lot: where it came from (supplier, purchase order and line, plant, establishment
/// number, production and receipt dates, received weight), `shipped_weight` and
/// `remaining_weight`.
#[utoipa::path(get, path = "/api/v1/lots/{id}", tag = "lots",
    params(("id" = Uuid, Path, description = "the lot's id"), ("min_position" = Option<i64>, Query)),
    responses((status = 200, description = "the lot"), (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let lot = read(&state, &user, &params, |conn, tenant| {
        Box::pin(queries::get(conn, tenant, Resource::Lots, id))
    })
    .await?;
    let lot = lot.ok_or_else(|| ApiError::NotFound(format!("no lot {id}")))?;
    Ok(Json(lot).into_response())
}

/// The forward trace of a lot, for a recall: `{lot, receipt: {purchase_order_id,
/// order_number, supplier_id, plant_id, establishment_number, received_on, weight},
/// shipments: [{sales_order_id, order_number, customer_id, shipped_on, weight}],
/// shipped_weight, remaining_weight}` (plus supplier, plant and customer names); with
/// `?as_of=` (auditor, admin) as it stood then.
#[utoipa::path(get, path = "/api/v1/lots/{id}/trace", tag = "lots",
    params(("id" = Uuid, Path, description = "the lot's id"), ("as_of" = Option<String>, Query, description = "RFC 3339 instant (auditor, admin)"), ("min_position" = Option<i64>, Query)),
    responses((status = 200, description = "the lot's receipt and shipments"), (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn trace(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let as_of = match params.get("as_of") {
        None => None,
        Some(text) => {
            // Seeing the past is an auditor's (and an admin's) right, as on orders.
            user.require(Permission::Audit)?;
            Some(super::orders::parse_as_of(text)?)
        }
    };
    let trace = read(&state, &user, &params, |conn, tenant| {
        Box::pin(queries::lot_trace(conn, tenant, id, as_of))
    })
    .await?;
    let trace = trace.ok_or_else(|| match as_of {
        Some(_) => ApiError::NotFound(format!("no lot {id} existed then")),
        None => ApiError::NotFound(format!("no lot {id}")),
    })?;
    Ok(Json(trace).into_response())
}

/// The backward trace of a sales order, for a recall: each line with the lots it shipped,
/// and each lot's purchase order, supplier, plant, establishment number, production and
/// receipt dates.
#[utoipa::path(get, path = "/api/v1/sales-orders/{id}/trace", tag = "lots",
    params(("id" = Uuid, Path), ("min_position" = Option<i64>, Query)),
    responses((status = 200, description = "`{sales_order_id, order_number, customer_id, shipped_on, lines: [{line_id, product_id, shipped_weight, lots: [...]}]}`"),
              (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn sales_order_trace(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let trace = read(&state, &user, &params, |conn, tenant| {
        Box::pin(queries::sales_order_trace(conn, tenant, id))
    })
    .await?;
    let trace = trace.ok_or_else(|| ApiError::NotFound(format!("no sales order {id}")))?;
    Ok(Json(trace).into_response())
}

/// A query's answer for the caller's tenant, with what every GET does around it: the read
/// permission, `?min_position=`, and one more look when nothing was found while the read
/// models were behind (so a lot just received is not answered 404).
async fn read<F>(
    state: &AppState,
    user: &TenantUser,
    params: &BTreeMap<String, String>,
    query: F,
) -> Result<Option<Value>, ApiError>
where
    F: for<'c> Fn(
        &'c mut sqlx::PgConnection,
        Uuid,
    )
        -> futures::future::BoxFuture<'c, Result<Option<Value>, queries::QueryError>>,
{
    user.require(Permission::Read)?;
    wait_for_position(state, user.tenant, min_position(params)?).await?;
    let mut conn = state.pool.acquire().await?;
    let mut found = query(&mut conn, user.tenant).await?;
    if found.is_none() && settled_miss(state, user.tenant).await? {
        found = query(&mut conn, user.tenant).await?;
    }
    Ok(found)
}
