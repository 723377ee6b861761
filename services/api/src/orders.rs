//! What purchase and sales orders share at the HTTP edge: request bodies built from domain
//! value types, the response document, and the runner every order command goes through.

use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use oms_domain::order::{ClaimLine, ClaimReason, NewClaim};
use oms_domain::values::{
    CreditNoteNumber, LongText, Money, NoteText, PaymentMethod, Reason, ShortText, Weight,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{CommandHeaders, TenantUser};
use super::reply::{document, executed};
use super::AppState;
use crate::auth::Permission;
use oms_domain::NumberSeries;
use oms_store::idempotency::Reply;
use oms_store::{Loaded, OmsAggregate};

/// `{reason}` for reject and cancel.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// Why.
    #[schema(schema_with = crate::schemas::with::reason)]
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
    #[schema(schema_with = crate::schemas::with::note_text)]
    pub text: NoteText,
}

/// A payment.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Amount, > 0, at most what is outstanding.
    #[schema(schema_with = crate::schemas::with::money)]
    pub amount: Money,
    /// When it was paid (not in the future).
    pub paid_on: NaiveDate,
    /// wire, ach, check, credit_card, cash, other.
    #[schema(schema_with = crate::schemas::with::payment_method)]
    pub method: PaymentMethod,
    /// Bank reference, cheque number, …
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub reference: Option<oms_domain::values::ShortText>,
}

/// A refund: money returned while more was paid than is owed.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Amount, > 0, at most what was overpaid (−outstanding).
    #[schema(schema_with = crate::schemas::with::money)]
    pub amount: Money,
    /// When the money moved (not in the future).
    pub refunded_on: NaiveDate,
    /// wire, ach, check, credit_card, cash, other.
    #[schema(schema_with = crate::schemas::with::payment_method)]
    pub method: PaymentMethod,
    /// Bank reference, cheque number, …
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub reference: Option<ShortText>,
}

/// One line of a claim: how much is claimed against one order line.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimLineRequest {
    /// The order line claimed against.
    pub line_id: Uuid,
    /// The amount claimed (> 0; with the line's other claims, not above its received or
    /// shipped amount).
    #[schema(schema_with = crate::schemas::with::money)]
    pub amount: Money,
    /// The weight the claim is about, if relevant.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_weight)]
    pub weight: Option<Weight>,
    /// What is wrong with this line.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub description: Option<LongText>,
}

impl ClaimLineRequest {
    /// The domain's claim line.
    pub fn to_line(&self) -> ClaimLine {
        ClaimLine {
            line_id: self.line_id,
            amount: self.amount,
            weight: self.weight,
            description: self.description.clone(),
        }
    }
}

/// The claim a request raises, with the id the service gives it. Handlers build it once per
/// request, outside the command builder, so that a command decided again (after a version
/// conflict) raises the same claim.
pub fn new_claim(
    reason: ClaimReason,
    lines: &[ClaimLineRequest],
    notes: Option<LongText>,
) -> NewClaim {
    NewClaim {
        claim_id: Uuid::now_v7(),
        reason,
        lines: lines.iter().map(ClaimLineRequest::to_line).collect(),
        notes,
    }
}

/// `{accepted_amount?, credit_note_number?}` for accepting a claim.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptClaimRequest {
    /// What is credited (> 0, at most the claimed amount); default: the claimed amount.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_money)]
    pub accepted_amount: Option<Money>,
    /// The credit note's number: on a sales order ours (assigned `CN-000001`, … unless
    /// given), on a purchase order the supplier's credit memo number, if it sent one.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_number)]
    pub credit_note_number: Option<CreditNoteNumber>,
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

/// Who sent a command and how: the verified user, the command headers and the body as sent
/// (for the idempotency fingerprint). Every command handler builds one from its extractors.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The token's user and tenant.
    pub user: &'a TenantUser,
    /// `If-Match`, `Idempotency-Key` and the request ids.
    pub headers: &'a CommandHeaders,
    /// The body's bytes as received.
    pub raw: &'a [u8],
}

impl<'a> Caller<'a> {
    /// The caller of a request.
    pub fn new(user: &'a TenantUser, headers: &'a CommandHeaders, raw: &'a [u8]) -> Self {
        Self { user, headers, raw }
    }
}

/// An order aggregate as the API shows it: the document every response about it carries.
pub trait OrderDocument: OmsAggregate
where
    Self::Event: oms_domain::UniqueKeys,
{
    /// The order document of the aggregate's state.
    fn document(loaded: &Loaded<Self>) -> Value;
}

/// Runs an order command that takes no number (every action but create and invoice).
pub async fn act<A>(
    state: &AppState,
    caller: Caller<'_>,
    permission: Permission,
    id: Uuid,
    outcome: Outcome,
    make: impl Fn(Option<String>) -> A::Command,
) -> Result<Response, ApiError>
where
    A: OrderDocument,
    A::Event: oms_domain::UniqueKeys,
{
    run::<A, _>(
        state,
        OrderCommand {
            caller,
            permission,
            id,
            number: None,
            outcome,
            make,
        },
    )
    .await
}

/// One order command, as a handler hands it to [`run`].
pub struct OrderCommand<'a, F> {
    /// Who sent it.
    pub caller: Caller<'a>,
    /// What the caller's roles must allow.
    pub permission: Permission,
    /// The order.
    pub id: Uuid,
    /// The number series the command takes a number from (create, invoice), if any.
    pub number: Option<NumberSeries>,
    /// How success is answered.
    pub outcome: Outcome,
    /// Builds the domain command, given the number taken from `number`.
    pub make: F,
}

/// One order command: role check, context, pipeline, reply with the state after it.
pub async fn run<A, F>(state: &AppState, command: OrderCommand<'_, F>) -> Result<Response, ApiError>
where
    A: OrderDocument,
    A::Event: oms_domain::UniqueKeys,
    F: Fn(Option<String>) -> A::Command,
{
    let OrderCommand {
        caller,
        permission,
        id,
        number,
        outcome,
        make,
    } = command;
    let Caller { user, headers, raw } = caller;
    user.require(permission)?;
    let ctx = headers.context(user, raw);
    let outcome = state
        .commands
        .execute::<A, _, _>(&ctx, id, number, make, move |loaded, position| {
            let mut body = A::document(loaded);
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
                body: body.into(),
                headers,
            }
        })
        .await;
    match outcome {
        Ok(outcome) => {
            match &outcome {
                oms_store::Executed::Fresh { .. } => state.metrics.committed(),
                oms_store::Executed::Replayed(_) => state.metrics.replayed(),
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
/// `?as_of=<RFC 3339>` rebuilt from the events recorded up to then (auditor, admin).
pub async fn show<A>(
    state: &AppState,
    user: &TenantUser,
    id: Uuid,
    params: &BTreeMap<String, String>,
    resource: oms_projections::queries::Resource,
) -> Result<Response, ApiError>
where
    A: OrderDocument,
    A::Event: oms_domain::UniqueKeys,
{
    user.require(Permission::Read)?;
    let Some(as_of) = params.get("as_of") else {
        return super::queries::show(state, user, resource, id, params).await;
    };
    // Time travel reads the event store's history: an auditor's (and an admin's) right, as
    // the raw events are (shared/DOMAIN.md's roles).
    user.require(Permission::Audit)?;
    let at = parse_as_of(as_of)?;
    let loaded = state.commands.load_as_of::<A>(user.tenant, id, at).await?;
    if !loaded.exists() {
        return Err(ApiError::NotFound(format!(
            "no order {id} existed at {as_of}"
        )));
    }
    Ok(document(A::document(&loaded), loaded.version))
}

/// An `?as_of=` instant: RFC 3339 with a four-digit year (Postgres could not compare the
/// others); anything else is the client's error.
pub fn parse_as_of(as_of: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(as_of)
        .ok()
        .map(|at| at.with_timezone(&Utc))
        .filter(|at| (1..=9999).contains(&chrono::Datelike::year(at)))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("as_of must be an RFC 3339 timestamp, not {as_of}"))
        })
}

/// The endpoints purchase and sales orders share, generated for one kind of order: list,
/// show (`?as_of`), history, raw events, header and line edits, cancel, payments and notes.
/// Each module adds its own lifecycle actions beside them.
macro_rules! shared_order_endpoints {
    (
        collection: $collection:literal,
        tag: $tag:literal,
        order_type: $order_type:literal,
        party: $party:literal,
        resource: $resource:ident,
        aggregate: $aggregate:ty,
        command: $command:ident,
        header_patch: $header_patch:ty,
        header_patch_body: $header_patch_body:ty,
        line_patch: $line_patch:ty,
        line_patch_body: $line_patch_body:ty,
        line_request: $line_request:ty,
    ) => {
        /// Lists orders with filters (`status`, `payment_status`, the party's id,
        /// `order_date_from`, `order_date_to`, `q`: order-number prefix), `sort`, `limit`,
        /// `cursor`; CSV with `Accept: text/csv` or `?format=csv`.
        #[utoipa::path(get, path = concat!("/api/v1/", $collection), tag = $tag,
            params(("status" = Option<String>, Query), ("payment_status" = Option<String>, Query), ($party = Option<Uuid>, Query),
                   ("order_date_from" = Option<String>, Query), ("order_date_to" = Option<String>, Query), ("q" = Option<String>, Query, description = "order-number prefix"),
                   ("sort" = Option<String>, Query, description = "field or -field: order_date, order_number, created_at, updated_at, total, status"),
                   ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("min_position" = Option<i64>, Query), ("format" = Option<String>, Query, description = "json or csv")),
            responses((status = 200, description = "`{items, next_cursor}` or CSV")), security(("bearer" = [])))]
        pub async fn list(
            State(state): State<AppState>,
            user: TenantUser,
            headers: axum::http::HeaderMap,
            ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>,
        ) -> Result<Response, ApiError> {
            super::queries::list(&state, &user, oms_projections::queries::Resource::$resource, &headers, params).await
        }

        /// The order from the read model (`?min_position=` waits for it), or as it was at
        /// `?as_of=`, rebuilt from its events.
        #[utoipa::path(get, path = concat!("/api/v1/", $collection, "/{id}"), tag = $tag,
            params(("id" = Uuid, Path), ("as_of" = Option<String>, Query, description = "RFC 3339 instant (auditor, admin)"), ("min_position" = Option<i64>, Query)),
            responses((status = 200, description = "the order document"), (status = 404, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn show(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>,
        ) -> Result<Response, ApiError> {
            orders::show::<$aggregate>(&state, &user, id, &params, oms_projections::queries::Resource::$resource).await
        }

        /// The order's history: one entry per event, oldest first, with actor, summary and
        /// changes.
        #[utoipa::path(get, path = concat!("/api/v1/", $collection, "/{id}/history"), tag = $tag,
            params(("id" = Uuid, Path), ("min_position" = Option<i64>, Query)),
            responses((status = 200, description = "`{items: [{position, sequence, event_type, actor, occurred_at, summary, changes}]}`"), (status = 404, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn history(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>,
        ) -> Result<Response, ApiError> {
            super::queries::history(&state, &user, $order_type, id, &params).await
        }

        /// The order's raw events with metadata and hash (auditor, admin).
        #[utoipa::path(get, path = concat!("/api/v1/", $collection, "/{id}/events"), tag = $tag,
            params(("id" = Uuid, Path)),
            responses((status = 200, description = "`{items: [event]}`"), (status = 403, body = super::error::Problem), (status = 404, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn events(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
        ) -> Result<Response, ApiError> {
            super::queries::events(&state, &user, $order_type, id).await
        }

        /// Changes header fields (draft only); `null` clears an optional one.
        #[utoipa::path(patch, path = concat!("/api/v1/", $collection, "/{id}"), tag = $tag,
            request_body = $header_patch_body,
            params(("id" = Uuid, Path)),
            responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem), (status = 412, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn change_header(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<$header_patch>,
        ) -> Result<Response, ApiError> {
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Operate, id, Outcome::Changed, |_| {
                $command::ChangeHeader(body.value.clone())
            })
            .await
        }

        /// Adds a line (draft only).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/lines"), tag = $tag, request_body = $line_request,
            params(("id" = Uuid, Path)), responses((status = 201, description = "the order document")), security(("bearer" = [])))]
        pub async fn add_line(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<$line_request>,
        ) -> Result<Response, ApiError> {
            let line = new_line(body.value.clone());
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Operate, id, Outcome::Added, |_| {
                $command::AddLine(line.clone())
            })
            .await
        }

        /// Changes a line (draft only).
        #[utoipa::path(patch, path = concat!("/api/v1/", $collection, "/{id}/lines/{line_id}"), tag = $tag,
            request_body = $line_patch_body,
            params(("id" = Uuid, Path), ("line_id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
        pub async fn change_line(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath((id, line_id)): ApiPath<(Uuid, Uuid)>,
            headers: CommandHeaders,
            body: JsonBody<$line_patch>,
        ) -> Result<Response, ApiError> {
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Operate, id, Outcome::Changed, |_| {
                $command::ChangeLine { line_id, patch: body.value.clone() }
            })
            .await
        }

        /// Removes a line (draft only).
        #[utoipa::path(delete, path = concat!("/api/v1/", $collection, "/{id}/lines/{line_id}"), tag = $tag,
            params(("id" = Uuid, Path), ("line_id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
        pub async fn remove_line(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath((id, line_id)): ApiPath<(Uuid, Uuid)>,
            headers: CommandHeaders,
        ) -> Result<Response, ApiError> {
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, b""), Permission::Operate, id, Outcome::Changed, |_| {
                $command::RemoveLine { line_id }
            })
            .await
        }

        /// Cancels the order, with a reason (not once anything was received or shipped).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/cancel"), tag = $tag, request_body = ReasonRequest,
            params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
        pub async fn cancel(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<ReasonRequest>,
        ) -> Result<Response, ApiError> {
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Manage, id, Outcome::Changed, |_| {
                $command::Cancel { reason: body.value.reason.clone() }
            })
            .await
        }

        /// Records a payment (> 0, not above what is outstanding, not dated in the future).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/payments"), tag = $tag, request_body = PaymentRequest,
            params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 422, body = super::error::Problem)), security(("bearer" = [])))]
        pub async fn record_payment(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<PaymentRequest>,
        ) -> Result<Response, ApiError> {
            let payment_id = Uuid::now_v7();
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Manage, id, Outcome::Changed, |_| {
                $command::RecordPayment(oms_domain::order::NewPayment {
                    payment_id,
                    amount: body.value.amount,
                    paid_on: body.value.paid_on,
                    method: body.value.method,
                    reference: body.value.reference.clone(),
                })
            })
            .await
        }

        /// Rejects an open claim, with a reason (manager).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/claims/{claim_id}/reject"), tag = $tag, request_body = ReasonRequest,
            params(("id" = Uuid, Path), ("claim_id" = Uuid, Path)),
            responses((status = 200, description = "the order document"), (status = 404, body = super::error::Problem), (status = 409, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn reject_claim(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath((id, claim_id)): ApiPath<(Uuid, Uuid)>,
            headers: CommandHeaders,
            body: JsonBody<ReasonRequest>,
        ) -> Result<Response, ApiError> {
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Manage, id, Outcome::Changed, |_| {
                $command::RejectClaim { claim_id, reason: body.value.reason.clone() }
            })
            .await
        }

        /// Records a refund: money returned while more was paid than is owed (> 0, not above
        /// −outstanding, not dated in the future).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/refunds"), tag = $tag, request_body = RefundRequest,
            params(("id" = Uuid, Path)),
            responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn record_refund(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<RefundRequest>,
        ) -> Result<Response, ApiError> {
            let refund_id = Uuid::now_v7();
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Manage, id, Outcome::Changed, |_| {
                $command::RecordRefund(oms_domain::order::NewRefund {
                    refund_id,
                    amount: body.value.amount,
                    refunded_on: body.value.refunded_on,
                    method: body.value.method,
                    reference: body.value.reference.clone(),
                })
            })
            .await
        }

        /// Adds a note (any state).
        #[utoipa::path(post, path = concat!("/api/v1/", $collection, "/{id}/notes"), tag = $tag, request_body = NoteRequest,
            params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
        pub async fn add_note(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<NoteRequest>,
        ) -> Result<Response, ApiError> {
            let note_id = Uuid::now_v7();
            orders::act::<$aggregate>(&state, Caller::new(&user, &headers, &body.raw), Permission::Operate, id, Outcome::Changed, |_| {
                $command::AddNote { note_id, text: body.value.text.clone() }
            })
            .await
        }
    };
}
pub(crate) use shared_order_endpoints;
