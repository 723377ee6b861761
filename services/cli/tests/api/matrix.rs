//! Matrices over every route. The routes come from the service's own OpenAPI document, which
//! utoipa-axum builds from the very registrations that make the router: a route added to the
//! service is in these matrices without anyone listing it, and one this file cannot classify
//! (whose role, whose body) fails the tests until it is.
//!
//! - **Tenant isolation**: a token of tenant B calls every route with tenant A's ids (and A's
//!   ids in the bodies): 404 or 403 where A's ids are in the path, never a 2xx that uses A's
//!   reference data, and no response ever carries anything of A's that B did not send.
//!   Analysts: a login of tenant B reads every table and view of the read schema (listed from
//!   the catalogue) and sees none of A's rows.
//! - **Roles**: shared/DOMAIN.md's table, written out here on its own (not taken from the
//!   service's code): each route called by each role; allowed → not 403, forbidden → 403.
//! - **Tokens**: `alg: none`, another algorithm, a wrong secret, expired, not yet valid, a
//!   missing or empty `sub`, no `exp`, no `tenant`, a tenant that does not exist, garbage, no
//!   token → 401 on every route.

use crate::helpers::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use oms_api::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// The reference-data kinds (API.md: one set of routes each).
const REFERENCE: [&str; 5] = ["suppliers", "customers", "products", "plants", "carriers"];

/// The tenant roles of DOMAIN.md (platform_admin is tried on its own).
const TENANT_ROLES: [Role; 5] = [
    Role::Readonly,
    Role::Auditor,
    Role::User,
    Role::Manager,
    Role::Admin,
];

/// One operation of the document.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    /// The path template, `{id}` and all.
    template: String,
    /// Extra query string (the `as_of` time-travel variant of an order read).
    query: &'static str,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}{}", self.method, self.template, self.query)
    }

    /// Whether the path names a resource by id (so another tenant must get 404 or 403).
    fn has_path_ids(&self) -> bool {
        self.template.contains('{')
    }

    fn is_platform(&self) -> bool {
        self.template.starts_with("/api/v1/tenants")
    }
}

/// Every operation of the running service's document (plus each order read with `?as_of=`,
/// which DOMAIN.md gives to auditors alone).
async fn operations(app: &TestApp) -> Vec<Operation> {
    let document: Value = expect_json(
        app.client
            .get(format!("{}/api/v1/openapi.json", app.address))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "patch" => Method::PATCH,
                "put" => Method::PUT,
                "delete" => Method::DELETE,
                _ => continue,
            };
            if method == Method::GET
                && (path == "/api/v1/purchase-orders/{id}" || path == "/api/v1/sales-orders/{id}")
            {
                out.push(Operation {
                    method: method.clone(),
                    template: path.clone(),
                    query: "?as_of=2099-01-01T00:00:00Z",
                });
            }
            out.push(Operation {
                method,
                template: path.clone(),
                query: "",
            });
        }
    }
    assert!(
        out.len() > 40,
        "the document lists every route: {} operations",
        out.len()
    );
    out
}

/// What DOMAIN.md's role table calls the thing an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Read orders, reference data, history.
    Read,
    /// Raw events, time travel, audit export and verification.
    Audit,
    /// Create and edit drafts, submit, confirm, receipts, ship, deliver, notes.
    Operate,
    /// Approve, reject, cancel, close, invoice, payments, reference data.
    Manage,
    /// Create and list tenants.
    Platform,
    /// Erase a supplier's or customer's personal data (admin only).
    Erase,
}

/// The action of `operation`, from its path and method. Panics for a route this table does
/// not know: whoever adds a route decides here, against DOMAIN.md, who may call it.
fn action(operation: &Operation) -> Action {
    let path = operation.template.trim_start_matches("/api/v1/");
    let segments: Vec<&str> = path.split('/').collect();
    let collection = segments[0];
    let verb = *segments.iter().rev().find(|s| !s.starts_with('{')).unwrap();
    if !operation.query.is_empty() {
        return Action::Audit;
    }
    match (collection, &operation.method, verb) {
        ("tenants", _, _) => Action::Platform,
        ("audit", _, _) => Action::Audit,
        (_, &Method::GET, "events") => Action::Audit,
        (_, &Method::GET, _) => Action::Read,
        ("suppliers" | "customers", &Method::POST, "erase-personal-data") => Action::Erase,
        (kind, _, _) if REFERENCE.contains(&kind) => Action::Manage,
        ("purchase-orders" | "sales-orders", _, verb) => match verb {
            // creating and editing drafts (the header, lines), and the user's steps
            "purchase-orders" | "sales-orders" | "lines" | "submit" | "confirm" | "receipts"
            | "ship" | "deliver" | "notes" | "claims" => Action::Operate,
            // a claim's accept and reject are a manager's, as money is
            "approve" | "reject" | "cancel" | "close" | "invoice" | "payments" | "accept"
            | "refunds" => Action::Manage,
            _ => panic!(
                "DOMAIN.md's role table does not say who may {}: add it to action()",
                operation.name()
            ),
        },
        _ => panic!(
            "DOMAIN.md's role table does not say who may {}: add it to action()",
            operation.name()
        ),
    }
}

/// DOMAIN.md's role table.
fn may(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::Readonly => action == A::Read,
        Role::Auditor => matches!(action, A::Read | A::Audit),
        Role::User => matches!(action, A::Read | A::Operate),
        Role::Manager => matches!(action, A::Read | A::Operate | A::Manage),
        Role::Admin => action != A::Platform,
        Role::PlatformAdmin => action == A::Platform,
    }
}

/// Tenant A's data: its ids (by the path parameter and collection they fill) and strings
/// that only A's data contains.
struct Fixture {
    ids: BTreeMap<&'static str, String>,
    po_line: String,
    so_line: String,
    secrets: Vec<String>,
}

impl Fixture {
    /// Creates, through the API, one of everything in `app`'s tenant, each marked with a
    /// string no other tenant has.
    async fn create(app: &TestApp, mark: &str) -> Self {
        let mut ids = BTreeMap::new();
        let mut secrets = vec![app.tenant.to_string()];
        for (kind, body) in [
            (
                "suppliers",
                json!({"name": format!("{mark} Packers"), "code": format!("{mark}S"),
                       "payment_terms": "wire", "credit_terms": "net_30"}),
            ),
            (
                "customers",
                json!({"name": format!("{mark} Grocers"), "code": format!("{mark}C")}),
            ),
            (
                "products",
                json!({"code": format!("{mark}P"), "description": format!("{mark} trim"),
                       "protein": "beef", "uom": "LB"}),
            ),
            (
                "plants",
                json!({"name": format!("{mark} Plant"), "code": format!("{mark}L")}),
            ),
            (
                "carriers",
                json!({"name": format!("{mark} Freight"), "code": format!("{mark}F"), "carrier_type": "truck"}),
            ),
        ] {
            let created = app
                .post_ok(&format!("/api/v1/{kind}"), body, StatusCode::CREATED)
                .await;
            secrets.push(id_of(&created));
            ids.insert(kind, id_of(&created));
        }
        let po = app
            .post_ok(
                "/api/v1/purchase-orders",
                json!({"supplier_id": ids["suppliers"], "order_date": "2026-11-02",
                       "order_number": format!("{mark}-PO"),
                       "lines": [{"product_id": ids["products"], "weight": "1000", "price_per_unit": "2.50"}]}),
                StatusCode::CREATED,
            )
            .await;
        let so = app
            .post_ok(
                "/api/v1/sales-orders",
                json!({"customer_id": ids["customers"], "order_date": "2026-11-02",
                       "order_number": format!("{mark}-SO"),
                       "lines": [{"product_id": ids["products"], "weight": "1000", "price_per_unit": "3.10"}]}),
                StatusCode::CREATED,
            )
            .await;
        for order in [&po, &so] {
            let path = if order == &po {
                "purchase-orders"
            } else {
                "sales-orders"
            };
            app.post_ok(
                &format!("/api/v1/{path}/{}/notes", id_of(order)),
                json!({"text": format!("{mark} note")}),
                StatusCode::OK,
            )
            .await;
        }
        let po_line = po["lines"][0]["line_id"]
            .as_str()
            .or(po["lines"][0]["id"].as_str())
            .expect("a line id")
            .to_string();
        let so_line = so["lines"][0]["line_id"]
            .as_str()
            .or(so["lines"][0]["id"].as_str())
            .expect("a line id")
            .to_string();
        ids.insert("purchase-orders", id_of(&po));
        ids.insert("sales-orders", id_of(&so));
        // No lot of this id (the fixture receives nothing): allowed roles get 404, others
        // 403, other tenants 404. tests/api/lots.rs reads another tenant's real lot.
        ids.insert("lots", Uuid::new_v4().to_string());
        secrets.extend([id_of(&po), id_of(&so), po_line.clone(), so_line.clone()]);
        secrets.push(mark.to_string());
        Fixture {
            ids,
            po_line,
            so_line,
            secrets,
        }
    }

    /// The concrete path of `operation` over this fixture's ids.
    fn path(&self, operation: &Operation) -> String {
        let collection = operation
            .template
            .trim_start_matches("/api/v1/")
            .split('/')
            .next()
            .unwrap();
        let mut path = operation.template.clone();
        if path.contains("{id}") {
            let id = self.ids.get(collection).unwrap_or_else(|| {
                panic!(
                    "no id of {collection} for {}: add it to Fixture",
                    operation.name()
                )
            });
            path = path.replace("{id}", id);
        }
        if path.contains("{line_id}") {
            let line = if collection == "purchase-orders" {
                &self.po_line
            } else {
                &self.so_line
            };
            path = path.replace("{line_id}", line);
        }
        if path.contains("{claim_id}") {
            // No claim of this id: allowed roles get 404, others 403, other tenants 404.
            path = path.replace("{claim_id}", &Uuid::new_v4().to_string());
        }
        assert!(
            !path.contains('{'),
            "a path parameter of {} is unknown here: add it to Fixture::path",
            operation.name()
        );
        format!("{path}{}", operation.query)
    }

    /// A valid body for `operation` over this fixture's ids (None: the route takes none).
    /// Panics for a route with a body this table does not know.
    fn body(&self, operation: &Operation, mark: &str) -> Option<Value> {
        let path = operation.template.trim_start_matches("/api/v1/");
        let segments: Vec<&str> = path.split('/').collect();
        let collection = segments[0];
        let last = *segments.last().unwrap();
        let m = &operation.method;
        let unique = Uuid::new_v4().simple().to_string()[..8].to_uppercase();
        let body = match (m, collection, segments.len(), last) {
            (&Method::GET | &Method::DELETE, ..) => return None,
            (&Method::POST, "tenants", 1, _) => {
                json!({"name": "Gamma Meats", "slug": format!("gamma-{}", unique.to_lowercase())})
            }
            (&Method::POST, "suppliers" | "customers" | "plants", 1, _) => {
                json!({"name": format!("{mark} Other"), "code": unique})
            }
            (&Method::POST, "carriers", 1, _) => {
                json!({"name": format!("{mark} Other"), "code": unique, "carrier_type": "rail"})
            }
            (&Method::POST, "products", 1, _) => {
                json!({"code": unique, "description": "Pork belly", "protein": "pork", "uom": "LB"})
            }
            (&Method::PATCH, kind, 2, _) if REFERENCE.contains(&kind) => {
                json!({"active": true})
            }
            (&Method::POST, "purchase-orders", 1, _) => json!({
                "supplier_id": self.ids["suppliers"], "order_date": "2026-11-03",
                "lines": [{"product_id": self.ids["products"], "weight": "10", "price_per_unit": "1.00"}]
            }),
            (&Method::POST, "sales-orders", 1, _) => json!({
                "customer_id": self.ids["customers"], "order_date": "2026-11-03",
                "lines": [{"product_id": self.ids["products"], "weight": "10", "price_per_unit": "1.00"}]
            }),
            (&Method::PATCH, _, 2, _) => json!({"order_date": "2026-11-04"}),
            (&Method::POST, _, 3, "lines") => json!({
                "product_id": self.ids["products"], "weight": "5", "price_per_unit": "1.00"
            }),
            (&Method::PATCH, _, 4, _) => json!({"weight": "6"}),
            (&Method::POST, _, 3, "submit" | "approve" | "close" | "confirm") => json!({}),
            (&Method::POST, _, 3, "erase-personal-data") => json!({}),
            (&Method::POST, _, 3, "reject" | "cancel") => json!({"reason": "matrix"}),
            (&Method::POST, _, 3, "notes") => json!({"text": "matrix note"}),
            (&Method::POST, _, 3, "payments") => {
                json!({"amount": "1.00", "paid_on": "2026-11-05", "method": "wire"})
            }
            (&Method::POST, _, 3, "claims") => {
                let line = if collection == "purchase-orders" {
                    &self.po_line
                } else {
                    &self.so_line
                };
                json!({"reason": "quality", "lines": [{"line_id": line, "amount": "1.00"}]})
            }
            (&Method::POST, _, 5, "accept") => json!({}),
            (&Method::POST, _, 5, "reject") => json!({"reason": "matrix"}),
            (&Method::POST, _, 3, "refunds") => {
                json!({"amount": "1.00", "refunded_on": "2026-11-05", "method": "wire"})
            }
            (&Method::POST, "purchase-orders", 3, "receipts") => json!({
                "received_on": "2026-11-05", "complete": false,
                "lines": [{"line_id": self.po_line, "weight": "1"}]
            }),
            (&Method::POST, "sales-orders", 3, "ship") => json!({
                "shipped_on": "2026-11-05", "carrier_id": self.ids["carriers"],
                "lines": [{"line_id": self.so_line, "weight": "1"}]
            }),
            (&Method::POST, "sales-orders", 3, "deliver") => json!({"delivered_on": "2026-11-06"}),
            (&Method::POST, "sales-orders", 3, "invoice") => {
                json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"})
            }
            _ => panic!("no body for {}: add one to Fixture::body", operation.name()),
        };
        Some(body)
    }
}

/// Calls `operation` with `token` (and, when it takes one, a valid body).
async fn call(
    app: &TestApp,
    fixture: &Fixture,
    operation: &Operation,
    token: Option<&str>,
) -> (StatusCode, String, String) {
    let path = fixture.path(operation);
    let body = fixture.body(operation, "Matrix");
    let mut request = app
        .client
        .request(operation.method.clone(), format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let sent = body.as_ref().map(Value::to_string).unwrap_or_default();
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, text, format!("{path} {sent}"))
}

/// Two tenants with one of everything each, projected.
async fn two_tenants() -> (TestApp, Uuid, Fixture, Fixture) {
    let app = spawn_app().await;
    let a = Fixture::create(&app, "Alphasecret").await;
    let tenant_b = oms_store::tenants::create(
        &app.pool,
        "Beta Meats",
        &format!("beta-{}", Uuid::new_v4().simple()),
    )
    .await
    .unwrap()
    .id;
    let b_app = TestApp {
        address: app.address.clone(),
        metrics_address: app.metrics_address.clone(),
        pool: app.pool.clone(),
        tenant: tenant_b,
        keys: app.keys.clone(),
        client: app.client.clone(),
    };
    let b = Fixture::create(&b_app, "Betasecret").await;
    (app, tenant_b, a, b)
}

#[tokio::test]
async fn no_route_gives_tenant_b_anything_of_tenant_a() {
    let (app, tenant_b, a, _b) = two_tenants().await;
    let b_admin = app.token_for(tenant_b, &[Role::Admin]);
    let mut checked = 0;
    for operation in operations(&app).await {
        if operation.is_platform() {
            continue;
        }
        let (status, text, sent) = call(&app, &a, &operation, Some(&b_admin)).await;
        let name = operation.name();
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {text}");
        if operation.has_path_ids() {
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
                "{name} with tenant A's ids and tenant B's token: {status} {text}"
            );
        } else if a.secrets.iter().any(|s| sent.contains(s.as_str())) {
            // A body naming A's reference data (a supplier, a product) is refused.
            assert!(
                status.is_client_error(),
                "{name} with A's ids in the body: {status} {text}"
            );
        }
        for secret in a.secrets.iter().filter(|s| !sent.contains(s.as_str())) {
            assert!(
                !text.contains(secret.as_str()),
                "{name} answered tenant B with tenant A's {secret:?}: {text}"
            );
        }
        checked += 1;
    }
    assert!(checked > 40, "{checked} routes checked");
}

#[tokio::test]
async fn every_route_answers_each_role_as_domain_md_says() {
    let (app, _tenant_b, a, _b) = two_tenants().await;
    let operations = operations(&app).await;
    let mut forbidden = 0;
    for role in TENANT_ROLES.into_iter().chain([Role::PlatformAdmin]) {
        let token = if role == Role::PlatformAdmin {
            app.keys.mint(
                "platform",
                None,
                None,
                vec![role],
                chrono::Duration::hours(1),
            )
        } else {
            app.token_for(app.tenant, &[role])
        };
        for operation in &operations {
            let allowed = may(role, action(operation));
            let (status, text, _) = call(&app, &a, operation, Some(&token)).await;
            let name = operation.name();
            assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{name}: {text}");
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{role:?} {name}: {text}");
            if allowed {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role:?} may {name} (DOMAIN.md): {text}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{role:?} may not {name} (DOMAIN.md): {text}"
                );
                forbidden += 1;
            }
        }
    }
    assert!(forbidden > 100, "{forbidden} forbidden calls checked");
}

/// A token with `header` and `claims`, signed HS256/384 with `secret` (or unsigned).
fn forge(header: Value, claims: Value, secret: Option<&[u8]>) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match (secret, header["alg"].as_str()) {
        (Some(secret), Some("HS384")) => {
            let mut mac = Hmac::<sha2::Sha384>::new_from_slice(secret).unwrap();
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        (Some(secret), _) => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
            mac.update(signing_input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        (None, _) => String::new(),
    };
    format!("{signing_input}.{signature}")
}

#[tokio::test]
async fn every_route_refuses_every_bad_token_with_401() {
    let app = spawn_app().await;
    let a = Fixture::create(&app, "Alphasecret").await;
    let now = chrono::Utc::now().timestamp();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let secret = SECRET.as_bytes();
    let tenant_claims = json!({"sub": "mallory", "tenant": app.tenant, "roles": ["admin"],
                               "exp": now + 600, "iat": now - 10});
    let platform_claims = json!({"sub": "mallory", "roles": ["platform_admin"],
                                 "exp": now + 600, "iat": now - 10});
    // The controls: this forging signs tokens the service accepts.
    for (path, claims) in [
        ("/api/v1/suppliers", &tenant_claims),
        ("/api/v1/tenants", &platform_claims),
    ] {
        let token = forge(hs256.clone(), claims.clone(), Some(secret));
        let response = app.request(Method::GET, path, &token).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the control token works on {path}"
        );
    }
    let cases = |good: &Value, tenant_route: bool| -> Vec<(&'static str, Option<String>)> {
        let with = |key: &str, value: Value| {
            let mut c = good.clone();
            if value.is_null() {
                c.as_object_mut().unwrap().remove(key);
            } else {
                c[key] = value;
            }
            forge(hs256.clone(), c, Some(secret))
        };
        let mut cases = vec![
            (
                "alg none",
                Some(forge(
                    json!({"alg": "none", "typ": "JWT"}),
                    good.clone(),
                    None,
                )),
            ),
            (
                "HS384",
                Some(forge(
                    json!({"alg": "HS384", "typ": "JWT"}),
                    good.clone(),
                    Some(secret),
                )),
            ),
            (
                "wrong secret",
                Some(forge(
                    hs256.clone(),
                    good.clone(),
                    Some(b"not-the-secret-of-this-service!!"),
                )),
            ),
            ("expired", Some(with("exp", json!(now - 60)))),
            ("not yet valid", Some(with("nbf", json!(now + 600)))),
            ("issued in the future", Some(with("iat", json!(now + 600)))),
            ("no exp", Some(with("exp", Value::Null))),
            ("no sub", Some(with("sub", Value::Null))),
            ("empty sub", Some(with("sub", json!("")))),
            ("garbage", Some("not.a.token".to_string())),
            ("no token", None),
        ];
        if tenant_route {
            cases.push(("no tenant", Some(with("tenant", Value::Null))));
            cases.push((
                "a tenant that does not exist",
                Some(with("tenant", json!(Uuid::new_v4()))),
            ));
        }
        cases
    };
    let tenant_cases = cases(&tenant_claims, true);
    let platform_cases = cases(&platform_claims, false);
    let mut checked = 0;
    for operation in operations(&app).await {
        let cases = if operation.is_platform() {
            &platform_cases
        } else {
            &tenant_cases
        };
        for (case, token) in cases {
            let (status, text, _) = call(&app, &a, &operation, token.as_deref()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{case}: {}: {text}",
                operation.name()
            );
            checked += 1;
        }
    }
    assert!(checked > 400, "{checked} calls checked");
}

#[tokio::test]
async fn an_analyst_of_tenant_b_sees_no_row_of_tenant_a_in_any_table_or_view() {
    let (app, tenant_b, a, b) = two_tenants().await;
    // Both tenants' read models are projected (spawn_app catches up from the store).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let projected: i64 = sqlx::query_scalar(
            "select count(distinct tenant_id) from read.sales_orders where tenant_id = any($1)",
        )
        .bind(vec![app.tenant, tenant_b])
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if projected == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not projected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let login = format!("analyst_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(["analyst", "create-login", "--database-url"])
        .arg(database_url(&database))
        .args(["--tenant", &tenant_b.to_string(), "--name", &login])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let password = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password: ").map(|p| p.trim().to_string()))
        .expect("the password is printed");
    let mut analyst = sqlx::PgConnection::connect(&database_url(&database).replacen(
        "postgres@",
        &format!("{login}:{password}@"),
        1,
    ))
    .await
    .expect("the analyst can connect");
    // Every relation of the read schema, from the catalogue: a new read model is covered.
    let relations: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'read' and c.relkind in ('r', 'p', 'v', 'm')
          order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(relations.len() > 10, "{relations:?}");
    let mut seen_own = 0;
    for relation in &relations {
        let rows: Result<Vec<String>, _> =
            sqlx::query_scalar(&format!("select to_jsonb(r)::text from read.{relation} r"))
                .fetch_all(&mut analyst)
                .await;
        let rows = match rows {
            Ok(rows) => rows,
            // Out of the analyst's reach altogether (the login table): nothing to leak.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => continue,
            Err(e) => panic!("{relation}: {e}"),
        };
        for row in &rows {
            for secret in &a.secrets {
                assert!(
                    !row.contains(secret.as_str()),
                    "tenant B's analyst sees tenant A's {secret:?} in read.{relation}: {row}"
                );
            }
        }
        if rows
            .iter()
            .any(|r| b.secrets.iter().any(|s| r.contains(s.as_str())))
        {
            seen_own += 1;
        }
    }
    // The control: the analyst does see its own tenant's rows.
    assert!(
        seen_own >= 5,
        "the analyst sees its own rows in {seen_own} relations"
    );
    drop(analyst);
    let mut admin = app.pool.acquire().await.unwrap();
    oms_projections::analysts::drop_login(&mut admin, tenant_b, &login)
        .await
        .unwrap();
}
