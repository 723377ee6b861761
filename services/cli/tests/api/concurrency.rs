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
