//! Audit (auditor, admin): the tenant's event feed in position order and the verification of
//! its hash chain against the signed anchors.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_store::audit::{AnchorKey, AnchorPolicy};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

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

/// What `GET /audit/verify` needs beyond the pool: the anchor keys, the bound on unanchored
/// events, and the tenants whose verification is running — a whole-chain recomputation per
/// call is costly, so a second one for the same tenant is refused (429) until the first ends.
#[derive(Debug)]
pub struct Verification {
    policy: AnchorPolicy,
    running: Mutex<HashSet<Uuid>>,
}

impl Verification {
    /// A verification with `keys` (none: it answers 503) and `max_age`.
    pub fn new(keys: Vec<AnchorKey>, max_age: Duration) -> Self {
        Self {
            policy: AnchorPolicy { keys, max_age },
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Marks `tenant`'s verification as running until the guard is dropped (also when the
    /// request is dropped mid-way); `None` when one is running already.
    pub fn start(self: &Arc<Self>, tenant: Uuid) -> Option<Running> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(tenant).then(|| Running {
            verification: Arc::clone(self),
            tenant,
        })
    }
}

/// A running verification of one tenant; dropping it lets the next one start.
#[derive(Debug)]
pub struct Running {
    verification: Arc<Verification>,
    tenant: Uuid,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self
            .verification
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        running.remove(&self.tenant);
    }
}

/// How long a client refused because a verification is running should wait.
const VERIFY_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Recomputes the tenant's hash chain and checks it against the signed anchors in NATS:
/// `{ok, events_checked, head_position, head_hash, first_bad_position, anchors_checked,
/// anchors_valid, anchored_position, anchored_at, unanchored_events, max_anchor_age_secs,
/// first_bad_anchor, anchor_problems, anchor_problems_total}` (docs/audit.md). One
/// verification at a time per tenant (429 with `Retry-After` while one runs); 503 without NATS
/// or without an anchor key.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "the verification report"), (status = 403, body = super::error::Problem),
        (status = 429, description = "a verification of this tenant is running", body = super::error::Problem),
        (status = 503, description = "NATS (the anchors) or the anchor key is missing", body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify(State(state): State<AppState>, user: TenantUser) -> Result<Response, ApiError> {
    user.require(Permission::Audit)?;
    let verification = &state.verification;
    if verification.policy.keys.is_empty() {
        return Err(ApiError::Unavailable(
            "no anchor key is configured (OMS_ANCHOR_KEY): the chain cannot be checked against \
             the anchors"
                .into(),
        ));
    }
    let Some(nats) = state.nats.clone() else {
        return Err(ApiError::Unavailable(
            "NATS, which holds the anchors, is not configured".into(),
        ));
    };
    let Some(_running) = verification.start(user.tenant) else {
        return Err(ApiError::TooManyRequests {
            retry_after: VERIFY_RETRY_AFTER,
        });
    };
    // The anchors first, then the chain's snapshot: every anchored position is in it.
    let jetstream = async_nats::jetstream::new(nats);
    let anchors = oms_relay::anchors::anchors(&jetstream, user.tenant)
        .await
        .map_err(|err| ApiError::Unavailable(format!("cannot read the anchors: {err}")))?;
    let report = oms_store::audit::verify_with_anchors(
        state.commands.store(),
        user.tenant,
        &anchors,
        &verification.policy,
    )
    .await?;
    Ok(Json(report).into_response())
}
