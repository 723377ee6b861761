//! The OpenAPI document describes what the service does: every operation lists the errors it
//! can answer (as problem documents), its typed request body, the bounds of its parameters
//! and headers, and the media types of its success responses. (scripts/schemathesis.sh
//! checks the running service against it; this checks the document itself.)

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn document() -> Value {
    let app = spawn_api().await;
    let response = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await
}

/// Every (path, method, operation) of the document.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), operation.clone()));
            }
        }
    }
    out
}

/// The schema of a parameter of `operation`, by location and name.
fn parameter<'a>(operation: &'a Value, location: &str, name: &str) -> Option<&'a Value> {
    operation["parameters"]
        .as_array()?
        .iter()
        .find(|p| p["in"] == location && p["name"].as_str() == Some(name))
        .map(|p| &p["schema"])
}

#[tokio::test]
async fn every_operation_documents_the_errors_it_can_answer_as_problems() {
    let document = document().await;
    let operations = operations(&document);
    assert!(operations.len() >= 55, "{} operations", operations.len());
    for (path, method, operation) in &operations {
        let responses = operation["responses"].as_object().unwrap();
        let mut expected = vec!["400", "401", "403", "431", "503"];
        if !path.starts_with("/api/v1/tenants") {
            expected.push("429");
        }
        if path.contains('{') {
            expected.push("404");
        }
        if method != "get" {
            expected.extend(["409", "422"]);
        }
        if operation.get("requestBody").is_some() {
            expected.extend(["413", "415", "422"]);
        }
        for status in expected {
            let response = responses
                .get(status)
                .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
            assert_eq!(
                response["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
        }
        for (status, response) in responses {
            if status.starts_with('2') {
                assert!(
                    response["content"]["application/json"]["schema"].is_object(),
                    "{method} {path} {status} has no JSON schema"
                );
            }
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"].as_object().unwrap().len(),
                    1,
                    "{method} {path} {status}: only problem documents"
                );
            }
        }
        let id = parameter(operation, "header", "X-Request-Id")
            .unwrap_or_else(|| panic!("{method} {path} has no X-Request-Id"));
        assert_eq!(id["maxLength"], 200, "{method} {path}");
    }
}

#[tokio::test]
async fn request_bodies_are_typed_and_bounded() {
    let document = document().await;
    let schemas = &document["components"]["schemas"];
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                schemas[reference.trim_start_matches("#/components/schemas/")].clone()
            }
            None => schema.clone(),
        }
    };
    for (path, method, operation) in operations(&document) {
        let Some(body) = operation.get("requestBody") else {
            continue;
        };
        let schema = resolve(&body["content"]["application/json"]["schema"]);
        assert_eq!(schema["type"], "object", "{method} {path}: {schema}");
        assert_eq!(
            schema["additionalProperties"], false,
            "{method} {path}: unknown fields are refused, so the schema says so"
        );
    }
    let supplier = resolve(
        &document["paths"]["/api/v1/suppliers"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"],
    );
    assert_eq!(supplier["required"], serde_json::json!(["name"]));
    assert!(
        supplier["properties"]["credit_terms"]["enum"]
            .as_array()
            .is_some_and(|words| words.contains(&"net_30".into())),
        "{supplier}"
    );
    for (path, field) in [
        ("/api/v1/purchase-orders", "supplier_id"),
        ("/api/v1/sales-orders", "customer_id"),
    ] {
        let create = resolve(
            &document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
                ["schema"],
        );
        assert_eq!(create["properties"]["lines"]["maxItems"], 500, "{path}");
        assert!(create["required"]
            .as_array()
            .unwrap()
            .contains(&field.into()));
    }
}

#[tokio::test]
async fn lists_offer_csv_and_parameters_carry_their_bounds() {
    let document = document().await;
    for path in [
        "/api/v1/purchase-orders",
        "/api/v1/sales-orders",
        "/api/v1/suppliers",
        "/api/v1/carriers",
    ] {
        let list = &document["paths"][path]["get"];
        assert!(
            list["responses"]["200"]["content"]["text/csv"].is_object(),
            "{path}"
        );
        let limit = parameter(list, "query", "limit").unwrap();
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&1.into(), &500.into())
        );
        assert_eq!(
            parameter(list, "query", "min_position").unwrap()["minimum"],
            0
        );
        assert_eq!(
            parameter(list, "query", "cursor").unwrap()["maxLength"],
            4096
        );
    }
    let audit = &document["paths"]["/api/v1/audit/events"]["get"];
    assert_eq!(parameter(audit, "query", "limit").unwrap()["maximum"], 1000);
    let approve = &document["paths"]["/api/v1/purchase-orders/{id}/approve"]["post"];
    assert!(parameter(approve, "header", "If-Match").is_some());
    assert_eq!(
        parameter(approve, "header", "Idempotency-Key").unwrap()["maxLength"],
        200
    );
    assert_eq!(approve["requestBody"]["required"], false);
}
