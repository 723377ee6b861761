//! Personal data: suppliers' and customers' contact name, e-mail, phone and address are stored
//! encrypted, read in plaintext while their data key exists, and gone for good — from the
//! database, the read models, the JetStream stream and the audit export — once erased, while
//! the hash chain still verifies.

use crate::helpers::*;
use oms_api::auth::Role;
use oms_domain::reference::{Customer, Reference};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

/// Every (table, column, matches) of every text-like or JSON column in the database whose
/// value contains `needle` (as text, case-insensitively).
async fn search_database(pool: &PgPool, needle: &str) -> Vec<(String, String, i64)> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "select c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text
           from information_schema.columns c
           join information_schema.tables t
             on t.table_schema = c.table_schema and t.table_name = c.table_name
          where c.table_schema not in ('pg_catalog', 'information_schema')
            and t.table_type = 'BASE TABLE'
            and c.data_type in ('text', 'character varying', 'character', 'jsonb', 'json',
                                'bytea')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        columns.iter().any(|c| c.1 == "events" && c.2 == "payload"),
        "the search covers the events' payloads"
    );
    let mut found = Vec::new();
    for (schema, table, column, data_type) in columns {
        // bytea is searched for the needle's bytes: a plaintext byte string shows in it.
        let condition = if data_type == "bytea" {
            format!("position(convert_to($1, 'UTF8') in \"{column}\") > 0")
        } else {
            format!("position(lower($1) in lower(\"{column}\"::text)) > 0")
        };
        let count: i64 = sqlx::query_scalar(&format!(
            "select count(*) from \"{schema}\".\"{table}\" where {condition}"
        ))
        .bind(needle)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("search {schema}.{table}.{column}: {err}"));
        if count > 0 {
            found.push((format!("{schema}.{table}"), column, count));
        }
    }
    found
}

/// Every message's body in the JetStream stream, as text.
async fn stream_bodies(stack: &Stack) -> Vec<String> {
    use futures::StreamExt;
    let mut stream = stack.jetstream.get_stream("OMS_EVENTS").await.unwrap();
    let total = stream.info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            name: Some(format!("search-{}", Uuid::new_v4().simple())),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut messages = consumer
        .fetch()
        .max_messages(usize::try_from(total).unwrap())
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(message)) = messages.next().await {
        out.push(String::from_utf8_lossy(&message.payload).into_owned());
        if u64::try_from(out.len()).unwrap() >= total {
            break;
        }
    }
    assert_eq!(
        u64::try_from(out.len()).unwrap(),
        total,
        "read the whole stream"
    );
    out
}

async fn export(store: &oms_store::EventStore, tenant: Uuid) -> String {
    let mut out = Vec::new();
    oms_store::audit::export::export(
        store,
        tenant,
        None,
        None,
        oms_store::audit::export::ExportFormat::Ndjson,
        &mut out,
    )
    .await
    .unwrap();
    String::from_utf8(out).unwrap()
}

const PERSONAL: [&str; 4] = ["contact_name", "email", "phone", "address"];

#[tokio::test]
async fn erased_personal_data_is_gone_everywhere_and_the_chain_still_verifies() {
    let stack = spawn_stack().await;
    let app = &stack.app;
    let first = json!({"name": "Metro Grocers", "code": "MET", "contact_name": "Zelda Quimby",
        "email": "zelda.quimby@metro.example", "phone": "555-0199",
        "address": "17 Larkspur Lane, Omaha"});
    let created = app
        .post_ok("/api/v1/customers", first.clone(), StatusCode::CREATED)
        .await;
    let id = id_of(&created);
    for field in PERSONAL {
        assert_eq!(
            created[field], first[field],
            "the answer is plaintext: {field}"
        );
    }
    // A change of e-mail: the old and the new value both sit in the event's `changes`.
    let changed = expect_json(
        app.patch(
            &format!("/api/v1/customers/{id}"),
            json!({"email": "z.quimby@metro.example"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["email"], "z.quimby@metro.example");
    // Another customer, not erased: its data must stay readable throughout.
    let other = app
        .post_ok(
            "/api/v1/customers",
            json!({"name": "Harbor Foods", "email": "buyer@harbor.example"}),
            StatusCode::CREATED,
        )
        .await;
    let other_id = id_of(&other);
    stack
        .wait_projected(app.tenant, Duration::from_secs(20))
        .await;

    let values = [
        "Zelda Quimby",
        "zelda.quimby@metro.example",
        "z.quimby@metro.example",
        "555-0199",
        "17 Larkspur Lane",
    ];
    // Stored encrypted from the start: no event payload holds a value in plaintext.
    let payloads: Vec<String> = sqlx::query_scalar(
        "select payload::text from events where tenant_id = $1 and aggregate_id = $2::uuid",
    )
    .bind(app.tenant)
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(payloads.len(), 2);
    for value in values {
        assert!(
            payloads.iter().all(|p| !p.contains(value)),
            "{value} is stored in plaintext: {payloads:?}"
        );
    }
    assert!(payloads[0].contains("\"enc\""), "{}", payloads[0]);
    // ... yet every reader sees plaintext while the key exists.
    let shown = expect_json(
        app.get(&format!("/api/v1/customers/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["email"], "z.quimby@metro.example");
    assert_eq!(shown["contact_name"], "Zelda Quimby");
    let csv = app
        .get("/api/v1/customers?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains("z.quimby@metro.example"), "{csv}");
    let before_erasure = export(&stack.store, app.tenant).await;
    let registered_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select recorded_at from events where tenant_id = $1 and aggregate_id = $2::uuid
          and sequence = 1",
    )
    .bind(app.tenant)
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let events = stack
        .store
        .load_stream(app.tenant, "customer", id.parse().unwrap())
        .await
        .unwrap();
    let then: Reference<Customer> = stack.store.fold(&events[..1]).unwrap();
    assert_eq!(
        then.details.unwrap().email.unwrap().as_str(),
        "zelda.quimby@metro.example",
        "time travel sees the e-mail as it was"
    );

    // Only an admin may erase; a manager is refused and nothing is written.
    let path = format!("/api/v1/customers/{id}/erase-personal-data");
    let manager = app.token_for(app.tenant, &[Role::Manager]);
    let count = app.event_count().await;
    let refused = app
        .request(Method::POST, &path, &manager)
        .send()
        .await
        .unwrap();
    expect_problem(refused, StatusCode::FORBIDDEN).await;
    assert_eq!(app.event_count().await, count);

    let erased = expect_json(
        app.request(Method::POST, &path, &app.admin())
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    for field in PERSONAL {
        assert_eq!(erased[field], Value::Null, "{field} after erasure");
    }
    assert!(erased["personal_data_erased_at"].is_string(), "{erased}");
    assert_eq!(
        erased["name"], "Metro Grocers",
        "what is not personal stays"
    );
    let key_left: i64 =
        sqlx::query_scalar("select count(*) from data_keys where subject_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(key_left, 0, "the data key is destroyed");
    // A second erasure is refused.
    let again = app
        .request(Method::POST, &path, &app.admin())
        .send()
        .await
        .unwrap();
    expect_problem(again, StatusCode::CONFLICT).await;
    stack
        .wait_projected(app.tenant, Duration::from_secs(20))
        .await;

    // Every view: the document, the list, CSV, time travel.
    let shown = expect_json(
        app.get(&format!("/api/v1/customers/{id}")).await,
        StatusCode::OK,
    )
    .await;
    for field in PERSONAL {
        assert_eq!(shown[field], Value::Null, "{field}: {shown}");
    }
    assert_eq!(
        shown["personal_data_erased_at"],
        erased["personal_data_erased_at"]
    );
    let list = expect_json(app.get("/api/v1/customers").await, StatusCode::OK).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == id.as_str())
        .unwrap();
    assert_eq!(listed["email"], Value::Null);
    assert!(listed["personal_data_erased_at"].is_string());
    let csv = app
        .get("/api/v1/customers?format=csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains("buyer@harbor.example"), "{csv}");
    let events = stack
        .store
        .load_stream(app.tenant, "customer", id.parse().unwrap())
        .await
        .unwrap();
    let then: Reference<Customer> = stack.store.fold(&events[..1]).unwrap();
    assert_eq!(
        then.details.unwrap().email,
        None,
        "time travel to {registered_at} no longer shows the e-mail"
    );

    // A full rebuild of the read models from the store shows nothing either.
    stack.rebuild_from_store().await;
    let rebuilt = expect_json(
        app.get(&format!("/api/v1/customers/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(rebuilt, shown, "a rebuild gives the same document");
    let kept = expect_json(
        app.get(&format!("/api/v1/customers/{other_id}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        kept["email"], "buyer@harbor.example",
        "other customers keep theirs"
    );

    // The whole database, the stream and a fresh export: no value in plaintext.
    let after_erasure = export(&stack.store, app.tenant).await;
    let bodies = stream_bodies(&stack).await;
    assert!(bodies.len() >= 4, "the stream holds the events");
    for value in values {
        let found = search_database(&app.pool, value).await;
        assert!(found.is_empty(), "{value} found in {found:?}");
        assert!(
            bodies.iter().all(|body| !body.contains(value)),
            "{value} is in the stream"
        );
        assert!(!after_erasure.contains(value), "{value} is in the export");
        assert!(!before_erasure.contains(value), "{value} was in the export");
    }
    // The control value is found by the same search: the search would see a leak.
    assert!(!search_database(&app.pool, "Harbor Foods").await.is_empty());

    // The chain verifies, and so does the export taken before the erasure.
    let report = stack.store.verify_chain(app.tenant).await.unwrap();
    assert!(report.ok, "{report:?}");
    // The export taken before the erasure verifies offline, as an auditor checks it, and its
    // events' hashes are still the stored ones.
    let dir = std::env::temp_dir().join(format!("oms-erasure-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("before.ndjson");
    std::fs::write(&file, &before_erasure).unwrap();
    let file_report = oms_store::audit::export::verify_file(&file, None)
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(file_report.ok, "{file_report:?}");
    let stored_hash: Vec<u8> =
        sqlx::query_scalar("select hash from events where tenant_id = $1 and position = $2")
            .bind(app.tenant)
            .bind(file_report.head_position)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(hex::encode(stored_hash), file_report.head_hash);
}

#[tokio::test]
async fn only_suppliers_and_customers_hold_personal_data_to_erase() {
    let app = spawn_app().await;
    let plant = app
        .post_ok(
            "/api/v1/suppliers",
            json!({"name": "Prairie Packers", "email": "sales@prairie.example"}),
            StatusCode::CREATED,
        )
        .await;
    let id = id_of(&plant);
    let erased = expect_json(
        app.request(
            Method::POST,
            &format!("/api/v1/suppliers/{id}/erase-personal-data"),
            &app.admin(),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(erased["email"], Value::Null);
    // Personal data cannot be set again on an erased subject: its key is gone.
    let refused = app
        .patch(
            &format!("/api/v1/suppliers/{id}"),
            json!({"email": "new@prairie.example"}),
        )
        .await;
    expect_problem(refused, StatusCode::CONFLICT).await;
    let missing = app
        .request(
            Method::POST,
            &format!("/api/v1/customers/{}/erase-personal-data", Uuid::now_v7()),
            &app.admin(),
        )
        .send()
        .await
        .unwrap();
    expect_problem(missing, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn rotating_the_master_key_rewraps_every_data_key_and_keeps_the_data_readable() {
    const OLD: &str = "the-old-master-key-of-this-test-0123456789";
    const NEW: &str = "the-new-master-key-of-this-test-9876543210";
    let old = oms_store::personal::MasterKey::from_secret(OLD).unwrap();
    let new = oms_store::personal::MasterKey::from_secret(NEW).unwrap();
    let configured = old.clone();
    let app = spawn_api_with(move |config| config.data_key = Some(configured)).await;
    let mut ids = Vec::new();
    for (kind, email) in [
        ("suppliers", "ann@supplier.example"),
        ("customers", "bob@customer.example"),
    ] {
        let created = app
            .post_ok(
                &format!("/api/v1/{kind}"),
                json!({"name": format!("{kind} one"), "email": email}),
                StatusCode::CREATED,
            )
            .await;
        ids.push((
            kind.trim_end_matches('s').to_string(),
            id_of(&created),
            email,
        ));
    }
    let wrapped_by = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>("select distinct master_key_id from data_keys")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    assert_eq!(
        wrapped_by(app.pool.clone()).await,
        vec![old.id().to_string()]
    );

    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(["data-keys", "rotate"])
        .env("DATABASE_URL", database_url(&database))
        .env("OMS_DATA_KEY", OLD)
        .env("OMS_NEW_DATA_KEY", NEW)
        .env_remove("OMS_DATA_KEY_FILE")
        .env_remove("OMS_NEW_DATA_KEY_FILE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("re-wrapped 2 data keys"), "{said}");
    assert_eq!(
        wrapped_by(app.pool.clone()).await,
        vec![new.id().to_string()]
    );

    // Under the new key every event reads as before; under the old one none does (its
    // envelopes stay sealed and the fold refuses them rather than showing null).
    let under_new = oms_store::EventStore::new(app.pool.clone()).with_master_key(new);
    let under_old = oms_store::EventStore::new(app.pool.clone()).with_master_key(old);
    for (kind, id, email) in &ids {
        let events = under_new
            .load_stream(app.tenant, kind, id.parse().unwrap())
            .await
            .unwrap();
        let payload = &under_new.upcast(&events[0]).payload;
        let details = payload.as_object().unwrap().values().next().unwrap();
        assert_eq!(details["details"]["email"], *email, "{kind}");
        let events = under_old
            .load_stream(app.tenant, kind, id.parse().unwrap())
            .await
            .unwrap();
        let sealed = &under_old.upcast(&events[0]).payload;
        let details = sealed.as_object().unwrap().values().next().unwrap();
        assert!(details["details"]["email"]["enc"].is_string(), "{sealed}");
    }
    // A current key that wrapped none of the keys is refused, and changes nothing.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(["data-keys", "rotate"])
        .env("DATABASE_URL", database_url(&database))
        .env("OMS_DATA_KEY", "a-stranger-master-key-of-at-least-32-bytes")
        .env("OMS_NEW_DATA_KEY", OLD)
        .output()
        .unwrap();
    assert!(!again.status.success(), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("wrapped by neither key"),
        "{again:?}"
    );
    assert_eq!(
        wrapped_by(app.pool.clone()).await,
        vec![oms_store::personal::MasterKey::from_secret(NEW)
            .unwrap()
            .id()
            .to_string()]
    );
}

/// Appends an event as the store did before personal fields were encrypted: payload as given,
/// chained onto the tenant's head.
async fn append_legacy(
    pool: &PgPool,
    tenant: Uuid,
    aggregate_type: &str,
    id: Uuid,
    sequence: i64,
    event_type: &str,
    payload: Value,
) {
    let mut tx = pool.begin().await.unwrap();
    let (position, previous): (i64, Vec<u8>) = sqlx::query_as(
        "update tenant_heads set position = position + 1 where tenant_id = $1
         returning position, hash",
    )
    .bind(tenant)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let mut row = oms_store::StoredEvent {
        tenant_id: tenant,
        position,
        aggregate_type: aggregate_type.into(),
        aggregate_id: id,
        sequence,
        event_type: event_type.into(),
        event_version: "1.0".into(),
        payload,
        metadata: json!({"actor": "legacy"}),
        recorded_at: oms_store::hash::to_stored_precision(chrono::Utc::now()),
        hash: Vec::new(),
    };
    row.hash = oms_store::hash::chain_hash(&previous, &row).to_vec();
    sqlx::query(
        "insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence,
                             event_type, event_version, payload, metadata, recorded_at, hash)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(row.tenant_id)
    .bind(row.position)
    .bind(&row.aggregate_type)
    .bind(row.aggregate_id)
    .bind(row.sequence)
    .bind(&row.event_type)
    .bind(&row.event_version)
    .bind(&row.payload)
    .bind(&row.metadata)
    .bind(row.recorded_at)
    .bind(&row.hash)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("update tenant_heads set hash = $2 where tenant_id = $1")
        .bind(tenant)
        .bind(&row.hash)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn legacy_plaintext_events_are_encrypted_by_the_one_off_migration_and_the_chain_verifies() {
    let app = spawn_app().await;
    let store = oms_store::EventStore::new(app.pool.clone());
    let customer = Uuid::now_v7();
    let supplier = Uuid::now_v7();
    append_legacy(
        &app.pool,
        app.tenant,
        "customer",
        customer,
        1,
        "CustomerRegistered",
        json!({"Registered": {"details": {"name": "Old Mill Deli", "email": "olga@oldmill.example",
            "phone": "555-0101", "contact_name": "Olga Mills", "address": null, "code": null,
            "payment_terms": null, "credit_terms": null, "industry": null}}}),
    )
    .await;
    append_legacy(
        &app.pool,
        app.tenant,
        "supplier",
        supplier,
        1,
        "SupplierRegistered",
        json!({"Registered": {"details": {"name": "Bygone Beef", "email": "vic@bygone.example",
            "phone": null, "contact_name": null, "address": null, "code": null,
            "payment_terms": null, "credit_terms": null}}}),
    )
    .await;
    // Legacy events read as they are, and an order placed after them works alike.
    let customer_created = app
        .post_ok(
            "/api/v1/customers",
            json!({"name": "New Deli", "email": "nina@newdeli.example"}),
            StatusCode::CREATED,
        )
        .await;
    // The legacy supplier is erased before the migration: its key never existed.
    let erased = expect_json(
        app.request(
            Method::POST,
            &format!("/api/v1/suppliers/{supplier}/erase-personal-data"),
            &app.admin(),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(erased["email"], Value::Null);
    assert!(!search_database(&app.pool, "olga@oldmill.example")
        .await
        .is_empty());
    let before = store.verify_chain(app.tenant).await.unwrap();
    assert!(before.ok, "{before:?}");

    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(["data-keys", "encrypt-legacy"])
        .env("DATABASE_URL", database_url(&database))
        .env_remove("OMS_DATA_KEY")
        .env_remove("OMS_DATA_KEY_FILE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| line.contains(&app.tenant.to_string()))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["events_rewritten"], 2, "{report}");
    assert_eq!(report["first_position"], 1, "{report}");
    assert_ne!(report["head_hash_before"], report["head_hash_after"]);

    let after = store.verify_chain(app.tenant).await.unwrap();
    assert!(after.ok, "{after:?}");
    assert_eq!(after.head_hash, report["head_hash_after"]);
    // No event holds a value in plaintext any more; the erased supplier's is nowhere at all
    // (the customer's stays in its read-model row, as the document shows it while it exists).
    for value in ["olga@oldmill.example", "Olga Mills", "vic@bygone.example"] {
        let found = search_database(&app.pool, value).await;
        assert!(
            found.iter().all(|(table, _, _)| table.starts_with("read.")),
            "{value} found in {found:?}"
        );
    }
    assert_eq!(
        search_database(&app.pool, "vic@bygone.example").await,
        vec![]
    );
    // The encrypted legacy customer still reads in plaintext; the erased supplier as null;
    // the customer written encrypted all along is untouched.
    let events = store
        .load_stream(app.tenant, "customer", customer)
        .await
        .unwrap();
    let folded: Reference<Customer> = store.fold(&events).unwrap();
    let details = folded.details.unwrap();
    assert_eq!(details.email.unwrap().as_str(), "olga@oldmill.example");
    assert_eq!(details.contact_name.unwrap().as_str(), "Olga Mills");
    let events = store
        .load_stream(app.tenant, "supplier", supplier)
        .await
        .unwrap();
    let folded: Reference<oms_domain::reference::Supplier> = store.fold(&events[..1]).unwrap();
    assert_eq!(folded.details.unwrap().email, None);
    let id = id_of(&customer_created);
    let events = store
        .load_stream(app.tenant, "customer", id.parse().unwrap())
        .await
        .unwrap();
    let folded: Reference<Customer> = store.fold(&events).unwrap();
    assert_eq!(
        folded.details.unwrap().email.unwrap().as_str(),
        "nina@newdeli.example"
    );
}
