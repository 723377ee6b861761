//! Lots and their movements (`read.lots`, `read.lot_movements`), part of the orders
//! projection: what a recall traces.
//!
//! Receipts and shipments are final (no event undoes them), so these rows are never changed:
//! each receipt event adds a row per received lot and a `received` movement per lot, each
//! shipment event a `shipped` movement per lot of each line, stamped with the event's tenant
//! position and time. They are made from the event and the order's state before it (the
//! order's number, plant, weight unit, customer and lines, which a receipt or a shipment does
//! not change), by the projector and a rebuild alike ([`LotRows::push_purchase`],
//! [`LotRows::push_sales`]), so both write the same rows.

use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderEvent};
use oms_domain::sales_order::{SalesOrder, SalesOrderEvent};
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::{payload_error, row_text};
use crate::{EventRecord, ProjectionError};

/// The rows of lots and movements a batch (or a page of a rebuild) adds, as JSON texts whose
/// keys are the columns.
#[derive(Debug, Default)]
pub(super) struct LotRows {
    /// Rows of `read.lots`.
    lots: Vec<String>,
    /// Rows of `read.lot_movements`.
    movements: Vec<String>,
}

impl LotRows {
    /// The rows of a purchase order's `event` (its `payload`), applied to `order` (the state
    /// before it): a lot and a `received` movement per lot of a receipt; nothing for other
    /// events.
    pub(super) fn push_purchase(
        &mut self,
        event: &EventRecord,
        payload: &PurchaseOrderEvent,
        order: &PurchaseOrder,
    ) -> Result<(), ProjectionError> {
        let PurchaseOrderEvent::ReceiptRecorded {
            receipt_id,
            received_on,
            lines,
            ..
        } = payload
        else {
            return Ok(());
        };
        if lines.iter().all(|line| line.lots.is_empty()) {
            return Ok(());
        }
        let (Some(header), Some(order_number)) = (&order.header, &order.order_number) else {
            return Err(payload_error(event, "a receipt of an order not created"));
        };
        let stamp = Stamp::of(event);
        for line in lines {
            for lot in &line.lots {
                let document = json!({
                    "lot_id": lot.lot_id,
                    "lot_number": lot.lot_number,
                    "supplier_id": lot.supplier_id,
                    "product_id": lot.product_id,
                    "purchase_order_id": event.aggregate_id,
                    "order_number": order_number,
                    "line_id": line.line_id,
                    "receipt_id": receipt_id,
                    "plant_id": header.plant_id,
                    "establishment_number": lot.establishment_number,
                    "production_date": lot.production_date,
                    "received_on": received_on,
                    "received_weight": lot.weight,
                    "weight_unit": header.weight_unit,
                })
                .to_string();
                self.lots.push(row_text(
                    &document,
                    &[
                        ("tenant_id", &stamp.tenant),
                        ("position", &stamp.position),
                        ("created_at", &stamp.recorded_at),
                        ("document", &document),
                    ],
                ));
                self.movements.push(
                    json!({
                        "tenant_id": event.tenant_id,
                        "lot_id": lot.lot_id,
                        "kind": "received",
                        "order_type": "purchase_order",
                        "order_id": event.aggregate_id,
                        "order_number": order_number,
                        "line_id": line.line_id,
                        "product_id": lot.product_id,
                        "lot_number": lot.lot_number,
                        "supplier_id": lot.supplier_id,
                        "customer_id": null,
                        "moved_on": received_on,
                        "weight": lot.weight,
                        "weight_unit": header.weight_unit,
                        "position": event.position,
                        "recorded_at": event.recorded_at,
                    })
                    .to_string(),
                );
            }
        }
        Ok(())
    }

    /// The rows of a sales order's `event` (its `payload`), applied to `order` (the state
    /// before it): a `shipped` movement per lot of each line of a shipment; nothing for other
    /// events.
    pub(super) fn push_sales(
        &mut self,
        event: &EventRecord,
        payload: &SalesOrderEvent,
        order: &SalesOrder,
    ) -> Result<(), ProjectionError> {
        let SalesOrderEvent::Shipped {
            shipped_on, lines, ..
        } = payload
        else {
            return Ok(());
        };
        if lines.iter().all(|line| line.lots.is_empty()) {
            return Ok(());
        }
        let (Some(header), Some(order_number)) = (&order.header, &order.order_number) else {
            return Err(payload_error(event, "a shipment of an order not created"));
        };
        for line in lines {
            let Some(ordered) = order.lines.iter().find(|l| l.line.line_id == line.line_id) else {
                return Err(payload_error(
                    event,
                    format!("ships line {}, which the order does not have", line.line_id),
                ));
            };
            for lot in &line.lots {
                self.movements.push(
                    json!({
                        "tenant_id": event.tenant_id,
                        "lot_id": lot.lot_id,
                        "kind": "shipped",
                        "order_type": "sales_order",
                        "order_id": event.aggregate_id,
                        "order_number": order_number,
                        "line_id": line.line_id,
                        "product_id": ordered.line.product_id,
                        "lot_number": lot.lot_number,
                        "supplier_id": lot.supplier_id,
                        "customer_id": header.customer_id,
                        "moved_on": shipped_on,
                        "weight": lot.weight,
                        "weight_unit": header.weight_unit,
                        "position": event.position,
                        "recorded_at": event.recorded_at,
                    })
                    .to_string(),
                );
            }
        }
        Ok(())
    }

    /// Whether there is nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.lots.is_empty() && self.movements.is_empty()
    }

    /// Inserts the rows (one statement per table) and empties this.
    pub(super) async fn insert(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for (table, rows) in [
            ("lots", &mut self.lots),
            ("lot_movements", &mut self.movements),
        ] {
            if rows.is_empty() {
                continue;
            }
            let array = format!("[{}]", rows.join(","));
            // The table names are this module's own constants.
            sqlx::query(&format!(
                "insert into read.{table} \
                 select * from jsonb_populate_recordset(null::read.{table}, $1::jsonb)"
            ))
            .bind(array)
            .execute(&mut *conn)
            .await?;
            rows.clear();
        }
        Ok(())
    }
}

/// An event's tenant, position and time as JSON texts, the columns every lot row carries.
struct Stamp {
    /// `tenant_id`.
    tenant: String,
    /// `position`.
    position: String,
    /// `created_at`.
    recorded_at: String,
}

impl Stamp {
    /// The stamp of `event`.
    fn of(event: &EventRecord) -> Self {
        let text = |value: Value| value.to_string();
        Stamp {
            tenant: text(json!(event.tenant_id)),
            position: text(json!(event.position)),
            recorded_at: text(json!(event.recorded_at)),
        }
    }
}
