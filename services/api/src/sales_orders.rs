//! Sales orders: create, header and line edits, confirm, ship, deliver, invoice, payments,
//! notes, close, cancel, and `GET …/{id}` (optionally `?as_of=`) rebuilt from the events.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use oms_domain::order::ClaimReason;
use oms_domain::sales_order::{
    LinePatch, NewLine, NewSalesOrder, SalesOrder, SalesOrderCommand, SalesOrderHeader,
    SalesOrderHeaderPatch, ShipLineInput, ShipLotInput,
};
use oms_domain::values::{
    CreditNoteNumber, Currency, InvoiceNumber, LongText, OrderNumber, Quantity, ShortText,
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

const COLLECTION: &str = "sales-orders";

/// Sales-order routes.
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
        .routes(routes!(confirm))
        .routes(routes!(ship))
        .routes(routes!(deliver))
        .routes(routes!(invoice))
        .routes(routes!(cancel))
        .routes(routes!(close))
        .routes(routes!(record_payment))
        .routes(routes!(add_note))
        .routes(routes!(raise_claim))
        .routes(routes!(accept_claim))
        .routes(routes!(reject_claim))
        .routes(routes!(record_refund))
}

/// The body of `POST /sales-orders`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSalesOrder {
    /// The customer (must exist in your tenant and be active).
    pub customer_id: Uuid,
    /// The order date.
    pub order_date: NaiveDate,
    /// Given, or assigned `SO-000001`, …
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
    /// The customer's own PO number.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub customer_po_number: Option<ShortText>,
    /// The plant it ships from.
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
    /// Free text.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub notes: Option<LongText>,
    /// Lines; each may name its source purchase order.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub lines: Vec<SalesLineRequest>,
}

/// The body of `POST …/ship`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipRequest {
    /// When it left.
    pub shipped_on: NaiveDate,
    /// Who carries it.
    #[serde(default)]
    pub carrier_id: Option<Uuid>,
    /// The carrier's release number.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_short_text)]
    pub carrier_release_number: Option<ShortText>,
    /// Shipped (catch) weights per line.
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ShipLineRequest>,
}

/// What left of one order line: its actual weight and, for traceability, the received lots
/// it was taken from.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipLineRequest {
    /// The order line.
    pub line_id: Uuid,
    /// The actual (catch) weight.
    #[schema(schema_with = crate::schemas::with::weight)]
    pub weight: Weight,
    /// Cases or pieces.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_quantity)]
    pub quantity: Option<Quantity>,
    /// The lots shipped, their weights summing to `weight`; a lot never ships more than is
    /// left of it (409 when another shipment took it first).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub lots: Vec<ShipLotRequest>,
}

/// A received lot shipped on a line.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipLotRequest {
    /// The lot, by the id its receipt gave it.
    pub lot_id: Uuid,
    /// How much of the line's weight is of this lot.
    #[schema(schema_with = crate::schemas::with::weight)]
    pub weight: Weight,
}

/// The body of `POST …/deliver`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverRequest {
    /// When it arrived.
    pub delivered_on: NaiveDate,
}

/// The body of `POST …/invoice`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRequest {
    /// The invoice's date.
    pub invoice_date: NaiveDate,
    /// When payment is due (not before the invoice date).
    pub due_date: NaiveDate,
    /// Given, or assigned `INV-000001`, …
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_number)]
    pub invoice_number: Option<InvoiceNumber>,
}

/// A new sales-order line (`POST …/lines`, or `lines` of a create).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesLineRequest {
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
    /// The purchase order that supplies this line.
    #[serde(default)]
    pub source_purchase_order_id: Option<Uuid>,
}

impl orders::OrderDocument for SalesOrder {
    /// The order document (what every response about the order carries).
    fn document(loaded: &Loaded<Self>) -> Value {
        oms_projections::documents::sales_order(&loaded.aggregate, &loaded.stamp())
    }
}

fn new_line(line: SalesLineRequest) -> NewLine {
    NewLine {
        line_id: Uuid::now_v7(),
        product_id: line.product_id,
        weight: line.weight,
        price_per_unit: line.price_per_unit,
        quantity: line.quantity,
        description: line.description,
        source_purchase_order_id: line.source_purchase_order_id,
    }
}

/// Creates a draft sales order.
#[utoipa::path(post, path = "/api/v1/sales-orders", tag = "sales orders", request_body = CreateSalesOrder,
    responses((status = 201, description = "the order document"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    user: TenantUser,
    headers: CommandHeaders,
    body: JsonBody<CreateSalesOrder>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let lines = request
        .lines
        .iter()
        .cloned()
        .map(new_line)
        .collect::<Vec<_>>();
    let header = SalesOrderHeader {
        customer_id: request.customer_id,
        order_date: request.order_date,
        currency: request.currency.clone().unwrap_or_default(),
        weight_unit: request.weight_unit.unwrap_or_default(),
        customer_po_number: request.customer_po_number.clone(),
        plant_id: request.plant_id,
        carrier_id: request.carrier_id,
        pickup_date: request.pickup_date,
        delivery_date: request.delivery_date,
        notes: request.notes.clone(),
    };
    let given = request.order_number.clone();
    let number = given.is_none().then_some(NumberSeries::SALES_ORDER);
    orders::run::<SalesOrder, _>(
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
                SalesOrderCommand::Create(NewSalesOrder {
                    order_number,
                    header: header.clone(),
                    lines: lines.clone(),
                })
            },
        },
    )
    .await
}

/// draft → confirmed (needs a line).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/confirm", tag = "sales orders", request_body(content = Option<EmptyRequest>, description = "nothing: an empty body or `{}`"),
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    orders::act::<SalesOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Changed,
        |_| SalesOrderCommand::Confirm,
    )
    .await
}

/// invoiced → closed (needs nothing outstanding).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/close", tag = "sales orders", request_body(content = Option<EmptyRequest>, description = "nothing: an empty body or `{}`"),
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    orders::act::<SalesOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Manage,
        id,
        Outcome::Changed,
        |_| SalesOrderCommand::Close,
    )
    .await
}

/// confirmed → shipped, with shipped (catch) weights.
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/ship", tag = "sales orders", request_body = ShipRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn ship(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<ShipRequest>,
) -> Result<Response, ApiError> {
    orders::act::<SalesOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Changed,
        |_| SalesOrderCommand::Ship {
            shipped_on: body.value.shipped_on,
            carrier_id: body.value.carrier_id,
            carrier_release_number: body.value.carrier_release_number.clone(),
            lines: body
                .value
                .lines
                .iter()
                .map(|line| ShipLineInput {
                    line_id: line.line_id,
                    weight: line.weight,
                    quantity: line.quantity,
                    lots: line
                        .lots
                        .iter()
                        .map(|lot| ShipLotInput {
                            lot_id: lot.lot_id,
                            weight: lot.weight,
                        })
                        .collect(),
                })
                .collect(),
        },
    )
    .await
}

/// shipped → delivered.
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/deliver", tag = "sales orders", request_body = DeliverRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn deliver(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<DeliverRequest>,
) -> Result<Response, ApiError> {
    orders::act::<SalesOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Changed,
        |_| SalesOrderCommand::Deliver {
            delivered_on: body.value.delivered_on,
        },
    )
    .await
}

/// delivered → invoiced: assigns the invoice number (`INV-000001`, … unless given).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/invoice", tag = "sales orders", request_body = InvoiceRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn invoice(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<InvoiceRequest>,
) -> Result<Response, ApiError> {
    let given = body.value.invoice_number.clone();
    let number = given.is_none().then_some(NumberSeries::INVOICE);
    orders::run::<SalesOrder, _>(
        &state,
        orders::OrderCommand {
            caller: Caller::new(&user, &headers, &body.raw),
            permission: Permission::Manage,
            id,
            number,
            outcome: Outcome::Changed,
            make: |assigned: Option<String>| SalesOrderCommand::Invoice {
                invoice_number: given.clone().unwrap_or_else(|| {
                    InvoiceNumber::parse(assigned.as_deref().unwrap_or_default())
                        .expect("assigned numbers are valid invoice numbers")
                }),
                invoice_date: body.value.invoice_date,
                due_date: body.value.due_date,
            },
        },
    )
    .await
}

/// The body of `POST …/claims` on a sales order: the customer's claim against us.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesClaimRequest {
    /// short_weight, quality, temperature, damage, pricing, other.
    #[schema(schema_with = crate::schemas::with::claim_reason)]
    pub reason: ClaimReason,
    /// What is claimed, per shipped line (each line once).
    #[schema(min_items = 1, max_items = 500)]
    pub lines: Vec<ClaimLineRequest>,
    /// Free notes.
    #[serde(default)]
    #[schema(schema_with = crate::schemas::with::opt_long_text)]
    pub notes: Option<LongText>,
}

/// Raises the customer's claim (once delivered or invoiced); the service gives it its
/// `claim_id`.
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/claims", tag = "sales orders", request_body = SalesClaimRequest,
    params(("id" = Uuid, Path)),
    responses((status = 201, description = "the order document, listing the claim"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn raise_claim(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<SalesClaimRequest>,
) -> Result<Response, ApiError> {
    let request = &body.value;
    let claim = orders::new_claim(request.reason, &request.lines, request.notes.clone());
    orders::act::<SalesOrder>(
        &state,
        Caller::new(&user, &headers, &body.raw),
        Permission::Operate,
        id,
        Outcome::Added,
        |_| SalesOrderCommand::RaiseClaim(claim.clone()),
    )
    .await
}

/// Accepts an open claim (manager): the customer is credited `accepted_amount` (default:
/// the claimed amount) under a credit note (`CN-000001`, … unless a number is given).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/claims/{claim_id}/accept", tag = "sales orders", request_body = AcceptClaimRequest,
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
    let given = body.value.credit_note_number.clone();
    let number = given.is_none().then_some(NumberSeries::CREDIT_NOTE);
    orders::run::<SalesOrder, _>(
        &state,
        orders::OrderCommand {
            caller: Caller::new(&user, &headers, &body.raw),
            permission: Permission::Manage,
            id,
            number,
            outcome: Outcome::Changed,
            make: |assigned: Option<String>| SalesOrderCommand::AcceptClaim {
                claim_id,
                accepted_amount: body.value.accepted_amount,
                credit_note_number: given.clone().unwrap_or_else(|| {
                    CreditNoteNumber::parse(assigned.as_deref().unwrap_or_default())
                        .expect("assigned numbers are valid credit note numbers")
                }),
            },
        },
    )
    .await
}

super::orders::shared_order_endpoints! {
    collection: "sales-orders",
    tag: "sales orders",
    order_type: "sales_order",
    party: "customer_id",
    resource: SalesOrders,
    aggregate: SalesOrder,
    command: SalesOrderCommand,
    header_patch: SalesOrderHeaderPatch,
    header_patch_body: crate::schemas::SalesOrderHeaderPatchBody,
    line_patch: LinePatch,
    line_patch_body: crate::schemas::SalesLinePatchBody,
    line_request: SalesLineRequest,
}
