//! Racing commands: one aggregate, many writers.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn thirty_two_parallel_approvals_give_one_200_and_thirty_one_409s() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    let events_before = app.event_count().await;

    let token = app.admin();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let request = app.request(Method::POST, &format!("{base}/approve"), &token);
        tasks.push(tokio::spawn(async move {
            request.send().await.unwrap().status()
        }));
    }
    let mut ok = 0;
    let mut conflict = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => conflict += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, conflict), (1, 31));
    assert_eq!(app.event_count().await, events_before + 1);
}

#[tokio::test]
async fn parallel_creates_get_distinct_gapless_order_numbers() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let request = app
            .request(Method::POST, "/api/v1/purchase-orders", &app.admin())
            .json(&json!({"supplier_id": supplier, "order_date": "2026-11-02",
                          "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]}));
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            expect_json(response, StatusCode::CREATED).await["order_number"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.unwrap());
    }
    numbers.sort();
    let expected: Vec<String> = (1..=20).map(|n| format!("PO-{n:06}")).collect();
    assert_eq!(numbers, expected);
}

#[tokio::test]
async fn commands_of_several_tenants_committed_together_keep_every_promise_and_a_refused_one_fails_alone(
) {
    // Arrange: four tenants, and every tenant's head row held by another transaction, so that
    // the commands sent meanwhile queue up and are written in shared transactions once it
    // lets go.
    let app = spawn_app().await;
    let mut tenants = vec![app.tenant];
    for n in 0..3 {
        let slug = format!("group-{n}-{}", uuid::Uuid::new_v4().simple());
        tenants.push(
            oms_store::tenants::create(&app.pool, "Group Meats", &slug)
                .await
                .unwrap()
                .id,
        );
    }
    let hold = app.hold_heads(&tenants).await;

    // Act: eight supplier registrations per tenant at once; in the first tenant four of them
    // ask for the same code, which only one may get.
    let mut tasks = Vec::new();
    for (t, tenant) in tenants.iter().enumerate() {
        let token = app.token_for(*tenant, &[oms_api::auth::Role::Admin]);
        for n in 0..8 {
            let code = if t == 0 && n < 4 {
                "DUP".to_string()
            } else {
                format!("S{t}-{n}")
            };
            let request = app
                .request(Method::POST, "/api/v1/suppliers", &token)
                .json(&json!({"name": format!("Supplier {t}-{n}"), "code": code}));
            tasks.push(tokio::spawn(async move {
                (t, n, request.send().await.unwrap().status())
            }));
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    hold.rollback().await.unwrap();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }

    // Assert: exactly one of the four same-code registrations won, and every other command
    // of every tenant committed — a neighbour's refusal failed none of them.
    let won = statuses
        .iter()
        .filter(|(t, n, s)| *t == 0 && *n < 4 && *s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|(t, n, s)| *t == 0 && *n < 4 && *s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, refused), (1, 3), "{statuses:?}");
    assert!(
        statuses
            .iter()
            .filter(|(t, n, _)| !(*t == 0 && *n < 4))
            .all(|(_, _, s)| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    // Commands did share transactions, and the refused ones were sent back to run alone.
    let batches = counter(&app, "oms_group_commit_batches_total").await;
    let grouped = counter(&app, "oms_group_commit_commands_total").await;
    let alone = counter(&app, "oms_group_commit_alone_total").await;
    assert!(
        grouped > batches,
        "{grouped} commands in {batches} batches, {alone} alone"
    );
    assert!(alone >= 3.0, "{alone} commands ran alone");
    // Every tenant's positions are 1..=n without a gap, and its chain verifies.
    let store = oms_store::EventStore::new(app.pool.clone());
    for (t, tenant) in tenants.iter().enumerate() {
        let positions: Vec<i64> = sqlx::query_scalar(
            "select position from events where tenant_id = $1 order by position",
        )
        .bind(tenant)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let expected = if t == 0 { 5 } else { 8 };
        assert_eq!(
            positions,
            (1..=expected).collect::<Vec<i64>>(),
            "tenant {t}"
        );
        let report = store.verify_chain(*tenant).await.unwrap();
        assert!(report.ok, "tenant {t}: {report:?}");
        assert_eq!(report.head_position, expected);
    }
}

#[tokio::test]
async fn numbered_commands_committed_together_get_gapless_numbers_in_their_events_and_responses() {
    // Arrange: two tenants. In the first, PO-000003 was given explicitly, and two sales orders
    // are delivered, ready to be invoiced.
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let po = |number: Option<&str>| {
        let mut body = json!({"supplier_id": supplier, "order_date": "2026-11-02",
                              "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]});
        if let Some(number) = number {
            body["order_number"] = json!(number);
        }
        body
    };
    app.post_ok(
        "/api/v1/purchase-orders",
        po(Some("PO-000003")),
        StatusCode::CREATED,
    )
    .await;
    let so = json!({"customer_id": customer, "order_date": "2026-11-02",
                    "lines": [{"product_id": product, "weight": "10", "price_per_unit": "2"}]});
    let mut delivered = Vec::new();
    for _ in 0..2 {
        let (base, line) = app.confirmed_so(so.clone()).await;
        app.post_ok(
            &format!("{base}/ship"),
            json!({"shipped_on": "2026-11-05", "lines": [{"line_id": line, "weight": "10"}]}),
            StatusCode::OK,
        )
        .await;
        app.post_ok(
            &format!("{base}/deliver"),
            json!({"delivered_on": "2026-11-06"}),
            StatusCode::OK,
        )
        .await;
        delivered.push(base);
    }
    let other = oms_store::tenants::create(&app.pool, "Other Meats", "other-meats")
        .await
        .unwrap()
        .id;
    let other_token = app.token_for(other, &[oms_api::auth::Role::Admin]);
    let other_supplier = app
        .request(Method::POST, "/api/v1/suppliers", &other_token)
        .json(&json!({"name": "S", "code": "PRA"}))
        .send()
        .await
        .unwrap();
    let other_supplier = id_of(&expect_json(other_supplier, StatusCode::CREATED).await);
    let other_product = app
        .request(Method::POST, "/api/v1/products", &other_token)
        .json(&json!({"code": "BF", "description": "Trim", "protein": "beef", "uom": "LB"}))
        .send()
        .await
        .unwrap();
    let other_product = id_of(&expect_json(other_product, StatusCode::CREATED).await);
    let grouped_before = counter(&app, "oms_group_commit_commands_total").await;
    let hold = app.hold_heads(&[app.tenant, other]).await;

    // Act: while the heads are held, five purchase orders and two sales orders per tenant,
    // the two invoices, and one more purchase order asking for the taken PO-000003.
    let mut tasks = Vec::new();
    let mut send = |label: &'static str, request: reqwest::RequestBuilder| {
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                label,
                status,
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }));
    };
    let other_po = json!({"supplier_id": other_supplier, "order_date": "2026-11-02",
                          "lines": [{"product_id": other_product, "weight": "1", "price_per_unit": "1"}]});
    for _ in 0..5 {
        send(
            "po",
            app.request(Method::POST, "/api/v1/purchase-orders", &app.admin())
                .json(&po(None)),
        );
        send(
            "other po",
            app.request(Method::POST, "/api/v1/purchase-orders", &other_token)
                .json(&other_po),
        );
    }
    for _ in 0..2 {
        send(
            "so",
            app.request(Method::POST, "/api/v1/sales-orders", &app.admin())
                .json(&so),
        );
    }
    for base in &delivered {
        send(
            "invoice",
            app.request(Method::POST, &format!("{base}/invoice"), &app.admin())
                .json(&json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"})),
        );
    }
    send(
        "taken",
        app.request(Method::POST, "/api/v1/purchase-orders", &app.admin())
            .json(&po(Some("PO-000003"))),
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    hold.rollback().await.unwrap();
    let mut numbers: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for task in tasks {
        let (label, status, body) = task.await.unwrap();
        if label == "taken" {
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            continue;
        }
        assert!(status.is_success(), "{label}: {status} {body}");
        let field = if label == "invoice" {
            "invoice_number"
        } else {
            "order_number"
        };
        let number = body[field].as_str().unwrap().to_string();
        // The response is the order as stored: its number is the one its events carry.
        let path = if label.ends_with("po") {
            "purchase-orders"
        } else {
            "sales-orders"
        };
        let token = if label == "other po" {
            other_token.clone()
        } else {
            app.admin()
        };
        // Read at the command's position: the read model is filled by a loop beside the
        // test, which may not have reached it yet.
        let read = app
            .request(
                Method::GET,
                &format!(
                    "/api/v1/{path}/{}?min_position={}",
                    id_of(&body),
                    body["position"]
                ),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_json(read, StatusCode::OK).await[field],
            number.as_str()
        );
        numbers.entry(label).or_default().push(number);
    }

    // Assert: every series is gapless per tenant and skipped the number given explicitly;
    // the stand-in is nowhere; and the numbered commands were committed in shared
    // transactions.
    for list in numbers.values_mut() {
        list.sort();
    }
    let series = |prefix: &str, range: &[u32]| -> Vec<String> {
        range.iter().map(|n| format!("{prefix}-{n:06}")).collect()
    };
    assert_eq!(numbers["po"], series("PO", &[1, 2, 4, 5, 6]));
    assert_eq!(numbers["other po"], series("PO", &[1, 2, 3, 4, 5]));
    assert_eq!(numbers["so"], series("SO", &[3, 4]));
    assert_eq!(numbers["invoice"], series("INV", &[1, 2]));
    let stand_ins: i64 = sqlx::query_scalar(
        "select (select count(*) from events where payload::text like '%-000000%')
              + (select count(*) from unique_keys where key like '%-000000')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stand_ins, 0);
    let stored: Vec<String> = sqlx::query_scalar(
        "select payload->'Created'->>'order_number' from events
          where tenant_id = $1 and event_type = 'PurchaseOrderCreated' order by position",
    )
    .bind(other)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(stored_sorted, series("PO", &[1, 2, 3, 4, 5]));
    // Numbers follow positions: the order they were committed in.
    assert_eq!(stored, stored_sorted);
    let grouped = counter(&app, "oms_group_commit_commands_total").await - grouped_before;
    assert!(
        grouped >= 12.0,
        "only {grouped} of the 15 numbered commands were committed in a batch"
    );
    let store = oms_store::EventStore::new(app.pool.clone());
    for tenant in [app.tenant, other] {
        assert!(store.verify_chain(tenant).await.unwrap().ok);
    }
}

#[tokio::test]
async fn a_command_on_a_stale_cached_state_is_set_aside_and_its_batch_commits_the_rest_gapless() {
    use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderCommand};
    use oms_domain::services::SystemClock;
    use oms_store::idempotency::Reply;
    use std::sync::Arc;

    // Arrange: six draft orders this service holds the decided states of; another process
    // then adds a note to the first, so that this service's state of it is stale.
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let mut orders = Vec::new();
    for _ in 0..6 {
        orders.push(id_of(&app.draft_po(&supplier, &product, "10", "1").await));
    }
    let other = oms_store::Commands::new(
        oms_store::EventStore::new(app.pool.clone()),
        Arc::new(SystemClock),
    );
    let ctx = oms_store::CommandContext {
        tenant: app.tenant,
        actor: oms_store::Actor {
            subject: "other-process".into(),
            name: None,
        },
        request_id: "other".into(),
        correlation_id: "other".into(),
        causation_id: None,
        expected_version: None,
        idempotency: None,
    };
    other
        .execute::<PurchaseOrder, _, _>(
            &ctx,
            orders[0].parse().unwrap(),
            None,
            |_| PurchaseOrderCommand::AddNote {
                note_id: uuid::Uuid::now_v7(),
                text: serde_json::from_value(json!("added elsewhere")).unwrap(),
            },
            |_, _| Reply {
                status: 200,
                body: json!({}).into(),
                headers: Vec::new(),
            },
        )
        .await
        .unwrap();
    let events_before = app.event_count().await;
    let alone_before = counter(&app, "oms_group_commit_alone_total").await;

    // Act: the tenant's head is held while the six submits queue, the stale one among the
    // others, so that they are written in shared transactions once it lets go.
    let hold = app.hold_heads(&[app.tenant]).await;
    let token = app.admin();
    let mut tasks = Vec::new();
    // The stale one fourth: the two writers each take one and wait for the head, and the
    // next batch holds it between two others, whose positions move when it is set aside.
    for n in [1, 2, 3, 0, 4, 5] {
        let order = &orders[n];
        let request = app.request(
            Method::POST,
            &format!("/api/v1/purchase-orders/{order}/submit"),
            &token,
        );
        tasks.push(tokio::spawn(async move {
            let response = request.send().await.unwrap();
            (n, expect_json(response, StatusCode::OK).await)
        }));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    hold.rollback().await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    // Assert: every submit succeeded; the stale one (alone, after reading the note) answers
    // with the note's version; only it was set aside.
    for (n, answer) in &answers {
        assert_eq!(answer["status"], "submitted", "order {n}: {answer}");
        let version = if *n == 0 { 3 } else { 2 };
        assert_eq!(answer["version"], version, "order {n}: {answer}");
    }
    let alone = counter(&app, "oms_group_commit_alone_total").await - alone_before;
    assert_eq!(alone, 1.0, "only the stale command ran alone");
    // Positions follow on without a gap, each answer's position is its own event's, and the
    // chain verifies.
    let positions: Vec<i64> = sqlx::query_scalar(
        "select position from events where tenant_id = $1 and position > $2 order by position",
    )
    .bind(app.tenant)
    .bind(events_before)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        positions,
        (events_before + 1..=events_before + 6).collect::<Vec<i64>>()
    );
    for (n, answer) in &answers {
        let at: i64 = sqlx::query_scalar(
            "select position from events
              where tenant_id = $1 and aggregate_id = $2 and event_type = 'PurchaseOrderSubmitted'",
        )
        .bind(app.tenant)
        .bind(orders[*n].parse::<uuid::Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(answer["position"], at, "order {n}: {answer}");
    }
    let report = oms_store::EventStore::new(app.pool.clone())
        .verify_chain(app.tenant)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn a_create_after_its_supplier_is_deactivated_in_the_same_batch_is_refused() {
    // Arrange: a supplier and a product this service holds the decided states of, and two
    // draft orders to submit.
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let fillers = [
        id_of(&app.draft_po(&supplier, &product, "10", "1").await),
        id_of(&app.draft_po(&supplier, &product, "10", "1").await),
    ];
    let orders_before: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'PurchaseOrderCreated'")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    // Act: the tenant's head is held; two submits occupy the two writers, then the supplier
    // is deactivated and a create naming it is decided (on the cached supplier, still
    // active), both queued for the same batch, the deactivation first.
    let hold = app.hold_heads(&[app.tenant]).await;
    let token = app.admin();
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));
    let mut submits = Vec::new();
    for order in &fillers {
        let request = app.request(
            Method::POST,
            &format!("/api/v1/purchase-orders/{order}/submit"),
            &token,
        );
        submits.push(tokio::spawn(async move {
            request.send().await.unwrap().status()
        }));
        pause().await;
    }
    let deactivate = app
        .request(
            Method::PATCH,
            &format!("/api/v1/suppliers/{supplier}"),
            &token,
        )
        .json(&json!({"active": false}));
    let deactivated = tokio::spawn(async move { deactivate.send().await.unwrap().status() });
    pause().await;
    let create = app
        .request(Method::POST, "/api/v1/purchase-orders", &token)
        .json(&json!({"supplier_id": supplier, "order_date": "2026-11-02",
                      "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]}));
    let created = tokio::spawn(async move {
        let response = create.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    });
    pause().await;
    hold.rollback().await.unwrap();

    // Assert: the deactivation committed first, so the create is refused as a read would
    // refuse it, and no order was created.
    for submit in submits {
        assert_eq!(submit.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(deactivated.await.unwrap(), StatusCode::OK);
    let (status, body) = created.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("supplier is inactive"), "{body}");
    let orders_after: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'PurchaseOrderCreated'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(orders_after, orders_before);
}
