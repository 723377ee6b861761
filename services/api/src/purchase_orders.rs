//! Purchase orders: create, header and line edits, the lifecycle actions, receipts, payments,
//! notes, and `GET …/{id}` (optionally `?as_of=`) rebuilt from the events.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use oms_domain::order::ClaimReason;
use oms_domain::purchase_order::NewLot;
use oms_domain::purchase_order::{
    LinePatch, NewLine, NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand, PurchaseOrderHeader,
    PurchaseOrderHeaderPatch, ReceiptLineInput,
};
use oms_domain::values::{
    Currency, Logistics, LongText, LotNumber, OrderNumber, PaymentTerms, Quantity, ShortText,
    UnitPrice, Weight, WeightUnit,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, CommandHeaders, JsonBody, TenantUser};
use super::orders::{
    self, AcceptClaimRequest, Caller, ClaimLineRequest, EmptyRequest, NoteRequest, Outcome,
    PaymentRequest, ReasonRequest, RefundRequest,
};
use super::AppState;
use crate::auth::Permission;
use oms_domain::NumberSeries;
use oms_store::Loaded;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const COLLECTION: &str = "purchase-orders";

/// Purchase-order routes.
pub fn router() -> OpenApiRouter<AppState> {
    // Each route is registered from its handler's `#[utoipa::path]`: the router and the
    // OpenAPI document cannot disagree.
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change_header))
        .routes(routes!(history))
        .routes(routes!(events))
        .routes(routes!(add_line))
        .routes(routes!(change_line, remove_line))
        .routes(routes!(submit))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(cancel))
        .routes(routes!(close))
        .routes(routes!(record_receipt))
        .routes(routes!(record_payment))
        .routes(routes!(add_note))
        .routes(routes!(raise_claim))
        .routes(routes!(accept_claim))
        .routes(routes!(reject_claim))
        .routes(routes!(record_refund))
}

/// The body of `POST /purchase-orders`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePurchaseOrder {
    /// The supplier (must exist in your tenant and be active).
    pub supplier_id: Uuid,
    /// The order date.
    pub order_date: NaiveDate,
    /// Given, or assigned `PO-000001`, `PO-000002`, …
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_number)]
    pub order_number: Option<OrderNumber>,
    /// ISO 4217, default USD.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_currency)]
    pub currency: Option<Currency>,
    /// LB (default) or KG.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_weight_unit)]
    pub weight_unit: Option<WeightUnit>,
    /// supplier_delivery (default), customer_pickup, we_pickup.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_logistics)]
    pub logistics: Option<Logistics>,
    /// The packing plant.
    #[serde(default)]
    pub plant_id: Option<Uuid>,
    /// The carrier.
    #[serde(default)]
    pub carrier_id: Option<Uuid>,
    /// Pickup date.
    #[serde(default)]
    pub pickup_date: Option<NaiveDate>,
    /// Delivery date (not before the order date).
    #[serde(default)]
    pub delivery_date: Option<NaiveDate>,
    /// wire, ach, check, credit_card.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_payment_terms)]
    pub payment_terms: Option<PaymentTerms>,
    /// The supplier's confirmation number.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub supplier_confirmation_number: Option<ShortText>,
    /// The carrier's release number.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub carrier_release_number: Option<ShortText>,
    /// Free text.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub notes: Option<LongText>,
    /// Lines.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub lines: Vec<PurchaseLineRequest>,
}

/// The body of `POST …/receipts`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRequest {
    /// When the load arrived.
    pub received_on: NaiveDate,
    /// True when receiving is finished (→ received).
    pub complete: bool,
    /// Actual (catch) weights per line.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ReceiptLineRequest>,
}

/// What arrived of one order line: its actual weight and, for traceability, the lots it came
/// in.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptLineRequest {
    /// The order line.
    pub line_id: Uuid,
    /// The actual (catch) weight.
    #[schema(schema_with = crate::schemas::with::weight)]
    pub weight: Weight,
    /// Cases or pieces.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_quantity)]
    pub quantity: Option<Quantity>,
    /// The lots the weight arrived in, their weights summing to `weight`. Each gets a
    /// `lot_id` (shown on the order's line) by which shipments and recalls name it.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub lots: Vec<ReceivedLotRequest>,
}

/// A lot arriving on a receipt line.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivedLotRequest {
    /// The supplier's lot number; unique per supplier in the tenant.
    #[schema(schema_with = crate::schemas::with::lot_number)]
    pub lot_number: LotNumber,
    /// How much of the line's weight is of this lot.
    #[schema(schema_with = crate::schemas::with::weight)]
    pub weight: Weight,
    /// When the lot was packed; not after it was received.
    #[serde(default)]
    pub production_date: Option<NaiveDate>,
    /// The establishment number of the plant that produced it (such as `EST. 245C`).
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub establishment_number: Option<ShortText>,
}

/// A new purchase-order line (`POST …/lines`, or `lines` of a create). It has no
/// `source_purchase_order_id`: sending one is refused (422) like any unknown field.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseLineRequest {
    /// The product.
    pub product_id: Uuid,
    /// Ordered weight in the order's weight unit (decimal string or number, > 0).
    #[schema(schema_with = crate::schemas::with::weight)]
    pub weight: Weight,
    /// Price per weight unit, up to 4 decimals.
    #[schema(schema_with = crate::schemas::with::unit_price)]
    pub price_per_unit: UnitPrice,
    /// Cases or pieces.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_quantity)]
    pub quantity: Option<Quantity>,
    /// Free text.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub description: Option<LongText>,
}

impl orders::OrderDocument for PurchaseOrder {
    /// The order document (what every response about the order carries).
    fn document(loaded: &Loaded<Self>) -> Value {
        oms_projections::documents::purchase_order(&loaded.aggregate, &loaded.stamp())
    }
}

fn new_line(line: PurchaseLineRequest) -> NewLine {
    NewLine {
        line_id: Uuid::now_v7(),
        product_id: line.product_id,
        weight: line.weight,
        price_per_unit: line.price_per_unit,
        quantity: line.quantity,
        description: line.description,
    }
}

/// Creates a draft purchase order.
#[utoipa::path(post, path = "/api/v1/purchase-orders", tag = "purchase orders", request_body = CreatePurchaseOrder,
    responses((status = 201, description = "the order document"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    user: TenantUser,
    headers: CommandHeaders,
    body: JsonBody<CreatePurchaseOrder>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let lines = request
        .lines
        .iter()
        .cloned()
        .map(new_line)
        .collect::<Vec<_>>();
    let header = PurchaseOrderHeader {
        supplier_id: request.supplier_id,
        order_date: request.order_date,
        currency: request.currency.clone().unwrap_or_default(),
        weight_unit: request.weight_unit.unwrap_or_default(),
        logistics: request.logistics.unwrap_or_default(),
        plant_id: request.plant_id,
        carrier_id: request.carrier_id,
        pickup_date: request.pickup_date,
        delivery_date: request.delivery_date,
        payment_terms: request.payment_terms,
        supplier_confirmation_number: request.supplier_confirmation_number.clone(),
        carrier_release_number: request.carrier_release_number.clone(),
        notes: request.notes.clone(),
    };
    let given = request.order_number.clone();
    let number = given.is_none().then_some(NumberSeries::PURCHASE_ORDER);
    orders::run::<PurchaseOrder, _>(
        &state,
        orders::OrderCommand {
            caller: Caller::new(&user, &headers, &body.raw),
            permission: Permission::Operate,
            id: Uuid::now_v7(),
            number,
            outcome: Outcome::Created {
                collection: COLLECTION,
            },
            make: |assigned: Option<String>| {
                let order_number = given.clone().unwrap_or_else(|| {
                    OrderNumber::parse(assigned.as_deref().unwrap_or_default())
                        .expect("assigned numbers are valid order numbers")
                });
                PurchaseOrderCommand::Create(NewPurchaseOrder {
                    order_number,
                    header: header.clone(),
                    lines: lines.clone(),
                })
            },
        },
    )
    .await
}

macro_rules! simple_action {
    ($(#[$doc:meta])* $name:ident, $path:literal, $permission:expr, $command:expr) => {
        $(#[$doc])*
        #[utoipa::path(post, path = $path, tag = "purchase orders", request_body(content = Option<EmptyRequest>, description = "nothing: an empty body or `{}`"), params(("id" = Uuid, Path)),
            responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
        pub async fn $name(
            State(state): State<AppState>,
            user: TenantUser,
            ApiPath(id): ApiPath<Uuid>,
            headers: CommandHeaders,
            body: JsonBody<EmptyRequest>,
        ) -> Result<Response, ApiError> {
            orders::act::<PurchaseOrder>(&state, Caller::new(&user, &headers, &body.raw), $permission, id, Outcome::Changed, |_| $command).await
        }
    };
}

simple_action!(
    /// draft → submitted (needs a line).
    submit, "/api/v1/purchase-orders/{id}/submit", Permission::Operate, PurchaseOrderCommand::Submit);
simple_action!(
    /// submitted → approved.
    approve, "/api/v1/purchase-orders/{id}/approve", Permission::Manage, PurchaseOrderCommand::Approve);
simple_action!(
    /// received → closed (needs nothing outstanding).
    close, "/api/v1/purchase-orders/{id}/close", Permission::Manage, PurchaseOrderCommand::Close);

/// submitted → draft, with a reason.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/reject", tag = "purchase orders", request_body = ReasonRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn reject(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<ReasonRequest>,
) -> Result<Response, ApiError> {
    orders::act::<PurchaseOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Manage,
        id,
        Outcome::Changed,
        |_| PurchaseOrderCommand::Reject {
            reason: body.value.reason.clone(),
        },
    )
    .await
}

/// Records a receipt: actual (catch) weights per line.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/receipts", tag = "purchase orders", request_body = ReceiptRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn record_receipt(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<ReceiptRequest>,
) -> Result<Response, ApiError> {
    let receipt_id = Uuid::now_v7();
    // Lot ids are chosen once per request, so a retry after a conflict names the same lots.
    let lot_ids: Vec<Vec<Uuid>> = body
        .value
        .lines
        .iter()
        .map(|line| line.lots.iter().map(|_| Uuid::now_v7()).collect())
        .collect();
    orders::act::<PurchaseOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Changed,
        |_| PurchaseOrderCommand::RecordReceipt {
            receipt_id,
            received_on: body.value.received_on,
            complete: body.value.complete,
            lines: body
                .value
                .lines
                .iter()
                .zip(&lot_ids)
                .map(|(line, ids)| ReceiptLineInput {
                    line_id: line.line_id,
                    weight: line.weight,
                    quantity: line.quantity,
                    lots: line
                        .lots
                        .iter()
                        .zip(ids)
                        .map(|(lot, &lot_id)| NewLot {
                            lot_id,
                            lot_number: lot.lot_number.clone(),
                            weight: lot.weight,
                            production_date: lot.production_date,
                            establishment_number: lot.establishment_number.clone(),
                        })
                        .collect(),
                })
                .collect(),
        },
    )
    .await
}

/// The body of `POST …/claims` on a purchase order: a claim against the supplier.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseClaimRequest {
    /// short_weight, quality, temperature, damage, pricing, other.
    #[schema(schema_with = crate::schemas::with::claim_reason)]
    pub reason: ClaimReason,
    /// What is claimed, per received line (each line once).
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ClaimLineRequest>,
    /// Free notes.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub notes: Option<LongText>,
    /// The customer's claim (on a sales order sourced from this one) that this passes on to
    /// the supplier (back-to-back).
    #[serde(default)]
    pub source_sales_claim_id: Option<Uuid>,
}

/// Raises a claim against the supplier (once anything is received); the service gives it
/// its `claim_id`.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/claims", tag = "purchase orders", request_body = PurchaseClaimRequest,
    params(("id" = Uuid, Path)),
    responses((status = 201, description = "the order document, listing the claim"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn raise_claim(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<PurchaseClaimRequest>,
) -> Result<Response, ApiError> {
    let request = &body.value;
    let claim = orders::new_claim(request.reason, &request.lines, request.notes.clone());
    orders::act::<PurchaseOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Added,
        |_| PurchaseOrderCommand::RaiseClaim {
            order_id: id,
            claim: claim.clone(),
            source_sales_claim_id: request.source_sales_claim_id,
        },
    )
    .await
}

/// Accepts an open claim (manager): the supplier credits `accepted_amount` (default: the
/// claimed amount), under its own credit memo number if it sent one.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/claims/{claim_id}/accept", tag = "purchase orders", request_body = AcceptClaimRequest,
    params(("id" = Uuid, Path), ("claim_id" = Uuid, Path)),
    responses((status = 200, description = "the order document"), (status = 404, body = super::error::Problem), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn accept_claim(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath((id, claim_id)): ApiPath<(Uuid, Uuid)>,
    headers: CommandHeaders,
    body: JsonBody<AcceptClaimRequest>,
) -> Result<Response, ApiError> {
    orders::act::<PurchaseOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Manage,
        id,
        Outcome::Changed,
        |_| PurchaseOrderCommand::AcceptClaim {
            claim_id,
            accepted_amount: body.value.accepted_amount,
            credit_note_number: body.value.credit_note_number.clone(),
        },
    )
    .await
}

super::orders::shared_order_endpoints! {
    collection: "purchase-orders",
    tag: "purchase orders",
    order_type: "purchase_order",
    party: "supplier_id",
    resource: PurchaseOrders,
    aggregate: PurchaseOrder,
    command: PurchaseOrderCommand,
    header_patch: PurchaseOrderHeaderPatch,
    header_patch_body: crate::schemas::PurchaseOrderHeaderPatchBody,
    line_patch: LinePatch,
    line_patch_body: crate::schemas::PurchaseLinePatchBody,
    line_request: PurchaseLineRequest,
}
