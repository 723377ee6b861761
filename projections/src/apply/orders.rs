//! The orders projection: `read.purchase_orders`, `purchase_order_lines`, `sales_orders`,
//! `sales_order_lines`.

use cqrs_es::Aggregate;
use oms_domain::purchase_order::{PurchaseOrder, PURCHASE_ORDER_TYPE};
use oms_domain::sales_order::{SalesOrder, SALES_ORDER_TYPE};
use oms_domain::values::CreditTerms;
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use uuid::Uuid;

use super::{event_payload, grouped, into_object, load_many, payload_error, replace_rows, Folded};
use crate::documents::{self, Stamp};
use crate::{EventRecord, ProjectionError};

/// What the order projections need of an order aggregate.
pub(super) trait OrderKind: Aggregate + Clone {
    /// `purchase_order` or `sales_order`: the aggregate type and history's `order_type`.
    const ORDER_TYPE: &'static str;
    /// Its table in schema `read`.
    const TABLE: &'static str;
    /// Its lines' table in schema `read`.
    const LINES_TABLE: &'static str;

    /// Whether it has been created.
    fn created(&self) -> bool;
    /// Its document (what the API answers with).
    fn document(&self, stamp: &Stamp) -> Value;
    /// Its lines' serde form, in order.
    fn lines_json(&self) -> Value;
    /// Columns of its row that are not fields of its document.
    fn extra_columns(&self, row: &mut Map<String, Value>);
}

impl OrderKind for PurchaseOrder {
    const ORDER_TYPE: &'static str = PURCHASE_ORDER_TYPE;
    const TABLE: &'static str = "purchase_orders";
    const LINES_TABLE: &'static str = "purchase_order_lines";

    fn created(&self) -> bool {
        self.exists() && self.header.is_some()
    }

    fn document(&self, stamp: &Stamp) -> Value {
        documents::purchase_order(self, stamp)
    }

    fn lines_json(&self) -> Value {
        serde_json::to_value(&self.lines).unwrap_or(Value::Null)
    }

    fn extra_columns(&self, row: &mut Map<String, Value>) {
        let dates = self.receipts.iter().map(|r| r.received_on);
        row.insert("first_received_on".into(), json!(dates.clone().min()));
        row.insert("last_received_on".into(), json!(dates.max()));
        row.insert("due_dates".into(), Value::Object(due_dates(self)));
    }
}

/// The key of `due_dates` for a supplier without credit terms.
const NO_CREDIT_TERMS: &str = "none";

/// The purchase order's due date under each credit terms its supplier may have, keyed by
/// the terms' word (and [`NO_CREDIT_TERMS`]), as the domain decides it.
///
/// All of them, because the terms belong to the supplier: another aggregate, kept by another
/// projection with its own checkpoint, whose terms may change after the order. The payables
/// view picks the date of the supplier's current terms, so it follows a change of terms at
/// once and never works the rule out in SQL.
fn due_dates(order: &PurchaseOrder) -> Map<String, Value> {
    std::iter::once(None)
        .chain(CreditTerms::ALL.iter().copied().map(Some))
        .map(|terms| {
            let key = terms.map_or(NO_CREDIT_TERMS, |terms| terms.as_str());
            (key.to_owned(), json!(order.due_date(terms)))
        })
        .collect()
}

impl OrderKind for SalesOrder {
    const ORDER_TYPE: &'static str = SALES_ORDER_TYPE;
    const TABLE: &'static str = "sales_orders";
    const LINES_TABLE: &'static str = "sales_order_lines";

    fn created(&self) -> bool {
        self.exists() && self.header.is_some()
    }

    fn document(&self, stamp: &Stamp) -> Value {
        documents::sales_order(self, stamp)
    }

    fn lines_json(&self) -> Value {
        serde_json::to_value(&self.lines).unwrap_or(Value::Null)
    }

    fn extra_columns(&self, row: &mut Map<String, Value>) {
        let shipment = self.shipment.as_ref();
        row.insert("shipped_on".into(), json!(shipment.map(|s| s.shipped_on)));
        row.insert(
            "shipment_carrier_id".into(),
            json!(shipment.and_then(|s| s.carrier_id)),
        );
        row.insert(
            "carrier_release_number".into(),
            json!(shipment.and_then(|s| s.carrier_release_number.as_ref())),
        );
    }
}

/// Applies a batch's order events; other aggregate types change nothing.
pub(super) async fn apply(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    apply_orders::<PurchaseOrder>(conn, events).await?;
    apply_orders::<SalesOrder>(conn, events).await
}

/// Folds each order's events of the batch into its row, and writes each changed row (and,
/// when they changed, its lines) back once.
async fn apply_orders<A: OrderKind>(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    for (tenant, streams) in grouped(events, A::ORDER_TYPE) {
        let ids: Vec<Uuid> = streams.iter().map(|(id, _)| *id).collect();
        let mut stored = load_many(conn, A::TABLE, "id", true, tenant, &ids).await?;
        let (mut replaced, mut rows) = (Vec::new(), Vec::new());
        let (mut relined, mut line_rows) = (Vec::new(), Vec::new());
        for (id, stream) in streams {
            let mut folded = Folded::<A>::start(stored.remove(&id), stream[0])?;
            let lines_before = (folded.version > 0).then(|| folded.state.lines_json());
            let mut last = None;
            for event in stream {
                let payload: A::Event = event_payload(event)?;
                if !folded.takes(event)? {
                    continue;
                }
                folded.state.apply(payload);
                if !folded.state.created() {
                    return Err(payload_error(event, "the order has not been created"));
                }
                last = Some(event);
            }
            let Some(event) = last else { continue };
            let stamp = Stamp {
                id,
                version: event.sequence,
                created_at: Some(folded.created_at.unwrap_or(event.recorded_at)),
                updated_at: Some(event.recorded_at),
            };
            let document = folded.state.document(&stamp);
            let state = serde_json::to_value(&folded.state).map_err(|e| payload_error(event, e))?;
            let mut row = into_object(document.clone());
            row.insert("tenant_id".into(), json!(tenant));
            row.insert("last_position".into(), json!(event.position));
            row.insert("state".into(), state);
            row.insert("document".into(), document);
            folded.state.extra_columns(&mut row);
            replaced.push(id);
            rows.push(Value::Object(row));

            let lines = folded.state.lines_json();
            if lines_before.as_ref() != Some(&lines) {
                let Value::Array(lines) = lines else {
                    return Err(payload_error(event, "the order's lines are not a list"));
                };
                relined.push(id);
                line_rows.extend(lines.into_iter().enumerate().map(|(i, line)| {
                    let mut row = into_object(line);
                    row.insert("tenant_id".into(), json!(tenant));
                    row.insert("order_id".into(), json!(id));
                    row.insert("line_no".into(), json!(i + 1));
                    Value::Object(row)
                }));
            }
        }
        replace_rows(conn, A::TABLE, "id", tenant, &replaced, rows).await?;
        replace_rows(
            conn,
            A::LINES_TABLE,
            "order_id",
            tenant,
            &relined,
            line_rows,
        )
        .await?;
    }
    Ok(())
}
