//! Lots and recalls through HTTP: `GET /lots` (filters, pages), `GET /lots/{id}`,
//! `GET /lots/{id}/trace` (forward) and `GET /sales-orders/{id}/trace` (backward), for the
//! lot's own tenant only; unknown and malformed ids are the client's error.
//!
//! Most tests record the receipts and shipments that carry lots through the command pipeline
//! (the store, with the domain's commands), so they test the read side whatever the request
//! bodies accept; `lots_sent_in_receipt_and_ship_bodies_are_traced` sends them as API.md's
//! request bodies do.

use std::sync::{Arc, Mutex};

use crate::helpers::*;
use oms_api::auth::Role;
use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderCommand};
use oms_domain::sales_order::{SalesOrder, SalesOrderCommand};
use oms_domain::services::SystemClock;
use oms_store::idempotency::Reply;
use oms_store::{Actor, CommandContext, Commands, EventStore, OmsAggregate};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

/// Runs `command` on aggregate `id` of `app`'s tenant through the command pipeline, as a
/// handler would.
async fn run<A>(app: &TestApp, id: Uuid, command: A::Command)
where
    A: OmsAggregate,
    A::Command: Clone,
    A::Event: oms_domain::UniqueKeys,
{
    let commands = Commands::new(EventStore::new(app.pool.clone()), Arc::new(SystemClock));
    let ctx = CommandContext {
        tenant: app.tenant,
        actor: Actor {
            subject: "mary".into(),
            name: None,
        },
        request_id: Uuid::new_v4().to_string(),
        correlation_id: "lots".into(),
        causation_id: None,
        expected_version: None,
        idempotency: None,
    };
    let done = Arc::new(Mutex::new(false));
    let rendered = done.clone();
    commands
        .execute::<A, _, _>(
            &ctx,
            id,
            None,
            |_| command.clone(),
            move |_, _| {
                *rendered.lock().unwrap() = true;
                Reply {
                    status: 200,
                    body: json!({}).into(),
                    headers: Vec::new(),
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the command is accepted: {e}"));
    assert!(*done.lock().unwrap());
}

/// A value of a domain type from its JSON.
macro_rules! de {
    ($value:expr) => {
        serde_json::from_value($value).expect("a valid domain value")
    };
}

/// `?min_position=` of the tenant's newest event: a read that waits for everything written.
async fn fresh(app: &TestApp) -> String {
    let head: i64 =
        sqlx::query_scalar("select coalesce(max(position), 0) from events where tenant_id = $1")
            .bind(app.tenant)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    format!("min_position={head}")
}

/// A recall's world in `app`'s tenant: PO-L1 (Prairie Packers, plant EST 700) received lots
/// A-1 (400 lb, produced 2026-11-01 at EST 9), A-2 (200) and B-1 (400); SO-1 (Metro) shipped
/// A-1 300 and A-2 200, SO-2 (Corner Deli) shipped A-1 100 and B-1 50 on one line and B-1
/// 100 on another; SO-3 is confirmed, not shipped.
struct Recall {
    supplier: String,
    plant: String,
    metro: String,
    deli: String,
    po: String,
    /// B-1.
    lots: [Uuid; 3],
    /// SO-1, SO-2, SO-3.
    sos: [String; 3],
    /// SO-2's lines.
    so2_lines: [String; 2],
}

async fn recall(app: &TestApp) -> Recall {
    let (supplier, product) = app.reference_data().await;
    let plant = id_of(
        &app.post_ok(
            "/api/v1/plants",
            json!({"name": "Prairie Plant", "code": "PRP", "establishment_number": "EST 700"}),
            StatusCode::CREATED,
        )
        .await,
    );
    let metro = app.customer().await;
    let deli = id_of(
        &app.post_ok(
            "/api/v1/customers",
            json!({"name": "Corner Deli", "code": "DELI"}),
            StatusCode::CREATED,
        )
        .await,
    );
    let po = app
        .post_ok(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02", "order_number": "PO-L1",
                   "plant_id": plant,
                   "lines": [{"product_id": product, "weight": "1000", "price_per_unit": "2"}]}),
            StatusCode::CREATED,
        )
        .await;
    let po_id = id_of(&po);
    let po_line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    for action in ["submit", "approve"] {
        app.post_ok(
            &format!("/api/v1/purchase-orders/{po_id}/{action}"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    }
    let lots = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    let po_uuid: Uuid = po_id.parse().unwrap();
    run::<PurchaseOrder>(
        app,
        po_uuid,
        PurchaseOrderCommand::RecordReceipt {
            receipt_id: Uuid::new_v4(),
            received_on: de!(json!("2026-11-05")),
            complete: false,
            lines: de!(json!([{"line_id": po_line, "weight": "600", "lots": [
                {"lot_id": lots[0], "lot_number": "A-1", "weight": "400",
                 "production_date": "2026-11-01", "establishment_number": "EST 9"},
                {"lot_id": lots[1], "lot_number": "A-2", "weight": "200"},
            ]}])),
        },
    )
    .await;
    run::<PurchaseOrder>(
        app,
        po_uuid,
        PurchaseOrderCommand::RecordReceipt {
            receipt_id: Uuid::new_v4(),
            received_on: de!(json!("2026-11-06")),
            complete: true,
            lines: de!(json!([{"line_id": po_line, "weight": "400", "lots": [
                {"lot_id": lots[2], "lot_number": "B-1", "weight": "400"},
            ]}])),
        },
    )
    .await;

    let mut sos = Vec::new();
    let mut so2_lines = Vec::new();
    for (number, customer, weights, ship) in [
        (
            "SO-1",
            &metro,
            vec!["500"],
            Some(vec![vec![(lots[0], "300"), (lots[1], "200")]]),
        ),
        (
            "SO-2",
            &deli,
            vec!["150", "100"],
            Some(vec![
                vec![(lots[0], "100"), (lots[2], "50")],
                vec![(lots[2], "100")],
            ]),
        ),
        ("SO-3", &metro, vec!["50"], None),
    ] {
        let lines: Vec<Value> = weights
            .iter()
            .map(|w| json!({"product_id": product, "weight": w, "price_per_unit": "3"}))
            .collect();
        let so = app
            .post_ok(
                "/api/v1/sales-orders",
                json!({"customer_id": customer, "order_date": "2026-11-07",
                       "order_number": number, "lines": lines}),
                StatusCode::CREATED,
            )
            .await;
        let id = id_of(&so);
        app.post_ok(
            &format!("/api/v1/sales-orders/{id}/confirm"),
            json!({}),
            StatusCode::OK,
        )
        .await;
        let line_ids: Vec<String> = so["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line_id"].as_str().unwrap().to_string())
            .collect();
        if let Some(ship) = ship {
            let lines: Vec<Value> = line_ids
                .iter()
                .zip(&weights)
                .zip(ship)
                .map(|((line, weight), lots)| {
                    let lots: Vec<Value> = lots
                        .iter()
                        .map(|(lot, w)| json!({"lot_id": lot, "weight": w}))
                        .collect();
                    json!({"line_id": line, "weight": weight, "lots": lots})
                })
                .collect();
            run::<SalesOrder>(
                app,
                id.parse().unwrap(),
                SalesOrderCommand::Ship {
                    shipped_on: de!(json!("2026-11-08")),
                    carrier_id: None,
                    carrier_release_number: None,
                    lines: de!(json!(lines)),
                },
            )
            .await;
        }
        if number == "SO-2" {
            so2_lines = line_ids;
        }
        sos.push(id);
    }
    Recall {
        supplier,
        plant,
        metro,
        deli,
        po: po_id,
        lots,
        sos: sos.try_into().unwrap(),
        so2_lines: so2_lines.try_into().unwrap(),
    }
}

#[tokio::test]
async fn a_lot_is_traced_forward_from_its_receipt_to_every_shipment() {
    let app = spawn_app().await;
    let r = recall(&app).await;
    let fresh = fresh(&app).await;

    let trace = expect_json(
        app.get(&format!("/api/v1/lots/{}/trace?{fresh}", r.lots[0]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["lot"]["lot_number"], "A-1", "{trace}");
    assert_eq!(trace["lot"]["production_date"], "2026-11-01");
    assert_eq!(
        trace["receipt"],
        json!({"purchase_order_id": r.po, "order_number": "PO-L1", "supplier_id": r.supplier,
               "supplier_name": "Prairie Packers", "plant_id": r.plant,
               "plant_name": "Prairie Plant", "establishment_number": "EST 9",
               "received_on": "2026-11-05", "weight": "400"})
    );
    let shipments: Vec<(&str, &str, &str, &str)> = trace["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["order_number"].as_str().unwrap(),
                s["customer_id"].as_str().unwrap(),
                s["shipped_on"].as_str().unwrap(),
                s["weight"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shipments,
        [
            ("SO-1", r.metro.as_str(), "2026-11-08", "300"),
            ("SO-2", r.deli.as_str(), "2026-11-08", "100")
        ]
    );
    assert_eq!(trace["shipments"][0]["sales_order_id"], json!(r.sos[0]));
    assert_eq!(trace["shipped_weight"], "400");
    assert_eq!(trace["remaining_weight"], "0");

    // B-1: no establishment number of its own, so the plant's; 250 of 400 left.
    let trace = expect_json(
        app.get(&format!("/api/v1/lots/{}/trace", r.lots[2])).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["receipt"]["establishment_number"], "EST 700");
    assert_eq!(trace["shipments"].as_array().unwrap().len(), 2);
    assert_eq!(trace["shipped_weight"], "150");
    assert_eq!(trace["remaining_weight"], "250");

    // The lot itself, for a read-only user too.
    let readonly = app.token_for(app.tenant, &[Role::Readonly]);
    let lot = expect_json(
        app.request(
            Method::GET,
            &format!("/api/v1/lots/{}", r.lots[2]),
            &readonly,
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(lot["lot_id"], json!(r.lots[2]));
    assert_eq!(lot["lot_number"], "B-1");
    assert_eq!(lot["purchase_order_id"], json!(r.po));
    assert_eq!(lot["supplier_id"], json!(r.supplier));
    assert_eq!(lot["received_on"], "2026-11-06");
    assert_eq!(lot["received_weight"], "400");
    assert_eq!(lot["weight_unit"], "LB");
    assert_eq!(lot["shipped_weight"], "150");
    assert_eq!(lot["remaining_weight"], "250");
}

/// Every row of the lots read models of `app`'s tenant, as sorted JSON text.
async fn lot_rows(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "select to_jsonb(t)::text from read.lots t where tenant_id = $1 \
         union all \
         select to_jsonb(t)::text from read.lot_movements t where tenant_id = $1 \
         order by 1",
    )
    .bind(app.tenant)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_replay_of_the_orders_projection_gives_the_same_lot_rows() {
    let app = spawn_app().await;
    recall(&app).await;
    let fresh = fresh(&app).await;
    expect_json(
        app.get(&format!("/api/v1/lots?{fresh}")).await,
        StatusCode::OK,
    )
    .await;
    let live = lot_rows(&app).await;
    assert_eq!(
        live.len(),
        3 + 3 + 5,
        "three lots, three receipts, five shipments"
    );

    for batch in [1, 1000] {
        oms_projector::replay::rebuild(
            &EventStore::new(app.pool.clone()),
            oms_projections::Projection::Orders,
            app.tenant,
            batch,
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            lot_rows(&app).await,
            live,
            "replayed {batch} event(s) at a time"
        );
    }
}

/// When the event of `aggregate` of type `event_type` was recorded, as `?as_of=` text.
async fn recorded_at(app: &TestApp, aggregate: &str, event_type: &str) -> String {
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select recorded_at from events where tenant_id = $1 and aggregate_id = $2 \
         and event_type = $3 order by sequence limit 1",
    )
    .bind(app.tenant)
    .bind(aggregate.parse::<Uuid>().unwrap())
    .bind(event_type)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test]
async fn a_lots_trace_and_its_orders_are_seen_as_they_were_with_as_of() {
    let app = spawn_app().await;
    let r = recall(&app).await;
    let fresh = fresh(&app).await;
    let auditor = app.token_for(app.tenant, &[Role::Auditor]);
    let get = |path: String, token: String| {
        let request = app.request(Method::GET, &path, &token);
        async move { request.send().await.unwrap() }
    };
    let first_shipment = recorded_at(&app, &r.sos[0], "SalesOrderShipped").await;
    let trace = expect_json(
        get(
            format!(
                "/api/v1/lots/{}/trace?as_of={first_shipment}&{fresh}",
                r.lots[0]
            ),
            auditor.clone(),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["shipments"].as_array().unwrap().len(), 1, "{trace}");
    assert_eq!(trace["shipments"][0]["order_number"], "SO-1");
    assert_eq!(trace["shipped_weight"], "300");
    assert_eq!(trace["remaining_weight"], "100");
    assert_eq!(trace["lot"]["remaining_weight"], "100");

    // Before its receipt the lot did not exist.
    let created = recorded_at(&app, &r.po, "PurchaseOrderCreated").await;
    expect_problem(
        get(
            format!("/api/v1/lots/{}/trace?as_of={created}", r.lots[0]),
            auditor.clone(),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The past is an auditor's: a read-only user is refused it; a malformed instant is 400.
    let readonly = app.token_for(app.tenant, &[Role::Readonly]);
    expect_problem(
        get(
            format!("/api/v1/lots/{}/trace?as_of={first_shipment}", r.lots[0]),
            readonly,
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_problem(
        get(
            format!("/api/v1/lots/{}/trace?as_of=yesterday", r.lots[0]),
            auditor.clone(),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // The purchase order as it was after its first receipt shows that receipt's lots only.
    let first_receipt = recorded_at(&app, &r.po, "PurchaseOrderReceiptRecorded").await;
    let lot_numbers = |order: &Value| -> Vec<String> {
        order["lines"][0]["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|lot| lot["lot_number"].as_str().unwrap().to_string())
            .collect()
    };
    let then = expect_json(
        get(
            format!("/api/v1/purchase-orders/{}?as_of={first_receipt}", r.po),
            auditor.clone(),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(lot_numbers(&then), ["A-1", "A-2"]);
    let now = expect_json(
        get(format!("/api/v1/purchase-orders/{}", r.po), auditor).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(lot_numbers(&now), ["A-1", "A-2", "B-1"]);
}

/// The lot numbers of `GET path`, every page followed with `next_cursor`.
async fn listed(app: &TestApp, path: &str) -> Vec<String> {
    let mut numbers = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(cursor) => format!("{path}{separator}cursor={cursor}"),
            None => path.to_string(),
        };
        let page = expect_json(app.get(&url).await, StatusCode::OK).await;
        numbers.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|lot| lot["lot_number"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return numbers,
        }
    }
}

#[tokio::test]
async fn lots_are_listed_by_number_prefix_supplier_and_purchase_order() {
    let app = spawn_app().await;
    let r = recall(&app).await;
    let fresh = fresh(&app).await;
    expect_json(
        app.get(&format!("/api/v1/lots?{fresh}")).await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(
        listed(&app, "/api/v1/lots?sort=lot_number&limit=1").await,
        ["A-1", "A-2", "B-1"]
    );
    assert_eq!(listed(&app, "/api/v1/lots").await[0], "B-1");
    assert_eq!(
        listed(&app, "/api/v1/lots?q=A-&sort=-lot_number").await,
        ["A-2", "A-1"]
    );
    assert_eq!(
        listed(
            &app,
            &format!(
                "/api/v1/lots?supplier_id={}&purchase_order_id={}&sort=lot_number",
                r.supplier, r.po
            )
        )
        .await,
        ["A-1", "A-2", "B-1"]
    );
    assert!(listed(
        &app,
        &format!("/api/v1/lots?purchase_order_id={}", r.sos[0])
    )
    .await
    .is_empty());
    assert!(listed(&app, "/api/v1/lots?q=%25").await.is_empty());

    // CSV like every list.
    let csv = app.get("/api/v1/lots?format=csv&sort=lot_number").await;
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap();
    assert!(text.lines().count() == 4 && text.contains("A-2"), "{text}");

    for bad in [
        "/api/v1/lots?supplier_id=42",
        "/api/v1/lots?purchase_order_id=nope",
        "/api/v1/lots?status=open",
        "/api/v1/lots?sort=total",
        "/api/v1/lots?limit=0",
        "/api/v1/lots?cursor=garbage",
    ] {
        expect_problem(app.get(bad).await, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_sales_order_is_traced_back_to_its_lots_purchase_orders_and_plants() {
    let app = spawn_app().await;
    let r = recall(&app).await;
    let fresh = fresh(&app).await;

    let trace = expect_json(
        app.get(&format!("/api/v1/sales-orders/{}/trace?{fresh}", r.sos[1]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["sales_order_id"], json!(r.sos[1]), "{trace}");
    assert_eq!(trace["order_number"], "SO-2");
    assert_eq!(trace["customer_id"], json!(r.deli));
    assert_eq!(trace["shipped_on"], "2026-11-08");
    let lines = trace["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line_id"], json!(r.so2_lines[0]));
    assert_eq!(lines[1]["line_id"], json!(r.so2_lines[1]));
    let lots = |line: &Value| -> Vec<(String, String, String, String)> {
        line["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|lot| {
                assert_eq!(lot["purchase_order_id"], json!(r.po), "{lot}");
                assert_eq!(lot["purchase_order_number"], "PO-L1");
                assert_eq!(lot["supplier_id"], json!(r.supplier));
                assert_eq!(lot["plant_id"], json!(r.plant));
                (
                    lot["lot_number"].as_str().unwrap().to_string(),
                    lot["weight"].as_str().unwrap().to_string(),
                    lot["establishment_number"].as_str().unwrap().to_string(),
                    lot["received_on"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let owned = |v: [(&str, &str, &str, &str); 1]| {
        v.iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect::<Vec<_>>()
    };
    let mut first = owned([("A-1", "100", "EST 9", "2026-11-05")]);
    first.extend(owned([("B-1", "50", "EST 700", "2026-11-06")]));
    assert_eq!(lots(&lines[0]), first);
    assert_eq!(
        lots(&lines[1]),
        owned([("B-1", "100", "EST 700", "2026-11-06")])
    );

    // Not shipped yet: its line, no lots.
    let trace = expect_json(
        app.get(&format!("/api/v1/sales-orders/{}/trace", r.sos[2]))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["lines"][0]["lots"], json!([]));
    assert_eq!(trace["shipped_on"], json!(null));
}

#[tokio::test]
async fn unknown_or_another_tenants_lots_are_not_found_and_malformed_ids_are_refused() {
    let app = spawn_app().await;
    let r = recall(&app).await;
    let fresh = fresh(&app).await;
    // Projected: the owner reads them.
    expect_json(
        app.get(&format!("/api/v1/lots/{}?{fresh}", r.lots[0]))
            .await,
        StatusCode::OK,
    )
    .await;

    let other = oms_store::tenants::create(
        &app.pool,
        "Beta Meats",
        &format!("beta-{}", Uuid::new_v4().simple()),
    )
    .await
    .unwrap()
    .id;
    let theirs = app.token_for(other, &[Role::Admin]);
    let mine = app.admin();
    let unknown = Uuid::new_v4();
    for (token, path) in [
        (&theirs, format!("/api/v1/lots/{}", r.lots[0])),
        (&theirs, format!("/api/v1/lots/{}/trace", r.lots[0])),
        (&theirs, format!("/api/v1/sales-orders/{}/trace", r.sos[1])),
        (&mine, format!("/api/v1/lots/{unknown}")),
        (&mine, format!("/api/v1/lots/{unknown}/trace")),
        (&mine, format!("/api/v1/sales-orders/{unknown}/trace")),
        // A purchase order is not a sales order, nor a lot.
        (&mine, format!("/api/v1/sales-orders/{}/trace", r.po)),
        (&mine, format!("/api/v1/lots/{}/trace", r.po)),
    ] {
        let body = expect_problem(
            app.request(Method::GET, &path, token).send().await.unwrap(),
            StatusCode::NOT_FOUND,
        )
        .await;
        let text = body.to_string();
        assert!(
            !text.contains("A-1") && !text.contains("PO-L1"),
            "{path}: {text}"
        );
    }
    // Nothing of the tenant's lots in the other tenant's list.
    let list = expect_json(
        app.request(Method::GET, "/api/v1/lots", &theirs)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([]));

    for path in [
        "/api/v1/lots/not-a-uuid",
        "/api/v1/lots/not-a-uuid/trace",
        "/api/v1/sales-orders/42/trace",
        "/api/v1/lots/00000000-0000-0000-0000-00000000000g/trace",
    ] {
        expect_problem(app.get(path).await, StatusCode::BAD_REQUEST).await;
    }
    expect_problem(
        app.get(&format!("/api/v1/lots/{}?min_position=-1", r.lots[0]))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // No token: 401.
    let response = app
        .client
        .get(format!("{}/api/v1/lots/{}/trace", app.address, r.lots[0]))
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::UNAUTHORIZED).await;
}

/// Depends on the receipt and ship request bodies taking `lots` (API.md "Lots and recalls").
#[tokio::test]
async fn lots_sent_in_receipt_and_ship_bodies_are_traced() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let po = app.draft_po(&supplier, &product, "1000", "2").await;
    let po_id = id_of(&po);
    let po_line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    for action in ["submit", "approve"] {
        app.post_ok(
            &format!("/api/v1/purchase-orders/{po_id}/{action}"),
            json!({}),
            StatusCode::OK,
        )
        .await;
    }
    let received = app
        .post_ok(
            &format!("/api/v1/purchase-orders/{po_id}/receipts"),
            json!({"received_on": "2026-11-05", "complete": true,
                   "lines": [{"line_id": po_line, "weight": "1000", "lots": [
                       {"lot_number": "HTTP-1", "weight": "700", "production_date": "2026-11-01",
                        "establishment_number": "EST 5"},
                       {"lot_number": "HTTP-2", "weight": "300"}]}]}),
            StatusCode::OK,
        )
        .await;
    let lot_ids: Vec<String> = received["lines"][0]["lots"]
        .as_array()
        .expect("the order shows the line's lots")
        .iter()
        .map(|lot| lot["lot_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lot_ids.len(), 2, "{received}");

    let so = app
        .post_ok(
            "/api/v1/sales-orders",
            json!({"customer_id": customer, "order_date": "2026-11-06",
                   "lines": [{"product_id": product, "weight": "500", "price_per_unit": "3"}]}),
            StatusCode::CREATED,
        )
        .await;
    let so_id = id_of(&so);
    let so_line = so["lines"][0]["line_id"].as_str().unwrap().to_string();
    app.post_ok(
        &format!("/api/v1/sales-orders/{so_id}/confirm"),
        json!({}),
        StatusCode::OK,
    )
    .await;
    let shipped = app
        .post_ok(
            &format!("/api/v1/sales-orders/{so_id}/ship"),
            json!({"shipped_on": "2026-11-07",
                   "lines": [{"line_id": so_line, "weight": "500", "lots": [
                       {"lot_id": lot_ids[0], "weight": "400"},
                       {"lot_id": lot_ids[1], "weight": "100"}]}]}),
            StatusCode::OK,
        )
        .await;
    let position = shipped["position"].as_i64().unwrap();

    let trace = expect_json(
        app.get(&format!(
            "/api/v1/lots/{}/trace?min_position={position}",
            lot_ids[0]
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(trace["lot"]["lot_number"], "HTTP-1", "{trace}");
    assert_eq!(trace["receipt"]["establishment_number"], "EST 5");
    assert_eq!(trace["shipments"][0]["sales_order_id"], json!(so_id));
    assert_eq!(trace["shipments"][0]["weight"], "400");
    assert_eq!(trace["shipped_weight"], "400");
    assert_eq!(trace["remaining_weight"], "300");

    let back = expect_json(
        app.get(&format!("/api/v1/sales-orders/{so_id}/trace"))
            .await,
        StatusCode::OK,
    )
    .await;
    let numbers: Vec<&str> = back["lines"][0]["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| lot["lot_number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["HTTP-1", "HTTP-2"]);
    assert_eq!(
        back["lines"][0]["lots"][0]["purchase_order_id"],
        json!(po_id)
    );
}

// ---------------------------------------------------------------------------------------------
// The forward trace on a tenant with 100,000 orders (a measurement, not run by default)
// ---------------------------------------------------------------------------------------------

/// Purchase orders (and as many sales orders) of the measurement: 100,000 orders in all.
const PAIRS: u32 = 50_000;

/// Runs `command` on `state` with the domain's own `handle` and returns its events as the
/// projections see them, at the tenant positions after `position` (which it moves), a second
/// apart; their sequences are numbered by the caller.
async fn decided<A>(
    tenant: Uuid,
    id: Uuid,
    state: &mut A,
    command: A::Command,
    services: &A::Services,
    position: &mut i64,
) -> Vec<oms_projections::EventRecord>
where
    A: cqrs_es::Aggregate,
{
    use cqrs_es::DomainEvent;
    let sink = cqrs_es::event_sink::EventSink::default();
    state
        .handle(command, services, &sink)
        .await
        .unwrap_or_else(|e| panic!("the command is accepted: {e}"));
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    sink.collect()
        .await
        .into_iter()
        .map(|event| {
            *position += 1;
            oms_projections::EventRecord {
                tenant_id: tenant,
                position: *position,
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: id,
                sequence: 0,
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(&event).unwrap(),
                metadata: json!({"actor": "bench", "actor_name": null, "request_id": "bench",
                                 "correlation_id": "bench", "causation_id": null,
                                 "idempotency_key": null}),
                recorded_at: start + chrono::Duration::seconds(*position),
            }
        })
        .collect()
}

/// p50 and p99 (nearest rank) of `samples`, in milliseconds.
fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).max(1) - 1];
    (rank(0.50), rank(0.99))
}

/// The forward trace answers in well under 100 ms on a tenant with 100,000 orders.
///
/// The read models are made by the projection's own rebuild ([`Rebuild`]) from events the
/// domain decides (50,000 purchase orders, each created, submitted, approved and received in
/// two lots of 500 lb; 50,000 sales orders, each created, confirmed and shipped from four lots:
/// 250 lb of each of its purchase order's two lots and of the previous one's): 350,000 events,
/// 100,000 lots, 300,000 lot movements. The events are not stored: the trace reads only the
/// read models. Then `GET /api/v1/lots/{id}/trace` of 200 lots picked across the tenant,
/// one request at a time over HTTP, and as many `GET /api/v1/sales-orders/{id}/trace`.
///
/// `cargo nextest run -p oms --test api --run-ignored only --no-capture forward_trace_latency`
#[tokio::test]
#[ignore = "a measurement: builds 100,000 orders (a few minutes)"]
async fn forward_trace_latency_on_a_tenant_with_100000_orders() {
    use oms_domain::purchase_order::PurchaseOrder as Po;
    use oms_domain::services::ReferenceType as R;
    use oms_domain::services::{DomainServices, FixedClock, InMemoryLookups, LotSummary};
    use oms_projections::apply::Rebuild;
    use oms_projections::{checkpoints, Projection};
    use std::time::Instant;

    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    let plant = id_of(
        &app.post_ok(
            "/api/v1/plants",
            json!({"name": "Prairie Plant", "code": "PRP", "establishment_number": "EST 700"}),
            StatusCode::CREATED,
        )
        .await,
    );
    let mut customers = Vec::new();
    for i in 0..20 {
        customers.push(id_of(
            &app.post_ok(
                "/api/v1/customers",
                json!({"name": format!("Customer {i}"), "code": format!("C{i}")}),
                StatusCode::CREATED,
            )
            .await,
        ));
    }
    let head = fresh(&app).await;
    expect_json(
        app.get(&format!("/api/v1/plants/{plant}?{head}")).await,
        StatusCode::OK,
    )
    .await;
    let mut position: i64 = head.trim_start_matches("min_position=").parse().unwrap();

    let tenant = app.tenant;
    let (supplier, product, plant): (Uuid, Uuid, Uuid) = (
        supplier.parse().unwrap(),
        product.parse().unwrap(),
        plant.parse().unwrap(),
    );
    let customers: Vec<Uuid> = customers.iter().map(|c| c.parse().unwrap()).collect();
    let po_id = |i: u32| Uuid::from_u128(0x1000_0000_0000 + u128::from(i));
    let so_id = |i: u32| Uuid::from_u128(0x2000_0000_0000 + u128::from(i));
    let lot_id =
        |i: u32, k: u32| Uuid::from_u128(0x3000_0000_0000 + u128::from(i) * 2 + u128::from(k));
    let mut lookups = InMemoryLookups::new()
        .with_reference(R::Supplier, supplier, true)
        .with_reference(R::Product, product, true)
        .with_reference(R::Plant, plant, true);
    for customer in &customers {
        lookups = lookups.with_reference(R::Customer, *customer, true);
    }
    for i in 0..PAIRS {
        lookups = lookups.with_purchase_order(po_id(i));
        for k in 0..2 {
            lookups = lookups.with_lot(
                lot_id(i, k),
                LotSummary {
                    purchase_order_id: po_id(i),
                    supplier_id: supplier,
                    lot_number: de!(json!(format!("L{i:06}-{k}"))),
                    received_weight: de!(json!("500")),
                    weight_unit: oms_domain::values::WeightUnit::Lb,
                },
            );
        }
    }
    let services = DomainServices::new(
        Arc::new(lookups),
        Arc::new(FixedClock(de!(json!("2026-06-01")))),
    );

    let started = Instant::now();
    let mut tx = app.pool.begin().await.unwrap();
    checkpoints::lock(&mut tx, Projection::Orders, tenant)
        .await
        .unwrap();
    let mut rebuild = Rebuild::new(tenant, &[Projection::Orders]);
    let mut page = Vec::new();
    let mut sequences = std::collections::HashMap::new();
    let mut number = |events: Vec<oms_projections::EventRecord>| {
        events
            .into_iter()
            .map(|mut event| {
                let sequence = sequences.entry(event.aggregate_id).or_insert(0);
                *sequence += 1;
                event.sequence = *sequence;
                event
            })
            .collect::<Vec<_>>()
    };
    for i in 0..PAIRS {
        let (po, so) = (po_id(i), so_id(i));
        let line = Uuid::from_u128(0x4000_0000_0000 + u128::from(i));
        let mut order = Po::default();
        let commands = [
            PurchaseOrderCommand::Create(de!(json!({
                "order_number": format!("PO-{i:06}"),
                "header": {"supplier_id": supplier, "order_date": "2026-05-01", "plant_id": plant},
                "lines": [{"line_id": line, "product_id": product, "weight": "1000", "price_per_unit": "2"}],
            }))),
            PurchaseOrderCommand::Submit,
            PurchaseOrderCommand::Approve,
            PurchaseOrderCommand::RecordReceipt {
                receipt_id: Uuid::from_u128(0x5000_0000_0000 + u128::from(i)),
                received_on: de!(json!("2026-05-10")),
                complete: true,
                lines: de!(json!([{"line_id": line, "weight": "1000", "lots": [
                    {"lot_id": lot_id(i, 0), "lot_number": format!("L{i:06}-0"), "weight": "500",
                     "production_date": "2026-05-08", "establishment_number": "EST 9"},
                    {"lot_id": lot_id(i, 1), "lot_number": format!("L{i:06}-1"), "weight": "500"},
                ]}])),
            },
        ];
        for command in commands {
            let events = decided(tenant, po, &mut order, command, &services, &mut position).await;
            page.extend(number(events));
        }
        let line = Uuid::from_u128(0x6000_0000_0000 + u128::from(i));
        let previous = i.checked_sub(1).unwrap_or(PAIRS - 1);
        let (weight, lots) = if i == 0 {
            (
                "500",
                json!([{"lot_id": lot_id(0, 0), "weight": "250"}, {"lot_id": lot_id(0, 1), "weight": "250"}]),
            )
        } else {
            (
                "1000",
                json!([
                    {"lot_id": lot_id(i, 0), "weight": "250"}, {"lot_id": lot_id(i, 1), "weight": "250"},
                    {"lot_id": lot_id(previous, 0), "weight": "250"}, {"lot_id": lot_id(previous, 1), "weight": "250"},
                ]),
            )
        };
        let mut order = SalesOrder::default();
        let commands = [
            SalesOrderCommand::Create(de!(json!({
                "order_number": format!("SO-{i:06}"),
                "header": {"customer_id": customers[i as usize % customers.len()], "order_date": "2026-05-11"},
                "lines": [{"line_id": line, "product_id": product, "weight": weight, "price_per_unit": "3"}],
            }))),
            SalesOrderCommand::Confirm,
            SalesOrderCommand::Ship {
                shipped_on: de!(json!("2026-05-12")),
                carrier_id: None,
                carrier_release_number: None,
                lines: de!(json!([{"line_id": line, "weight": weight, "lots": lots}])),
            },
        ];
        for command in commands {
            let events = decided(tenant, so, &mut order, command, &services, &mut position).await;
            page.extend(number(events));
        }
        if page.len() >= 2000 {
            rebuild.apply(&mut tx, &page).await.unwrap();
            page.clear();
        }
    }
    rebuild.apply(&mut tx, &page).await.unwrap();
    rebuild.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("analyze read.lots, read.lot_movements, read.sales_orders, read.sales_order_lines")
        .execute(&app.pool)
        .await
        .unwrap();
    let built = started.elapsed().as_secs_f64();
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from read.purchase_orders where tenant_id = $1), \
                (select count(*) from read.sales_orders where tenant_id = $1), \
                (select count(*) from read.lots where tenant_id = $1), \
                (select count(*) from read.lot_movements where tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        counts,
        (
            i64::from(PAIRS),
            i64::from(PAIRS),
            i64::from(PAIRS) * 2,
            i64::from(PAIRS) * 6 - 2
        )
    );

    // Warm the connection pool and the caches as a running service has them.
    for i in 0..20 {
        expect_json(
            app.get(&format!("/api/v1/lots/{}/trace", lot_id(i, 0)))
                .await,
            StatusCode::OK,
        )
        .await;
    }
    let token = app.admin();
    let mut lot_times = Vec::new();
    let mut so_times = Vec::new();
    for n in 0..200u32 {
        let i = (n * 7919) % PAIRS;
        let request = app.request(
            Method::GET,
            &format!("/api/v1/lots/{}/trace", lot_id(i, n % 2)),
            &token,
        );
        let at = Instant::now();
        let response = request.send().await.unwrap();
        let trace: Value = response.json().await.unwrap();
        lot_times.push(at.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            trace["shipments"].as_array().map(Vec::len),
            Some(if i == PAIRS - 1 { 1 } else { 2 }),
            "{trace}"
        );
        let request = app.request(
            Method::GET,
            &format!("/api/v1/sales-orders/{}/trace", so_id(i)),
            &token,
        );
        let at = Instant::now();
        let response = request.send().await.unwrap();
        let trace: Value = response.json().await.unwrap();
        so_times.push(at.elapsed().as_secs_f64() * 1000.0);
        assert!(
            !trace["lines"][0]["lots"].as_array().unwrap().is_empty(),
            "{trace}"
        );
    }
    let (lot_p50, lot_p99) = percentiles(lot_times);
    let (so_p50, so_p99) = percentiles(so_times);
    eprintln!(
        "built {} purchase orders, {} sales orders, {} lots, {} movements in {built:.0} s; \
         GET /lots/{{id}}/trace p50 {lot_p50:.1} ms p99 {lot_p99:.1} ms; \
         GET /sales-orders/{{id}}/trace p50 {so_p50:.1} ms p99 {so_p99:.1} ms (200 each)",
        counts.0, counts.1, counts.2, counts.3
    );
    assert!(lot_p99 < 100.0, "forward trace p99 {lot_p99:.1} ms");
}
