//! Lots through HTTP: a receipt names the lots its weight arrived in and a shipment the lots it
//! takes; a lot never ships more than was received, not even when sixteen shipments race for
//! it; every refusal writes nothing.

use crate::helpers::*;
use futures::future::join_all;
use oms_api::auth::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// An approved purchase order of one line of `weight` lb, received in full in `lots`.
/// Returns the received order's document.
async fn received_in_lots(
    app: &TestApp,
    supplier: &str,
    product: &str,
    weight: &str,
    lots: Value,
) -> Value {
    let po = app.draft_po(supplier, product, weight, "2.00").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&po));
    let line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(
        &format!("{base}/receipts"),
        json!({"received_on": "2026-11-04", "complete": true,
               "lines": [{"line_id": line, "weight": weight, "lots": lots}]}),
        StatusCode::OK,
    )
    .await
}

/// A confirmed sales order of one line of `weight` (in `unit`) of `product`; its base path and
/// line id.
async fn confirmed_so(
    app: &TestApp,
    customer: &str,
    product: &str,
    weight: &str,
    unit: &str,
) -> (String, String) {
    app.confirmed_so(
        json!({"customer_id": customer, "order_date": "2026-11-02", "weight_unit": unit,
               "lines": [{"product_id": product, "weight": weight, "price_per_unit": "3.10"}]}),
    )
    .await
}

/// The body of a shipment of one line taking `lots` (`[(lot_id, weight)]`).
fn shipment(line: &str, weight: &str, lots: &[(&str, &str)]) -> Value {
    let lots: Vec<Value> = lots
        .iter()
        .map(|(lot_id, w)| json!({"lot_id": lot_id, "weight": w}))
        .collect();
    json!({"shipped_on": "2026-11-06",
           "lines": [{"line_id": line, "weight": weight, "lots": lots}]})
}

/// The store's received and shipped weight of a lot, as text ("6000", "2500"); `None` if the
/// store has no stock row for it.
async fn stock(app: &TestApp, lot_id: &str) -> Option<(String, String)> {
    sqlx::query_as(
        "select trim_scale(received)::text, trim_scale(shipped)::text
           from lot_stock where lot_id = $1::uuid",
    )
    .bind(lot_id)
    .fetch_optional(&app.pool)
    .await
    .expect("lot stock read")
}

/// Everything a refused command could have written: events, unique keys, idempotency records,
/// head positions, and the lots' stock.
async fn footprint(app: &TestApp) -> ((i64, i64, i64, i64), Vec<(String, String)>) {
    let stock: Vec<(String, String)> = sqlx::query_as(
        "select lot_id::text, trim_scale(received)::text || '/' || trim_scale(shipped)::text
           from lot_stock order by lot_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("lot stock read");
    (app.write_footprint().await, stock)
}

/// GET `path` once the read models have every event of the tenant (`?min_position=` of its
/// head): documents are served from the read models, a few milliseconds behind the commands.
async fn read_settled(app: &TestApp, path: &str) -> Value {
    let head: i64 = sqlx::query_scalar("select position from tenant_heads where tenant_id = $1")
        .bind(app.tenant)
        .fetch_one(&app.pool)
        .await
        .expect("the tenant's head");
    expect_json(
        app.get(&format!("{path}?min_position={head}")).await,
        StatusCode::OK,
    )
    .await
}

fn lot_id(order: &Value, at: usize) -> String {
    order["lines"][0]["lots"][at]["lot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the line lists its lots: {order}"))
        .to_string()
}

#[tokio::test]
async fn a_receipt_names_its_lots_and_shipments_take_from_them_until_none_is_left() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;

    // Given 10000 lb received in two lots, A123 (6000) and A124 (4000).
    let po = received_in_lots(
        &app,
        &supplier,
        &product,
        "10000",
        json!([{"lot_number": "A123", "weight": "6000", "production_date": "2026-10-30",
                "establishment_number": "EST. 245C"},
               {"lot_number": "A124", "weight": "4000"}]),
    )
    .await;
    let lots = po["lines"][0]["lots"].as_array().unwrap();
    assert_eq!(lots.len(), 2, "{po}");
    assert_eq!(lots[0]["lot_number"], "A123");
    assert_eq!(lots[0]["weight"], "6000");
    assert_eq!(lots[0]["establishment_number"], "EST. 245C");
    assert_eq!(lots[0]["production_date"], "2026-10-30");
    assert_eq!(lots[0]["supplier_id"], supplier.as_str());
    let (a123, a124) = (lot_id(&po, 0), lot_id(&po, 1));
    assert_ne!(a123, a124);
    assert_eq!(stock(&app, &a123).await, Some(("6000".into(), "0".into())));

    // When 2500 lb of A123 ship, the shipment lists the lot and the stock moves.
    let (first, line) = confirmed_so(&app, &customer, &product, "2500", "LB").await;
    let shipped = app
        .post_ok(
            &format!("{first}/ship"),
            shipment(&line, "2500", &[(&a123, "2500")]),
            StatusCode::OK,
        )
        .await;
    assert_eq!(shipped["status"], "shipped");
    assert_eq!(shipped["lines"][0]["lots"][0]["lot_id"], a123.as_str());
    assert_eq!(shipped["lines"][0]["lots"][0]["lot_number"], "A123");
    assert_eq!(
        stock(&app, &a123).await,
        Some(("6000".into(), "2500".into()))
    );

    // Then a shipment of 4000 of A123 (3500 left) is refused with 409 and writes nothing.
    let (second, line) = confirmed_so(&app, &customer, &product, "4000", "LB").await;
    let before = footprint(&app).await;
    let refused = app
        .post(
            &format!("{second}/ship"),
            shipment(&line, "4000", &[(&a123, "4000")]),
        )
        .await;
    let problem = expect_problem(refused, StatusCode::CONFLICT).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("3500 left"), "{problem}");
    assert_eq!(problem["errors"][0]["field"], "lot_id", "{problem}");
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused shipment writes nothing"
    );
    let still = read_settled(&app, &second).await;
    assert_eq!(still["status"], "confirmed");

    // The same 4000 taken from both lots ships, and leaves A123 with exactly nothing.
    let both = app
        .post_ok(
            &format!("{second}/ship"),
            shipment(&line, "4000", &[(&a123, "3500"), (&a124, "500")]),
            StatusCode::OK,
        )
        .await;
    assert_eq!(both["lines"][0]["lots"].as_array().unwrap().len(), 2);
    assert_eq!(
        stock(&app, &a123).await,
        Some(("6000".into(), "6000".into()))
    );
    assert_eq!(
        stock(&app, &a124).await,
        Some(("4000".into(), "500".into()))
    );
}

#[tokio::test]
async fn lots_that_do_not_add_up_are_unknown_foreign_taken_or_in_another_unit_are_refused() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let po = received_in_lots(
        &app,
        &supplier,
        &product,
        "1000",
        json!([{"lot_number": "B1", "weight": "1000"}]),
    )
    .await;
    let b1 = lot_id(&po, 0);

    // A receipt whose lots do not sum to the line's weight: 422 on the line's lots.
    let draft = app.draft_po(&supplier, &product, "500", "2.00").await;
    let base = format!("/api/v1/purchase-orders/{}", id_of(&draft));
    let draft_line = draft["lines"][0]["line_id"].as_str().unwrap().to_string();
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    let receipt = |lots: Value| {
        json!({"received_on": "2026-11-04", "complete": true,
               "lines": [{"line_id": draft_line, "weight": "500", "lots": lots}]})
    };
    let before = footprint(&app).await;
    for (lots, status, field) in [
        // Lots that do not sum to the line's weight: 422 on the line's lots.
        (
            json!([{"lot_number": "B2", "weight": "400"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines[0].lots"),
        ),
        // The supplier's lot number B1 is already received (on the other order): 409.
        (
            json!([{"lot_number": "B1", "weight": "500"}]),
            StatusCode::CONFLICT,
            Some("lot_number"),
        ),
        // A lot number that is not one word: 422 before anything is decided.
        (
            json!([{"lot_number": "B 2", "weight": "500"}]),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ] {
        let refused = app.post(&format!("{base}/receipts"), receipt(lots)).await;
        let problem = expect_problem(refused, status).await;
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    assert_eq!(
        footprint(&app).await,
        before,
        "refused receipts write nothing"
    );

    let (so, line) = confirmed_so(&app, &customer, &product, "100", "LB").await;
    let before = footprint(&app).await;
    // An unknown lot: 422 naming the field.
    let unknown = uuid::Uuid::now_v7().to_string();
    let refused = app
        .post(
            &format!("{so}/ship"),
            shipment(&line, "100", &[(&unknown, "100")]),
        )
        .await;
    let problem = expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "lines[0].lots[0].lot_id");
    assert_eq!(problem["errors"][0]["message"], "no such lot");
    // Lots' weights that do not sum to the shipped weight: 422.
    let refused = app
        .post(
            &format!("{so}/ship"),
            shipment(&line, "100", &[(&b1, "90")]),
        )
        .await;
    let problem = expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "lines[0].lots", "{problem}");
    // More of a lot than was ever received: refused by the order itself.
    let (big, big_line) = confirmed_so(&app, &customer, &product, "1500", "LB").await;
    let before_big = footprint(&app).await;
    let refused = app
        .post(
            &format!("{big}/ship"),
            shipment(&big_line, "1500", &[(&b1, "1500")]),
        )
        .await;
    expect_problem(refused, StatusCode::CONFLICT).await;
    assert_eq!(footprint(&app).await, before_big);

    // An order weighing in KG cannot ship a lot received in LB.
    let (kg, kg_line) = confirmed_so(&app, &customer, &product, "100", "KG").await;
    let before_kg = footprint(&app).await;
    let refused = app
        .post(
            &format!("{kg}/ship"),
            shipment(&kg_line, "100", &[(&b1, "100")]),
        )
        .await;
    let problem = expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        problem["errors"][0]["message"],
        "the lot was received in LB, this order weighs in KG"
    );
    assert_eq!(footprint(&app).await, before_kg);

    // Another tenant's lot is no lot at all for this tenant.
    let other = oms_store::tenants::create(&app.pool, "Rival Meats", "rival-lots")
        .await
        .unwrap()
        .id;
    let rival = app.token_for(other, &[Role::Admin]);
    let created = |path: &'static str, body: Value| {
        let (app, rival) = (&app, &rival);
        async move { expect_json(app.post_as(rival, path, body).await, StatusCode::CREATED).await }
    };
    let customer_of_rival = created(
        "/api/v1/customers",
        json!({"code": "RIV-C", "name": "Rival Buyer"}),
    )
    .await;
    let product_of_rival = created(
        "/api/v1/products",
        json!({"code": "RIV-P", "description": "Chuck", "protein": "beef", "uom": "LB"}),
    )
    .await;
    let rival_so = created(
        "/api/v1/sales-orders",
        json!({"customer_id": id_of(&customer_of_rival), "order_date": "2026-11-02",
               "lines": [{"product_id": id_of(&product_of_rival), "weight": "100",
                          "price_per_unit": "3.00"}]}),
    )
    .await;
    let rival_base = format!("/api/v1/sales-orders/{}", id_of(&rival_so));
    let rival_line = rival_so["lines"][0]["line_id"]
        .as_str()
        .unwrap()
        .to_string();
    expect_json(
        app.post_as(&rival, &format!("{rival_base}/confirm"), json!({}))
            .await,
        StatusCode::OK,
    )
    .await;
    let rival_before = footprint(&app).await;
    let refused = app
        .post_as(
            &rival,
            &format!("{rival_base}/ship"),
            shipment(&rival_line, "100", &[(&b1, "100")]),
        )
        .await;
    let problem = expect_problem(refused, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["message"], "no such lot");
    assert_eq!(footprint(&app).await, rival_before);
    assert_eq!(stock(&app, &b1).await, Some(("1000".into(), "0".into())));
    assert_eq!(footprint(&app).await.1, before.1, "no lot moved");
}

#[tokio::test]
async fn of_sixteen_shipments_racing_for_one_lot_exactly_those_it_covers_commit() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    // 10000 lb of lot R1; sixteen orders of 1000 lb each want it.
    let po = received_in_lots(
        &app,
        &supplier,
        &product,
        "10000",
        json!([{"lot_number": "R1", "weight": "10000"}]),
    )
    .await;
    let r1 = lot_id(&po, 0);
    let mut orders = Vec::new();
    for _ in 0..16 {
        orders.push(confirmed_so(&app, &customer, &product, "1000", "LB").await);
    }
    let before = app.write_footprint().await;

    let answers = join_all(orders.iter().map(|(base, line)| {
        let app = &app;
        let body = shipment(line, "1000", &[(&r1, "1000")]);
        async move {
            let response = app.post(&format!("{base}/ship"), body).await;
            (base.clone(), response.status())
        }
    }))
    .await;
    let shipped: Vec<&String> = answers
        .iter()
        .filter(|(_, status)| *status == StatusCode::OK)
        .map(|(base, _)| base)
        .collect();
    let refused = answers
        .iter()
        .filter(|(_, status)| *status == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        shipped.len(),
        10,
        "exactly the lot's 10000 lb ship: {answers:?}"
    );
    assert_eq!(refused, 6, "the rest are refused with 409: {answers:?}");

    // The stock, the events and the orders agree: 10000 shipped, in ten shipment events.
    assert_eq!(
        stock(&app, &r1).await,
        Some(("10000".into(), "10000".into()))
    );
    let after = app.write_footprint().await;
    assert_eq!(
        after.0 - before.0,
        10,
        "one event per shipment that committed"
    );
    let events_shipped: i64 = sqlx::query_scalar(
        "select count(*) from events e,
                jsonb_array_elements(e.payload -> 'Shipped' -> 'lines') line,
                jsonb_array_elements(line -> 'lots') lot
          where e.event_type = 'SalesOrderShipped' and lot ->> 'lot_id' = $1",
    )
    .bind(&r1)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(events_shipped, 10);
    for (base, status) in &answers {
        let order = read_settled(&app, base).await;
        let expected = if *status == StatusCode::OK {
            "shipped"
        } else {
            "confirmed"
        };
        assert_eq!(order["status"], expected, "{order}");
    }
    // The tenant's chain still verifies.
    let chain = oms_store::EventStore::new(app.pool.clone())
        .verify_chain(app.tenant)
        .await
        .unwrap();
    assert!(chain.ok, "{chain:?}");
}
