//! Payables' due dates: decided by the domain, stored by the orders projection under every
//! credit terms a supplier may have, picked by `read.payables` for the supplier's current
//! terms, and filled in by the migration for rows projected before it.

mod common;

use std::collections::BTreeMap;

use common::{apply_all, day, de, read_relations, snapshot, trade, Db, Trade, PAT};
use cqrs_es::Aggregate;
use oms_domain::purchase_order::PurchaseOrder;
use oms_domain::reference::{ReferenceCommand, SupplierAggregate};
use oms_domain::values::CreditTerms;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// The migration that moved the due dates into the read model.
const DUE_DATES_MIGRATION: i64 = 5;

/// The due dates the domain gives `order`: under no credit terms and under each.
fn domain_due_dates(order: &PurchaseOrder) -> Value {
    let mut dates = serde_json::Map::new();
    dates.insert("none".into(), json!(order.due_date(None)));
    for terms in CreditTerms::ALL {
        dates.insert(terms.to_string(), json!(order.due_date(Some(*terms))));
    }
    Value::Object(dates)
}

/// `read.purchase_orders.due_dates`, by order.
async fn stored_due_dates(pool: &PgPool) -> BTreeMap<Uuid, Value> {
    let rows: Vec<(Uuid, Option<Value>)> =
        sqlx::query_as("select id, due_dates from read.purchase_orders")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, dates)| (id, dates.unwrap_or(Value::Null)))
        .collect()
}

/// Purchase order id, due date and days past due of every open payable.
async fn payables(pool: &PgPool) -> Value {
    sqlx::query_scalar(
        "select coalesce(jsonb_agg(jsonb_build_array(purchase_order_id, credit_terms, due_date, \
                days_past_due) order by order_number), '[]') \
         from read.payables",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Every read relation's rows but the checkpoints', by name.
async fn everything(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for relation in read_relations(pool).await {
        if relation != "checkpoints" {
            all.insert(relation.clone(), snapshot(pool, &relation).await);
        }
    }
    all
}

/// Changes Acme's credit terms (`null` clears them) and applies the event.
async fn set_acme_credit_terms(pool: &PgPool, trade: &mut Trade, terms: Value) {
    let mut acme = SupplierAggregate::default();
    for event in trade.log.of(trade.acme) {
        acme.apply(de(event.payload.clone()));
    }
    let applied = trade.log.events.len();
    trade
        .log
        .run(
            trade.acme,
            &mut acme,
            ReferenceCommand::Update(de(json!({ "credit_terms": terms }))),
            PAT,
        )
        .await;
    apply_all(pool, &trade.log.events[applied..]).await;
}

#[tokio::test]
async fn each_purchase_order_stores_the_domains_due_date_under_every_credit_terms() {
    let db = Db::fresh().await;
    let trade = trade(Uuid::new_v4(), db.today().await).await;
    apply_all(&db.pool, &trade.log.events).await;

    let stored = stored_due_dates(&db.pool).await;
    assert_eq!(stored.len(), trade.pos.len());
    for (id, state) in &trade.pos {
        assert_eq!(stored[id], domain_due_dates(state), "purchase order {id}");
    }
    // PO1 was last received at T-40 (Acme: net_30); PO2 is delivered at T+5 (wire).
    let t = |days| json!(day(trade.today, days));
    let po1 = &stored[&trade.pos[0].0];
    assert_eq!(
        (&po1["none"], &po1["net_30"], &po1["wire_1_day_prior"]),
        (&t(-40), &t(-10), &t(-41))
    );
    assert_eq!(stored[&trade.pos[1].0]["wire_1_day_prior"], t(4));
    db.drop().await;
}

#[tokio::test]
async fn payables_follow_a_change_of_the_suppliers_credit_terms() {
    let db = Db::fresh().await;
    let mut trade = trade(Uuid::new_v4(), db.today().await).await;
    apply_all(&db.pool, &trade.log.events).await;
    let today = trade.today;
    let t = |days| json!(day(today, days));
    let (po1, po2) = (trade.pos[0].0, trade.pos[1].0);
    let po2_row = json!([po2, "wire_1_day_prior", t(4), 0]);
    assert_eq!(
        payables(&db.pool).await,
        json!([[po1, "net_30", t(-10), 10], po2_row])
    );

    set_acme_credit_terms(&db.pool, &mut trade, json!("net_7")).await;
    assert_eq!(
        payables(&db.pool).await,
        json!([[po1, "net_7", t(-33), 33], po2_row])
    );

    set_acme_credit_terms(&db.pool, &mut trade, Value::Null).await;
    assert_eq!(
        payables(&db.pool).await,
        json!([[po1, null, t(-40), 40], po2_row])
    );
    db.drop().await;
}

#[tokio::test]
async fn the_migration_gives_earlier_rows_the_due_dates_the_projection_writes() {
    // Rows projected before the migration, as the views then saw them.
    let db = Db::fresh_before(DUE_DATES_MIGRATION).await;
    let mut trade = trade(Uuid::new_v4(), db.today().await).await;
    // Lots came later (their read models with migration 8): receipts then named none.
    for event in &mut trade.log.events {
        let lines = event
            .payload
            .get_mut("ReceiptRecorded")
            .and_then(|receipt| receipt.get_mut("lines"))
            .and_then(Value::as_array_mut);
        for line in lines.into_iter().flatten() {
            line.as_object_mut().unwrap().remove("lots");
        }
    }
    apply_all(&db.pool, &trade.log.events).await;
    let payables_before = payables(&db.pool).await;
    let aging_before = snapshot(&db.pool, "aging").await;

    db.migrate_through(DUE_DATES_MIGRATION).await;

    // The views answer as before.
    assert_eq!(payables(&db.pool).await, payables_before);
    assert_eq!(snapshot(&db.pool, "aging").await, aging_before);
    db.migrate().await;
    // Every row holds the domain's due dates, exactly what projecting after the migration
    // gives, and so does every other relation.
    let stored = stored_due_dates(&db.pool).await;
    for (id, state) in &trade.pos {
        assert_eq!(stored[id], domain_due_dates(state), "purchase order {id}");
    }
    let projected = Db::fresh().await;
    apply_all(&projected.pool, &trade.log.events).await;
    assert_eq!(
        everything(&db.pool).await,
        everything(&projected.pool).await
    );
    // No SQL copy of the rule is left.
    let credit_days: Option<String> =
        sqlx::query_scalar("select to_regprocedure('read.credit_days(text)')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(credit_days, None);
    db.drop().await;
    projected.drop().await;
}
