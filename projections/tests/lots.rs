//! The lots read models against real Postgres: `read.lots` has one row per received lot and
//! `read.lot_movements` one per receipt or shipment of a lot, with the orders' numbers,
//! parties, dates, weights and the events' positions; the projector, batches, redeliveries
//! and a rebuild (whatever its memory bound) write the same rows; the list, the forward and
//! the backward traces answer a recall, for the lot's own tenant only.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use common::{apply_all, day, de, snapshot, Db, Log, MARY, PAT};
use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderCommand};
use oms_domain::reference::{
    CustomerAggregate, PlantAggregate, ProductAggregate, ReferenceCommand, SupplierAggregate,
};
use oms_domain::sales_order::{SalesOrder, SalesOrderCommand};
use oms_domain::services::{
    DomainServices, FixedClock, InMemoryLookups, LotSummary, ReferenceType,
};
use oms_projections::apply::Rebuild;
use oms_projections::queries::{self, ListRequest, QueryError, Resource};
use oms_projections::{checkpoints, EventRecord, Projection};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// A tenant whose purchase order received three lots and whose sales orders shipped them.
///
/// Relative to `today` (T): PO-1 (Acme, plant Dakota EST 123) line 1000 LB of beef; receipt
/// T-10 of 600 in lots A-1 (400, produced T-12 at EST 9) and A-2 (200); receipt T-9 of 400 in
/// lot B-1. SO-1 (Bob) ships T-5 A-1 300 and A-2 200 on its one line; SO-2 (Deli) ships T-4
/// A-1 100 and B-1 50 on its first line and B-1 100 on its second; SO-3 (Bob) is confirmed,
/// not shipped. Left: A-1 0, A-2 0, B-1 250.
struct Lots {
    log: Log,
    acme: Uuid,
    bob: Uuid,
    deli: Uuid,
    beef: Uuid,
    plant: Uuid,
    po: Uuid,
    po_line: Uuid,
    receipts: [Uuid; 2],
    /// B-1.
    lots: [Uuid; 3],
    /// SO-1, SO-2, SO-3.
    sos: [Uuid; 3],
    /// SO-1's line, SO-2's two lines, SO-3's line.
    so_lines: [Uuid; 4],
}

async fn scenario(tenant: Uuid, today: NaiveDate) -> Lots {
    let id = Uuid::new_v4;
    let (acme, bob, deli, beef, plant, po, po_line) = (id(), id(), id(), id(), id(), id(), id());
    let receipts = [id(), id()];
    let lots = [id(), id(), id()];
    let sos = [id(), id(), id()];
    let so_lines = [id(), id(), id(), id()];
    let t = |days| day(today, days);
    let weight = |w: &str| de(json!(w));
    let summary = |number: &str, received: &str| LotSummary {
        purchase_order_id: po,
        supplier_id: acme,
        lot_number: de(json!(number)),
        received_weight: weight(received),
        weight_unit: oms_domain::values::WeightUnit::Lb,
    };
    use ReferenceType as R;
    let lookups = InMemoryLookups::new()
        .with_reference(R::Supplier, acme, true)
        .with_reference(R::Customer, bob, true)
        .with_reference(R::Customer, deli, true)
        .with_reference(R::Product, beef, true)
        .with_reference(R::Plant, plant, true)
        .with_purchase_order(po)
        .with_lot(lots[0], summary("A-1", "400"))
        .with_lot(lots[1], summary("A-2", "200"))
        .with_lot(lots[2], summary("B-1", "400"));
    let services = DomainServices::new(Arc::new(lookups), Arc::new(FixedClock(today)));
    let mut log = Log::new(tenant, services);

    let register = ReferenceCommand::Register;
    log.run(
        acme,
        &mut SupplierAggregate::default(),
        register(de(json!({"name": "Acme Packing", "code": "ACME"}))),
        PAT,
    )
    .await;
    for (customer, name) in [(bob, "Bob's Burgers"), (deli, "Corner Deli")] {
        log.run(
            customer,
            &mut CustomerAggregate::default(),
            ReferenceCommand::Register(de(json!({"name": name}))),
            PAT,
        )
        .await;
    }
    log.run(
        beef,
        &mut ProductAggregate::default(),
        ReferenceCommand::Register(de(json!({"code": "BF-8020",
            "description": "Beef trim 80/20", "protein": "beef"}))),
        PAT,
    )
    .await;
    log.run(
        plant,
        &mut PlantAggregate::default(),
        ReferenceCommand::Register(de(json!({"name": "Dakota Plant", "code": "DAK",
            "establishment_number": "EST 123"}))),
        PAT,
    )
    .await;

    let mut order = PurchaseOrder::default();
    let create = PurchaseOrderCommand::Create(de(json!({
        "order_number": "PO-1",
        "header": {"supplier_id": acme, "order_date": t(-20), "plant_id": plant},
        "lines": [{"line_id": po_line, "product_id": beef, "weight": "1000", "price_per_unit": "2"}],
    })));
    log.run(po, &mut order, create, MARY).await;
    log.run(po, &mut order, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(po, &mut order, PurchaseOrderCommand::Approve, PAT)
        .await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: receipts[0],
        received_on: t(-10),
        complete: false,
        lines: de(json!([{"line_id": po_line, "weight": "600", "lots": [
            {"lot_id": lots[0], "lot_number": "A-1", "weight": "400",
             "production_date": t(-12), "establishment_number": "EST 9"},
            {"lot_id": lots[1], "lot_number": "A-2", "weight": "200"},
        ]}])),
    };
    log.run(po, &mut order, receipt, MARY).await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: receipts[1],
        received_on: t(-9),
        complete: true,
        lines: de(json!([{"line_id": po_line, "weight": "400", "lots": [
            {"lot_id": lots[2], "lot_number": "B-1", "weight": "400"},
        ]}])),
    };
    log.run(po, &mut order, receipt, MARY).await;

    let sales = [
        (
            sos[0],
            "SO-1",
            bob,
            vec![(so_lines[0], "500")],
            Some((
                t(-5),
                json!([{"line_id": so_lines[0], "weight": "500", "lots": [
                    {"lot_id": lots[0], "weight": "300"}, {"lot_id": lots[1], "weight": "200"}]}]),
            )),
        ),
        (
            sos[1],
            "SO-2",
            deli,
            vec![(so_lines[1], "150"), (so_lines[2], "100")],
            Some((
                t(-4),
                json!([
                    {"line_id": so_lines[1], "weight": "150", "lots": [
                        {"lot_id": lots[2], "weight": "50"}, {"lot_id": lots[0], "weight": "100"}]},
                    {"line_id": so_lines[2], "weight": "100", "lots": [
                        {"lot_id": lots[2], "weight": "100"}]},
                ]),
            )),
        ),
        (sos[2], "SO-3", bob, vec![(so_lines[3], "50")], None),
    ];
    for (so, number, customer, lines, shipment) in sales {
        let mut order = SalesOrder::default();
        let lines: Vec<Value> = lines
            .iter()
            .map(|(line, w)| {
                json!({"line_id": line, "product_id": beef, "weight": w, "price_per_unit": "3",
                       "source_purchase_order_id": po})
            })
            .collect();
        let create = SalesOrderCommand::Create(de(json!({
            "order_number": number,
            "header": {"customer_id": customer, "order_date": t(-8)},
            "lines": lines,
        })));
        log.run(so, &mut order, create, MARY).await;
        log.run(so, &mut order, SalesOrderCommand::Confirm, MARY)
            .await;
        if let Some((shipped_on, lines)) = shipment {
            let ship = SalesOrderCommand::Ship {
                shipped_on,
                carrier_id: None,
                carrier_release_number: None,
                lines: de(lines),
            };
            log.run(so, &mut order, ship, MARY).await;
        }
    }
    Lots {
        log,
        acme,
        bob,
        deli,
        beef,
        plant,
        po,
        po_line,
        receipts,
        lots,
        sos,
        so_lines,
    }
}

/// The position of the event of `aggregate` of type `event_type`.
fn position_of(log: &Log, aggregate: Uuid, event_type: &str, nth: usize) -> i64 {
    log.events
        .iter()
        .filter(|e| e.aggregate_id == aggregate && e.event_type == event_type)
        .nth(nth)
        .unwrap_or_else(|| panic!("{event_type} #{nth} of {aggregate}"))
        .position
}

/// The rows of `sql` (over the tenant bound as $1) as JSON objects.
async fn rows(pool: &PgPool, sql: &str, tenant: Uuid) -> Vec<Value> {
    sqlx::query_scalar(&format!("select to_jsonb(t) from ({sql}) t"))
        .bind(tenant)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_received_lot_has_a_row_and_each_receipt_or_shipment_a_movement() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let s = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &s.log.events).await;
    let tenant = s.log.tenant;
    let t = |days| day(today, days).to_string();
    let first = position_of(&s.log, s.po, "PurchaseOrderReceiptRecorded", 0);
    let second = position_of(&s.log, s.po, "PurchaseOrderReceiptRecorded", 1);

    let lots = rows(
        &db.pool,
        "select lot_id, lot_number, supplier_id, product_id, purchase_order_id, order_number, \
         line_id, receipt_id, plant_id, establishment_number, production_date, received_on, \
         received_weight::text, weight_unit, position from read.lots where tenant_id = $1 \
         order by lot_number",
        tenant,
    )
    .await;
    let lot = |i: usize, number: &str, receipt: usize, est: Value, produced: Value, on, w, p| {
        json!({"lot_id": s.lots[i], "lot_number": number, "supplier_id": s.acme,
               "product_id": s.beef, "purchase_order_id": s.po, "order_number": "PO-1",
               "line_id": s.po_line, "receipt_id": s.receipts[receipt], "plant_id": s.plant,
               "establishment_number": est, "production_date": produced, "received_on": on,
               "received_weight": w, "weight_unit": "LB", "position": p})
    };
    assert_eq!(
        lots,
        vec![
            lot(
                0,
                "A-1",
                0,
                json!("EST 9"),
                json!(t(-12)),
                t(-10),
                "400",
                first
            ),
            lot(1, "A-2", 0, json!(null), json!(null), t(-10), "200", first),
            lot(2, "B-1", 1, json!(null), json!(null), t(-9), "400", second),
        ]
    );
    // The stored document is the API's answer: the same fields.
    let document: Value = sqlx::query_scalar(
        "select document from read.lots where tenant_id = $1 and lot_number = 'A-1'",
    )
    .bind(tenant)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(document["lot_id"], json!(s.lots[0]));
    assert_eq!(document["received_weight"], json!("400"));
    assert_eq!(document["establishment_number"], json!("EST 9"));

    let movements = rows(
        &db.pool,
        "select lot_number, kind, order_type, order_id, order_number, line_id, supplier_id, \
         customer_id, moved_on, weight::text, weight_unit, position from read.lot_movements \
         where tenant_id = $1 order by position, lot_number, line_id",
        tenant,
    )
    .await;
    let shipped1 = position_of(&s.log, s.sos[0], "SalesOrderShipped", 0);
    let shipped2 = position_of(&s.log, s.sos[1], "SalesOrderShipped", 0);
    let received = |number: &str, on: String, w: &str, p| {
        json!({"lot_number": number, "kind": "received", "order_type": "purchase_order",
               "order_id": s.po, "order_number": "PO-1", "line_id": s.po_line,
               "supplier_id": s.acme, "customer_id": null, "moved_on": on, "weight": w,
               "weight_unit": "LB", "position": p})
    };
    let shipped = |number: &str, so: usize, line: usize, customer, on: String, w: &str, p| {
        json!({"lot_number": number, "kind": "shipped", "order_type": "sales_order",
               "order_id": s.sos[so], "order_number": format!("SO-{}", so + 1),
               "line_id": s.so_lines[line], "supplier_id": s.acme, "customer_id": customer,
               "moved_on": on, "weight": w, "weight_unit": "LB", "position": p})
    };
    let mut expected_so2 = vec![
        shipped("A-1", 1, 1, s.deli, t(-4), "100", shipped2),
        shipped("B-1", 1, 1, s.deli, t(-4), "50", shipped2),
        shipped("B-1", 1, 2, s.deli, t(-4), "100", shipped2),
    ];
    expected_so2.sort_by_key(|m| {
        (
            m["lot_number"].as_str().unwrap().to_owned(),
            m["line_id"].as_str().unwrap().to_owned(),
        )
    });
    let mut expected = vec![
        received("A-1", t(-10), "400", first),
        received("A-2", t(-10), "200", first),
        received("B-1", t(-9), "400", second),
        shipped("A-1", 0, 0, s.bob, t(-5), "300", shipped1),
        shipped("A-2", 0, 0, s.bob, t(-5), "200", shipped1),
    ];
    expected.extend(expected_so2);
    assert_eq!(movements, expected);
    db.drop().await;
}

/// Every row of the lots tables, by table.
async fn lot_tables(pool: &PgPool) -> BTreeMap<&'static str, Vec<String>> {
    let mut all = BTreeMap::new();
    for table in ["lots", "lot_movements"] {
        all.insert(table, snapshot(pool, table).await);
    }
    all
}

/// Rebuilds `projections` of `tenant` in `pool` from `events`, `page` events at a time, as
/// `oms replay` does.
async fn rebuild(
    pool: &PgPool,
    tenant: Uuid,
    projections: &[Projection],
    events: &[EventRecord],
    page: usize,
    capacity: usize,
) {
    let mut tx = pool.begin().await.unwrap();
    for projection in projections {
        checkpoints::lock(&mut tx, *projection, tenant)
            .await
            .unwrap();
        checkpoints::clear(&mut tx, *projection, tenant)
            .await
            .unwrap();
    }
    let mut rebuild = Rebuild::with_capacity(tenant, projections, capacity);
    for chunk in events.chunks(page) {
        rebuild.apply(&mut tx, chunk).await.unwrap();
    }
    rebuild.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn redeliveries_batches_and_rebuilds_write_the_same_lot_rows() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = scenario(Uuid::new_v4(), today).await;
    let b = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    let first = lot_tables(&db.pool).await;
    assert_eq!(first["lots"].len(), 6);
    assert_eq!(first["lot_movements"].len(), 16);

    // A redelivery of everything has no second effect.
    apply_all(&db.pool, &a.log.events).await;
    assert_eq!(lot_tables(&db.pool).await, first);

    // Batches of any size (a shipment in the batch of the receipt it ships from) write the
    // same rows.
    for size in [2, 7, 1000] {
        let other = Db::fresh().await;
        for log in [&a.log, &b.log] {
            for chunk in log.events.chunks(size) {
                let mut tx = other.pool.begin().await.unwrap();
                sqlx::query("select set_config('app.tenant_id', $1, true)")
                    .bind(log.tenant.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                Projection::Orders
                    .apply_batch(&mut tx, chunk)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }
        assert_eq!(lot_tables(&other.pool).await, first, "batches of {size}");
        other.drop().await;
    }

    // A rebuild of one tenant over the projector's rows gives them again (and leaves the
    // other tenant's alone), whatever the page and however few orders it holds in memory;
    // with the history projection or without.
    for (page, capacity, projections) in [
        (3, 1, vec![Projection::Orders]),
        (1000, 512, vec![Projection::Orders]),
        (5, 2, vec![Projection::Orders, Projection::OrderHistory]),
    ] {
        rebuild(
            &db.pool,
            a.log.tenant,
            &projections,
            &a.log.events,
            page,
            capacity,
        )
        .await;
        assert_eq!(
            lot_tables(&db.pool).await,
            first,
            "a rebuild by pages of {page}, {capacity} orders held"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn the_forward_trace_gives_the_receipt_every_shipment_and_what_is_left() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let s = scenario(Uuid::new_v4(), today).await;
    let other = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &s.log.events).await;
    apply_all(&db.pool, &other.log.events).await;
    let tenant = s.log.tenant;
    let t = |days| day(today, days).to_string();
    let mut conn = db.pool.acquire().await.unwrap();

    let trace = queries::lot_trace(&mut conn, tenant, s.lots[2], None)
        .await
        .unwrap()
        .expect("B-1 is traced");
    assert_eq!(trace["lot"]["lot_number"], json!("B-1"));
    assert_eq!(trace["lot"]["shipped_weight"], json!("150"));
    assert_eq!(trace["lot"]["remaining_weight"], json!("250"));
    assert_eq!(
        trace["receipt"],
        json!({"purchase_order_id": s.po, "order_number": "PO-1", "supplier_id": s.acme,
               "supplier_name": "Acme Packing", "plant_id": s.plant, "plant_name": "Dakota Plant",
               "establishment_number": "EST 123", "received_on": t(-9), "weight": "400"})
    );
    let position = position_of(&s.log, s.sos[1], "SalesOrderShipped", 0);
    let mut expected = vec![
        json!({"sales_order_id": s.sos[1], "order_number": "SO-2", "line_id": s.so_lines[1],
               "customer_id": s.deli, "customer_name": "Corner Deli", "shipped_on": t(-4),
               "weight": "50", "position": position}),
        json!({"sales_order_id": s.sos[1], "order_number": "SO-2", "line_id": s.so_lines[2],
               "customer_id": s.deli, "customer_name": "Corner Deli", "shipped_on": t(-4),
               "weight": "100", "position": position}),
    ];
    expected.sort_by_key(|m| m["line_id"].as_str().unwrap().to_owned());
    assert_eq!(trace["shipments"], json!(expected));
    assert_eq!(trace["shipped_weight"], json!("150"));
    assert_eq!(trace["remaining_weight"], json!("250"));

    // shipped to two customers, nothing left; its own establishment number wins over
    // the plant's.
    let trace = queries::lot_trace(&mut conn, tenant, s.lots[0], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace["receipt"]["establishment_number"], json!("EST 9"));
    let customers: Vec<(&str, &str)> = trace["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["order_number"].as_str().unwrap(),
                m["weight"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(customers, [("SO-1", "300"), ("SO-2", "100")]);
    assert_eq!(trace["remaining_weight"], json!("0"));
    assert_eq!(trace["lot"]["remaining_weight"], json!("0"));

    // As it stood at earlier times: the shipments recorded by then, and no lot before its
    // receipt.
    let at = |position: i64| Some(Log::time_of(position));
    let received = position_of(&s.log, s.po, "PurchaseOrderReceiptRecorded", 0);
    let shipped = position_of(&s.log, s.sos[0], "SalesOrderShipped", 0);
    for (as_of, shipments, left) in [
        (at(shipped), 1, "100"),
        (at(shipped - 1), 0, "400"),
        (at(received), 0, "400"),
    ] {
        let trace = queries::lot_trace(&mut conn, tenant, s.lots[0], as_of)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(trace["shipments"].as_array().unwrap().len(), shipments);
        assert_eq!(trace["remaining_weight"], json!(left), "{as_of:?}");
        assert_eq!(trace["lot"]["remaining_weight"], json!(left));
    }
    assert_eq!(
        queries::lot_trace(&mut conn, tenant, s.lots[0], at(received - 1))
            .await
            .unwrap(),
        None
    );

    // Unknown lots, and another tenant's, are not found.
    for (tenant, lot) in [
        (tenant, Uuid::new_v4()),
        (tenant, other.lots[0]),
        (other.log.tenant, s.lots[0]),
    ] {
        assert_eq!(
            queries::lot_trace(&mut conn, tenant, lot, None)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            queries::get(&mut conn, tenant, Resource::Lots, lot)
                .await
                .unwrap(),
            None
        );
    }
    let lot = queries::get(&mut conn, tenant, Resource::Lots, s.lots[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lot["lot_number"], json!("A-2"));
    assert_eq!(lot["shipped_weight"], json!("200"));
    assert_eq!(lot["remaining_weight"], json!("0"));
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn the_backward_trace_gives_each_lines_lots_with_their_origin() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let s = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &s.log.events).await;
    let tenant = s.log.tenant;
    let t = |days| day(today, days).to_string();
    let mut conn = db.pool.acquire().await.unwrap();

    let trace = queries::sales_order_trace(&mut conn, tenant, s.sos[1])
        .await
        .unwrap()
        .expect("SO-2 is traced");
    assert_eq!(trace["order_number"], json!("SO-2"));
    assert_eq!(trace["customer_id"], json!(s.deli));
    assert_eq!(trace["customer_name"], json!("Corner Deli"));
    assert_eq!(trace["shipped_on"], json!(t(-4)));
    let origin = |i: usize, number: &str, w: &str, est: &str, produced: Value, on: String| {
        json!({"lot_id": s.lots[i], "lot_number": number, "weight": w,
               "purchase_order_id": s.po, "purchase_order_number": "PO-1",
               "supplier_id": s.acme, "supplier_name": "Acme Packing", "plant_id": s.plant,
               "plant_name": "Dakota Plant", "establishment_number": est,
               "production_date": produced, "received_on": on})
    };
    assert_eq!(
        trace["lines"],
        json!([
            {"line_id": s.so_lines[1], "line_no": 1, "product_id": s.beef, "shipped_weight": "150",
             "lots": [origin(0, "A-1", "100", "EST 9", json!(t(-12)), t(-10)),
                      origin(2, "B-1", "50", "EST 123", json!(null), t(-9))]},
            {"line_id": s.so_lines[2], "line_no": 2, "product_id": s.beef, "shipped_weight": "100",
             "lots": [origin(2, "B-1", "100", "EST 123", json!(null), t(-9))]},
        ])
    );

    // Not shipped: its lines, without lots.
    let trace = queries::sales_order_trace(&mut conn, tenant, s.sos[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trace["shipped_on"], json!(null));
    assert_eq!(
        trace["lines"],
        json!([{"line_id": s.so_lines[3], "line_no": 1, "product_id": s.beef,
                "shipped_weight": null, "lots": []}])
    );

    // Unknown, another tenant's, or a purchase order's id: not found.
    for (tenant, id) in [
        (tenant, Uuid::new_v4()),
        (Uuid::new_v4(), s.sos[1]),
        (tenant, s.po),
    ] {
        assert_eq!(
            queries::sales_order_trace(&mut conn, tenant, id)
                .await
                .unwrap(),
            None
        );
    }
    drop(conn);
    db.drop().await;
}

/// The list request with `filters` (and `limit`, `sort`, `cursor`).
fn request(filters: &[(&str, &str)], limit: u32, sort: Option<&str>) -> ListRequest {
    ListRequest {
        limit,
        cursor: None,
        sort: sort.map(str::to_owned),
        filters: filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// The lot numbers of the list `request` answers, every page followed.
async fn numbers(
    conn: &mut sqlx::PgConnection,
    tenant: Uuid,
    mut request: ListRequest,
) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = queries::list(conn, tenant, Resource::Lots, &request)
            .await
            .unwrap();
        out.extend(
            page.items
                .iter()
                .map(|lot| lot["lot_number"].as_str().unwrap().to_owned()),
        );
        match page.next_cursor {
            Some(cursor) => request.cursor = Some(cursor),
            None => return out,
        }
    }
}

#[tokio::test]
async fn lots_are_listed_by_lot_number_prefix_supplier_and_purchase_order_page_by_page() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let s = scenario(Uuid::new_v4(), today).await;
    let other = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &s.log.events).await;
    apply_all(&db.pool, &other.log.events).await;
    let tenant = s.log.tenant;
    let mut conn = db.pool.acquire().await.unwrap();
    let (acme, po) = (s.acme.to_string(), s.po.to_string());

    // Newest receipt first by default; one per page gives the same, in order.
    let all = numbers(&mut conn, tenant, request(&[], 50, None)).await;
    assert_eq!(all[0], "B-1");
    assert_eq!(all.len(), 3);
    assert_eq!(numbers(&mut conn, tenant, request(&[], 1, None)).await, all);
    assert_eq!(
        numbers(&mut conn, tenant, request(&[], 2, Some("lot_number"))).await,
        ["A-1", "A-2", "B-1"]
    );
    assert_eq!(
        numbers(&mut conn, tenant, request(&[], 1, Some("-received_on"))).await[0],
        "B-1"
    );
    assert_eq!(
        numbers(
            &mut conn,
            tenant,
            request(&[("q", "A-")], 1, Some("lot_number"))
        )
        .await,
        ["A-1", "A-2"]
    );
    // A prefix, not a pattern.
    for q in ["%", "_-1", "-1"] {
        assert!(numbers(&mut conn, tenant, request(&[("q", q)], 50, None))
            .await
            .is_empty());
    }
    assert_eq!(
        numbers(
            &mut conn,
            tenant,
            request(&[("supplier_id", &acme)], 50, None)
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        numbers(
            &mut conn,
            tenant,
            request(&[("purchase_order_id", &po), ("q", "B")], 50, None)
        )
        .await,
        ["B-1"]
    );
    // Another tenant's supplier or order: nothing.
    let theirs = other.po.to_string();
    assert!(numbers(
        &mut conn,
        tenant,
        request(&[("purchase_order_id", &theirs)], 50, None)
    )
    .await
    .is_empty());
    // Each item carries what is left of it.
    let page = queries::list(
        &mut conn,
        tenant,
        Resource::Lots,
        &request(&[("q", "B-1")], 50, None),
    )
    .await
    .unwrap();
    assert_eq!(page.items[0]["remaining_weight"], json!("250"));

    // Bad filters and sorts are the client's error.
    for (filters, sort, name) in [
        (
            vec![("purchase_order_id", "nope")],
            None,
            "purchase_order_id",
        ),
        (vec![("supplier_id", "1")], None, "supplier_id"),
        (vec![("status", "open")], None, "status"),
        (vec![("q", "a\u{0}")], None, "q"),
        (vec![], Some("total"), "sort"),
    ] {
        let err = queries::list(
            &mut conn,
            tenant,
            Resource::Lots,
            &request(&filters, 50, sort),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, QueryError::BadParameter { name: n, .. } if n == name),
            "{filters:?} {sort:?}: {err}"
        );
    }
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn traces_and_lists_answer_the_same_as_a_non_superuser_under_row_level_security() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = scenario(Uuid::new_v4(), today).await;
    let b = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    let role = format!("rls_reader_{}", &Uuid::new_v4().simple().to_string()[..12]);
    for statement in [
        format!("create role {role} nologin"),
        format!("grant usage on schema read to {role}"),
        format!("grant select on all tables in schema read to {role}"),
    ] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }
    let tenant = a.log.tenant;
    let mut conn = db.pool.acquire().await.unwrap();
    let list = request(&[], 50, Some("lot_number"));
    let as_owner = (
        queries::lot_trace(&mut conn, tenant, a.lots[2], None)
            .await
            .unwrap(),
        queries::sales_order_trace(&mut conn, tenant, a.sos[1])
            .await
            .unwrap(),
        queries::list(&mut conn, tenant, Resource::Lots, &list)
            .await
            .unwrap()
            .items,
    );
    assert!(as_owner.0.is_some() && as_owner.1.is_some() && as_owner.2.len() == 3);

    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(&format!("set local role {role}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let count =
        "select (select count(*) from read.lots), (select count(*) from read.lot_movements)";
    let visible: (i64, i64) = sqlx::query_as(count).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(visible, (0, 0), "no tenant set: nothing");
    let as_reader = (
        queries::lot_trace(&mut tx, tenant, a.lots[2], None)
            .await
            .unwrap(),
        queries::sales_order_trace(&mut tx, tenant, a.sos[1])
            .await
            .unwrap(),
        queries::list(&mut tx, tenant, Resource::Lots, &list)
            .await
            .unwrap()
            .items,
    );
    assert_eq!(as_reader, as_owner);
    // Another tenant's lot and order are not seen.
    assert_eq!(
        queries::lot_trace(&mut tx, tenant, b.lots[2], None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        queries::sales_order_trace(&mut tx, tenant, b.sos[1])
            .await
            .unwrap(),
        None
    );
    // The queries scoped the transaction to tenant A: the policy alone (no filter of ours)
    // shows A's rows and none of B's.
    let visible: (i64, i64) = sqlx::query_as(count).fetch_one(&mut *tx).await.unwrap();
    assert_eq!(visible, (3, 8));
    drop(tx);
    drop(conn);
    sqlx::query(&format!("drop owned by {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query(&format!("drop role {role}"))
        .execute(&db.pool)
        .await
        .unwrap();
    db.drop().await;
}
