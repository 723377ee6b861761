//! Each error class of API.md, and for every refused write: nothing was written.

use crate::helpers::*;
use oms_api::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn malformed_json_is_400_and_writes_nothing() {
    let app = spawn_app().await;
    let before = app.write_footprint().await;
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("content-type", "application/json")
        .body("{\"name\": \"Prairie")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST).await;
    let bad_id = app.get("/api/v1/purchase-orders/not-a-uuid").await;
    expect_problem(bad_id, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.write_footprint().await, before);
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_are_401() {
    let app = spawn_app().await;
    let before = app.write_footprint().await;
    let url = format!("{}/api/v1/suppliers", app.address);
    let body = json!({"name": "Prairie Packers"});

    let none = app.client.post(&url).json(&body).send().await.unwrap();
    expect_problem(none, StatusCode::UNAUTHORIZED).await;

    let forged = TokenKeys::new("not-the-secret").mint(
        "eve",
        None,
        Some(app.tenant),
        vec![Role::Admin],
        chrono::Duration::hours(1),
    );
    let bad = app
        .client
        .post(&url)
        .bearer_auth(forged)
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(bad, StatusCode::UNAUTHORIZED).await;

    let garbage = app
        .client
        .post(&url)
        .bearer_auth("abc.def.ghi")
        .json(&body)
        .send()
        .await
        .unwrap();
    expect_problem(garbage, StatusCode::UNAUTHORIZED).await;

    let expired = app.keys.mint(
        "mary",
        None,
        Some(app.tenant),
        vec![Role::Admin],
        chrono::Duration::seconds(-10),
    );
    let response = app
        .client
        .post(&url)
        .bearer_auth(expired)
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, StatusCode::UNAUTHORIZED).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("expired"),
        "{problem}"
    );

    assert_eq!(app.write_footprint().await, before);
}

use oms_api::auth::TokenKeys;

#[tokio::test]
async fn roles_limit_what_a_token_may_do_with_403() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let submitted = app
        .post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    let before = app.write_footprint().await;

    let readonly = app.token_for(app.tenant, &[Role::Readonly]);
    let response = app
        .request(Method::POST, "/api/v1/purchase-orders", &readonly)
        .json(&json!({"supplier_id": supplier, "order_date": "2026-11-02"}))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::FORBIDDEN).await;
    // readonly may read
    let read = app
        .request(
            Method::GET,
            &format!("{base}?min_position={}", submitted["position"]),
            &readonly,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    // a user may not approve (manager's job) nor write reference data
    let user = app.token_for(app.tenant, &[Role::User]);
    let approve = app
        .request(Method::POST, &format!("{base}/approve"), &user)
        .send()
        .await
        .unwrap();
    expect_problem(approve, StatusCode::FORBIDDEN).await;
    let supplier_write = app
        .request(Method::POST, "/api/v1/suppliers", &user)
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    expect_problem(supplier_write, StatusCode::FORBIDDEN).await;

    // platform_admin has no access to a tenant's orders; tenants are platform_admin's only
    let platform = app.keys.mint(
        "root",
        None,
        None,
        vec![Role::PlatformAdmin],
        chrono::Duration::hours(1),
    );
    let orders = app
        .request(Method::GET, &base, &platform)
        .send()
        .await
        .unwrap();
    expect_problem(orders, StatusCode::FORBIDDEN).await;
    let tenants = app
        .request(Method::GET, "/api/v1/tenants", &app.admin())
        .send()
        .await
        .unwrap();
    expect_problem(tenants, StatusCode::FORBIDDEN).await;

    assert_eq!(app.write_footprint().await, before);
}

#[tokio::test]
async fn another_tenants_order_is_404_for_queries_and_commands() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let before = app.write_footprint().await;

    let other = oms_store::tenants::create(&app.pool, "Rival Meats", "rival")
        .await
        .unwrap()
        .id;
    let rival = app.token_for(other, &[Role::Admin]);
    let read = app
        .request(Method::GET, &base, &rival)
        .send()
        .await
        .unwrap();
    expect_problem(read, StatusCode::NOT_FOUND).await;
    let submit = app
        .request(Method::POST, &format!("{base}/submit"), &rival)
        .send()
        .await
        .unwrap();
    expect_problem(submit, StatusCode::NOT_FOUND).await;
    let supplier_read = app
        .request(
            Method::GET,
            &format!("/api/v1/suppliers/{supplier}"),
            &rival,
        )
        .send()
        .await
        .unwrap();
    expect_problem(supplier_read, StatusCode::NOT_FOUND).await;
    let patch = app
        .request(
            Method::PATCH,
            &format!("/api/v1/suppliers/{supplier}"),
            &rival,
        )
        .json(&json!({"name": "Mine now"}))
        .send()
        .await
        .unwrap();
    expect_problem(patch, StatusCode::NOT_FOUND).await;
    // Using another tenant's supplier on one's own order is "unknown supplier".
    let borrowed = app
        .request(Method::POST, "/api/v1/purchase-orders", &rival)
        .json(&json!({"supplier_id": supplier, "order_date": "2026-11-02"}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(borrowed, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "supplier_id", "{problem}");

    assert_eq!(app.write_footprint().await, before);
}

#[tokio::test]
async fn wrong_state_and_duplicates_are_409_and_write_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let before = app.write_footprint().await;

    expect_problem(
        app.post(&format!("{base}/approve"), json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
    expect_problem(
        app.post(&format!("{base}/close"), json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;

    let duplicate_code = app
        .post(
            "/api/v1/suppliers",
            json!({"name": "Another", "code": "PRA"}),
        )
        .await;
    let problem = expect_problem(duplicate_code, StatusCode::CONFLICT).await;
    assert_eq!(problem["errors"][0]["field"], "code", "{problem}");

    let duplicate_number = app
        .post(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "order_number": po["order_number"]}),
        )
        .await;
    let problem = expect_problem(duplicate_number, StatusCode::CONFLICT).await;
    assert_eq!(problem["errors"][0]["field"], "order_number", "{problem}");

    assert_eq!(app.write_footprint().await, before);
}

#[tokio::test]
async fn if_match_with_a_stale_version_is_412_and_writes_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let before = app.write_footprint().await;

    let stale = app
        .request(Method::POST, &format!("{base}/submit"), &app.admin())
        .header("if-match", "\"7\"")
        .send()
        .await
        .unwrap();
    let problem = expect_problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(problem["current_version"], 1);
    assert_eq!(app.write_footprint().await, before);

    let fresh = app
        .request(Method::POST, &format!("{base}/submit"), &app.admin())
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    let body = expect_json(fresh, StatusCode::OK).await;
    assert_eq!(body["version"], 2);
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413_and_not_json_is_415() {
    let app = spawn_app().await;
    let before = app.write_footprint().await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("content-type", "text/plain")
        .body("name=Prairie")
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(app.write_footprint().await, before);
}

#[tokio::test]
async fn validation_failures_are_422_name_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "100", "2").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    let before = app.write_footprint().await;

    let line = |weight: serde_json::Value| json!([{"product_id": product, "weight": weight, "price_per_unit": "1"}]);
    let cases = [
        (
            "unknown field",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "colour": "red"}),
            "colour",
        ),
        (
            "bad date",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-02-30"}),
            "order_date",
        ),
        (
            "negative weight",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "lines": line(json!("-5"))}),
            "lines[0].weight",
        ),
        (
            "unknown supplier",
            "/api/v1/purchase-orders",
            json!({"supplier_id": Uuid::now_v7(), "order_date": "2026-11-02"}),
            "supplier_id",
        ),
        (
            "unknown product",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "lines": [{"product_id": Uuid::now_v7(), "weight": "1", "price_per_unit": "1"}]}),
            "lines[0].product_id",
        ),
        (
            "delivery before order date",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "delivery_date": "2026-11-01"}),
            "delivery_date",
        ),
        (
            "overpayment",
            &format!("{base}/payments"),
            json!({"amount": "200.01", "paid_on": "2026-11-03", "method": "wire"}),
            "amount",
        ),
        (
            "payment dated in the future",
            &format!("{base}/payments"),
            json!({"amount": "1.00", "paid_on": (chrono::Utc::now().date_naive() + chrono::Duration::days(2)).to_string(), "method": "wire"}),
            "paid_on",
        ),
        (
            "zero payment",
            &format!("{base}/payments"),
            json!({"amount": "0", "paid_on": "2026-11-03", "method": "wire"}),
            "amount",
        ),
        (
            "unknown payment method",
            &format!("{base}/payments"),
            json!({"amount": "1", "paid_on": "2026-11-03", "method": "barter"}),
            "method",
        ),
        (
            "bad currency",
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "currency": "XYZ"}),
            "currency",
        ),
        (
            "empty name",
            "/api/v1/suppliers",
            json!({"name": "  "}),
            "name",
        ),
        (
            "receipt of an unknown line",
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-03", "complete": true, "lines": [{"line_id": Uuid::now_v7(), "weight": "1"}]}),
            "lines[0].line_id",
        ),
    ];
    for (case, path, body, field) in cases {
        let response = app.post(path, body).await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let fields: Vec<String> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: no errors[] in {problem}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            fields.iter().any(|f| f == field)
                || problem["detail"].as_str().unwrap().contains(field),
            "{case}: expected the field {field} in {problem}"
        );
        assert_eq!(
            app.write_footprint().await,
            before,
            "{case} wrote something"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    expect_problem(app.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND).await;
    let response = app
        .request(Method::PUT, "/api/v1/purchase-orders", &app.admin())
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn a_tenant_over_its_rate_limit_gets_429_with_retry_after_and_nothing_is_written() {
    let app = spawn_api_with(|config| config.rate_limit = Some((1.0, 3.0))).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let response = app
            .post("/api/v1/customers", json!({"name": format!("C{n}")}))
            .await;
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().get("retry-after").is_some());
            expect_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        }
    }
    assert_eq!(
        statuses,
        vec![
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(app.event_count().await, 3);
    // Another tenant has its own allowance.
    let other = oms_store::tenants::create(&app.pool, "Other", "other-rl")
        .await
        .unwrap()
        .id;
    let response = app
        .request(
            Method::POST,
            "/api/v1/customers",
            &app.token_for(other, &[Role::Admin]),
        )
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_purchase_order_line_cannot_name_a_source_purchase_order() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let draft = app.draft_po(&supplier, &product, "100", "2.00").await;
    let before = app.write_footprint().await;
    let line = json!({"product_id": product, "weight": "10", "price_per_unit": "1.00",
                      "source_purchase_order_id": id_of(&draft)});

    let create = app
        .post(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "lines": [line.clone()]}),
        )
        .await;
    let add = app
        .post(
            &format!("/api/v1/purchase-orders/{}/lines", id_of(&draft)),
            line,
        )
        .await;

    for response in [create, add] {
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("source_purchase_order_id"),
            "{problem}"
        );
    }
    assert_eq!(app.write_footprint().await, before);
}
