//! `spawn_app()`: the service on a random port over a fresh database, and typed helpers for
//! calling it as a client would.

use oms::auth::{Role, TokenKeys};
use oms::config::Config;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

#[path = "../common_db.rs"]
mod common_db;
pub use common_db::*;

/// The secret test tokens are signed with.
pub const SECRET: &str = "test-secret";

/// A running service and what a test needs to call it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A pool on the app's database, for assertions on what was (not) written.
    pub pool: PgPool,
    /// The app's tenant for most tests.
    pub tenant: Uuid,
    /// Signs test tokens.
    pub keys: TokenKeys,
    /// The HTTP client.
    pub client: Client,
}

/// Starts the service over a fresh database with one tenant.
pub async fn spawn_app() -> TestApp {
    let (name, pool) = fresh_database(40).await;
    spawn_app_on(&database_url(&name), pool).await
}

/// Starts the service over `database_url` (whose database is already migrated); `pool` is the
/// test's own view of that database.
pub async fn spawn_app_on(database_url: &str, pool: PgPool) -> TestApp {
    let mut config = Config::local(database_url, SECRET);
    config.acquire_timeout = std::time::Duration::from_secs(2);
    let app_pool = oms::app::pool(&config).expect("a valid URL");
    let state = oms::app::state(app_pool, &config, None);
    let app = oms::api::Application::build(config.bind, state)
        .await
        .expect("bind a port");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let tenant = oms::tenants::create(
        &pool,
        "Acme Meats",
        &format!("acme-{}", Uuid::new_v4().simple()),
    )
    .await
    .expect("create the tenant")
    .id;
    TestApp {
        address,
        pool,
        tenant,
        keys: TokenKeys::new(SECRET),
        client: Client::new(),
    }
}

impl TestApp {
    /// A token for `tenant` with `roles`.
    pub fn token_for(&self, tenant: Uuid, roles: &[Role]) -> String {
        self.keys.mint(
            "mary",
            Some("Mary Jones"),
            Some(tenant),
            roles.to_vec(),
            chrono::Duration::hours(1),
        )
    }

    /// An admin token of the app's tenant.
    pub fn admin(&self) -> String {
        self.token_for(self.tenant, &[Role::Admin])
    }

    /// A request with `token`.
    pub fn request(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token)
    }

    /// POST a JSON body as admin.
    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, &self.admin())
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// PATCH a JSON body as admin.
    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, &self.admin())
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// GET as admin.
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &self.admin())
            .send()
            .await
            .expect("request sent")
    }

    /// POST as admin and return the JSON body, asserting the status.
    pub async fn post_ok(&self, path: &str, body: Value, status: StatusCode) -> Value {
        let response = self.post(path, body).await;
        expect_json(response, status).await
    }

    /// How many events the app's tenant has.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events where tenant_id = $1")
            .bind(self.tenant)
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// Every row count that a command could change, for "nothing was written" assertions.
    pub async fn write_footprint(&self) -> (i64, i64, i64, i64) {
        sqlx::query_as(
            "select (select count(*) from events), (select count(*) from unique_keys),
                    (select count(*) from idempotency_keys),
                    (select coalesce(sum(position), 0)::bigint from tenant_heads)",
        )
        .fetch_one(&self.pool)
        .await
        .expect("footprint")
    }

    /// Registers a supplier, a product, and returns their ids.
    pub async fn reference_data(&self) -> (String, String) {
        let supplier = self
            .post_ok(
                "/api/v1/suppliers",
                json!({"name": "Prairie Packers", "code": "PRA", "payment_terms": "wire", "credit_terms": "net_30"}),
                StatusCode::CREATED,
            )
            .await;
        let product = self
            .post_ok(
                "/api/v1/products",
                json!({"code": "BF-8020", "description": "Beef trim 80/20", "protein": "beef", "uom": "LB"}),
                StatusCode::CREATED,
            )
            .await;
        (id_of(&supplier), id_of(&product))
    }

    /// Registers a customer and returns its id.
    pub async fn customer(&self) -> String {
        let customer = self
            .post_ok(
                "/api/v1/customers",
                json!({"name": "Metro Grocers", "code": "MET"}),
                StatusCode::CREATED,
            )
            .await;
        id_of(&customer)
    }

    /// Creates a draft purchase order with one line of `weight` × `price`.
    pub async fn draft_po(
        &self,
        supplier: &str,
        product: &str,
        weight: &str,
        price: &str,
    ) -> Value {
        self.post_ok(
            "/api/v1/purchase-orders",
            json!({
                "supplier_id": supplier, "order_date": "2026-11-02",
                "lines": [{"product_id": product, "weight": weight, "price_per_unit": price}]
            }),
            StatusCode::CREATED,
        )
        .await
    }
}

/// The `id` field of a JSON body.
pub fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("the body has an id").to_string()
}

/// Asserts the status and returns the JSON body.
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts a problem+json response with `status` and returns it.
pub async fn expect_problem(response: Response, status: StatusCode) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = expect_json(response, status).await;
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}
