//! Queries of the read models: the SQL behind the API's lists, details and history.
//!
//! Every query names its tenant explicitly (`where tenant_id = $1`) and also runs in a
//! transaction (a savepoint if the caller has one open) with `app.tenant_id` set to it, so
//! row-level security agrees when the service connects as a non-superuser, as production
//! should. Every value a client sent is bound (sqlx [`QueryBuilder`]); only fixed fragments
//! chosen from allow-lists are ever written into the SQL text.
//!
//! # Lists
//!
//! [`list`] answers `{items, next_cursor}` with keyset pagination: the cursor is opaque
//! (URL-safe base64 of a small JSON object naming the resource, the sort, the last row's sort
//! value and id), so a page never skips or repeats a row even while rows are added. Sort is
//! `field` or `-field` from a per-resource allow-list, default `-created_at`, always
//! tie-broken by `id` in the same direction.
//!
//! Filters (unknown names and unparsable values are [`QueryError::BadParameter`]):
//!
//! | resource | filter | meaning |
//! |---|---|---|
//! | orders | `status` | one status word, or several separated by commas |
//! | orders | `payment_status` | `unpaid`, `partial`, `paid` (commas allowed) |
//! | purchase orders | `supplier_id` | UUID |
//! | sales orders | `customer_id` | UUID |
//! | orders | `order_date_from`, `order_date_to` | `YYYY-MM-DD`, inclusive |
//! | orders | `q` | order-number prefix (case-sensitive) |
//! | reference data | `q` | case-insensitive substring of the name (a product's description) or code |
//! | reference data | `active` | `true` or `false` |
//! | lots | `q` | lot-number prefix (case-sensitive) |
//! | lots | `supplier_id`, `purchase_order_id` | UUID |
//!
//! # Traces
//!
//! [`lot_trace`] answers a recall forward (a lot → its receipt, every shipment, what is left)
//! and [`sales_order_trace`] backward (a sales order → its lines' lots → their purchase
//! orders, suppliers, plants and establishment numbers), each in one statement over
//! `read.lots` and `read.lot_movements`.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use oms_domain::purchase_order::PurchaseOrderStatus;
use oms_domain::sales_order::SalesOrderStatus;
use oms_domain::values::PaymentStatus;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use crate::encoding::{base64url, base64url_decode};

/// What can be listed and fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `read.purchase_orders`.
    PurchaseOrders,
    /// `read.sales_orders`.
    SalesOrders,
    /// `read.suppliers`.
    Suppliers,
    /// `read.customers`.
    Customers,
    /// `read.products`.
    Products,
    /// `read.plants`.
    Plants,
    /// `read.carriers`.
    Carriers,
    /// `read.lots`.
    Lots,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 8] = [
        Resource::PurchaseOrders,
        Resource::SalesOrders,
        Resource::Suppliers,
        Resource::Customers,
        Resource::Products,
        Resource::Plants,
        Resource::Carriers,
        Resource::Lots,
    ];

    /// Its path segment in the API: `purchase-orders`, `suppliers`, …
    pub fn path(self) -> &'static str {
        match self {
            Resource::PurchaseOrders => "purchase-orders",
            Resource::SalesOrders => "sales-orders",
            Resource::Suppliers => "suppliers",
            Resource::Customers => "customers",
            Resource::Products => "products",
            Resource::Plants => "plants",
            Resource::Carriers => "carriers",
            Resource::Lots => "lots",
        }
    }

    /// The resource whose path segment is `path`.
    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.path() == path)
    }

    /// Its table in schema `read` (fixed names, safe to write into SQL).
    pub fn table(self) -> &'static str {
        match self {
            Resource::PurchaseOrders => "purchase_orders",
            Resource::SalesOrders => "sales_orders",
            Resource::Suppliers => "suppliers",
            Resource::Customers => "customers",
            Resource::Products => "products",
            Resource::Plants => "plants",
            Resource::Carriers => "carriers",
            Resource::Lots => "lots",
        }
    }

    /// The column that identifies a row within its tenant (fixed names, safe to write into
    /// SQL): a lot is known by its `lot_id`, everything else by `id`.
    fn key(self) -> &'static str {
        match self {
            Resource::Lots => "lot_id",
            _ => "id",
        }
    }

    /// The SQL giving a row's document (over the row alias `t`). A lot's stored document
    /// says what was received; what has shipped of it and what is left are added from its
    /// movements as it is read, so they are never stale.
    fn document_sql(self) -> &'static str {
        match self {
            Resource::Lots => LOT_DOCUMENT,
            _ => "t.document",
        }
    }

    /// The filter names it accepts.
    pub fn filters(self) -> &'static [&'static str] {
        match self {
            Resource::PurchaseOrders => &[
                "status",
                "payment_status",
                "supplier_id",
                "order_date_from",
                "order_date_to",
                "q",
            ],
            Resource::SalesOrders => &[
                "status",
                "payment_status",
                "customer_id",
                "order_date_from",
                "order_date_to",
                "q",
            ],
            Resource::Lots => &["q", "supplier_id", "purchase_order_id"],
            _ => &["q", "active"],
        }
    }

    /// The fields it can be sorted by.
    pub fn sort_fields(self) -> &'static [&'static str] {
        if self == Resource::Lots {
            &["created_at", "received_on", "lot_number"]
        } else if self.is_order() {
            &[
                "order_date",
                "order_number",
                "created_at",
                "updated_at",
                "total",
                "status",
            ]
        } else {
            &["name", "code", "created_at", "updated_at"]
        }
    }

    /// Whether it is an order resource.
    fn is_order(self) -> bool {
        matches!(self, Resource::PurchaseOrders | Resource::SalesOrders)
    }

    /// The column that holds a reference item's display name.
    fn name_column(self) -> &'static str {
        match self {
            Resource::Products => "description",
            _ => "name",
        }
    }
}

/// A list request: page size, cursor, sort and filters, as the API received them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// Page size, 1 to [`ListRequest::MAX_LIMIT`].
    pub limit: u32,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// `field` or `-field`; default `-created_at`.
    pub sort: Option<String>,
    /// Filters by name (only filter parameters: not limit, cursor, sort or format).
    pub filters: BTreeMap<String, String>,
}

impl ListRequest {
    /// The page size when the client names none.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page size.
    pub const MAX_LIMIT: u32 = 500;
}

impl Default for ListRequest {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            cursor: None,
            sort: None,
            filters: BTreeMap::new(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The stored documents, in sort order.
    pub items: Vec<Value>,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A parameter the client sent is unknown or malformed (answer 400).
    #[error("invalid parameter {name}: {message}")]
    BadParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl QueryError {
    /// A [`QueryError::BadParameter`].
    fn bad(name: &str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            name: name.to_owned(),
            message: message.into(),
        }
    }
}

/// Longest `q` accepted, in characters.
const MAX_Q: usize = 200;

/// Longest cursor text accepted, in bytes: far above any cursor [`Cursor::encode`] makes
/// (whose longest key is a lower-cased name of at most 200 characters).
const MAX_CURSOR: usize = 4096;

/// Longest sort key a cursor may carry, in bytes.
const MAX_CURSOR_KEY: usize = 2048;

/// A sort: which field, which direction, and the SQL that goes with it.
#[derive(Debug, Clone, Copy)]
struct Sort {
    /// The field's name as the client wrote it.
    field: &'static str,
    /// Descending?
    descending: bool,
    /// The expression sorted by (never null).
    expression: &'static str,
    /// The expression's value as canonical text (independent of session settings).
    key_text: &'static str,
    /// The type that reads `key_text` back.
    key_type: &'static str,
}

impl Sort {
    /// Parses `field` / `-field` against the resource's allow-list.
    fn parse(resource: Resource, text: Option<&str>) -> Result<Self, QueryError> {
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        let text = text.unwrap_or("-created_at");
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let Some(&field) = resource.sort_fields().iter().find(|f| **f == name) else {
            return Err(QueryError::bad(
                "sort",
                format!(
                    "cannot sort by {name:?}; use one of {} (prefix - for descending)",
                    resource.sort_fields().join(", ")
                ),
            ));
        };
        const TIMESTAMP: &str =
            "to_char(%c at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
        let (expression, key_text, key_type) = match (field, resource.name_column()) {
            ("created_at", _) => ("created_at", TIMESTAMP, "timestamptz"),
            ("updated_at", _) => ("updated_at", TIMESTAMP, "timestamptz"),
            ("order_date", _) => ("order_date", "to_char(%c, 'YYYY-MM-DD')", "date"),
            ("order_number", _) => ("order_number", "%c", "text"),
            ("lot_number", _) => ("lot_number", "%c", "text"),
            ("received_on", _) => ("received_on", "to_char(%c, 'YYYY-MM-DD')", "date"),
            ("total", _) => ("total", "%c::text", "numeric"),
            ("status", _) => ("status", "%c", "text"),
            ("code", _) => ("coalesce(code, '')", "%c", "text"),
            ("name", "description") => ("lower(description)", "%c", "text"),
            _ => ("lower(name)", "%c", "text"),
        };
        Ok(Self {
            field,
            descending,
            expression,
            key_text,
            key_type,
        })
    }

    /// `field` or `-field`.
    fn spec(&self) -> String {
        format!("{}{}", if self.descending { "-" } else { "" }, self.field)
    }

    /// `asc` or `desc`.
    fn direction(&self) -> &'static str {
        if self.descending {
            "desc"
        } else {
            "asc"
        }
    }

    /// The SQL giving the sort key as text.
    fn key_sql(&self) -> String {
        self.key_text.replace("%c", self.expression)
    }

    /// Whether `key` is text that [`Sort::key_sql`] can produce for this sort, so that the
    /// cast back to the column's type (`::timestamptz`, `::date`, `::numeric`) cannot fail.
    /// Timestamps and dates must be in the canonical form and round-trip exactly; numbers
    /// are plain decimals; text must be something Postgres can hold (no NUL).
    fn accepts_key(&self, key: &str) -> bool {
        if key.len() > MAX_CURSOR_KEY || key.contains('\0') {
            return false;
        }
        match self.key_type {
            "timestamptz" => {
                const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";
                chrono::NaiveDateTime::parse_from_str(key, FORMAT).is_ok_and(|at| {
                    (1..=9999).contains(&chrono::Datelike::year(&at))
                        && at.format(FORMAT).to_string() == key
                })
            }
            "date" => NaiveDate::parse_from_str(key, "%Y-%m-%d").is_ok_and(|date| {
                (1..=9999).contains(&chrono::Datelike::year(&date))
                    && date.format("%Y-%m-%d").to_string() == key
            }),
            "numeric" => {
                let unsigned = key.strip_prefix('-').unwrap_or(key);
                let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
                let digits =
                    |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
                digits(whole) && digits(fraction)
            }
            _ => true,
        }
    }
}

/// What a cursor holds.
#[derive(Debug, PartialEq, Eq)]
struct Cursor {
    /// The sort key of the last row of the page, as canonical text.
    key: String,
    /// The id of the last row of the page.
    id: Uuid,
}

impl Cursor {
    /// The opaque text of a cursor after (`key`, `id`) for this resource and sort.
    fn encode(resource: Resource, sort: &Sort, key: &str, id: Uuid) -> String {
        let body = json!({"r": resource.path(), "s": sort.spec(), "k": key, "i": id});
        base64url(body.to_string().as_bytes())
    }

    /// Reads a cursor made by [`Cursor::encode`] for the same resource and sort. The text
    /// comes from a client, so everything in it is checked before it reaches SQL: a key
    /// that is not what the sort's column holds (a forged or edited cursor) would otherwise
    /// fail in Postgres's cast, as a server error instead of a bad parameter.
    fn decode(text: &str, resource: Resource, sort: &Sort) -> Result<Self, QueryError> {
        let garbled = || QueryError::bad("cursor", "is not a cursor this list gave out");
        if text.len() > MAX_CURSOR {
            return Err(garbled());
        }
        let bytes = base64url_decode(text.trim()).ok_or_else(garbled)?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| garbled())?;
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        if field("r") != Some(resource.path()) {
            return Err(garbled());
        }
        if field("s") != Some(sort.spec().as_str()) {
            return Err(QueryError::bad(
                "cursor",
                "belongs to another sort order; start again without a cursor",
            ));
        }
        let key = field("k")
            .filter(|key| sort.accepts_key(key))
            .ok_or_else(garbled)?
            .to_owned();
        let id = field("i")
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(garbled)?;
        Ok(Self { key, id })
    }
}

/// Escapes `%`, `_` and `\` for a `like … escape '\'` pattern.
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Comma-separated choice words, each checked by `parse`.
fn words<T: FromStr>(name: &str, value: &str) -> Result<Vec<String>, QueryError>
where
    T::Err: std::fmt::Display,
{
    value
        .split(',')
        .map(str::trim)
        .map(|word| {
            T::from_str(word)
                .map(|_| word.to_owned())
                .map_err(|e| QueryError::bad(name, e.to_string()))
        })
        .collect()
}

/// Adds the request's filters to `query` (after a `where`), checking every name and value.
fn push_filters(
    query: &mut QueryBuilder<'_, Postgres>,
    resource: Resource,
    filters: &BTreeMap<String, String>,
) -> Result<(), QueryError> {
    let mut date_from: Option<NaiveDate> = None;
    let mut date_to: Option<NaiveDate> = None;
    for (name, value) in filters {
        if !resource.filters().contains(&name.as_str()) {
            return Err(QueryError::bad(
                name,
                format!(
                    "is not a filter of {}; use {}",
                    resource.path(),
                    resource.filters().join(", ")
                ),
            ));
        }
        let value = value.trim();
        match name.as_str() {
            "status" => {
                let statuses = match resource {
                    Resource::PurchaseOrders => words::<PurchaseOrderStatus>(name, value)?,
                    _ => words::<SalesOrderStatus>(name, value)?,
                };
                query
                    .push(" and status = any(")
                    .push_bind(statuses)
                    .push(")");
            }
            "payment_status" => {
                let statuses = words::<PaymentStatus>(name, value)?;
                query
                    .push(" and payment_status = any(")
                    .push_bind(statuses)
                    .push(")");
            }
            "supplier_id" | "customer_id" | "purchase_order_id" => {
                let id =
                    Uuid::parse_str(value).map_err(|_| QueryError::bad(name, "must be a UUID"))?;
                // The column is the filter's own name, from the allow-list above.
                let column = match name.as_str() {
                    "supplier_id" => "supplier_id",
                    "customer_id" => "customer_id",
                    _ => "purchase_order_id",
                };
                query.push(format!(" and {column} = ")).push_bind(id);
            }
            "order_date_from" | "order_date_to" => {
                // Four-digit years only: chrono reads years Postgres cannot hold.
                let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .ok()
                    .filter(|date| (1..=9999).contains(&chrono::Datelike::year(date)))
                    .ok_or_else(|| QueryError::bad(name, "must be a date such as 2024-06-15"))?;
                if name == "order_date_from" {
                    date_from = Some(date);
                    query.push(" and order_date >= ").push_bind(date);
                } else {
                    date_to = Some(date);
                    query.push(" and order_date <= ").push_bind(date);
                }
            }
            "q" => {
                if value.chars().count() > MAX_Q {
                    return Err(QueryError::bad(
                        name,
                        format!("must be at most {MAX_Q} characters"),
                    ));
                }
                // Postgres text cannot hold NUL, and no name or number contains a control
                // character: refuse them here rather than fail in the query.
                if value.chars().any(char::is_control) {
                    return Err(QueryError::bad(name, "must not contain control characters"));
                }
                if value.is_empty() {
                    continue;
                }
                if resource == Resource::Lots {
                    query
                        .push(" and lot_number like ")
                        .push_bind(format!("{}%", like_escape(value)))
                        .push(" escape '\\'");
                } else if resource.is_order() {
                    query
                        .push(" and order_number like ")
                        .push_bind(format!("{}%", like_escape(value)))
                        .push(" escape '\\'");
                } else {
                    let pattern = format!("%{}%", like_escape(value));
                    query
                        .push(format!(" and ({} ilike ", resource.name_column()))
                        .push_bind(pattern.clone())
                        .push(" escape '\\' or code ilike ")
                        .push_bind(pattern)
                        .push(" escape '\\')");
                }
            }
            "active" => {
                let active = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(QueryError::bad(name, "must be true or false")),
                };
                query.push(" and active = ").push_bind(active);
            }
            _ => return Err(QueryError::bad(name, "is not a filter")),
        }
    }
    if let (Some(from), Some(to)) = (date_from, date_to) {
        if to < from {
            return Err(QueryError::bad(
                "order_date_to",
                "must not be before order_date_from",
            ));
        }
    }
    Ok(())
}

/// A transaction on `conn` in which row-level security sees `tenant`.
async fn scoped(
    conn: &mut PgConnection,
    tenant: Uuid,
) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// One page of `resource` for `tenant`: the stored documents, filtered, sorted and paginated
/// as `request` asks.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Uuid,
    resource: Resource,
    request: &ListRequest,
) -> Result<Page, QueryError> {
    if !(1..=ListRequest::MAX_LIMIT).contains(&request.limit) {
        return Err(QueryError::bad(
            "limit",
            format!("must be between 1 and {}", ListRequest::MAX_LIMIT),
        ));
    }
    let sort = Sort::parse(resource, request.sort.as_deref())?;
    let cursor = request
        .cursor
        .as_deref()
        .map(|text| Cursor::decode(text, resource, &sort))
        .transpose()?;

    let key = resource.key();
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "select {} as document, {key} as id, {} as sort_key from read.{} t where tenant_id = ",
        resource.document_sql(),
        sort.key_sql(),
        resource.table()
    ));
    query.push_bind(tenant);
    push_filters(&mut query, resource, &request.filters)?;
    if let Some(cursor) = cursor {
        query
            .push(format!(
                " and ({}, {key}) {} (",
                sort.expression,
                if sort.descending { "<" } else { ">" }
            ))
            .push_bind(cursor.key)
            .push(format!("::{}, ", sort.key_type))
            .push_bind(cursor.id)
            .push(")");
    }
    query.push(format!(
        " order by {expression} {direction}, {key} {direction} limit ",
        expression = sort.expression,
        direction = sort.direction()
    ));
    query.push_bind(i64::from(request.limit) + 1);

    let mut tx = scoped(conn, tenant).await?;
    let rows = query.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let limit = request.limit as usize;
    let next_cursor = if rows.len() > limit {
        let last = &rows[limit - 1];
        let id: Uuid = last.try_get("id")?;
        let key: String = last.try_get("sort_key")?;
        Some(Cursor::encode(resource, &sort, &key, id))
    } else {
        None
    };
    let items = rows
        .iter()
        .take(limit)
        .map(|row| row.try_get::<Value, _>("document"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, next_cursor })
}

/// The stored document of `resource` `id` of `tenant` (it carries `version`), or `None`.
pub async fn get(
    conn: &mut PgConnection,
    tenant: Uuid,
    resource: Resource,
    id: Uuid,
) -> Result<Option<Value>, QueryError> {
    let mut tx = scoped(conn, tenant).await?;
    let document = sqlx::query_scalar(&format!(
        "select {} from read.{} t where tenant_id = $1 and {} = $2",
        resource.document_sql(),
        resource.table(),
        resource.key()
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(document)
}

/// The history of an order (`order_type` `purchase_order` or `sales_order`), oldest first:
/// `[{position, sequence, event_type, actor, actor_name, occurred_at, summary, changes}]`.
/// An order without history (unknown, or of another tenant) gives an empty list.
pub async fn history(
    conn: &mut PgConnection,
    tenant: Uuid,
    order_type: &str,
    order_id: Uuid,
) -> Result<Vec<Value>, QueryError> {
    if !matches!(order_type, "purchase_order" | "sales_order") {
        return Err(QueryError::bad(
            "order_type",
            "must be purchase_order or sales_order",
        ));
    }
    type HistoryRow = (
        i64,
        i64,
        String,
        String,
        Option<String>,
        DateTime<Utc>,
        String,
        Value,
    );
    let mut tx = scoped(conn, tenant).await?;
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "select position, sequence, event_type, actor, actor_name, occurred_at, summary, changes \
         from read.order_history \
         where tenant_id = $1 and order_type = $2 and order_id = $3 \
         order by sequence",
    )
    .bind(tenant)
    .bind(order_type)
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(
            |(position, sequence, event_type, actor, actor_name, occurred_at, summary, changes)| {
                json!({
                    "position": position,
                    "sequence": sequence,
                    "event_type": event_type,
                    "actor": actor,
                    "actor_name": actor_name,
                    "occurred_at": occurred_at,
                    "summary": summary,
                    "changes": changes,
                })
            },
        )
        .collect())
}

/// A lot's document (row alias `t` of `read.lots`) with `shipped_weight` (the sum of its
/// shipments) and `remaining_weight` (received less shipped), as decimal strings like every
/// weight the API gives.
const LOT_DOCUMENT: &str = "t.document || (\
    select jsonb_build_object(\
        'shipped_weight', trim_scale(coalesce(sum(m.weight), 0))::text, \
        'remaining_weight', trim_scale(t.received_weight - coalesce(sum(m.weight), 0))::text) \
    from read.lot_movements m \
    where m.tenant_id = t.tenant_id and m.lot_id = t.lot_id and m.kind = 'shipped')";

/// The forward trace of lot `lot_id` of `tenant`, or `None` for a lot it does not have:
/// `{lot, receipt: {purchase_order_id, order_number, supplier_id, supplier_name, plant_id,
/// plant_name, establishment_number, received_on, weight}, shipments: [{sales_order_id,
/// order_number, line_id, customer_id, customer_name, shipped_on, weight, position}],
/// shipped_weight, remaining_weight}`; shipments in the order they were recorded.
///
/// The receipt's `establishment_number` is the lot's own, else that of the plant the purchase
/// order names: the plant is where the load came from when the receipt did not say which
/// establishment produced the lot.
///
/// With `as_of`, the trace as it stood then: `None` for a lot received later, and only the
/// shipments recorded up to then (receipts and shipments are never undone, so nothing else
/// of the trace was different).
pub async fn lot_trace(
    conn: &mut PgConnection,
    tenant: Uuid,
    lot_id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Option<Value>, QueryError> {
    let mut tx = scoped(conn, tenant).await?;
    let trace = sqlx::query_scalar(
        "select jsonb_build_object( \
             'lot', t.document || jsonb_build_object( \
                 'shipped_weight', trim_scale(coalesce(sh.shipped, 0))::text, \
                 'remaining_weight', trim_scale(t.received_weight - coalesce(sh.shipped, 0))::text), \
             'receipt', jsonb_build_object( \
                 'purchase_order_id', t.purchase_order_id, \
                 'order_number', t.order_number, \
                 'supplier_id', t.supplier_id, \
                 'supplier_name', s.name, \
                 'plant_id', t.plant_id, \
                 'plant_name', p.name, \
                 'establishment_number', coalesce(t.establishment_number, p.establishment_number), \
                 'received_on', t.received_on, \
                 'weight', trim_scale(t.received_weight)::text), \
             'shipments', coalesce(sh.shipments, '[]'::jsonb), \
             'shipped_weight', trim_scale(coalesce(sh.shipped, 0))::text, \
             'remaining_weight', trim_scale(t.received_weight - coalesce(sh.shipped, 0))::text) \
         from read.lots t \
         left join read.suppliers s on s.tenant_id = t.tenant_id and s.id = t.supplier_id \
         left join read.plants p on p.tenant_id = t.tenant_id and p.id = t.plant_id \
         left join lateral ( \
             select sum(m.weight) as shipped, \
                    jsonb_agg(jsonb_build_object( \
                        'sales_order_id', m.order_id, \
                        'order_number', m.order_number, \
                        'line_id', m.line_id, \
                        'customer_id', m.customer_id, \
                        'customer_name', c.name, \
                        'shipped_on', m.moved_on, \
                        'weight', trim_scale(m.weight)::text, \
                        'position', m.position) \
                        order by m.position, m.order_id, m.line_id) as shipments \
             from read.lot_movements m \
             left join read.customers c on c.tenant_id = m.tenant_id and c.id = m.customer_id \
             where m.tenant_id = t.tenant_id and m.lot_id = t.lot_id and m.kind = 'shipped' \
               and ($3::timestamptz is null or m.recorded_at <= $3) \
         ) sh on true \
         where t.tenant_id = $1 and t.lot_id = $2 \
           and ($3::timestamptz is null or t.created_at <= $3)",
    )
    .bind(tenant)
    .bind(lot_id)
    .bind(as_of)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(trace)
}

/// The backward trace of sales order `order_id` of `tenant`, or `None` for an order it does
/// not have: `{sales_order_id, order_number, customer_id, customer_name, status, shipped_on,
/// lines: [{line_id, line_no, product_id, shipped_weight, lots: [{lot_id, lot_number, weight,
/// purchase_order_id, purchase_order_number, supplier_id, supplier_name, plant_id, plant_name,
/// establishment_number, production_date, received_on}]}]}`: every line, in order, with the
/// lots it shipped (none before the shipment, or for a line shipped without lots).
pub async fn sales_order_trace(
    conn: &mut PgConnection,
    tenant: Uuid,
    order_id: Uuid,
) -> Result<Option<Value>, QueryError> {
    let mut tx = scoped(conn, tenant).await?;
    let trace = sqlx::query_scalar(
        "select jsonb_build_object( \
             'sales_order_id', so.id, \
             'order_number', so.order_number, \
             'customer_id', so.customer_id, \
             'customer_name', c.name, \
             'status', so.status, \
             'shipped_on', so.shipped_on, \
             'lines', coalesce(( \
                 select jsonb_agg(jsonb_build_object( \
                     'line_id', sl.line_id, \
                     'line_no', sl.line_no, \
                     'product_id', sl.product_id, \
                     'shipped_weight', trim_scale(sl.shipped_weight)::text, \
                     'lots', coalesce(( \
                         select jsonb_agg(jsonb_build_object( \
                             'lot_id', m.lot_id, \
                             'lot_number', m.lot_number, \
                             'weight', trim_scale(m.weight)::text, \
                             'purchase_order_id', l.purchase_order_id, \
                             'purchase_order_number', l.order_number, \
                             'supplier_id', m.supplier_id, \
                             'supplier_name', s.name, \
                             'plant_id', l.plant_id, \
                             'plant_name', p.name, \
                             'establishment_number', \
                                 coalesce(l.establishment_number, p.establishment_number), \
                             'production_date', l.production_date, \
                             'received_on', l.received_on) \
                             order by m.lot_number, m.lot_id) \
                         from read.lot_movements m \
                         left join read.lots l on l.tenant_id = m.tenant_id and l.lot_id = m.lot_id \
                         left join read.suppliers s on s.tenant_id = m.tenant_id and s.id = m.supplier_id \
                         left join read.plants p on p.tenant_id = l.tenant_id and p.id = l.plant_id \
                         where m.tenant_id = so.tenant_id and m.order_id = so.id \
                           and m.line_id = sl.line_id and m.kind = 'shipped' \
                     ), '[]'::jsonb)) \
                     order by sl.line_no) \
                 from read.sales_order_lines sl \
                 where sl.tenant_id = so.tenant_id and sl.order_id = so.id \
             ), '[]'::jsonb)) \
         from read.sales_orders so \
         left join read.customers c on c.tenant_id = so.tenant_id and c.id = so.customer_id \
         where so.tenant_id = $1 and so.id = $2",
    )
    .bind(tenant)
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_round_trip_through_their_paths() {
        for resource in Resource::ALL {
            assert_eq!(Resource::from_path(resource.path()), Some(resource));
        }
        assert_eq!(Resource::from_path("purchase_orders"), None);
    }

    #[test]
    fn sorts_come_from_the_allow_list() {
        let sort = Sort::parse(Resource::PurchaseOrders, None).unwrap();
        assert_eq!(sort.spec(), "-created_at");
        let sort = Sort::parse(Resource::Products, Some("name")).unwrap();
        assert_eq!(sort.expression, "lower(description)");
        assert!(!sort.descending);
        assert!(Sort::parse(Resource::Suppliers, Some("total")).is_err());
        assert!(Sort::parse(Resource::PurchaseOrders, Some("id; drop table x")).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let sort = Sort::parse(Resource::SalesOrders, Some("total")).unwrap();
        let id = Uuid::from_u128(7);
        let text = Cursor::encode(Resource::SalesOrders, &sort, "12.50", id);
        assert_eq!(
            Cursor::decode(&text, Resource::SalesOrders, &sort).unwrap(),
            Cursor {
                key: "12.50".into(),
                id
            }
        );
        assert!(Cursor::decode(&text, Resource::PurchaseOrders, &sort).is_err());
        let other = Sort::parse(Resource::SalesOrders, Some("-total")).unwrap();
        assert!(Cursor::decode(&text, Resource::SalesOrders, &other).is_err());
        for garbage in ["", "!!!", "e30", "bm90IGpzb24"] {
            assert!(Cursor::decode(garbage, Resource::SalesOrders, &sort).is_err());
        }
    }

    /// A cursor for `resource` and `sort` whose key is `key`, as a forger would make one.
    fn forged(resource: Resource, sort: &Sort, key: Value) -> String {
        let body =
            json!({"r": resource.path(), "s": sort.spec(), "k": key, "i": Uuid::from_u128(1)});
        base64url(body.to_string().as_bytes())
    }

    #[test]
    fn forged_cursor_keys_are_refused_before_they_reach_sql() {
        let cases: [(&str, &[Value], &[&str]); 4] = [
            (
                "-created_at",
                &[
                    json!("not a time"),
                    json!("2024-06-01"),
                    json!("2024-06-01T00:00:00Z"),
                    json!("2024-13-01T00:00:00.000000Z"),
                    json!("0000-01-01T00:00:00.000000Z"),
                    json!(12),
                    json!(null),
                    json!(["2024"]),
                    json!("2024-06-01T00:00:00.000000Z\0"),
                ],
                &["2024-06-01T10:20:30.123456Z", "9999-12-31T23:59:59.999999Z"],
            ),
            (
                "order_date",
                &[
                    json!("2026-02-30"),
                    json!("+10000-01-01"),
                    json!("0000-01-01"),
                    json!("2024-6-1"),
                    json!(true),
                ],
                &["2024-06-01", "0001-01-01"],
            ),
            (
                "total",
                &[
                    json!("NaN"),
                    json!("1e5"),
                    json!("12."),
                    json!(".5"),
                    json!("--1"),
                    json!(""),
                    json!(12.5),
                ],
                &["12.50", "-3", "0"],
            ),
            (
                "order_number",
                &[json!("PO\0"), json!({"a": 1})],
                &["PO-000001", "", "'; drop table x"],
            ),
        ];
        for (spec, refused, accepted) in cases {
            let sort = Sort::parse(Resource::PurchaseOrders, Some(spec)).unwrap();
            for key in refused {
                let text = forged(Resource::PurchaseOrders, &sort, key.clone());
                assert!(
                    Cursor::decode(&text, Resource::PurchaseOrders, &sort).is_err(),
                    "{spec}: {key} was accepted"
                );
            }
            for key in accepted {
                let text = forged(Resource::PurchaseOrders, &sort, json!(key));
                assert_eq!(
                    Cursor::decode(&text, Resource::PurchaseOrders, &sort)
                        .unwrap()
                        .key,
                    *key,
                    "{spec}"
                );
            }
        }
        let sort = Sort::parse(Resource::PurchaseOrders, None).unwrap();
        let long = forged(Resource::PurchaseOrders, &sort, json!("x".repeat(10_000)));
        assert!(Cursor::decode(&long, Resource::PurchaseOrders, &sort).is_err());
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
