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

/// The value of an unlabelled counter on the operator listener's `/metrics`.
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} is not on /metrics"))
        .trim()
        .parse()
        .unwrap()
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
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from tenant_heads where tenant_id = any($1) for update")
        .bind(&tenants)
        .fetch_all(&mut *hold)
        .await
        .unwrap();

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
