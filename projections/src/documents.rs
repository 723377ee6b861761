//! The JSON documents of orders and reference items: what the API answers with, for commands
//! and queries alike, built from the aggregate's state.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use oms_domain::purchase_order::PurchaseOrder;
use oms_domain::reference::{Reference, ReferenceKind};
use oms_domain::sales_order::SalesOrder;
use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// What every document carries besides the aggregate's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The aggregate's id.
    pub id: Uuid,
    /// Its event count.
    pub version: i64,
    /// Its first event's time.
    pub created_at: Option<DateTime<Utc>>,
    /// Its newest event's time.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Sets the stamp's fields of a document (replacing those it has): a document made with one
/// stamp and stamped again equals the document made with the second.
fn stamp(body: &mut Value, stamp: &Stamp) {
    if let Value::Object(map) = body {
        let mut tree = Tree(std::mem::take(map));
        stamp_fields(stamp, &mut tree);
        *map = tree.0;
    }
}

/// Writes the stamp's fields (the names of [`STAMP_FIELDS`]) to `fields`, after the
/// document's own: the one place the stamp is written, for the tree and for [`FieldTexts`].
fn stamp_fields(stamp: &Stamp, fields: &mut impl Fields) {
    fields.field("id", &stamp.id);
    fields.field("version", &stamp.version);
    fields.field("created_at", &stamp.created_at);
    fields.field("updated_at", &stamp.updated_at);
}

/// Where an order's document is written, field by field: as a JSON tree ([`purchase_order`],
/// [`sales_order`]: what the API answers with and the orders rows hold), or as each field's
/// JSON text ([`DocumentText`]: what history compares one event's document with the next by,
/// without building and dropping a tree per event).
pub(crate) trait Fields {
    /// The fields of `value` (a struct: the order's header) as the document's own; none when
    /// `None`. Written first: a later field of the same name replaces one of these.
    fn flatten<T: Serialize>(&mut self, value: Option<&T>);
    /// The field `key`.
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T);
}

/// The document written by `write` as a JSON tree, stamped.
fn tree(at: &Stamp, write: impl FnOnce(&mut Tree)) -> Value {
    let mut tree = Tree(Map::new());
    write(&mut tree);
    let mut body = Value::Object(tree.0);
    stamp(&mut body, at);
    body
}

/// [`Fields`] building a JSON object.
struct Tree(Map<String, Value>);

impl Fields for Tree {
    fn flatten<T: Serialize>(&mut self, value: Option<&T>) {
        if let Some(Value::Object(map)) = value.and_then(|v| serde_json::to_value(v).ok()) {
            self.0.extend(map);
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.insert(key.into(), value);
    }
}

/// An order's document, stamped, as each field's JSON text in the order written: what its row
/// in the read model is written from (the `document` column, and the typed columns that are
/// its fields), without building the document as a JSON tree and serialising the tree again.
/// A field written again (a header field that a later field or the stamp replaces) is the
/// later one's, as in the tree.
#[derive(Debug, Default)]
pub(crate) struct FieldTexts(Vec<(Cow<'static, str>, String)>);

impl FieldTexts {
    /// The document written by `write`, then stamped with `at`.
    pub(crate) fn stamped(at: &Stamp, write: impl FnOnce(&mut Self)) -> Self {
        let mut texts = FieldTexts(Vec::with_capacity(48));
        write(&mut texts);
        stamp_fields(at, &mut texts);
        texts
    }

    /// The JSON text of the document's field `name`; `None` when it has no such field.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, text)| text.as_str())
    }

    /// The document as JSON text: each field once, with its last value.
    pub(crate) fn document(&self) -> String {
        let mut text = String::with_capacity(
            self.0
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
                + 2,
        );
        text.push('{');
        for (at, (key, value)) in self.0.iter().enumerate() {
            if self.0[at + 1..].iter().any(|(later, _)| later == key) {
                continue;
            }
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(key.as_ref()).unwrap_or_default());
            text.push(':');
            text.push_str(value);
        }
        text.push('}');
        text
    }
}

impl Fields for FieldTexts {
    fn flatten<T: Serialize>(&mut self, value: Option<&T>) {
        if let Some(Value::Object(map)) = value.and_then(|v| serde_json::to_value(v).ok()) {
            self.0
                .extend(map.into_iter().map(|(k, v)| (Cow::Owned(k), v.to_string())));
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        self.0.push((Cow::Borrowed(key), text));
    }
}

/// An order's document (without its stamp) as the JSON text of each of its parts, in the
/// order they are written: the flattened header's fields as one part, then one part per field.
///
/// History compares the document before an event with the one after it. Made as JSON trees,
/// that was most of a rebuild's CPU (a tree of maps and strings allocated, compared and freed
/// per event); as text the parts are written into buffers reused from event to event and
/// compared as bytes, and only the parts that differ are parsed ([`DocumentText::changed`]).
#[derive(Debug, Default)]
pub(crate) struct DocumentText {
    /// The parts' keys: `None` for the flattened header, then the fields' names.
    keys: Vec<Option<&'static str>>,
    /// The parts' JSON text, as `keys`.
    parts: Vec<Vec<u8>>,
    /// The next part to be written.
    next: usize,
}

impl DocumentText {
    /// Writes the document with `write` (the same fields in the same order each time),
    /// replacing what this held.
    pub(crate) fn write(&mut self, write: impl FnOnce(&mut Self)) {
        self.next = 0;
        write(self);
        self.keys.truncate(self.next);
        self.parts.truncate(self.next);
    }

    /// The buffer of the next part, `key`, emptied.
    fn slot(&mut self, key: Option<&'static str>) -> &mut Vec<u8> {
        let at = self.next;
        self.next += 1;
        if at == self.parts.len() {
            self.keys.push(key);
            self.parts.push(Vec::new());
        } else {
            self.keys[at] = key;
        }
        let part = &mut self.parts[at];
        part.clear();
        part
    }

    /// The parts of `self` (before) and `after` (the same fields of the same kind of order,
    /// written after an event) whose text differs, as two JSON objects: the fields that may
    /// have changed, each side's values, parsed. A field of the header that another part
    /// replaces, or that the stamp replaces, is left out (it is not the document's).
    pub(crate) fn changed(&self, after: &DocumentText) -> serde_json::Result<(Value, Value)> {
        let (mut was, mut is) = (Map::new(), Map::new());
        for (at, (key, part)) in after.keys.iter().zip(&after.parts).enumerate() {
            let before = self
                .parts
                .get(at)
                .filter(|_| self.keys.get(at) == Some(key));
            if before == Some(part) {
                continue;
            }
            let parse = |text: Option<&Vec<u8>>| match text {
                Some(text) => serde_json::from_slice::<Value>(text),
                None => Ok(Value::Null),
            };
            let (from, to) = (parse(before)?, parse(Some(part))?);
            match key {
                Some(key) => {
                    was.insert((*key).into(), from);
                    is.insert((*key).into(), to);
                }
                None => {
                    let shadowed = |field: &String| {
                        STAMP_FIELDS.contains(&field.as_str())
                            || after.keys.iter().any(|k| k.is_some_and(|k| k == field))
                    };
                    for (side, header) in [(&mut was, from), (&mut is, to)] {
                        if let Value::Object(header) = header {
                            side.extend(header.into_iter().filter(|(f, _)| !shadowed(f)));
                        }
                    }
                }
            }
        }
        Ok((Value::Object(was), Value::Object(is)))
    }
}

impl Fields for DocumentText {
    fn flatten<T: Serialize>(&mut self, value: Option<&T>) {
        let part = self.slot(None);
        let written = value.map(|value| serde_json::to_writer(&mut *part, value));
        if !matches!(written, Some(Ok(()))) {
            part.clear();
            part.extend_from_slice(b"{}");
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        let part = self.slot(Some(key));
        if serde_json::to_writer(&mut *part, value).is_err() {
            part.clear();
            part.extend_from_slice(b"null");
        }
    }
}

/// The fields [`stamp`] sets.
const STAMP_FIELDS: [&str; 4] = ["id", "version", "created_at", "updated_at"];

/// A purchase order's document: the header's fields, then status, money, lines (with their
/// lots), claims, receipts, payments and notes (as `order_notes`: `notes` is the header's
/// free text).
///
/// Money follows the contract: `credits` (accepted claims) and `refunds` are sums, and
/// `outstanding = amount_due − credits − amount_paid + refunds`; the refunds themselves are
/// listed as `refund_records`, since `refunds` names the sum.
pub fn purchase_order(order: &PurchaseOrder, at: &Stamp) -> Value {
    tree(at, |fields| purchase_order_fields(order, fields))
}

/// Writes a purchase order's document ([`purchase_order`]) to `fields`, without the stamp.
pub(crate) fn purchase_order_fields(order: &PurchaseOrder, fields: &mut impl Fields) {
    fields.flatten(order.header.as_ref());
    fields.field("order_number", &order.order_number);
    fields.field("status", &order.status);
    fields.field("payment_status", &order.payment_status());
    fields.field("lines", &order.lines);
    fields.field("total", &order.total);
    fields.field("received_total", &order.received_total);
    fields.field("amount_due", &order.amount_due());
    fields.field("amount_paid", &order.amount_paid);
    fields.field("credits", &order.credits);
    fields.field("refunds", &order.amount_refunded);
    fields.field("outstanding", &order.outstanding());
    fields.field("claims", &order.claims);
    fields.field("refund_records", &order.refunds);
    fields.field("receipts", &order.receipts);
    fields.field("payments", &order.payments);
    fields.field("order_notes", &order.notes);
    fields.field("cancel_reason", &order.cancel_reason);
    fields.field("reject_reason", &order.last_reject_reason);
}

/// A sales order's document: the header's fields, then status, money (as on purchase
/// orders), lines (with their lots), claims, shipment, invoice, payments and notes.
pub fn sales_order(order: &SalesOrder, at: &Stamp) -> Value {
    tree(at, |fields| sales_order_fields(order, fields))
}

/// Writes a sales order's document ([`sales_order`]) to `fields`, without the stamp.
pub(crate) fn sales_order_fields(order: &SalesOrder, fields: &mut impl Fields) {
    fields.flatten(order.header.as_ref());
    fields.field("order_number", &order.order_number);
    fields.field("status", &order.status);
    fields.field("payment_status", &order.payment_status());
    fields.field("lines", &order.lines);
    fields.field("total", &order.total);
    fields.field("shipment", &order.shipment);
    fields.field("shipped_total", &order.shipped_total);
    fields.field("delivered_on", &order.delivered_on);
    let invoice = order.invoice.as_ref();
    fields.field("invoice_number", &invoice.map(|i| &i.invoice_number));
    fields.field("invoice_date", &invoice.map(|i| i.invoice_date));
    fields.field("due_date", &invoice.map(|i| i.due_date));
    fields.field("invoiced_amount", &invoice.map(|i| &i.invoiced_amount));
    fields.field("amount_due", &order.amount_due());
    fields.field("amount_paid", &order.amount_paid);
    fields.field("credits", &order.credits);
    fields.field("refunds", &order.amount_refunded);
    fields.field("outstanding", &order.outstanding());
    fields.field("claims", &order.claims);
    fields.field("refund_records", &order.refunds);
    fields.field("payments", &order.payments);
    fields.field("order_notes", &order.notes);
    fields.field("cancel_reason", &order.cancel_reason);
}

/// A reference item's document: its fields, `kind`, `active`.
pub fn reference<K: ReferenceKind>(reference: &Reference<K>, at: &Stamp) -> Value {
    let mut body = reference
        .details
        .as_ref()
        .and_then(|details| serde_json::to_value(details).ok())
        .unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("kind".into(), json!(K::TYPE));
        map.insert("active".into(), json!(reference.active));
        if let Some(at) = reference.personal_data_erased_at {
            map.insert("personal_data_erased_at".into(), json!(at));
        }
    }
    stamp(&mut body, at);
    body
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A document written by `fields`' order: a header, then `status` and `lines`.
    fn write(header: &Value, status: &str, lines: &Value, fields: &mut impl Fields) {
        fields.flatten(header.as_object());
        fields.field("status", status);
        fields.field("lines", lines);
    }

    /// The document as a tree (without the stamp) and as text.
    fn both(header: &Value, status: &str, lines: &Value) -> (Value, DocumentText) {
        let mut tree = Tree(Map::new());
        write(header, status, lines, &mut tree);
        let mut text = DocumentText::default();
        text.write(|fields| write(header, status, lines, fields));
        (Value::Object(tree.0), text)
    }

    #[test]
    fn the_text_parts_that_differ_hold_every_field_whose_value_differs() {
        let lines = json!([{"line_id": "a", "weight": "1"}]);
        let (tree_before, before) = both(&json!({"notes": "x", "name": "n"}), "draft", &lines);
        let (tree_after, after) = both(&json!({"notes": "y", "name": "n"}), "draft", &lines);
        let (was, is) = before.changed(&after).unwrap();
        // The header differs, so its fields are compared; status and lines are the same text.
        assert_eq!(was, json!({"notes": "x", "name": "n"}));
        assert_eq!(is, json!({"notes": "y", "name": "n"}));
        for (key, value) in was.as_object().unwrap() {
            assert_eq!(&tree_before[key], value);
            assert_eq!(&tree_after[key], &is[key]);
        }

        let (_, submitted) = both(&json!({"notes": "y", "name": "n"}), "submitted", &lines);
        let (was, is) = after.changed(&submitted).unwrap();
        assert_eq!(was, json!({"status": "draft"}));
        assert_eq!(is, json!({"status": "submitted"}));

        let (was, is) = submitted.changed(&submitted).unwrap();
        assert_eq!((was, is), (json!({}), json!({})));
    }

    #[test]
    fn a_header_field_that_a_later_field_or_the_stamp_replaces_is_not_the_documents() {
        let lines = json!([]);
        let (tree, before) = both(
            &json!({"status": "a", "id": 1, "name": "n"}),
            "draft",
            &lines,
        );
        let (_, after) = both(
            &json!({"status": "b", "id": 2, "name": "m"}),
            "draft",
            &lines,
        );
        // The tree holds the field's status, not the header's.
        assert_eq!(tree["status"], json!("draft"));
        let (was, is) = before.changed(&after).unwrap();
        assert_eq!(was, json!({"name": "n"}));
        assert_eq!(is, json!({"name": "m"}));
    }

    #[test]
    fn field_texts_make_the_trees_document_and_its_fields() {
        let at = Stamp {
            id: Uuid::from_u128(7),
            version: 3,
            created_at: None,
            updated_at: Some(DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap()),
        };
        // The header's status and id are replaced, by a later field and by the stamp.
        let header = json!({"status": "a", "id": 1, "name": "n \"quoted\"", "weight": 1.5});
        let lines = json!([{"line_id": "a", "weight": "1"}]);
        let tree = tree(&at, |fields| write(&header, "draft", &lines, fields));
        let texts = FieldTexts::stamped(&at, |fields| write(&header, "draft", &lines, fields));
        let document: Value = serde_json::from_str(&texts.document()).unwrap();
        assert_eq!(document, tree);
        for (key, value) in tree.as_object().unwrap() {
            let text = texts.get(key).unwrap();
            assert_eq!(
                &serde_json::from_str::<Value>(text).unwrap(),
                value,
                "{key}"
            );
        }
        assert_eq!(texts.get("status"), Some("\"draft\""));
        assert_eq!(
            texts.get("id"),
            Some("\"00000000-0000-0000-0000-000000000007\"")
        );
        assert_eq!(texts.get("missing"), None);
        // Each field once in the text.
        assert_eq!(texts.document().matches("\"status\"").count(), 1);
    }

    #[test]
    fn a_missing_header_is_an_empty_one_and_buffers_are_rewritten_in_place() {
        let lines = json!([]);
        let mut text = DocumentText::default();
        text.write(|fields| {
            fields.flatten::<Value>(None);
            fields.field("status", "draft");
            fields.field("lines", &lines);
        });
        let (_, created) = both(&json!({"name": "n"}), "draft", &lines);
        let (was, is) = text.changed(&created).unwrap();
        assert_eq!((was, is), (json!({}), json!({"name": "n"})));
        // Written again with the same fields, a buffer holds only the new text.
        text.write(|fields| write(&json!({"name": "n"}), "draft", &lines, fields));
        assert_eq!(text.changed(&created).unwrap(), (json!({}), json!({})));
    }
}
