//! NATS is not a trust boundary: whoever can publish on the events' stream must not be able to
//! change a read model, freeze a tenant's projections, or reach another tenant. Each test
//! publishes forged messages as such an attacker would, on a real nats-server, while a real
//! relay and projector run.

use crate::helpers::*;
use async_nats::HeaderMap;
use oms_projections::Projection;
use oms_projector::{ProjectionLabel, Projector, ProjectorMetrics};
use oms_store::{EventStore, StoredEvent};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Registers a supplier named `name` with code `code` for the app's tenant; returns its id.
async fn supplier(app: &TestApp, name: &str, code: &str) -> Uuid {
    let body = app
        .post_ok(
            "/api/v1/suppliers",
            json!({"name": name, "code": code, "payment_terms": "wire", "credit_terms": "net_30"}),
            StatusCode::CREATED,
        )
        .await;
    Uuid::parse_str(&id_of(&body)).unwrap()
}

/// The stack's projector replaced by one whose counters the test can read.
fn own_projector(stack: &mut Stack) -> (ProjectorMetrics, CancellationToken) {
    stack.abort_projectors();
    let projector: Projector = stack.projector();
    let metrics = projector.metrics();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let _ = projector.run(stopped).await;
    });
    (metrics, stop)
}

/// One of the projector's counters, by projection.
type Counters = prometheus_client::metrics::family::Family<
    ProjectionLabel,
    prometheus_client::metrics::counter::Counter,
>;

/// A counter summed over every projection.
fn total(family: &Counters) -> u64 {
    Projection::ALL
        .into_iter()
        .map(|projection| {
            family
                .get_or_create(&ProjectionLabel {
                    projection: projection.name(),
                })
                .get()
        })
        .sum()
}

/// Waits until `condition` holds (panics after 10 s with `what`).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored event of `tenant` at `position`.
async fn stored(store: &EventStore, tenant: Uuid, position: i64) -> StoredEvent {
    EventStore::events_between(store.pool(), tenant, position - 1, position + 1, 1)
        .await
        .unwrap()
        .pop()
        .expect("the event is stored")
}

/// Publishes `event` as the attacker's message on `subject`, with the `Nats-Msg-Id` the relay
/// gives `(tenant, position)`; returns whether JetStream stored it (not a duplicate).
async fn publish_forged(
    stack: &Stack,
    subject: String,
    message_id: (Uuid, i64),
    event: &StoredEvent,
) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        oms_relay::message_id(message_id.0, message_id.1).as_str(),
    );
    let ack = stack
        .jetstream
        .publish_with_headers(subject, headers, serde_json::to_vec(event).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
    !ack.duplicate
}

/// `event` with its supplier's name replaced by `FORGED …` and a made-up hash.
fn forge(event: &StoredEvent) -> StoredEvent {
    let mut forged = event.clone();
    let payload = serde_json::to_string(&event.payload).unwrap();
    assert!(payload.contains("Prairie"), "{payload}");
    forged.payload = serde_json::from_str(&payload.replace("Prairie", "FORGED")).unwrap();
    forged.hash = vec![0xee; 32];
    forged
}

/// Every read-model row of every tenant, as text.
async fn every_read_model(stack: &Stack) -> String {
    serde_json::to_string(&stack.read_model_snapshot().await).unwrap()
}

async fn supplier_names(stack: &Stack, tenant: Uuid) -> Vec<String> {
    sqlx::query_scalar("select name from read.suppliers where tenant_id = $1 order by name")
        .bind(tenant)
        .fetch_all(&stack.app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_forged_event_that_takes_the_real_ones_message_id_first_changes_no_read_model() {
    let mut stack = spawn_stack().await;
    let (metrics, _stop) = own_projector(&mut stack);
    let tenant = stack.app.tenant;
    supplier(&stack.app, "Alpha Meats", "ALP").await;
    stack.wait_projected(tenant, Duration::from_secs(10)).await;

    // The relay is held back; the real event (position 2) is committed, and the attacker
    // publishes a forged one at checkpoint + 1 with the id the relay will use for it.
    stack.abort_relays();
    supplier(&stack.app, "Prairie Packers", "PRA").await;
    let real = stored(&stack.store, tenant, 2).await;
    assert!(
        publish_forged(
            &stack,
            oms_relay::subject(&real),
            (tenant, 2),
            &forge(&real)
        )
        .await
    );
    // Another forged one, at position 3 before that event exists at all.
    let mut early = forge(&real);
    early.position = 3;
    early.aggregate_id = Uuid::now_v7();
    assert!(publish_forged(&stack, oms_relay::subject(&early), (tenant, 3), &early).await);
    until("the early forgery is refused", || {
        total(&metrics.refused) >= 3
    })
    .await;
    supplier(&stack.app, "Prairie Farms", "PRF").await;

    // The relay now publishes the real events 2 and 3: JetStream drops both as duplicates.
    stack.start_relay();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.relay_checkpoint(tenant).await < 3 {
        assert!(std::time::Instant::now() < deadline, "the relay is stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stack
            .jetstream
            .get_stream("OMS_EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        3,
        "the stream holds event 1 and the two forgeries: the real 2 and 3 were dropped"
    );

    stack.wait_projected(tenant, Duration::from_secs(10)).await;
    assert_eq!(
        supplier_names(&stack, tenant).await,
        ["Alpha Meats", "Prairie Farms", "Prairie Packers"]
    );
    let everything = every_read_model(&stack).await;
    assert!(!everything.contains("FORGED"), "{everything}");
    // The read models equal a rebuild from the event store.
    let snapshot = stack.read_model_snapshot().await;
    stack.rebuild_from_store().await;
    assert_eq!(snapshot, stack.read_model_snapshot().await);
    // The forgery at 2 was noticed (its payload and hash disagree with the store's row).
    assert!(total(&metrics.forged) >= 1);
}

#[tokio::test]
async fn a_forged_position_beyond_the_head_or_of_no_tenant_is_refused_and_projections_go_on() {
    let mut stack = spawn_stack().await;
    let (metrics, _stop) = own_projector(&mut stack);
    let tenant = stack.app.tenant;
    supplier(&stack.app, "Prairie Packers", "PRA").await;
    stack.wait_projected(tenant, Duration::from_secs(10)).await;
    let real = stored(&stack.store, tenant, 1).await;

    // A position near 2^63 on the tenant's own subject: applied, it would move every
    // checkpoint there, and every later real event would be skipped as a duplicate.
    let mut far = forge(&real);
    far.position = i64::MAX;
    far.aggregate_id = Uuid::now_v7();
    assert!(publish_forged(&stack, oms_relay::subject(&far), (tenant, i64::MAX), &far).await);
    let mut far_less_one = far.clone();
    far_less_one.position = i64::MAX - 1;
    assert!(
        publish_forged(
            &stack,
            oms_relay::subject(&far_less_one),
            (tenant, i64::MAX - 1),
            &far_less_one
        )
        .await
    );
    // An event of a tenant that does not exist, on its own subject.
    let nobody = Uuid::now_v7();
    let mut ghost = forge(&real);
    ghost.tenant_id = nobody;
    assert!(publish_forged(&stack, oms_relay::subject(&ghost), (nobody, 1), &ghost).await);

    let each = u64::try_from(Projection::ALL.len()).unwrap();
    until("three forgeries refused by every projection", || {
        total(&metrics.refused) >= 3 * each
    })
    .await;
    // Refused and terminated: not redelivered, so counted exactly once per projection.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(total(&metrics.refused), 3 * each);
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"oms_projector_refused_total{projection="orders"} 3"#),
        "{text}"
    );

    // The checkpoints did not move, none was made for the tenant that does not exist …
    let checkpoints: Vec<(Uuid, i64)> =
        sqlx::query_as("select tenant_id, position from read.checkpoints")
            .fetch_all(&stack.app.pool)
            .await
            .unwrap();
    assert_eq!(checkpoints, vec![(tenant, 1); Projection::ALL.len()]);
    // … and the tenant's projections keep following its real events.
    supplier(&stack.app, "Alpha Meats", "ALP").await;
    supplier(&stack.app, "Bravo Beef", "BRA").await;
    stack.wait_projected(tenant, Duration::from_secs(10)).await;
    assert_eq!(
        supplier_names(&stack, tenant).await,
        ["Alpha Meats", "Bravo Beef", "Prairie Packers"]
    );
    assert_eq!(
        oms_projections::checkpoints::read_models_position(&stack.app.pool, tenant)
            .await
            .unwrap(),
        3
    );
    let everything = every_read_model(&stack).await;
    assert!(!everything.contains("FORGED"), "{everything}");
}

#[tokio::test]
async fn a_forged_event_naming_another_tenant_on_a_tenants_subject_reaches_no_read_model() {
    let mut stack = spawn_stack().await;
    let (metrics, _stop) = own_projector(&mut stack);
    let tenant_a = stack.app.tenant;
    let tenant_b = oms_store::tenants::create(
        &stack.app.pool,
        "Bravo Beef",
        &format!("bravo-{}", Uuid::new_v4().simple()),
    )
    .await
    .unwrap()
    .id;
    supplier(&stack.app, "Prairie Packers", "PRA").await;
    stack
        .wait_projected(tenant_a, Duration::from_secs(10))
        .await;
    let real = stored(&stack.store, tenant_a, 1).await;

    // On tenant A's subject, a body that names tenant B at B's next position (B has no events,
    // so its checkpoint is 0 and 1 is "checkpoint + 1"), and one at A's next position.
    for (position, message_id) in [(1, (tenant_b, 1)), (2, (tenant_a, 2))] {
        let mut forged = forge(&real);
        forged.tenant_id = tenant_b;
        forged.position = position;
        let subject = format!("oms.events.{tenant_a}.supplier.{}", forged.aggregate_id);
        assert!(publish_forged(&stack, subject, message_id, &forged).await);
    }
    let each = u64::try_from(Projection::ALL.len()).unwrap();
    until("both forgeries refused by every projection", || {
        total(&metrics.refused) >= 2 * each
    })
    .await;

    // A real event of A still applies; nothing of the forgery is in any read model, and B has
    // neither rows nor checkpoints.
    supplier(&stack.app, "Alpha Meats", "ALP").await;
    stack
        .wait_projected(tenant_a, Duration::from_secs(10))
        .await;
    assert_eq!(
        supplier_names(&stack, tenant_a).await,
        ["Alpha Meats", "Prairie Packers"]
    );
    assert!(supplier_names(&stack, tenant_b).await.is_empty());
    let b_checkpoints: i64 =
        sqlx::query_scalar("select count(*) from read.checkpoints where tenant_id = $1")
            .bind(tenant_b)
            .fetch_one(&stack.app.pool)
            .await
            .unwrap();
    assert_eq!(b_checkpoints, 0);
    let everything = every_read_model(&stack).await;
    assert!(!everything.contains("FORGED"), "{everything}");
}

/// The NATS server configuration of docs/operations.md ("NATS accounts and TLS") as written
/// there: the test runs what the operator is told to run.
fn documented_accounts() -> String {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .unwrap();
    let section = docs
        .split("## NATS accounts and TLS")
        .nth(1)
        .expect("docs/operations.md has the section");
    let block = section
        .split("```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section shows the server's configuration");
    block.to_string()
}

/// An `oms serve --role <role>` process connecting to NATS as `user`, killed when dropped.
struct Role {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Role {
    fn start(role: &str, database_url: &str, nats_url: &str, user: &str, password: &str) -> Self {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .args([
                "serve",
                "--role",
                role,
                "--bind",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .env_remove("OMS_BIND")
            .env_remove("OMS_METRICS_TOKEN")
            .env("OMS_METRICS_BIND", format!("127.0.0.1:{}", free_port()))
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("NATS_USER", user)
            .env("NATS_PASSWORD", password)
            .env(
                "OMS_JWT_SECRET",
                "a-test-secret-that-is-at-least-32-characters",
            )
            .env("OMS_DATA_KEY", "a-test-data-key-of-at-least-32-bytes-long")
            .env(
                "OMS_ANCHOR_KEY",
                "an-anchor-key-of-the-test-at-least-32-bytes",
            )
            .env("OMS_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("oms serve starts");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of `user`, whose requests give up after 2 s (a request the server's permissions
/// drop is never answered), and the server errors it is told of.
async fn client_of(
    url: &str,
    user: &str,
    password: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (errors, received) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |event| {
            let errors = errors.clone();
            async move {
                if let async_nats::Event::ServerError(err) = event {
                    let _ = errors.send(err.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|err| panic!("{user} connects: {err}"));
    (client, received)
}

#[tokio::test]
async fn the_documented_nats_accounts_let_the_stack_run_and_only_the_relay_publish() {
    const PASSWORDS: [(&str, &str); 4] = [
        ("OMS_NATS_RELAY_PASSWORD", "relay-password-1"),
        ("OMS_NATS_PROJECTOR_PASSWORD", "projector-password-2"),
        ("OMS_NATS_AUDITOR_PASSWORD", "auditor-password-3"),
        ("OMS_NATS_API_PASSWORD", "api-password-4"),
    ];
    let password = |user: &str| {
        PASSWORDS
            .iter()
            .find(|(name, _)| name.contains(&user.to_uppercase()))
            .unwrap()
            .1
    };
    let nats = NatsServer::start_with_config(&documented_accounts(), &PASSWORDS);
    let url = nats.url();
    let (name, pool) = fresh_database(10).await;
    let database_url = database_url(&name);
    let app = spawn_app_on(&database_url, pool).await;
    let tenant = app.tenant;

    // Without credentials, or with a wrong password, NATS refuses the connection.
    assert!(async_nats::ConnectOptions::new()
        .connect(url.as_str())
        .await
        .is_err());
    assert!(
        async_nats::ConnectOptions::with_user_and_password("relay".into(), "wrong".into())
            .connect(url.as_str())
            .await
            .is_err()
    );

    // The relay and the projector run as their users, from the environment.
    let relay = Role::start("relay", &database_url, &url, "relay", password("relay"));
    let (as_relay, _) = client_of(&url, "relay", password("relay")).await;
    let relay_js = async_nats::jetstream::new(as_relay);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while relay_js.get_stream("OMS_EVENTS").await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay made no stream: {}",
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let projector = Role::start(
        "projector",
        &database_url,
        &url,
        "projector",
        password("projector"),
    );
    supplier(&app, "Prairie Packers", "PRA").await;
    supplier(&app, "Alpha Meats", "ALP").await;
    let store = EventStore::new(app.pool.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let projected = oms_projections::checkpoints::read_models_position(&app.pool, tenant)
            .await
            .unwrap();
        let head = store.head(tenant).await.unwrap().map(|h| h.position);
        if head == Some(projected) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read models at {projected} of {head:?}\nrelay: {}\nprojector: {}",
            relay.logs(),
            projector.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<String> =
        sqlx::query_scalar("select name from read.suppliers where tenant_id = $1 order by name")
            .bind(tenant)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(names, ["Alpha Meats", "Prairie Packers"]);
    let messages = || async {
        relay_js
            .get_stream("OMS_EVENTS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };
    assert_eq!(messages().await, 2);

    // The projector's user may not publish an event (nor an anchor): the server refuses it
    // as a permissions violation, and the stream does not grow.
    let (as_projector, mut refusals) = client_of(&url, "projector", password("projector")).await;
    let real = stored(&store, tenant, 1).await;
    let mut forged = forge(&real);
    forged.position = 3;
    for subject in [oms_relay::subject(&forged), format!("oms.anchors.{tenant}")] {
        as_projector
            .publish(subject.clone(), serde_json::to_vec(&forged).unwrap().into())
            .await
            .unwrap();
        as_projector.flush().await.unwrap();
        let refusal = tokio::time::timeout(Duration::from_secs(5), refusals.recv())
            .await
            .unwrap_or_else(|_| panic!("no refusal of a publish on {subject}"))
            .unwrap();
        assert!(
            refusal.to_lowercase().contains("permissions violation") && refusal.contains(&subject),
            "{refusal}"
        );
    }
    assert_eq!(messages().await, 2);

    // The anchors are readable by the auditor, who cannot read the events; so is the api's
    // user (for GET /audit/verify), who cannot read the events either.
    let (as_auditor, _) = client_of(&url, "auditor", password("auditor")).await;
    let auditor_js = async_nats::jetstream::new(as_auditor);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let anchors = oms_relay::anchors::anchors(&auditor_js, tenant)
            .await
            .unwrap_or_else(|err| panic!("the auditor reads the anchors: {err}"));
        if !anchors.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no anchor: {}",
            relay.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(auditor_js.get_stream("OMS_EVENTS").await.is_err());
    let (as_api, _) = client_of(&url, "api", password("api")).await;
    let api_js = async_nats::jetstream::new(as_api);
    assert!(api_js.get_stream("OMS_EVENTS").await.is_err());
    assert!(!oms_relay::anchors::anchors(&api_js, tenant)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn credentials_in_the_nats_url_are_never_logged_even_at_trace() {
    let (name, _pool) = fresh_database(2).await;
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    // No server listens there: the client keeps trying, and logs each attempt.
    let nats_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args([
            "serve",
            "--role",
            "projector",
            "--bind",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env_remove("OMS_BIND")
        .env_remove("OMS_METRICS_TOKEN")
        .env("OMS_METRICS_BIND", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", database_url(&name))
        .env(
            "NATS_URL",
            format!("nats://relay:the-url-password@127.0.0.1:{nats_port}"),
        )
        .env(
            "OMS_JWT_SECRET",
            "a-test-secret-that-is-at-least-32-characters",
        )
        .env("OMS_DATA_KEY", "a-test-data-key-of-at-least-32-bytes-long")
        .env("OMS_LOG", "debug,async_nats=trace,sqlx=warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("oms serve starts");
    let port = nats_port.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        // Two connection attempts logged (async-nats logs the server it tries at debug).
        if text.matches(port.as_str()).count() >= 2 || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.matches(port.as_str()).count() >= 2,
        "no connection attempt logged: {text}"
    );
    assert!(!text.contains("the-url-password"), "{text}");
}
