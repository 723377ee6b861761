//! `spawn_app()`: the service on a random port over a fresh database, and typed helpers for
//! calling it as a client would.

use oms_api::auth::{Role, TokenKeys};
use oms_api::config::Config;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

#[path = "../../../store/tests/common_db.rs"]
mod common_db;
pub use common_db::*;

/// The secret test tokens are signed with.
pub const SECRET: &str = "test-secret";

/// The key test anchors are signed with (what `OMS_ANCHOR_KEY` holds in production).
pub const ANCHOR_KEY: &str = "test-anchor-key-of-at-least-32-bytes";

/// [`ANCHOR_KEY`] as the relay and the verifier take it.
pub fn test_anchor_key() -> oms_store::audit::AnchorKey {
    oms_store::audit::AnchorKey::new(ANCHOR_KEY).expect("a long enough key")
}

/// What the tests verify anchors with: [`ANCHOR_KEY`] and the default bound.
pub fn test_anchor_policy() -> oms_store::audit::AnchorPolicy {
    oms_store::audit::AnchorPolicy {
        keys: vec![test_anchor_key()],
        max_age: oms_store::audit::DEFAULT_MAX_ANCHOR_AGE,
    }
}

/// A running service and what a test needs to call it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The operator's listener, serving `/metrics` (`http://127.0.0.1:<port>`).
    pub metrics_address: String,
    /// A pool on the app's database, for assertions on what was (not) written.
    pub pool: PgPool,
    /// The app's tenant for most tests.
    pub tenant: Uuid,
    /// Signs test tokens.
    pub keys: TokenKeys,
    /// The HTTP client.
    pub client: Client,
}

/// Starts the service over a fresh database with one tenant, with the read models kept up to
/// date straight from the event store (no NATS: for tests of the API itself).
pub async fn spawn_app() -> TestApp {
    let app = spawn_api().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    tokio::spawn(async move {
        loop {
            let _ = oms_projector::catch_up_all(&store, 500).await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    app
}

/// Starts the service over a fresh database with one tenant and nothing that projects.
pub async fn spawn_api() -> TestApp {
    let (name, pool) = fresh_database(40).await;
    spawn_app_on(&database_url(&name), pool).await
}

/// Starts the service over `database_url` (whose database is already migrated); `pool` is the
/// test's own view of that database.
pub async fn spawn_app_on(database_url: &str, pool: PgPool) -> TestApp {
    spawn_app_configured(database_url, pool, |_| {}).await
}

/// Starts the service over a fresh database with one tenant and a configuration changed by
/// `configure` (nothing projects).
pub async fn spawn_api_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (name, pool) = fresh_database(40).await;
    spawn_app_configured(&database_url(&name), pool, configure).await
}

/// Starts the service over the database at `database_url` (reached also through `pool`) with
/// one tenant and a configuration changed by `configure` (nothing projects).
pub async fn spawn_app_configured(
    database_url: &str,
    pool: PgPool,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    spawn_app_with_nats(database_url, pool, configure, None).await
}

/// Starts the service over a fresh database with one tenant, connected to NATS through
/// `nats` (the anchors of `GET /audit/verify`), with a configuration changed by `configure`.
pub async fn spawn_api_on_nats(
    nats: async_nats::Client,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let (name, pool) = fresh_database(40).await;
    spawn_app_with_nats(&database_url(&name), pool, configure, Some(nats)).await
}

async fn spawn_app_with_nats(
    database_url: &str,
    pool: PgPool,
    configure: impl FnOnce(&mut Config),
    nats: Option<async_nats::Client>,
) -> TestApp {
    let mut config = Config::local(database_url, SECRET);
    config.acquire_timeout = std::time::Duration::from_secs(2);
    config.anchor_keys = vec![test_anchor_key()];
    configure(&mut config);
    let app_pool = config.pool().expect("a valid URL");
    let state = oms_api::AppState::new(app_pool, &config, nats, Default::default());
    let operator = oms_api::Application::build_operator(config.bind, state.clone())
        .await
        .expect("bind a port");
    let metrics_address = format!("http://127.0.0.1:{}", operator.port());
    tokio::spawn(operator.run_until_stopped(std::future::pending()));
    let app = oms_api::Application::build(config.bind, state)
        .await
        .expect("bind a port");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let tenant = oms_store::tenants::create(
        &pool,
        "Acme Meats",
        &format!("acme-{}", Uuid::new_v4().simple()),
    )
    .await
    .expect("create the tenant")
    .id;
    TestApp {
        address,
        metrics_address,
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
        self.post_as(&self.admin(), path, body).await
    }

    /// POST a JSON body with `token` (another role, or another tenant's).
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, token)
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

    /// Holds the head rows of `tenants` in a transaction of its own until it ends: the
    /// commands sent meanwhile queue up for group commit and are written in shared
    /// transactions once it lets go.
    pub async fn hold_heads(&self, tenants: &[Uuid]) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut hold = self.pool.begin().await.unwrap();
        sqlx::query("select 1 from tenant_heads where tenant_id = any($1) for update")
            .bind(tenants)
            .fetch_all(&mut *hold)
            .await
            .unwrap();
        hold
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

    /// Creates the sales order `body` describes and confirms it; its base path and first line's
    /// id.
    pub async fn confirmed_so(&self, body: Value) -> (String, String) {
        let so = self
            .post_ok("/api/v1/sales-orders", body, StatusCode::CREATED)
            .await;
        let base = format!("/api/v1/sales-orders/{}", id_of(&so));
        self.post_ok(&format!("{base}/confirm"), json!({}), StatusCode::OK)
            .await;
        let line = so["lines"][0]["line_id"].as_str().unwrap().to_string();
        (base, line)
    }

    /// On the draft order at `base` (its path), adds `line`, changes its weight to `weight`
    /// and deletes it again, each answered 2xx: an order's three line events in one call.
    pub async fn add_change_and_remove_a_line(&self, base: &str, line: Value, weight: &str) {
        let added = self
            .post_ok(&format!("{base}/lines"), line, StatusCode::CREATED)
            .await;
        let extra = added["lines"][1]["line_id"].as_str().unwrap().to_string();
        expect_json(
            self.patch(
                &format!("{base}/lines/{extra}"),
                json!({ "weight": weight }),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        let removed = self
            .request(
                Method::DELETE,
                &format!("{base}/lines/{extra}"),
                &self.admin(),
            )
            .send()
            .await
            .unwrap();
        expect_json(removed, StatusCode::OK).await;
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

#[path = "../common_nats.rs"]
mod common_nats;
pub use common_nats::NatsServer;

use oms_projector::{Projector, ProjectorConfig};
use oms_relay::{Relay, RelayConfig};
use oms_store::EventStore;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The service with its read side: the API, a nats-server of the test's own, and relay and
/// projector tasks the test can stop and start.
pub struct Stack {
    /// The API and the database.
    pub app: TestApp,
    /// The test's nats-server.
    pub nats: NatsServer,
    /// JetStream on it.
    pub jetstream: async_nats::jetstream::Context,
    /// The event store over the app's database.
    pub store: EventStore,
    relays: Vec<(CancellationToken, JoinHandle<()>)>,
    projectors: Vec<(CancellationToken, JoinHandle<()>)>,
}

/// A relay configuration for tests: quick polling.
pub fn test_relay_config() -> RelayConfig {
    RelayConfig {
        poll_interval: Duration::from_millis(50),
        ack_timeout: Duration::from_secs(2),
        ..RelayConfig::default()
    }
}

/// A projector configuration for tests: quick sweeps and redeliveries.
pub fn test_projector_config() -> ProjectorConfig {
    ProjectorConfig {
        ack_wait: Duration::from_secs(2),
        sweep_interval: Duration::from_millis(300),
        ..ProjectorConfig::default()
    }
}

/// Starts the API, a nats-server, one relay and one projector.
pub async fn spawn_stack() -> Stack {
    let app = spawn_api().await;
    let nats = NatsServer::start();
    let jetstream = async_nats::jetstream::new(nats.client().await);
    oms_relay::ensure_stream(&jetstream, &test_relay_config())
        .await
        .expect("create the stream");
    let store = EventStore::new(app.pool.clone());
    let mut stack = Stack {
        app,
        nats,
        jetstream,
        store,
        relays: Vec::new(),
        projectors: Vec::new(),
    };
    stack.start_relay();
    stack.start_projector();
    stack
}

impl Stack {
    /// A relay over this stack's store and NATS.
    pub fn relay(&self) -> Relay {
        Relay::new(
            self.store.clone(),
            self.jetstream.clone(),
            test_relay_config(),
        )
    }

    /// A projector over this stack's store and NATS.
    pub fn projector(&self) -> Projector {
        Projector::new(
            self.store.clone(),
            self.jetstream.clone(),
            test_projector_config(),
        )
    }

    /// Starts one more relay task.
    pub fn start_relay(&mut self) {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let relay = self.relay();
        let task = tokio::spawn(async move {
            let _ = relay.run(stopped).await;
        });
        self.relays.push((stop, task));
    }

    /// Starts one more projector task.
    pub fn start_projector(&mut self) {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let projector = self.projector();
        let task = tokio::spawn(async move {
            let _ = projector.run(stopped).await;
        });
        self.projectors.push((stop, task));
    }

    /// Aborts every relay task at once (as a crash would).
    pub fn abort_relays(&mut self) {
        for (_, task) in self.relays.drain(..) {
            task.abort();
        }
    }

    /// Aborts every projector task at once.
    pub fn abort_projectors(&mut self) {
        for (_, task) in self.projectors.drain(..) {
            task.abort();
        }
    }

    /// Waits until every read model of `tenant` has reached its head (panics after `limit`).
    pub async fn wait_projected(&self, tenant: Uuid, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let head = self
                .store
                .head(tenant)
                .await
                .unwrap()
                .map(|h| h.position)
                .unwrap_or(0);
            let projected =
                oms_projections::checkpoints::read_models_position(&self.app.pool, tenant)
                    .await
                    .unwrap();
            if projected >= head {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "read models of {tenant} stuck at {projected} of {head}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The relay's checkpoint of `tenant`.
    pub async fn relay_checkpoint(&self, tenant: Uuid) -> i64 {
        sqlx::query_scalar(
            "select coalesce((select position from relay_checkpoints where tenant_id = $1), 0)",
        )
        .bind(tenant)
        .fetch_one(&self.app.pool)
        .await
        .unwrap()
    }

    /// Every message in the stream, in stream order, as (tenant, position).
    pub async fn stream_positions(&self) -> Vec<(Uuid, i64)> {
        use futures::StreamExt;
        let mut stream = self.jetstream.get_stream("OMS_EVENTS").await.unwrap();
        let total = stream.info().await.unwrap().state.messages;
        let name = format!("check-{}", Uuid::new_v4().simple());
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                name: Some(name),
                ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::new();
        if total == 0 {
            return out;
        }
        let mut messages = consumer
            .fetch()
            .max_messages(usize::try_from(total).unwrap())
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(message)) = messages.next().await {
            let event: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
            out.push((event.tenant_id, event.position));
            if u64::try_from(out.len()).unwrap() >= total {
                break;
            }
        }
        out
    }

    /// Every read-model table's rows, ordered, as JSON (for row-for-row comparisons).
    pub async fn read_model_snapshot(&self) -> Vec<(String, serde_json::Value)> {
        read_model_snapshot(&self.app.pool).await
    }

    /// Empties the read models and their checkpoints, and applies the whole event store again
    /// with the projector's own code, sequentially (the reference a running system must equal).
    pub async fn rebuild_from_store(&self) {
        for projection in oms_projections::Projection::ALL {
            for table in projection.tables() {
                sqlx::query(&format!("truncate read.{table}"))
                    .execute(&self.app.pool)
                    .await
                    .unwrap();
            }
        }
        sqlx::query("truncate read.checkpoints")
            .execute(&self.app.pool)
            .await
            .unwrap();
        let tenants: Vec<Uuid> = sqlx::query_scalar("select tenant_id from tenant_heads")
            .fetch_all(&self.app.pool)
            .await
            .unwrap();
        for tenant in tenants {
            for projection in oms_projections::Projection::ALL {
                oms_projector::catch_up(&self.store, projection, tenant, 1000)
                    .await
                    .unwrap();
            }
        }
    }
}

/// Every read-model table's rows, ordered, as JSON (for row-for-row comparisons).
pub async fn read_model_snapshot(pool: &PgPool) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for projection in oms_projections::Projection::ALL {
        for table in projection.tables() {
            let rows: serde_json::Value = sqlx::query_scalar(&format!(
                "select coalesce(json_agg(to_jsonb(t) order by to_jsonb(t)::text), '[]'::json)::jsonb from read.{table} t"
            ))
            .fetch_one(pool)
            .await
            .unwrap();
            out.push((table.to_string(), rows));
        }
    }
    out
}

/// A nats-server of the test's own, like [`NatsServer`] (JetStream, a temporary store, a
/// random port, killed when dropped) but started from a configuration that sets its
/// `max_payload` — the largest message it takes, 1 MiB by default — to test what is too
/// large for it without megabytes of data.
pub struct LimitedNats {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LimitedNats {
    /// Starts a server whose `max_payload` is `max_payload` bytes.
    pub fn start(max_payload: usize) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:{port}\"\nmax_payload: {max_payload}\njetstream {{ store_dir: {:?} }}\n",
                dir.path().join("store")
            ),
        )
        .expect("write the nats-server configuration");
        let child = std::process::Command::new(nats_server_binary())
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client that keeps reconnecting.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }
}

impl Drop for LimitedNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nats-server binary the tests run, found as [`NatsServer`] finds it: `OMS_NATS_SERVER_BIN`,
/// else the first `nats-server` of at least 2.10 on `PATH` or in the project's `.tools/`.
pub fn nats_server_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("OMS_NATS_SERVER_BIN") {
        return path.into();
    }
    let new_enough = |binary: &std::path::Path| {
        let Ok(output) = std::process::Command::new(binary).arg("--version").output() else {
            return false;
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let version = text.trim().rsplit('v').next().unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 10)
    };
    let mut candidates: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../.tools/python/bin/nats-server"),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file() && new_enough(p))
        .expect("a nats-server >= 2.10 is needed: run the tests with `make test`, or set OMS_NATS_SERVER_BIN")
}

/// The operator listener's `/metrics`, as text (answered 200).
pub async fn metrics_text(app: &TestApp) -> String {
    let response = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// The value of an unlabelled counter on the operator listener's `/metrics`.
pub async fn counter(app: &TestApp, name: &str) -> f64 {
    metrics_text(app)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not on /metrics"))
        .trim()
        .parse()
        .unwrap()
}
