//! Sales orders: create, header and line edits, confirm, ship, deliver, invoice, payments,
//! notes, close, cancel, and `GET …/{id}` (optionally `?as_of=`) rebuilt from the events.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use chrono::NaiveDate;
use oms_domain::order::NewPayment;
use oms_domain::sales_order::{
    LinePatch, NewLine, NewSalesOrder, SalesOrder, SalesOrderCommand, SalesOrderHeader,
    SalesOrderHeaderPatch, ShipLineInput,
};
use oms_domain::values::{Currency, InvoiceNumber, LongText, OrderNumber, ShortText, WeightUnit};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, CommandHeaders, JsonBody, TenantUser};
use super::orders::{
    self, EmptyRequest, LineRequest, NoteRequest, Outcome, PaymentRequest, ReasonRequest,
    WeighedLineRequest,
};
use super::AppState;
use crate::auth::Permission;
use crate::commands::{Loaded, NumberSeries};

const COLLECTION: &str = "sales-orders";

/// Sales-order routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sales-orders", get(list).post(create))
        .route("/sales-orders/{id}", get(show).patch(change_header))
        .route("/sales-orders/{id}/history", get(history))
        .route("/sales-orders/{id}/events", get(events))
        .route("/sales-orders/{id}/lines", post(add_line))
        .route(
            "/sales-orders/{id}/lines/{line_id}",
            patch(change_line).delete(remove_line),
        )
        .route("/sales-orders/{id}/confirm", post(confirm))
        .route("/sales-orders/{id}/ship", post(ship))
        .route("/sales-orders/{id}/deliver", post(deliver))
        .route("/sales-orders/{id}/invoice", post(invoice))
        .route("/sales-orders/{id}/cancel", post(cancel))
        .route("/sales-orders/{id}/close", post(close))
        .route("/sales-orders/{id}/payments", post(record_payment))
        .route("/sales-orders/{id}/notes", post(add_note))
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
    #[schema(value_type = Option<String>)]
    pub order_number: Option<OrderNumber>,
    /// ISO 4217, default USD.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "USD")]
    pub currency: Option<Currency>,
    /// LB (default) or KG.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "LB")]
    pub weight_unit: Option<WeightUnit>,
    /// The customer's own PO number.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
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
    #[schema(value_type = Option<String>)]
    pub notes: Option<LongText>,
    /// Lines; each may name its source purchase order.
    #[serde(default)]
    pub lines: Vec<LineRequest>,
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
    #[schema(value_type = Option<String>)]
    pub carrier_release_number: Option<ShortText>,
    /// Shipped (catch) weights per line.
    pub lines: Vec<WeighedLineRequest>,
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
    #[schema(value_type = Option<String>)]
    pub invoice_number: Option<InvoiceNumber>,
}

/// The order document (what every response about the order carries).
pub fn view(loaded: &Loaded<SalesOrder>) -> Value {
    oms_projections::documents::sales_order(&loaded.aggregate, &loaded.stamp())
}

fn new_line(line: LineRequest) -> NewLine {
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

#[allow(clippy::too_many_arguments)]
async fn act(
    state: &AppState,
    user: &TenantUser,
    headers: &CommandHeaders,
    raw: &[u8],
    permission: Permission,
    id: Uuid,
    number: Option<NumberSeries>,
    outcome: Outcome,
    make: impl Fn(Option<String>) -> SalesOrderCommand,
) -> Result<Response, ApiError> {
    orders::run::<SalesOrder, _>(
        state, user, headers, raw, permission, id, number, outcome, view, make,
    )
    .await
}

/// Creates a draft sales order.
#[utoipa::path(post, path = "/api/v1/sales-orders", tag = "sales orders", request_body = CreateSalesOrder,
    responses((status = 201, description = "the order document"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    params(("Idempotency-Key" = Option<String>, Header)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    user: TenantUser,
    headers: CommandHeaders,
    body: JsonBody<CreateSalesOrder>,
) -> Result<Response, ApiError> {
    let request = body.value;
    let lines: Vec<NewLine> = request.lines.iter().cloned().map(new_line).collect();
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
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        Uuid::now_v7(),
        number,
        Outcome::Created {
            collection: COLLECTION,
        },
        |assigned| {
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
    )
    .await
}

/// Lists orders: filters `status`, `payment_status`, `customer_id`, `order_date_from`,
/// `order_date_to`, `q` (order-number prefix); `sort`, `limit`, `cursor`; CSV with
/// `Accept: text/csv` or `?format=csv`.
#[utoipa::path(get, path = "/api/v1/sales-orders", tag = "sales orders",
    params(("status" = Option<String>, Query), ("payment_status" = Option<String>, Query), ("customer_id" = Option<Uuid>, Query),
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
    super::queries::list(
        &state,
        &user,
        oms_projections::queries::Resource::SalesOrders,
        &headers,
        params,
    )
    .await
}

/// The order from the read model (`?min_position=` waits for it), or as it was at `?as_of=`,
/// rebuilt from its events.
#[utoipa::path(get, path = "/api/v1/sales-orders/{id}", tag = "sales orders",
    params(("id" = Uuid, Path), ("as_of" = Option<String>, Query, description = "RFC 3339 instant"), ("min_position" = Option<i64>, Query)),
    responses((status = 200, description = "the order document"), (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    orders::show::<SalesOrder>(
        &state,
        &user,
        id,
        &params,
        oms_projections::queries::Resource::SalesOrders,
        view,
    )
    .await
}

/// The order's history: one entry per event, oldest first, with actor, summary and changes.
#[utoipa::path(get, path = "/api/v1/sales-orders/{id}/history", tag = "sales orders",
    params(("id" = Uuid, Path), ("min_position" = Option<i64>, Query)),
    responses((status = 200, description = "`{items: [{position, sequence, event_type, actor, occurred_at, summary, changes}]}`"), (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    super::queries::history(&state, &user, "sales_order", id, &params).await
}

/// The order's raw events with metadata and hash (auditor, admin).
#[utoipa::path(get, path = "/api/v1/sales-orders/{id}/events", tag = "sales orders",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "`{items: [event]}`"), (status = 403, body = super::error::Problem), (status = 404, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    super::queries::events(&state, &user, "sales_order", id).await
}

/// Changes header fields (draft only).
#[utoipa::path(patch, path = "/api/v1/sales-orders/{id}", tag = "sales orders",
    request_body(content = Object, description = "any header field of the create body; null clears an optional one"),
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem), (status = 412, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn change_header(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<SalesOrderHeaderPatch>,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::ChangeHeader(body.value.clone()),
    )
    .await
}

/// Adds a line (draft only).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/lines", tag = "sales orders", request_body = LineRequest,
    params(("id" = Uuid, Path)), responses((status = 201, description = "the order document")), security(("bearer" = [])))]
pub async fn add_line(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<LineRequest>,
) -> Result<Response, ApiError> {
    let line = new_line(body.value.clone());
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
        Outcome::Added,
        |_| SalesOrderCommand::AddLine(line.clone()),
    )
    .await
}

/// Changes a line (draft only).
#[utoipa::path(patch, path = "/api/v1/sales-orders/{id}/lines/{line_id}", tag = "sales orders",
    request_body(content = Object, description = "product_id, weight, price_per_unit, quantity, description, source_purchase_order_id"),
    params(("id" = Uuid, Path), ("line_id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn change_line(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath((id, line_id)): ApiPath<(Uuid, Uuid)>,
    headers: CommandHeaders,
    body: JsonBody<LinePatch>,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::ChangeLine {
            line_id,
            patch: body.value.clone(),
        },
    )
    .await
}

/// Removes a line (draft only).
#[utoipa::path(delete, path = "/api/v1/sales-orders/{id}/lines/{line_id}", tag = "sales orders",
    params(("id" = Uuid, Path), ("line_id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn remove_line(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath((id, line_id)): ApiPath<(Uuid, Uuid)>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        b"",
        Permission::Operate,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::RemoveLine { line_id },
    )
    .await
}

/// draft → confirmed (needs a line).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/confirm", tag = "sales orders",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn confirm(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::Confirm,
    )
    .await
}

/// invoiced → closed (needs nothing outstanding).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/close", tag = "sales orders",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)), responses((status = 200, description = "the order document"), (status = 409, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<EmptyRequest>,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Manage,
        id,
        None,
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
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
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
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
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
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Manage,
        id,
        number,
        Outcome::Changed,
        |assigned| SalesOrderCommand::Invoice {
            invoice_number: given.clone().unwrap_or_else(|| {
                InvoiceNumber::parse(assigned.as_deref().unwrap_or_default())
                    .expect("assigned numbers are valid invoice numbers")
            }),
            invoice_date: body.value.invoice_date,
            due_date: body.value.due_date,
        },
    )
    .await
}

/// draft/confirmed → cancelled, with a reason.
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/cancel", tag = "sales orders", request_body = ReasonRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<ReasonRequest>,
) -> Result<Response, ApiError> {
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Manage,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::Cancel {
            reason: body.value.reason.clone(),
        },
    )
    .await
}

/// Records a payment from the customer (invoiced orders).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/payments", tag = "sales orders", request_body = PaymentRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document"), (status = 422, body = super::error::Problem)), security(("bearer" = [])))]
pub async fn record_payment(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<PaymentRequest>,
) -> Result<Response, ApiError> {
    let payment_id = Uuid::now_v7();
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Manage,
        id,
        None,
        Outcome::Changed,
        |_| {
            SalesOrderCommand::RecordPayment(NewPayment {
                payment_id,
                amount: body.value.amount,
                paid_on: body.value.paid_on,
                method: body.value.method,
                reference: body.value.reference.clone(),
            })
        },
    )
    .await
}

/// Adds a note (any state).
#[utoipa::path(post, path = "/api/v1/sales-orders/{id}/notes", tag = "sales orders", request_body = NoteRequest,
    params(("id" = Uuid, Path)), responses((status = 200, description = "the order document")), security(("bearer" = [])))]
pub async fn add_note(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<NoteRequest>,
) -> Result<Response, ApiError> {
    let note_id = Uuid::now_v7();
    act(
        &state,
        &user,
        &headers,
        &body.raw,
        Permission::Operate,
        id,
        None,
        Outcome::Changed,
        |_| SalesOrderCommand::AddNote {
            note_id,
            text: body.value.text.clone(),
        },
    )
    .await
}
