//! Bad input that once reached a 500 or a slow 503, each answered with a 4xx problem at once
//! now: forged list cursors, tokens of tenants that do not exist, `min_position` beyond the
//! head, id headers of any length, dates and timestamps Postgres cannot hold, orders past
//! their line cap.

use crate::helpers::*;
use oms_api::auth::{Role, TokenKeys};
use oms_api::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A cursor as a client could forge it: URL-safe base64 (no padding) of `body`.
fn forge(body: &Value) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = body.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn forged_list_cursors_are_400() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "100", "2").await;
    let position = po["position"].as_i64().unwrap();
    let id = Uuid::from_u128(1);
    let forged = [
        // A key that is not a timestamp, for a sort by time: once a 500 from the cast.
        json!({"r": "purchase-orders", "s": "-created_at", "k": "not a time", "i": id}),
        json!({"r": "purchase-orders", "s": "-created_at", "k": "2024-06-01", "i": id}),
        json!({"r": "purchase-orders", "s": "-created_at", "k": 12, "i": id}),
        json!({"r": "purchase-orders", "s": "-created_at", "k": null, "i": "x"}),
        json!({"r": "purchase-orders", "s": "order_date", "k": "2026-02-30", "i": id}),
        json!({"r": "purchase-orders", "s": "order_date", "k": "-5000-01-01", "i": id}),
        json!({"r": "purchase-orders", "s": "total", "k": "NaN", "i": id}),
        json!({"r": "purchase-orders", "s": "total", "k": "1e999", "i": id}),
        json!({"r": "purchase-orders", "s": "order_number", "k": "PO\u{0}", "i": id}),
        json!({"r": "suppliers", "s": "-created_at", "k": "2024-06-01T00:00:00.000000Z", "i": id}),
        json!(["not", "an", "object"]),
    ];
    for body in forged {
        let sort = body["s"].as_str().unwrap_or("-created_at");
        let response = app
            .get(&format!(
                "/api/v1/purchase-orders?min_position={position}&sort={sort}&cursor={}",
                forge(&body)
            ))
            .await;
        let problem = expect_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("cursor"),
            "{body}: {problem}"
        );
    }
    for garbage in ["%00", "!!!", "e30", "Zg==", &"A".repeat(10_000)] {
        let response = app
            .get(&format!("/api/v1/suppliers?cursor={garbage}"))
            .await;
        expect_problem(response, StatusCode::BAD_REQUEST).await;
    }
    // A genuine cursor still pages.
    let first = app
        .get(&format!("/api/v1/products?limit=1&min_position={position}"))
        .await;
    let first = expect_json(first, StatusCode::OK).await;
    assert_eq!(first["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_token_for_a_tenant_that_does_not_exist_is_401_on_every_tenant_route() {
    let app = spawn_app().await;
    let (supplier, _) = app.reference_data().await;
    let before = app.write_footprint().await;
    let ghost = app.token_for(Uuid::now_v7(), &[Role::Admin]);
    let id = Uuid::now_v7();
    let reads = [
        "/api/v1/suppliers".to_string(),
        format!("/api/v1/suppliers/{supplier}"),
        "/api/v1/customers".into(),
        "/api/v1/products".into(),
        "/api/v1/plants".into(),
        "/api/v1/carriers".into(),
        "/api/v1/purchase-orders".into(),
        format!("/api/v1/purchase-orders/{id}"),
        format!("/api/v1/purchase-orders/{id}/history"),
        format!("/api/v1/purchase-orders/{id}/events"),
        "/api/v1/sales-orders".into(),
        format!("/api/v1/sales-orders/{id}?as_of=2026-01-01T00:00:00Z"),
        "/api/v1/audit/events".into(),
        "/api/v1/audit/verify".into(),
    ];
    for path in reads {
        let response = app
            .request(Method::GET, &path, &ghost)
            .send()
            .await
            .unwrap();
        let problem = expect_problem(response, StatusCode::UNAUTHORIZED).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("tenant"),
            "{path}: {problem}"
        );
    }
    let writes = [
        (
            Method::POST,
            "/api/v1/suppliers".to_string(),
            json!({"name": "Ghost"}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/suppliers/{supplier}"),
            json!({"name": "Ghost"}),
        ),
        (
            Method::POST,
            "/api/v1/purchase-orders".into(),
            json!({"supplier_id": supplier, "order_date": "2026-11-02"}),
        ),
        (
            Method::POST,
            format!("/api/v1/sales-orders/{id}/notes"),
            json!({"text": "hi"}),
        ),
    ];
    for (method, path, body) in writes {
        let response = app
            .request(method, &path, &ghost)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.write_footprint().await, before);
    // The tenant's own token still works, and a tenant created now is usable at once.
    expect_json(app.get("/api/v1/suppliers").await, StatusCode::OK).await;
    let created =
        oms_store::tenants::create(&app.pool, "Late Meats", &format!("late-{}", id.simple()))
            .await
            .unwrap();
    let late = app.token_for(created.id, &[Role::Readonly]);
    let response = app
        .request(Method::GET, "/api/v1/suppliers", &late)
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await;
}

#[tokio::test]
async fn an_unreachable_database_during_the_tenant_check_is_503_not_401() {
    let app = spawn_api_with(|config| {
        // Nothing listens on port 1: every lookup fails as an outage does.
        config.database_url = Secret::new("postgres://postgres@127.0.0.1:1/postgres");
        config.acquire_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let response = app.get("/api/v1/suppliers").await;
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let ghost = app.token_for(Uuid::now_v7(), &[Role::Admin]);
    let response = app
        .request(Method::GET, "/api/v1/purchase-orders", &ghost)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn min_position_beyond_the_head_is_400_at_once() {
    let app = spawn_api().await; // nothing projects: a wait would last the full 5 s
    let (supplier, _) = app.reference_data().await; // positions 1 and 2
    for (path, position) in [
        (format!("/api/v1/suppliers/{supplier}"), "3"),
        ("/api/v1/suppliers".to_string(), "9223372036854775807"),
        (
            format!("/api/v1/purchase-orders/{}/history", Uuid::now_v7()),
            "1000",
        ),
    ] {
        let started = Instant::now();
        let response = app.get(&format!("{path}?min_position={position}")).await;
        let problem = expect_problem(response, StatusCode::BAD_REQUEST).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{path} waited");
        assert!(
            problem["detail"].as_str().unwrap().contains("beyond"),
            "{problem}"
        );
    }
    // A tenant without events has position 0: min_position=0 reads at once, 1 is beyond.
    let fresh = oms_store::tenants::create(
        &app.pool,
        "Fresh",
        &format!("fresh-{}", Uuid::now_v7().simple()),
    )
    .await
    .unwrap();
    let token = app.token_for(fresh.id, &[Role::Readonly]);
    for (position, status) in [("0", StatusCode::OK), ("1", StatusCode::BAD_REQUEST)] {
        let response = app
            .request(
                Method::GET,
                &format!("/api/v1/carriers?min_position={position}"),
                &token,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "min_position={position}");
    }
}

#[tokio::test]
async fn id_headers_are_bounded_and_never_echoed_or_stored_when_refused() {
    let app = spawn_app().await;
    let before = app.write_footprint().await;
    let cases = [
        (
            "x-request-id",
            "r".repeat(201),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "x-request-id",
            "r".repeat(10_240),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "x-correlation-id",
            "c".repeat(10_240),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "x-causation-id",
            "k".repeat(201),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            "x-request-id",
            "two words".to_string(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "x-correlation-id",
            "tab\there".to_string(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (name, value, status) in cases {
        for method in [Method::POST, Method::GET] {
            let response = app
                .request(method.clone(), "/api/v1/suppliers", &app.admin())
                .header(name, value.as_str())
                .json(&json!({"name": "Prairie"}))
                .send()
                .await
                .unwrap();
            assert!(
                response
                    .headers()
                    .get("x-request-id")
                    .is_none_or(|v| v.as_bytes() != value.as_bytes()),
                "{name} was echoed"
            );
            let problem = expect_problem(response, status).await;
            assert!(
                problem["detail"].as_str().unwrap().contains("200"),
                "{method} {name}: {problem}"
            );
        }
    }
    // Unauthenticated routes are bounded too.
    let response = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .header("x-request-id", "r".repeat(300))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    assert_eq!(app.write_footprint().await, before);

    // At the bound, every id is accepted, echoed and stored.
    let longest = format!("{}~!", "a".repeat(198));
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("x-request-id", longest.as_str())
        .header("x-correlation-id", longest.as_str())
        .header("x-causation-id", longest.as_str())
        .json(&json!({"name": "Prairie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], longest.as_str());
    expect_json(response, StatusCode::CREATED).await;
    let metadata: Value = sqlx::query_scalar(
        "select metadata from events where tenant_id = $1 order by position desc limit 1",
    )
    .bind(app.tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    for key in ["request_id", "correlation_id", "causation_id"] {
        assert_eq!(metadata[key], longest.as_str(), "{key}");
    }
}

#[tokio::test]
async fn an_order_past_its_line_cap_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let before = app.write_footprint().await;
    let line = json!({"product_id": product, "weight": "1", "price_per_unit": "1"});
    // The request of the incident: 11,000 lines, under the 1 MiB body limit.
    for count in [501, 11_000] {
        let started = Instant::now();
        let response = app
            .post(
                "/api/v1/purchase-orders",
                json!({"supplier_id": supplier, "order_date": "2026-11-02",
                       "lines": vec![line.clone(); count]}),
            )
            .await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], "lines", "{problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("500"),
            "{problem}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{count} lines: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(app.write_footprint().await, before);
    // Exactly the cap is accepted; one more line is then refused.
    let po = app
        .post_ok(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02",
                   "lines": vec![line.clone(); 500]}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(po["lines"].as_array().unwrap().len(), 500);
    let response = app
        .post(
            &format!("/api/v1/purchase-orders/{}/lines", id_of(&po)),
            line,
        )
        .await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "lines", "{problem}");
}

#[tokio::test]
async fn dates_and_timestamps_outside_four_digit_years_are_refused() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let before = app.write_footprint().await;
    for (date, field) in [
        ("0000-01-01", "order_date"),
        ("+10000-01-01", "order_date"),
        ("-262000-01-01", "order_date"),
        ("2026-02-30", "order_date"),
    ] {
        let response = app
            .post(
                "/api/v1/purchase-orders",
                json!({"supplier_id": supplier, "order_date": date}),
            )
            .await;
        let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(problem["errors"][0]["field"], field, "{date}: {problem}");
    }
    assert_eq!(app.write_footprint().await, before);
    let po = app.draft_po(&supplier, &product, "1", "1").await;
    for as_of in [
        "0000-12-31T23:00:00Z",
        "-5000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
    ] {
        let response = app
            .get(&format!(
                "/api/v1/purchase-orders/{}?as_of={as_of}",
                id_of(&po)
            ))
            .await;
        expect_problem(response, StatusCode::BAD_REQUEST).await;
    }
    for query in [
        "order_date_from=-5000-01-01",
        "order_date_to=%2B10000-01-01",
        "q=%00",
    ] {
        let response = app.get(&format!("/api/v1/purchase-orders?{query}")).await;
        expect_problem(response, StatusCode::BAD_REQUEST).await;
    }
    // The calendar's edges themselves are dates.
    app.post_ok(
        "/api/v1/purchase-orders",
        json!({"supplier_id": supplier, "order_date": "0001-01-01", "delivery_date": "9999-12-31"}),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn a_token_whose_subject_cannot_be_recorded_is_401() {
    let app = spawn_app().await;
    let before = app.write_footprint().await;
    let keys = TokenKeys::new(SECRET);
    for (sub, name) in [
        ("eve\u{0}", None),
        ("", None),
        ("mary", Some("Mary\u{7}")),
        (&*"x".repeat(201), None),
    ] {
        let token = keys.mint(
            sub,
            name,
            Some(app.tenant),
            vec![Role::Admin],
            chrono::Duration::hours(1),
        );
        let response = app
            .request(Method::POST, "/api/v1/suppliers", &token)
            .json(&json!({"name": "Prairie"}))
            .send()
            .await
            .unwrap();
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.write_footprint().await, before);
}
