//! Applying events to the read models.
//!
//! Every projection folds the aggregate's state with the domain's own
//! [`Aggregate::apply`](cqrs_es::Aggregate::apply): the state before the event is loaded from
//! the projection's own table (`state` column), the event is applied, and the rows are written
//! from the state after it. No business rule is repeated here, so a read model cannot disagree
//! with its aggregate.
//!
//! Rows are written from the document's own fields, so the typed columns are literally the
//! document's values and adding a column needs no code here: an order's row binds each column
//! of its table (read from the catalog) as the text of the document field of that name
//! (`orders::write_orders`), and its lines each column of theirs as the line's field of that
//! name (`orders::write_lines`); the rows of claims, lots and reference data are JSON objects
//! whose keys are the column names, given to `jsonb_populate_recordset(null::read.<table>,
//! $1)`; history's rows bind one typed array per column.
//!
//! Applying is idempotent per aggregate: an event whose sequence the row already has is
//! skipped, and a sequence that skips ahead is refused ([`ProjectionError::Payload`]), so a
//! duplicate never has a second effect and a gap is never papered over.

mod history;
mod lots;
mod orders;
mod rebuild;
mod reference;

pub use rebuild::{Rebuild, CAPACITY};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
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
            "claims",
            "lots",
            "lot_movements",
        ],
        Projection::OrderHistory => &["order_history", "order_history_states"],
    }
}

/// Applies `event` for `projection`: a batch of one (see [`apply_batch`]).
pub async fn apply(
    projection: Projection,
    conn: &mut PgConnection,
    event: &EventRecord,
) -> Result<(), ProjectionError> {
    apply_batch(projection, conn, std::slice::from_ref(event)).await
}

/// Applies `events` for `projection`, in the order given, with a few statements per table
/// whatever their number.
///
/// Events of aggregate types the projection does not keep change nothing. The caller has set
/// `app.tenant_id` for the transaction (row-level security) and feeds each tenant's events
/// once, in position order. Each aggregate's rows are loaded once (one statement per table for
/// the whole batch), its events folded in memory, and its rows written once (multi-row
/// statements): a batch costs the same round trips as one event, which is what lets the
/// projector keep up and a rebuild run at the speed of the fold.
pub async fn apply_batch(
    projection: Projection,
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    if events.is_empty() {
        return Ok(());
    }
    match projection {
        Projection::ReferenceData => reference::apply(conn, events).await,
        Projection::Orders => orders::apply(conn, events).await,
        Projection::OrderHistory => history::apply(conn, events).await,
    }
}

/// One aggregate's events of a batch, in the batch's order.
type Stream<'a> = (Uuid, Vec<&'a EventRecord>);

/// The events of `aggregate_type`, per tenant and then per aggregate, each in the order given
/// (tenants and aggregates in the order of their first event).
fn grouped<'a>(events: &'a [EventRecord], aggregate_type: &str) -> Vec<(Uuid, Vec<Stream<'a>>)> {
    let mut tenants: Vec<(Uuid, Vec<Stream<'a>>)> = Vec::new();
    let mut index: HashMap<(Uuid, Uuid), (usize, usize)> = HashMap::new();
    for event in events.iter().filter(|e| e.aggregate_type == aggregate_type) {
        let key = (event.tenant_id, event.aggregate_id);
        if let Some(&(t, a)) = index.get(&key) {
            tenants[t].1[a].1.push(event);
            continue;
        }
        let t = match tenants
            .iter()
            .position(|(tenant, _)| *tenant == event.tenant_id)
        {
            Some(t) => t,
            None => {
                tenants.push((event.tenant_id, Vec::new()));
                tenants.len() - 1
            }
        };
        tenants[t].1.push((event.aggregate_id, vec![event]));
        index.insert(key, (t, tenants[t].1.len() - 1));
    }
    tenants
}

/// A stored fold as read from a projection's table: state, version, first event's time.
type StoredFold = (Value, i64, Option<DateTime<Utc>>);

/// Loads, in one statement, the stored folds of the aggregates `ids` of `tenant` from `table`
/// (columns `state`, `version` and, when `with_created_at`, `created_at`; key column `key`).
///
/// The rows are not locked (`for update` would write a lock into every row read): every writer
/// of a projection's rows of a tenant — the projector and `oms replay` — holds that (projection,
/// tenant)'s checkpoint row locked (`checkpoints::lock`) for its whole transaction, so no one
/// else writes them meanwhile.
async fn load_many(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    with_created_at: bool,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, StoredFold>, sqlx::Error> {
    let created_at = if with_created_at {
        "created_at"
    } else {
        "null::timestamptz"
    };
    // Table and column names come from the projections' own constants, never from input.
    let sql = format!(
        "select {key}, state, version, {created_at} from read.{table} \
         where tenant_id = $1 and {key} = any($2)"
    );
    let rows: Vec<(Uuid, Value, i64, Option<DateTime<Utc>>)> = sqlx::query_as(&sql)
        .bind(tenant)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, state, version, created_at)| (id, (state, version, created_at)))
        .collect())
}

impl<A: Default + serde::de::DeserializeOwned> Folded<A> {
    /// The fold an aggregate's first event of a batch starts from: what `stored` holds, or
    /// the empty state.
    fn start(stored: Option<StoredFold>, first: &EventRecord) -> Result<Self, ProjectionError> {
        Ok(match stored {
            Some((state, version, created_at)) => Folded {
                state: serde_json::from_value(state).map_err(|e| {
                    payload_error(first, format!("stored state does not load: {e}"))
                })?,
                version,
                created_at,
            },
            None => Folded {
                state: A::default(),
                version: 0,
                created_at: None,
            },
        })
    }

    /// Whether `event` is the next one to apply: `false` for one applied already (a
    /// duplicate: skip it), an error for a sequence that does not follow the fold's version.
    /// On `true` the version (and, for the first event, `created_at`) move to the event.
    fn takes(&mut self, event: &EventRecord) -> Result<bool, ProjectionError> {
        if event.sequence <= self.version {
            return Ok(false);
        }
        if event.sequence != self.version + 1 {
            return Err(payload_error(
                event,
                format!(
                    "the read model holds {} event(s) of this aggregate; expected sequence {}",
                    self.version,
                    self.version + 1
                ),
            ));
        }
        self.version = event.sequence;
        self.created_at.get_or_insert(event.recorded_at);
        Ok(true)
    }
}

/// Replaces, in one statement, the rows of `table` whose key is (`tenant`, `key` in `ids`)
/// with `rows` (JSON objects' text, whose keys are column names; missing columns are null).
///
/// The delete is a data-modifying `with` whose rows the insert counts in a condition that
/// names no column of its own: Postgres evaluates that condition once, before the insert
/// reads its first row, so the delete has run to its end by then. A row it deleted no longer
/// counts against a unique key (the transaction deleted it), so a row may come back with its
/// key. One round trip instead of two, for every table the projector rewrites.
async fn replace_rows(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    tenant: Uuid,
    ids: &[Uuid],
    rows: &[String],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() && rows.is_empty() {
        return Ok(());
    }
    let (delete, after_delete) = deleting_first(table, key, 2, 3);
    sqlx::query(&format!(
        "{delete}insert into read.{table} \
         select * from jsonb_populate_recordset(null::read.{table}, $1::jsonb){after_delete}"
    ))
    .bind(json_array(rows))
    .bind(tenant)
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What turns an `insert … select` into a replacement (see [`replace_rows`]): the text to put
/// before it (a `with` deleting the rows of `table` whose `tenant_id` is `$tenant` and whose
/// `key` is in `$ids`) and the condition to put after its `from` list, which makes the delete
/// run to its end before the first row is inserted.
fn deleting_first(table: &str, key: &str, tenant: usize, ids: usize) -> (String, &'static str) {
    // Table and column names come from the projections' own constants, never from input.
    (
        format!(
            "with gone as (delete from read.{table} \
                            where tenant_id = ${tenant} and {key} = any(${ids}) returning 1) "
        ),
        " where (select count(*) from gone) >= 0",
    )
}

/// Deletes, in one statement, the rows of `table` whose key is (`tenant`, `key` in `ids`).
async fn delete_rows(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "delete from read.{table} where tenant_id = $1 and {key} = any($2)"
    ))
    .bind(tenant)
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The JSON array of `rows` (JSON values' text), as text: what `jsonb_populate_recordset`
/// reads, made without parsing the rows again.
fn json_array(rows: &[String]) -> String {
    let mut array = String::with_capacity(rows.iter().map(|row| row.len() + 1).sum::<usize>() + 2);
    array.push('[');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(row);
    }
    array.push(']');
    array
}

/// A row as JSON text: the fields of `object` (a JSON object's text; none if it is not an
/// object) followed by `columns` (a column name and its value's JSON text each).
///
/// A column that is also a field of `object` comes twice; jsonb keeps the last of duplicate
/// keys, so the column's value is the one stored, as if it had been inserted into the object.
/// Rows are made as text so that a document or a state, a few kilobytes of JSON, is serialised
/// once and never copied as a tree.
fn row_text(object: &str, columns: &[(&str, &str)]) -> String {
    let fields = object
        .strip_prefix('{')
        .and_then(|inner| inner.strip_suffix('}'))
        .unwrap_or("");
    let mut row = String::with_capacity(
        fields.len()
            + columns
                .iter()
                .map(|(c, v)| c.len() + v.len() + 4)
                .sum::<usize>()
            + 2,
    );
    row.push('{');
    row.push_str(fields);
    for (column, value) in columns {
        if row.len() > 1 {
            row.push(',');
        }
        // Column names are the projections' own identifiers: nothing to escape.
        row.push('"');
        row.push_str(column);
        row.push_str("\":");
        row.push_str(value);
    }
    row.push('}');
    row
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

/// The event's payload as the domain event type `E` (read from the JSON tree in place, not
/// from a copy of it).
fn event_payload<E: serde::de::DeserializeOwned>(
    event: &EventRecord,
) -> Result<E, ProjectionError> {
    E::deserialize(&event.payload).map_err(|e| payload_error(event, e))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What Postgres makes of a row's text: jsonb keeps the last of duplicate keys, as
    /// serde_json does.
    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_rows_columns_follow_the_objects_fields_and_replace_those_of_the_same_name() {
        let row = row_text(r#"{"a":1,"b":{"c":[1,2]}}"#, &[("b", "3"), ("d", r#""x""#)]);
        assert_eq!(parsed(&row), json!({"a": 1, "b": 3, "d": "x"}));
        assert_eq!(parsed(&row_text("{}", &[("a", "1")])), json!({"a": 1}));
        assert_eq!(parsed(&row_text("null", &[("a", "1")])), json!({"a": 1}));
        assert_eq!(parsed(&row_text(r#"{"a":1}"#, &[])), json!({"a": 1}));
    }
}
