//! The AsyncAPI document at `/api/v1/asyncapi.json` is the integrators' contract: it must be a
//! valid AsyncAPI 3.0 document (checked against the official JSON Schema, vendored under
//! tests/data/asyncapi), and every message the relay really publishes — its headers and its
//! body — must match the document's schema for its event type.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;

/// The official AsyncAPI 3.0.0 schema (`@asyncapi/specs`, see tests/data/asyncapi/README.md).
const ASYNCAPI_3_SCHEMA: &str = include_str!("../data/asyncapi/asyncapi-3.0.0.schema.json");

async fn asyncapi(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/api/v1/asyncapi.json", app.address))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await
}

/// A validator for the schema at `pointer` of `document`, resolving the document's own
/// `$ref`s (`#/components/schemas/…`) in it.
fn validator(document: &Value, pointer: &str) -> jsonschema::Validator {
    let mut root = document.clone();
    root["allOf"] = json!([{ "$ref": format!("#{pointer}") }]);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|err| panic!("the schema at {pointer} does not compile: {err}"))
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[tokio::test]
async fn the_asyncapi_document_is_a_valid_asyncapi_3_document() {
    let app = spawn_api().await;

    // Served without a token, like the OpenAPI document.
    let document = asyncapi(&app).await;

    let official: Value = serde_json::from_str(ASYNCAPI_3_SCHEMA).unwrap();
    let asyncapi_3 = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&official)
        .unwrap();
    let problems = errors(&asyncapi_3, &document);
    assert!(problems.is_empty(), "not AsyncAPI 3.0.0: {problems:#?}");
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(
        document["channels"]["events"]["address"],
        "oms.events.{tenant}.{aggregate_type}.{aggregate_id}"
    );
    assert_eq!(
        document["channels"]["anchors"]["address"],
        "oms.anchors.{tenant}"
    );

    // Every shared schema is a valid draft-07 schema, and every message's headers and
    // payload compile with their references resolved.
    for (name, schema) in document["components"]["schemas"].as_object().unwrap() {
        assert!(
            jsonschema::draft7::meta::is_valid(schema),
            "{name} is not a draft-07 schema"
        );
    }
    let messages = document["components"]["messages"].as_object().unwrap();
    assert!(messages.len() > 40, "{} messages", messages.len());
    for (name, message) in messages {
        validator(&document, &format!("/components/messages/{name}/payload"));
        if message.get("headers").is_some() {
            validator(&document, &format!("/components/messages/{name}/headers"));
        }
    }
    // The receive operation lists every event's message.
    let listed = document["operations"]["receiveEvents"]["messages"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, messages.len() - 1, "all but the anchor's");
}

#[tokio::test]
async fn the_document_counts_against_the_clients_address_like_every_unauthenticated_route() {
    // Two requests per address at once, then one every ten seconds.
    let app = spawn_api_with(|config| config.ip_rate_limit = Some((0.1, 2.0))).await;
    let mut statuses = Vec::new();
    for path in ["/api/v1/asyncapi.json", "/api/v1/asyncapi.json", "/health"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn the_document_refuses_a_message_that_breaks_the_contract() {
    // The schemas are not vacuous: a real event's body passes, and the same body with a
    // decimal as a JSON number, an unknown choice word or a wrong type fails.
    let app = spawn_api().await;
    let document = asyncapi(&app).await;
    let payload = validator(
        &document,
        "/components/messages/PurchaseOrderPaymentRecorded/payload",
    );
    let body = json!({
        "tenant_id": Uuid::nil(), "position": 7, "aggregate_type": "purchase_order",
        "aggregate_id": Uuid::nil(), "sequence": 5, "event_type": "PurchaseOrderPaymentRecorded",
        "event_version": "1.0",
        "payload": {"PaymentRecorded": {
            "payment_id": Uuid::nil(), "amount": "100.00", "paid_on": "2026-11-03",
            "method": "wire", "reference": null, "amount_paid": "100.00",
            "outstanding": "0.00", "payment_status": "paid"}},
        "metadata": {}, "recorded_at": "2026-11-03T10:00:00.000000Z",
        "hash": "ab".repeat(32),
    });
    assert_eq!(errors(&payload, &body), Vec::<String>::new());
    for (pointer, bad) in [
        ("/payload/PaymentRecorded/amount", json!(100.0)),
        ("/payload/PaymentRecorded/amount", json!("100.5")),
        ("/payload/PaymentRecorded/method", json!("bitcoin")),
        ("/payload/PaymentRecorded/paid_on", json!(20261103)),
        ("/event_type", json!("PurchaseOrderClosed")),
        ("/hash", json!("not hex")),
    ] {
        let mut broken = body.clone();
        *broken.pointer_mut(pointer).unwrap() = bad.clone();
        assert!(!payload.is_valid(&broken), "{pointer} = {bad} was accepted");
    }
}

/// Commands that write (nearly) every kind of event: reference data registered, updated,
/// deactivated and reactivated; a purchase order edited, rejected, approved, paid, received
/// in lots, noted, claimed against, refunded and closed; one cancelled; a sales order shipped
/// from those lots, delivered, invoiced, paid and closed. Returns the tenant's head.
async fn every_kind_of_event(app: &TestApp) -> i64 {
    let (supplier, product) = app.reference_data().await;
    let customer = app.customer().await;
    let plant = app
        .post_ok(
            "/api/v1/plants",
            json!({"name": "Plant 245E", "code": "245E", "establishment_number": "EST 245E"}),
            StatusCode::CREATED,
        )
        .await;
    let carrier = app
        .post_ok(
            "/api/v1/carriers",
            json!({"name": "Cold Road", "code": "COLD", "carrier_type": "truck"}),
            StatusCode::CREATED,
        )
        .await;
    for (path, body) in [
        (
            format!("/api/v1/plants/{}", id_of(&plant)),
            json!({"name": "Plant 245-E"}),
        ),
        (
            format!("/api/v1/products/{product}"),
            json!({"description": "Beef trim 80/20, fresh"}),
        ),
        (
            format!("/api/v1/customers/{customer}"),
            json!({"name": "Metro Grocers Inc"}),
        ),
        (
            format!("/api/v1/carriers/{}", id_of(&carrier)),
            json!({"active": false}),
        ),
        (
            format!("/api/v1/carriers/{}", id_of(&carrier)),
            json!({"active": true}),
        ),
    ] {
        expect_json(app.patch(&path, body).await, StatusCode::OK).await;
    }

    // A purchase order through its whole life.
    let po = app.draft_po(&supplier, &product, "1000", "2.5").await;
    let po_id = id_of(&po);
    let base = format!("/api/v1/purchase-orders/{po_id}");
    let line = po["lines"][0]["line_id"].as_str().unwrap().to_string();
    app.add_change_and_remove_a_line(
        &base,
        json!({"product_id": product, "weight": "50", "price_per_unit": "1.005", "quantity": 3}),
        "60",
    )
    .await;
    expect_json(
        app.patch(&base, json!({"notes": "call before delivery\nback door"}))
            .await,
        StatusCode::OK,
    )
    .await;
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(
        &format!("{base}/reject"),
        json!({"reason": "wrong plant"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(&format!("{base}/submit"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(&format!("{base}/approve"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(
        &format!("{base}/payments"),
        json!({"amount": "2500.00", "paid_on": "2026-11-03", "method": "wire", "reference": "FW-1"}),
        StatusCode::OK,
    )
    .await;
    let received = app
        .post_ok(
            &format!("{base}/receipts"),
            json!({"received_on": "2026-11-04", "complete": true,
                   "lines": [{"line_id": line, "weight": "900",
                              "lots": [{"lot_number": "A123", "weight": "900", "production_date": "2026-11-01"}]}]}),
            StatusCode::OK,
        )
        .await;
    let lot = received["lines"][0]["lots"][0]["lot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the line lists its lot: {received}"))
        .to_string();
    app.post_ok(
        &format!("{base}/notes"),
        json!({"text": "short 100 lb"}),
        StatusCode::OK,
    )
    .await;
    let raised = app
        .post_ok(
            &format!("{base}/claims"),
            json!({"reason": "quality", "notes": "warm",
                   "lines": [{"line_id": line, "amount": "100.00", "weight": "40"}]}),
            StatusCode::CREATED,
        )
        .await;
    let claim = raised["claims"][0]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_ok(
        &format!("{base}/claims/{claim}/accept"),
        json!({"credit_note_number": "PRA-CM-77"}),
        StatusCode::OK,
    )
    .await;
    let raised = app
        .post_ok(
            &format!("{base}/claims"),
            json!({"reason": "short_weight", "lines": [{"line_id": line, "amount": "10.00"}]}),
            StatusCode::CREATED,
        )
        .await;
    let rejected = raised["claims"][1]["claim_id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post_ok(
        &format!("{base}/claims/{rejected}/reject"),
        json!({"reason": "weighed right"}),
        StatusCode::OK,
    )
    .await;
    // Paid 2500.00 for 2250.00 received, credited 100.00: 350.00 comes back.
    app.post_ok(
        &format!("{base}/refunds"),
        json!({"amount": "350.00", "refunded_on": "2026-11-10", "method": "ach"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(&format!("{base}/close"), json!({}), StatusCode::OK)
        .await;

    let cancelled = app.draft_po(&supplier, &product, "10", "1").await;
    app.post_ok(
        &format!("/api/v1/purchase-orders/{}/cancel", id_of(&cancelled)),
        json!({"reason": "supplier sold out"}),
        StatusCode::OK,
    )
    .await;

    // A sales order shipped from the lot.
    let so = app
        .post_ok(
            "/api/v1/sales-orders",
            json!({"customer_id": customer, "order_date": "2026-11-05",
                   "lines": [{"product_id": product, "weight": "500", "price_per_unit": "3.1",
                              "source_purchase_order_id": po_id}]}),
            StatusCode::CREATED,
        )
        .await;
    let so_line = so["lines"][0]["line_id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/sales-orders/{}", id_of(&so));
    app.post_ok(&format!("{base}/confirm"), json!({}), StatusCode::OK)
        .await;
    app.post_ok(
        &format!("{base}/ship"),
        json!({"shipped_on": "2026-11-06", "carrier_id": id_of(&carrier),
               "lines": [{"line_id": so_line, "weight": "500",
                          "lots": [{"lot_id": lot, "weight": "500"}]}]}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("{base}/deliver"),
        json!({"delivered_on": "2026-11-07"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("{base}/invoice"),
        json!({"invoice_date": "2026-11-07", "due_date": "2026-12-07"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("{base}/payments"),
        json!({"amount": "1550.00", "paid_on": "2026-11-08", "method": "ach"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("{base}/notes"),
        json!({"text": "paid"}),
        StatusCode::OK,
    )
    .await;
    app.post_ok(&format!("{base}/close"), json!({}), StatusCode::OK)
        .await;

    // A sales order edited, then cancelled; a supplier renamed.
    let so = app
        .post_ok(
            "/api/v1/sales-orders",
            json!({"customer_id": customer, "order_date": "2026-11-05",
                   "lines": [{"product_id": product, "weight": "10", "price_per_unit": "3"}]}),
            StatusCode::CREATED,
        )
        .await;
    let base = format!("/api/v1/sales-orders/{}", id_of(&so));
    app.add_change_and_remove_a_line(
        &base,
        json!({"product_id": product, "weight": "5", "price_per_unit": "3"}),
        "6",
    )
    .await;
    expect_json(
        app.patch(&base, json!({"customer_po_number": "MG-1"}))
            .await,
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("{base}/cancel"),
        json!({"reason": "customer changed their mind"}),
        StatusCode::OK,
    )
    .await;
    expect_json(
        app.patch(
            &format!("/api/v1/suppliers/{supplier}"),
            json!({"name": "Prairie Packers Ltd"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    // Personal data travels sealed (docs/privacy.md): the schema must say so.
    expect_json(
        app.patch(
            &format!("/api/v1/suppliers/{supplier}"),
            json!({"contact_name": "Dana Reyes", "email": "dana@prairie.example"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    expect_json(
        app.patch(
            &format!("/api/v1/customers/{customer}"),
            json!({"phone": "+1 555 0100", "address": "1 Market St"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    app.post_ok(
        &format!("/api/v1/customers/{customer}/erase-personal-data"),
        json!({}),
        StatusCode::OK,
    )
    .await;

    app.event_count().await
}

/// Every message of the events' stream, with its headers as a JSON object of strings.
async fn published(stack: &Stack) -> Vec<(Value, Value)> {
    let mut stream = stack.jetstream.get_stream("OMS_EVENTS").await.unwrap();
    let total = stream.info().await.unwrap().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(usize::try_from(total).unwrap())
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let mut headers = Map::new();
        for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
            headers.insert(name.to_string(), json!(values[0].as_str()));
        }
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        out.push((Value::Object(headers), body));
        if u64::try_from(out.len()).unwrap() >= total {
            break;
        }
    }
    out
}

#[tokio::test]
async fn every_message_the_relay_publishes_matches_its_event_types_schema() {
    let stack = spawn_stack().await;
    let app = &stack.app;
    let document = asyncapi(app).await;
    every_kind_of_event(app).await;
    // And one event stored by an older version of the service (PurchaseOrderCreated 1.0,
    // which named the supplier vendor_id): it is published upcast, in the current version.
    let (supplier, product) = (Uuid::now_v7(), Uuid::now_v7());
    let old = Uuid::now_v7();
    stack
        .store
        .append(app.tenant, vec![oms_store::NewEvent {
            aggregate_type: "purchase_order".into(),
            aggregate_id: old,
            sequence: 1,
            event_type: "PurchaseOrderCreated".into(),
            event_version: "1.0".into(),
            payload: json!({"Created": {
                "order_number": "PO-OLD-1",
                "header": {"vendor_id": supplier, "order_date": "2026-10-01", "currency": "USD", "weight_unit": "LB", "logistics": "supplier_delivery"},
                "lines": [{"line_id": Uuid::now_v7(), "product_id": product, "weight": "100", "price_per_unit": "2", "quantity": null, "description": null, "amount": "200.00"}],
                "total": "200.00"}}),
            metadata: json!({"actor": "old-service"}),
            unique_keys: vec![oms_domain::UniqueKeyChange::Claim { scope: "purchase_order_number", key: "PO-OLD-1".into() }],
            lot_movements: Vec::new(),
        }])
        .await
        .unwrap();
    let head = app.event_count().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stack.relay_checkpoint(app.tenant).await < head {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let messages = published(&stack).await;
    assert_eq!(i64::try_from(messages.len()).unwrap(), head);
    let mut types = BTreeSet::new();
    let mut validators = std::collections::HashMap::new();
    for (headers, body) in &messages {
        let event_type = headers["Oms-Event-Type"]
            .as_str()
            .unwrap_or_else(|| panic!("no event type header: {headers}"))
            .to_string();
        assert!(
            document["components"]["messages"]
                .get(&event_type)
                .is_some(),
            "{event_type} is published but not in the document"
        );
        let (header_schema, payload_schema) =
            validators.entry(event_type.clone()).or_insert_with(|| {
                (
                    validator(
                        &document,
                        &format!("/components/messages/{event_type}/headers"),
                    ),
                    validator(
                        &document,
                        &format!("/components/messages/{event_type}/payload"),
                    ),
                )
            });
        let problems = errors(header_schema, headers);
        assert!(
            problems.is_empty(),
            "{event_type} headers {headers}: {problems:#?}"
        );
        let problems = errors(payload_schema, body);
        assert!(
            problems.is_empty(),
            "{event_type} body {body}: {problems:#?}"
        );
        assert!(
            !body["payload"].is_null(),
            "every event here fits a message"
        );
        types.insert(event_type);
    }
    // The workload reached most of the document's event types, of every aggregate type.
    assert!(types.len() >= 40, "{} event types: {types:?}", types.len());
    for prefix in [
        "Supplier",
        "Customer",
        "Product",
        "Plant",
        "Carrier",
        "PurchaseOrder",
        "SalesOrder",
    ] {
        assert!(
            types.iter().any(|t| t.starts_with(prefix)),
            "no {prefix} event: {types:?}"
        );
    }

    // The old event went out in the current version, marked with the version it was stored in.
    let (headers, body) = messages
        .iter()
        .find(|(_, body)| body["aggregate_id"] == json!(old))
        .unwrap();
    assert_eq!(
        body["event_version"],
        oms_domain::upcasters::PURCHASE_ORDER_CREATED_VERSION
    );
    assert_eq!(
        body["payload"]["Created"]["header"]["supplier_id"],
        json!(supplier)
    );
    assert!(body["payload"]["Created"]["header"]
        .get("vendor_id")
        .is_none());
    assert_eq!(headers["Oms-Stored-Version"], "1.0");
    // Current events carry no such header.
    assert!(messages
        .iter()
        .filter(|(_, body)| body["aggregate_id"] != json!(old))
        .all(|(headers, _)| headers.get("Oms-Stored-Version").is_none()));
}

/// The server's configuration of docs/operations.md with the integration user of
/// docs/integration.md added, for `tenant`: both as written.
fn documented_accounts_with_an_integration(tenant: Uuid) -> String {
    let block_after = |file: &str, heading: &str| {
        let docs =
            std::fs::read_to_string(format!("{}/../../docs/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        docs.split(heading)
            .nth(1)
            .and_then(|section| section.split("```text\n").nth(1))
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("docs/{file} shows a configuration under {heading}"))
            .to_string()
    };
    let accounts = block_after("operations.md", "## NATS accounts and TLS");
    let integration = block_after("integration.md", "## A NATS user per integration")
        .replace("<tenant-id>", &tenant.to_string());
    let users = "  users = [\n";
    assert!(accounts.contains(users), "{accounts}");
    accounts
        .replacen("authorization {\n", &format!("authorization {{\n{integration}"), 1)
        .replacen(
            users,
            &format!(
                "{users}    {{ user: billing, password: $OMS_NATS_BILLING_PASSWORD, permissions: $BILLING }}\n"
            ),
            1,
        )
}

#[tokio::test]
async fn an_integrations_nats_user_reads_its_tenants_events_and_nothing_else() {
    // Two tenants with events, relayed as the relay's user.
    let app = spawn_api().await;
    let other = oms_store::tenants::create(
        &app.pool,
        "Other",
        &format!("other-{}", Uuid::new_v4().simple()),
    )
    .await
    .unwrap()
    .id;
    let passwords = [
        ("OMS_NATS_RELAY_PASSWORD", "relay-password-1"),
        ("OMS_NATS_PROJECTOR_PASSWORD", "projector-password-2"),
        ("OMS_NATS_AUDITOR_PASSWORD", "auditor-password-3"),
        ("OMS_NATS_API_PASSWORD", "api-password-4"),
        ("OMS_NATS_BILLING_PASSWORD", "billing-password-5"),
    ];
    let nats = NatsServer::start_with_config(
        &documented_accounts_with_an_integration(app.tenant),
        &passwords,
    );
    let connect = |user: &'static str, password: &'static str| {
        let url = nats.url();
        async move {
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .request_timeout(Some(Duration::from_secs(2)))
                .connect(url.as_str())
                .await
                .unwrap_or_else(|err| panic!("{user} connects: {err}"))
        }
    };
    for (tenant, name, code) in [
        (app.tenant, "Prairie Packers", "PRA"),
        (other, "Alpha Meats", "ALP"),
    ] {
        let response = app
            .request(
                reqwest::Method::POST,
                "/api/v1/suppliers",
                &app.token_for(tenant, &[oms_api::auth::Role::Admin]),
            )
            .json(&json!({"name": name, "code": code, "credit_terms": "net_30"}))
            .send()
            .await
            .unwrap();
        expect_json(response, StatusCode::CREATED).await;
    }
    let relay_js = async_nats::jetstream::new(connect("relay", "relay-password-1").await);
    oms_relay::ensure_stream(&relay_js, &test_relay_config())
        .await
        .unwrap();
    let relay = oms_relay::Relay::new(
        oms_store::EventStore::new(app.pool.clone()),
        relay_js.clone(),
        test_relay_config(),
    );
    assert_eq!(relay.relay_all().await.unwrap(), 2);

    // The integration's user creates its consumer with its tenant's filter, as the example
    // consumer does, and reads that tenant's event only.
    let billing = async_nats::jetstream::new(connect("billing", "billing-password-5").await);
    let stream = billing.get_stream("OMS_EVENTS").await.unwrap();
    let config = |name: &str, filter: String| async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(name.to_string()),
        filter_subject: filter,
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    };
    let consumer = stream
        .get_or_create_consumer(
            "billing",
            config("billing", format!("oms.events.{}.*.*", app.tenant)),
        )
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut read = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let body: Value = serde_json::from_slice(&message.payload).unwrap();
        read.push(body["tenant_id"].as_str().unwrap().to_string());
        message.ack().await.unwrap();
    }
    assert_eq!(read, [app.tenant.to_string()]);

    // Another tenant's filter, no filter, or another consumer's name: refused.
    for (name, filter) in [
        ("billing-b", format!("oms.events.{other}.>")),
        ("billing-c", "oms.events.>".to_string()),
        ("billing-d", String::new()),
        ("projector-like", format!("oms.events.{}.>", app.tenant)),
    ] {
        assert!(
            stream
                .create_consumer(config(name, filter.clone()))
                .await
                .is_err(),
            "{name} with filter {filter:?} was created"
        );
    }
    let stolen = stream
        .get_or_create_consumer(
            "billing",
            config("billing", format!("oms.events.{other}.>")),
        )
        .await;
    assert!(
        stolen
            .map(|c| c.cached_info().config.filter_subject.clone())
            .unwrap_or_default()
            .starts_with(&format!("oms.events.{}", app.tenant)),
        "the consumer's filter was changed to another tenant's"
    );

    // Nor may it publish an event.
    let publisher = connect("billing", "billing-password-5").await;
    publisher
        .publish(
            format!("oms.events.{}.supplier.{}", app.tenant, Uuid::nil()),
            "{}".into(),
        )
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = relay_js.get_stream("OMS_EVENTS").await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 2);
}
