//! Idempotency-Key: a repeat returns the first response and writes nothing; the same key with
//! another body is 422.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_repeated_keyed_request_returns_the_identical_response_and_writes_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let body = json!({"supplier_id": supplier, "order_date": "2026-11-02",
                      "lines": [{"product_id": product, "weight": "40000", "price_per_unit": "2.1575"}]});
    let send = || {
        app.request(Method::POST, "/api/v1/purchase-orders", &app.admin())
            .header("idempotency-key", "order-2026-11-02-a")
            .json(&body)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();
    let after_first = app.write_footprint().await;

    let second = send().await.unwrap();
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["location"], first_location);
    let second_body = second.text().await.unwrap();
    let first_json: serde_json::Value = serde_json::from_str(&first_body).unwrap();
    let second_json: serde_json::Value = serde_json::from_str(&second_body).unwrap();
    assert_eq!(first_json, second_json);
    assert_eq!(app.write_footprint().await, after_first);

    // Same key, another body: 422, nothing written.
    let other = app
        .request(Method::POST, "/api/v1/purchase-orders", &app.admin())
        .header("idempotency-key", "order-2026-11-02-a")
        .json(&json!({"supplier_id": supplier, "order_date": "2026-11-03"}))
        .send()
        .await
        .unwrap();
    expect_problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.write_footprint().await, after_first);
}

#[tokio::test]
async fn a_keyed_refusal_is_not_recorded_so_a_corrected_retry_with_another_key_works() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "1", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    // approve a draft: refused, and the key stays unused
    let refused = app
        .request(Method::POST, &format!("{base}/approve"), &app.admin())
        .header("idempotency-key", "k1")
        .send()
        .await
        .unwrap();
    expect_problem(refused, StatusCode::CONFLICT).await;
    let submitted = app
        .request(Method::POST, &format!("{base}/submit"), &app.admin())
        .header("idempotency-key", "k2")
        .send()
        .await
        .unwrap();
    assert_eq!(submitted.status(), StatusCode::OK);
    let approved = app
        .request(Method::POST, &format!("{base}/approve"), &app.admin())
        .header("idempotency-key", "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), StatusCode::OK);
    assert!(approved.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn an_idempotency_key_over_200_characters_is_400() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("idempotency-key", "k".repeat(201))
        .json(&json!({"name": "Prairie"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn the_same_key_from_another_user_is_that_users_own_request() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let body = json!({"supplier_id": supplier, "order_date": "2026-11-02",
                      "lines": [{"product_id": product, "weight": "100", "price_per_unit": "2.00"}]});
    let bob = app.keys.mint(
        "bob",
        Some("Bob Smith"),
        Some(app.tenant),
        vec![oms_api::auth::Role::Admin],
        chrono::Duration::hours(1),
    );
    let send = |token: String| {
        app.request(Method::POST, "/api/v1/purchase-orders", &token)
            .header("idempotency-key", "shared-key-1")
            .json(&body)
            .send()
    };

    let marys = send(app.admin()).await.unwrap();
    let bobs = send(bob.clone()).await.unwrap();

    // Bob's request ran as his own: a second order, recorded with Bob as its actor, not a
    // replay of Mary's response.
    assert!(bobs.headers().get("idempotent-replayed").is_none());
    let marys = expect_json(marys, StatusCode::CREATED).await;
    let bobs = expect_json(bobs, StatusCode::CREATED).await;
    assert_ne!(marys["id"], bobs["id"]);
    let actors: Vec<String> = sqlx::query_scalar(
        "select metadata->>'actor' from events
          where tenant_id = $1 and event_type = 'PurchaseOrderCreated' order by position",
    )
    .bind(app.tenant)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(actors, ["mary", "bob"]);
    // Each user's repeat is answered with their own first response.
    let again = send(bob).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        expect_json(again, StatusCode::CREATED).await["id"],
        bobs["id"]
    );
}

/// A command on an order this process has just written is decided on the state it cached,
/// without looking its key up first: a repeat must still be answered from the record (not
/// decided again: a second note), and the key with another body must still be 422 — on the
/// same order, whose state is cached, and with nothing written either time.
#[tokio::test]
async fn a_repeat_on_an_order_whose_state_is_cached_is_replayed_not_decided_again() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "1000", "2.10").await;
    let notes = format!("/api/v1/purchase-orders/{}/notes", id_of(&po));
    // Warm: the order's state is now cached by the process.
    app.post_ok(&notes, json!({"text": "warm"}), StatusCode::OK)
        .await;
    let send = |text: &str| {
        app.request(Method::POST, &notes, &app.admin())
            .header("idempotency-key", "note-once")
            .json(&json!({ "text": text }))
            .send()
    };
    let first = expect_json(send("once").await.unwrap(), StatusCode::OK).await;
    let after_first = app.write_footprint().await;

    let again = send("once").await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(expect_json(again, StatusCode::OK).await, first);
    assert_eq!(app.write_footprint().await, after_first);

    expect_problem(
        send("another text").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(app.write_footprint().await, after_first);

    let events: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type = 'PurchaseOrderNoteAdded'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events, 2, "the warm-up note and one 'once'");
}
