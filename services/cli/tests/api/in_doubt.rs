//! A connection that breaks at `COMMIT`: the service finds out whether the command committed
//! before it answers, and answers what happened.
//!
//! The service reaches Postgres through a small TCP relay of the test's own, which can cut the
//! command's connection at the `COMMIT` message — either before passing it on (Postgres rolls
//! the transaction back) or after Postgres has acknowledged it (the transaction committed, the
//! service never hears so).

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// sqlx commits with a simple query message: `Q`, its length (4 + 7), `COMMIT\0`.
const COMMIT_MESSAGE: &[u8] = b"Q\x00\x00\x00\x0bCOMMIT\x00";

/// What the relay does with the next `COMMIT` it sees.
const PASS: u8 = 0;
const CUT_BEFORE_COMMIT: u8 = 1;
const CUT_AFTER_COMMIT: u8 = 2;

/// A TCP relay to the test Postgres server that cuts one connection at `COMMIT` when armed.
struct CommitCutter {
    port: u16,
    mode: Arc<AtomicU8>,
}

impl CommitCutter {
    async fn start() -> Self {
        let upstream = upstream_address();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(PASS));
        let armed = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, armed.clone()));
            }
        });
        Self { port, mode }
    }

    /// Cuts the next connection that sends `COMMIT`, at `when`.
    fn arm(&self, when: u8) {
        self.mode.store(when, Ordering::SeqCst);
    }

    /// Whether the armed cut has happened.
    fn fired(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == PASS
    }

    /// The URL of database `name` through the relay (without TLS).
    fn database_url(&self, name: &str) -> String {
        let direct = database_url(name);
        let (_, rest) = direct.split_once('@').expect("a URL with a user");
        let (_, path) = rest.split_once('/').expect("a URL with a database");
        let (scheme_user, _) = direct.split_once('@').unwrap();
        // Plain text, so the relay can see the COMMIT message.
        format!(
            "{scheme_user}@127.0.0.1:{}/{path}?sslmode=disable",
            self.port
        )
    }
}

/// host:port of the test Postgres server.
fn upstream_address() -> String {
    let admin = admin_url();
    let host_part = admin.split_once('@').map_or(admin.as_str(), |(_, h)| h);
    host_part.split('/').next().unwrap().to_string()
}

async fn relay(client: TcpStream, server: TcpStream, mode: Arc<AtomicU8>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when this connection's COMMIT went through and its answer must be swallowed.
    let swallow_answer = Arc::new(AtomicU8::new(0));
    let swallow = swallow_answer.clone();
    let upward = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            if chunk
                .windows(COMMIT_MESSAGE.len())
                .any(|w| w == COMMIT_MESSAGE)
            {
                match mode.swap(PASS, Ordering::SeqCst) {
                    CUT_BEFORE_COMMIT => return, // Postgres never sees COMMIT: rolled back
                    CUT_AFTER_COMMIT => swallow.store(1, Ordering::SeqCst),
                    _ => {}
                }
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    let downward = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow_answer.load(Ordering::SeqCst) == 1 {
                return; // Postgres committed; the service never hears it
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending closes both: the service sees its connection break.
    tokio::select! {
        _ = upward => {}
        _ = downward => {}
    }
}

/// The app over a fresh database reached through a `CommitCutter`, with a supplier and a
/// product; commands are written by group commit or each in a transaction of its own.
async fn app_behind_cutter(group_commit: bool) -> (TestApp, CommitCutter, String, String) {
    let cutter = CommitCutter::start().await;
    let (name, pool) = fresh_database(10).await;
    let app = spawn_app_configured(&cutter.database_url(&name), pool, |config| {
        config.group_commit = group_commit;
    })
    .await;
    let (supplier, product) = app.reference_data().await;
    (app, cutter, supplier, product)
}

fn purchase_order(supplier: &str, product: &str) -> serde_json::Value {
    json!({
        "supplier_id": supplier, "order_date": "2026-11-02",
        "lines": [{"product_id": product, "weight": "1000", "price_per_unit": "2.00"}]
    })
}

async fn purchase_orders_created(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select count(*) from events
          where tenant_id = $1 and event_type = 'PurchaseOrderCreated'",
    )
    .bind(app.tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_command_whose_commit_was_not_acknowledged_is_answered_as_committed() {
    // Alone, and in a batch (resolved through the batch's idempotency record).
    for group_commit in [false, true] {
        not_acknowledged_is_answered_as_committed(group_commit).await;
    }
}

async fn not_acknowledged_is_answered_as_committed(group_commit: bool) {
    let (app, cutter, supplier, product) = app_behind_cutter(group_commit).await;
    assert_eq!(purchase_orders_created(&app).await, 0);

    let send = || {
        app.request(
            reqwest::Method::POST,
            "/api/v1/purchase-orders",
            &app.admin(),
        )
        .header("x-request-id", "in-doubt-committed-1")
        .json(&purchase_order(&supplier, &product))
        .send()
    };

    cutter.arm(CUT_AFTER_COMMIT);
    let response = send().await.unwrap();

    assert!(cutter.fired(), "the connection was cut at COMMIT");
    let created = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(purchase_orders_created(&app).await, 1);
    assert_eq!(created["order_number"], "PO-000001");

    // The same request again (same X-Request-Id, same body) is the first answer, not a second
    // order.
    let again = send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let replayed = expect_json(again, StatusCode::CREATED).await;
    assert_eq!(replayed["id"], created["id"]);
    assert_eq!(purchase_orders_created(&app).await, 1);
}

#[tokio::test]
async fn a_command_whose_commit_never_reached_postgres_is_503_and_wrote_nothing() {
    let (app, cutter, supplier, product) = app_behind_cutter(false).await;
    let before = app.write_footprint().await;

    cutter.arm(CUT_BEFORE_COMMIT);
    let response = app
        .post(
            "/api/v1/purchase-orders",
            purchase_order(&supplier, &product),
        )
        .await;

    assert!(cutter.fired(), "the connection was cut at COMMIT");
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(app.write_footprint().await, before);
    assert_eq!(purchase_orders_created(&app).await, 0);

    // Postgres is fine: the retry goes through, once.
    let retried = app
        .post(
            "/api/v1/purchase-orders",
            purchase_order(&supplier, &product),
        )
        .await;
    expect_json(retried, StatusCode::CREATED).await;
    assert_eq!(purchase_orders_created(&app).await, 1);
}

#[tokio::test]
async fn a_batch_whose_commit_never_reached_postgres_is_found_rolled_back_and_its_command_runs_alone_once(
) {
    let (app, cutter, supplier, product) = app_behind_cutter(true).await;

    cutter.arm(CUT_BEFORE_COMMIT);
    let response = app
        .post(
            "/api/v1/purchase-orders",
            purchase_order(&supplier, &product),
        )
        .await;

    // The batch's record says it did not commit: the command ran again in a transaction of
    // its own, and was written once, with the first number.
    assert!(cutter.fired(), "the connection was cut at COMMIT");
    let created = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(created["order_number"], "PO-000001");
    assert_eq!(purchase_orders_created(&app).await, 1);
    let numbers: i64 = sqlx::query_scalar(
        "select last_value from number_series where tenant_id = $1 and series = 'purchase_order'",
    )
    .bind(app.tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(numbers, 1);
    assert_eq!(counter(&app, "oms_group_commit_alone_total").await, 1.0);
}

#[tokio::test]
async fn a_request_id_reused_for_another_request_is_422() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let first = app
        .request(
            reqwest::Method::POST,
            "/api/v1/purchase-orders",
            &app.admin(),
        )
        .header("x-request-id", "reused-request-id")
        .json(&purchase_order(&supplier, &product))
        .send()
        .await
        .unwrap();
    expect_json(first, StatusCode::CREATED).await;
    let before = app.write_footprint().await;

    let other = app
        .request(reqwest::Method::POST, "/api/v1/customers", &app.admin())
        .header("x-request-id", "reused-request-id")
        .json(&json!({"name": "Metro Grocers"}))
        .send()
        .await
        .unwrap();

    let problem = expect_problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "X-Request-Id", "{problem}");
    assert_eq!(app.write_footprint().await, before);
}
