//! Applying events to the read models.
//!
//! Every projection folds the aggregate's state with the domain's own
//! [`Aggregate::apply`](cqrs_es::Aggregate::apply): the state before the event is loaded from
//! the projection's own table (`state` column), the event is applied, and the rows are written
//! from the state after it. No business rule is repeated here, so a read model cannot disagree
//! with its aggregate.
//!
//! Rows are written with `jsonb_populate_record(null::read.<table>, $1)` from a JSON object
//! whose keys are the column names (the document's own fields plus a few extras): the typed
//! columns are literally the document's values, and adding a column needs no code here.
//!
//! Applying is idempotent per aggregate: an event whose sequence the row already has is
//! skipped, and a sequence that skips ahead is refused ([`ProjectionError::Payload`]), so a
//! duplicate never has a second effect and a gap is never papered over.

mod history;
mod orders;
mod reference;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{EventRecord, Projection, ProjectionError};

/// The tables of `projection`.
///
/// `order_history_states` is the history projection's own fold of each order (it must not
/// read the orders projection's tables, which keep their own checkpoint), so a rebuild of
/// `order_history` rebuilds it too.
pub fn tables(projection: Projection) -> &'static [&'static str] {
    match projection {
        Projection::ReferenceData => &["suppliers", "customers", "products", "plants", "carriers"],
        Projection::Orders => &[
            "purchase_orders",
            "purchase_order_lines",
            "sales_orders",
            "sales_order_lines",
        ],
        Projection::OrderHistory => &["order_history", "order_history_states"],
    }
}

/// Applies `event` for `projection`.
///
/// Events of aggregate types the projection does not keep change nothing. The caller has set
/// `app.tenant_id` for the transaction (row-level security) and feeds each tenant's events
/// once, in position order.
pub async fn apply(
    projection: Projection,
    conn: &mut PgConnection,
    event: &EventRecord,
) -> Result<(), ProjectionError> {
    match projection {
        Projection::ReferenceData => reference::apply(conn, event).await,
        Projection::Orders => orders::apply(conn, event).await,
        Projection::OrderHistory => history::apply(conn, event).await,
    }
}

/// A [`ProjectionError::Payload`] for `event`.
fn payload_error(event: &EventRecord, message: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Payload {
        position: event.position,
        message: format!(
            "{} {} (sequence {}) of {} {}: {message}",
            event.event_type,
            event.event_version,
            event.sequence,
            event.aggregate_type,
            event.aggregate_id
        ),
    }
}

/// The event's payload as the domain event type `E`.
fn event_payload<E: serde::de::DeserializeOwned>(
    event: &EventRecord,
) -> Result<E, ProjectionError> {
    serde_json::from_value(event.payload.clone()).map_err(|e| payload_error(event, e))
}

/// What a projection keeps of an aggregate between events.
struct Folded<A> {
    /// The state after the last applied event.
    state: A,
    /// The number of events applied.
    version: i64,
    /// When the first event was recorded (orders and reference data only).
    created_at: Option<DateTime<Utc>>,
}

/// Loads the fold of the event's aggregate from `table` (columns `state`, `version` and, when
/// `with_created_at`, `created_at`; key column `key`), locking the row.
///
/// Returns `None` when the event was applied already (a duplicate: skip it), the empty state
/// for an aggregate's first event, and an error for a sequence that does not follow the row's
/// version.
async fn load<A: Default + serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    event: &EventRecord,
    table: &str,
    key: &str,
    with_created_at: bool,
) -> Result<Option<Folded<A>>, ProjectionError> {
    let created_at = if with_created_at {
        "created_at"
    } else {
        "null::timestamptz"
    };
    let sql = format!(
        "select state, version, {created_at} from read.{table} \
         where tenant_id = $1 and {key} = $2 for update"
    );
    let row: Option<(Value, i64, Option<DateTime<Utc>>)> = sqlx::query_as(&sql)
        .bind(event.tenant_id)
        .bind(event.aggregate_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (state, version, created_at) = match row {
        Some((state, version, created_at)) => {
            let state = serde_json::from_value(state)
                .map_err(|e| payload_error(event, format!("stored state does not load: {e}")))?;
            (state, version, created_at)
        }
        None => (A::default(), 0, None),
    };
    if event.sequence <= version {
        return Ok(None);
    }
    if event.sequence != version + 1 {
        return Err(payload_error(
            event,
            format!(
                "the read model holds {version} event(s) of this aggregate; \
                 expected sequence {}",
                version + 1
            ),
        ));
    }
    Ok(Some(Folded {
        state,
        version,
        created_at,
    }))
}

/// Replaces the row of `table` whose key is (tenant_id, `key` = `id`) with `row` (a JSON
/// object whose keys are column names; missing columns are null).
async fn replace_row(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    tenant: Uuid,
    id: Uuid,
    row: Map<String, Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "delete from read.{table} where tenant_id = $1 and {key} = $2"
    ))
    .bind(tenant)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "insert into read.{table} select * from jsonb_populate_record(null::read.{table}, $1)"
    ))
    .bind(Value::Object(row))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The object inside `value`, or an empty one.
fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
