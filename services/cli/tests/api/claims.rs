//! Claims, credit notes and refunds through HTTP: a purchase order prepaid in full and received
//! short is credited, refunded and closed; refusals write nothing; sales credit notes are
//! numbered per tenant; the history tells what happened.

use crate::helpers::*;
use oms_api::auth::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

/// A purchase order of one line (1000 lb × 2.50 = 2500.00), approved and prepaid in full.
/// Returns its base path and line id.
async fn prepaid_po(app: &TestApp, supplier: &str, product: &str) -> (String, String) {
    let po = app.draft_po(supplier, product, "1000", "2.50").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    let paid = app
        .post_ok(
            &format!("{base}/payments"),
            json!({"amount": "2500.00", "paid_on": "2026-11-03", "method": "wire"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    (base, line)
}

/// Receives 900 of the 1000 lb: the amount due drops to 2250.00.
async fn receive_short(app: &TestApp, base: &str, line: &str) -> Value {
    let received = app
        .post_ok(
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-08", "complete": true,
                   "lines": [{"line_id": line, "weight": "900"}]}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(received["status"], "received");
    assert_eq!(received["amount_due"], "2250.00");
    received
}

#[tokio::test]
async fn a_prepaid_order_received_short_is_credited_refunded_and_closed() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let (base, line) = prepaid_po(&app, &supplier, &product).await;
    let received = receive_short(&app, &base, &line).await;
    // Paid 2500.00 for 2250.00 received: 250.00 overpaid.
    assert_eq!(received["outstanding"], "-250.00");
    assert_eq!(received["payment_status"], "overpaid");

    // A user raises the claim (quality, on the received line); the server names it.
    let user = app.token_for(app.tenant, &[Role::User]);
    let raised = expect_json(
        app.post_as(&user,
            &format!("{base}/claims"),
            json!({"reason": "quality", "notes": "12 boxes warm",
                   "lines": [{"line_id": line, "amount": "100.00", "weight": "40", "description": "warm"}]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let claims = raised["claims"].as_array().unwrap();
    assert_eq!(claims.len(), 1, "{raised}");
    assert_eq!(claims[0]["status"], "open");
    assert_eq!(claims[0]["reason"], "quality");
    assert_eq!(claims[0]["claimed_amount"], "100.00");
    assert_eq!(claims[0]["lines"][0]["weight"], "40");
    let claim_id = claims[0]["claim_id"].as_str().unwrap().to_string();
    Uuid::parse_str(&claim_id).expect("the server gives the claim a uuid");
    // An open claim credits nothing yet.
    assert_eq!(raised["credits"], "0.00");
    assert_eq!(raised["outstanding"], "-250.00");

    // The manager accepts it with the supplier's credit memo number.
    let accepted = app
        .post_ok(
            &format!("{base}/claims/{claim_id}/accept"),
            json!({"credit_note_number": "PRA-CM-77"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(accepted["claims"][0]["status"], "accepted");
    assert_eq!(accepted["claims"][0]["accepted_amount"], "100.00");
    assert_eq!(accepted["claims"][0]["credit_note_number"], "PRA-CM-77");
    assert_eq!(accepted["credits"], "100.00");
    assert_eq!(accepted["outstanding"], "-350.00");
    assert_eq!(accepted["payment_status"], "overpaid");

    // Money still owed back: the order cannot close.
    let refused = app.post(&format!("{base}/close"), json!({})).await;
    expect_problem(refused, StatusCode::CONFLICT).await;

    // The supplier returns exactly what was overpaid.
    let refunded = app
        .post_ok(
            &format!("{base}/refunds"),
            json!({"amount": "350.00", "refunded_on": "2026-11-10", "method": "ach", "reference": "RF-1"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(refunded["refunds"], "350.00");
    assert_eq!(refunded["outstanding"], "0.00");
    assert_eq!(refunded["payment_status"], "paid");
    assert_eq!(refunded["refund_records"][0]["reference"], "RF-1");

    let closed = app
        .post_ok(&format!("{base}/close"), json!({}), StatusCode::OK)
        .await;
    assert_eq!(closed["status"], "closed");

    // The history tells the claim's story, in the read model.
    let history = expect_json(
        app.get(&format!(
            "{base}/history?min_position={}",
            closed["position"]
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let summaries: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("Claim of 100.00 USD (quality) raised by Mary Jones")),
        "{summaries:?}"
    );
    assert!(
        summaries.contains(&"Claim accepted by Mary Jones: PRA-CM-77 for 100.00 USD"),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("Refund of 350.00 USD (ach) recorded by Mary Jones")),
        "{summaries:?}"
    );
}

#[tokio::test]
async fn refused_claims_and_refunds_write_nothing() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;

    // Nothing owed back on an approved, unpaid order: no refund.
    let unpaid = app.draft_po(&supplier, &product, "1000", "2.50").await;
    let unpaid = format!("/api/v1/purchase-orders/{}", id_of(&unpaid));
    app.post_ok(&format!("{unpaid}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{unpaid}/approve"), json!({}), StatusCode::OK)
        .await;
    let before = app.write_footprint().await;
    let refund = app
        .post(
            &format!("{unpaid}/refunds"),
            json!({"amount": "1.00", "refunded_on": "2026-11-05", "method": "wire"}),
        )
        .await;
    expect_problem(refund, StatusCode::CONFLICT).await;
    assert_eq!(app.write_footprint().await, before);

    let (base, line) = prepaid_po(&app, &supplier, &product).await;
    receive_short(&app, &base, &line).await;

    // 2250.01 claimed against a line received for 2250.00.
    let before = app.write_footprint().await;
    let above = app
        .post(
            &format!("{base}/claims"),
            json!({"reason": "short_weight", "lines": [{"line_id": line, "amount": "2250.01"}]}),
        )
        .await;
    expect_problem(above, StatusCode::UNPROCESSABLE_ENTITY).await;
    // Bad bodies: an unknown reason, an unknown field, no lines, a zero amount.
    for body in [
        json!({"reason": "smell", "lines": [{"line_id": line, "amount": "1.00"}]}),
        json!({"reason": "quality", "lines": [{"line_id": line, "amount": "1.00"}], "claim_id": Uuid::new_v4()}),
        json!({"reason": "quality", "lines": []}),
        json!({"reason": "quality", "lines": [{"line_id": line, "amount": "0"}]}),
        json!({"reason": "quality", "lines": [{"line_id": Uuid::new_v4(), "amount": "1.00"}]}),
    ] {
        let response = app.post(&format!("{base}/claims"), body.clone()).await;
        let status = response.status();
        assert!(status.is_client_error(), "{body}: {status}");
        expect_problem(response, status).await;
    }
    // A refund above what was overpaid (250.00).
    let too_much = app
        .post(
            &format!("{base}/refunds"),
            json!({"amount": "250.01", "refunded_on": "2026-11-10", "method": "wire"}),
        )
        .await;
    expect_problem(too_much, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.write_footprint().await, before);

    // Accept and reject of a claim the order does not have.
    let unknown = Uuid::new_v4();
    let accept = app
        .post(&format!("{base}/claims/{unknown}/accept"), json!({}))
        .await;
    expect_problem(accept, StatusCode::NOT_FOUND).await;
    let reject = app
        .post(
            &format!("{base}/claims/{unknown}/reject"),
            json!({"reason": "never raised"}),
        )
        .await;
    expect_problem(reject, StatusCode::NOT_FOUND).await;
    assert_eq!(app.write_footprint().await, before);

    // A real claim: a user may raise it but not decide it.
    let raised = app
        .post_ok(
            &format!("{base}/claims"),
            json!({"reason": "damage", "lines": [{"line_id": line, "amount": "50.00"}]}),
            StatusCode::CREATED,
        )
        .await;
    let claim_id = raised["claims"][0]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = app.token_for(app.tenant, &[Role::User]);
    let before = app.write_footprint().await;
    for (action, body) in [
        ("accept", json!({})),
        ("reject", json!({"reason": "not ours"})),
    ] {
        let response = app
            .post_as(&user, &format!("{base}/claims/{claim_id}/{action}"), body)
            .await;
        expect_problem(response, StatusCode::FORBIDDEN).await;
    }
    let response = app
        .post_as(
            &user,
            &format!("{base}/refunds"),
            json!({"amount": "1.00", "refunded_on": "2026-11-10", "method": "wire"}),
        )
        .await;
    expect_problem(response, StatusCode::FORBIDDEN).await;
    // Above the claimed amount.
    let over = app
        .post(
            &format!("{base}/claims/{claim_id}/accept"),
            json!({"accepted_amount": "50.01"}),
        )
        .await;
    expect_problem(over, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.write_footprint().await, before);

    // Rejected, it credits nothing and cannot be decided again.
    let rejected = app
        .post_ok(
            &format!("{base}/claims/{claim_id}/reject"),
            json!({"reason": "photos show intact boxes"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(rejected["claims"][0]["status"], "rejected");
    assert_eq!(rejected["credits"], "0.00");
    let before = app.write_footprint().await;
    let again = app
        .post(&format!("{base}/claims/{claim_id}/accept"), json!({}))
        .await;
    expect_problem(again, StatusCode::CONFLICT).await;
    assert_eq!(app.write_footprint().await, before);
}

/// A sales order of one line (1000 lb × 3.10), shipped in full and delivered. Returns its
/// base path and line id.
async fn delivered_so(app: &TestApp, customer: &str, product: &str) -> (String, String) {
    let line = json!({"product_id": product, "weight": "1000", "price_per_unit": "3.10"});
    deliver(app, customer, line, "2026-11-05").await
}

/// Creates a sales order of the one `line`, confirms it, ships its whole weight on
/// `shipped_on` and delivers it the next day. Returns its base path and line id.
async fn deliver(app: &TestApp, customer: &str, line: Value, shipped_on: &str) -> (String, String) {
    let weight = line["weight"].clone();
    let (base, line_id) = app
        .confirmed_so(json!({"customer_id": customer, "order_date": "2026-11-02", "lines": [line]}))
        .await;
    app.post_ok(
        &format!("{base}/ship"),
        json!({"shipped_on": shipped_on, "lines": [{"line_id": line_id, "weight": weight}]}),
        StatusCode::OK,
    )
    .await;
    let shipped: chrono::NaiveDate = shipped_on.parse().unwrap();
    app.post_ok(
        &format!("{base}/deliver"),
        json!({"delivered_on": (shipped + chrono::Days::new(1)).to_string()}),
        StatusCode::OK,
    )
    .await;
    (base, line_id)
}

#[tokio::test]
async fn sales_credit_notes_are_numbered_per_tenant() {
    let app = spawn_app().await;
    let (_supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let (base, line) = delivered_so(&app, &customer, &product).await;

    let claim = |amount: &str| json!({"reason": "temperature", "lines": [{"line_id": line, "amount": amount}]});
    let first = app
        .post_ok(
            &format!("{base}/claims"),
            claim("100.00"),
            StatusCode::CREATED,
        )
        .await;
    let first_id = first["claims"][0]["claim_id"].as_str().unwrap().to_string();
    let accepted = app
        .post_ok(
            &format!("{base}/claims/{first_id}/accept"),
            json!({"accepted_amount": "80.00"}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(accepted["claims"][0]["credit_note_number"], "CN-000001");
    assert_eq!(accepted["claims"][0]["accepted_amount"], "80.00");
    assert_eq!(accepted["credits"], "80.00");

    // A refused acceptance takes no number.
    let unknown = app
        .post(
            &format!("{base}/claims/{}/accept", Uuid::new_v4()),
            json!({}),
        )
        .await;
    expect_problem(unknown, StatusCode::NOT_FOUND).await;

    let second = app
        .post_ok(
            &format!("{base}/claims"),
            claim("20.00"),
            StatusCode::CREATED,
        )
        .await;
    let second_id = second["claims"][1]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();
    let accepted = app
        .post_ok(
            &format!("{base}/claims/{second_id}/accept"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    assert_eq!(accepted["claims"][1]["credit_note_number"], "CN-000002");
    assert_eq!(accepted["credits"], "100.00");

    // A number given by the client may not be one already given: not on this order (422).
    let third = app
        .post_ok(
            &format!("{base}/claims"),
            claim("10.00"),
            StatusCode::CREATED,
        )
        .await;
    let third_id = third["claims"][2]["claim_id"].as_str().unwrap().to_string();
    let before = app.write_footprint().await;
    let taken = app
        .post(
            &format!("{base}/claims/{third_id}/accept"),
            json!({"credit_note_number": "CN-000001"}),
        )
        .await;
    expect_problem(taken, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(app.write_footprint().await, before);
    // On another order of the tenant too: credit note numbers are unique per tenant.
    let (other, other_line) = delivered_so(&app, &customer, &product).await;
    let raised = app
        .post_ok(
            &format!("{other}/claims"),
            json!({"reason": "damage", "lines": [{"line_id": other_line, "amount": "5.00"}]}),
            StatusCode::CREATED,
        )
        .await;
    let other_claim = raised["claims"][0]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = app.write_footprint().await;
    let taken = app
        .post(
            &format!("{other}/claims/{other_claim}/accept"),
            json!({"credit_note_number": "CN-000002"}),
        )
        .await;
    expect_problem(taken, StatusCode::CONFLICT).await;
    assert_eq!(app.write_footprint().await, before);

    let history = expect_json(
        app.get(&format!(
            "{base}/history?min_position={}",
            accepted["position"]
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let summaries: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["summary"].as_str().unwrap())
        .collect();
    assert!(
        summaries.contains(&"Claim accepted by Mary Jones: CN-000002 for 20.00 USD"),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("Claim of 100.00 USD (temperature) raised by Mary Jones")),
        "{summaries:?}"
    );
}

#[tokio::test]
async fn a_customer_claim_is_passed_on_to_the_supplier_back_to_back() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let (po, po_line) = prepaid_po(&app, &supplier, &product).await;
    receive_short(&app, &po, &po_line).await;
    let po_id = po.rsplit('/').next().unwrap().to_string();

    // The sales order is supplied by the purchase order.
    let (so_base, so_line) = deliver(
        &app,
        &customer,
        json!({"product_id": product, "weight": "900", "price_per_unit": "3.10",
               "source_purchase_order_id": po_id}),
        "2026-11-09",
    )
    .await;
    let raised = app
        .post_ok(
            &format!("{so_base}/claims"),
            json!({"reason": "temperature", "lines": [{"line_id": so_line, "amount": "60.00"}]}),
            StatusCode::CREATED,
        )
        .await;
    let sales_claim = raised["claims"][0]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();

    // A sales claim that does not exist cannot be passed on; nothing is written.
    let before = app.write_footprint().await;
    let unknown = app
        .post(
            &format!("{po}/claims"),
            json!({"reason": "temperature", "source_sales_claim_id": Uuid::new_v4(),
                   "lines": [{"line_id": po_line, "amount": "60.00"}]}),
        )
        .await;
    let status = unknown.status();
    assert!(status.is_client_error(), "{status}");
    expect_problem(unknown, status).await;
    assert_eq!(app.write_footprint().await, before);

    let passed_on = app
        .post_ok(
            &format!("{po}/claims"),
            json!({"reason": "temperature", "source_sales_claim_id": sales_claim,
                   "lines": [{"line_id": po_line, "amount": "60.00"}]}),
            StatusCode::CREATED,
        )
        .await;
    assert_eq!(
        passed_on["claims"][0]["source_sales_claim_id"], sales_claim,
        "{passed_on}"
    );

    // The sales order has no `source_sales_claim_id`: an unknown field there.
    let refused = app
        .post(
            &format!("{so_base}/claims"),
            json!({"reason": "other", "source_sales_claim_id": sales_claim,
                   "lines": [{"line_id": so_line, "amount": "1.00"}]}),
        )
        .await;
    expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
}
