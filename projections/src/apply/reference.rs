//! The reference-data projection: `read.suppliers`, `customers`, `products`, `plants`,
//! `carriers`.

use cqrs_es::Aggregate;
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, Reference, ReferenceKind, Supplier,
};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{event_payload, grouped, load_many, payload_error, replace_rows, row_text, Folded};
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

/// Applies a batch's reference-data events; other aggregate types change nothing.
pub(super) async fn apply(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    apply_kind::<Supplier>(conn, events).await?;
    apply_kind::<Customer>(conn, events).await?;
    apply_kind::<Product>(conn, events).await?;
    apply_kind::<Plant>(conn, events).await?;
    apply_kind::<Carrier>(conn, events).await
}

/// Folds each item of kind `K` of the batch into its row and writes the rows back once.
async fn apply_kind<K: ReferenceKind>(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    let Some(table) = table_of(K::TYPE) else {
        return Ok(());
    };
    for (tenant, streams) in grouped(events, K::TYPE) {
        let ids: Vec<Uuid> = streams.iter().map(|(id, _)| *id).collect();
        let mut stored = load_many(conn, table, "id", true, tenant, &ids).await?;
        let (mut replaced, mut rows) = (Vec::new(), Vec::new());
        for (id, stream) in streams {
            let mut folded = Folded::<Reference<K>>::start(stored.remove(&id), stream[0])?;
            let mut last = None;
            for event in stream {
                let payload = event_payload(event)?;
                if !folded.takes(event)? {
                    continue;
                }
                folded.state.apply(payload);
                if !folded.state.exists() {
                    return Err(payload_error(event, "the reference is not registered"));
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
            let document = documents::reference(&folded.state, &stamp).to_string();
            let state =
                serde_json::to_string(&folded.state).map_err(|e| payload_error(event, e))?;
            let tenant = json!(tenant).to_string();
            replaced.push(id);
            rows.push(row_text(
                &document,
                &[
                    ("tenant_id", &tenant),
                    ("state", &state),
                    ("document", &document),
                ],
            ));
        }
        replace_rows(conn, table, "id", tenant, &replaced, &rows).await?;
    }
    Ok(())
}
