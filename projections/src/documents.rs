//! The JSON documents of orders and reference items: what the API answers with, for commands
//! and queries alike, built from the aggregate's state.

use chrono::{DateTime, Utc};
use oms_domain::purchase_order::PurchaseOrder;
use oms_domain::reference::{Reference, ReferenceKind};
use oms_domain::sales_order::SalesOrder;
use serde_json::{json, Value};
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
pub(crate) fn stamp(body: &mut Value, stamp: &Stamp) {
    if let Value::Object(map) = body {
        map.insert("id".into(), json!(stamp.id));
        map.insert("version".into(), json!(stamp.version));
        map.insert("created_at".into(), json!(stamp.created_at));
        map.insert("updated_at".into(), json!(stamp.updated_at));
    }
}

/// A purchase order's document: the header's fields, then status, money, lines (with their
/// lots), claims, receipts, payments and notes (as `order_notes`: `notes` is the header's
/// free text).
///
/// Money follows the contract: `credits` (accepted claims) and `refunds` are sums, and
/// `outstanding = amount_due − credits − amount_paid + refunds`; the refunds themselves are
/// listed as `refund_records`, since `refunds` names the sum.
pub fn purchase_order(order: &PurchaseOrder, at: &Stamp) -> Value {
    let mut body = order
        .header
        .as_ref()
        .and_then(|h| serde_json::to_value(h).ok())
        .unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("order_number".into(), json!(order.order_number));
        map.insert("status".into(), json!(order.status));
        map.insert("payment_status".into(), json!(order.payment_status()));
        map.insert("lines".into(), json!(order.lines));
        map.insert("total".into(), json!(order.total));
        map.insert("received_total".into(), json!(order.received_total));
        map.insert("amount_due".into(), json!(order.amount_due()));
        map.insert("amount_paid".into(), json!(order.amount_paid));
        map.insert("credits".into(), json!(order.credits));
        map.insert("refunds".into(), json!(order.amount_refunded));
        map.insert("outstanding".into(), json!(order.outstanding()));
        map.insert("claims".into(), json!(order.claims));
        map.insert("refund_records".into(), json!(order.refunds));
        map.insert("receipts".into(), json!(order.receipts));
        map.insert("payments".into(), json!(order.payments));
        map.insert("order_notes".into(), json!(order.notes));
        map.insert("cancel_reason".into(), json!(order.cancel_reason));
        map.insert("reject_reason".into(), json!(order.last_reject_reason));
    }
    stamp(&mut body, at);
    body
}

/// A sales order's document: the header's fields, then status, money (as on purchase
/// orders), lines (with their lots), claims, shipment, invoice, payments and notes.
pub fn sales_order(order: &SalesOrder, at: &Stamp) -> Value {
    let mut body = order
        .header
        .as_ref()
        .and_then(|h| serde_json::to_value(h).ok())
        .unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("order_number".into(), json!(order.order_number));
        map.insert("status".into(), json!(order.status));
        map.insert("payment_status".into(), json!(order.payment_status()));
        map.insert("lines".into(), json!(order.lines));
        map.insert("total".into(), json!(order.total));
        map.insert("shipment".into(), json!(order.shipment));
        map.insert("shipped_total".into(), json!(order.shipped_total));
        map.insert("delivered_on".into(), json!(order.delivered_on));
        let invoice = order.invoice.as_ref();
        map.insert(
            "invoice_number".into(),
            json!(invoice.map(|i| &i.invoice_number)),
        );
        map.insert(
            "invoice_date".into(),
            json!(invoice.map(|i| i.invoice_date)),
        );
        map.insert("due_date".into(), json!(invoice.map(|i| i.due_date)));
        map.insert(
            "invoiced_amount".into(),
            json!(invoice.map(|i| &i.invoiced_amount)),
        );
        map.insert("amount_due".into(), json!(order.amount_due()));
        map.insert("amount_paid".into(), json!(order.amount_paid));
        map.insert("credits".into(), json!(order.credits));
        map.insert("refunds".into(), json!(order.amount_refunded));
        map.insert("outstanding".into(), json!(order.outstanding()));
        map.insert("claims".into(), json!(order.claims));
        map.insert("refund_records".into(), json!(order.refunds));
        map.insert("payments".into(), json!(order.payments));
        map.insert("order_notes".into(), json!(order.notes));
        map.insert("cancel_reason".into(), json!(order.cancel_reason));
    }
    stamp(&mut body, at);
    body
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
