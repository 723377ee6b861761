//! An event too large for the pipeline cannot be created: the command is refused before
//! anything is written, instead of being stored and then stuck in front of its tenant's relay.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_command_whose_event_would_not_fit_the_pipeline_is_422_and_writes_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let before = app.write_footprint().await;
    // 60 lines with 10,000-character descriptions: a 0.6 MB body, under the 1 MiB body limit,
    // whose event would be over the largest event the pipeline carries.
    let description = "x".repeat(10_000);
    let lines: Vec<_> = (0..60)
        .map(|_| {
            json!({"product_id": product, "weight": "1", "price_per_unit": "1.00",
                        "description": description})
        })
        .collect();
    let body = json!({"supplier_id": supplier, "order_date": "2026-11-02", "lines": lines});
    assert!(body.to_string().len() > oms_store::MAX_EVENT_PAYLOAD_BYTES);

    let response = app.post("/api/v1/purchase-orders", body).await;

    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("bytes"),
        "{problem}"
    );
    assert_eq!(app.write_footprint().await, before);
}
