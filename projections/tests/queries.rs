//! The query API against real Postgres: every filter, sort both ways, keyset pagination with
//! no duplicates or gaps, bad parameters, get and history, always within one tenant.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use common::{apply_all, day, de, services, Db, Log, MARY, PAT};
use oms_domain::purchase_order::{
    NewPayment, NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand,
};
use oms_domain::reference::{
    CustomerAggregate, ProductAggregate, ReferenceCommand, SupplierAggregate,
};
use oms_domain::sales_order::{NewSalesOrder, SalesOrder, SalesOrderCommand};
use oms_domain::services::ReferenceType;
use oms_projections::documents;
use oms_projections::queries::{self, ListRequest, Page, QueryError, Resource};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use uuid::Uuid;

/// A tenant with several suppliers, customers, products, 13 purchase orders and 4 sales
/// orders, with every aggregate's final state.
struct Catalog {
    log: Log,
    today: NaiveDate,
    /// Acme Packing (ACME), acme rendering (no code), Zeta Meats (ZM, inactive),
    /// Beta 100% Beef (B_100).
    suppliers: [Uuid; 4],
    customers: [Uuid; 2],
    products: [Uuid; 2],
    pos: Vec<(Uuid, PurchaseOrder)>,
    sos: Vec<(Uuid, SalesOrder)>,
}

impl Catalog {
    /// PO `i` (0-based): supplier Acme when even, acme rendering when odd; order date
    /// T-(i % 5); total (i % 4 + 1) × 2000.00; draft, submitted or approved by i % 3; PO 12
    /// cancelled; PO 2 paid 500 (partial), PO 5 paid in full.
    async fn new(tenant: Uuid, today: NaiveDate) -> Catalog {
        let id = Uuid::new_v4;
        let suppliers = [id(), id(), id(), id()];
        let customers = [id(), id()];
        let products = [id(), id()];
        let po_ids: Vec<Uuid> = (0..13).map(|_| id()).collect();
        let so_ids: Vec<Uuid> = (0..4).map(|_| id()).collect();
        let mut references: Vec<(ReferenceType, Uuid)> = Vec::new();
        references.extend(suppliers.iter().map(|s| (ReferenceType::Supplier, *s)));
        references.extend(customers.iter().map(|c| (ReferenceType::Customer, *c)));
        references.extend(products.iter().map(|p| (ReferenceType::Product, *p)));
        let mut log = Log::new(tenant, services(today, &references, &po_ids));

        let mut registered = Vec::new();
        for (supplier, details) in suppliers.iter().zip([
            json!({"name": "Acme Packing", "code": "ACME"}),
            json!({"name": "acme rendering"}),
            json!({"name": "Zeta Meats", "code": "ZM"}),
            json!({"name": "Beta 100% Beef", "code": "B_100"}),
        ]) {
            let mut aggregate = SupplierAggregate::default();
            log.run(
                *supplier,
                &mut aggregate,
                ReferenceCommand::Register(de(details)),
                PAT,
            )
            .await;
            registered.push(aggregate);
        }
        let deactivate = ReferenceCommand::Update(de(json!({"active": false})));
        log.run(suppliers[2], &mut registered[2], deactivate, PAT)
            .await;
        for (customer, details) in customers.iter().zip([
            json!({"name": "Bob's Burgers", "code": "BOB"}),
            json!({"name": "Carol's Deli", "code": "CAR"}),
        ]) {
            let mut aggregate = CustomerAggregate::default();
            log.run(
                *customer,
                &mut aggregate,
                ReferenceCommand::Register(de(details)),
                PAT,
            )
            .await;
        }
        for (product, details) in products.iter().zip([
            json!({"code": "BF-8020", "description": "Beef trim 80/20", "protein": "beef"}),
            json!({"code": "PK-72", "description": "Pork trim 72", "protein": "pork"}),
        ]) {
            let mut aggregate = ProductAggregate::default();
            log.run(
                *product,
                &mut aggregate,
                ReferenceCommand::Register(de(details)),
                PAT,
            )
            .await;
        }

        let mut pos = Vec::new();
        for (i, po) in po_ids.iter().enumerate() {
            let mut state = PurchaseOrder::default();
            let new: NewPurchaseOrder = de(json!({
                "order_number": format!("PO-{:06}", i + 1),
                "header": {"supplier_id": suppliers[i % 2], "order_date": day(today, -((i % 5) as i64))},
                "lines": [{"line_id": id(), "product_id": products[i % 2],
                           "weight": format!("{}", (i % 4 + 1) * 1000), "price_per_unit": "2"}],
            }));
            log.run(*po, &mut state, PurchaseOrderCommand::Create(new), MARY)
                .await;
            if i % 3 >= 1 {
                log.run(*po, &mut state, PurchaseOrderCommand::Submit, MARY)
                    .await;
            }
            if i % 3 == 2 {
                log.run(*po, &mut state, PurchaseOrderCommand::Approve, PAT)
                    .await;
            }
            if i == 12 {
                let cancel = PurchaseOrderCommand::Cancel {
                    reason: de(json!("not needed")),
                };
                log.run(*po, &mut state, cancel, PAT).await;
            }
            if i == 2 || i == 5 {
                let amount = if i == 2 { "500" } else { "4000" };
                let payment: NewPayment = de(json!({"payment_id": id(), "amount": amount,
                    "paid_on": today, "method": "check"}));
                log.run(
                    *po,
                    &mut state,
                    PurchaseOrderCommand::RecordPayment(payment),
                    PAT,
                )
                .await;
            }
            pos.push((*po, state));
        }
        let mut sos = Vec::new();
        for (i, so) in so_ids.iter().enumerate() {
            let mut state = SalesOrder::default();
            let new: NewSalesOrder = de(json!({
                "order_number": format!("SO-{:06}", i + 1),
                "header": {"customer_id": customers[i % 2], "order_date": day(today, -(i as i64))},
                "lines": [{"line_id": id(), "product_id": products[0], "weight": "1000",
                           "price_per_unit": format!("{}", 2 + i % 2)}],
            }));
            log.run(*so, &mut state, SalesOrderCommand::Create(new), MARY)
                .await;
            if i % 2 == 1 {
                log.run(*so, &mut state, SalesOrderCommand::Confirm, MARY)
                    .await;
            }
            sos.push((*so, state));
        }
        Catalog {
            log,
            today,
            suppliers,
            customers,
            products,
            pos,
            sos,
        }
    }

    /// The purchase orders for which `keep` holds, as a set of ids.
    fn pos_where(&self, keep: impl Fn(usize, &PurchaseOrder) -> bool) -> BTreeSet<Uuid> {
        self.pos
            .iter()
            .enumerate()
            .filter(|(i, (_, state))| keep(*i, state))
            .map(|(_, (id, _))| *id)
            .collect()
    }
}

/// A database with a catalog for tenant A and a smaller one for tenant B.
async fn setup() -> (Db, Catalog, Catalog) {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = Catalog::new(Uuid::new_v4(), today).await;
    let b = Catalog::new(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    (db, a, b)
}

/// A list request with `filters`.
fn filtered(filters: &[(&str, &str)]) -> ListRequest {
    ListRequest {
        limit: 500,
        filters: filters
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ListRequest::default()
    }
}

/// The ids of a page's items.
fn ids(page: &Page) -> Vec<Uuid> {
    page.items
        .iter()
        .map(|item| item["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// The ids a list with `filters` answers, as a set.
async fn listed(
    conn: &mut PoolConnection<Postgres>,
    tenant: Uuid,
    resource: Resource,
    filters: &[(&str, &str)],
) -> BTreeSet<Uuid> {
    let page = queries::list(conn, tenant, resource, &filtered(filters))
        .await
        .unwrap_or_else(|e| panic!("{filters:?}: {e}"));
    assert_eq!(page.next_cursor, None);
    ids(&page).into_iter().collect()
}

#[tokio::test]
async fn lists_filter_by_every_parameter() {
    let (db, a, b) = setup().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let tenant = a.log.tenant;
    let po = Resource::PurchaseOrders;
    let status = |s: &PurchaseOrder| s.status.unwrap().to_string();
    let t = |days: i64| day(a.today, days).to_string();

    let all = a.pos_where(|_, _| true);
    assert_eq!(listed(&mut conn, tenant, po, &[]).await, all);
    assert_eq!(
        listed(&mut conn, tenant, po, &[("status", "draft")]).await,
        a.pos_where(|_, s| status(s) == "draft")
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("status", "submitted, approved")]).await,
        a.pos_where(|_, s| ["submitted", "approved"].contains(&status(s).as_str()))
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("status", "cancelled")]).await,
        a.pos_where(|i, _| i == 12)
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("payment_status", "partial")]).await,
        a.pos_where(|i, _| i == 2)
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("payment_status", "paid")]).await,
        a.pos_where(|i, _| i == 5)
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("payment_status", "unpaid")]).await,
        a.pos_where(|i, _| i != 2 && i != 5)
    );
    let acme = a.suppliers[0].to_string();
    assert_eq!(
        listed(&mut conn, tenant, po, &[("supplier_id", &acme)]).await,
        a.pos_where(|i, _| i % 2 == 0)
    );
    assert_eq!(
        listed(
            &mut conn,
            tenant,
            po,
            &[("supplier_id", &acme), ("status", "draft")]
        )
        .await,
        a.pos_where(|i, s| i % 2 == 0 && status(s) == "draft")
    );
    let date = |s: &PurchaseOrder| s.header.as_ref().unwrap().order_date;
    assert_eq!(
        listed(&mut conn, tenant, po, &[("order_date_from", &t(-2))]).await,
        a.pos_where(|_, s| date(s) >= day(a.today, -2))
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("order_date_to", &t(-3))]).await,
        a.pos_where(|_, s| date(s) <= day(a.today, -3))
    );
    assert_eq!(
        listed(
            &mut conn,
            tenant,
            po,
            &[("order_date_from", &t(-3)), ("order_date_to", &t(-1))]
        )
        .await,
        a.pos_where(|_, s| (day(a.today, -3)..=day(a.today, -1)).contains(&date(s)))
    );
    assert_eq!(
        listed(&mut conn, tenant, po, &[("q", "PO-00001")]).await,
        a.pos_where(|i, _| i >= 9)
    );
    assert_eq!(listed(&mut conn, tenant, po, &[("q", "PO-")]).await, all);
    assert_eq!(listed(&mut conn, tenant, po, &[("q", "")]).await, all);
    assert!(listed(&mut conn, tenant, po, &[("q", "po-")])
        .await
        .is_empty());
    assert!(listed(&mut conn, tenant, po, &[("q", "%")])
        .await
        .is_empty());
    assert!(listed(&mut conn, tenant, po, &[("q", "PO_")])
        .await
        .is_empty());

    // Sales orders.
    let so = Resource::SalesOrders;
    let bob = a.customers[0].to_string();
    let sos = |keep: &dyn Fn(usize) -> bool| -> BTreeSet<Uuid> {
        a.sos
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(_, (id, _))| *id)
            .collect()
    };
    assert_eq!(
        listed(&mut conn, tenant, so, &[("customer_id", &bob)]).await,
        sos(&|i| i % 2 == 0)
    );
    assert_eq!(
        listed(&mut conn, tenant, so, &[("status", "confirmed")]).await,
        sos(&|i| i % 2 == 1)
    );
    assert_eq!(
        listed(&mut conn, tenant, so, &[("q", "SO-000004")]).await,
        sos(&|i| i == 3)
    );
    assert_eq!(
        listed(
            &mut conn,
            tenant,
            so,
            &[("order_date_from", &t(-1)), ("payment_status", "unpaid")]
        )
        .await,
        sos(&|i| i <= 1)
    );

    // Reference data: q is a case-insensitive substring of name or code; active.
    let s = Resource::Suppliers;
    let [acme, rendering, zeta, beta] = a.suppliers;
    let set = |ids: &[Uuid]| ids.iter().copied().collect::<BTreeSet<_>>();
    assert_eq!(
        listed(&mut conn, tenant, s, &[("q", "acme")]).await,
        set(&[acme, rendering])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("q", "ACM")]).await,
        set(&[acme, rendering])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("q", "zm")]).await,
        set(&[zeta])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("q", "100%")]).await,
        set(&[beta])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("q", "_")]).await,
        set(&[beta])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("active", "false")]).await,
        set(&[zeta])
    );
    assert_eq!(
        listed(&mut conn, tenant, s, &[("active", "true"), ("q", "a")]).await,
        set(&[acme, rendering, beta])
    );
    let p = Resource::Products;
    assert_eq!(
        listed(&mut conn, tenant, p, &[("q", "TRIM")]).await,
        set(&a.products)
    );
    assert_eq!(
        listed(&mut conn, tenant, p, &[("q", "pk-")]).await,
        set(&a.products[1..])
    );
    assert_eq!(
        listed(&mut conn, tenant, Resource::Customers, &[("q", "deli")]).await,
        set(&a.customers[1..])
    );
    assert!(listed(&mut conn, tenant, Resource::Plants, &[])
        .await
        .is_empty());
    assert!(listed(&mut conn, tenant, Resource::Carriers, &[])
        .await
        .is_empty());

    // Each tenant sees its own rows only.
    assert_eq!(
        listed(&mut conn, b.log.tenant, po, &[]).await,
        b.pos_where(|_, _| true)
    );
    assert!(listed(
        &mut conn,
        b.log.tenant,
        po,
        &[("supplier_id", &acme.to_string())]
    )
    .await
    .is_empty());
    assert!(listed(&mut conn, Uuid::new_v4(), s, &[]).await.is_empty());
    drop(conn);
    db.drop().await;
}

/// A sort key read from a document the way the list sorts it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Text(String),
    Number(Decimal),
}

fn key_of(resource: Resource, field: &str, document: &Value) -> Key {
    let text = |name: &str| document[name].as_str().unwrap_or("").to_owned();
    match field {
        "total" => Key::Number(text("total").parse().unwrap()),
        "name" if resource == Resource::Products => Key::Text(text("description").to_lowercase()),
        "name" => Key::Text(text("name").to_lowercase()),
        other => Key::Text(text(other)),
    }
}

/// Every page of a list, following the cursors.
async fn all_pages(
    conn: &mut PoolConnection<Postgres>,
    tenant: Uuid,
    resource: Resource,
    sort: &str,
    limit: u32,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let request = ListRequest {
            limit,
            cursor: cursor.take(),
            sort: Some(sort.to_owned()),
            filters: BTreeMap::new(),
        };
        let page = queries::list(conn, tenant, resource, &request)
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize);
        items.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return items,
        }
    }
    panic!("the pages never end");
}

#[tokio::test]
async fn lists_sort_both_ways_and_paginate_without_duplicates_or_gaps() {
    let (db, a, _b) = setup().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let tenant = a.log.tenant;
    for resource in [
        Resource::PurchaseOrders,
        Resource::SalesOrders,
        Resource::Suppliers,
        Resource::Products,
    ] {
        let everything: BTreeSet<Uuid> =
            ids(&queries::list(&mut conn, tenant, resource, &filtered(&[]))
                .await
                .unwrap())
            .into_iter()
            .collect();
        assert!(everything.len() >= 2);
        for field in resource.sort_fields() {
            for descending in [false, true] {
                let sort = format!("{}{field}", if descending { "-" } else { "" });
                let whole = all_pages(&mut conn, tenant, resource, &sort, 500).await;
                let mut expected: Vec<(Key, Uuid)> = whole
                    .iter()
                    .map(|d| {
                        (
                            key_of(resource, field, d),
                            d["id"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect();
                expected.sort();
                if descending {
                    expected.reverse();
                }
                let expected: Vec<Uuid> = expected.into_iter().map(|(_, id)| id).collect();
                let got: Vec<Uuid> = whole
                    .iter()
                    .map(|d| d["id"].as_str().unwrap().parse().unwrap())
                    .collect();
                assert_eq!(got, expected, "{resource:?} sorted by {sort}");
                assert_eq!(got.iter().copied().collect::<BTreeSet<_>>(), everything);
                for limit in [1, 2, 5] {
                    let paged: Vec<Uuid> = all_pages(&mut conn, tenant, resource, &sort, limit)
                        .await
                        .iter()
                        .map(|d| d["id"].as_str().unwrap().parse().unwrap())
                        .collect();
                    assert_eq!(paged, expected, "{resource:?} by {sort}, {limit} a page");
                }
            }
        }
    }
    // The default sort is newest first.
    let default = queries::list(&mut conn, tenant, Resource::PurchaseOrders, &filtered(&[]))
        .await
        .unwrap();
    let newest_first = all_pages(
        &mut conn,
        tenant,
        Resource::PurchaseOrders,
        "-created_at",
        500,
    )
    .await;
    assert_eq!(default.items, newest_first);
    // A page of exactly the remaining rows has no next cursor.
    let page = queries::list(
        &mut conn,
        tenant,
        Resource::Suppliers,
        &ListRequest {
            limit: 4,
            ..ListRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((page.items.len(), page.next_cursor), (4, None));
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn a_cursor_keeps_its_place_while_rows_are_added() {
    let (db, a, _b) = setup().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let tenant = a.log.tenant;
    let request = |cursor: Option<String>| ListRequest {
        limit: 5,
        cursor,
        sort: Some("order_number".into()),
        filters: BTreeMap::new(),
    };
    let first = queries::list(&mut conn, tenant, Resource::PurchaseOrders, &request(None))
        .await
        .unwrap();
    assert_eq!(first.items[4]["order_number"], json!("PO-000005"));

    // A new order that sorts before the cursor arrives between the pages.
    let mut log = Log::new(tenant, a.log.services.clone());
    let new: NewPurchaseOrder = de(json!({
        "order_number": "PO-000000",
        "header": {"supplier_id": a.suppliers[0], "order_date": a.today},
        "lines": [],
    }));
    let create = PurchaseOrderCommand::Create(new);
    log.run(Uuid::new_v4(), &mut PurchaseOrder::default(), create, MARY)
        .await;
    let mut events = log.events;
    events[0].position = a.log.events.len() as i64 + 1;
    apply_all(&db.pool, &events).await;

    let second = queries::list(
        &mut conn,
        tenant,
        Resource::PurchaseOrders,
        &request(first.next_cursor),
    )
    .await
    .unwrap();
    let numbers: Vec<&str> = second
        .items
        .iter()
        .map(|d| d["order_number"].as_str().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [
            "PO-000006",
            "PO-000007",
            "PO-000008",
            "PO-000009",
            "PO-000010"
        ]
    );
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn bad_parameters_are_refused() {
    let (db, a, _b) = setup().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let tenant = a.log.tenant;
    let po = Resource::PurchaseOrders;
    let long = "x".repeat(201);
    let first_page = queries::list(
        &mut conn,
        tenant,
        po,
        &ListRequest {
            limit: 2,
            sort: Some("total".into()),
            ..ListRequest::default()
        },
    )
    .await
    .unwrap();
    let cursor = first_page.next_cursor.unwrap();
    let request = |filters: &[(&str, &str)]| filtered(filters);
    let cases: Vec<(Resource, ListRequest, &str)> = vec![
        (po, request(&[("colour", "red")]), "colour"),
        (
            po,
            request(&[("customer_id", &a.customers[0].to_string())]),
            "customer_id",
        ),
        (po, request(&[("limit", "5")]), "limit"),
        (po, request(&[("status", "bogus")]), "status"),
        (po, request(&[("status", "draft,bogus")]), "status"),
        (po, request(&[("status", "confirmed")]), "status"),
        (
            Resource::SalesOrders,
            request(&[("status", "approved")]),
            "status",
        ),
        (
            po,
            request(&[("payment_status", "overdue")]),
            "payment_status",
        ),
        (po, request(&[("supplier_id", "123")]), "supplier_id"),
        (
            po,
            request(&[("order_date_from", "2024-13-01")]),
            "order_date_from",
        ),
        (
            po,
            request(&[("order_date_to", "yesterday")]),
            "order_date_to",
        ),
        (
            po,
            request(&[
                ("order_date_from", "2024-06-02"),
                ("order_date_to", "2024-06-01"),
            ]),
            "order_date_to",
        ),
        (po, request(&[("q", &long)]), "q"),
        (Resource::Suppliers, request(&[("active", "yes")]), "active"),
        (
            Resource::Suppliers,
            request(&[("status", "draft")]),
            "status",
        ),
        (
            Resource::Products,
            request(&[("supplier_id", &a.suppliers[0].to_string())]),
            "supplier_id",
        ),
        (
            po,
            ListRequest {
                sort: Some("-bogus".into()),
                ..request(&[])
            },
            "sort",
        ),
        (
            po,
            ListRequest {
                sort: Some("name".into()),
                ..request(&[])
            },
            "sort",
        ),
        (
            po,
            ListRequest {
                sort: Some("total; drop table x".into()),
                ..request(&[])
            },
            "sort",
        ),
        (
            Resource::Suppliers,
            ListRequest {
                sort: Some("total".into()),
                ..request(&[])
            },
            "sort",
        ),
        (
            po,
            ListRequest {
                limit: 0,
                ..request(&[])
            },
            "limit",
        ),
        (
            po,
            ListRequest {
                limit: 501,
                ..request(&[])
            },
            "limit",
        ),
        (
            po,
            ListRequest {
                cursor: Some("garbage!!".into()),
                ..request(&[])
            },
            "cursor",
        ),
        (
            po,
            ListRequest {
                cursor: Some("bm90IGpzb24".into()),
                ..request(&[])
            },
            "cursor",
        ),
        (
            po,
            ListRequest {
                cursor: Some(cursor.clone()),
                ..request(&[])
            },
            "cursor",
        ),
        (
            Resource::SalesOrders,
            ListRequest {
                cursor: Some(cursor.clone()),
                sort: Some("total".into()),
                ..request(&[])
            },
            "cursor",
        ),
        (
            po,
            ListRequest {
                cursor: Some(format!("{cursor}x")),
                sort: Some("total".into()),
                ..request(&[])
            },
            "cursor",
        ),
    ];
    for (resource, request, expected) in cases {
        match queries::list(&mut conn, tenant, resource, &request).await {
            Err(QueryError::BadParameter { name, message }) => {
                assert_eq!(name, expected, "{resource:?} {request:?}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{resource:?} {request:?} should be refused, got {other:?}"),
        }
    }
    // The cursor itself works with the sort it was made for.
    let second = queries::list(
        &mut conn,
        tenant,
        po,
        &ListRequest {
            limit: 2,
            sort: Some("total".into()),
            cursor: Some(cursor),
            ..ListRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(second.items.len(), 2);
    let error = queries::history(&mut conn, tenant, "invoice", a.pos[0].0)
        .await
        .unwrap_err();
    assert!(matches!(&error, QueryError::BadParameter { name, .. } if name == "order_type"));
    assert!(error.to_string().contains("order_type"));
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn get_and_history_answer_for_their_tenant_only() {
    let (db, a, b) = setup().await;
    let mut conn = db.pool.acquire().await.unwrap();
    let (tenant, other) = (a.log.tenant, b.log.tenant);
    let (po, state) = &a.pos[2];

    let document = queries::get(&mut conn, tenant, Resource::PurchaseOrders, *po)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        document,
        documents::purchase_order(state, &a.log.stamp(*po))
    );
    assert_eq!(document["version"], json!(a.log.of(*po).len()));
    assert_eq!(
        queries::get(&mut conn, other, Resource::PurchaseOrders, *po)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        queries::get(&mut conn, tenant, Resource::SalesOrders, *po)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        queries::get(&mut conn, tenant, Resource::PurchaseOrders, Uuid::new_v4())
            .await
            .unwrap(),
        None
    );
    let supplier = queries::get(&mut conn, tenant, Resource::Suppliers, a.suppliers[2])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&supplier["name"], &supplier["active"], &supplier["version"]),
        (&json!("Zeta Meats"), &json!(false), &json!(2))
    );
    let so = queries::get(&mut conn, tenant, Resource::SalesOrders, a.sos[1].0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(so["status"], json!("confirmed"));

    let history = queries::history(&mut conn, tenant, "purchase_order", *po)
        .await
        .unwrap();
    let events = a.log.of(*po);
    assert_eq!(history.len(), events.len());
    for (item, event) in history.iter().zip(&events) {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "position",
                "sequence",
                "event_type",
                "actor",
                "actor_name",
                "occurred_at",
                "summary",
                "changes"
            ])
        );
        assert_eq!(item["position"], json!(event.position));
        assert_eq!(item["sequence"], json!(event.sequence));
        assert_eq!(item["event_type"], json!(event.event_type));
        assert_eq!(item["occurred_at"], json!(event.recorded_at));
    }
    assert_eq!(
        history
            .iter()
            .map(|h| h["summary"].as_str().unwrap())
            .collect::<Vec<_>>(),
        [
            "Created by Mary Jones (PO-000003, 1 line, 6000.00 USD)",
            "Submitted by Mary Jones (6000.00 USD)",
            "Approved by Pat Manager",
            "Payment of 500.00 USD (check) recorded by Pat Manager",
        ]
    );
    assert_eq!(history[2]["actor"], json!("pat"));
    assert_eq!(history[2]["actor_name"], json!("Pat Manager"));
    assert_eq!(
        history[2]["changes"],
        json!({"status": {"from": "submitted", "to": "approved"}})
    );
    assert!(queries::history(&mut conn, other, "purchase_order", *po)
        .await
        .unwrap()
        .is_empty());
    assert!(queries::history(&mut conn, tenant, "sales_order", *po)
        .await
        .unwrap()
        .is_empty());
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn queries_work_for_a_non_superuser_under_row_level_security() {
    let (db, a, b) = setup().await;
    let role = format!("api_reader_{}", &Uuid::new_v4().simple().to_string()[..12]);
    // A login of the service (read.current_tenant() gives the tenant a transaction sets only
    // to the service, the owner and superusers).
    for statement in [
        format!("create role {role} login in role oms_service"),
        format!("grant usage on schema read to {role}"),
        format!("grant select on all tables in schema read to {role}"),
    ] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }
    let options = common::options(&db.name).username(&role);
    let result = tokio::spawn(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
        // Without a tenant, row-level security shows this role nothing ...
        let bare: i64 = sqlx::query_scalar("select count(*) from read.purchase_orders")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(bare, 0);
        // ... and the queries scope themselves to the tenant they are asked about.
        for catalog in [&a, &b] {
            let tenant = catalog.log.tenant;
            let page = queries::list(&mut conn, tenant, Resource::PurchaseOrders, &filtered(&[]))
                .await
                .unwrap();
            let listed: BTreeSet<Uuid> = ids(&page).into_iter().collect();
            assert_eq!(listed, catalog.pos_where(|_, _| true));
            let (po, _) = &catalog.pos[0];
            assert!(
                queries::get(&mut conn, tenant, Resource::PurchaseOrders, *po)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(!queries::history(&mut conn, tenant, "purchase_order", *po)
                .await
                .unwrap()
                .is_empty());
        }
        // The explicit filter and the policy agree: A's order is not B's.
        let (po, _) = &a.pos[0];
        assert!(
            queries::get(&mut conn, b.log.tenant, Resource::PurchaseOrders, *po)
                .await
                .unwrap()
                .is_none()
        );
        conn.close().await.unwrap();
    })
    .await;
    for statement in [format!("drop owned by {role}"), format!("drop role {role}")] {
        sqlx::query(&statement).execute(&db.pool).await.unwrap();
    }
    db.drop().await;
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}
