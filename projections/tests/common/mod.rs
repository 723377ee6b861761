//! Shared helpers of the projection tests: a fresh database per test, events made by running
//! the domain's aggregates, and a small trading scenario.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use oms_domain::error::DomainError;
use oms_domain::purchase_order::{
    LinePatch as PoLinePatch, NewLine as PoNewLine, NewPayment, NewPurchaseOrder, PurchaseOrder,
    PurchaseOrderCommand, PurchaseOrderHeaderPatch,
};
use oms_domain::reference::{
    Carrier, CarrierAggregate, Customer, CustomerAggregate, Plant, PlantAggregate, Product,
    ProductAggregate, ReferenceCommand, Supplier, SupplierAggregate,
};
use oms_domain::sales_order::{NewSalesOrder, SalesOrder, SalesOrderCommand};
use oms_domain::services::{DomainServices, FixedClock, InMemoryLookups, ReferenceType};
use oms_projections::documents::Stamp;
use oms_projections::{EventRecord, Projection};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Connection options for database `name` on the test server (as the admin user).
pub fn options(name: &str) -> PgConnectOptions {
    admin_url()
        .parse::<PgConnectOptions>()
        .expect("a valid OMS_TEST_DATABASE_URL")
        .database(name)
}

/// A migrated database of its own.
pub struct Db {
    /// Its name, `oms_test_<uuid>`.
    pub name: String,
    /// A pool on it, as the admin user.
    pub pool: PgPool,
}

impl Db {
    /// Creates an empty database and runs every migration on it.
    pub async fn fresh() -> Db {
        let db = Self::empty().await;
        db.migrate().await;
        db
    }

    /// Creates an empty database and runs the migrations numbered below `version` on it, to
    /// see what migration `version` does to rows written before it.
    pub async fn fresh_before(version: i64) -> Db {
        let db = Self::empty().await;
        let mut migrator = sqlx::migrate!("../migrations");
        let earlier: Vec<_> = migrator
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect();
        migrator.migrations = earlier.into();
        migrator
            .run(&db.pool)
            .await
            .expect("the earlier migrations apply");
        db
    }

    /// Runs the migrations numbered up to `version` that have not run yet: what migration
    /// `version` does, seen before later migrations change the same relations.
    pub async fn migrate_through(&self, version: i64) {
        let mut migrator = sqlx::migrate!("../migrations");
        let upto: Vec<_> = migrator
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect();
        migrator.migrations = upto.into();
        migrator
            .run(&self.pool)
            .await
            .expect("the migrations apply");
    }

    /// Runs every migration that has not run yet.
    pub async fn migrate(&self) {
        sqlx::migrate!("../migrations")
            .run(&self.pool)
            .await
            .expect("the migrations apply");
    }

    /// Creates an empty database.
    async fn empty() -> Db {
        let name = format!("oms_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url())
            .await
            .expect("the test Postgres is reachable (run the tests with `make test`)");
        sqlx::query(&format!("create database {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        admin.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options(&name))
            .await
            .expect("connect to the test database");
        Db { name, pool }
    }

    /// Drops the database (best effort: `make test` drops leftovers too).
    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }

    /// Today's date as the database sees it.
    pub async fn today(&self) -> NaiveDate {
        sqlx::query_scalar("select current_date")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Applies every event to every projection, one transaction per event with `app.tenant_id`
/// set, as the projector does.
pub async fn apply_all(pool: &PgPool, events: &[EventRecord]) {
    for event in events {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(event.tenant_id.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        for projection in Projection::ALL {
            projection
                .apply(&mut tx, event)
                .await
                .unwrap_or_else(|e| panic!("{} applies {event:?}: {e}", projection.name()));
        }
        tx.commit().await.unwrap();
    }
}

/// Every row of a read table or view as sorted JSON text, for row-for-row comparisons.
pub async fn snapshot(pool: &PgPool, relation: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "select to_jsonb(t)::text from read.{relation} t order by 1"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Every table and view of schema `read` but `analyst_logins`.
pub async fn read_relations(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'read' and c.relkind in ('r', 'v') and c.relname <> 'analyst_logins' \
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Deserializes a domain value from JSON (commands' parts are built this way).
pub fn de<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid domain value")
}

/// Who runs a command: `(actor, actor_name)`.
pub type Who = (&'static str, Option<&'static str>);

/// Mary, a user with a display name.
pub const MARY: Who = ("mary", Some("Mary Jones"));
/// Pat, a manager with a display name.
pub const PAT: Who = ("pat", Some("Pat Manager"));
/// Pat without a display name (as a token without `name` gives).
pub const PAT_NO_NAME: Who = ("pat", None);

/// A tenant's event log, made by running the domain's aggregates: gapless positions, each
/// aggregate's sequence, metadata and deterministic timestamps (one minute per position).
pub struct Log {
    /// The tenant.
    pub tenant: Uuid,
    /// Every event so far, in position order.
    pub events: Vec<EventRecord>,
    /// What the aggregates consult.
    pub services: DomainServices,
    /// Each aggregate's event count.
    sequences: HashMap<Uuid, i64>,
}

impl Log {
    /// An empty log.
    pub fn new(tenant: Uuid, services: DomainServices) -> Self {
        Self {
            tenant,
            events: Vec::new(),
            services,
            sequences: HashMap::new(),
        }
    }

    /// The time of position `position`.
    pub fn time_of(position: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(position)
    }

    /// Runs `command` on `state` (which it changes) and records the events it wrote.
    pub async fn run<A>(&mut self, id: Uuid, state: &mut A, command: A::Command, who: Who)
    where
        A: Aggregate<Services = DomainServices, Error = DomainError>,
    {
        let sink = EventSink::default();
        state
            .handle(command, &self.services, &sink)
            .await
            .unwrap_or_else(|e| panic!("the command is accepted: {e}"));
        for event in sink.collect().await {
            self.record::<A>(id, &event, who);
        }
    }

    /// Records one event of aggregate `id`.
    pub fn record<A: Aggregate>(&mut self, id: Uuid, event: &A::Event, who: Who) {
        let sequence = self.sequences.entry(id).or_insert(0);
        *sequence += 1;
        let position = self.events.len() as i64 + 1;
        self.events.push(EventRecord {
            tenant_id: self.tenant,
            position,
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: id,
            sequence: *sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event).unwrap(),
            metadata: json!({
                "actor": who.0,
                "actor_name": who.1,
                "request_id": format!("req-{position}"),
                "correlation_id": format!("req-{position}"),
                "causation_id": null,
                "idempotency_key": null,
            }),
            recorded_at: Self::time_of(position),
        });
    }

    /// The events of aggregate `id`.
    pub fn of(&self, id: Uuid) -> Vec<&EventRecord> {
        self.events
            .iter()
            .filter(|e| e.aggregate_id == id)
            .collect()
    }

    /// The stamp of aggregate `id` after all its events.
    pub fn stamp(&self, id: Uuid) -> Stamp {
        let events = self.of(id);
        Stamp {
            id,
            version: events.len() as i64,
            created_at: events.first().map(|e| e.recorded_at),
            updated_at: events.last().map(|e| e.recorded_at),
        }
    }
}

/// Domain services that know every id of `ids` (all active) and the purchase orders.
pub fn services(
    today: NaiveDate,
    references: &[(ReferenceType, Uuid)],
    pos: &[Uuid],
) -> DomainServices {
    let mut lookups = InMemoryLookups::new();
    for (kind, id) in references {
        lookups = lookups.with_reference(*kind, *id, true);
    }
    for id in pos {
        lookups = lookups.with_purchase_order(*id);
    }
    DomainServices::new(Arc::new(lookups), Arc::new(FixedClock(today)))
}

/// A date `days` from `today` (negative: before).
pub fn day(today: NaiveDate, days: i64) -> NaiveDate {
    today + Duration::days(days)
}

// ---------------------------------------------------------------------------------------------
// The trading scenario
// ---------------------------------------------------------------------------------------------

/// A tenant's reference data and orders, with every aggregate's final state.
///
/// Relative to `today` (T):
/// - PO1 (Acme, net_30, T-50): beef 40000 LB @ 2.1575 + pork 10000.5 @ 1.3333 = 99633.67;
///   header changed, a third line added, changed and removed, submitted, rejected,
///   resubmitted, approved; receipt of beef 39850.5 (T-44, lots A-100 20000 produced T-46 at
///   EST 38 and A-101 19850.5), payment 1000.00 wire (T-43), complete receipt of pork 10000.5
///   (T-40, lot P-200), a note. Received 99311.12, outstanding
///   98311.12, due T-10.
/// - PO2 (Wire Beef, wire_1_day_prior, T-3, delivery T+5): beef 1000 @ 2 = 2000.00,
///   approved; due T+4.
/// - PO3 (Acme, T-10): cancelled. PO4 (Acme, T-2): beef 500 @ 2.5 = 1250.00, draft.
/// - SO1 (Bob's, T-48): beef 40000 @ 2.3050 from PO1 = 92200.00; shipped (T-47), delivered,
///   invoiced INV-000001 (T-46, due T-31), paid 2200.00; outstanding 90000.00.
/// - SO2 (Bob's, T-1): pork 1000 @ 1.5 from PO1, confirmed.
/// - A lamb product, deactivated; Acme's phone updated.
pub struct Trade {
    /// The events.
    pub log: Log,
    /// The date the domain's clock says it is.
    pub today: NaiveDate,
    /// Supplier Acme Packing (net_30).
    pub acme: Uuid,
    /// Supplier Wire Beef Co (wire_1_day_prior).
    pub wire_beef: Uuid,
    /// Customer Bob's Burgers.
    pub bob: Uuid,
    /// Product BF-8020, beef.
    pub beef: Uuid,
    /// Product PK-72, pork.
    pub pork: Uuid,
    /// Product LM-1, lamb, deactivated.
    pub lamb: Uuid,
    /// A plant.
    pub plant: Uuid,
    /// A carrier.
    pub carrier: Uuid,
    /// Purchase orders 1 to 4 and their states.
    pub pos: Vec<(Uuid, PurchaseOrder)>,
    /// Sales orders 1 and 2 and their states.
    pub sos: Vec<(Uuid, SalesOrder)>,
    /// PO1's lines: beef, pork, and the one added and removed again.
    pub po1_lines: [Uuid; 3],
    /// SO1's and SO2's lines.
    pub so_lines: [Uuid; 2],
    /// PO1's receipts and payment.
    pub po1_receipts: [Uuid; 2],
    /// PO1's payment.
    pub po1_payment: Uuid,
    /// The lots received on PO1: A-100 and A-101 (beef), P-200 (pork).
    pub po1_lots: [Uuid; 3],
}

/// Runs the trading scenario for `tenant`, dated around `today`.
pub async fn trade(tenant: Uuid, today: NaiveDate) -> Trade {
    let id = Uuid::new_v4;
    let (acme, wire_beef, bob, beef, pork, lamb, plant, carrier) =
        (id(), id(), id(), id(), id(), id(), id(), id());
    let (po1, po2, po3, po4, so1, so2) = (id(), id(), id(), id(), id(), id());
    let po1_lines = [id(), id(), id()];
    let so_lines = [id(), id()];
    let po1_receipts = [id(), id()];
    let po1_payment = id();
    let po1_lots = [id(), id(), id()];
    use ReferenceType as R;
    let services = services(
        today,
        &[
            (R::Supplier, acme),
            (R::Supplier, wire_beef),
            (R::Customer, bob),
            (R::Product, beef),
            (R::Product, pork),
            (R::Product, lamb),
            (R::Plant, plant),
            (R::Carrier, carrier),
        ],
        &[po1, po2, po3, po4],
    );
    let mut log = Log::new(tenant, services);
    let t = |days| day(today, days);

    // Reference data.
    let mut supplier = SupplierAggregate::default();
    let details: Supplier = de(json!({"name": "Acme Packing", "code": "ACME",
        "payment_terms": "wire", "credit_terms": "net_30"}));
    log.run(
        acme,
        &mut supplier,
        ReferenceCommand::Register(details),
        PAT,
    )
    .await;
    log.run(
        acme,
        &mut supplier,
        ReferenceCommand::Update(de(json!({"phone": "555-0100"}))),
        PAT,
    )
    .await;
    let mut supplier = SupplierAggregate::default();
    let details: Supplier = de(json!({"name": "Wire Beef Co", "code": "WBC",
        "credit_terms": "wire_1_day_prior"}));
    log.run(
        wire_beef,
        &mut supplier,
        ReferenceCommand::Register(details),
        PAT,
    )
    .await;
    let mut customer = CustomerAggregate::default();
    let details: Customer = de(json!({"name": "Bob's Burgers", "code": "BOB",
        "credit_terms": "net_15", "industry": "food service"}));
    log.run(bob, &mut customer, ReferenceCommand::Register(details), PAT)
        .await;
    for (product, details) in [
        (
            beef,
            json!({"code": "BF-8020", "description": "Beef trim 80/20", "protein": "beef",
            "package_type": "combo_bins"}),
        ),
        (
            pork,
            json!({"code": "PK-72", "description": "Pork trim 72", "protein": "pork",
            "fresh_or_frozen": "frozen"}),
        ),
        (
            lamb,
            json!({"code": "LM-1", "description": "Lamb shoulder", "protein": "lamb"}),
        ),
    ] {
        let mut aggregate = ProductAggregate::default();
        let details: Product = de(details);
        log.run(
            product,
            &mut aggregate,
            ReferenceCommand::Register(details),
            PAT,
        )
        .await;
        if product == lamb {
            log.run(
                product,
                &mut aggregate,
                ReferenceCommand::Update(de(json!({"active": false}))),
                PAT,
            )
            .await;
        }
    }
    let mut aggregate = PlantAggregate::default();
    let details: Plant = de(json!({"name": "Dakota Plant", "code": "DAK",
        "establishment_number": "EST 123"}));
    log.run(
        plant,
        &mut aggregate,
        ReferenceCommand::Register(details),
        PAT,
    )
    .await;
    let mut aggregate = CarrierAggregate::default();
    let details: Carrier =
        de(json!({"name": "Fast Freight", "code": "FF", "carrier_type": "truck"}));
    log.run(
        carrier,
        &mut aggregate,
        ReferenceCommand::Register(details),
        PAT,
    )
    .await;

    // PO1: the whole life of a purchase order.
    let [l1, l2, l3] = po1_lines;
    let mut po = PurchaseOrder::default();
    let new: NewPurchaseOrder = de(json!({
        "order_number": "PO-000001",
        "header": {"supplier_id": acme, "order_date": t(-50), "plant_id": plant, "carrier_id": carrier},
        "lines": [
            {"line_id": l1, "product_id": beef, "weight": "40000", "price_per_unit": "2.1575", "quantity": 800},
            {"line_id": l2, "product_id": pork, "weight": "10000.5", "price_per_unit": "1.3333"},
        ],
    }));
    log.run(po1, &mut po, PurchaseOrderCommand::Create(new), MARY)
        .await;
    let patch: PurchaseOrderHeaderPatch =
        de(json!({"delivery_date": t(-45), "notes": "Load 1 of 2"}));
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::ChangeHeader(patch),
        MARY,
    )
    .await;
    let line: PoNewLine =
        de(json!({"line_id": l3, "product_id": pork, "weight": "100", "price_per_unit": "1"}));
    log.run(po1, &mut po, PurchaseOrderCommand::AddLine(line), MARY)
        .await;
    let patch: PoLinePatch = de(json!({"weight": "200"}));
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::ChangeLine { line_id: l3, patch },
        MARY,
    )
    .await;
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::RemoveLine { line_id: l3 },
        MARY,
    )
    .await;
    log.run(po1, &mut po, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::Reject {
            reason: de(json!("Price too high")),
        },
        PAT,
    )
    .await;
    log.run(po1, &mut po, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(po1, &mut po, PurchaseOrderCommand::Approve, PAT_NO_NAME)
        .await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: po1_receipts[0],
        received_on: t(-44),
        complete: false,
        lines: de(
            json!([{"line_id": l1, "weight": "39850.5", "quantity": 797, "lots": [
                {"lot_id": po1_lots[0], "lot_number": "A-100", "weight": "20000",
                 "production_date": t(-46), "establishment_number": "EST 38"},
                {"lot_id": po1_lots[1], "lot_number": "A-101", "weight": "19850.5"},
            ]}]),
        ),
    };
    log.run(po1, &mut po, receipt, MARY).await;
    let payment: NewPayment = de(json!({"payment_id": po1_payment, "amount": "1000",
        "paid_on": t(-43), "method": "wire", "reference": "W-1"}));
    log.run(
        po1,
        &mut po,
        PurchaseOrderCommand::RecordPayment(payment),
        PAT,
    )
    .await;
    let receipt = PurchaseOrderCommand::RecordReceipt {
        receipt_id: po1_receipts[1],
        received_on: t(-40),
        complete: true,
        lines: de(json!([{"line_id": l2, "weight": "10000.5", "lots": [
            {"lot_id": po1_lots[2], "lot_number": "P-200", "weight": "10000.5"},
        ]}])),
    };
    log.run(po1, &mut po, receipt, MARY).await;
    let note = PurchaseOrderCommand::AddNote {
        note_id: id(),
        text: de(json!("Temperatures checked")),
    };
    log.run(po1, &mut po, note, MARY).await;
    let mut pos = vec![(po1, po)];

    // PO2: approved, not received.
    let mut po = PurchaseOrder::default();
    let new: NewPurchaseOrder = de(json!({
        "order_number": "PO-000002",
        "header": {"supplier_id": wire_beef, "order_date": t(-3), "delivery_date": t(5)},
        "lines": [{"line_id": id(), "product_id": beef, "weight": "1000", "price_per_unit": "2"}],
    }));
    log.run(po2, &mut po, PurchaseOrderCommand::Create(new), MARY)
        .await;
    log.run(po2, &mut po, PurchaseOrderCommand::Submit, MARY)
        .await;
    log.run(po2, &mut po, PurchaseOrderCommand::Approve, PAT)
        .await;
    pos.push((po2, po));

    // PO3: cancelled.
    let mut po = PurchaseOrder::default();
    let new: NewPurchaseOrder = de(json!({
        "order_number": "PO-000003",
        "header": {"supplier_id": acme, "order_date": t(-10)},
        "lines": [{"line_id": id(), "product_id": beef, "weight": "100", "price_per_unit": "2"}],
    }));
    log.run(po3, &mut po, PurchaseOrderCommand::Create(new), MARY)
        .await;
    log.run(
        po3,
        &mut po,
        PurchaseOrderCommand::Cancel {
            reason: de(json!("Duplicate order")),
        },
        PAT,
    )
    .await;
    pos.push((po3, po));

    // PO4: a draft.
    let mut po = PurchaseOrder::default();
    let new: NewPurchaseOrder = de(json!({
        "order_number": "PO-000004",
        "header": {"supplier_id": acme, "order_date": t(-2)},
        "lines": [{"line_id": id(), "product_id": beef, "weight": "500", "price_per_unit": "2.5"}],
    }));
    log.run(po4, &mut po, PurchaseOrderCommand::Create(new), MARY)
        .await;
    pos.push((po4, po));

    // SO1: sold back to back from PO1, shipped, delivered, invoiced, partly paid.
    let [s1, s2] = so_lines;
    let mut so = SalesOrder::default();
    let new: NewSalesOrder = de(json!({
        "order_number": "SO-000001",
        "header": {"customer_id": bob, "order_date": t(-48), "customer_po_number": "BOB-77"},
        "lines": [{"line_id": s1, "product_id": beef, "weight": "40000", "price_per_unit": "2.3050",
                   "source_purchase_order_id": po1}],
    }));
    log.run(so1, &mut so, SalesOrderCommand::Create(new), MARY)
        .await;
    log.run(so1, &mut so, SalesOrderCommand::Confirm, MARY)
        .await;
    let ship = SalesOrderCommand::Ship {
        shipped_on: t(-47),
        carrier_id: Some(carrier),
        carrier_release_number: Some(de(json!("REL-1"))),
        lines: de(json!([{"line_id": s1, "weight": "40000"}])),
    };
    log.run(so1, &mut so, ship, MARY).await;
    log.run(
        so1,
        &mut so,
        SalesOrderCommand::Deliver {
            delivered_on: t(-46),
        },
        MARY,
    )
    .await;
    let invoice = SalesOrderCommand::Invoice {
        invoice_number: de(json!("INV-000001")),
        invoice_date: t(-46),
        due_date: t(-31),
    };
    log.run(so1, &mut so, invoice, PAT).await;
    let payment: NewPayment = de(json!({"payment_id": id(), "amount": "2200",
        "paid_on": t(-30), "method": "ach"}));
    log.run(so1, &mut so, SalesOrderCommand::RecordPayment(payment), PAT)
        .await;
    let mut sos = vec![(so1, so)];

    // SO2: confirmed, not shipped.
    let mut so = SalesOrder::default();
    let new: NewSalesOrder = de(json!({
        "order_number": "SO-000002",
        "header": {"customer_id": bob, "order_date": t(-1)},
        "lines": [{"line_id": s2, "product_id": pork, "weight": "1000", "price_per_unit": "1.5",
                   "source_purchase_order_id": po1}],
    }));
    log.run(so2, &mut so, SalesOrderCommand::Create(new), MARY)
        .await;
    log.run(so2, &mut so, SalesOrderCommand::Confirm, MARY)
        .await;
    sos.push((so2, so));

    Trade {
        log,
        today,
        acme,
        wire_beef,
        bob,
        beef,
        pork,
        lamb,
        plant,
        carrier,
        pos,
        sos,
        po1_lines,
        so_lines,
        po1_receipts,
        po1_payment,
        po1_lots,
    }
}
