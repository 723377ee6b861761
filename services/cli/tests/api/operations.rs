//! Health, readiness, metrics, the OpenAPI document and the docs page; tenants.

use crate::helpers::*;
use oms_api::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_ready_metrics_openapi_and_docs_answer() {
    let app = spawn_app().await;
    let health = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap();
    let ready = expect_json(ready, StatusCode::OK).await;
    assert_eq!(ready["migrations"], true);

    let openapi = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    let openapi = expect_json(openapi, StatusCode::OK).await;
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/purchase-orders",
        "/api/v1/purchase-orders/{id}/approve",
        "/api/v1/sales-orders/{id}/invoice",
        "/api/v1/tenants",
        "/api/v1/suppliers",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    let docs = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().to_lowercase().contains("<html"));

    app.get("/api/v1/purchase-orders/00000000-0000-0000-0000-000000000000")
        .await;
    let text = metrics_text(&app).await;
    assert!(
        text.contains("oms_http_responses_total{status=\"404\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_returned_and_recorded_in_event_metadata() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("x-request-id", "req-abc-123")
        .header("x-correlation-id", "corr-9")
        .json(&json!({"name": "Prairie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-abc-123");
    assert_eq!(response.status(), StatusCode::CREATED);
    let metadata: serde_json::Value = sqlx::query_scalar(
        "select metadata from events where tenant_id = $1 order by position desc limit 1",
    )
    .bind(app.tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(metadata["request_id"], "req-abc-123");
    assert_eq!(metadata["correlation_id"], "corr-9");
    assert_eq!(metadata["actor"], "mary");
    assert_eq!(metadata["actor_name"], "Mary Jones");
}

#[tokio::test]
async fn platform_admin_creates_and_lists_tenants() {
    let app = spawn_app().await;
    let root = app.keys.mint(
        "root",
        None,
        None,
        vec![Role::PlatformAdmin],
        chrono::Duration::hours(1),
    );
    let created = app
        .request(Method::POST, "/api/v1/tenants", &root)
        .json(&json!({"name": "Northern Beef", "slug": "northern-beef"}))
        .send()
        .await
        .unwrap();
    let created = expect_json(created, StatusCode::CREATED).await;
    assert_eq!(created["slug"], "northern-beef");
    let duplicate = app
        .request(Method::POST, "/api/v1/tenants", &root)
        .json(&json!({"name": "Again", "slug": "northern-beef"}))
        .send()
        .await
        .unwrap();
    expect_problem(duplicate, StatusCode::CONFLICT).await;
    let invalid = app
        .request(Method::POST, "/api/v1/tenants", &root)
        .json(&json!({"name": "Bad", "slug": "Not A Slug"}))
        .send()
        .await
        .unwrap();
    expect_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY).await;
    let list = app
        .request(Method::GET, "/api/v1/tenants", &root)
        .send()
        .await
        .unwrap();
    let list = expect_json(list, StatusCode::OK).await;
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["slug"] == "northern-beef"));

    // The new tenant's token works at once.
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let token = app.token_for(id, &[Role::Admin]);
    let supplier = app
        .request(Method::POST, "/api/v1/suppliers", &token)
        .json(&json!({"name": "S"}))
        .send()
        .await
        .unwrap();
    assert_eq!(supplier.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_tenant_name_with_a_control_character_is_422_and_creates_nothing() {
    let app = spawn_app().await;
    let root = app.keys.mint(
        "root",
        None,
        None,
        vec![Role::PlatformAdmin],
        chrono::Duration::hours(1),
    );
    let tenants_before: i64 = sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let response = app
        .request(Method::POST, "/api/v1/tenants", &root)
        .json(&json!({"name": "Null\u{0}Meats", "slug": "null-meats"}))
        .send()
        .await
        .unwrap();

    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
    let tenants_after: i64 = sqlx::query_scalar("select count(*) from tenants")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(tenants_after, tenants_before);
}
