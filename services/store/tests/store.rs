//! Event-store tests against real Postgres: concurrency, gapless positions in commit order,
//! the hash chain, the cqrs-es repository, and the query plans of a command.

#[path = "common_db.rs"]
mod common_db;

use common_db::*;
use oms_store::{AppendError, EventStore, NewEvent};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// What the API would give a command of `tenant`: a test actor, no If-Match, no idempotency
/// key.
fn command_context(tenant: Uuid) -> oms_store::CommandContext {
    oms_store::CommandContext {
        tenant,
        actor: oms_store::Actor {
            subject: "test".into(),
            name: None,
        },
        request_id: "r".into(),
        correlation_id: "r".into(),
        causation_id: None,
        expected_version: None,
        idempotency: None,
    }
}

async fn store_with_tenant() -> (EventStore, PgPool, Uuid) {
    let (_, pool) = fresh_database(80).await;
    let tenant = oms_store::tenants::create(&pool, "Acme", "acme")
        .await
        .unwrap()
        .id;
    (EventStore::new(pool.clone()), pool, tenant)
}

fn event(aggregate: Uuid, sequence: i64, n: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "purchase_order".into(),
        aggregate_id: aggregate,
        sequence,
        event_type: "PurchaseOrderNoteAdded".into(),
        event_version: "1.0".into(),
        payload: json!({"NoteAdded": {"note_id": Uuid::now_v7(), "text": format!("note {n}")}}),
        metadata: json!({"actor": "test"}),
        unique_keys: Vec::new(),
        lot_movements: Vec::new(),
    }
}

/// A transaction on the maintenance path of the append-only event store (a superuser that
/// sets `oms.event_maintenance`), for tests that tamper with events on purpose.
async fn maintenance(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local oms.event_maintenance = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn two_concurrent_appends_to_one_aggregate_one_commits_the_other_conflicts() {
    let (store, _, tenant) = store_with_tenant().await;
    let order = Uuid::now_v7();
    store
        .append(tenant, vec![event(order, 1, 0)])
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.append(tenant, vec![event(order, 2, 1)]),
        store.append(tenant, vec![event(order, 2, 2)]),
    );
    let failed = match (a, b) {
        (Ok(_), Err(failed)) | (Err(failed), Ok(_)) => failed,
        other => panic!("exactly one append must commit: {other:?}"),
    };
    assert!(matches!(failed, AppendError::Conflict), "{failed:?}");
    // The loser gave its position back: the tenant has 2 events at positions 1 and 2.
    assert_eq!(store.head(tenant).await.unwrap().unwrap().position, 2);
    assert!(store.verify_chain(tenant).await.unwrap().ok);
}

/// One append holds its transaction open (before it takes the head row) while 50 later appends
/// commit; a reader following "next = checkpoint + 1" sees every position exactly once, in
/// commit order, and never skips the held one.
#[tokio::test]
async fn a_held_append_does_not_create_gaps_for_readers() {
    let (store, pool, tenant) = store_with_tenant().await;

    // The reader: polls for position checkpoint + 1 and records what it saw.
    let reader_pool = pool.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut checkpoint = 0i64;
        let mut seen = Vec::new();
        loop {
            let rows: Vec<(i64, Uuid)> = sqlx::query_as(
                "select position, aggregate_id from events where tenant_id = $1 and position > $2 order by position",
            )
            .bind(tenant)
            .bind(checkpoint)
            .fetch_all(&reader_pool)
            .await
            .unwrap();
            for (position, aggregate) in rows {
                if position != checkpoint + 1 {
                    break; // a gap: wait for it to fill, never move past it
                }
                checkpoint = position;
                seen.push((position, aggregate));
            }
            if stop_rx.try_recv().is_ok() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    // The held transaction: claims a unique key (its first write) and pauses before the head.
    let held_order = Uuid::now_v7();
    let mut held = pool.begin().await.unwrap();
    sqlx::query("insert into unique_keys (tenant_id, scope, key, aggregate_id) values ($1, 'purchase_order_number', 'PO-HELD', $2)")
        .bind(tenant)
        .bind(held_order)
        .execute(&mut *held)
        .await
        .unwrap();

    // 50 later appends commit meanwhile.
    let mut later = Vec::new();
    for n in 0..50 {
        let store = store.clone();
        later.push(tokio::spawn(async move {
            store
                .append(tenant, vec![event(Uuid::now_v7(), 1, n)])
                .await
                .unwrap()
                .position
        }));
    }
    let mut positions = Vec::new();
    for task in later {
        positions.push(task.await.unwrap());
    }
    positions.sort();
    assert_eq!(positions, (1..=50).collect::<Vec<_>>());

    // Now the held one takes the head and commits: it gets the next position, not an old one.
    let appended = store
        .append_in(&mut held, tenant, vec![event(held_order, 1, 99)])
        .await
        .unwrap();
    held.commit().await.unwrap();
    assert_eq!(appended.position, 51);

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).unwrap();
    let seen = reader.await.unwrap();
    assert_eq!(
        seen.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        (1..=51).collect::<Vec<_>>()
    );
    assert_eq!(seen.last().unwrap().1, held_order);
}

/// While an append holds the head row (between taking it and committing), later appends of the
/// same tenant wait, and commit in the order they took the row; another tenant is not held up.
#[tokio::test]
async fn positions_are_in_commit_order_while_the_head_is_held() {
    let (store, pool, tenant) = store_with_tenant().await;
    let other = oms_store::tenants::create(&pool, "Other", "other")
        .await
        .unwrap()
        .id;
    let mut held = pool.begin().await.unwrap();
    let first = store
        .append_in(&mut held, tenant, vec![event(Uuid::now_v7(), 1, 0)])
        .await
        .unwrap();
    assert_eq!(first.position, 1);

    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(tenant, vec![event(Uuid::now_v7(), 1, 1)])
                .await
                .unwrap()
                .position
        })
    };
    // Another tenant commits while this tenant's head is held.
    let elsewhere = tokio::time::timeout(
        Duration::from_secs(5),
        store.append(other, vec![event(Uuid::now_v7(), 1, 2)]),
    )
    .await
    .expect("another tenant is not blocked")
    .unwrap();
    assert_eq!(elsewhere.position, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the same tenant's append waits for the head"
    );
    let visible: i64 = sqlx::query_scalar("select count(*) from events where tenant_id = $1")
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        visible, 0,
        "nothing of this tenant is visible before the held append commits"
    );

    held.commit().await.unwrap();
    assert_eq!(waiting.await.unwrap(), 2);
}

#[tokio::test]
async fn chain_verification_names_the_position_of_a_modified_or_deleted_event() {
    let (store, pool, tenant) = store_with_tenant().await;
    for n in 0..10 {
        store
            .append(tenant, vec![event(Uuid::now_v7(), 1, n)])
            .await
            .unwrap();
    }
    let report = store.verify_chain(tenant).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_checked, 10);
    assert_eq!(report.head_position, 10);

    // A changed payload is found at its position.
    // Tampering takes the maintenance path: events are append-only (migration 0006).
    let mut tx = maintenance(&pool).await;
    sqlx::query("update events set payload = jsonb_set(payload, '{NoteAdded,text}', '\"forged\"') where tenant_id = $1 and position = 4")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store.verify_chain(tenant).await.unwrap();
    assert!(!report.ok);
    assert_eq!(report.first_bad_position, Some(4));

    // A deleted row (on a fresh tenant) is found at its position.
    let second = oms_store::tenants::create(&pool, "Second", "second")
        .await
        .unwrap()
        .id;
    for n in 0..10 {
        store
            .append(second, vec![event(Uuid::now_v7(), 1, n)])
            .await
            .unwrap();
    }
    let mut tx = maintenance(&pool).await;
    sqlx::query("delete from events where tenant_id = $1 and position = 7")
        .bind(second)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let report = store.verify_chain(second).await.unwrap();
    assert_eq!(report.first_bad_position, Some(7));

    // So is the newest event, deleted from the end.
    let third = oms_store::tenants::create(&pool, "Third", "third")
        .await
        .unwrap()
        .id;
    for n in 0..3 {
        store
            .append(third, vec![event(Uuid::now_v7(), 1, n)])
            .await
            .unwrap();
    }
    let mut tx = maintenance(&pool).await;
    sqlx::query("delete from events where tenant_id = $1 and position = 3")
        .bind(third)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.verify_chain(third).await.unwrap().first_bad_position,
        Some(3)
    );
}

#[tokio::test]
async fn a_unique_key_held_by_another_aggregate_refuses_the_append() {
    let (store, _, tenant) = store_with_tenant().await;
    let claim = |key: &str| oms_domain::UniqueKeyChange::Claim {
        scope: "supplier_code",
        key: key.into(),
    };
    let mut first = event(Uuid::now_v7(), 1, 0);
    first.unique_keys = vec![claim("PRA")];
    store.append(tenant, vec![first]).await.unwrap();
    let mut second = event(Uuid::now_v7(), 1, 1);
    second.unique_keys = vec![claim("PRA")];
    let err = store.append(tenant, vec![second]).await.unwrap_err();
    assert!(
        matches!(err, AppendError::Duplicate { ref key, .. } if key == "PRA"),
        "{err:?}"
    );
    assert_eq!(store.head(tenant).await.unwrap().unwrap().position, 1);
}

/// cqrs-es's own framework in event-store mode over our repository: events land with
/// positions and hashes, and an aggregate loads with exactly the lines it has (the 0.5.0
/// snapshot modes apply new events twice; the event-store mode must not).
#[tokio::test]
async fn cqrs_framework_runs_on_the_tenant_repository() {
    use cqrs_es::persist::PersistedEventStore;
    use cqrs_es::{CqrsFramework, EventStore as _};
    use oms_domain::reference::{Reference, ReferenceCommand, Supplier};
    use oms_domain::services::{DomainServices, FixedClock, InMemoryLookups};
    use oms_store::repository::TenantEventRepository;
    use std::sync::Arc;

    let (store, _, tenant) = store_with_tenant().await;
    let repository =
        TenantEventRepository::new(store.clone(), tenant, oms_store::aggregates::unique_keys_of);
    let event_store = PersistedEventStore::<_, Reference<Supplier>>::new_event_store(repository);
    let services = DomainServices::new(
        Arc::new(InMemoryLookups::new()),
        Arc::new(FixedClock(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        )),
    );
    let cqrs = CqrsFramework::new(event_store, vec![], services);
    let id = Uuid::now_v7();
    let supplier: Supplier =
        serde_json::from_value(json!({"name": "Prairie", "code": "PRA"})).unwrap();
    cqrs.execute(&id.to_string(), ReferenceCommand::Register(supplier))
        .await
        .unwrap();
    let patch = serde_json::from_value(json!({"active": false})).unwrap();
    cqrs.execute(&id.to_string(), ReferenceCommand::Update(patch))
        .await
        .unwrap();

    let repository =
        TenantEventRepository::new(store.clone(), tenant, oms_store::aggregates::unique_keys_of);
    let event_store = PersistedEventStore::<_, Reference<Supplier>>::new_event_store(repository);
    let context = event_store.load_aggregate(&id.to_string()).await.unwrap();
    let _ = context;
    let events = store.load_stream(tenant, "supplier", id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let reference: Reference<Supplier> = store.fold(&events).unwrap();
    assert!(!reference.active);
    assert!(store.verify_chain(tenant).await.unwrap().ok);
    // The code was claimed through the repository too.
    let held: i64 =
        sqlx::query_scalar("select count(*) from unique_keys where tenant_id = $1 and key = 'PRA'")
            .bind(tenant)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(held, 1);
}

/// A command reads its own aggregate's rows through the primary key of one partition, and
/// updates one head row: its cost does not grow with the tenant's history.
#[tokio::test]
async fn a_commands_reads_touch_one_partition_by_primary_key() {
    let (store, pool, tenant) = store_with_tenant().await;
    // Some history: 2,000 events of other orders.
    for chunk in 0..20 {
        let events: Vec<NewEvent> = (0..100)
            .map(|n| event(Uuid::now_v7(), 1, chunk * 100 + n))
            .collect();
        store.append(tenant, events).await.unwrap();
    }
    sqlx::query("analyze events").execute(&pool).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "explain select * from events where tenant_id = $1 and aggregate_type = 'purchase_order' and aggregate_id = $2 order by sequence",
    )
    .bind(tenant)
    .bind(Uuid::now_v7())
    .fetch_all(&pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    // An index scan (plain or bitmap) on the partition's primary key, of one partition only.
    assert!(plan.contains("_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    let partitions: std::collections::BTreeSet<&str> = plan
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("events_p") && !word.ends_with("_pkey"))
        .collect();
    assert_eq!(partitions.len(), 1, "one partition only:\n{plan}");

    let head_plan: Vec<String> = sqlx::query_scalar(
        "explain update tenant_heads set position = position + 1 where tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await
    .unwrap();
    let head_plan = head_plan.join("\n");
    assert!(
        head_plan.contains("Index Scan using tenant_heads_pkey"),
        "{head_plan}"
    );
}

#[tokio::test]
async fn expired_idempotency_records_are_purged_and_live_ones_kept() {
    let (_, pool, tenant) = store_with_tenant().await;
    for (key, age_hours) in [("old-1", 25), ("old-2", 48), ("fresh", 1)] {
        sqlx::query(
            "insert into idempotency_keys (tenant_id, key, request_hash, status, response, created_at)
             values ($1, $2, '', 200, '{}', now() - make_interval(hours => $3))",
        )
        .bind(tenant)
        .bind(key)
        .bind(age_hours)
        .execute(&pool)
        .await
        .unwrap();
    }

    assert_eq!(
        oms_store::idempotency::purge_expired(&pool, 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        oms_store::idempotency::purge_expired(&pool, 100)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        oms_store::idempotency::purge_expired(&pool, 100)
            .await
            .unwrap(),
        0
    );

    let left: Vec<String> = sqlx::query_scalar("select key from idempotency_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["fresh".to_string()]);
}

/// The pipeline's cache of decided states: a command on a supplier with 1,000 events costs no
/// more than twice one on a supplier with 10, and the cache is never trusted past what the
/// store holds — another process's events are applied on top of it, and a cached newest
/// event that is no longer there sends the command back to the whole stream.
#[tokio::test]
async fn a_command_on_a_long_order_reads_only_the_events_after_the_cached_state() {
    use oms_domain::reference::{Reference, ReferenceCommand, Supplier};
    use oms_domain::services::SystemClock;
    use oms_store::idempotency::Reply;
    use oms_store::{Commands, Executed, Loaded};
    use std::sync::Arc;
    use std::time::Instant;

    let (store, pool, tenant) = store_with_tenant().await;
    let ctx = command_context(tenant);
    let render = |loaded: &Loaded<Reference<Supplier>>, position: i64| Reply {
        status: 200,
        body: json!({"version": loaded.version, "position": position,
                     "state": serde_json::to_value(&loaded.aggregate).unwrap()})
        .into(),
        headers: Vec::new(),
    };
    let rename = |commands: &Commands, id: Uuid, name: String| {
        let commands = commands.clone();
        let ctx = ctx.clone();
        async move {
            let patch: <Supplier as oms_domain::reference::ReferenceKind>::Patch =
                serde_json::from_value(json!({ "name": name })).unwrap();
            let started = Instant::now();
            let executed = commands
                .execute::<Reference<Supplier>, _, _>(
                    &ctx,
                    id,
                    None,
                    |_| ReferenceCommand::Update(patch.clone()),
                    render,
                )
                .await
                .unwrap();
            let Executed::Fresh { reply, .. } = executed else {
                panic!("a fresh command")
            };
            (reply.body, started.elapsed())
        }
    };
    // Two processes' pipelines over one store.
    let one = Commands::new(store.clone(), Arc::new(SystemClock));
    let other = Commands::new(store.clone(), Arc::new(SystemClock));

    // A supplier with 1,000 events (registered, renamed once through the pipeline, then that
    // rename's payload appended 998 times more) and one with 10.
    let mut suppliers = Vec::new();
    for (code, events) in [("LONG", 1_000_i64), ("SHORT", 10)] {
        let id = Uuid::now_v7();
        let supplier: Supplier =
            serde_json::from_value(json!({"name": "Prairie", "code": code})).unwrap();
        one.execute::<Reference<Supplier>, _, _>(
            &ctx,
            id,
            None,
            |_| ReferenceCommand::Register(supplier.clone()),
            render,
        )
        .await
        .unwrap();
        rename(&one, id, "Renamed".into()).await;
        let second = store.load_stream(tenant, "supplier", id).await.unwrap()[1].clone();
        let more = (3..=events)
            .map(|sequence| NewEvent {
                aggregate_type: "supplier".into(),
                aggregate_id: id,
                sequence,
                event_type: second.event_type.clone(),
                event_version: second.event_version.clone(),
                payload: second.payload.clone(),
                metadata: second.metadata.clone(),
                unique_keys: Vec::new(),
                lot_movements: Vec::new(),
            })
            .collect();
        store.append(tenant, more).await.unwrap();
        suppliers.push(id);
    }
    let (long, short) = (suppliers[0], suppliers[1]);

    // Warm up, then compare the median of a few commands on each.
    rename(&one, long, "warm".into()).await;
    rename(&one, short, "warm".into()).await;
    let mut long_times = Vec::new();
    let mut short_times = Vec::new();
    for i in 0..15 {
        long_times.push(rename(&one, long, format!("long {i}")).await.1);
        short_times.push(rename(&one, short, format!("short {i}")).await.1);
    }
    long_times.sort();
    short_times.sort();
    let (long_median, short_median) = (long_times[7], short_times[7]);
    assert!(
        long_median <= short_median * 2 + Duration::from_millis(1),
        "1,000 events: {long_median:?}, 10 events: {short_median:?}"
    );

    // Another process appends; this one's cached state is behind and catches up from the
    // store, applying each newer event once.
    for i in 0..3 {
        rename(&other, long, format!("other {i}")).await;
    }
    let (body, _) = rename(&one, long, "after the other".into()).await;
    let events = store.load_stream(tenant, "supplier", long).await.unwrap();
    let folded: Reference<Supplier> = store.fold(&events).unwrap();
    assert_eq!(body["version"], json!(events.len()));
    assert_eq!(body["state"], serde_json::to_value(&folded).unwrap());
    assert_eq!(events.len(), 1_000 + 1 + 15 + 3 + 1);

    // The newest event the cache names goes away (a restore on the maintenance path): the
    // command reads the whole stream and appends right after what is there, leaving no gap.
    let mut tx = maintenance(&pool).await;
    sqlx::query("delete from events where tenant_id = $1 and aggregate_id = $2 and sequence = $3")
        .bind(tenant)
        .bind(long)
        .bind(i64::try_from(events.len()).unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (body, _) = rename(&one, long, "after the restore".into()).await;
    let events = store.load_stream(tenant, "supplier", long).await.unwrap();
    assert_eq!(body["version"], json!(events.len()));
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=i64::try_from(events.len()).unwrap()).collect::<Vec<_>>()
    );
    let folded: Reference<Supplier> = store.fold(&events).unwrap();
    assert_eq!(body["state"], serde_json::to_value(&folded).unwrap());
}

/// The lookups that claims and lots need, answered through a command's transaction from the
/// unique keys their events claim: a shipment finds a lot received on a purchase order by
/// its id alone, a purchase claim finds the sales claim it passes on and the purchase orders
/// that source it, and a supplier's lot number is received once per tenant.
#[tokio::test]
async fn shipments_find_received_lots_and_purchase_claims_find_sales_claims_by_id() {
    use oms_domain::error::DomainError;
    use oms_domain::purchase_order::{
        NewClaim, NewLot, NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand,
        PurchaseOrderHeader, ReceiptLineInput, LOT_NUMBER_SCOPE,
    };
    use oms_domain::reference::{Customer, Product, Reference, ReferenceCommand, Supplier};
    use oms_domain::sales_order::{
        NewSalesOrder, SalesOrder, SalesOrderCommand, SalesOrderHeader, ShipLineInput, ShipLotInput,
    };
    use oms_domain::services::SystemClock;
    use oms_store::idempotency::Reply;
    use oms_store::{CommandContext, CommandError, Commands, OmsAggregate};
    use std::sync::Arc;

    async fn exec<A: OmsAggregate>(
        commands: &Commands,
        ctx: &CommandContext,
        id: Uuid,
        command: A::Command,
    ) -> Result<A, CommandError>
    where
        A::Command: Clone,
        A::Event: oms_domain::UniqueKeys,
    {
        let state = Arc::new(std::sync::Mutex::new(None));
        let rendered = state.clone();
        commands
            .execute::<A, _, _>(
                ctx,
                id,
                None,
                |_| command.clone(),
                move |loaded, _| {
                    *rendered.lock().unwrap() = Some(loaded.aggregate.clone());
                    Reply {
                        status: 200,
                        body: json!({}).into(),
                        headers: Vec::new(),
                    }
                },
            )
            .await?;
        let state = state.lock().unwrap().take();
        Ok(state.expect("rendered"))
    }

    let (store, _pool, tenant) = store_with_tenant().await;
    let commands = Commands::new(store.clone(), Arc::new(SystemClock));
    let ctx = command_context(tenant);
    let (supplier, product, customer) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let details: Supplier = serde_json::from_value(json!({"name": "Prairie Packers"})).unwrap();
    exec::<Reference<Supplier>>(
        &commands,
        &ctx,
        supplier,
        ReferenceCommand::Register(details),
    )
    .await
    .unwrap();
    let details: Product = serde_json::from_value(
        json!({"code": "TRIM81", "description": "81/19 trim", "protein": "beef"}),
    )
    .unwrap();
    exec::<Reference<Product>>(
        &commands,
        &ctx,
        product,
        ReferenceCommand::Register(details),
    )
    .await
    .unwrap();
    let details: Customer = serde_json::from_value(json!({"name": "Burger Barn"})).unwrap();
    exec::<Reference<Customer>>(
        &commands,
        &ctx,
        customer,
        ReferenceCommand::Register(details),
    )
    .await
    .unwrap();

    // A purchase order receives lots A123 (600) and A124 (400).
    let today = chrono::Utc::now().date_naive();
    let po_line = Uuid::now_v7();
    let new_po = |number: &str| -> PurchaseOrderCommand {
        let header: PurchaseOrderHeader =
            serde_json::from_value(json!({"supplier_id": supplier, "order_date": today})).unwrap();
        PurchaseOrderCommand::Create(NewPurchaseOrder {
            order_number: oms_domain::values::OrderNumber::parse(number).unwrap(),
            header,
            lines: vec![
                serde_json::from_value(json!({"line_id": po_line, "product_id": product,
                "weight": "1000", "price_per_unit": "2.00"}))
                .unwrap(),
            ],
        })
    };
    let lot = |id: Uuid, number: &str, weight: &str| -> NewLot {
        serde_json::from_value(json!({"lot_id": id, "lot_number": number, "weight": weight}))
            .unwrap()
    };
    let receive = |lots: Vec<NewLot>| PurchaseOrderCommand::RecordReceipt {
        receipt_id: Uuid::now_v7(),
        received_on: today,
        complete: true,
        lines: vec![ReceiptLineInput {
            line_id: po_line,
            weight: oms_domain::values::Weight::parse("1000").unwrap(),
            quantity: None,
            lots,
        }],
    };
    let (po, lot_a, lot_b) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for command in [
        new_po("PO-LOTS-1"),
        PurchaseOrderCommand::Submit,
        PurchaseOrderCommand::Approve,
        receive(vec![lot(lot_a, "A123", "600"), lot(lot_b, "A124", "400")]),
    ] {
        exec::<PurchaseOrder>(&commands, &ctx, po, command)
            .await
            .unwrap();
    }

    // A sales order sourced from it ships 600 of lot A123, found by id alone.
    let (so, so_line) = (Uuid::now_v7(), Uuid::now_v7());
    let header: SalesOrderHeader =
        serde_json::from_value(json!({"customer_id": customer, "order_date": today})).unwrap();
    let new_so = SalesOrderCommand::Create(NewSalesOrder {
        order_number: oms_domain::values::OrderNumber::parse("SO-LOTS-1").unwrap(),
        header,
        lines: vec![
            serde_json::from_value(json!({"line_id": so_line, "product_id": product,
            "weight": "600", "price_per_unit": "2.50", "source_purchase_order_id": po}))
            .unwrap(),
        ],
    });
    exec::<SalesOrder>(&commands, &ctx, so, new_so)
        .await
        .unwrap();
    exec::<SalesOrder>(&commands, &ctx, so, SalesOrderCommand::Confirm)
        .await
        .unwrap();
    let ship = |lot_id: Uuid| SalesOrderCommand::Ship {
        shipped_on: today,
        carrier_id: None,
        carrier_release_number: None,
        lines: vec![ShipLineInput {
            line_id: so_line,
            weight: oms_domain::values::Weight::parse("600").unwrap(),
            quantity: None,
            lots: vec![ShipLotInput {
                lot_id,
                weight: oms_domain::values::Weight::parse("600").unwrap(),
            }],
        }],
    };
    let unknown = exec::<SalesOrder>(&commands, &ctx, so, ship(Uuid::now_v7())).await;
    assert!(
        matches!(&unknown, Err(CommandError::Domain(DomainError::Invalid(errors)))
            if errors[0].field == "lines[0].lots[0].lot_id" && errors[0].message == "no such lot"),
        "{unknown:?}"
    );
    let too_much = exec::<SalesOrder>(&commands, &ctx, so, ship(lot_b)).await;
    assert!(
        matches!(
            &too_much,
            Err(CommandError::Domain(DomainError::NotAllowedBecause {
                action: "ship",
                ..
            }))
        ),
        "600 of a lot of 400: {too_much:?}"
    );
    let shipped = exec::<SalesOrder>(&commands, &ctx, so, ship(lot_a))
        .await
        .unwrap();
    let shipped_lot = &shipped.lines[0].lots[0];
    assert_eq!(shipped_lot.lot_id, lot_a);
    assert_eq!(shipped_lot.lot_number.as_str(), "A123");
    assert_eq!(shipped_lot.purchase_order_id, po);
    assert_eq!(shipped_lot.supplier_id, supplier);

    // The customer claims; the claim is passed on to the packer on the source order only.
    exec::<SalesOrder>(
        &commands,
        &ctx,
        so,
        SalesOrderCommand::Deliver {
            delivered_on: today,
        },
    )
    .await
    .unwrap();
    let sales_claim = Uuid::now_v7();
    let claim = |id: Uuid| -> NewClaim {
        serde_json::from_value(json!({"claim_id": id, "reason": "temperature",
            "lines": [{"line_id": so_line, "amount": "312.40"}]}))
        .unwrap()
    };
    exec::<SalesOrder>(
        &commands,
        &ctx,
        so,
        SalesOrderCommand::RaiseClaim(claim(sales_claim)),
    )
    .await
    .unwrap();
    let pass_on = |order_id: Uuid| {
        let mut passed = claim(Uuid::now_v7());
        passed.lines[0].line_id = po_line;
        PurchaseOrderCommand::RaiseClaim {
            order_id,
            claim: passed,
            source_sales_claim_id: Some(sales_claim),
        }
    };
    let elsewhere = exec::<PurchaseOrder>(&commands, &ctx, po, pass_on(Uuid::now_v7())).await;
    assert!(
        matches!(&elsewhere, Err(CommandError::Domain(DomainError::Invalid(errors)))
            if errors[0].message == "the sales claim is on no sales line sourced from this purchase order"),
        "{elsewhere:?}"
    );
    let passed = exec::<PurchaseOrder>(&commands, &ctx, po, pass_on(po))
        .await
        .unwrap();
    assert_eq!(passed.claims[0].source_sales_claim_id, Some(sales_claim));

    // The same supplier's lot A123 cannot be received again, on any order of the tenant.
    let other = Uuid::now_v7();
    for command in [
        new_po("PO-LOTS-2"),
        PurchaseOrderCommand::Submit,
        PurchaseOrderCommand::Approve,
    ] {
        exec::<PurchaseOrder>(&commands, &ctx, other, command)
            .await
            .unwrap();
    }
    let again = exec::<PurchaseOrder>(
        &commands,
        &ctx,
        other,
        receive(vec![lot(Uuid::now_v7(), "A123", "1000")]),
    )
    .await;
    assert!(
        matches!(&again, Err(CommandError::Duplicate { scope, key })
            if scope == LOT_NUMBER_SCOPE && *key == format!("{supplier}/A123")),
        "{again:?}"
    );
    let stream = store
        .load_stream(tenant, "purchase_order", other)
        .await
        .unwrap();
    assert_eq!(stream.len(), 3, "the refused receipt wrote nothing");
}

/// Large values are compressed with lz4 wherever the server has it: every JSON, text and
/// binary column of the service's tables, partitions of the event store included, and a
/// recorded response as it is actually stored.
#[tokio::test]
async fn large_values_are_compressed_with_lz4_where_the_server_has_it() {
    let (_, pool, tenant) = store_with_tenant().await;
    let has_lz4: bool = sqlx::query_scalar(
        "select 'lz4' = any(enumvals) from pg_settings where name = 'default_toast_compression'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    if !has_lz4 {
        eprintln!("this Postgres has no lz4; nothing to check");
        return;
    }
    let other: Vec<String> = sqlx::query_scalar(
        "select format('%s.%s.%s (%s)', n.nspname, c.relname, a.attname, a.attcompression)
           from pg_attribute a
           join pg_class c on c.oid = a.attrelid
           join pg_namespace n on n.oid = c.relnamespace
          where n.nspname in ('public', 'read') and c.relkind in ('r', 'p')
            and a.attnum > 0 and not a.attisdropped and c.relname <> '_sqlx_migrations'
            and a.atttypid in ('jsonb'::regtype, 'json'::regtype, 'text'::regtype, 'bytea'::regtype)
            and a.attcompression <> 'l'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(other.is_empty(), "columns not on lz4: {other:?}");
    let partitions: i64 = sqlx::query_scalar(
        "select count(*) from pg_attribute a join pg_class c on c.oid = a.attrelid
          where c.relname like 'events\\_p%' and a.attname = 'payload' and a.attcompression = 'l'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(partitions, 8, "every partition of the event store");

    // A response of ~90 KB, as a command on an order with a thousand notes records.
    let notes: Vec<_> = (0..1000)
        .map(|_| json!({"note_id": Uuid::new_v4(), "text": "a note to make the order long"}))
        .collect();
    sqlx::query(
        "insert into idempotency_keys (tenant_id, key, request_hash, status, response)
         values ($1, 'big', '', 200, $2)",
    )
    .bind(tenant)
    .bind(json!({ "order_notes": notes }))
    .execute(&pool)
    .await
    .unwrap();
    let method: Option<String> = sqlx::query_scalar(
        "select pg_column_compression(response) from idempotency_keys where key = 'big'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(method.as_deref(), Some("lz4"));
}

/// A response the pipeline tests do not look at.
fn no_reply<A>(_: &oms_store::Loaded<A>, _: i64) -> oms_store::idempotency::Reply {
    oms_store::idempotency::Reply {
        status: 200,
        body: json!({}).into(),
        headers: Vec::new(),
    }
}

/// Registers a supplier (`supplier`: its details) and a product through `commands`; their ids.
async fn register_supplier_and_product(
    commands: &oms_store::Commands,
    ctx: &oms_store::CommandContext,
    supplier: serde_json::Value,
) -> (Uuid, Uuid) {
    use oms_domain::reference::{Product, Reference, ReferenceCommand, Supplier};
    let (supplier_id, product_id) = (Uuid::now_v7(), Uuid::now_v7());
    let details: Supplier = serde_json::from_value(supplier).unwrap();
    commands
        .execute::<Reference<Supplier>, _, _>(
            ctx,
            supplier_id,
            None,
            |_| ReferenceCommand::Register(details.clone()),
            no_reply,
        )
        .await
        .unwrap();
    let details: Product = serde_json::from_value(
        json!({"code": "TRIM81", "description": "81/19 trim", "protein": "beef"}),
    )
    .unwrap();
    commands
        .execute::<Reference<Product>, _, _>(
            ctx,
            product_id,
            None,
            |_| ReferenceCommand::Register(details.clone()),
            no_reply,
        )
        .await
        .unwrap();
    (supplier_id, product_id)
}

/// Creates a purchase order `id` through `commands`: from `supplier`, one line of `product`,
/// numbered from the series.
async fn create_purchase_order(
    commands: &oms_store::Commands,
    ctx: &oms_store::CommandContext,
    id: Uuid,
    supplier: Uuid,
    product: Uuid,
) -> Result<oms_store::Executed, oms_store::CommandError> {
    use oms_domain::purchase_order::{
        NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand, PurchaseOrderHeader,
    };
    let create = move |assigned: Option<String>| {
        let header: PurchaseOrderHeader =
            serde_json::from_value(json!({"supplier_id": supplier, "order_date": "2026-11-02"}))
                .unwrap();
        PurchaseOrderCommand::Create(NewPurchaseOrder {
            order_number: oms_domain::values::OrderNumber::parse(&assigned.expect("a number"))
                .unwrap(),
            header,
            lines: vec![serde_json::from_value(json!({"line_id": Uuid::now_v7(),
                "product_id": product, "weight": "10", "price_per_unit": "2.00"}))
            .unwrap()],
        })
    };
    commands
        .execute::<PurchaseOrder, _, _>(
            ctx,
            id,
            Some(oms_domain::NumberSeries::PURCHASE_ORDER),
            create,
            no_reply,
        )
        .await
}

/// The events stored under purchase order `id`.
async fn purchase_order_events(
    store: &EventStore,
    tenant: Uuid,
    id: Uuid,
) -> Vec<oms_store::StoredEvent> {
    store
        .load_stream(tenant, "purchase_order", id)
        .await
        .unwrap()
}

/// A create that takes a number is decided on the empty state without reading its stream
/// when this process holds nothing of its id (group commit checks the id still has no event
/// under the tenant's head lock). On an id another process already created it is refused as
/// when read (`AlreadyExists`), writes nothing, and gives its number back: the next create
/// takes the next number, and the idempotency record of the first answers its repeat.
#[tokio::test]
async fn a_create_decided_without_reading_is_refused_on_an_id_with_events_and_takes_no_number() {
    use oms_domain::error::DomainError;
    use oms_domain::services::SystemClock;
    use oms_store::idempotency::IdempotencyKey;
    use oms_store::{CommandContext, CommandError, Commands, Executed};
    use std::sync::Arc;

    let (store, _pool, tenant) = store_with_tenant().await;
    let ctx = command_context(tenant);
    // Two processes' pipelines over one store.
    let one = Commands::new(store.clone(), Arc::new(SystemClock));
    let other = Commands::new(store.clone(), Arc::new(SystemClock));
    let (supplier, product) =
        register_supplier_and_product(&one, &ctx, json!({"name": "Prairie Packers"})).await;
    let run = |commands: Commands, ctx: CommandContext, id: Uuid| async move {
        create_purchase_order(&commands, &ctx, id, supplier, product).await
    };
    let number_of = |id: Uuid| {
        let store = store.clone();
        async move {
            let events = purchase_order_events(&store, tenant, id).await;
            assert_eq!(events.len(), 1, "one event under {id}");
            events[0].payload["Created"]["order_number"].clone()
        }
    };
    let keyed = |key: &str| CommandContext {
        idempotency: Some(IdempotencyKey::new(
            key.into(),
            "POST",
            "/api/v1/purchase-orders",
            b"{}",
        )),
        ..ctx.clone()
    };

    // One process creates the order.
    let id = Uuid::now_v7();
    let first = run(one.clone(), keyed("first"), id).await.unwrap();
    assert!(matches!(first, Executed::Fresh { .. }), "{first:?}");
    assert_eq!(number_of(id).await, json!("PO-000001"));

    // The other holds nothing of it, decides the create on the empty state, and is refused
    // as when read; nothing is written.
    let refused = run(other.clone(), ctx.clone(), id).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(DomainError::AlreadyExists))
        ),
        "{refused:?}"
    );
    assert_eq!(number_of(id).await, json!("PO-000001"));

    // No number was lost, and the first create's repeat is answered from its record.
    let next = Uuid::now_v7();
    run(other.clone(), ctx.clone(), next).await.unwrap();
    assert_eq!(number_of(next).await, json!("PO-000002"));
    let repeat = run(other.clone(), keyed("first"), Uuid::now_v7())
        .await
        .unwrap();
    assert!(matches!(repeat, Executed::Replayed(_)), "{repeat:?}");
}

/// A create is decided on the references' states this process cached (no read before its
/// batch); the batch checks each one is still the newest under the tenant's head lock. A
/// supplier another process deactivated meanwhile refuses the create as a read would: nothing
/// is written, no number is taken, and the stale state is dropped, so the next create reads
/// it instead of being set aside again.
#[tokio::test]
async fn a_create_decided_on_a_cached_reference_another_process_deactivated_is_refused_and_takes_no_number(
) {
    use oms_domain::error::DomainError;
    use oms_domain::reference::{Reference, ReferenceCommand, Supplier};
    use oms_domain::services::SystemClock;
    use oms_store::{CommandError, Commands};
    use std::sync::Arc;

    let (store, _pool, tenant) = store_with_tenant().await;
    let ctx = command_context(tenant);
    // Two processes' pipelines over one store.
    let one = Commands::new(store.clone(), Arc::new(SystemClock));
    let other = Commands::new(store.clone(), Arc::new(SystemClock));
    let (supplier, product) =
        register_supplier_and_product(&one, &ctx, json!({"name": "Prairie Packers"})).await;
    let set_active = |active: bool| {
        let other = other.clone();
        let ctx = ctx.clone();
        async move {
            other
                .execute::<Reference<Supplier>, _, _>(
                    &ctx,
                    supplier,
                    None,
                    |_| {
                        ReferenceCommand::Update(
                            serde_json::from_value(json!({"active": active})).unwrap(),
                        )
                    },
                    no_reply,
                )
                .await
                .unwrap();
        }
    };
    let run = |id: Uuid| create_purchase_order(&one, &ctx, id, supplier, product);
    let events_of = |id: Uuid| purchase_order_events(&store, tenant, id);
    let set_aside = || one.group_commit_counters().alone.get();

    // The first create reads the references it does not hold and keeps them.
    let first = Uuid::now_v7();
    run(first).await.unwrap();
    assert_eq!(
        events_of(first).await[0].payload["Created"]["order_number"],
        json!("PO-000001")
    );

    // The other process deactivates the supplier; this one still holds it active, decides the
    // create on that, and the batch finds the supplier's newest event is another one.
    set_active(false).await;
    let refused_id = Uuid::now_v7();
    let refused = run(refused_id).await;
    assert!(
        matches!(&refused, Err(CommandError::Domain(DomainError::Invalid(errors)))
            if format!("{errors:?}").contains("supplier is inactive")),
        "{refused:?}"
    );
    assert!(events_of(refused_id).await.is_empty(), "nothing written");
    assert_eq!(set_aside(), 1, "set aside by its batch once");

    // The stale state was dropped: the next create reads the supplier and is refused before
    // any batch.
    let again = run(Uuid::now_v7()).await;
    assert!(
        matches!(again, Err(CommandError::Domain(DomainError::Invalid(_)))),
        "{again:?}"
    );
    assert_eq!(set_aside(), 1, "not set aside again");

    // Reactivated: the next create gets the number the refused ones did not take.
    set_active(true).await;
    let next = Uuid::now_v7();
    run(next).await.unwrap();
    assert_eq!(
        events_of(next).await[0].payload["Created"]["order_number"],
        json!("PO-000002")
    );
}

/// A supplier with personal data, registered by another process (whose keyring holds its data
/// key, this one's not yet), can be put on an order: the lookups read the data key with the
/// events, alone in a create's transaction or through the pool. Read through the pool, the
/// supplier is kept as its decided state with its personal fields decrypted: the next command
/// on the supplier, decided on that state, answers with them as a fresh read would.
#[tokio::test]
async fn a_supplier_with_personal_data_from_another_process_is_looked_up_and_kept_decrypted() {
    use oms_domain::reference::{Reference, ReferenceCommand, Supplier};
    use oms_domain::services::SystemClock;
    use oms_store::Commands;
    use std::sync::{Arc, Mutex};

    let (store, pool, tenant) = store_with_tenant().await;
    let ctx = command_context(tenant);
    // Two processes: each its own store, and so its own keyring.
    let one = Commands::new(store.clone(), Arc::new(SystemClock));
    let other = Commands::new(EventStore::new(pool.clone()), Arc::new(SystemClock));
    let (supplier, product) = register_supplier_and_product(
        &other,
        &ctx,
        json!({"name": "Prairie Packers", "contact_name": "Ann Smith"}),
    )
    .await;

    // A third process, each command in a transaction of its own, looks the supplier up in
    // its create's transaction.
    let alone = Commands::new(EventStore::new(pool.clone()), Arc::new(SystemClock))
        .with_group_commit(false);
    create_purchase_order(&alone, &ctx, Uuid::now_v7(), supplier, product)
        .await
        .unwrap();

    // This process's create looks the supplier up through the pool, and keeps it.
    create_purchase_order(&one, &ctx, Uuid::now_v7(), supplier, product)
        .await
        .unwrap();

    // Then renames it: the state it answers with still has the contact.
    let seen = Arc::new(Mutex::new(String::new()));
    let shown = seen.clone();
    one.execute::<Reference<Supplier>, _, _>(
        &ctx,
        supplier,
        None,
        |_| ReferenceCommand::Update(serde_json::from_value(json!({"name": "Prairie"})).unwrap()),
        move |loaded: &oms_store::Loaded<Reference<Supplier>>, _| {
            *shown.lock().unwrap() = serde_json::to_string(&loaded.aggregate).unwrap();
            no_reply(loaded, 0)
        },
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains("Ann Smith"), "{seen}");
    assert!(seen.contains("Prairie\""), "{seen}");
}
