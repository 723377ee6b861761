//! Per-tenant isolation of delivery, and every role observable: one tenant whose events cannot
//! travel as they are never holds back another tenant's; an event larger than a NATS message is
//! delivered by reference and applied from the event store; a tenant whose publishes fail is
//! reported, backed off and retried while the others flow; and a relay or projector process
//! run alone serves its own metrics, health and readiness.

use crate::helpers::*;
use async_nats::jetstream;
use oms_api::auth::Role;
use oms_projector::{ProjectionLabel, Projector};
use oms_relay::{Relay, RelayConfig, TenantLabel};
use oms_store::EventStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How soon another tenant's event must be in NATS and in every read model once written.
const DELIVERY_BOUND: Duration = Duration::from_secs(1);

/// The API over a fresh database, with a relay and a projector of the test's own on `client`
/// (whose stream the test has created), kept so the test can read their metrics and health.
struct Pipeline {
    app: TestApp,
    store: EventStore,
    jetstream: jetstream::Context,
    relay: Relay,
    projector: Projector,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Pipeline {
    async fn start(app: TestApp, client: async_nats::Client, relay_config: RelayConfig) -> Self {
        let jetstream = jetstream::new(client);
        let store = EventStore::new(app.pool.clone());
        let relay = Relay::new(store.clone(), jetstream.clone(), relay_config);
        let projector = Projector::new(store.clone(), jetstream.clone(), test_projector_config());
        let stop = CancellationToken::new();
        let tasks = vec![
            tokio::spawn({
                let (relay, stop) = (relay.clone(), stop.clone());
                async move {
                    let _ = relay.run(stop).await;
                }
            }),
            tokio::spawn({
                let (projector, stop) = (projector.clone(), stop.clone());
                async move {
                    let _ = projector.run(stop).await;
                }
            }),
        ];
        Self {
            app,
            store,
            jetstream,
            relay,
            projector,
            stop,
            tasks,
        }
    }

    /// The relay's checkpoint of `tenant`: how far its events are acknowledged by NATS.
    async fn relayed(&self, tenant: Uuid) -> i64 {
        sqlx::query_scalar(
            "select coalesce((select position from relay_checkpoints where tenant_id = $1), 0)",
        )
        .bind(tenant)
        .fetch_one(&self.app.pool)
        .await
        .unwrap()
    }

    /// Waits until `tenant`'s events up to `position` are acknowledged by NATS and applied to
    /// every read model; returns how long that took from `since` (panics after `limit`).
    async fn delivered(
        &self,
        tenant: Uuid,
        position: i64,
        since: Instant,
        limit: Duration,
    ) -> Duration {
        loop {
            let relayed = self.relayed(tenant).await;
            let projected =
                oms_projections::checkpoints::read_models_position(&self.app.pool, tenant)
                    .await
                    .unwrap();
            if relayed >= position && projected >= position {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < limit,
                "tenant {tenant} at position {position}: relayed to {relayed}, projected to \
                 {projected} after {:?}",
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Five more tenants, each with one customer written through the API; asserts that each
    /// customer's event reached NATS and every read model within [`DELIVERY_BOUND`] of its
    /// write. Returns the tenants and their positions.
    async fn five_tenants_delivered_promptly(&self) -> Vec<(Uuid, i64)> {
        let mut written = Vec::new();
        for n in 0..5 {
            let tenant = oms_store::tenants::create(
                &self.app.pool,
                &format!("Other {n}"),
                &format!("other-{n}-{}", Uuid::new_v4().simple()),
            )
            .await
            .unwrap()
            .id;
            let token = self.app.token_for(tenant, &[Role::Admin]);
            let created = expect_json(
                self.app
                    .request(Method::POST, "/api/v1/customers", &token)
                    .json(&json!({"name": format!("Customer of tenant {n}")}))
                    .send()
                    .await
                    .unwrap(),
                StatusCode::CREATED,
            )
            .await;
            let at = Instant::now();
            let position = created["position"].as_i64().expect("a position");
            let took = self.delivered(tenant, position, at, DELIVERY_BOUND).await;
            eprintln!("tenant {n}: in NATS and the read models {took:?} after its write");
            written.push((tenant, position));
        }
        written
    }

    /// Every message in the stream, as (tenant, position), once each (asserted).
    async fn stream_positions(&self) -> Vec<(Uuid, i64)> {
        use futures::StreamExt;
        let mut stream = self.jetstream.get_stream("OMS_EVENTS").await.unwrap();
        let total = stream.info().await.unwrap().state.messages;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer
            .fetch()
            .max_messages(usize::try_from(total).unwrap())
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(Ok(message)) = messages.next().await {
            let event: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
            out.push((event.tenant_id, event.position));
            if u64::try_from(out.len()).unwrap() >= total {
                break;
            }
        }
        let mut unique = out.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), out.len(), "the stream holds an event twice");
        out
    }
}

/// A purchase order of `lines` lines appended straight to the store for `app`'s tenant (as an
/// event stored before the API refused events this large), made from a real one-line order's
/// `PurchaseOrderCreated` so that the read models take it. Returns its id and position.
async fn big_purchase_order(app: &TestApp, store: &EventStore, lines: usize) -> (Uuid, i64) {
    let (supplier, product) = app.reference_data().await;
    let model = id_of(&app.draft_po(&supplier, &product, "1", "1.00").await);
    let (payload, metadata, version): (Value, Value, String) = sqlx::query_as(
        "select payload, metadata, event_version from events
          where tenant_id = $1 and aggregate_id = $2 and sequence = 1",
    )
    .bind(app.tenant)
    .bind(Uuid::parse_str(&model).unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let mut created = payload.clone();
    let body = &mut created["Created"];
    let line = body["lines"][0].clone();
    assert_eq!(
        line["amount"],
        json!("1.00"),
        "a line of 1 × 1.00: {payload}"
    );
    body["lines"] = (0..lines)
        .map(|n| {
            let mut copy = line.clone();
            copy["line_id"] = json!(Uuid::now_v7());
            copy["description"] = json!(format!(
                "Line {n}: beef trim 80/20, fresh, boxed, 60 lb cases, lot to follow"
            ));
            copy
        })
        .collect();
    body["total"] = json!(format!("{lines}.00"));
    body["order_number"] = json!("BIG-000001");
    let id = Uuid::now_v7();
    let appended = store
        .append(
            app.tenant,
            vec![oms_store::NewEvent {
                aggregate_type: "purchase_order".into(),
                aggregate_id: id,
                sequence: 1,
                event_type: "PurchaseOrderCreated".into(),
                event_version: version,
                payload: created,
                metadata,
                unique_keys: Vec::new(),
                lot_movements: Vec::new(),
            }],
        )
        .await
        .unwrap();
    (id, appended.position)
}

#[tokio::test]
async fn one_tenants_unpublishable_event_does_not_delay_other_tenants() {
    // Arrange: a nats-server that carries at most 64 KiB per message, and a purchase order of
    // 600 lines (over 150 KB) already stored for tenant A.
    const MAX_PAYLOAD: usize = 64 * 1024;
    let nats = LimitedNats::start(MAX_PAYLOAD);
    let client = nats.client().await;
    oms_relay::ensure_stream(&jetstream::new(client.clone()), &test_relay_config())
        .await
        .unwrap();
    let pipeline = Pipeline::start(spawn_api().await, client.clone(), test_relay_config()).await;
    let app = &pipeline.app;
    let tenant_a = app.tenant;
    let (order, position) = big_purchase_order(app, &pipeline.store, 600).await;
    let stored: oms_store::StoredEvent =
        EventStore::events_between(&app.pool, tenant_a, position - 1, position + 1, 1)
            .await
            .unwrap()
            .remove(0);
    let size = serde_json::to_vec(&stored).unwrap().len();
    assert!(
        size > MAX_PAYLOAD,
        "the event is {size} bytes, not over {MAX_PAYLOAD}"
    );
    assert_eq!(
        client.max_payload(),
        MAX_PAYLOAD,
        "the server's advertised limit"
    );

    // Act: five other tenants write while A's big event is being relayed.
    let others = pipeline.five_tenants_delivered_promptly().await;

    // Assert: A's big event was delivered by reference and applied from the store.
    pipeline
        .delivered(tenant_a, position, Instant::now(), Duration::from_secs(20))
        .await;
    let document = expect_json(
        app.get(&format!("/api/v1/purchase-orders/{order}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(document["lines"].as_array().map(Vec::len), Some(600));
    assert_eq!(document["order_number"], "BIG-000001");
    let stream = pipeline.jetstream.get_stream("OMS_EVENTS").await.unwrap();
    let message = stream
        .get_last_raw_message_by_subject(&format!("oms.events.{tenant_a}.purchase_order.{order}"))
        .await
        .unwrap();
    assert_eq!(
        message.headers.get("Oms-Payload").map(|v| v.as_str()),
        Some("omitted")
    );
    assert_eq!(
        message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
        Some(format!("{tenant_a}:{position}").as_str())
    );
    assert!(message.payload.len() <= MAX_PAYLOAD);
    let reference: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(reference.payload, Value::Null);
    assert_eq!(
        (reference.position, &reference.hash),
        (position, &stored.hash)
    );

    // Every event of every tenant is in the stream, once; nothing failed.
    let in_stream = pipeline.stream_positions().await;
    for (tenant, position) in others.iter().chain([(tenant_a, position)].iter()) {
        assert!(
            in_stream.contains(&(*tenant, *position)),
            "{tenant}:{position} is not in the stream"
        );
    }
    let metrics = pipeline.relay.metrics();
    assert_eq!(metrics.by_reference.get(), 1);
    assert_eq!(
        metrics
            .failures
            .get_or_create(&TenantLabel {
                tenant: tenant_a.to_string()
            })
            .get(),
        0,
        "A's big event was not a failure"
    );
    assert_eq!(metrics.failing.get(), 0);
    assert!(
        pipeline.relay.failing().is_empty(),
        "{:?}",
        pipeline.relay.failing()
    );
    let projected_by_reference: u64 = oms_projections::Projection::ALL
        .iter()
        .map(|p| {
            pipeline
                .projector
                .metrics()
                .by_reference
                .get_or_create(&ProjectionLabel {
                    projection: p.name(),
                })
                .get()
        })
        .sum();
    assert!(
        projected_by_reference >= 1,
        "no projection read the big event from the store (the sweeper did the work)"
    );
}

#[tokio::test]
async fn a_tenant_whose_publishes_fail_is_reported_and_backed_off_while_the_others_flow() {
    // Arrange: a stream that refuses a second message on a subject (one aggregate), so that
    // tenant A's second event on its customer is refused by NATS, for A alone.
    let nats = NatsServer::start();
    let client = nats.client().await;
    let config = RelayConfig {
        retry_min: Duration::from_millis(200),
        retry_max: Duration::from_secs(2),
        ..test_relay_config()
    };
    let jetstream = jetstream::new(client.clone());
    let mut stream_config = jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec!["oms.events.>".into()],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        ..Default::default()
    };
    jetstream
        .create_stream(stream_config.clone())
        .await
        .unwrap();
    let pipeline = Pipeline::start(spawn_api().await, client, config).await;
    let app = &pipeline.app;
    let tenant_a = app.tenant;
    let created = app
        .post_ok(
            "/api/v1/customers",
            json!({"name": "Metro Grocers"}),
            StatusCode::CREATED,
        )
        .await;
    let customer = id_of(&created);
    let first = created["position"].as_i64().expect("a position");
    pipeline
        .delivered(tenant_a, first, Instant::now(), Duration::from_secs(10))
        .await;

    // Act: A's refused event, then five other tenants' writes.
    let response = app
        .patch(
            &format!("/api/v1/customers/{customer}"),
            json!({"name": "Metro Grocers Ltd"}),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let stuck = pipeline
        .store
        .head(tenant_a)
        .await
        .unwrap()
        .unwrap()
        .position;
    let failing_since = Instant::now();
    pipeline.five_tenants_delivered_promptly().await;

    // Assert: A is reported with its position and the reason, counted, and backed off (tried
    // a handful of times in two seconds, not at every 50 ms poll).
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(failing_since.elapsed())).await;
    assert_eq!(pipeline.relayed(tenant_a).await, stuck - 1);
    let failing = pipeline.relay.failing();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!((failing[0].tenant, failing[0].position), (tenant_a, stuck));
    assert!(
        failing[0].reason.contains("maximum messages per subject"),
        "{}",
        failing[0].reason
    );
    assert!(
        (2..=8).contains(&failing[0].attempts),
        "{} attempts in 2 s",
        failing[0].attempts
    );
    let metrics = pipeline.relay.metrics();
    let failures = metrics
        .failures
        .get_or_create(&TenantLabel {
            tenant: tenant_a.to_string(),
        })
        .get();
    assert_eq!(failures, u64::from(failing[0].attempts));
    assert_eq!(metrics.failing.get(), 1);

    // Act: NATS takes A's message again.
    stream_config.max_messages_per_subject = -1;
    stream_config.discard_new_per_subject = false;
    pipeline
        .jetstream
        .update_stream(stream_config)
        .await
        .unwrap();

    // Assert: A is retried within its backoff, delivered, and no longer reported.
    pipeline
        .delivered(tenant_a, stuck, Instant::now(), Duration::from_secs(10))
        .await;
    // The relay clears the mark when its round for the tenant returns, just after the
    // checkpoint the test saw was committed: allow it that moment, no more.
    let cleared_by = Instant::now() + Duration::from_secs(2);
    while !pipeline.relay.failing().is_empty() && Instant::now() < cleared_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(pipeline.relay.failing().is_empty());
    assert_eq!(metrics.failing.get(), 0);
}

/// An `oms serve --role <role>` process, killed if the test ends before it exits.
struct RoleProcess {
    child: std::process::Child,
    base: String,
    /// The operator's listener (`OMS_METRICS_BIND`), where `/metrics` is served.
    metrics: String,
}

impl RoleProcess {
    fn start(role: &str, database_url: &str, nats_url: &str) -> Self {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (port, metrics_port) = (free_port(), free_port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .args([
                "serve",
                "--role",
                role,
                "--bind",
                &format!("127.0.0.1:{port}"),
            ])
            .env_remove("OMS_BIND")
            .env_remove("OMS_METRICS_TOKEN")
            .env("OMS_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env(
                "OMS_JWT_SECRET",
                "a-test-secret-that-is-at-least-32-characters",
            )
            .env("OMS_DATA_KEY", "a-test-data-key-of-at-least-32-bytes-long")
            .env("OMS_ANCHOR_KEY", "a-test-anchor-key-of-at-least-32-bytes")
            .env("OMS_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("oms serve starts");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
        }
    }

    /// GET `path`, once it answers at all (bounded).
    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("oms serve exited early: {status}");
            }
            let base = if path == "/metrics" {
                &self.metrics
            } else {
                &self.base
            };
            if let Ok(response) = reqwest::get(format!("{base}{path}")).await {
                let status = response.status();
                return (status, response.text().await.unwrap());
            }
            assert!(Instant::now() < deadline, "{} never answered", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `path` until `done` holds for its body (bounded), and returns the body.
    async fn get_until(&mut self, path: &str, done: impl Fn(StatusCode, &str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(path).await;
            if done(status, &body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{}{path} never got there: {status}\n{body}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, and the exit status (bounded).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running 15 s after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of the sample `name` (with its labels, as written) in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn relay_and_projector_processes_serve_their_own_metrics_health_and_readiness() {
    // Arrange: the API in this process (nothing projects in it); a relay process and a
    // projector process of the real binary on the same database and NATS.
    let (name, pool) = fresh_database(10).await;
    let url = database_url(&name);
    let app = spawn_app_on(&url, pool).await;
    let nats = NatsServer::start();
    let mut relay = RoleProcess::start("relay", &url, &nats.url());
    let mut projector = RoleProcess::start("projector", &url, &nats.url());
    for process in [&mut relay, &mut projector] {
        assert_eq!(process.get("/health").await.0, StatusCode::OK);
        process
            .get_until("/ready", |status, _| status == StatusCode::OK)
            .await;
    }

    // Act: one command.
    app.post_ok(
        "/api/v1/customers",
        json!({"name": "Metro Grocers"}),
        StatusCode::CREATED,
    )
    .await;

    // Assert: each process counts its own part, and both serve the pipeline's lag.
    let tenant = app.tenant;
    let relayed = relay
        .get_until("/metrics", |_, body| {
            sample(body, "oms_relay_published_total") == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(&relayed, "oms_relay_failing_tenants"),
        Some(0.0),
        "{relayed}"
    );
    assert!(
        relayed.contains("# TYPE oms_relay_failures counter"),
        "{relayed}"
    );
    assert!(relayed.contains("oms_relay_lag_events"), "{relayed}");
    let projected = projector
        .get_until("/metrics", |_, body| {
            sample(body, r#"oms_projector_applied_total{projection="reference_data"}"#) == Some(1.0)
                && sample(
                    body,
                    &format!(r#"oms_projection_lag_events{{tenant="{tenant}",projection="reference_data"}}"#),
                ) == Some(0.0)
        })
        .await;
    assert!(
        projected.contains("# TYPE oms_projector_failures counter"),
        "{projected}"
    );
    let ready: Value = serde_json::from_str(
        &relay
            .get_until("/ready", |status, _| status == StatusCode::OK)
            .await,
    )
    .unwrap();
    assert_eq!(ready["role"], "relay");
    assert_eq!(ready["failing_tenants"], json!([]), "{ready}");
    assert_eq!(relay.get("/nowhere").await.0, StatusCode::NOT_FOUND);
    // The metrics name every tenant: on --bind they are not served without a metrics token.
    for process in [&relay, &projector] {
        let public = reqwest::get(format!("{}/metrics", process.base))
            .await
            .unwrap();
        assert_eq!(public.status(), StatusCode::NOT_FOUND);
    }

    // Both stop gracefully on SIGTERM.
    assert!(relay.terminate().await.success());
    assert!(projector.terminate().await.success());
}

#[tokio::test]
async fn an_11000_line_order_is_refused_and_other_tenants_are_delivered_within_a_second() {
    // Arrange: the service with its read side on a nats-server with the default 1 MiB limit,
    // and a purchase order of 11,000 lines — a 0.9 MB request, under the 1 MiB body limit,
    // whose event would be over 2 MB.
    let nats = NatsServer::start();
    let client = nats.client().await;
    oms_relay::ensure_stream(&jetstream::new(client.clone()), &test_relay_config())
        .await
        .unwrap();
    let pipeline = Pipeline::start(spawn_api().await, client, test_relay_config()).await;
    let app = &pipeline.app;
    let (supplier, product) = app.reference_data().await;
    let lines: Vec<Value> = (0..11_000)
        .map(|_| json!({"product_id": product, "weight": "1", "price_per_unit": "1.00"}))
        .collect();
    let body = json!({"supplier_id": supplier, "order_date": "2026-11-02", "lines": lines});
    let size = body.to_string().len();
    assert!((900_000..1_048_576).contains(&size), "{size} bytes");
    let before = app.write_footprint().await;

    // Act: the big order, then writes in five other tenants.
    let refused = app.post("/api/v1/purchase-orders", body).await;

    // Assert: refused with a problem, nothing written; every other tenant's event reaches NATS
    // and every read model within a second of its write.
    expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.write_footprint().await, before);
    let others = pipeline.five_tenants_delivered_promptly().await;
    assert_eq!(others.len(), 5);
}
