//! The OpenAPI document served at `/api/v1/openapi.json`: the description, tags, security
//! scheme and shared schemas here; the paths are added by the routers themselves
//! (`utoipa-axum`), from the handlers' `#[utoipa::path]` annotations, as they register them.

use serde_json::{json, Map, Value};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "oms",
        description = "Event-sourced, multi-tenant order management for meat traders.\n\n\
Conventions (see also docs/api.md): decimals are JSON strings in responses and strings or numbers in \
requests; unknown request fields are refused with 422; errors are `application/problem+json`; every \
order and reference-data response carries `version` and an `ETag`, commands accept `If-Match` (412 on \
mismatch) and `Idempotency-Key` (24 h replay with `Idempotent-Replayed: true`); command responses carry \
`position`, the tenant's event position after the command.\n\n\
Choices where the contract is silent: `POST …/{id}/lines` answers 201 with the whole order; an empty \
body is accepted as `{}` on action endpoints; a token whose tenant does not exist is 401; GETs read \
the read models (pass a command's `position` as `?min_position=` to read your own write), while \
`?as_of=` and `…/events` read the event store; the order document lists the order's notes as \
`order_notes` because `notes` is the header's free-text field; rate limits are per tenant and per \
API process (429 with `Retry-After`), and per client address on what a tenant's limit does not \
cover: the platform routes and requests refused 401; a request running longer than the request \
time-out (30 s by default) is abandoned with a 503.\n\n\
After a failure: a 4xx wrote nothing; a 503 wrote nothing unless its `detail` says the outcome is \
unknown (the database connection broke at commit and could not be checked within 10 s, or the \
request ran past the request time-out). After that \
503, a connection reset or a time-out, retry with the same `Idempotency-Key` — or, without one, the \
same `X-Request-Id`, which every command is also recorded under for 24 hours: the retry gets the \
first outcome, or runs the command if it never took effect.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    components(schemas(
        super::error::Problem, super::error::FieldProblem, crate::tenants::TenantDocument,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Tenants (platform_admin)"),
        (name = "reference data", description = "Suppliers, customers, products, plants, carriers"),
        (name = "purchase orders", description = "Buying loads from packing plants"),
        (name = "sales orders", description = "Selling loads to buyers"),
        (name = "lots", description = "Received lots and recall traces, forward and backward"),
        (name = "audit", description = "The event feed and hash-chain verification (auditor, admin)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256; claims sub, tenant, roles, exp, name"))
                    .build(),
            ),
        );
    }
}

/// The problem document's media type: every error is sent as one.
const PROBLEM: &str = "application/problem+json";

/// What each error status means, as the document says it.
const ERRORS: &[(&str, &str)] = &[
    ("400", "Malformed: a parameter, header or body that does not parse, or min_position beyond the tenant's newest position"),
    ("401", "No token, an invalid or expired one, or one whose tenant does not exist"),
    ("403", "The token's roles do not allow this, or it has no tenant"),
    ("404", "Unknown, or another tenant's"),
    ("409", "Not allowed in the current state, a duplicate number or code, or a lost race"),
    ("412", "If-Match names another version; the current one is in `current_version` and ETag"),
    ("413", "The body is over 1 MiB"),
    ("415", "The body is not JSON"),
    ("422", "Validation failed (each field at fault in `errors`); nothing was written"),
    ("429", "The tenant, or for the platform routes and refused tokens the client address, is over its request rate; retry after Retry-After seconds"),
    ("431", "X-Request-Id, X-Correlation-Id or X-Causation-Id is longer than 200 characters"),
    ("503", "Postgres is unavailable, the read models did not reach min_position within 5 s, or the request ran past the request time-out"),
];

/// Completes the document the routers produced, operation by operation, with what every
/// operation shares because it passes the same layers and extractors: the error responses
/// each can give (as `application/problem+json`), the id, `If-Match` and `Idempotency-Key`
/// headers, the bounds of the shared query parameters, and the media types and shapes of
/// the success responses. Kept in one place so that no operation forgets one; the rules
/// mirror `extract` and `request_ids`:
///
/// - every operation: 400 (a header, parameter or body that does not parse), 401, 403, 429
///   (per tenant below a tenant, per client address on `/api/v1/tenants`), 431, 503;
/// - a path with an id: 404;
/// - a command (not GET): 409, 412, 422 (and 404 below a tenant);
/// - a JSON body: 413, 415, 422.
pub fn complete(openapi: utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(openapi).expect("the document serialises");
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if !["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                    continue;
                }
                complete_operation(path, method, operation);
            }
        }
    }
    let schemas = &mut document["components"]["schemas"];
    for (name, schema) in shared_schemas() {
        schemas[name] = schema;
    }
    document
}

/// One operation of [`complete`].
fn complete_operation(path: &str, method: &str, operation: &mut Value) {
    let tenant_scoped = !path.starts_with("/api/v1/tenants");
    let command = method != "get";
    let has_body = operation.get("requestBody").is_some();
    let has_id = path.contains('{');

    // An optional body (`Option<T>`) is an absent body, not a JSON `null`.
    if let Some(body) = operation.get_mut("requestBody") {
        let mut optional = false;
        let schema = &mut body["content"]["application/json"]["schema"];
        for key in ["oneOf", "anyOf"] {
            let present = schema[key].as_array().and_then(|members| {
                let (nulls, others): (Vec<&Value>, Vec<&Value>) =
                    members.iter().partition(|m| m["type"] == "null");
                (nulls.len() == 1 && others.len() == 1).then(|| others[0].clone())
            });
            if let Some(present) = present {
                *schema = present;
                optional = true;
            }
        }
        if optional {
            body["required"] = json!(false);
        }
    }

    // Parameters: the shared query parameters' bounds, then the headers.
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut parameters: Vec<Value> = parameters
        .into_iter()
        .map(|mut parameter| {
            if parameter["in"] == "query" {
                let name = parameter["name"].as_str().unwrap_or_default().to_string();
                if let Some(schema) = query_schema(path, &name) {
                    parameter["schema"] = schema;
                }
            }
            parameter
        })
        .filter(|p| {
            !(p["in"] == "header"
                && header_schema(p["name"].as_str().unwrap_or_default()).is_some())
        })
        .collect();
    let mut headers: Vec<&str> = crate::request_ids::ID_HEADERS.to_vec();
    if command {
        headers.push("Idempotency-Key");
        if tenant_scoped {
            headers.push("If-Match");
        }
    }
    for name in headers {
        if let Some((schema, description)) = header_schema(name) {
            parameters.push(json!({
                "name": name, "in": "header", "required": false,
                "description": description, "schema": schema,
            }));
        }
    }
    operation["parameters"] = Value::Array(parameters);

    // Error responses.
    let mut statuses = vec!["400", "401", "403", "429", "431", "503"];
    if has_id || (command && tenant_scoped) {
        statuses.push("404");
    }
    if command {
        statuses.extend(["409", "422"]);
        if tenant_scoped {
            statuses.push("412");
        }
    }
    if has_body {
        statuses.extend(["413", "415", "422"]);
    }
    let responses = operation["responses"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut completed = Map::new();
    for (status, mut response) in responses {
        if status.starts_with('2') {
            success_content(path, method, &mut response);
        }
        completed.insert(status, response);
    }
    for status in statuses {
        completed
            .entry(status.to_string())
            .or_insert_with(|| json!({}));
    }
    for (status, response) in completed.iter_mut() {
        if status.starts_with('4') || status.starts_with('5') {
            let description = ERRORS
                .iter()
                .find(|(s, _)| s == status)
                .map_or("An error", |(_, d)| *d);
            *response = json!({
                "description": description,
                "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            });
        }
    }
    operation["responses"] = Value::Object(completed);
}

/// The media types and schema of a success response.
fn success_content(path: &str, method: &str, response: &mut Value) {
    let is_list = method == "get" && !path.contains('{') && !path.starts_with("/api/v1/audit");
    let schema = if path.starts_with("/api/v1/tenants") {
        if method == "get" {
            json!({"$ref": "#/components/schemas/TenantList"})
        } else {
            json!({"$ref": "#/components/schemas/TenantDocument"})
        }
    } else if path.ends_with("/history") || path.ends_with("/events") && path.contains('{') {
        json!({"$ref": "#/components/schemas/ItemList"})
    } else if path == "/api/v1/audit/events" {
        json!({"$ref": "#/components/schemas/AuditFeed"})
    } else if path == "/api/v1/audit/verify" {
        json!({"$ref": "#/components/schemas/ChainReport"})
    } else if is_list {
        json!({"$ref": "#/components/schemas/ListPage"})
    } else if path.contains("-orders") {
        json!({"$ref": "#/components/schemas/OrderDocument"})
    } else {
        json!({"$ref": "#/components/schemas/ReferenceDocument"})
    };
    let mut content = Map::new();
    content.insert("application/json".into(), json!({"schema": schema}));
    if is_list && !path.starts_with("/api/v1/tenants") {
        content.insert(
            "text/csv".into(),
            json!({"schema": {"type": "string", "description": "a header row, then one row per item; the next page's cursor in the Next-Cursor header"}}),
        );
    }
    response["content"] = Value::Object(content);
}

/// The schema of a query parameter the API reads the same way wherever it appears.
fn query_schema(path: &str, name: &str) -> Option<Value> {
    use oms_domain::purchase_order::PurchaseOrderStatus;
    use oms_domain::sales_order::SalesOrderStatus;
    use oms_domain::values::PaymentStatus;
    let words = |all: Vec<String>| crate::schemas::words(&all);
    let position = json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX});
    Some(match name {
        "limit" if path.starts_with("/api/v1/audit") => {
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
        }
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        "min_position" => {
            let mut schema = position;
            schema["description"] = json!("a position a command returned; the read waits (up to 5 s, then 503) until the read models have reached it; beyond the tenant's newest position it is a 400");
            schema
        }
        "after_position" => position,
        "cursor" => json!({
            "type": "string", "maxLength": 4096, "pattern": "^[A-Za-z0-9_-]*$",
            "description": "the next_cursor of the previous page, as it was given",
        }),
        "format" => json!({"type": "string", "enum": ["json", "csv"]}),
        "active" => json!({"type": "boolean"}),
        "as_of" => {
            json!({"type": "string", "format": "date-time", "description": "an RFC 3339 instant, years 0001 to 9999"})
        }
        "order_date_from" | "order_date_to" => crate::schemas::date(),
        "supplier_id" | "customer_id" | "purchase_order_id" => crate::schemas::uuid(),
        "q" => json!({
            "type": "string",
            "pattern": crate::schemas::query_text_pattern(),
            "description": "at most 200 characters once trimmed, no control characters",
        }),
        "status" if path.starts_with("/api/v1/purchase-orders") => words(
            PurchaseOrderStatus::ALL
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
        "status" => words(
            SalesOrderStatus::ALL
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
        "payment_status" => words(PaymentStatus::ALL.iter().map(ToString::to_string).collect()),
        "sort" => {
            let fields: &[&str] = if path.starts_with("/api/v1/lots") {
                oms_projections::queries::Resource::Lots.sort_fields()
            } else if path.contains("-orders") {
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
            };
            let values: Vec<String> = std::iter::once(String::new())
                .chain(
                    fields
                        .iter()
                        .flat_map(|f| [f.to_string(), format!("-{f}"), format!("+{f}")]),
                )
                .collect();
            json!({"type": "string", "enum": values, "description": "field or -field (descending); empty or absent: -created_at"})
        }
        _ => return None,
    })
}

/// The schema and description of a header the API reads.
fn header_schema(name: &str) -> Option<(Value, &'static str)> {
    let id = json!({
        "type": "string", "minLength": 1, "maxLength": crate::request_ids::MAX_ID_LEN,
        "pattern": "^[!-~]+$",
    });
    Some(match name {
        "X-Request-Id" => (id, "the request's id (visible ASCII, at most 200 characters; longer is 431): echoed in the response and recorded on the events; a retry of a command with the same id gets the first answer"),
        "X-Correlation-Id" => (id, "the id of the conversation the request belongs to (visible ASCII, at most 200 characters; longer is 431): recorded on the events"),
        "X-Causation-Id" => (id, "the id of what caused the request (visible ASCII, at most 200 characters; longer is 431): recorded on the events"),
        "Idempotency-Key" => (
            json!({"type": "string", "minLength": 1, "maxLength": oms_store::idempotency::MAX_KEY_LEN, "pattern": "^[!-~](?:[ -~]*[!-~])?$"}),
            "a repeat with the same key and body within 24 hours gets the first answer (with Idempotent-Replayed: true) and writes nothing; the same key with another body is 422",
        ),
        "If-Match" => (
            json!({"type": "string", "pattern": "^(?:W/)?\"?[0-9]{1,18}\"?$", "example": "\"3\""}),
            "the version the command expects the resource at; another is 412 and writes nothing",
        ),
        _ => return None,
    })
}

/// The schemas the completed responses refer to.
fn shared_schemas() -> Vec<(&'static str, Value)> {
    let timestamp = json!({"type": ["string", "null"], "format": "date-time"});
    let money = json!({"type": "string", "example": "86300.00"});
    vec![
        (
            "ListPage",
            json!({
                "type": "object",
                "description": "one page of a list; pass next_cursor as ?cursor= for the next (null on the last page)",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": {"type": "object"}},
                    "next_cursor": {"type": ["string", "null"]},
                },
            }),
        ),
        (
            "ItemList",
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": {"type": "object"}}},
            }),
        ),
        (
            "AuditFeed",
            json!({
                "type": "object",
                "required": ["items", "next_after_position"],
                "properties": {
                    "items": {"type": "array", "items": {"type": "object"}},
                    "next_after_position": {"type": ["integer", "null"]},
                },
            }),
        ),
        (
            "ChainReport",
            json!({
                "type": "object",
                "required": ["ok", "events_checked", "head_position", "head_hash", "first_bad_position"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "events_checked": {"type": "integer", "minimum": 0},
                    "head_position": {"type": "integer", "minimum": 0},
                    "head_hash": {"type": "string"},
                    "first_bad_position": {"type": ["integer", "null"]},
                },
            }),
        ),
        (
            "TenantList",
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/TenantDocument"}},
                    "next_cursor": {"type": "null"},
                },
            }),
        ),
        (
            "OrderDocument",
            json!({
                "type": "object",
                "description": "an order: its header fields, status, money, lines and what happened to it; commands add `position`",
                "required": ["id", "version", "order_number", "status", "payment_status", "lines", "total",
                             "amount_due", "amount_paid", "outstanding", "created_at", "updated_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "version": {"type": "integer", "minimum": 1},
                    "position": {"type": "integer", "minimum": 1},
                    "order_number": {"type": "string"},
                    "status": {"type": "string"},
                    "payment_status": {"type": "string"},
                    "lines": {"type": "array", "maxItems": oms_domain::order::MAX_LINES_PER_ORDER, "items": {"type": "object"}},
                    "order_notes": {"type": "array", "maxItems": oms_domain::order::MAX_NOTES_PER_ORDER, "items": {"type": "object"}},
                    "total": money.clone(),
                    "amount_due": money.clone(),
                    "amount_paid": money.clone(),
                    "outstanding": money,
                    "created_at": timestamp.clone(),
                    "updated_at": timestamp.clone(),
                },
            }),
        ),
        (
            "ReferenceDocument",
            json!({
                "type": "object",
                "description": "a supplier, customer, product, plant or carrier: its fields, kind and active flag; commands add `position`",
                "required": ["id", "version", "kind", "active", "created_at", "updated_at"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "version": {"type": "integer", "minimum": 1},
                    "position": {"type": "integer", "minimum": 1},
                    "kind": {"type": "string", "enum": ["supplier", "customer", "product", "plant", "carrier"]},
                    "active": {"type": "boolean"},
                    "created_at": timestamp.clone(),
                    "updated_at": timestamp,
                },
            }),
        ),
    ]
}
