//! The backup drill of docs/operations.md: a dump of the event store taken while commands keep
//! coming, restored into a fresh database, verifies against the anchors published before it,
//! projects into read models that equal a rebuild, and feeds a relay that resumes without
//! publishing any (tenant, position) twice.

use crate::helpers::*;
use oms_relay::anchors::Anchorer;
use oms_store::EventStore;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs a Postgres client program, panicking with its output when it fails.
async fn run(program: &str, args: &[&str]) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|err| panic!("{program} runs: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_verifies_against_anchors_and_resumes() {
    // A running service with its read side, and commands coming in.
    let mut stack = spawn_stack().await;
    let (supplier, product) = stack.app.reference_data().await;
    let order = json!({
        "supplier_id": supplier, "order_date": "2026-11-02",
        "lines": [{"product_id": product, "weight": "1000", "price_per_unit": "2.00"}]
    });
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, created, order) = (stop.clone(), created.clone(), order.clone());
        let client = stack.app.client.clone();
        let url = format!("{}/api/v1/purchase-orders", stack.app.address);
        let token = stack.app.admin();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&order)
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status() == StatusCode::CREATED) {
                    created.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    oms_relay::anchors::ensure_anchor_stream(&stack.jetstream)
        .await
        .unwrap();
    let mut anchorer = Anchorer::new(
        stack.store.clone(),
        stack.jetstream.clone(),
        test_anchor_key(),
        1,
        Duration::ZERO,
    );
    assert!(anchorer.anchor_due().await.unwrap() >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The backup, while the load goes on.
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&stack.app.pool)
        .await
        .unwrap();
    let dump = tempfile::NamedTempFile::new().unwrap();
    let dump_path = dump.path().to_str().unwrap().to_string();
    run(
        "pg_dump",
        &[
            "--format=custom",
            "--file",
            &dump_path,
            &database_url(&database),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let tenant = stack.app.tenant;
    let original_head = stack.store.head(tenant).await.unwrap().unwrap().position;
    assert!(created.load(Ordering::SeqCst) > 0);

    // The site is lost; the backup is restored into a fresh database.
    stack.abort_relays();
    stack.abort_projectors();
    let restored_name = format!("oms_test_{}", uuid::Uuid::new_v4().simple());
    run(
        "psql",
        &[
            &admin_url(),
            "-c",
            &format!("create database {restored_name}"),
        ],
    )
    .await;
    run(
        "pg_restore",
        &["--dbname", &database_url(&restored_name), &dump_path],
    )
    .await;
    let restored_pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(&database_url(&restored_name))
        .await
        .unwrap();
    let restored = EventStore::new(restored_pool.clone());
    let restored_head = restored.head(tenant).await.unwrap().unwrap().position;
    assert!(
        restored_head > 0 && restored_head <= original_head,
        "{restored_head} of {original_head}"
    );

    // The restored chain verifies, and agrees with every anchor published before the dump.
    let anchors = oms_relay::anchors::anchors(&stack.jetstream, tenant)
        .await
        .unwrap();
    assert!(!anchors.is_empty());
    let report =
        oms_store::audit::verify_with_anchors(&restored, tenant, &anchors, &test_anchor_policy())
            .await
            .unwrap();
    assert!(report.chain.ok, "{report:?}");
    assert_eq!(
        report.anchors_checked,
        u64::try_from(anchors.len()).unwrap()
    );

    // The procedure: drop the event stream (the relay recreates it and republishes from its
    // checkpoint; the projectors fill the rest from the store), then start the pipeline and the
    // API on the restored database and take new commands.
    stack.jetstream.delete_stream("OMS_EVENTS").await.unwrap();
    let stopped = CancellationToken::new();
    let relay = oms_relay::Relay::new(
        restored.clone(),
        stack.jetstream.clone(),
        test_relay_config(),
    );
    let projector = oms_projector::Projector::new(
        restored.clone(),
        stack.jetstream.clone(),
        test_projector_config(),
    );
    let relay_task = tokio::spawn(relay.run(stopped.clone()));
    let projector_task = tokio::spawn(projector.run(stopped.clone()));
    let restored_app = spawn_app_on(&database_url(&restored_name), restored_pool.clone()).await;
    let token = restored_app.token_for(tenant, &[oms_api::auth::Role::Admin]);
    for _ in 0..5 {
        let response = restored_app
            .request(reqwest::Method::POST, "/api/v1/purchase-orders", &token)
            .json(&order)
            .send()
            .await
            .unwrap();
        expect_json(response, StatusCode::CREATED).await;
    }
    let head = restored.head(tenant).await.unwrap().unwrap().position;
    assert_eq!(head, restored_head + 5);

    // The read models catch up within seconds, and equal a rebuild from the restored store.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let projected = oms_projections::checkpoints::read_models_position(&restored_pool, tenant)
            .await
            .unwrap();
        if projected >= head {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "read models at {projected} of {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stopped.cancel();
    let _ = relay_task.await;
    let _ = projector_task.await;
    let live = read_model_snapshot(&restored_pool).await;
    for projection in oms_projections::Projection::ALL {
        oms_projector::replay::rebuild(&restored, projection, tenant, 500, &mut |_| {})
            .await
            .unwrap();
    }
    assert_eq!(read_model_snapshot(&restored_pool).await, live);

    // The new stream holds each (tenant, position) once, through the new head.
    let published = stack.stream_positions().await;
    let unique: HashSet<_> = published.iter().collect();
    assert_eq!(
        unique.len(),
        published.len(),
        "a position was published twice"
    );
    assert!(published.contains(&(tenant, head)));
}
