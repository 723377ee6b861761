//! The purchase-order and sales-order lifecycles end to end, with exact money.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn purchase_order_walks_from_draft_to_closed_with_exact_totals() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;

    let po = app
        .post_ok(
            "/api/v1/purchase-orders",
            json!({
                "supplier_id": supplier, "order_date": "2026-11-02", "delivery_date": "2026-11-09",
                "lines": [
                    {"product_id": product, "weight": "40000", "price_per_unit": "2.1575", "quantity": 1000},
                    {"product_id": product, "weight": 10000.5, "price_per_unit": "1.3333"}
                ]
            }),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&po);
    assert_eq!(po["order_number"], "PO-000001");
    assert_eq!(po["status"], "draft");
    assert_eq!(po["lines"][0]["amount"], "86300.00");
    assert_eq!(po["lines"][1]["amount"], "13333.67");
    assert_eq!(po["total"], "99633.67");
    assert_eq!(po["amount_due"], "99633.67");
    assert_eq!(po["payment_status"], "unpaid");
    assert_eq!(po["currency"], "USD");
    assert_eq!(po["weight_unit"], "LB");
    assert_eq!(po["version"], 1);
    assert!(po["position"].as_i64().unwrap() >= 3, "{po}");

    let line_a = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    let line_b = po["lines"][1]["line_id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/purchase-orders/{id}");

    let submitted = app
        .post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    assert_eq!(submitted["status"], "submitted");
    let approved = app
        .post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    assert_eq!(approved["status"], "approved");

    // A prepayment before the load arrives.
    let paid = app
        .post_ok(
            &format!("{base}/payments"),
            json!({"amount": "50000.00", "paid_on": "2026-11-03", "method": "wire", "reference": "FW-1"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(paid["payment_status"], "partial");
    assert_eq!(paid["outstanding"], "49633.67");

    // Catch weights: line A arrives in two receipts, line B in one.
    let partial = app
        .post_ok(
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-08", "complete": false,
                   "lines": [{"line_id": line_a, "weight": "20000"}]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(partial["status"], "partially_received");
    // Amount due is now the received total: 20000 × 2.1575.
    assert_eq!(partial["amount_due"], "43150.00");

    let received = app
        .post_ok(
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-09", "complete": true,
                   "lines": [{"line_id": line_a, "weight": "19850.5"}, {"line_id": line_b, "weight": "10000.5"}]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(received["status"], "received");
    // (20000 + 19850.5) × 2.1575 = 85977.45 (85977.45375 rounded half-up), + 13333.67
    assert_eq!(received["amount_due"], "99311.12");
    assert_eq!(received["outstanding"], "49311.12");

    let refused = app.post(&format!("{base}/close"), json!({})).await;
    expect_problem(refused, StatusCode::CONFLICT).await;

    let settled = app
        .post_ok(
            &format!("{base}/payments"),
            json!({"amount": "49311.12", "paid_on": "2026-11-10", "method": "ach"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(settled["payment_status"], "paid");
    assert_eq!(settled["outstanding"], "0.00");

    app.post_ok(
        &format!("{base}/notes"),
        json!({"text": "short 149.5 lb on line A"}),
        StatusCode::OK,
    )
    .await;
    let closed = app
        .post_ok(&format!("{base}/close"), json!({}), StatusCode::OK)
        .await;
    assert_eq!(closed["status"], "closed");

    // The GET rebuilds the same state; ETag carries the version.
    let response = app
        .get(&format!("{base}?min_position={}", closed["position"]))
        .await;
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let fetched = expect_json(response, StatusCode::OK).await;
    assert_eq!(fetched["status"], "closed");
    assert_eq!(fetched["amount_paid"], "99311.12");
    assert_eq!(etag, format!("\"{}\"", fetched["version"]));
    assert_eq!(fetched["version"], closed["version"]);
}

#[tokio::test]
async fn draft_purchase_order_lines_and_header_can_be_edited() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "100", "2.00").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));

    let added = app
        .post_ok(
            &format!("{base}/lines"),
            json!({"product_id": product, "weight": "50", "price_per_unit": "1.005"}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(added["total"], "250.25"); // 200.00 + 50.25
    let line = added["lines"][1]["line_id"].as_str().unwrap().to_string();

    let changed = app
        .patch(&format!("{base}/lines/{line}"), json!({"weight": "60"}))
        .await;
    let changed = expect_json(changed, StatusCode::OK).await;
    assert_eq!(changed["total"], "260.30");

    let header = expect_json(
        app.patch(
            &base,
            json!({"notes": "call before delivery", "delivery_date": "2026-11-20"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(header["notes"], "call before delivery");
    assert_eq!(header["delivery_date"], "2026-11-20");

    let removed = app
        .request(
            Method::DELETE,
            &format!("{base}/lines/{line}"),
            &app.admin(),
        )
        .send()
        .await
        .unwrap();
    let removed = expect_json(removed, StatusCode::OK).await;
    assert_eq!(removed["total"], "200.00");
    assert_eq!(removed["lines"].as_array().unwrap().len(), 1);

    // Once submitted, lines are frozen.
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    let frozen = app
        .post(
            &format!("{base}/lines"),
            json!({"product_id": product, "weight": "1", "price_per_unit": "1"}),
        )
        .await;
    expect_problem(frozen, StatusCode::CONFLICT).await;
    // A line that does not exist is a 404.
    let missing = app
        .patch(
            &format!("{base}/lines/{}", uuid::Uuid::now_v7()),
            json!({"weight": "1"}),
        )
        .await;
    assert!(
        matches!(
            missing.status(),
            StatusCode::NOT_FOUND | StatusCode::CONFLICT
        ),
        "{}",
        missing.status()
    );
}

#[tokio::test]
async fn rejected_purchase_order_returns_to_draft_and_cancelled_stays_cancelled() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let po = app.draft_po(&supplier, &product, "10", "1").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    let rejected = app
        .post_ok(
            &format!("{base}/reject"),
            json!({"reason": "wrong plant"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(rejected["status"], "draft");
    let cancelled = app
        .post_ok(
            &format!("{base}/cancel"),
            json!({"reason": "supplier sold out"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "supplier sold out");
    expect_problem(
        app.post(&format!("{base}/submit"), json!({})).await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn sales_order_walks_from_draft_to_closed_with_an_invoice() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let po = app.draft_po(&supplier, &product, "40000", "2.1575").await;

    let so = app
        .post_ok(
            "/api/v1/sales-orders",
            json!({
                "customer_id": customer, "order_date": "2026-11-02", "customer_po_number": "MG-7781",
                "lines": [{"product_id": product, "weight": "40000", "price_per_unit": "2.3050",
                           "source_purchase_order_id": id_of(&po)}]
            }),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(so["order_number"], "SO-000001");
    assert_eq!(so["total"], "92200.00");
    let line = so["lines"][0]["line_id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/sales-orders/{}", id_of(&so));

    app.post_ok(&format!("{base}/confirm"), json!({}), StatusCode::OK)
        .await;
    let shipped = app
        .post_ok(
            &format!("{base}/ship"),
            json!({"shipped_on": "2026-11-05", "carrier_release_number": "R-1",
                   "lines": [{"line_id": line, "weight": "39900.25"}]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(shipped["status"], "shipped");
    // 39900.25 × 2.3050 = 91970.07625 → 91970.08
    assert_eq!(shipped["amount_due"], "91970.08");

    // Payments only once invoiced.
    let early = app
        .post(
            &format!("{base}/payments"),
            json!({"amount": "1.00", "paid_on": "2026-11-05", "method": "wire"}),
        )
        .await;
    expect_problem(early, StatusCode::CONFLICT).await;

    app.post_ok(
        &format!("{base}/deliver"),
        json!({"delivered_on": "2026-11-06"}),
        StatusCode::OK,
    )
    .await;
    let invoiced = app
        .post_ok(
            &format!("{base}/invoice"),
            json!({"invoice_date": "2026-11-06", "due_date": "2026-12-06"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(invoiced["status"], "invoiced");
    assert_eq!(invoiced["invoice_number"], "INV-000001");
    assert_eq!(invoiced["invoiced_amount"], "91970.08");

    app.post_ok(
        &format!("{base}/payments"),
        json!({"amount": "91970.08", "paid_on": "2026-11-07", "method": "ach"}),
        StatusCode::OK,
    )
    .await;
    let closed = app
        .post_ok(&format!("{base}/close"), json!({}), StatusCode::OK)
        .await;
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["payment_status"], "paid");
    assert_eq!(closed["outstanding"], "0.00");
}

#[tokio::test]
async fn order_numbers_are_assigned_per_tenant_and_skip_numbers_given_explicitly() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let explicit = app
        .post_ok(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "order_number": "PO-000002",
                   "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(explicit["order_number"], "PO-000002");
    let first = app.draft_po(&supplier, &product, "1", "1").await;
    let second = app.draft_po(&supplier, &product, "1", "1").await;
    assert_eq!(first["order_number"], "PO-000001");
    assert_eq!(second["order_number"], "PO-000003");

    // Another tenant starts its own series.
    let other = oms_store::tenants::create(&app.pool, "Other", "other-co")
        .await
        .unwrap()
        .id;
    let token = app.token_for(other, &[oms_api::auth::Role::Admin]);
    let supplier2 = app
        .request(Method::POST, "/api/v1/suppliers", &token)
        .json(&json!({"name": "S", "code": "PRA"}))
        .send()
        .await
        .unwrap();
    let supplier2 = id_of(&expect_json(supplier2, StatusCode::CREATED).await);
    let product2 = app
        .request(Method::POST, "/api/v1/products", &token)
        .json(&json!({"code": "BF-8020", "description": "Trim", "protein": "beef", "uom": "LB"}))
        .send()
        .await
        .unwrap();
    let product2 = id_of(&expect_json(product2, StatusCode::CREATED).await);
    let theirs = app
        .request(Method::POST, "/api/v1/purchase-orders", &token)
        .json(
            &json!({"supplier_id": supplier2, "order_date": "2026-11-02",
                      "lines": [{"product_id": product2, "weight": "1", "price_per_unit": "1"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_json(theirs, StatusCode::CREATED).await["order_number"],
        "PO-000001"
    );
}
