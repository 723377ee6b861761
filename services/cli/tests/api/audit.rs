//! Audit and replay: rebuilds equal the live read models, time travel equals folding,
//! tampering is found at its position, exports stream and verify offline, old event versions
//! still read.

use crate::helpers::*;
use oms_api::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::process::Command;
use uuid::Uuid;

/// The `oms` binary, run asynchronously: a blocking wait would stall this test's runtime and
/// with it the in-process projector, which may hold a lock the command waits for.
fn oms_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oms"));
    command.env_remove("DATABASE_URL").env_remove("NATS_URL");
    command
}

/// `oms audit export --tenant <tenant> --output <file>` on `database`.
async fn export_to(database: &str, tenant: Uuid, file: &std::path::Path) -> std::process::Output {
    oms_binary()
        .args([
            "audit",
            "export",
            "--database-url",
            &database_url(database),
            "--tenant",
            &tenant.to_string(),
            "--output",
        ])
        .arg(file)
        .output()
        .await
        .unwrap()
}

/// A workload that writes every event type of every aggregate.
pub async fn every_event_type(app: &TestApp) -> i64 {
    let post =
        |path: String, body: Value| async move { app.post_ok(&path, body, StatusCode::OK).await };
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let plant = id_of(
        &app.post_ok(
            "/api/v1/plants",
            json!({"name": "Plant 12", "code": "P12"}),
            StatusCode::CREATED,
        )
        .await,
    );
    let carrier = id_of(
        &app.post_ok(
            "/api/v1/carriers",
            json!({"name": "Reefer", "code": "RFL", "carrier_type": "truck"}),
            StatusCode::CREATED,
        )
        .await,
    );
    for (kind, id) in [
        ("suppliers", &supplier),
        ("customers", &customer),
        ("products", &product),
        ("plants", &plant),
        ("carriers", &carrier),
    ] {
        expect_json(
            app.patch(&format!("/api/v1/{kind}/{id}"), json!({"active": false}))
                .await,
            StatusCode::OK,
        )
        .await;
        let field = if kind == "products" {
            "description"
        } else {
            "name"
        };
        expect_json(
            app.patch(
                &format!("/api/v1/{kind}/{id}"),
                json!({"active": true, field: "Renamed"}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
    }

    // Purchase order: every event.
    let po = app.draft_po(&supplier, &product, "40000", "2.1575").await;
    let po_id = id_of(&po);
    let base = format!("/api/v1/purchase-orders/{po_id}");
    expect_json(
        app.patch(
            &base,
            json!({"plant_id": plant, "carrier_id": carrier, "notes": "dock 4"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let added = app
        .post_ok(
            &format!("{base}/lines"),
            json!({"product_id": product, "weight": "500", "price_per_unit": "1.1"}),
            StatusCode::CREATED,
        )
        .await;
    let line2 = added["lines"][1]["line_id"].as_str().unwrap().to_string();
    expect_json(
        app.patch(&format!("{base}/lines/{line2}"), json!({"weight": "600"}))
            .await,
        StatusCode::OK,
    )
    .await;
    app.request(
        Method::DELETE,
        &format!("{base}/lines/{line2}"),
        &app.admin(),
    )
    .send()
    .await
    .unwrap();
    post(format!("{base}/submit"), json!({})).await;
    post(format!("{base}/reject"), json!({"reason": "price"})).await;
    post(format!("{base}/submit"), json!({})).await;
    post(format!("{base}/approve"), json!({})).await;
    let line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    post(format!("{base}/receipts"), json!({"received_on": "2026-11-08", "complete": true, "lines": [{"line_id": line, "weight": "39850.5"}]})).await;
    post(
        format!("{base}/payments"),
        json!({"amount": "85977.45", "paid_on": "2026-11-09", "method": "wire"}),
    )
    .await;
    post(format!("{base}/notes"), json!({"text": "all good"})).await;
    post(format!("{base}/close"), json!({})).await;
    let cancelled = app.draft_po(&supplier, &product, "1", "1").await;
    post(
        format!("/api/v1/purchase-orders/{}/cancel", id_of(&cancelled)),
        json!({"reason": "duplicate"}),
    )
    .await;

    // Sales order: every event.
    let so = app
        .post_ok("/api/v1/sales-orders", json!({"customer_id": customer, "order_date": "2026-11-02",
            "lines": [{"product_id": product, "weight": "40000", "price_per_unit": "2.305", "source_purchase_order_id": po_id}]}), StatusCode::CREATED)
        .await;
    let so_base = format!("/api/v1/sales-orders/{}", id_of(&so));
    expect_json(
        app.patch(&so_base, json!({"customer_po_number": "MG-1"}))
            .await,
        StatusCode::OK,
    )
    .await;
    let added = app
        .post_ok(
            &format!("{so_base}/lines"),
            json!({"product_id": product, "weight": "10", "price_per_unit": "3"}),
            StatusCode::CREATED,
        )
        .await;
    let so_line2 = added["lines"][1]["line_id"].as_str().unwrap().to_string();
    expect_json(
        app.patch(
            &format!("{so_base}/lines/{so_line2}"),
            json!({"price_per_unit": "3.5"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    app.request(
        Method::DELETE,
        &format!("{so_base}/lines/{so_line2}"),
        &app.admin(),
    )
    .send()
    .await
    .unwrap();
    post(format!("{so_base}/confirm"), json!({})).await;
    let so_line = so["lines"][0]["line_id"].as_str().unwrap().to_string();
    post(format!("{so_base}/ship"), json!({"shipped_on": "2026-11-05", "carrier_id": carrier, "lines": [{"line_id": so_line, "weight": "39900.25"}]})).await;
    post(
        format!("{so_base}/deliver"),
        json!({"delivered_on": "2026-11-06"}),
    )
    .await;
    post(
        format!("{so_base}/invoice"),
        json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"}),
    )
    .await;
    post(
        format!("{so_base}/payments"),
        json!({"amount": "91970.08", "paid_on": "2026-11-07", "method": "ach"}),
    )
    .await;
    post(format!("{so_base}/notes"), json!({"text": "paid"})).await;
    let last = post(format!("{so_base}/close"), json!({})).await;
    let so2 = app
        .post_ok(
            "/api/v1/sales-orders",
            json!({"customer_id": customer, "order_date": "2026-11-02",
            "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]}),
            StatusCode::CREATED,
        )
        .await;
    let last_cancel = post(
        format!("/api/v1/sales-orders/{}/cancel", id_of(&so2)),
        json!({"reason": "customer changed mind"}),
    )
    .await;
    last_cancel["position"]
        .as_i64()
        .unwrap()
        .max(last["position"].as_i64().unwrap())
}

async fn event_types(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("select distinct event_type from events where tenant_id = $1 order by 1")
        .bind(app.tenant)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The read models and their checkpoints.
async fn snapshot(app: &TestApp) -> Vec<(String, Value)> {
    let mut out = read_model_snapshot(&app.pool).await;
    let checkpoints: Value = sqlx::query_scalar(
        "select coalesce(json_agg(json_build_array(tenant_id, projection, position) order by tenant_id, projection), '[]')::jsonb from read.checkpoints",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    out.push(("checkpoints".into(), checkpoints));
    out
}

#[tokio::test]
async fn a_replay_of_every_projection_equals_the_live_read_models_row_for_row() {
    let app = spawn_app().await;
    let position = every_event_type(&app).await;
    let types = event_types(&app).await;
    for expected in [
        "PurchaseOrderCreated",
        "PurchaseOrderHeaderChanged",
        "PurchaseOrderLineAdded",
        "PurchaseOrderLineChanged",
        "PurchaseOrderLineRemoved",
        "PurchaseOrderSubmitted",
        "PurchaseOrderRejected",
        "PurchaseOrderApproved",
        "PurchaseOrderReceiptRecorded",
        "PurchaseOrderPaymentRecorded",
        "PurchaseOrderNoteAdded",
        "PurchaseOrderClosed",
        "PurchaseOrderCancelled",
        "SalesOrderCreated",
        "SalesOrderHeaderChanged",
        "SalesOrderLineAdded",
        "SalesOrderLineChanged",
        "SalesOrderLineRemoved",
        "SalesOrderConfirmed",
        "SalesOrderShipped",
        "SalesOrderDelivered",
        "SalesOrderInvoiced",
        "SalesOrderPaymentRecorded",
        "SalesOrderNoteAdded",
        "SalesOrderClosed",
        "SalesOrderCancelled",
        "SupplierRegistered",
        "SupplierUpdated",
        "SupplierDeactivated",
        "SupplierReactivated",
        "PlantRegistered",
        "CarrierUpdated",
        "ProductReactivated",
        "CustomerDeactivated",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "the workload lacks {expected}: {types:?}"
        );
    }
    // The live read models, as the in-process projector built them.
    expect_json(
        app.get(&format!("/api/v1/suppliers?min_position={position}"))
            .await,
        StatusCode::OK,
    )
    .await;
    let live = snapshot(&app).await;

    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let output = oms_binary()
        .args(["replay", "--database-url", &database_url(&database)])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("replayed"), "{stdout}");
    // Not a terminal: plain progress lines (done/total, rate, ETA) and a summary per rebuild.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("replay: ") && stderr.contains("events/s") && stderr.contains("ETA"),
        "{stderr}"
    );
    assert!(
        stdout.contains("order_history") && stdout.contains("checkpoint"),
        "{stdout}"
    );
    assert_eq!(snapshot(&app).await, live);

    let only = oms_binary()
        .args([
            "replay",
            "--database-url",
            &database_url(&database),
            "--projection",
            "order_history",
            "--tenant",
            &app.tenant.to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(only.status.success(), "{only:?}");
    assert_eq!(snapshot(&app).await, live);
}

#[tokio::test]
async fn an_interrupted_rebuild_leaves_the_live_tables_as_they_were() {
    let app = spawn_app().await;
    let position = every_event_type(&app).await;
    expect_json(
        app.get(&format!("/api/v1/suppliers?min_position={position}"))
            .await,
        StatusCode::OK,
    )
    .await;
    let live = snapshot(&app).await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let tenant = app.tenant;
    let rebuild = tokio::spawn(async move {
        let mut progress = move |_n: u64| {
            let _ = started.send(());
        };
        // Batches of one event: the rebuild is mid-way when the first batch reports.
        let _ = oms_projector::replay::rebuild(
            &store,
            oms_projections::Projection::Orders,
            tenant,
            1,
            &mut progress,
        )
        .await;
    });
    started_rx.recv().await.unwrap();
    assert!(
        !rebuild.is_finished(),
        "the rebuild must be interrupted mid-way"
    );
    rebuild.abort();
    let _ = rebuild.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(snapshot(&app).await, live);

    // Bad input for the replay command: a message and a non-zero exit.
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    for args in [
        vec!["--projection", "nonsense"],
        vec!["--tenant", &Uuid::now_v7().to_string()],
    ] {
        let output = oms_binary()
            .args(["replay", "--database-url", &database_url(&database)])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no projection") || stderr.contains("no tenant"),
            "{stderr}"
        );
    }
    assert_eq!(snapshot(&app).await, live);
}

/// A rebuild of every projection, stopped after its first page until the test lets it go on.
/// It runs on a thread and runtime of its own, with its own pool, because its progress callback
/// blocks that thread: the test looks at the read models while the rebuild's transaction is
/// open and has deleted the old rows.
async fn paused_rebuild(
    app: &TestApp,
    capacity: usize,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::SyncSender<()>) {
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let url = database_url(&database);
    let tenant = app.tenant;
    let (started, started_rx) = tokio::sync::oneshot::channel();
    let (go_on, go_on_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let rebuild = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            let store = oms_store::EventStore::new(pool);
            let mut started = Some(started);
            let mut progress = move |_n: u64| {
                if let Some(started) = started.take() {
                    let _ = started.send(());
                    let _ = go_on_rx.recv();
                }
            };
            oms_projector::replay::rebuild_tenant_holding(
                &store,
                &oms_projections::Projection::ALL,
                tenant,
                2,
                capacity,
                &mut progress,
            )
            .await
            .unwrap();
        });
    });
    started_rx.await.unwrap();
    (rebuild, go_on)
}

#[tokio::test]
async fn readers_see_the_old_read_models_until_a_rebuild_commits_and_the_new_ones_after() {
    let app = spawn_app().await;
    let position = every_event_type(&app).await;
    expect_json(
        app.get(&format!("/api/v1/suppliers?min_position={position}"))
            .await,
        StatusCode::OK,
    )
    .await;
    let live = snapshot(&app).await;
    // Old rows that differ from what the rebuild writes, so that seeing old or new is seen.
    for (table, column) in [
        ("order_history", "summary"),
        ("purchase_orders", "notes"),
        ("sales_orders", "notes"),
        ("suppliers", "name"),
    ] {
        let changed = sqlx::query(&format!(
            "update read.{table} set {column} = 'old: ' || coalesce({column}, '') where tenant_id = $1"
        ))
        .bind(app.tenant)
        .execute(&app.pool)
        .await
        .unwrap();
        assert!(changed.rows_affected() > 0, "{table}");
    }
    let old = snapshot(&app).await;
    assert_ne!(old, live);

    // One order of a kind in memory: orders are written out and folded back all the time.
    let (rebuild, go_on) = paused_rebuild(&app, 1).await;
    assert!(!rebuild.is_finished(), "the rebuild must be mid-way");
    assert_eq!(
        snapshot(&app).await,
        old,
        "a reader sees the old read models, whole, while a rebuild runs"
    );
    go_on.send(()).unwrap();
    tokio::task::spawn_blocking(move || rebuild.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        snapshot(&app).await,
        live,
        "after the commit a reader sees the rebuilt read models, equal to the live ones"
    );

    // Each projection alone, folding orders back from its own tables.
    let store = oms_store::EventStore::new(app.pool.clone());
    for projection in oms_projections::Projection::ALL {
        for capacity in [1, 2] {
            oms_projector::replay::rebuild_tenant_holding(
                &store,
                &[projection],
                app.tenant,
                3,
                capacity,
                &mut |_| {},
            )
            .await
            .unwrap();
            assert_eq!(snapshot(&app).await, live, "{projection:?}, {capacity}");
        }
    }
}

#[tokio::test]
async fn the_state_as_of_each_events_time_equals_folding_the_events_up_to_it() {
    let app = spawn_app().await;
    every_event_type(&app).await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let orders: Vec<(String, Uuid)> = sqlx::query_as(
        "select aggregate_type, aggregate_id from events where tenant_id = $1 and sequence = 1 and aggregate_type in ('purchase_order', 'sales_order')",
    )
    .bind(app.tenant)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(orders.len() >= 4);
    for (aggregate_type, id) in orders {
        let events = store
            .load_stream(app.tenant, &aggregate_type, id)
            .await
            .unwrap();
        for event in &events {
            let upto: Vec<_> = events
                .iter()
                .filter(|e| e.recorded_at <= event.recorded_at)
                .cloned()
                .collect();
            let stamp = oms_projections::documents::Stamp {
                id,
                version: i64::try_from(upto.len()).unwrap(),
                created_at: upto.first().map(|e| e.recorded_at),
                updated_at: upto.last().map(|e| e.recorded_at),
            };
            let expected = if aggregate_type == "purchase_order" {
                oms_projections::documents::purchase_order(&store.fold(&upto).unwrap(), &stamp)
            } else {
                oms_projections::documents::sales_order(&store.fold(&upto).unwrap(), &stamp)
            };
            let collection = if aggregate_type == "purchase_order" {
                "purchase-orders"
            } else {
                "sales-orders"
            };
            let at = oms_store::hash::format_timestamp(event.recorded_at);
            let then = expect_json(
                app.get(&format!("/api/v1/{collection}/{id}?as_of={at}"))
                    .await,
                StatusCode::OK,
            )
            .await;
            assert_eq!(then, expected, "{aggregate_type} {id} as of {at}");
        }
    }
}

/// Appends `n` notes straight to the store (fast history for chain tests).
async fn history(store: &oms_store::EventStore, tenant: Uuid, n: i64) {
    let order = Uuid::now_v7();
    let mut sequence = 0;
    while sequence < n {
        let batch: Vec<oms_store::NewEvent> = (0..1000.min(n - sequence))
            .map(|i| oms_store::NewEvent {
                aggregate_type: "purchase_order".into(),
                aggregate_id: order,
                sequence: sequence + i + 1,
                event_type: "PurchaseOrderNoteAdded".into(),
                event_version: "1.0".into(),
                payload: json!({"NoteAdded": {"note_id": Uuid::now_v7(), "text": format!("note {} with some words to make the line longer", sequence + i)}}),
                metadata: json!({"actor": "loader", "request_id": Uuid::now_v7()}),
                unique_keys: Vec::new(),
                lot_movements: Vec::new(),
            })
            .collect();
        sequence += i64::try_from(batch.len()).unwrap();
        store.append(tenant, batch).await.unwrap();
    }
}

#[tokio::test]
async fn chain_verification_fails_at_the_exact_position_and_anchors_catch_a_recomputed_chain() {
    let nats = NatsServer::start();
    let app = spawn_api_on_nats(nats.client().await, |_| {}).await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let jetstream = async_nats::jetstream::new(nats.client().await);
    oms_relay::anchors::ensure_anchor_stream(&jetstream)
        .await
        .unwrap();

    // Four tenants, one per kind of tampering, each with 20 events and an anchor at the head.
    let mut tenants = Vec::new();
    for kind in ["payload", "delete", "swap", "recompute", "untouched"] {
        let tenant = oms_store::tenants::create(
            &app.pool,
            kind,
            &format!("{kind}-{}", Uuid::new_v4().simple()),
        )
        .await
        .unwrap()
        .id;
        history(&store, tenant, 20).await;
        tenants.push((kind, tenant));
    }
    // The relay role's anchorer: every tenant that moved gets its head anchored once; nothing
    // moved since, nothing more is published.
    let mut anchorer = oms_relay::anchors::Anchorer::new(
        store.clone(),
        jetstream.clone(),
        test_anchor_key(),
        100,
        Duration::from_secs(3600),
    );
    assert_eq!(anchorer.anchor_due().await.unwrap(), 5);
    assert_eq!(anchorer.anchor_due().await.unwrap(), 0);
    let tenant = |kind: &str| tenants.iter().find(|(k, _)| *k == kind).unwrap().1;
    // Events are append-only (migration 0006): tampering takes the maintenance path, a
    // superuser's transaction that asks for it.
    let exec = |sql: &'static str, t: Uuid| {
        let pool = app.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("set local oms.event_maintenance = 'on'")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(sql).bind(t).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    exec("update events set payload = jsonb_set(payload, '{NoteAdded,text}', '\"forged\"') where tenant_id = $1 and position = 7", tenant("payload")).await;
    exec(
        "delete from events where tenant_id = $1 and position = 11",
        tenant("delete"),
    )
    .await;
    exec(
        "update events e set payload = o.payload from events o
          where e.tenant_id = $1 and o.tenant_id = $1
            and ((e.position = 5 and o.position = 6) or (e.position = 6 and o.position = 5))",
        tenant("swap"),
    )
    .await;
    // Change position 9 and recompute every hash from it on, and the head: the chain itself is
    // consistent again.
    exec("update events set payload = jsonb_set(payload, '{NoteAdded,text}', '\"rewritten\"') where tenant_id = $1 and position = 9", tenant("recompute")).await;
    let t = tenant("recompute");
    let mut previous: Vec<u8> =
        sqlx::query_scalar("select hash from events where tenant_id = $1 and position = 8")
            .bind(t)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    for event in sqlx::query_as::<_, oms_store::StoredEvent>(
        "select tenant_id, position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at, hash from events where tenant_id = $1 and position >= 9 order by position",
    )
    .bind(t)
    .fetch_all(&app.pool)
    .await
    .unwrap()
    {
        let hash = oms_store::hash::chain_hash(&previous, &event).to_vec();
        let mut tx = app.pool.begin().await.unwrap();
        sqlx::query("set local oms.event_maintenance = 'on'")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("update events set hash = $3 where tenant_id = $1 and position = $2").bind(t).bind(event.position).bind(&hash).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        previous = hash;
    }
    sqlx::query("update tenant_heads set hash = $2 where tenant_id = $1")
        .bind(t)
        .bind(&previous)
        .execute(&app.pool)
        .await
        .unwrap();

    let expected = [
        ("payload", Some(7)),
        ("delete", Some(11)),
        ("swap", Some(5)),
        ("recompute", None),
        ("untouched", None),
    ];
    for (kind, at) in expected {
        let report = store.verify_chain(tenant(kind)).await.unwrap();
        assert_eq!(report.first_bad_position, at, "{kind}: {report:?}");
        assert_eq!(report.ok, at.is_none(), "{kind}");
    }
    // With the anchors, the recomputed chain is caught too; the untouched one still passes.
    for (kind, _) in &tenants {
        let anchors = oms_relay::anchors::anchors(&jetstream, tenant(kind))
            .await
            .unwrap();
        assert_eq!(anchors.len(), 1, "{kind}");
        let report = oms_store::audit::verify_with_anchors(
            &store,
            tenant(kind),
            &anchors,
            &test_anchor_policy(),
        )
        .await
        .unwrap();
        assert_eq!(report.chain.ok, *kind == "untouched", "{kind}: {report:?}");
        // The API's verification checks the same anchors and says the same.
        let auditor = app.token_for(tenant(kind), &[Role::Auditor]);
        let api = app
            .request(Method::GET, "/api/v1/audit/verify", &auditor)
            .send()
            .await
            .unwrap();
        let api = expect_json(api, StatusCode::OK).await;
        assert_eq!(api["ok"], *kind == "untouched", "{kind}: {api}");
        assert_eq!(api["anchors_checked"], 1, "{kind}: {api}");
        assert_eq!(
            api["first_bad_anchor"],
            json!(report.first_bad_anchor),
            "{kind}"
        );
    }
    let recomputed = oms_store::audit::verify_with_anchors(
        &store,
        tenant("recompute"),
        &oms_relay::anchors::anchors(&jetstream, tenant("recompute"))
            .await
            .unwrap(),
        &test_anchor_policy(),
    )
    .await
    .unwrap();
    assert_eq!(recomputed.first_bad_anchor, Some(20));
    assert_eq!(recomputed.anchored_position, 0, "{recomputed:?}");
    assert!(!recomputed.chain.ok);

    // The CLI: exit status and the report.
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let verify = |t: Uuid| {
        let mut command = oms_binary();
        command.env("OMS_ANCHOR_KEY", ANCHOR_KEY);
        command.args([
            "audit",
            "verify",
            "--database-url",
            &database_url(&database),
            "--nats-url",
            &nats.url(),
            "--tenant",
            &t.to_string(),
        ]);
        async move { command.output().await.unwrap() }
    };
    let good = verify(tenant("untouched")).await;
    assert!(good.status.success(), "{good:?}");
    assert!(String::from_utf8_lossy(&good.stdout).contains("\"ok\":true"));
    let bad = verify(tenant("recompute")).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("broken"),
        "{bad:?}"
    );
    let payload = verify(tenant("payload")).await;
    assert!(
        String::from_utf8_lossy(&payload.stdout).contains("\"first_bad_position\":7"),
        "{payload:?}"
    );
}

/// The peak resident set size of the children this test process has waited for, in KiB.
fn peak_rss_of_children_kb() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage")
        .max_rss()
}

#[tokio::test]
async fn an_export_of_100000_events_streams_in_bounded_memory_and_verifies_offline() {
    let app = spawn_api().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    history(&store, app.tenant, 100_000).await;
    let head = store.head(app.tenant).await.unwrap().unwrap();
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");

    let output = export_to(&database, app.tenant, &file).await;
    assert!(output.status.success(), "{output:?}");
    let peak_kb = peak_rss_of_children_kb();
    let size_kb = i64::try_from(std::fs::metadata(&file).unwrap().len() / 1024).unwrap();
    eprintln!("export: {size_kb} KiB written, peak RSS of the exporting process {peak_kb} KiB");
    assert!(size_kb > 20_000, "the export is {size_kb} KiB");
    // Bounded: well under the size of what it wrote (it holds one event at a time). The
    // process itself (binary, runtime, pool) takes about half the export's size here, so
    // the margin is two thirds: a process holding the export would exceed the whole of it.
    assert!(
        peak_kb < 64 * 1024 && peak_kb < size_kb * 2 / 3,
        "peak RSS {peak_kb} KiB for {size_kb} KiB written"
    );

    let verified = oms_binary()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let report: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(report["events_checked"], 100_000);
    assert_eq!(report["head_position"], head.position);
    assert_eq!(report["head_hash"], hex::encode(&head.hash));

    // An edited copy: the verifier names the line.
    let text = std::fs::read_to_string(&file).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 41_999 {
                line.replace("with some words", "with other words")
            } else {
                line.to_string()
            }
        })
        .collect();
    let edited_file = dir.path().join("edited.ndjson");
    std::fs::write(&edited_file, edited.join("\n")).unwrap();
    let broken = oms_binary()
        .args(["audit", "verify", "--file"])
        .arg(&edited_file)
        .output()
        .await
        .unwrap();
    assert!(!broken.status.success());
    let report: Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(report["first_bad_line"], 42_000);
    assert_eq!(report["first_bad_position"], 42_000);
}

#[tokio::test]
async fn audit_commands_refuse_bad_input_with_a_message_and_write_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let url = database_url(&database);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing-dir").join("out.ndjson");
    let tenant = app.tenant.to_string();
    let unknown_tenant = Uuid::now_v7().to_string();
    let target_arg = target.to_string_lossy().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["audit", "show", "PO-999999", "--database-url", &url],
            "no order",
        ),
        (
            vec![
                "audit",
                "show",
                "PO-000001",
                "--database-url",
                &url,
                "--as-of",
                "last tuesday",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "audit",
                "show",
                "PO-000001",
                "--database-url",
                &url,
                "--as-of",
                "2000-01-01T00:00:00Z",
            ],
            "did not exist",
        ),
        (
            vec![
                "audit",
                "export",
                "--database-url",
                &url,
                "--tenant",
                &unknown_tenant,
            ],
            "no tenant",
        ),
        (
            vec![
                "audit",
                "export",
                "--database-url",
                &url,
                "--tenant",
                &tenant,
                "--from",
                "soon",
            ],
            "RFC 3339",
        ),
        (
            vec![
                "audit",
                "export",
                "--database-url",
                &url,
                "--tenant",
                &tenant,
                "--output",
                &target_arg,
            ],
            "cannot write",
        ),
        (
            vec![
                "audit",
                "verify",
                "--database-url",
                &url,
                "--tenant",
                &unknown_tenant,
                "--no-anchors",
            ],
            "no tenant",
        ),
    ];
    for (args, message) in cases {
        let output = oms_binary().args(&args).output().await.unwrap();
        assert!(!output.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing half-written"
    );

    // And the good path of `audit show`, by number and by id.
    let shown = oms_binary()
        .args([
            "audit",
            "show",
            po["order_number"].as_str().unwrap(),
            "--database-url",
            &url,
            "--tenant",
            &tenant,
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["state"]["status"], "draft");
    assert_eq!(shown["events"][0]["actor"], "mary");
    assert_eq!(shown["events"][0]["changes"]["status"]["to"], "draft");
    let text = oms_binary()
        .args(["audit", "show", &id_of(&po), "--database-url", &url])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("PurchaseOrderCreated"));
}

#[tokio::test]
async fn a_stored_version_1_event_replays_rebuilds_and_exports() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    // A purchase order written by an older version of the service: Created 1.0 (vendor_id).
    let id = Uuid::now_v7();
    let line = Uuid::now_v7();
    store
        .append(app.tenant, vec![oms_store::NewEvent {
            aggregate_type: "purchase_order".into(),
            aggregate_id: id,
            sequence: 1,
            event_type: "PurchaseOrderCreated".into(),
            event_version: "1.0".into(),
            payload: json!({"Created": {
                "order_number": "PO-OLD-1",
                "header": {"vendor_id": supplier, "order_date": "2026-10-01", "currency": "USD", "weight_unit": "LB", "logistics": "supplier_delivery"},
                "lines": [{"line_id": line, "product_id": product, "weight": "100", "price_per_unit": "2", "quantity": null, "description": null, "amount": "200.00"}],
                "total": "200.00"}}),
            metadata: json!({"actor": "old-service"}),
            unique_keys: vec![oms_domain::UniqueKeyChange::Claim { scope: "purchase_order_number", key: "PO-OLD-1".into() }],
            lot_movements: Vec::new(),
        }])
        .await
        .unwrap();
    // The current service works with it: a command, the document, the read model.
    let submitted = app
        .post_ok(
            &format!("/api/v1/purchase-orders/{id}/submit"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(submitted["supplier_id"], supplier);
    assert_eq!(submitted["total"], "200.00");
    let read = expect_json(
        app.get(&format!(
            "/api/v1/purchase-orders/{id}?min_position={}",
            submitted["position"]
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["supplier_id"], supplier);
    let history = expect_json(
        app.get(&format!("/api/v1/purchase-orders/{id}/history"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(history["items"].as_array().unwrap().len(), 2);

    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let replay = oms_binary()
        .args(["replay", "--database-url", &database_url(&database)])
        .output()
        .await
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    let supplier_column: Option<Uuid> = sqlx::query_scalar(
        "select supplier_id from read.purchase_orders where tenant_id = $1 and id = $2",
    )
    .bind(app.tenant)
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(supplier_column.unwrap().to_string(), supplier);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("e.ndjson");
    let export = export_to(&database, app.tenant, &file).await;
    assert!(export.status.success(), "{export:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let old = text.lines().find(|l| l.contains("PO-OLD-1")).unwrap();
    assert!(
        old.contains("\"event_version\":\"1.0\"") && old.contains("vendor_id"),
        "exports keep what was stored: {old}"
    );
    let verified = oms_binary()
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let _ = Role::Auditor;
}

/// Publishes `body` on `tenant`'s anchor subject, as whoever can publish to NATS could.
async fn publish_anchor(jetstream: &async_nats::jetstream::Context, tenant: Uuid, body: Vec<u8>) {
    jetstream
        .publish(format!("oms.anchors.{tenant}"), body.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// A signed anchor of `tenant`'s head now.
async fn signed_head(
    store: &oms_store::EventStore,
    key: &oms_store::audit::AnchorKey,
    tenant: Uuid,
) -> oms_store::audit::Anchor {
    let head = store.head(tenant).await.unwrap().unwrap();
    oms_store::audit::Anchor::signed(key, tenant, head.position, &head.hash, chrono::Utc::now())
}

#[tokio::test]
async fn verify_is_not_ok_without_anchors_or_with_unsigned_forged_or_stale_ones_and_says_what_they_cover(
) {
    let nats = NatsServer::start();
    let max_age = Duration::from_secs(4);
    let app = spawn_api_on_nats(nats.client().await, |config| {
        config.anchor_max_age = max_age;
    })
    .await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let jetstream = async_nats::jetstream::new(nats.client().await);
    oms_relay::anchors::ensure_anchor_stream(&jetstream)
        .await
        .unwrap();
    let key = test_anchor_key();
    let mut tenants = Vec::new();
    for kind in [
        "partly", "none", "unsigned", "forged", "altered", "garbage", "stale", "covered",
    ] {
        let tenant = oms_store::tenants::create(
            &app.pool,
            kind,
            &format!("{kind}-{}", Uuid::new_v4().simple()),
        )
        .await
        .unwrap()
        .id;
        history(&store, tenant, 10).await;
        tenants.push((kind, tenant));
    }
    let tenant = |kind: &str| tenants.iter().find(|(k, _)| *k == kind).unwrap().1;

    // none: events and no anchor at all (the old verification passed it).
    // unsigned: the head as the old relay published it, which anyone on NATS can write.
    let head = signed_head(&store, &key, tenant("unsigned")).await;
    let unsigned = json!({"tenant_id": head.tenant_id, "position": head.position, "hash": head.hash, "at": head.at});
    publish_anchor(
        &jetstream,
        tenant("unsigned"),
        serde_json::to_vec(&unsigned).unwrap(),
    )
    .await;
    // forged: signed with a key the verifier does not hold (a guess).
    let guess = oms_store::audit::AnchorKey::new(vec![b'g'; 32]).unwrap();
    let forged = signed_head(&store, &guess, tenant("forged")).await;
    publish_anchor(
        &jetstream,
        tenant("forged"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .await;
    // altered: a genuine anchor whose hash was changed afterwards (to a rewritten head's).
    let mut altered = signed_head(&store, &key, tenant("altered")).await;
    altered.hash = hex::encode([9u8; 32]);
    publish_anchor(
        &jetstream,
        tenant("altered"),
        serde_json::to_vec(&altered).unwrap(),
    )
    .await;
    // garbage: a genuine anchor, and a message that is no anchor at all.
    for kind in ["garbage", "stale", "covered", "partly"] {
        let anchor = signed_head(&store, &key, tenant(kind)).await;
        publish_anchor(
            &jetstream,
            tenant(kind),
            serde_json::to_vec(&anchor).unwrap(),
        )
        .await;
    }
    publish_anchor(&jetstream, tenant("garbage"), b"not an anchor".to_vec()).await;
    // stale: events after the newest anchor, older than the bound (the anchorer stopped).
    history(&store, tenant("stale"), 5).await;
    tokio::time::sleep(max_age + Duration::from_millis(500)).await;
    // partly: events after the newest anchor, younger than the bound — fine, and counted.
    history(&store, tenant("partly"), 5).await;

    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    // (ok, anchored_position, unanchored_events, a problem reported)
    let expected: [(&str, bool, i64, i64, &str); 8] = [
        ("partly", true, 10, 5, ""),
        ("none", false, 0, 10, "no valid anchor"),
        ("unsigned", false, 0, 10, "unsigned"),
        ("forged", false, 0, 10, "does not hold"),
        ("altered", false, 0, 10, "does not match"),
        ("garbage", false, 10, 0, "not an anchor"),
        ("stale", false, 10, 5, "stale"),
        ("covered", true, 10, 0, ""),
    ];
    let policy = oms_store::audit::AnchorPolicy {
        keys: vec![key.clone()],
        max_age,
    };
    for (kind, ok, anchored, unanchored, problem) in expected {
        let t = tenant(kind);
        // The shared verification.
        let anchors = oms_relay::anchors::anchors(&jetstream, t).await.unwrap();
        let report = oms_store::audit::verify_with_anchors(&store, t, &anchors, &policy)
            .await
            .unwrap();
        let report = serde_json::to_value(&report).unwrap();
        // The API's.
        let auditor = app.token_for(t, &[Role::Auditor]);
        let api = app
            .request(Method::GET, "/api/v1/audit/verify", &auditor)
            .send()
            .await
            .unwrap();
        let api = expect_json(api, StatusCode::OK).await;
        // The CLI's.
        let cli = oms_binary()
            .env("OMS_ANCHOR_KEY", ANCHOR_KEY)
            .args([
                "audit",
                "verify",
                "--database-url",
                &database_url(&database),
                "--nats-url",
                &nats.url(),
                "--max-anchor-age",
                &max_age.as_secs().to_string(),
                "--tenant",
                &t.to_string(),
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(cli.status.success(), ok, "{kind}: {cli:?}");
        let line: Value = serde_json::from_slice(&cli.stdout).unwrap();
        for (source, report) in [("store", &report), ("api", &api), ("cli", &line)] {
            assert_eq!(report["ok"], ok, "{kind} ({source}): {report}");
            assert_eq!(
                report["anchored_position"], anchored,
                "{kind} ({source}): {report}"
            );
            assert_eq!(
                report["unanchored_events"], unanchored,
                "{kind} ({source}): {report}"
            );
            assert_eq!(
                report["max_anchor_age_secs"],
                max_age.as_secs(),
                "{kind} ({source})"
            );
            assert_eq!(
                report["first_bad_position"],
                Value::Null,
                "{kind} ({source})"
            );
            let problems = report["anchor_problems"].to_string();
            if ok {
                assert_eq!(report["anchor_problems"], json!([]), "{kind} ({source})");
            } else {
                assert!(problems.contains(problem), "{kind} ({source}): {problems}");
            }
        }
        if !ok {
            let stderr = String::from_utf8_lossy(&cli.stderr);
            assert!(stderr.contains(problem), "{kind}: {stderr}");
        }
    }

    // The CLI checks no anchor without the key (it would vouch for nothing).
    let keyless = oms_binary()
        .args([
            "audit",
            "verify",
            "--database-url",
            &database_url(&database),
            "--nats-url",
            &nats.url(),
            "--tenant",
            &tenant("covered").to_string(),
        ])
        .env_remove("OMS_ANCHOR_KEY")
        .env_remove("OMS_ANCHOR_KEY_FILE")
        .output()
        .await
        .unwrap();
    assert!(!keyless.status.success());
    assert!(
        String::from_utf8_lossy(&keyless.stderr).contains("OMS_ANCHOR_KEY"),
        "{keyless:?}"
    );
}

#[tokio::test]
async fn a_second_verification_of_a_tenant_while_one_runs_is_429_and_other_tenants_go_on() {
    let nats = NatsServer::start();
    let app = spawn_api_on_nats(nats.client().await, |_| {}).await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let jetstream = async_nats::jetstream::new(nats.client().await);
    oms_relay::anchors::ensure_anchor_stream(&jetstream)
        .await
        .unwrap();
    history(&store, app.tenant, 30_000).await;
    let other = oms_store::tenants::create(
        &app.pool,
        "Other",
        &format!("other-{}", Uuid::new_v4().simple()),
    )
    .await
    .unwrap()
    .id;
    history(&store, other, 5).await;
    let mut anchorer = oms_relay::anchors::Anchorer::new(
        store.clone(),
        jetstream.clone(),
        test_anchor_key(),
        1,
        Duration::ZERO,
    );
    assert_eq!(anchorer.anchor_due().await.unwrap(), 2);

    let auditor = app.token_for(app.tenant, &[Role::Auditor]);
    let first = tokio::spawn(
        app.request(Method::GET, "/api/v1/audit/verify", &auditor)
            .send(),
    );
    // Wait until the first verification reads the chain (its snapshot transaction is open).
    let waiting = std::time::Instant::now();
    loop {
        let reading: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid()
                and xact_start is not null and query like '%from events%'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if reading > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(20) && !first.is_finished(),
            "the first verification never started reading"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = std::time::Instant::now();
    let second = app
        .request(Method::GET, "/api/v1/audit/verify", &auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "refused at once, not after a second recomputation"
    );
    assert!(second.headers().contains_key("retry-after"));
    expect_problem(second, StatusCode::TOO_MANY_REQUESTS).await;
    // Another tenant is not held up.
    let theirs = app
        .request(
            Method::GET,
            "/api/v1/audit/verify",
            &app.token_for(other, &[Role::Auditor]),
        )
        .send()
        .await
        .unwrap();
    let theirs = expect_json(theirs, StatusCode::OK).await;
    assert_eq!(theirs["ok"], true, "{theirs}");

    let first = expect_json(first.await.unwrap().unwrap(), StatusCode::OK).await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["events_checked"], 30_000);
    assert_eq!(first["anchored_position"], 30_000);
    // Once it has finished, the tenant can verify again.
    let again = app
        .request(Method::GET, "/api/v1/audit/verify", &auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_json(again, StatusCode::OK).await["ok"], true);
}

/// `oms audit verify --file <file> [--anchor <anchor>]` with the test's anchor key.
async fn verify_file(
    file: &std::path::Path,
    anchor: Option<&std::path::Path>,
) -> std::process::Output {
    let mut command = oms_binary();
    command
        .env("OMS_ANCHOR_KEY", ANCHOR_KEY)
        .args(["audit", "verify", "--file"])
        .arg(file);
    if let Some(anchor) = anchor {
        command.arg("--anchor").arg(anchor);
    }
    command.output().await.unwrap()
}

/// Rewrites an export's lines from index `from` on with `change`, recomputes every hash after
/// it and the trailer: what someone who edits a file and knows the chain's rule produces.
fn rewrite_export(text: &str, keep: usize, from: usize, change: impl Fn(&mut Value)) -> String {
    use oms_store::audit::export::{ExportedEvent, EXPORT_FORMAT};
    let mut events: Vec<ExportedEvent> = text
        .lines()
        .filter(|l| !l.contains("\"trailer\""))
        .take(keep)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut previous = hex::decode(&events[0].previous_hash).unwrap();
    for (i, line) in events.iter_mut().enumerate() {
        if i == from {
            change(&mut line.event.payload);
        }
        line.previous_hash = hex::encode(&previous);
        line.event.hash = oms_store::hash::chain_hash(&previous, &line.event).to_vec();
        previous = line.event.hash.clone();
    }
    let last = events.last().unwrap();
    let mut out: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    out.push(
        json!({"trailer": {"format": EXPORT_FORMAT, "tenant_id": last.event.tenant_id,
            "events": events.len(), "last_position": last.event.position,
            "last_hash": hex::encode(&last.event.hash)}})
        .to_string(),
    );
    out.join("\n") + "\n"
}

#[tokio::test]
async fn verify_file_refuses_empty_or_truncated_exports_and_heads_that_disagree_with_the_signed_anchor(
) {
    let app = spawn_api().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    history(&store, app.tenant, 50).await;
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.ndjson");
    assert!(export_to(&database, app.tenant, &file)
        .await
        .status
        .success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().last().unwrap().starts_with("{\"trailer\":"),
        "{text}"
    );
    let anchor = signed_head(&store, &test_anchor_key(), app.tenant).await;
    let anchor_file = dir.path().join("anchor.json");
    std::fs::write(&anchor_file, serde_json::to_vec(&anchor).unwrap()).unwrap();

    // The export as written: complete, and it reaches the anchor with the anchor's hash.
    let good = verify_file(&file, Some(&anchor_file)).await;
    assert!(good.status.success(), "{good:?}");
    let report: Value = serde_json::from_slice(&good.stdout).unwrap();
    assert_eq!(report["trailer"], true);
    assert_eq!(report["anchored_position"], 50);
    assert_eq!(report["unanchored_events"], 0);

    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let lines: Vec<&str> = text.lines().collect();
    let refused: Vec<(std::path::PathBuf, bool, &str)> = vec![
        (write("empty.ndjson", ""), false, "empty"),
        (write("blank.ndjson", "\n\n"), false, "empty"),
        // Cut at a line end: no trailer.
        (
            write("cut.ndjson", &(lines[..30].join("\n") + "\n")),
            false,
            "truncated",
        ),
        // Cut mid-line.
        (write("mid.ndjson", &text[..text.len() / 2]), false, "line"),
        // A line dropped, the trailer kept.
        (
            write(
                "dropped.ndjson",
                &(lines[..49]
                    .iter()
                    .chain(&lines[50..])
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n"),
            ),
            false,
            "trailer",
        ),
        // Cut short with a matching trailer: consistent alone, but short of the anchor.
        (
            write(
                "short.ndjson",
                &rewrite_export(&text, 30, usize::MAX, |_| {}),
            ),
            true,
            "does not reach the anchored position 50",
        ),
        // An event rewritten and the chain and trailer recomputed: consistent alone, but its
        // head disagrees with the signed anchor.
        (
            write(
                "forged.ndjson",
                &rewrite_export(&text, 50, 19, |payload| {
                    payload["NoteAdded"]["text"] = json!("rewritten");
                }),
            ),
            true,
            "rewritten",
        ),
    ];
    for (path, alone_ok, says) in refused {
        let alone = verify_file(&path, None).await;
        assert_eq!(alone.status.success(), alone_ok, "{path:?}: {alone:?}");
        let anchored = verify_file(&path, Some(&anchor_file)).await;
        assert!(!anchored.status.success(), "{path:?}: {anchored:?}");
        let stderr = String::from_utf8_lossy(&anchored.stderr);
        let stderr = if alone_ok {
            stderr.to_string()
        } else {
            String::from_utf8_lossy(&alone.stderr).to_string()
        };
        assert!(stderr.contains(says), "{path:?}: {stderr}");
    }

    // An unsigned anchor, or one signed with another key, vouches for nothing.
    let mut unsigned = anchor.clone();
    unsigned.signature = None;
    let guess = oms_store::audit::AnchorKey::new(vec![b'g'; 32]).unwrap();
    let foreign = oms_store::audit::Anchor::signed(
        &guess,
        app.tenant,
        anchor.position,
        &hex::decode(&anchor.hash).unwrap(),
        anchor.at,
    );
    for (name, bad, says) in [
        ("unsigned.json", unsigned, "unsigned"),
        ("foreign.json", foreign, "does not hold"),
    ] {
        let path = write(name, &serde_json::to_string(&bad).unwrap());
        let output = verify_file(&file, Some(&path)).await;
        assert!(!output.status.success(), "{name}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(says),
            "{name}: {output:?}"
        );
    }
    // After a rotation the old key, kept in OMS_ANCHOR_PREVIOUS_KEYS_FILE, still checks the
    // anchors it signed (and signs nothing).
    let previous = write("previous-keys", &format!("{}\n", "g".repeat(32)));
    let rotated = oms_binary()
        .env("OMS_ANCHOR_KEY", ANCHOR_KEY)
        .env("OMS_ANCHOR_PREVIOUS_KEYS_FILE", &previous)
        .args(["audit", "verify", "--file"])
        .arg(&file)
        .arg("--anchor")
        .arg(dir.path().join("foreign.json"))
        .output()
        .await
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let not_json = write("nonsense.json", "{");
    let output = verify_file(&file, Some(&not_json)).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not hold an anchor"));
}

#[tokio::test]
async fn a_csv_export_defuses_cells_a_spreadsheet_would_run() {
    let app = spawn_api().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let order = Uuid::now_v7();
    let actors = ["=1+2", "@SUM(A1)", "+3", "-2+3", "\t=1", "mary"];
    store
        .append(
            app.tenant,
            actors
                .iter()
                .enumerate()
                .map(|(i, actor)| oms_store::NewEvent {
                    aggregate_type: "purchase_order".into(),
                    aggregate_id: order,
                    sequence: i64::try_from(i).unwrap() + 1,
                    event_type: "PurchaseOrderNoteAdded".into(),
                    event_version: "1.0".into(),
                    payload: json!({"NoteAdded": {"note_id": Uuid::now_v7(), "text": "=cmd|' /C calc'!A0"}}),
                    metadata: json!({"actor": actor}),
                    unique_keys: Vec::new(),
                    lot_movements: Vec::new(),
                })
                .collect(),
        )
        .await
        .unwrap();
    let database = app
        .pool
        .connect_options()
        .get_database()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.csv");
    let output = oms_binary()
        .args([
            "audit",
            "export",
            "--database-url",
            &database_url(&database),
            "--tenant",
            &app.tenant.to_string(),
            "--format",
            "csv",
            "--output",
        ])
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    // The actor column (the eighth) of each row, after the csv crate's quoting.
    for expected in [
        ",'=1+2,",
        ",'@SUM(A1),",
        ",+3,",
        ",'-2+3,",
        ",'\t=1,",
        ",mary,",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
    for row in text.lines().skip(1) {
        for cell in row.split(',') {
            let cell = cell.trim_start_matches('"');
            assert!(
                !cell.starts_with(['=', '@', '\t', '\r']) && !cell.starts_with("-2"),
                "{cell:?} in {row}"
            );
        }
    }
}

#[tokio::test]
async fn the_anchor_stream_refuses_to_delete_or_purge_anchors_even_when_it_existed_before() {
    use async_nats::jetstream::stream;
    let nats = NatsServer::start();
    let jetstream = async_nats::jetstream::new(nats.client().await);
    // The stream as the old relay created it: deletes and purges allowed.
    jetstream
        .create_stream(stream::Config {
            name: oms_relay::anchors::ANCHOR_STREAM.into(),
            subjects: vec!["oms.anchors.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut anchors = oms_relay::anchors::ensure_anchor_stream(&jetstream)
        .await
        .unwrap();
    let config = anchors.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge, "{config:?}");
    let tenant = Uuid::now_v7();
    let ack = jetstream
        .publish(format!("oms.anchors.{tenant}"), "an anchor".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(anchors.delete_message(ack.sequence).await.is_err());
    assert!(anchors.purge().await.is_err());
    assert!(anchors
        .purge()
        .filter(format!("oms.anchors.{tenant}"))
        .await
        .is_err());
    assert!(anchors.get_raw_message(ack.sequence).await.is_ok());
    assert_eq!(anchors.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn the_api_will_not_vouch_for_a_chain_without_an_anchor_key() {
    let nats = NatsServer::start();
    let app = spawn_api_on_nats(nats.client().await, |config| config.anchor_keys.clear()).await;
    let auditor = app.token_for(app.tenant, &[Role::Auditor]);
    let response = app
        .request(Method::GET, "/api/v1/audit/verify", &auditor)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("OMS_ANCHOR_KEY"),
        "{problem}"
    );
}
