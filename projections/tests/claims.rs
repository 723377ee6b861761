//! Claims, credit notes and refunds in the read models, against real Postgres: the claims'
//! rows, the orders' credits and refunds, and the analysts' views over them (claims by reason,
//! supplier and customer; payables, receivables and aging; back-to-back margin net of claims),
//! read through an analyst's login so that row-level security is exercised, with every figure
//! worked out by hand below. A rebuild writes the same rows as the projector.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use common::{apply_all, day, de, options, read_relations, snapshot, Db, Log, MARY, PAT};
use oms_domain::order::ClaimStatus;
use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderCommand};
use oms_domain::reference::{
    CustomerAggregate, ProductAggregate, ReferenceCommand, SupplierAggregate,
};
use oms_domain::sales_order::{SalesOrder, SalesOrderCommand};
use oms_domain::services::{
    DomainServices, FixedClock, InMemoryLookups, ReferenceType, SalesClaimSummary,
};
use oms_projections::analysts;
use oms_projections::apply::Rebuild;
use oms_projections::{checkpoints, EventRecord, Projection};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// One tenant's claims scenario. Relative to today (T), in USD:
///
/// - PO1 (Acme, net_30, LB, T-20): beef line 1000 @ 2.00 = 2000.00, pork line 500 @ 1.00 =
///   500.00; approved, prepaid 2500.00, received in full (T-15). Claims: PC1 short weight,
///   beef 100.00, passing on SC1, accepted at 80.00 (credit memo ACME-CM-7); PC2 quality, pork
///   50.00, rejected. Credits 80.00, so outstanding 2500 − 80 − 2500 = −80.00 until the
///   supplier refunds 30.00 (T-5): outstanding −50.00, overpaid.
/// - PO3 (Wire Beef, no credit terms, KG, T-16): beef 100 KG @ 4.00 = 400.00, received in full
///   (T-15). Claims: PC3 damage 40.00 accepted in full (no memo number); PC4 temperature
///   10.00, open. Outstanding 400 − 40 = 360.00, unpaid.
/// - SO1 (Bob's, LB, T-18): beef 1000 @ 2.50 from PO1 = 2500.00, pork 500 @ 1.20 from PO1 =
///   600.00; shipped in full (T-14), delivered and invoiced (T-13, due T-3), paid 1000.00.
///   Claims: SC1 short weight, beef 150.00 (60 LB), accepted at 120.00 (CN-000001); SC2
///   temperature, beef 40.00 + pork 60.00, accepted at 50.00 (CN-000002); SC3 damage, pork
///   25.00, open. Credits 170.00, outstanding 3100 − 170 − 1000 = 1930.00.
/// - SO2 (Cy's Diner, LB, T-12): beef 200 @ 3.00 = 600.00, no source; shipped, delivered,
///   invoiced (due T+20), paid 600.00. Claim SC4 pricing 100.00 accepted (CN-000003):
///   outstanding −100.00; 60.00 refunded: outstanding −40.00, overpaid.
/// - SO3 (Bob's, LB, T-2): beef 100 LB @ 2.50 from PO3 (a KG order), confirmed.
struct Scenario {
    log: Log,
    acme: Uuid,
    wire: Uuid,
    bob: Uuid,
    cy: Uuid,
    /// PC1, PC2, PC3, PC4.
    pcs: [Uuid; 4],
    /// SC1, SC2, SC3, SC4.
    scs: [Uuid; 4],
    /// SO1's beef and pork lines, SO3's line.
    so_lines: [Uuid; 3],
}

async fn scenario(tenant: Uuid, today: NaiveDate) -> Scenario {
    let id = Uuid::new_v4;
    let (acme, wire, bob, cy, beef, pork) = (id(), id(), id(), id(), id(), id());
    let (po1, po3, so1, so2, so3) = (id(), id(), id(), id(), id());
    let pcs = [id(), id(), id(), id()];
    let scs = [id(), id(), id(), id()];
    let (po1_beef, po1_pork, po3_beef) = (id(), id(), id());
    let so_lines = [id(), id(), id()];
    let t = |days| day(today, days);

    use ReferenceType as R;
    let mut lookups = InMemoryLookups::new();
    for (kind, id) in [
        (R::Supplier, acme),
        (R::Supplier, wire),
        (R::Customer, bob),
        (R::Customer, cy),
        (R::Product, beef),
        (R::Product, pork),
    ] {
        lookups = lookups.with_reference(kind, id, true);
    }
    lookups = lookups
        .with_purchase_order(po1)
        .with_purchase_order(po3)
        .with_sales_claim(
            scs[0],
            SalesClaimSummary {
                sales_order_id: so1,
                status: ClaimStatus::Accepted,
                source_purchase_order_ids: vec![po1],
            },
        );
    let services = DomainServices::new(Arc::new(lookups), Arc::new(FixedClock(today)));
    let mut log = Log::new(tenant, services);

    // Reference data.
    for (supplier, details) in [
        (
            acme,
            json!({"name": "Acme Packing", "credit_terms": "net_30"}),
        ),
        (wire, json!({"name": "Wire Beef Co"})),
    ] {
        let mut aggregate = SupplierAggregate::default();
        let command = ReferenceCommand::Register(de(details));
        log.run(supplier, &mut aggregate, command, PAT).await;
    }
    for (customer, name) in [(bob, "Bob's Burgers"), (cy, "Cy's Diner")] {
        let mut aggregate = CustomerAggregate::default();
        let command = ReferenceCommand::Register(de(json!({"name": name})));
        log.run(customer, &mut aggregate, command, PAT).await;
    }
    for (product, code, protein) in [(beef, "BF-1", "beef"), (pork, "PK-1", "pork")] {
        let mut aggregate = ProductAggregate::default();
        let details = json!({"code": code, "description": code, "protein": protein});
        let command = ReferenceCommand::Register(de(details));
        log.run(product, &mut aggregate, command, PAT).await;
    }

    // PO1: prepaid, received, one claim accepted and one rejected, a refund.
    let mut po = PurchaseOrder::default();
    let new = json!({
        "order_number": "PO-000001",
        "header": {"supplier_id": acme, "order_date": t(-20)},
        "lines": [
            {"line_id": po1_beef, "product_id": beef, "weight": "1000", "price_per_unit": "2.00"},
            {"line_id": po1_pork, "product_id": pork, "weight": "500", "price_per_unit": "1.00"},
        ],
    });
    log.run(po1, &mut po, PurchaseOrderCommand::Create(de(new)), MARY)
        .await;
    log.run(po1, &mut po, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(po1, &mut po, PurchaseOrderCommand::Approve, PAT)
        .await;
    let payment =
        json!({"payment_id": id(), "amount": "2500", "paid_on": t(-19), "method": "wire"});
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::RecordPayment(de(payment)),
        PAT,
    )
    .await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: id(),
        received_on: t(-15),
        complete: true,
        lines: de(json!([{"line_id": po1_beef, "weight": "1000"},
                         {"line_id": po1_pork, "weight": "500"}])),
    };
    log.run(po1, &mut po, receipt, MARY).await;

    // PO3: in KG, received.
    let mut po3_state = PurchaseOrder::default();
    let new = json!({
        "order_number": "PO-000003",
        "header": {"supplier_id": wire, "order_date": t(-16), "weight_unit": "KG"},
        "lines": [{"line_id": po3_beef, "product_id": beef, "weight": "100", "price_per_unit": "4.00"}],
    });
    log.run(
        po3,
        &mut po3_state,
        PurchaseOrderCommand::Create(de(new)),
        MARY,
    )
    .await;
    log.run(po3, &mut po3_state, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(po3, &mut po3_state, PurchaseOrderCommand::Approve, PAT)
        .await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: id(),
        received_on: t(-15),
        complete: true,
        lines: de(json!([{"line_id": po3_beef, "weight": "100"}])),
    };
    log.run(po3, &mut po3_state, receipt, MARY).await;

    // SO1: back to back from PO1, shipped, invoiced, partly paid; three claims.
    let [s1_beef, s1_pork, s3_beef] = so_lines;
    let mut so = SalesOrder::default();
    let new = json!({
        "order_number": "SO-000001",
        "header": {"customer_id": bob, "order_date": t(-18)},
        "lines": [
            {"line_id": s1_beef, "product_id": beef, "weight": "1000", "price_per_unit": "2.50",
             "source_purchase_order_id": po1},
            {"line_id": s1_pork, "product_id": pork, "weight": "500", "price_per_unit": "1.20",
             "source_purchase_order_id": po1},
        ],
    });
    deliver_and_invoice(
        &mut log,
        so1,
        &mut so,
        new,
        [s1_beef, s1_pork],
        t(-14),
        t(-13),
        "INV-000001",
        t(-3),
    )
    .await;
    let payment = json!({"payment_id": id(), "amount": "1000", "paid_on": t(-10), "method": "ach"});
    log.run(
        so1,
        &mut so,
        SalesOrderCommand::RecordPayment(de(payment)),
        PAT,
    )
    .await;
    let claim = json!({"claim_id": scs[0], "reason": "short_weight",
        "lines": [{"line_id": s1_beef, "amount": "150.00", "weight": "60"}]});
    log.run(so1, &mut so, SalesOrderCommand::RaiseClaim(de(claim)), MARY)
        .await;
    let claim = json!({"claim_id": scs[1], "reason": "temperature", "notes": "Arrived at 45F",
        "lines": [{"line_id": s1_beef, "amount": "40"}, {"line_id": s1_pork, "amount": "60"}]});
    log.run(so1, &mut so, SalesOrderCommand::RaiseClaim(de(claim)), MARY)
        .await;
    let claim = json!({"claim_id": scs[2], "reason": "damage",
        "lines": [{"line_id": s1_pork, "amount": "25"}]});
    log.run(so1, &mut so, SalesOrderCommand::RaiseClaim(de(claim)), MARY)
        .await;
    for (claim_id, accepted, note) in [(scs[0], "120", "CN-000001"), (scs[1], "50", "CN-000002")] {
        let accept = SalesOrderCommand::AcceptClaim {
            claim_id,
            accepted_amount: Some(de(json!(accepted))),
            credit_note_number: de(json!(note)),
        };
        log.run(so1, &mut so, accept, PAT).await;
    }

    // PO1's claims: PC1 passes SC1 on, PC2 is rejected; then the supplier refunds.
    let raise = PurchaseOrderCommand::RaiseClaim {
        order_id: po1,
        claim: de(json!({"claim_id": pcs[0], "reason": "short_weight",
            "lines": [{"line_id": po1_beef, "amount": "100", "weight": "40"}]})),
        source_sales_claim_id: Some(scs[0]),
    };
    log.run(po1, &mut po, raise, MARY).await;
    let raise = PurchaseOrderCommand::RaiseClaim {
        order_id: po1,
        claim: de(json!({"claim_id": pcs[1], "reason": "quality",
            "lines": [{"line_id": po1_pork, "amount": "50"}]})),
        source_sales_claim_id: None,
    };
    log.run(po1, &mut po, raise, MARY).await;
    let accept = PurchaseOrderCommand::AcceptClaim {
        claim_id: pcs[0],
        accepted_amount: Some(de(json!("80"))),
        credit_note_number: Some(de(json!("ACME-CM-7"))),
    };
    log.run(po1, &mut po, accept, PAT).await;
    let reject = PurchaseOrderCommand::RejectClaim {
        claim_id: pcs[1],
        reason: de(json!("Within spec")),
    };
    log.run(po1, &mut po, reject, PAT).await;
    let refund = json!({"refund_id": id(), "amount": "30", "refunded_on": t(-5), "method": "wire"});
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::RecordRefund(de(refund)),
        PAT,
    )
    .await;

    // PO3's claims: PC3 accepted in full, PC4 open.
    for (claim_id, reason, amount) in [(pcs[2], "damage", "40"), (pcs[3], "temperature", "10")] {
        let raise = PurchaseOrderCommand::RaiseClaim {
            order_id: po3,
            claim: de(json!({"claim_id": claim_id, "reason": reason,
                "lines": [{"line_id": po3_beef, "amount": amount}]})),
            source_sales_claim_id: None,
        };
        log.run(po3, &mut po3_state, raise, MARY).await;
    }
    let accept = PurchaseOrderCommand::AcceptClaim {
        claim_id: pcs[2],
        accepted_amount: None,
        credit_note_number: None,
    };
    log.run(po3, &mut po3_state, accept, PAT).await;

    // SO2: paid in full, credited, partly refunded.
    let mut so = SalesOrder::default();
    let s2 = id();
    let new = json!({
        "order_number": "SO-000002",
        "header": {"customer_id": cy, "order_date": t(-12)},
        "lines": [{"line_id": s2, "product_id": beef, "weight": "200", "price_per_unit": "3.00"}],
    });
    deliver_and_invoice(
        &mut log,
        so2,
        &mut so,
        new,
        [s2],
        t(-11),
        t(-10),
        "INV-000002",
        t(20),
    )
    .await;
    let payment = json!({"payment_id": id(), "amount": "600", "paid_on": t(-9), "method": "ach"});
    log.run(
        so2,
        &mut so,
        SalesOrderCommand::RecordPayment(de(payment)),
        PAT,
    )
    .await;
    let claim = json!({"claim_id": scs[3], "reason": "pricing",
        "lines": [{"line_id": s2, "amount": "100"}]});
    log.run(so2, &mut so, SalesOrderCommand::RaiseClaim(de(claim)), MARY)
        .await;
    let accept = SalesOrderCommand::AcceptClaim {
        claim_id: scs[3],
        accepted_amount: None,
        credit_note_number: de(json!("CN-000003")),
    };
    log.run(so2, &mut so, accept, PAT).await;
    let refund =
        json!({"refund_id": id(), "amount": "60", "refunded_on": t(-1), "method": "check"});
    log.run(
        so2,
        &mut so,
        SalesOrderCommand::RecordRefund(de(refund)),
        PAT,
    )
    .await;

    // SO3: from the KG order, confirmed.
    let mut so = SalesOrder::default();
    let new = json!({
        "order_number": "SO-000003",
        "header": {"customer_id": bob, "order_date": t(-2)},
        "lines": [{"line_id": s3_beef, "product_id": beef, "weight": "100", "price_per_unit": "2.50",
                   "source_purchase_order_id": po3}],
    });
    log.run(so3, &mut so, SalesOrderCommand::Create(de(new)), MARY)
        .await;
    log.run(so3, &mut so, SalesOrderCommand::Confirm, MARY)
        .await;

    Scenario {
        log,
        acme,
        wire,
        bob,
        cy,
        pcs,
        scs,
        so_lines,
    }
}

/// Creates, confirms, ships in full on `shipped_on`, delivers and invoices on `invoiced_on`
/// the sales order `new` with lines `lines`.
#[allow(clippy::too_many_arguments)]
async fn deliver_and_invoice<const N: usize>(
    log: &mut Log,
    id: Uuid,
    so: &mut SalesOrder,
    new: Value,
    lines: [Uuid; N],
    shipped_on: NaiveDate,
    invoiced_on: NaiveDate,
    invoice_number: &str,
    due_date: NaiveDate,
) {
    let weights: Vec<Value> = new["lines"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lines)
        .map(|(line, line_id)| json!({"line_id": line_id, "weight": line["weight"]}))
        .collect();
    log.run(id, so, SalesOrderCommand::Create(de(new)), MARY)
        .await;
    log.run(id, so, SalesOrderCommand::Confirm, MARY).await;
    let ship = SalesOrderCommand::Ship {
        shipped_on,
        carrier_id: None,
        carrier_release_number: None,
        lines: de(Value::Array(weights)),
    };
    log.run(id, so, ship, MARY).await;
    let deliver = SalesOrderCommand::Deliver {
        delivered_on: invoiced_on,
    };
    log.run(id, so, deliver, MARY).await;
    let invoice = SalesOrderCommand::Invoice {
        invoice_number: de(json!(invoice_number)),
        invoice_date: invoiced_on,
        due_date,
    };
    log.run(id, so, invoice, PAT).await;
}

/// When the event `variant` (`ClaimRaised`, `ClaimAccepted`, `ClaimRejected`) of `claim_id`
/// was recorded.
fn claim_event_time(log: &Log, variant: &str, claim_id: Uuid) -> DateTime<Utc> {
    let found: Vec<&EventRecord> = log
        .events
        .iter()
        .filter(|e| e.payload[variant]["claim_id"] == json!(claim_id))
        .collect();
    assert_eq!(found.len(), 1, "{variant} of {claim_id}");
    found[0].recorded_at
}

/// A login name no other run uses.
fn unique_login(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Runs `test` in a task (so a failed assertion is caught), then drops `roles` and the
/// database, then passes the failure on.
async fn with_cleanup<F>(db: Db, roles: Vec<String>, test: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(test).await;
    for role in &roles {
        let _ = sqlx::query(&format!("drop role if exists {role}"))
            .execute(&db.pool)
            .await;
    }
    db.drop().await;
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// The rows `sql` returns, each as the text of its columns (null as `None`).
async fn rows(conn: &mut PgConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    sqlx::query_scalar::<_, Vec<Option<String>>>(sql)
        .persistent(false)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A column's text as [`rows`] gives it: `None` for `"null"`.
fn text(value: impl ToString) -> Option<String> {
    let value = value.to_string();
    (value != "null").then_some(value)
}

/// A row as [`rows`] gives it, from its columns' texts (`"null"` for null).
macro_rules! row {
    ($($value:expr),* $(,)?) => { vec![$(text($value)),*] };
}

#[tokio::test]
async fn claims_credits_and_refunds_reach_the_analysts_views_of_their_own_tenant_only() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = scenario(Uuid::new_v4(), today).await;
    let b = scenario(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    let login = unique_login("claims_analyst");
    let password = analysts::generate_password();
    let pool = db.pool.clone();
    let name = db.name.clone();
    let roles = vec![login.clone()];

    with_cleanup(db, roles, async move {
        let mut admin = pool.acquire().await.unwrap();
        analysts::create_login(&mut admin, a.log.tenant, &login, &password)
            .await
            .unwrap();
        let relations = read_relations(&pool).await;
        for expected in [
            "claims",
            "claims_by_reason",
            "claims_by_supplier",
            "claims_by_customer",
        ] {
            assert!(relations.iter().any(|r| r == expected), "{expected}");
        }
        let mut analyst =
            PgConnection::connect_with(&options(&name).username(&login).password(&password))
                .await
                .unwrap();

        // The claims: A's eight, none of B's (which has eight too), from the table and every
        // summary, also when asking for B's tenant by its id.
        for (relation, tenant, count) in [
            ("claims", b.log.tenant, 8),
            ("claims_by_reason", b.log.tenant, 8),
            ("claims_by_supplier", b.log.tenant, 2),
            ("claims_by_customer", b.log.tenant, 2),
        ] {
            let theirs: i64 = sqlx::query_scalar(&format!(
                "select count(*) from read.{relation} where tenant_id = $1"
            ))
            .bind(tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(theirs, count, "{relation} of B, as the superuser");
            let (mine, others): (i64, i64) = sqlx::query_as(&format!(
                "select count(*) filter (where tenant_id = $1), \
                        count(*) filter (where tenant_id <> $1) from read.{relation}"
            ))
            .bind(a.log.tenant)
            .fetch_one(&mut analyst)
            .await
            .unwrap();
            assert_eq!((mine, others), (count, 0), "{relation} as A's analyst");
        }

        // Each claim's row.
        let time = |variant, claim| claim_event_time(&a.log, variant, claim).to_rfc3339();
        let claims = rows(
            &mut analyst,
            "select array[order_type, order_number, supplier_id::text, customer_id::text, \
                    reason, status, currency, weight_unit, claimed_amount::text, \
                    accepted_amount::text, credit_note_number, reject_reason, notes, \
                    source_sales_claim_id::text, jsonb_array_length(lines)::text, \
                    to_jsonb(raised_at) #>> '{}', to_jsonb(decided_at) #>> '{}'] \
             from claims order by order_number, claimed_amount desc",
        )
        .await;
        let normalise = |t: String| {
            DateTime::parse_from_rfc3339(&t)
                .unwrap()
                .with_timezone(&Utc)
                .to_rfc3339()
        };
        let claims: Vec<Vec<Option<String>>> = claims
            .into_iter()
            .map(|mut row| {
                for i in [15, 16] {
                    row[i] = row[i].take().map(normalise);
                }
                row
            })
            .collect();
        let (acme, wire, bob, cy) = (
            a.acme.to_string(),
            a.wire.to_string(),
            a.bob.to_string(),
            a.cy.to_string(),
        );
        let sc1 = a.scs[0].to_string();
        let [pc1, pc2, pc3, pc4] = a.pcs;
        let [sc1_id, sc2, sc3, sc4] = a.scs;
        #[rustfmt::skip]
        let expected = vec![
            row!["purchase_order", "PO-000001", &acme, "null", "short_weight", "accepted", "USD", "LB", "100.00", "80.00", "ACME-CM-7", "null", "null", &sc1, "1", &time("ClaimRaised", pc1), &time("ClaimAccepted", pc1)],
            row!["purchase_order", "PO-000001", &acme, "null", "quality", "rejected", "USD", "LB", "50.00", "null", "null", "Within spec", "null", "null", "1", &time("ClaimRaised", pc2), &time("ClaimRejected", pc2)],
            row!["purchase_order", "PO-000003", &wire, "null", "damage", "accepted", "USD", "KG", "40.00", "40.00", "null", "null", "null", "null", "1", &time("ClaimRaised", pc3), &time("ClaimAccepted", pc3)],
            row!["purchase_order", "PO-000003", &wire, "null", "temperature", "open", "USD", "KG", "10.00", "null", "null", "null", "null", "null", "1", &time("ClaimRaised", pc4), "null"],
            row!["sales_order", "SO-000001", "null", &bob, "short_weight", "accepted", "USD", "LB", "150.00", "120.00", "CN-000001", "null", "null", "null", "1", &time("ClaimRaised", sc1_id), &time("ClaimAccepted", sc1_id)],
            row!["sales_order", "SO-000001", "null", &bob, "temperature", "accepted", "USD", "LB", "100.00", "50.00", "CN-000002", "null", "Arrived at 45F", "null", "2", &time("ClaimRaised", sc2), &time("ClaimAccepted", sc2)],
            row!["sales_order", "SO-000001", "null", &bob, "damage", "open", "USD", "LB", "25.00", "null", "null", "null", "null", "null", "1", &time("ClaimRaised", sc3), "null"],
            row!["sales_order", "SO-000002", "null", &cy, "pricing", "accepted", "USD", "LB", "100.00", "100.00", "CN-000003", "null", "null", "null", "1", &time("ClaimRaised", sc4), &time("ClaimAccepted", sc4)],
        ];
        assert_eq!(claims, expected);
        // Raised and decided at different times, in that order.
        assert!(time("ClaimRaised", pc1) < time("ClaimAccepted", pc1));

        // Claims by reason: (kind, reason, claims, open, accepted, rejected, claimed,
        // accepted, rejected, open amounts).
        let by_reason = rows(
            &mut analyst,
            "select array[order_type, reason, currency, claims::text, open_claims::text, \
                    accepted_claims::text, rejected_claims::text, claimed_amount::text, \
                    accepted_amount::text, rejected_amount::text, open_amount::text] \
             from claims_by_reason order by order_type, reason",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            row!["purchase_order", "damage", "USD", "1", "0", "1", "0", "40.00", "40.00", "0.00", "0.00"],
            row!["purchase_order", "quality", "USD", "1", "0", "0", "1", "50.00", "0.00", "50.00", "0.00"],
            row!["purchase_order", "short_weight", "USD", "1", "0", "1", "0", "100.00", "80.00", "0.00", "0.00"],
            row!["purchase_order", "temperature", "USD", "1", "1", "0", "0", "10.00", "0.00", "0.00", "10.00"],
            row!["sales_order", "damage", "USD", "1", "1", "0", "0", "25.00", "0.00", "0.00", "25.00"],
            row!["sales_order", "pricing", "USD", "1", "0", "1", "0", "100.00", "100.00", "0.00", "0.00"],
            row!["sales_order", "short_weight", "USD", "1", "0", "1", "0", "150.00", "120.00", "0.00", "0.00"],
            row!["sales_order", "temperature", "USD", "1", "0", "1", "0", "100.00", "50.00", "0.00", "0.00"],
        ];
        // Damage and temperature come once from each side.
        assert_eq!(by_reason, expected);

        // Claims by supplier: Acme has PC1 (100 claimed, 80 accepted) and PC2 (50 rejected);
        // Wire Beef PC3 (40 accepted in full) and PC4 (10 open).
        let by_supplier = rows(
            &mut analyst,
            "select array[supplier_id::text, supplier_name, currency, claims::text, \
                    open_claims::text, accepted_claims::text, rejected_claims::text, \
                    claimed_amount::text, accepted_amount::text, rejected_amount::text, \
                    open_amount::text] \
             from claims_by_supplier order by supplier_name",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            row![&acme, "Acme Packing", "USD", "2", "0", "1", "1", "150.00", "80.00", "50.00", "0.00"],
            row![&wire, "Wire Beef Co", "USD", "2", "1", "1", "0", "50.00", "40.00", "0.00", "10.00"],
        ];
        assert_eq!(by_supplier, expected);

        // Claims by customer: Bob's SC1 (150, 120 accepted), SC2 (100, 50 accepted), SC3 (25
        // open); Cy's SC4 (100 accepted in full).
        let by_customer = rows(
            &mut analyst,
            "select array[customer_id::text, customer_name, currency, claims::text, \
                    open_claims::text, accepted_claims::text, rejected_claims::text, \
                    claimed_amount::text, accepted_amount::text, rejected_amount::text, \
                    open_amount::text] \
             from claims_by_customer order by customer_name",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            row![&bob, "Bob's Burgers", "USD", "3", "1", "2", "0", "275.00", "170.00", "0.00", "25.00"],
            row![&cy, "Cy's Diner", "USD", "1", "0", "1", "0", "100.00", "100.00", "0.00", "0.00"],
        ];
        assert_eq!(by_customer, expected);

        // The orders' money: outstanding = amount due − credits − paid + refunds.
        let orders = rows(
            &mut analyst,
            "select array[order_number, amount_due::text, credits::text, amount_paid::text, \
                    refunds::text, outstanding::text, payment_status] \
             from (select order_number, amount_due, credits, amount_paid, refunds, outstanding, \
                          payment_status from purchase_orders \
                   union all \
                   select order_number, amount_due, credits, amount_paid, refunds, outstanding, \
                          payment_status from sales_orders) o \
             order by order_number",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            // 2500 − 80 − 2500 + 30
            row!["PO-000001", "2500.00", "80.00", "2500.00", "30.00", "-50.00", "overpaid"],
            // 400 − 40
            row!["PO-000003", "400.00", "40.00", "0.00", "0.00", "360.00", "unpaid"],
            // 3100 − 170 − 1000
            row!["SO-000001", "3100.00", "170.00", "1000.00", "0.00", "1930.00", "partial"],
            // 600 − 100 − 600 + 60
            row!["SO-000002", "600.00", "100.00", "600.00", "60.00", "-40.00", "overpaid"],
            row!["SO-000003", "250.00", "0.00", "0.00", "0.00", "250.00", "unpaid"],
        ];
        assert_eq!(orders, expected);

        // Payables and receivables: the same outstanding, with its credits and refunds.
        let open = rows(
            &mut analyst,
            "select array[order_number, outstanding::text, credits::text, refunds::text, \
                    payment_status, days_past_due::text] from payables \
             union all \
             select array[order_number, outstanding::text, credits::text, refunds::text, \
                    payment_status, days_past_due::text] from receivables \
             order by 1",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            // due 30 days after the receipt of T-15
            row!["PO-000001", "-50.00", "80.00", "30.00", "overpaid", "0"],
            // no credit terms: due on the receipt date, T-15
            row!["PO-000003", "360.00", "40.00", "0.00", "unpaid", "15"],
            // due T-3
            row!["SO-000001", "1930.00", "170.00", "0.00", "partial", "3"],
            // due T+20
            row!["SO-000002", "-40.00", "100.00", "60.00", "overpaid", "0"],
        ];
        assert_eq!(open, expected);
        let aging = rows(
            &mut analyst,
            "select array[direction, order_number, outstanding::text, credits::text, \
                    refunds::text, bucket] from aging order by order_number",
        )
        .await;
        #[rustfmt::skip]
        let expected = vec![
            row!["payable", "PO-000001", "-50.00", "80.00", "30.00", "current"],
            row!["payable", "PO-000003", "360.00", "40.00", "0.00", "1-30"],
            row!["receivable", "SO-000001", "1930.00", "170.00", "0.00", "1-30"],
            row!["receivable", "SO-000002", "-40.00", "100.00", "60.00", "current"],
        ];
        assert_eq!(aging, expected);

        // Margin net of claims.
        // SO1 beef (from PO1 beef at 2.00, sold 1000 LB at 2.50): margin 0.50 × 1000 = 500.00.
        //   Sell credits: SC1's 120 (its one line) + SC2's 50 × 40/100 = 20: 140.00.
        //   Buy credits: PC1's 80 over PO1's 1000 LB of beef = 0.08/LB, × 1000: 80.00.
        //   Net: 500 − 140 + 80 = 440.00, 0.44 per LB.
        // SO1 pork (from PO1 pork at 1.00, sold 500 at 1.20): 0.20 × 500 = 100.00. Sell
        //   credits: SC2's 50 × 60/100 = 30 (SC3 is open); buy credits: none (PC2 rejected).
        //   Net: 70.00, 0.14 per LB.
        // SO3 beef (from PO3, 4.00/KG = 1.81436948/LB, selling 100 LB at 2.50): margin
        //   0.68563052/LB → 0.6856, × 100 = 68.56. Buy credits: PC3's 40 over 100 KG =
        //   0.40/KG = 0.181436948/LB, × 100 = 18.14. Net: (0.68563052 + 0.181436948) × 100 =
        //   86.7067468 → 86.71, 0.8671 per LB.
        let margin = rows(
            &mut analyst,
            "select array[sales_order_number, sales_line_id::text, buy_price::text, \
                    margin_per_unit::text, margin_total::text, sell_credit::text, \
                    buy_credit::text, net_margin_total::text, net_margin_per_unit::text, \
                    margin_per_lb::text, net_margin_per_lb::text] \
             from back_to_back_margin order by sales_order_number, sell_price desc",
        )
        .await;
        let [s1_beef, s1_pork, s3_beef] = a.so_lines.map(|l| l.to_string());
        #[rustfmt::skip]
        let expected = vec![
            row!["SO-000001", &s1_beef, "2.0000", "0.5000", "500.00", "140.00", "80.00", "440.00", "0.4400", "0.5000", "0.4400"],
            row!["SO-000001", &s1_pork, "1.0000", "0.2000", "100.00", "30.00", "0.00", "70.00", "0.1400", "0.2000", "0.1400"],
            row!["SO-000003", &s3_beef, "1.8144", "0.6856", "68.56", "0.00", "18.14", "86.71", "0.8671", "0.6856", "0.8671"],
        ];
        assert_eq!(margin, expected);
        analyst.close().await.unwrap();
    })
    .await;
}

/// Every row of `tenant` in every table and view of schema `read` but the checkpoints, as
/// sorted JSON text.
async fn everything(pool: &PgPool, tenant: Uuid) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for relation in read_relations(pool).await {
        if relation == "checkpoints" {
            continue;
        }
        let rows: Vec<String> = snapshot(pool, &relation)
            .await
            .into_iter()
            .filter(|row| row.contains(&tenant.to_string()))
            .collect();
        all.insert(relation, rows);
    }
    all
}

/// Rebuilds every projection of `tenant` from `events` as `oms replay` does, in one
/// transaction, `page` events at a time, holding at most `capacity` orders of a kind.
async fn rebuild(
    pool: &PgPool,
    tenant: Uuid,
    events: &[EventRecord],
    page: usize,
    capacity: usize,
) {
    let mut tx = pool.begin().await.unwrap();
    for projection in Projection::ALL {
        checkpoints::lock(&mut tx, projection, tenant)
            .await
            .unwrap();
        checkpoints::clear(&mut tx, projection, tenant)
            .await
            .unwrap();
    }
    let mut rebuild = Rebuild::with_capacity(tenant, &Projection::ALL, capacity);
    for chunk in events.chunks(page) {
        rebuild.apply(&mut tx, chunk).await.unwrap();
    }
    rebuild.finish(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_rebuild_writes_the_claims_rows_the_projector_wrote() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = scenario(Uuid::new_v4(), today).await;
    let tenant = a.log.tenant;
    apply_all(&db.pool, &a.log.events).await;
    let projected = everything(&db.pool, tenant).await;
    assert_eq!(projected["claims"].len(), 8);
    let decided = projected["claims"]
        .iter()
        .filter(|row| !row.contains("\"decided_at\": null"))
        .count();
    assert_eq!(decided, 6);
    assert!(projected["claims"]
        .iter()
        .all(|row| !row.contains("\"raised_at\": null")));

    // Held in memory throughout, and written out and folded back after every page of three
    // events (a claim raised in one page and decided in a later one keeps its times); a row
    // no event accounts for, or one changed behind the projection's back, does not survive.
    for (page, capacity) in [(1000, 512), (3, 1)] {
        sqlx::query(
            "insert into read.claims \
             select (jsonb_populate_record(c, jsonb_build_object('order_id', gen_random_uuid()))).* \
             from read.claims c where tenant_id = $1 limit 1",
        )
        .bind(tenant)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "update read.claims set raised_at = raised_at - interval '1 day' where tenant_id = $1",
        )
        .bind(tenant)
        .execute(&db.pool)
        .await
        .unwrap();
        assert_ne!(everything(&db.pool, tenant).await, projected);
        rebuild(&db.pool, tenant, &a.log.events, page, capacity).await;
        assert_eq!(
            everything(&db.pool, tenant).await,
            projected,
            "page {page}, capacity {capacity}"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn the_migration_fills_in_the_claims_of_orders_projected_before_it() {
    let projected = Db::fresh().await;
    let a = scenario(Uuid::new_v4(), projected.today().await).await;
    apply_all(&projected.pool, &a.log.events).await;
    // The rows as the projector wrote them before the migration: the same orders' rows (the
    // same documents and states, claims included) without the columns and table it adds ...
    let db = Db::fresh_before(CLAIMS_MIGRATION).await;
    let mut tables: Vec<&str> = Projection::ALL
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .filter(|t| *t != "claims")
        .collect();
    tables.push("checkpoints");
    for table in tables {
        let rows: Vec<Value> =
            sqlx::query_scalar(&format!("select to_jsonb(t) from read.{table} t"))
                .fetch_all(&projected.pool)
                .await
                .unwrap();
        sqlx::query(&format!(
            "insert into read.{table} select * from jsonb_populate_recordset(null::read.{table}, $1)"
        ))
        .bind(Value::Array(rows))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    // ... and the events in the store, where the migration finds the claims' times.
    for e in &a.log.events {
        store_event(&db.pool, e).await;
    }
    db.migrate().await;

    // Exactly what projecting after the migration gives.
    let migrated = everything(&db.pool, a.log.tenant).await;
    assert_eq!(migrated["claims"].len(), 8);
    assert_eq!(migrated, everything(&projected.pool, a.log.tenant).await);
    db.drop().await;
    projected.drop().await;
}

/// The migration that added the claims' read models.
const CLAIMS_MIGRATION: i64 = 9;

/// Writes `event` into the event store as the store would (the hash is not checked here).
async fn store_event(pool: &PgPool, e: &EventRecord) {
    sqlx::query(
        "insert into tenants (id, name, slug) values ($1, 'Claims', $2) on conflict do nothing",
    )
    .bind(e.tenant_id)
    .bind(format!("claims-{}", e.tenant_id.simple()))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, metadata, recorded_at, hash) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '\\x00')",
    )
    .bind(e.tenant_id)
    .bind(e.position)
    .bind(&e.aggregate_type)
    .bind(e.aggregate_id)
    .bind(e.sequence)
    .bind(&e.event_type)
    .bind(&e.event_version)
    .bind(&e.payload)
    .bind(&e.metadata)
    .bind(e.recorded_at)
    .execute(pool)
    .await
    .unwrap();
}

/// The example queries of the analysts' guide (its `sql` blocks but the `psql` commands).
fn guide_queries() -> Vec<String> {
    let guide = include_str!("../../docs/analysts.md");
    guide
        .split("```sql\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(str::trim)
        .filter(|query| !query.starts_with('\\'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_example_query_of_the_analysts_guide_runs_for_an_analyst() {
    let db = Db::fresh().await;
    let a = scenario(Uuid::new_v4(), db.today().await).await;
    apply_all(&db.pool, &a.log.events).await;
    let login = unique_login("guide_analyst");
    let password = analysts::generate_password();
    let pool = db.pool.clone();
    let name = db.name.clone();

    with_cleanup(db, vec![login.clone()], async move {
        let mut admin = pool.acquire().await.unwrap();
        analysts::create_login(&mut admin, a.log.tenant, &login, &password)
            .await
            .unwrap();
        let mut analyst =
            PgConnection::connect_with(&options(&name).username(&login).password(&password))
                .await
                .unwrap();
        let queries = guide_queries();
        let about_claims: Vec<&String> = queries
            .iter()
            .filter(|q| {
                ["claims", "credits", "net_margin"]
                    .iter()
                    .any(|w| q.contains(w))
            })
            .collect();
        assert!(about_claims.len() >= 8, "{about_claims:#?}");
        for query in &queries {
            let found = sqlx::query(query)
                .persistent(false)
                .fetch_all(&mut analyst)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            // The scenario has claims, credits, refunds and back-to-back trades: every query
            // about them finds some.
            if about_claims.contains(&query) {
                assert!(!found.is_empty(), "no rows: {query}");
            }
        }
        analyst.close().await.unwrap();
    })
    .await;
}
