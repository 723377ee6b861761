//! The read side end to end: relay to a real nats-server, projectors into the read models,
//! and the faults it must survive.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Creates a supplier, a product and a PO, then adds notes (starting a new PO every 50
/// events, so no single order's history grows long) until the tenant has `events` events.
/// Returns the first PO's id.
async fn workload(app: &TestApp, events: i64) -> String {
    let (supplier, product) = app.reference_data().await;
    let first = id_of(&app.draft_po(&supplier, &product, "100", "2.5").await);
    let mut id = first.clone();
    let mut have = app.event_count().await;
    while have < events {
        if have % 50 == 0 && events - have > 1 {
            id = id_of(&app.draft_po(&supplier, &product, "100", "2.5").await);
            have += 1;
            continue;
        }
        app.post_ok(
            &format!("/api/v1/purchase-orders/{id}/notes"),
            json!({"text": format!("note {have}")}),
            StatusCode::OK,
        )
        .await;
        have += 1;
    }
    first
}

#[tokio::test]
async fn relay_publishes_every_event_in_position_order_with_ids_and_headers() {
    let stack = spawn_stack().await;
    let app = &stack.app;
    workload(app, 20).await;
    stack
        .wait_projected(app.tenant, Duration::from_secs(20))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.relay_checkpoint(app.tenant).await < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let positions = stack.stream_positions().await;
    assert_eq!(
        positions,
        (1..=20).map(|p| (app.tenant, p)).collect::<Vec<_>>()
    );

    // One message looked at closely: subject, Nats-Msg-Id, headers.
    let stream = stack.jetstream.get_stream("OMS_EVENTS").await.unwrap();
    let raw = stream.get_raw_message(1).await.unwrap();
    let event: oms_store::StoredEvent = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(
        raw.subject.as_str(),
        format!(
            "oms.events.{}.{}.{}",
            app.tenant, event.aggregate_type, event.aggregate_id
        )
    );
    let headers = raw.headers;
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        format!("{}:1", app.tenant)
    );
    assert_eq!(headers.get("Oms-Position").unwrap().as_str(), "1");
    assert_eq!(headers.get("Oms-Sequence").unwrap().as_str(), "1");
    assert_eq!(
        headers.get("Oms-Event-Type").unwrap().as_str(),
        event.event_type
    );
}

#[tokio::test]
async fn a_relay_aborted_mid_publish_and_restarted_gets_every_event_applied_exactly_once() {
    let mut stack = spawn_stack().await;
    stack.abort_relays();
    stack.abort_projectors();
    workload(&stack.app, 1000).await;
    let tenant = stack.app.tenant;
    let pool = stack.app.pool.clone();

    // Relay until about half is out, then kill it mid-flight.
    stack.start_relay();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = stack.jetstream.get_stream("OMS_EVENTS").await.unwrap();
        if stream.info().await.unwrap().state.messages >= 400 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relay did not start publishing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stack.abort_relays();
    let checkpoint_at_crash = stack.relay_checkpoint(tenant).await;
    assert!(
        checkpoint_at_crash < 1000,
        "the relay finished before it was killed"
    );

    stack.start_relay();
    stack.start_projector();
    stack.wait_projected(tenant, Duration::from_secs(60)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stack.relay_checkpoint(tenant).await < 1000 {
        assert!(std::time::Instant::now() < deadline, "relay did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The stream holds each position once (republished ones were deduplicated by id).
    let positions: Vec<i64> = stack
        .stream_positions()
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(positions, (1..=1000).collect::<Vec<_>>());
    // Each order event is in the history exactly once.
    let history: Vec<i64> = sqlx::query_scalar(
        "select position from read.order_history where tenant_id = $1 order by position",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    let order_events: Vec<i64> = sqlx::query_scalar(
        "select position from events where tenant_id = $1 and aggregate_type = 'purchase_order' order by position",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(history, order_events);
    let snapshot = stack.read_model_snapshot().await;
    stack.rebuild_from_store().await;
    assert_eq!(snapshot, stack.read_model_snapshot().await);
}

#[tokio::test]
async fn nats_killed_while_commands_keep_coming_loses_and_doubles_nothing() {
    let mut stack = spawn_stack().await;
    let (supplier, product) = stack.app.reference_data().await;
    let po = stack.app.draft_po(&supplier, &product, "100", "2.5").await;
    let id = id_of(&po);
    for n in 0..150 {
        if n == 40 {
            stack.nats.kill();
        }
        if n == 110 {
            stack.nats.restart();
        }
        let response = stack
            .app
            .post(
                &format!("/api/v1/purchase-orders/{id}/notes"),
                json!({"text": format!("n{n}")}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "command {n} failed while NATS was down"
        );
    }
    stack
        .wait_projected(stack.app.tenant, Duration::from_secs(60))
        .await;
    let notes: i64 = sqlx::query_scalar(
        "select jsonb_array_length(document->'order_notes')::bigint from read.purchase_orders where tenant_id = $1 and id = $2",
    )
    .bind(stack.app.tenant)
    .bind(Uuid::parse_str(&id).unwrap())
    .fetch_one(&stack.app.pool)
    .await
    .unwrap();
    assert_eq!(notes, 150);
    let snapshot = stack.read_model_snapshot().await;
    stack.rebuild_from_store().await;
    assert_eq!(snapshot, stack.read_model_snapshot().await);
}

#[tokio::test]
async fn a_redelivered_event_after_commit_before_ack_has_no_second_effect() {
    let mut stack = spawn_stack().await;
    stack.abort_projectors();
    let app = &stack.app;
    let id = workload(app, 6).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.relay_checkpoint(app.tenant).await < 6 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let projector = stack.projector();
    let consumer = projector.consumer().await.unwrap();
    // Take every message, apply it (commit), but do not ack: a crash after the commit.
    let mut batch = consumer
        .fetch()
        .max_messages(6)
        .expires(Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(message)) = batch.next().await {
        let event: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
        let outcome =
            oms_projector::apply_event(&stack.store, oms_projections::Projection::Orders, &event)
                .await
                .unwrap();
        assert!(matches!(outcome, oms_projector::Outcome::Applied { .. }));
    }
    let before = stack.read_model_snapshot().await;
    // JetStream redelivers after ack_wait; the second application is a no-op.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut again = consumer
        .fetch()
        .max_messages(6)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut redelivered = 0;
    while let Some(Ok(message)) = again.next().await {
        let event: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
        let outcome =
            oms_projector::apply_event(&stack.store, oms_projections::Projection::Orders, &event)
                .await
                .unwrap();
        assert_eq!(outcome, oms_projector::Outcome::Duplicate);
        message.ack().await.unwrap();
        redelivered += 1;
    }
    assert_eq!(redelivered, 6);
    assert_eq!(stack.read_model_snapshot().await, before);
    let notes: i64 = sqlx::query_scalar("select jsonb_array_length(document->'order_notes')::bigint from read.purchase_orders where id = $1")
        .bind(Uuid::parse_str(&id).unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(notes, 3);
}

#[tokio::test]
async fn a_message_missing_from_the_stream_is_filled_from_the_event_store() {
    let mut stack = spawn_stack().await;
    stack.abort_projectors();
    let app = &stack.app;
    workload(app, 8).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stack.relay_checkpoint(app.tenant).await < 8 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Remove position 5 from the stream (stream sequence 5: one tenant, published in order).
    let stream = stack.jetstream.get_stream("OMS_EVENTS").await.unwrap();
    assert!(stream.delete_message(5).await.unwrap());
    let projector = stack.projector();
    let consumer = projector.consumer().await.unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(7)
        .expires(Duration::from_secs(3))
        .messages()
        .await
        .unwrap();
    let mut filled = 0;
    while let Some(Ok(message)) = batch.next().await {
        let event: oms_store::StoredEvent = serde_json::from_slice(&message.payload).unwrap();
        assert_ne!(event.position, 5);
        if let oms_projector::Outcome::Applied { gap_filled } = oms_projector::apply_event(
            &stack.store,
            oms_projections::Projection::OrderHistory,
            &event,
        )
        .await
        .unwrap()
        {
            filled += gap_filled;
        }
        message.ack().await.unwrap();
    }
    assert_eq!(filled, 1);
    let positions: Vec<i64> = sqlx::query_scalar(
        "select position from read.order_history where tenant_id = $1 order by position",
    )
    .bind(app.tenant)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(positions.contains(&5), "{positions:?}");
    let order_events: i64 = sqlx::query_scalar(
        "select count(*) from events where tenant_id = $1 and aggregate_type = 'purchase_order'",
    )
    .bind(app.tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(i64::try_from(positions.len()).unwrap(), order_events);
}

#[tokio::test]
async fn two_relays_and_two_projectors_over_five_tenants_equal_a_single_sequential_apply() {
    let mut stack = spawn_stack().await;
    stack.start_relay();
    stack.start_projector();
    let mut tenants = vec![stack.app.tenant];
    for n in 0..4 {
        tenants.push(
            oms_store::tenants::create(
                &stack.app.pool,
                "T",
                &format!("t{n}-{}", Uuid::new_v4().simple()),
            )
            .await
            .unwrap()
            .id,
        );
    }
    let mut tasks = Vec::new();
    for tenant in tenants.clone() {
        let address = stack.app.address.clone();
        let token = stack.app.token_for(tenant, &[oms_api::auth::Role::Admin]);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let post = |path: &str, body: serde_json::Value| {
                client.post(format!("{address}/api/v1{path}")).bearer_auth(&token).json(&body).send()
            };
            let supplier: serde_json::Value = post("/suppliers", json!({"name": "S", "code": "S1"})).await.unwrap().json().await.unwrap();
            let product: serde_json::Value = post("/products", json!({"code": "P1", "description": "Pork", "protein": "pork", "uom": "LB"})).await.unwrap().json().await.unwrap();
            for n in 0..8 {
                let po: serde_json::Value = post("/purchase-orders", json!({"supplier_id": supplier["id"], "order_date": "2026-11-02",
                    "lines": [{"product_id": product["id"], "weight": format!("{}", 100 + n), "price_per_unit": "1.25"}]})).await.unwrap().json().await.unwrap();
                let id = po["id"].as_str().unwrap().to_string();
                post(&format!("/purchase-orders/{id}/submit"), json!({})).await.unwrap();
                if n % 2 == 0 {
                    post(&format!("/purchase-orders/{id}/approve"), json!({})).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for tenant in &tenants {
        stack.wait_projected(*tenant, Duration::from_secs(60)).await;
    }
    let concurrent = stack.read_model_snapshot().await;
    let orders = concurrent
        .iter()
        .find(|(t, _)| t == "purchase_orders")
        .unwrap();
    assert_eq!(orders.1.as_array().unwrap().len(), 40);
    stack.rebuild_from_store().await;
    assert_eq!(concurrent, stack.read_model_snapshot().await);
}

#[tokio::test]
async fn the_relay_wakes_on_the_append_notification_without_waiting_for_its_poll() {
    let mut stack = spawn_stack().await;
    stack.abort_relays();
    let app = &stack.app;
    // A relay that polls once a minute: anything it publishes within seconds came from NOTIFY.
    let relay = oms_relay::Relay::new(
        stack.store.clone(),
        stack.jetstream.clone(),
        oms_relay::RelayConfig {
            poll_interval: Duration::from_secs(60),
            ..test_relay_config()
        },
    );
    let stopped = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(relay.run(stopped.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await; // its first round and LISTEN
    let created = app
        .post_ok(
            "/api/v1/customers",
            json!({"name": "Woken"}),
            StatusCode::CREATED,
        )
        .await;
    let position = created["position"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stack.relay_checkpoint(app.tenant).await < position {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay was not woken by the notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
}
