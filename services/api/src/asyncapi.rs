//! The AsyncAPI 3.0 document served at `/api/v1/asyncapi.json`: the contract for integrators
//! who read the events from NATS JetStream rather than the REST API (docs/integration.md).
//!
//! Everything in it is generated, so it cannot drift from what the relay publishes: the
//! subjects and headers come from the relay's constants, the envelope's schema from the
//! store's [`StoredEvent`], each event type's payload schema (in its current version) from the
//! domain's event enums ([`oms_domain::schema`]), and the anchors' from
//! [`oms_store::audit::Anchor`].

use oms_domain::schema::{event_schemas, EventSchemas};
use oms_domain::schemars::generate::SchemaSettings;
use oms_relay::{
    AGGREGATE_TYPE_HEADER, EVENT_TYPE_HEADER, PAYLOAD_HEADER, PAYLOAD_OMITTED, POSITION_HEADER,
    SEQUENCE_HEADER, STORED_VERSION_HEADER, TENANT_HEADER,
};
use oms_store::audit::Anchor;
use oms_store::StoredEvent;
use serde_json::{json, Map, Value};

/// Where the document's shared schemas live; every generated `$ref` points there.
const SCHEMAS: &str = "/components/schemas";

/// The header JetStream deduplicates on (`<tenant>:<position>`).
const MESSAGE_ID_HEADER: &str = "Nats-Msg-Id";

/// The document: channels for the events' and the anchors' subjects, one message per event
/// type (its headers and its envelope with the type's payload schema), and the operations an
/// integrator performs (receiving both).
pub fn document() -> Value {
    let EventSchemas {
        events,
        definitions,
    } = event_schemas(SCHEMAS);
    let mut schemas = definitions;
    schemas.extend(envelope_definitions());
    schemas.insert("EventHeaders".into(), event_headers());

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operation_messages = Vec::new();
    let mut aggregate_types: Vec<&str> = Vec::new();
    for event in &events {
        let name = event.event_type.clone();
        assert!(
            schemas.insert(name.clone(), event.schema.clone()).is_none(),
            "the event type {name} has the name of another schema"
        );
        if !aggregate_types.contains(&event.aggregate_type) {
            aggregate_types.push(event.aggregate_type);
        }
        let mut message = json!({
            "name": name,
            "title": format!("{name} {}", event.event_version),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "allOf": [{"$ref": "#/components/schemas/EventHeaders"}],
                "properties": {
                    EVENT_TYPE_HEADER: {"type": "string", "const": name},
                    AGGREGATE_TYPE_HEADER: {"type": "string", "const": event.aggregate_type},
                },
            },
            "payload": {
                "type": "object",
                "allOf": [{"$ref": "#/components/schemas/StoredEvent"}],
                "properties": {
                    "aggregate_type": {"const": event.aggregate_type},
                    "event_type": {"const": name},
                    "event_version": {"const": event.event_version},
                    "payload": {
                        "description": format!(
                            "The event: the schema {name}; null when the message carries \
                             the event by reference (header {PAYLOAD_HEADER}: {PAYLOAD_OMITTED})"
                        ),
                        "oneOf": [
                            {"$ref": format!("#/components/schemas/{name}")},
                            {"type": "null"},
                        ],
                    },
                },
            },
        });
        if let Some(description) = &event.description {
            message["summary"] = json!(description);
        }
        messages.insert(name.clone(), message);
        channel_messages.insert(
            name.clone(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        operation_messages.push(json!({"$ref": format!("#/channels/events/messages/{name}")}));
    }
    messages.insert(
        "Anchor".into(),
        json!({
            "name": "Anchor",
            "title": "A tenant's signed head",
            "summary": "The tenant's head (position, hash), signed with the anchor key (HMAC-SHA256): what an auditor checks the event store against (docs/audit.md).",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/Anchor"},
        }),
    );

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "oms events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event of every tenant, in each tenant's position order, on NATS \
                JetStream (stream OMS_EVENTS), as the event store's envelope with the event in its \
                type's current version (older stored versions are upcast on the way out). \
                Deduplicate on Nats-Msg-Id (`<tenant>:<position>`); positions are gapless per \
                tenant. The anchors (stream OMS_ANCHORS) are each tenant's signed head. See \
                docs/integration.md.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "events": {
                "address": "oms.events.{tenant}.{aggregate_type}.{aggregate_id}",
                "title": "Events",
                "description": "One message per event, on its tenant's, aggregate type's and aggregate's subject. Filter with wildcards: `oms.events.<tenant>.>` for a tenant, `oms.events.*.purchase_order.>` for a type.",
                "parameters": {
                    "tenant": {"description": "The tenant's id (a UUID)."},
                    "aggregate_type": {
                        "description": "The aggregate type.",
                        "enum": aggregate_types,
                    },
                    "aggregate_id": {"description": "The aggregate's id (a UUID)."},
                },
                "messages": channel_messages,
            },
            "anchors": {
                "address": "oms.anchors.{tenant}",
                "title": "Anchors",
                "description": "Each tenant's head, signed, every few events or seconds.",
                "parameters": {
                    "tenant": {"description": "The tenant's id (a UUID)."},
                },
                "messages": {"Anchor": {"$ref": "#/components/messages/Anchor"}},
            },
        },
        "operations": {
            "receiveEvents": {
                "action": "receive",
                "title": "Receive the events",
                "description": "With a durable consumer of your own on stream OMS_EVENTS, filtered by subject.",
                "channel": {"$ref": "#/channels/events"},
                "messages": operation_messages,
            },
            "receiveAnchors": {
                "action": "receive",
                "title": "Receive the anchors",
                "channel": {"$ref": "#/channels/anchors"},
                "messages": [{"$ref": "#/channels/anchors/messages/Anchor"}],
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
        },
    })
}

/// The envelope's and the anchor's schemas, generated like the events'.
fn envelope_definitions() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft07().for_serialize();
    settings.definitions_path = SCHEMAS.into();
    let mut generator = settings.into_generator();
    generator.subschema_for::<StoredEvent>();
    generator.subschema_for::<Anchor>();
    generator.take_definitions(true)
}

/// The headers every event's message has (the relay's constants), as NATS carries them: text.
fn event_headers() -> Value {
    let number = json!({"type": "string", "pattern": "^[1-9][0-9]*$"});
    let mut properties = Map::new();
    properties.insert(
        MESSAGE_ID_HEADER.into(),
        json!({
            "type": "string",
            "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[1-9][0-9]*$",
            "description": "`<tenant>:<position>`: unique per event; JetStream drops a republished duplicate within the stream's duplicate window, and a consumer deduplicates on it too.",
        }),
    );
    properties.insert(
        TENANT_HEADER.into(),
        json!({"type": "string", "format": "uuid", "description": "The tenant's id."}),
    );
    let mut position = number.clone();
    position["description"] = json!("The event's position: the tenant's gapless event number.");
    properties.insert(POSITION_HEADER.into(), position);
    let mut sequence = number;
    sequence["description"] = json!("The event's number within its aggregate (1, 2, 3, …).");
    properties.insert(SEQUENCE_HEADER.into(), sequence);
    properties.insert(
        EVENT_TYPE_HEADER.into(),
        json!({"type": "string", "description": "The event type, which names the message and its payload's schema."}),
    );
    properties.insert(
        AGGREGATE_TYPE_HEADER.into(),
        json!({"type": "string", "description": "The aggregate type."}),
    );
    properties.insert(
        STORED_VERSION_HEADER.into(),
        json!({"type": "string", "description": "Present only when the event was stored in an older version and upcast on its way out: that version. The envelope's hash covers the stored form (read it from the audit export to check the chain)."}),
    );
    properties.insert(
        PAYLOAD_HEADER.into(),
        json!({"type": "string", "const": PAYLOAD_OMITTED, "description": "Present only when the event was too large for a NATS message: the envelope's payload is null; read the event through the API or the audit export."}),
    );
    json!({
        "type": "object",
        "required": [
            MESSAGE_ID_HEADER,
            TENANT_HEADER,
            POSITION_HEADER,
            SEQUENCE_HEADER,
            EVENT_TYPE_HEADER,
            AGGREGATE_TYPE_HEADER,
        ],
        "properties": properties,
    })
}
