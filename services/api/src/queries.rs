//! The query side of the API: lists (filters, `sort`, cursor pagination, CSV), single
//! documents and order history, all from the read models, plus the raw events of an order
//! from the event store. Every GET accepts `?min_position=N` and waits (up to 5 s, then 503)
//! until the tenant's read models have reached position N.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_projections::queries::{self, ListRequest, QueryError, Resource};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::TenantUser;
use super::AppState;
use crate::auth::Permission;

/// How long `min_position` waits before answering 503.
pub const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

/// The default and the largest page.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

impl From<QueryError> for ApiError {
    fn from(err: QueryError) -> Self {
        match err {
            QueryError::BadParameter { name, message } => {
                ApiError::BadRequest(format!("{name}: {message}"))
            }
            QueryError::Database(err) => err.into(),
        }
    }
}

/// Parses `min_position` out of the query parameters.
pub(crate) fn min_position(params: &BTreeMap<String, String>) -> Result<Option<i64>, ApiError> {
    params
        .get("min_position")
        .map(|v| {
            v.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
                ApiError::BadRequest(format!("min_position must be a position, not {v}"))
            })
        })
        .transpose()
}

/// Waits until every read model of the tenant has reached `position`. A position beyond
/// the tenant's newest event can never have come from a command: it is refused at once
/// (400) rather than waited for (API.md).
pub async fn wait_for_position(
    state: &AppState,
    tenant: Uuid,
    position: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = position else {
        return Ok(());
    };
    let reached = oms_projections::checkpoints::read_models_position(&state.pool, tenant).await?;
    if reached >= position {
        return Ok(());
    }
    let head = head_position(state, tenant).await?;
    if position > head {
        return Err(ApiError::BadRequest(format!(
            "min_position {position} is beyond the tenant's newest position ({head}); \
             pass a position a command returned"
        )));
    }
    if reach(state, tenant, position, READ_YOUR_WRITES_WAIT).await? {
        return Ok(());
    }
    let reached = oms_projections::checkpoints::read_models_position(&state.pool, tenant).await?;
    Err(ApiError::Unavailable(format!(
        "the read models are at position {reached}, not yet at {position}; retry shortly"
    )))
}

/// The position of the tenant's newest event (0 before its first).
async fn head_position(state: &AppState, tenant: Uuid) -> Result<i64, ApiError> {
    Ok(state
        .commands
        .store()
        .head(tenant)
        .await?
        .map_or(0, |head| head.position))
}

/// Waits up to `limit` for every read model of the tenant to reach `position`; whether they
/// did.
async fn reach(
    state: &AppState,
    tenant: Uuid,
    position: i64,
    limit: Duration,
) -> Result<bool, ApiError> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        let reached =
            oms_projections::checkpoints::read_models_position(&state.pool, tenant).await?;
        if reached >= position {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// How long a read that found nothing waits for read models that are behind the event store
/// before it answers 404 (see [`settled_miss`]).
pub const MISS_WAIT: Duration = Duration::from_secs(2);

/// Called when a read found nothing: if the tenant's read models are behind its newest
/// event, waits (up to [`MISS_WAIT`]) for them to catch up and says whether to look again.
/// So a client that reads what it has just created, without `min_position`, is not told
/// 404 merely because the projection is a few milliseconds behind; a read of something that
/// does not exist costs two small queries, and never a 503.
pub(crate) async fn settled_miss(state: &AppState, tenant: Uuid) -> Result<bool, ApiError> {
    let head = head_position(state, tenant).await?;
    let reached = oms_projections::checkpoints::read_models_position(&state.pool, tenant).await?;
    if reached >= head {
        return Ok(false);
    }
    reach(state, tenant, head, MISS_WAIT).await
}

/// Whether the client asked for CSV (`Accept: text/csv` or `?format=csv`).
fn wants_csv(headers: &HeaderMap, params: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    match params.get("format").map(String::as_str) {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be json or csv, not {other}"
            )))
        }
        None => {}
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .any(|part| part.trim().starts_with("text/csv"))
        }))
}

/// A list: `?limit`, `?cursor`, `?sort`, filters, `?min_position`, JSON or CSV.
pub async fn list(
    state: &AppState,
    user: &TenantUser,
    resource: Resource,
    headers: &HeaderMap,
    mut params: BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    user.require(Permission::Read)?;
    let position = min_position(&params)?;
    let csv = wants_csv(headers, &params)?;
    let limit = match params.remove("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}, not {v}"))
            })?,
    };
    let cursor = params.remove("cursor");
    let sort = params.remove("sort");
    params.remove("min_position");
    params.remove("format");
    wait_for_position(state, user.tenant, position).await?;
    let request = ListRequest {
        limit,
        cursor,
        sort,
        filters: params,
    };
    let mut conn = state.pool.acquire().await?;
    let page = queries::list(&mut conn, user.tenant, resource, &request).await?;
    if csv {
        return csv_response(&page.items, page.next_cursor.as_deref());
    }
    Ok(Json(json!({ "items": page.items, "next_cursor": page.next_cursor })).into_response())
}

/// One document from the read model.
pub async fn show(
    state: &AppState,
    user: &TenantUser,
    resource: Resource,
    id: Uuid,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    user.require(Permission::Read)?;
    wait_for_position(state, user.tenant, min_position(params)?).await?;
    let mut conn = state.pool.acquire().await?;
    let mut document = queries::get(&mut conn, user.tenant, resource, id).await?;
    if document.is_none() && settled_miss(state, user.tenant).await? {
        document = queries::get(&mut conn, user.tenant, resource, id).await?;
    }
    let document = document.ok_or_else(|| ApiError::NotFound(format!("no such item {id}")))?;
    let version = document["version"].as_i64().unwrap_or_default();
    Ok(super::reply::document(document, version))
}

/// An order's history from the read model, oldest first.
pub async fn history(
    state: &AppState,
    user: &TenantUser,
    order_type: &str,
    id: Uuid,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    user.require(Permission::Read)?;
    wait_for_position(state, user.tenant, min_position(params)?).await?;
    let mut conn = state.pool.acquire().await?;
    let mut items = queries::history(&mut conn, user.tenant, order_type, id).await?;
    if items.is_empty() && settled_miss(state, user.tenant).await? {
        items = queries::history(&mut conn, user.tenant, order_type, id).await?;
    }
    if items.is_empty() {
        return Err(ApiError::NotFound(format!("no order {id}")));
    }
    Ok(Json(json!({ "items": items })).into_response())
}

/// An order's raw events with metadata and hash (auditor, admin).
pub async fn events(
    state: &AppState,
    user: &TenantUser,
    aggregate_type: &str,
    id: Uuid,
) -> Result<Response, ApiError> {
    user.require(Permission::Audit)?;
    let events = state
        .commands
        .store()
        .load_stream(user.tenant, aggregate_type, id)
        .await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("no order {id}")));
    }
    let items: Vec<Value> = events.iter().map(event_json).collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// A stored event as the audit endpoints show it.
pub fn event_json(event: &oms_store::StoredEvent) -> Value {
    json!({
        "position": event.position,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": event.payload,
        "metadata": event.metadata,
        "recorded_at": oms_store::hash::format_timestamp(event.recorded_at),
        "hash": hex::encode(&event.hash),
    })
}

/// A list as CSV: a header row of every scalar field (nested values as JSON), one row per
/// item; the next page's cursor in a `Next-Cursor` header.
fn csv_response(items: &[Value], next_cursor: Option<&str>) -> Result<Response, ApiError> {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for key in map.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let encode = |err: csv::Error| ApiError::Internal(format!("csv: {err}"));
    writer
        .write_record(columns.iter().map(|c| defuse(c)))
        .map_err(encode)?;
    for item in items {
        let row = columns.iter().map(|column| match item.get(column) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => defuse(s),
            Some(other) => defuse(&other.to_string()),
        });
        writer.write_record(row).map_err(encode)?;
    }
    let out = writer
        .into_inner()
        .map_err(|err| ApiError::Internal(format!("csv: {err}")))?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        )],
        out,
    )
        .into_response();
    if let Some(cursor) = next_cursor.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().insert("next-cursor", cursor);
    }
    Ok(response)
}

/// A value a spreadsheet would run as a formula (leading `=`, `+`, `-`, `@`, tab or carriage
/// return, and not a plain decimal number) gets a leading `'`, so it opens as text. The csv
/// crate quotes; this is the one rule it cannot know. The same rule as the CLI's CSV export.
fn defuse(value: &str) -> String {
    oms_store::audit::export::defuse_cell(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_field(value: &str) -> String {
        let response = csv_response(&[json!({ "v": value })], None).unwrap();
        let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.strip_prefix("v\r\n")
            .and_then(|row| row.strip_suffix("\r\n"))
            .unwrap()
            .to_string()
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-12.50"), "-12.50");
        // Not plain numbers, though Rust's float parser takes them.
        assert_eq!(csv_field("-inf"), "'-inf");
        assert_eq!(csv_field("+NaN"), "'+NaN");
        assert_eq!(csv_field("-1e5"), "'-1e5");
    }

    #[test]
    fn tabs_and_carriage_returns_that_lead_a_cell_are_defused_too() {
        assert_eq!(csv_field("\tcmd"), "'\tcmd");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
    }
}
