//! What purchase and sales orders share at the HTTP edge: request bodies built from domain
//! value types, the response document, and the runner every order command goes through.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use oms_domain::values::{
    LongText, Money, NoteText, PaymentMethod, Quantity, Reason, UnitPrice, Weight,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{CommandHeaders, TenantUser};
use super::reply::executed;
use super::AppState;
use crate::auth::Permission;
use crate::commands::{Loaded, NumberSeries, OmsAggregate};
use crate::idempotency::Reply;

/// A GET response: the document with its `ETag`.
pub fn document(body: Value, version: i64) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A new order line in a request (`POST …/lines`, or `lines` of a create).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The product.
    pub product_id: Uuid,
    /// Ordered weight in the order's weight unit (decimal string or number, > 0).
    #[schema(value_type = String, example = "40000")]
    pub weight: Weight,
    /// Price per weight unit, up to 4 decimals.
    #[schema(value_type = String, example = "2.1575")]
    pub price_per_unit: UnitPrice,
    /// Cases or pieces.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub quantity: Option<Quantity>,
    /// Free text.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Option<LongText>,
    /// (Sales orders only) the purchase order that supplies this line.
    #[serde(default)]
    pub source_purchase_order_id: Option<Uuid>,
}

/// `{reason}` for reject and cancel.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why.
    #[schema(value_type = String)]
    pub reason: Reason,
}

/// `{}` for actions that take nothing (submit, approve, confirm, close).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

/// `{text}` for notes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The note.
    #[schema(value_type = String)]
    pub text: NoteText,
}

/// A payment.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Amount, > 0, at most what is outstanding.
    #[schema(value_type = String, example = "1000.00")]
    pub amount: Money,
    /// When it was paid (not in the future).
    pub paid_on: NaiveDate,
    /// wire, ach, check, credit_card, cash, other.
    #[schema(value_type = String, example = "wire")]
    pub method: PaymentMethod,
    /// Bank reference, cheque number, …
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub reference: Option<oms_domain::values::ShortText>,
}

/// A received or shipped weight for one line.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeighedLineRequest {
    /// The order line.
    pub line_id: Uuid,
    /// The actual (catch) weight.
    #[schema(value_type = String, example = "39850.5")]
    pub weight: Weight,
    /// Cases or pieces.
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub quantity: Option<Quantity>,
}

/// Adds `position` (the tenant's position after a command) to a document.
pub fn with_position(body: &mut Value, position: i64) {
    if let Value::Object(map) = body {
        map.insert("position".into(), json!(position));
    }
}

/// What a successful command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 201 with `Location: /api/v1/{collection}/{id}`.
    Created {
        /// `purchase-orders` or `sales-orders`.
        collection: &'static str,
    },
    /// 201: something was added to the order (a line).
    Added,
    /// 200.
    Changed,
}

/// One order command: role check, context, pipeline, reply with the state after it.
#[allow(clippy::too_many_arguments)]
pub async fn run<A, F>(
    state: &AppState,
    user: &TenantUser,
    headers: &CommandHeaders,
    raw: &[u8],
    permission: Permission,
    id: Uuid,
    number: Option<NumberSeries>,
    outcome: Outcome,
    view: fn(&Loaded<A>) -> Value,
    make: F,
) -> Result<Response, ApiError>
where
    A: OmsAggregate,
    A::Event: oms_domain::UniqueKeys,
    F: Fn(Option<String>) -> A::Command,
{
    user.require(permission)?;
    let ctx = headers.context(user, raw);
    let outcome = state
        .commands
        .execute::<A, _, _>(&ctx, id, number, make, |loaded, position| {
            let mut body = view(loaded);
            with_position(&mut body, position);
            let mut headers = vec![("etag".to_string(), format!("\"{}\"", loaded.version))];
            let status = match outcome {
                Outcome::Created { collection } => {
                    headers.push((
                        "location".into(),
                        format!("/api/v1/{collection}/{}", loaded.id),
                    ));
                    StatusCode::CREATED
                }
                Outcome::Added => StatusCode::CREATED,
                Outcome::Changed => StatusCode::OK,
            };
            Reply {
                status: status.as_u16(),
                body,
                headers,
            }
        })
        .await;
    match outcome {
        Ok(outcome) => {
            match &outcome {
                crate::commands::Executed::Fresh { .. } => state.metrics.committed(),
                crate::commands::Executed::Replayed(_) => state.metrics.replayed(),
            }
            Ok(executed(outcome))
        }
        Err(err) => {
            let err = ApiError::from(err);
            if err.status().is_client_error() {
                state.metrics.refused();
            }
            Err(err)
        }
    }
}

/// `GET …/{id}`: the order from the read model (`?min_position=` waits for it), or with
/// `?as_of=<RFC 3339>` rebuilt from the events recorded up to then.
pub async fn show<A>(
    state: &AppState,
    user: &TenantUser,
    id: Uuid,
    params: &BTreeMap<String, String>,
    resource: oms_projections::queries::Resource,
    view: fn(&Loaded<A>) -> Value,
) -> Result<Response, ApiError>
where
    A: OmsAggregate,
    A::Event: oms_domain::UniqueKeys,
{
    user.require(Permission::Read)?;
    let Some(as_of) = params.get("as_of") else {
        return super::queries::show(state, user, resource, id, params).await;
    };
    let at = DateTime::parse_from_rfc3339(as_of)
        .map_err(|_| {
            ApiError::BadRequest(format!("as_of must be an RFC 3339 timestamp, not {as_of}"))
        })?
        .with_timezone(&Utc);
    let loaded = state.commands.load_as_of::<A>(user.tenant, id, at).await?;
    if !loaded.exists() {
        return Err(ApiError::NotFound(format!(
            "no order {id} existed at {as_of}"
        )));
    }
    Ok(document(view(&loaded), loaded.version))
}
