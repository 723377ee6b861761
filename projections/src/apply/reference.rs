//! The reference-data projection: `read.suppliers`, `customers`, `products`, `plants`,
//! `carriers`.

use cqrs_es::Aggregate;
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, Reference, ReferenceKind, Supplier,
};
use serde_json::json;
use sqlx::PgConnection;

use super::{event_payload, into_object, load, payload_error, replace_row};
use crate::documents::{self, Stamp};
use crate::{EventRecord, ProjectionError};

/// The table of the reference kind whose aggregate type is `aggregate_type`.
pub(crate) fn table_of(aggregate_type: &str) -> Option<&'static str> {
    Some(match aggregate_type {
        Supplier::TYPE => "suppliers",
        Customer::TYPE => "customers",
        Product::TYPE => "products",
        Plant::TYPE => "plants",
        Carrier::TYPE => "carriers",
        _ => return None,
    })
}

/// Applies a reference-data event; other aggregate types change nothing.
pub(super) async fn apply(
    conn: &mut PgConnection,
    event: &EventRecord,
) -> Result<(), ProjectionError> {
    match event.aggregate_type.as_str() {
        Supplier::TYPE => apply_kind::<Supplier>(conn, event).await,
        Customer::TYPE => apply_kind::<Customer>(conn, event).await,
        Product::TYPE => apply_kind::<Product>(conn, event).await,
        Plant::TYPE => apply_kind::<Plant>(conn, event).await,
        Carrier::TYPE => apply_kind::<Carrier>(conn, event).await,
        _ => Ok(()),
    }
}

/// Folds the event into the row of kind `K` and writes the row back.
async fn apply_kind<K: ReferenceKind>(
    conn: &mut PgConnection,
    event: &EventRecord,
) -> Result<(), ProjectionError> {
    let Some(table) = table_of(K::TYPE) else {
        return Ok(());
    };
    let payload = event_payload(event)?;
    let Some(mut folded) = load::<Reference<K>>(conn, event, table, "id", true).await? else {
        return Ok(());
    };
    folded.state.apply(payload);
    if !folded.state.exists() {
        return Err(payload_error(event, "the reference is not registered"));
    }
    let stamp = Stamp {
        id: event.aggregate_id,
        version: event.sequence,
        created_at: Some(folded.created_at.unwrap_or(event.recorded_at)),
        updated_at: Some(event.recorded_at),
    };
    let document = documents::reference(&folded.state, &stamp);
    let state = serde_json::to_value(&folded.state).map_err(|e| payload_error(event, e))?;
    let mut row = into_object(document.clone());
    row.insert("tenant_id".into(), json!(event.tenant_id));
    row.insert("state".into(), state);
    row.insert("document".into(), document);
    replace_row(conn, table, "id", event.tenant_id, event.aggregate_id, row).await?;
    Ok(())
}
