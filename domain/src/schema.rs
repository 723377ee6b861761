//! JSON Schemas of the events, one per event type and in its current version, generated from
//! the event enums themselves (`schemars`), so that the contract published to integrators
//! (the AsyncAPI document) cannot drift from what is serialised.
//!
//! The schemas describe the serialised form — what a consumer reads — not what
//! deserialisation would accept: decimals are strings, text types carry their bounds,
//! choices their words. An event's payload is the enum's externally tagged form: `{"Created":
//! {…}}`, or the bare string `"Approved"` for a variant without fields; each event type's
//! schema is that one variant's.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::purchase_order::{PurchaseOrderEvent, PURCHASE_ORDER_TYPE};
use crate::reference::{
    Carrier, Customer, Plant, Product, ReferenceEvent, ReferenceKind, Supplier,
};
use crate::sales_order::{SalesOrderEvent, SALES_ORDER_TYPE};

/// One event type, as published: the aggregate type it belongs to, its name and current
/// version, and the JSON Schema of its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchema {
    /// `purchase_order`, `supplier`, … (the subject's and envelope's `aggregate_type`).
    pub aggregate_type: &'static str,
    /// `PurchaseOrderCreated`, … (the envelope's `event_type`).
    pub event_type: String,
    /// The version every event of this type is published in (older ones are upcast first).
    pub event_version: &'static str,
    /// What the variant is for (its doc comment), when it has one.
    pub description: Option<String>,
    /// The payload's schema; its `$ref`s point into [`EventSchemas::definitions`].
    pub schema: Value,
}

/// Every event type's schema, and the definitions of the types they share (`Money`,
/// `OrderLine`, …), to be placed at the definitions path given to [`event_schemas`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventSchemas {
    /// One per event type, grouped by aggregate type, in the enums' order.
    pub events: Vec<EventSchema>,
    /// The shared definitions, by name.
    pub definitions: Map<String, Value>,
}

/// The schemas of every event type, as draft-07 JSON Schemas whose `$ref`s point to
/// `#<definitions_path>/<name>` (such as `/components/schemas` in an AsyncAPI document).
pub fn event_schemas(definitions_path: &str) -> EventSchemas {
    let mut settings = SchemaSettings::draft07().for_serialize();
    settings.definitions_path = definitions_path.to_owned().into();
    let mut generator = settings.into_generator();
    let mut enums = vec![
        Enum::of::<PurchaseOrderEvent>(
            &mut generator,
            PURCHASE_ORDER_TYPE,
            PurchaseOrderEvent::EVENT_PREFIX,
            PurchaseOrderEvent::version_of,
        ),
        Enum::of::<SalesOrderEvent>(
            &mut generator,
            SALES_ORDER_TYPE,
            SalesOrderEvent::EVENT_PREFIX,
            SalesOrderEvent::version_of,
        ),
    ];
    enums.push(Enum::reference::<Supplier>(&mut generator));
    enums.push(Enum::reference::<Customer>(&mut generator));
    enums.push(Enum::reference::<Product>(&mut generator));
    enums.push(Enum::reference::<Plant>(&mut generator));
    enums.push(Enum::reference::<Carrier>(&mut generator));
    let prefix = format!("#{}/", definitions_path.trim_end_matches('/'));
    let personal = [
        personal_definitions::<Supplier>(&mut generator, &prefix),
        personal_definitions::<Customer>(&mut generator, &prefix),
    ];
    let mut definitions = generator.take_definitions(true);
    seal_personal_fields(&mut definitions, &prefix, personal.iter().flatten());
    let mut events = Vec::new();
    for described in &enums {
        let name = described
            .reference
            .strip_prefix(&prefix)
            .expect("an event enum's schema is a definition");
        let schema = definitions
            .remove(name)
            .expect("the event enum's definition was generated");
        events.extend(described.split(&schema));
    }
    EventSchemas {
        events,
        definitions,
    }
}

/// The name of the schema definition that holds a personal value sealed for its subject
/// (docs/privacy.md).
pub const SEALED_VALUE: &str = "SealedPersonalValue";

/// The definition of `K`'s details (by name; events carry the details whole, and their
/// changes as any JSON) with the personal fields it holds: the fields whose values events
/// carry sealed.
fn personal_definitions<K: ReferenceKind + JsonSchema>(
    generator: &mut SchemaGenerator,
    prefix: &str,
) -> Option<(String, &'static [&'static str])> {
    let fields = K::personal_fields();
    let reference = generator.subschema_for::<K>();
    let name = reference
        .get("$ref")
        .and_then(Value::as_str)?
        .strip_prefix(prefix)?;
    (!fields.is_empty()).then(|| (name.to_owned(), fields))
}

/// Makes each personal field of the given definitions say what the events really carry: the
/// sealed envelope `{"enc", "key"}` (what every event written since encryption holds), or the
/// plain value (events written before it, until the one-off migration rewrites them). The
/// `changes` of an update hold any JSON in `from` and `to`, sealed values included, already.
fn seal_personal_fields<'a>(
    definitions: &mut Map<String, Value>,
    prefix: &str,
    personal: impl Iterator<Item = &'a (String, &'static [&'static str])>,
) {
    for (name, fields) in personal {
        let Some(properties) = definitions
            .get_mut(name)
            .and_then(|definition| definition.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for field in *fields {
            if let Some(plain) = properties.remove(*field) {
                properties.insert(
                    (*field).to_owned(),
                    json!({
                        "description": "Personal data: sealed for its subject (or, in events \
                            written before encryption, the plain value); null once erased or \
                            when unset.",
                        "anyOf": [{"$ref": format!("{prefix}{SEALED_VALUE}")}, plain],
                    }),
                );
            }
        }
    }
    definitions.insert(
        SEALED_VALUE.to_owned(),
        json!({
            "type": "object",
            "description": "A personal value sealed for its subject with the subject's own data \
                key (AES-256-GCM); unreadable without the key, and for ever once the subject's \
                personal data is erased (docs/privacy.md).",
            "required": ["enc", "key"],
            "additionalProperties": false,
            "properties": {
                "enc": {
                    "type": "string",
                    "contentEncoding": "base64",
                    "description": "The nonce followed by the ciphertext, base64.",
                },
                "key": {
                    "type": "string",
                    "format": "uuid",
                    "description": "Whose data key sealed it: the supplier's or customer's id.",
                },
            },
        }),
    );
}

/// An event enum whose schema was generated: where its definition is, and how its variants
/// are named and versioned.
struct Enum {
    reference: String,
    aggregate_type: &'static str,
    prefix: &'static str,
    version_of: fn(&str) -> &'static str,
}

impl Enum {
    fn of<E: JsonSchema>(
        generator: &mut SchemaGenerator,
        aggregate_type: &'static str,
        prefix: &'static str,
        version_of: fn(&str) -> &'static str,
    ) -> Self {
        let reference = generator.subschema_for::<E>();
        Self {
            reference: reference
                .get("$ref")
                .and_then(Value::as_str)
                .expect("an event enum is not inlined")
                .to_owned(),
            aggregate_type,
            prefix,
            version_of,
        }
    }

    fn reference<K: ReferenceKind + JsonSchema>(generator: &mut SchemaGenerator) -> Self {
        Self::of::<ReferenceEvent<K>>(
            generator,
            K::TYPE,
            K::EVENT_PREFIX,
            ReferenceEvent::<K>::version_of,
        )
    }

    /// One schema per variant of the enum's schema (a `oneOf` of the externally tagged
    /// variants; variants without fields as string constants, or one string enum of them).
    fn split(&self, schema: &Value) -> Vec<EventSchema> {
        let mut out = Vec::new();
        let variants = schema
            .get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![schema.clone()]);
        for variant in variants {
            let description = variant
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let names: Vec<String> =
                if let Some(name) = variant.get("const").and_then(Value::as_str) {
                    vec![name.to_owned()]
                } else if let Some(words) = variant.get("enum").and_then(Value::as_array) {
                    words
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                } else {
                    variant
                        .get("required")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                };
            let unit = variant.get("type") == Some(&json!("string"));
            for name in names {
                let schema = if unit {
                    let mut schema = json!({"type": "string", "const": name});
                    if let Some(description) = &description {
                        schema["description"] = json!(description);
                    }
                    schema
                } else {
                    variant.clone()
                };
                out.push(EventSchema {
                    aggregate_type: self.aggregate_type,
                    event_type: format!("{}{}", self.prefix, name),
                    event_version: (self.version_of)(&name),
                    description: description.clone(),
                    schema,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::DomainEvent;

    #[test]
    fn every_event_type_has_one_schema_with_its_current_version() {
        let schemas = event_schemas("/components/schemas");
        let mut names: Vec<&str> = schemas
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "an event type is described twice");
        let created = schemas
            .events
            .iter()
            .find(|e| e.event_type == "PurchaseOrderCreated")
            .unwrap();
        assert_eq!(
            (created.aggregate_type, created.event_version),
            (
                "purchase_order",
                crate::upcasters::PURCHASE_ORDER_CREATED_VERSION
            )
        );
        for expected in [
            "PurchaseOrderApproved",
            "PurchaseOrderClosed",
            "SalesOrderInvoiced",
            "SupplierRegistered",
            "CarrierDeactivated",
            "ProductUpdated",
        ] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
    }

    #[test]
    fn schemas_refer_only_to_definitions_they_come_with() {
        let schemas = event_schemas("/components/schemas");
        let mut pending: Vec<Value> = schemas.events.iter().map(|e| e.schema.clone()).collect();
        pending.extend(schemas.definitions.values().cloned());
        while let Some(value) = pending.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let name = target.strip_prefix("#/components/schemas/").unwrap();
                        assert!(schemas.definitions.contains_key(name), "{target}");
                        assert!(
                            !name.ends_with(|c: char| c.is_ascii_digit()),
                            "two types share the name {name}: give one a schemars rename"
                        );
                    }
                    pending.extend(map.into_iter().map(|(_, v)| v));
                }
                Value::Array(items) => pending.extend(items),
                _ => {}
            }
        }
    }

    #[test]
    fn a_variant_names_the_same_type_and_version_as_its_events() {
        let schemas = event_schemas("/definitions");
        for event in [PurchaseOrderEvent::Approved, PurchaseOrderEvent::Closed] {
            let described = schemas
                .events
                .iter()
                .find(|e| e.event_type == event.event_type())
                .unwrap();
            assert_eq!(described.event_version, event.event_version());
            assert_eq!(
                described.schema["const"],
                serde_json::to_value(&event).unwrap()
            );
        }
    }
}
