//! The read models against real Postgres: orders, lines and reference rows equal the
//! aggregates' state; history has one row per event with actor, summary and changes; the
//! analysts' views give the expected figures; re-applying or rebuilding gives identical rows.

mod common;

use std::collections::BTreeMap;

use common::{apply_all, day, de, snapshot, trade, Db, Log, Trade, MARY, PAT};
use oms_domain::purchase_order::PurchaseOrder;
use oms_domain::reference::{Reference, Supplier};
use oms_domain::sales_order::{SalesOrder, SalesOrderCommand};
use oms_projections::{documents, EventRecord, Projection, ProjectionError};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// A fresh database with tenant A's trade applied.
async fn traded() -> (Db, Trade) {
    let db = Db::fresh().await;
    let trade = trade(Uuid::new_v4(), db.today().await).await;
    apply_all(&db.pool, &trade.log.events).await;
    (db, trade)
}

/// One row as JSON (its columns by name), with money and weights as text.
async fn row(pool: &PgPool, sql: &str, id: Uuid) -> Value {
    sqlx::query_scalar(&format!("select to_jsonb(t) from ({sql}) t"))
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn orders_and_lines_equal_the_aggregate_state() {
    let (db, trade) = traded().await;
    let t = |days| json!(day(trade.today, days));

    for (id, state) in &trade.pos {
        let (stored_state, document, version, last_position): (Value, Value, i64, i64) =
            sqlx::query_as(
                "select state, document, version, last_position from read.purchase_orders \
                 where tenant_id = $1 and id = $2",
            )
            .bind(trade.log.tenant)
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let stored: PurchaseOrder = serde_json::from_value(stored_state).unwrap();
        assert_eq!(&stored, state);
        let stamp = trade.log.stamp(*id);
        assert_eq!(document, documents::purchase_order(state, &stamp));
        assert_eq!(version, stamp.version);
        assert_eq!(last_position, trade.log.of(*id).last().unwrap().position);

        type LineRow = (
            i32,
            Uuid,
            Uuid,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let lines: Vec<LineRow> = sqlx::query_as(
            "select line_no, line_id, product_id, weight::text, price_per_unit::text, \
                 amount::text, received_weight::text, received_amount::text \
             from read.purchase_order_lines where tenant_id = $1 and order_id = $2 \
             order by line_no",
        )
        .bind(trade.log.tenant)
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let expected: Vec<LineRow> = state
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    i as i32 + 1,
                    l.line.line_id,
                    l.line.product_id,
                    l.line.weight.to_string(),
                    l.line.price_per_unit.to_string(),
                    l.line.amount.to_string(),
                    l.received_weight.map(|w| w.to_string()),
                    l.received_amount.map(|a| a.to_string()),
                )
            })
            .collect();
        assert_eq!(lines, expected);
    }

    // PO1 in detail: money exact, dates, reasons.
    let po1 = trade.pos[0].0;
    let header = row(
        &db.pool,
        "select order_number, status, payment_status, total::text, received_total::text, \
             amount_due::text, amount_paid::text, outstanding::text, order_date, delivery_date, \
             notes, first_received_on, last_received_on, reject_reason, cancel_reason, \
             supplier_id, plant_id, currency, weight_unit, logistics, version \
         from read.purchase_orders where id = $1",
        po1,
    )
    .await;
    assert_eq!(
        header,
        json!({
            "order_number": "PO-000001", "status": "received", "payment_status": "partial",
            "total": "99633.67", "received_total": "99311.12", "amount_due": "99311.12",
            "amount_paid": "1000.00", "outstanding": "98311.12",
            "order_date": t(-50), "delivery_date": t(-45), "notes": "Load 1 of 2",
            "first_received_on": t(-44), "last_received_on": t(-40),
            "reject_reason": "Price too high", "cancel_reason": null,
            "supplier_id": trade.acme, "plant_id": trade.plant, "currency": "USD",
            "weight_unit": "LB", "logistics": "supplier_delivery", "version": 13,
        })
    );
    type ReceivedLine = (
        i32,
        String,
        Option<i64>,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let lines: Vec<ReceivedLine> = sqlx::query_as(
        "select line_no, weight::text, quantity, amount::text, received_weight::text, \
                 received_quantity, received_amount::text \
             from read.purchase_order_lines where order_id = $1 order by line_no",
    )
    .bind(po1)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![
            (
                1,
                "40000".into(),
                Some(800),
                "86300.00".into(),
                Some("39850.5".into()),
                Some(797),
                Some("85977.45".into())
            ),
            (
                2,
                "10000.5".into(),
                None,
                "13333.67".into(),
                Some("10000.5".into()),
                None,
                Some("13333.67".into())
            ),
        ]
    );
    let cancelled = row(
        &db.pool,
        "select status, cancel_reason, total::text from read.purchase_orders where id = $1",
        trade.pos[2].0,
    )
    .await;
    assert_eq!(
        cancelled,
        json!({"status": "cancelled", "cancel_reason": "Duplicate order", "total": "200.00"})
    );

    // Sales orders.
    for (id, state) in &trade.sos {
        let (stored_state, document): (Value, Value) = sqlx::query_as(
            "select state, document from read.sales_orders where tenant_id = $1 and id = $2",
        )
        .bind(trade.log.tenant)
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let stored: SalesOrder = serde_json::from_value(stored_state).unwrap();
        assert_eq!(&stored, state);
        assert_eq!(
            document,
            documents::sales_order(state, &trade.log.stamp(*id))
        );
    }
    let so1 = row(
        &db.pool,
        "select order_number, status, payment_status, customer_id, customer_po_number, \
             total::text, shipped_on, shipment_carrier_id, carrier_release_number, \
             shipped_total::text, delivered_on, invoice_number, invoice_date, due_date, \
             invoiced_amount::text, amount_due::text, amount_paid::text, outstanding::text, version \
         from read.sales_orders where id = $1",
        trade.sos[0].0,
    )
    .await;
    assert_eq!(
        so1,
        json!({
            "order_number": "SO-000001", "status": "invoiced", "payment_status": "partial",
            "customer_id": trade.bob, "customer_po_number": "BOB-77", "total": "92200.00",
            "shipped_on": t(-47), "shipment_carrier_id": trade.carrier,
            "carrier_release_number": "REL-1", "shipped_total": "92200.00",
            "delivered_on": t(-46), "invoice_number": "INV-000001", "invoice_date": t(-46),
            "due_date": t(-31), "invoiced_amount": "92200.00", "amount_due": "92200.00",
            "amount_paid": "2200.00", "outstanding": "90000.00", "version": 6,
        })
    );
    let so_line = row(
        &db.pool,
        "select line_no, product_id, weight::text, price_per_unit::text, amount::text, \
             source_purchase_order_id, shipped_weight::text, shipped_amount::text \
         from read.sales_order_lines where order_id = $1",
        trade.sos[0].0,
    )
    .await;
    assert_eq!(
        so_line,
        json!({
            "line_no": 1, "product_id": trade.beef, "weight": "40000", "price_per_unit": "2.305",
            "amount": "92200.00", "source_purchase_order_id": trade.pos[0].0,
            "shipped_weight": "40000", "shipped_amount": "92200.00",
        })
    );
    db.drop().await;
}

#[tokio::test]
async fn reference_rows_follow_their_events() {
    let (db, trade) = traded().await;
    let acme = row(
        &db.pool,
        "select name, code, phone, payment_terms, credit_terms, contact_name, active, version, \
             state, document from read.suppliers where id = $1",
        trade.acme,
    )
    .await;
    let state: Reference<Supplier> = serde_json::from_value(acme["state"].clone()).unwrap();
    assert_eq!(
        acme["document"],
        documents::reference(&state, &trade.log.stamp(trade.acme))
    );
    assert_eq!(acme["document"]["phone"], json!("555-0100"));
    assert_eq!(acme["document"]["kind"], json!("supplier"));
    let mut acme = acme;
    acme.as_object_mut().unwrap().remove("state");
    acme.as_object_mut().unwrap().remove("document");
    assert_eq!(
        acme,
        json!({"name": "Acme Packing", "code": "ACME", "phone": "555-0100", "payment_terms": "wire",
               "credit_terms": "net_30", "contact_name": null, "active": true, "version": 2})
    );
    let lamb = row(
        &db.pool,
        "select code, description, protein, uom, active, version, document->'active' as doc_active \
         from read.products where id = $1",
        trade.lamb,
    )
    .await;
    assert_eq!(
        lamb,
        json!({"code": "LM-1", "description": "Lamb shoulder", "protein": "lamb", "uom": "LB",
               "active": false, "version": 2, "doc_active": false})
    );
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from read.suppliers), (select count(*) from read.customers), \
                (select count(*) from read.products), (select count(*) from read.plants), \
                (select count(*) from read.carriers)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(counts, (2, 1, 3, 1, 1));
    let carrier = row(
        &db.pool,
        "select name, code, carrier_type, mc_number from read.carriers where id = $1",
        trade.carrier,
    )
    .await;
    assert_eq!(
        carrier,
        json!({"name": "Fast Freight", "code": "FF", "carrier_type": "truck", "mc_number": null})
    );
    db.drop().await;
}

/// History rows of an order: (sequence, summary, changes).
async fn history_rows(pool: &PgPool, order: Uuid) -> Vec<(i64, String, Value)> {
    sqlx::query_as(
        "select sequence, summary, changes from read.order_history where order_id = $1 \
         order by sequence",
    )
    .bind(order)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn history_has_one_row_per_event_with_actor_summary_and_changes() {
    let (db, trade) = traded().await;
    let t = |days| day(trade.today, days);
    let [l1, l2, l3] = trade.po1_lines;
    let (po1, _) = trade.pos[0];

    // One row per order event, with tenant, actor, position and time of the event.
    let order_events: Vec<&EventRecord> = trade
        .log
        .events
        .iter()
        .filter(|e| matches!(e.aggregate_type.as_str(), "purchase_order" | "sales_order"))
        .collect();
    type HistoryRow = (
        Uuid,
        String,
        Uuid,
        i64,
        i64,
        String,
        String,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<HistoryRow> = sqlx::query_as(
        "select tenant_id, order_type, order_id, position, sequence, event_type, actor, \
                 actor_name, occurred_at from read.order_history order by position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), order_events.len());
    for (row, event) in rows.iter().zip(&order_events) {
        assert_eq!(row.0, trade.log.tenant);
        assert_eq!(row.1, event.aggregate_type);
        assert_eq!(
            (row.2, row.3, row.4),
            (event.aggregate_id, event.position, event.sequence)
        );
        assert_eq!(row.5, event.event_type);
        assert_eq!(Some(row.6.as_str()), event.metadata["actor"].as_str());
        assert_eq!(row.7.as_deref(), event.metadata["actor_name"].as_str());
        assert_eq!(row.8, event.recorded_at);
    }

    let history = history_rows(&db.pool, po1).await;
    let summaries: Vec<&str> = history.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "Created by Mary Jones (PO-000001, 2 lines, 99633.67 USD)",
            "Header changed by Mary Jones (delivery_date, notes)",
            "Line added by Mary Jones (100 LB at 1 USD/LB = 100.00 USD)",
            "Line changed by Mary Jones (amount, weight)",
            "Line removed by Mary Jones (200 LB, 200.00 USD)",
            "Submitted by Mary Jones (99633.67 USD)",
            "Rejected by Pat Manager: Price too high",
            "Submitted by Mary Jones (99633.67 USD)",
            "Approved by pat",
            "Receipt of 39850.5 LB recorded by Mary Jones (2 lots)",
            "Payment of 1000.00 USD (wire) recorded by Pat Manager",
            "Receipt of 10000.5 LB recorded by Mary Jones (1 lot) (receiving complete)",
            "Note added by Mary Jones: Temperatures checked",
        ]
    );
    let changes = |sequence: usize| history[sequence - 1].2.clone();
    let change = |from: Value, to: Value| json!({"from": from, "to": to});

    // Created: every field from nothing.
    let created = changes(1);
    assert_eq!(
        created["order_number"],
        change(json!(null), json!("PO-000001"))
    );
    assert_eq!(created["status"], change(json!(null), json!("draft")));
    assert_eq!(
        created["supplier_id"],
        change(json!(null), json!(trade.acme))
    );
    assert_eq!(created["total"], change(json!("0.00"), json!("99633.67")));
    assert_eq!(created[format!("lines[{l1}]")]["from"], json!(null));
    assert_eq!(
        created[format!("lines[{l1}]")]["to"]["weight"],
        json!("40000")
    );
    assert_eq!(
        created[format!("lines[{l2}]")]["to"]["amount"],
        json!("13333.67")
    );
    // Header change: exactly the fields it changed.
    assert_eq!(
        changes(2),
        json!({"delivery_date": change(json!(null), json!(t(-45))),
               "notes": change(json!(null), json!("Load 1 of 2"))})
    );
    // Line events: the line before and after, totals, and a line change's own fields.
    let added = changes(3);
    assert_eq!(added[format!("lines[{l3}]")]["from"], json!(null));
    assert_eq!(added[format!("lines[{l3}]")]["to"]["weight"], json!("100"));
    assert_eq!(added["total"], change(json!("99633.67"), json!("99733.67")));
    assert_eq!(
        added["amount_due"],
        change(json!("99633.67"), json!("99733.67"))
    );
    let changed = changes(4);
    assert_eq!(
        changed[format!("lines[{l3}].weight")],
        change(json!("100"), json!("200"))
    );
    assert_eq!(
        changed[format!("lines[{l3}].amount")],
        change(json!("100.00"), json!("200.00"))
    );
    assert_eq!(
        changed[format!("lines[{l3}]")]["to"]["weight"],
        json!("200")
    );
    assert_eq!(
        changed["total"],
        change(json!("99733.67"), json!("99833.67"))
    );
    let removed = changes(5);
    assert_eq!(removed[format!("lines[{l3}]")]["to"], json!(null));
    assert_eq!(
        removed[format!("lines[{l3}]")]["from"]["weight"],
        json!("200")
    );
    // Status moves.
    assert_eq!(
        changes(6),
        json!({"status": change(json!("draft"), json!("submitted"))})
    );
    assert_eq!(
        changes(7),
        json!({"status": change(json!("submitted"), json!("draft")),
               "reject_reason": change(json!(null), json!("Price too high"))})
    );
    assert_eq!(
        changes(9),
        json!({"status": change(json!("submitted"), json!("approved"))})
    );
    // Receipt: status, money, the received line and the receipt.
    let receipt = changes(10);
    assert_eq!(
        receipt["status"],
        change(json!("approved"), json!("partially_received"))
    );
    assert_eq!(
        receipt["received_total"],
        change(json!(null), json!("85977.45"))
    );
    assert_eq!(
        receipt["amount_due"],
        change(json!("99633.67"), json!("85977.45"))
    );
    assert_eq!(
        receipt["outstanding"],
        change(json!("99633.67"), json!("85977.45"))
    );
    assert_eq!(
        receipt[format!("lines[{l1}]")]["from"]["received_weight"],
        json!(null)
    );
    assert_eq!(
        receipt[format!("lines[{l1}]")]["to"]["received_weight"],
        json!("39850.5")
    );
    assert_eq!(
        receipt[format!("receipts[{}]", trade.po1_receipts[0])]["to"]["received_on"],
        json!(t(-44))
    );
    assert!(receipt.get(format!("lines[{l2}]")).is_none());
    // Payment: the money moves and the payment.
    let payment = changes(11);
    let keys: Vec<&String> = payment.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "amount_paid",
            "outstanding",
            "payment_status",
            &format!("payments[{}]", trade.po1_payment)
        ]
    );
    assert_eq!(
        payment["amount_paid"],
        change(json!("0.00"), json!("1000.00"))
    );
    assert_eq!(
        payment["outstanding"],
        change(json!("85977.45"), json!("84977.45"))
    );
    assert_eq!(
        payment["payment_status"],
        change(json!("unpaid"), json!("partial"))
    );
    let note = changes(13);
    let (key, value) = note.as_object().unwrap().iter().next().unwrap();
    assert!(key.starts_with("order_notes["));
    assert_eq!(value["to"]["text"], json!("Temperatures checked"));

    // A cancelled order keeps its history.
    let cancelled = history_rows(&db.pool, trade.pos[2].0).await;
    assert_eq!(cancelled.len(), 2);
    assert_eq!(cancelled[1].1, "Cancelled by Pat Manager: Duplicate order");
    assert_eq!(
        cancelled[1].2,
        json!({"status": change(json!("draft"), json!("cancelled")),
               "cancel_reason": change(json!(null), json!("Duplicate order"))})
    );

    // Sales order.
    let so1 = history_rows(&db.pool, trade.sos[0].0).await;
    let summaries: Vec<String> = so1.iter().map(|(_, s, _)| s.clone()).collect();
    assert_eq!(
        summaries,
        [
            "Created by Mary Jones (SO-000001, 1 line, 92200.00 USD)".to_owned(),
            "Confirmed by Mary Jones (92200.00 USD)".to_owned(),
            format!("Shipment of 40000 LB on {} recorded by Mary Jones", t(-47)),
            format!("Delivery on {} recorded by Mary Jones", t(-46)),
            format!(
                "Invoiced by Pat Manager (INV-000001, 92200.00 USD, due {})",
                t(-31)
            ),
            "Payment of 2200.00 USD (ach) recorded by Pat Manager".to_owned(),
        ]
    );
    let shipped = &so1[2].2;
    assert_eq!(
        shipped["status"],
        change(json!("confirmed"), json!("shipped"))
    );
    assert_eq!(shipped["shipment"]["from"], json!(null));
    assert_eq!(
        shipped["shipment"]["to"]["carrier_release_number"],
        json!("REL-1")
    );
    assert_eq!(
        shipped["shipped_total"],
        change(json!(null), json!("92200.00"))
    );
    let s1 = trade.so_lines[0];
    assert_eq!(
        shipped[format!("lines[{s1}]")]["to"]["shipped_weight"],
        json!("40000")
    );
    let invoiced = &so1[4].2;
    assert_eq!(
        invoiced["invoice_number"],
        change(json!(null), json!("INV-000001"))
    );
    assert_eq!(invoiced["due_date"], change(json!(null), json!(t(-31))));
    assert_eq!(
        invoiced["status"],
        change(json!("delivered"), json!("invoiced"))
    );
    db.drop().await;
}

#[tokio::test]
async fn analysts_views_give_the_expected_figures() {
    let (db, trade) = traded().await;
    let t = |days| json!(day(trade.today, days));
    let (po1, po2) = (trade.pos[0].0, trade.pos[1].0);
    let all = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Value>(&format!(
                "select coalesce(jsonb_agg(to_jsonb(t)), '[]') from ({sql}) t"
            ))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };

    let payables = all(
        "select purchase_order_id, order_number, supplier_name, credit_terms, amount_due::text, \
             amount_paid::text, outstanding::text, currency, due_date, days_past_due \
         from read.payables order by order_number",
    )
    .await;
    assert_eq!(
        payables,
        json!([
            {"purchase_order_id": po1, "order_number": "PO-000001", "supplier_name": "Acme Packing",
             "credit_terms": "net_30", "amount_due": "99311.12", "amount_paid": "1000.00",
             "outstanding": "98311.12", "currency": "USD", "due_date": t(-10), "days_past_due": 10},
            {"purchase_order_id": po2, "order_number": "PO-000002", "supplier_name": "Wire Beef Co",
             "credit_terms": "wire_1_day_prior", "amount_due": "2000.00", "amount_paid": "0.00",
             "outstanding": "2000.00", "currency": "USD", "due_date": t(4), "days_past_due": 0},
        ])
    );

    let receivables = all(
        "select sales_order_id, customer_name, invoice_number, invoice_date, due_date, \
             invoiced_amount::text, amount_paid::text, outstanding::text, days_past_due \
         from read.receivables",
    )
    .await;
    assert_eq!(
        receivables,
        json!([{"sales_order_id": trade.sos[0].0, "customer_name": "Bob's Burgers",
                "invoice_number": "INV-000001", "invoice_date": t(-46), "due_date": t(-31),
                "invoiced_amount": "92200.00", "amount_paid": "2200.00", "outstanding": "90000.00",
                "days_past_due": 31}])
    );

    let aging = all(
        "select direction, order_number, counterparty_name, outstanding::text, days_past_due, \
             bucket, bucket_order from read.aging order by bucket_order, order_number",
    )
    .await;
    assert_eq!(
        aging,
        json!([
            {"direction": "payable", "order_number": "PO-000002", "counterparty_name": "Wire Beef Co",
             "outstanding": "2000.00", "days_past_due": 0, "bucket": "current", "bucket_order": 0},
            {"direction": "payable", "order_number": "PO-000001", "counterparty_name": "Acme Packing",
             "outstanding": "98311.12", "days_past_due": 10, "bucket": "1-30", "bucket_order": 1},
            {"direction": "receivable", "order_number": "SO-000001", "counterparty_name": "Bob's Burgers",
             "outstanding": "90000.00", "days_past_due": 31, "bucket": "31-60", "bucket_order": 2},
        ])
    );

    let volume = all(
        "select day, direction, protein, product_code, weight_unit, currency, weight::text, \
             value::text, orders, lines \
         from read.daily_volume order by day, direction, product_code",
    )
    .await;
    let v = |day: i64, direction: &str, protein: &str, code: &str, weight: &str, value: &str| {
        json!({"day": t(day), "direction": direction, "protein": protein, "product_code": code,
               "weight_unit": "LB", "currency": "USD", "weight": weight, "value": value,
               "orders": 1, "lines": 1})
    };
    assert_eq!(
        volume,
        json!([
            v(-50, "purchase", "beef", "BF-8020", "39850.5", "85977.45"),
            v(-50, "purchase", "pork", "PK-72", "10000.5", "13333.67"),
            v(-48, "sale", "beef", "BF-8020", "40000", "92200.00"),
            v(-3, "purchase", "beef", "BF-8020", "1000", "2000.00"),
            v(-2, "purchase", "beef", "BF-8020", "500", "1250.00"),
            v(-1, "sale", "pork", "PK-72", "1000", "1500.00"),
        ])
    );

    let margin = all(
        "select sales_order_number, purchase_order_number, product_code, protein, buy_price::text, \
             sell_price::text, margin_per_unit::text, sold_weight::text, margin_total::text \
         from read.back_to_back_margin order by sales_order_number",
    )
    .await;
    assert_eq!(
        margin,
        json!([
            {"sales_order_number": "SO-000001", "purchase_order_number": "PO-000001",
             "product_code": "BF-8020", "protein": "beef", "buy_price": "2.1575",
             "sell_price": "2.305", "margin_per_unit": "0.1475", "sold_weight": "40000",
             "margin_total": "5900.00"},
            {"sales_order_number": "SO-000002", "purchase_order_number": "PO-000001",
             "product_code": "PK-72", "protein": "pork", "buy_price": "1.3333",
             "sell_price": "1.5", "margin_per_unit": "0.1667", "sold_weight": "1000",
             "margin_total": "166.70"},
        ])
    );
    db.drop().await;
}

/// Every read table's and view's rows, by name.
async fn everything(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for relation in common::read_relations(pool).await {
        if relation == "checkpoints" {
            continue;
        }
        all.insert(relation.clone(), snapshot(pool, &relation).await);
    }
    all
}

/// Bob's claim on SO1 (short weight, 500.00), accepted at 400.00, and a second one (quality,
/// 100.00) left open: rows of `read.claims` for the trade.
async fn claim_on_so1(trade: &mut Trade) {
    let (so1, so) = &mut trade.sos[0];
    let line_id = trade.so_lines[0];
    for (claim_id, reason, amount, accepted) in [
        (Uuid::new_v4(), "short_weight", "500", Some("400")),
        (Uuid::new_v4(), "quality", "100", None),
    ] {
        let claim = json!({"claim_id": claim_id, "reason": reason,
            "lines": [{"line_id": line_id, "amount": amount}]});
        trade
            .log
            .run(*so1, so, SalesOrderCommand::RaiseClaim(de(claim)), MARY)
            .await;
        if let Some(accepted) = accepted {
            let accept = SalesOrderCommand::AcceptClaim {
                claim_id,
                accepted_amount: Some(de(json!(accepted))),
                credit_note_number: de(json!("CN-000001")),
            };
            trade.log.run(*so1, so, accept, PAT).await;
        }
    }
}

#[tokio::test]
async fn reapplying_changes_nothing_and_a_fresh_database_gets_identical_rows() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let mut a = trade(Uuid::new_v4(), today).await;
    let mut b = trade(Uuid::new_v4(), today).await;
    for trade in [&mut a, &mut b] {
        claim_on_so1(trade).await;
    }
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    let first = everything(&db.pool).await;
    for projection in Projection::ALL {
        for table in projection.tables() {
            assert!(!first[*table].is_empty(), "{table} has rows");
        }
    }

    // Duplicates (a redelivery of everything) have no second effect.
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    assert_eq!(everything(&db.pool).await, first);

    // A rebuild into an empty database gives the same rows, tenants interleaved or not.
    let other = Db::fresh().await;
    let mut interleaved: Vec<&EventRecord> = a.log.events.iter().chain(&b.log.events).collect();
    interleaved.sort_by_key(|e| (e.position, e.tenant_id));
    let interleaved: Vec<EventRecord> = interleaved.into_iter().cloned().collect();
    apply_all(&other.pool, &interleaved).await;
    let rebuilt = everything(&other.pool).await;
    assert_eq!(
        rebuilt.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    for (relation, rows) in &first {
        assert_eq!(
            &rebuilt[relation], rows,
            "{relation} differs after a rebuild"
        );
    }
    db.drop().await;
    other.drop().await;
}

#[tokio::test]
async fn events_that_do_not_fit_are_refused_and_other_aggregates_ignored() {
    let db = Db::fresh().await;
    let trade = trade(Uuid::new_v4(), db.today().await).await;
    let po_created = trade
        .log
        .events
        .iter()
        .find(|e| e.event_type == "PurchaseOrderCreated")
        .unwrap()
        .clone();
    let mut conn = db.pool.acquire().await.unwrap();

    let apply = |event: EventRecord, projection: Projection| {
        let pool = db.pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let result = projection.apply(&mut tx, &event).await;
            tx.commit().await.unwrap();
            result
        }
    };
    let garbled = EventRecord {
        payload: json!({"Created": {"order_number": 42}}),
        ..po_created.clone()
    };
    let not_first = EventRecord {
        sequence: 3,
        ..po_created.clone()
    };
    let approved_first = EventRecord {
        event_type: "PurchaseOrderApproved".into(),
        payload: json!("Approved"),
        ..po_created.clone()
    };
    let bad_supplier = EventRecord {
        aggregate_type: "supplier".into(),
        payload: json!({"Registered": {"details": {"nme": "typo"}}}),
        ..po_created.clone()
    };
    for projection in [Projection::Orders, Projection::OrderHistory] {
        for event in [garbled.clone(), not_first.clone(), approved_first.clone()] {
            let result = apply(event.clone(), projection).await;
            assert!(
                matches!(result, Err(ProjectionError::Payload { position, .. }) if position == event.position),
                "{projection:?} refuses {event:?}: {result:?}"
            );
        }
    }
    assert!(matches!(
        apply(bad_supplier, Projection::ReferenceData).await,
        Err(ProjectionError::Payload { .. })
    ));
    // Other aggregate types (and orders, for the reference projection) change nothing.
    for projection in Projection::ALL {
        let tenant_event = EventRecord {
            aggregate_type: "tenant".into(),
            payload: json!({"anything": true}),
            ..po_created.clone()
        };
        apply(tenant_event, projection).await.unwrap();
    }
    apply(po_created.clone(), Projection::ReferenceData)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar(
        "select (select count(*) from read.purchase_orders) + (select count(*) from read.order_history) \
              + (select count(*) from read.suppliers) + (select count(*) from read.order_history_states)",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(rows, 0);
    drop(conn);
    // The same event, well-formed, applies.
    apply(po_created, Projection::Orders).await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn apply_works_as_a_non_superuser_under_forced_row_level_security() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = trade(Uuid::new_v4(), today).await;
    let b = trade(Uuid::new_v4(), today).await;
    let role = format!("rls_writer_{}", &Uuid::new_v4().simple().to_string()[..12]);
    for statement in [
        format!("create role {role} nologin"),
        format!("grant usage on schema read to {role}"),
        format!("grant select, insert, update, delete on all tables in schema read to {role}"),
    ] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }

    let result = tokio::spawn({
        let pool = db.pool.clone();
        let role = role.clone();
        let (a_events, a_tenant) = (a.log.events.clone(), a.log.tenant);
        let b_event = b.log.events[0].clone();
        async move {
            let as_writer = |tenant: Uuid| {
                let pool = pool.clone();
                let role = role.clone();
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query(&format!("set local role {role}"))
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    sqlx::query("select set_config('app.tenant_id', $1, true)")
                        .bind(tenant.to_string())
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    tx
                }
            };
            for event in &a_events {
                let mut tx = as_writer(a_tenant).await;
                for projection in Projection::ALL {
                    projection.apply(&mut tx, event).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            // Tenant B's event under tenant A's setting: refused by the policy's check.
            let mut tx = as_writer(a_tenant).await;
            let refused = Projection::ReferenceData.apply(&mut tx, &b_event).await;
            assert!(
                matches!(refused, Err(ProjectionError::Database(_))),
                "{refused:?}"
            );
            drop(tx);
            // Tenant B's setting sees none of A's rows; A's sees them all.
            for (tenant, expected) in [(b_event.tenant_id, 0), (a_tenant, 4)] {
                let mut tx = as_writer(tenant).await;
                let count: i64 = sqlx::query_scalar("select count(*) from read.purchase_orders")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                assert_eq!(count, expected);
            }
        }
    })
    .await;
    sqlx::query(&format!("drop owned by {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(&format!("drop role {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    db.drop().await;
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn the_log_helper_numbers_positions_and_sequences_without_gaps() {
    let trade = trade(Uuid::new_v4(), chrono::Utc::now().date_naive()).await;
    for (i, event) in trade.log.events.iter().enumerate() {
        assert_eq!(event.position, i as i64 + 1);
        assert_eq!(event.recorded_at, Log::time_of(event.position));
    }
    let po1 = trade.log.of(trade.pos[0].0);
    assert_eq!(
        po1.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>()
    );
}

/// Applies `batch` (one tenant's events) to every projection in one transaction.
async fn apply_one_batch(pool: &PgPool, batch: &[EventRecord]) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(batch[0].tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    for projection in Projection::ALL {
        projection.apply_batch(&mut tx, batch).await?;
    }
    Ok(tx.commit().await?)
}

/// Applies `events` (one tenant's) in batches of `size`, one transaction each.
async fn apply_in_batches(pool: &PgPool, events: &[EventRecord], size: usize) {
    for batch in events.chunks(size) {
        apply_one_batch(pool, batch).await.unwrap();
    }
}

#[tokio::test]
async fn batches_of_any_size_give_the_rows_of_one_event_at_a_time() {
    // One event per transaction is the reference; batches fold each aggregate in memory and
    // write it once, which must not change a single row (history's before/after values,
    // lines replaced only when they changed, created_at from the first event, …).
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = trade(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    let one_by_one = everything(&db.pool).await;
    db.drop().await;
    for size in [2, 7, a.log.events.len()] {
        let other = Db::fresh().await;
        apply_in_batches(&other.pool, &a.log.events, size).await;
        let batched = everything(&other.pool).await;
        for (relation, rows) in &one_by_one {
            assert_eq!(
                &batched[relation], rows,
                "{relation} differs with batches of {size}"
            );
        }
        // A batch that repeats what was applied (a redelivery overlapping new events) has no
        // second effect.
        let half = a.log.events.len() / 2;
        apply_in_batches(&other.pool, &a.log.events[half..], size).await;
        apply_in_batches(&other.pool, &a.log.events, a.log.events.len()).await;
        assert_eq!(everything(&other.pool).await, one_by_one);
        other.drop().await;
    }
}

#[tokio::test]
async fn a_batch_with_a_gap_in_an_aggregates_sequence_is_refused_whole() {
    let db = Db::fresh().await;
    let a = trade(Uuid::new_v4(), db.today().await).await;
    // Leave out one order event that has successors: the batch must fail, writing nothing.
    let gap = a
        .log
        .events
        .iter()
        .position(|e| e.aggregate_type == "purchase_order" && e.sequence == 2)
        .unwrap();
    let mut holed = a.log.events.clone();
    holed.remove(gap);
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(a.log.tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = Projection::Orders
        .apply_batch(&mut tx, &holed)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProjectionError::Payload { .. }),
        "a gap is refused: {err}"
    );
    drop(tx);
    let orders: i64 = sqlx::query_scalar("select count(*) from read.purchase_orders")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(orders, 0);
    db.drop().await;
}

/// The purchase orders of `tenant` written after `position` whose `column` is not the text
/// `expected` gives of the row (an SQL expression over it), and how many were written then.
async fn written_after(
    pool: &PgPool,
    tenant: Uuid,
    position: i64,
    column: &str,
    expected: &str,
) -> (i64, i64) {
    sqlx::query_as(&format!(
        "select count(*) filter (where {column}::text is distinct from {expected}), count(*) \
           from read.purchase_orders where tenant_id = $1 and last_position > $2"
    ))
    .bind(tenant)
    .bind(position)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_projector_writes_the_columns_a_migration_leaves_while_it_runs() {
    // The projector keeps the order tables' columns from one batch to the next; a migration
    // run meanwhile must be written to as if they were read for every batch.
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = trade(Uuid::new_v4(), today).await;
    let events = &a.log.events;
    let third = events.len() / 3;
    let alter = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query(sql).execute(&pool).await.unwrap() }
    };
    apply_in_batches(&db.pool, &events[..third], 3).await;

    // A column added for a document field that had none.
    alter("alter table read.purchase_orders add column receipts jsonb").await;
    apply_in_batches(&db.pool, &events[third..2 * third], 3).await;
    let (wrong, written) = written_after(
        &db.pool,
        a.log.tenant,
        events[third - 1].position,
        "receipts",
        "(document->'receipts')::text",
    )
    .await;
    assert!(
        written > 0,
        "no purchase order was written after the column came"
    );
    assert_eq!(wrong, 0, "orders written without the new column's value");

    // A column's type changed (the table rewritten): written, and as the new type.
    alter("alter table read.purchase_orders alter column total type numeric(30,4)").await;
    apply_in_batches(&db.pool, &events[2 * third..], 3).await;
    let (wrong, written) = written_after(
        &db.pool,
        a.log.tenant,
        events[2 * third - 1].position,
        "total",
        "(document->>'total')::numeric(30,4)::text",
    )
    .await;
    assert!(
        written > 0,
        "no purchase order was written after the type changed"
    );
    assert_eq!(wrong, 0, "totals written as the old type");
    let scale: i32 = sqlx::query_scalar(
        "select min(scale(total)) from read.purchase_orders \
          where tenant_id = $1 and last_position > $2",
    )
    .bind(a.log.tenant)
    .bind(events[2 * third - 1].position)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(scale, 4);

    // A column dropped: the first write fails (naming the column it had), and the batch
    // delivered again is written without it.
    alter("alter table read.purchase_orders drop column notes").await;
    let b = trade(Uuid::new_v4(), today).await;
    let err = apply_one_batch(&db.pool, &b.log.events).await.unwrap_err();
    assert!(err.to_string().contains("notes"), "{err}");
    apply_one_batch(&db.pool, &b.log.events).await.unwrap();
    let rows: i64 =
        sqlx::query_scalar("select count(*) from read.purchase_orders where tenant_id = $1")
            .bind(b.log.tenant)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(usize::try_from(rows).unwrap(), b.pos.len());
    db.drop().await;
}
