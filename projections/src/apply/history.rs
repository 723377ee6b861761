//! The history projection: `read.order_history`, one row per event of an order, with who did
//! it, a short human summary and `changes` (`{field: {from, to}}` for every field it changed).
//!
//! `changes` comes from comparing the order's document before and after the event (so nothing
//! the event changed can be missed; the documents are compared as each field's JSON text, see
//! [`DocumentText`], and the fields that differ there are parsed and compared): top-level
//! fields by value, and the keyed lists by element
//! (`lines[<line_id>]`, `receipts[<receipt_id>]`, `payments[<payment_id>]`,
//! `order_notes[<note_id>]`, `claims[<claim_id>]`, `refund_records[<refund_id>]`, each `{from: <element or null>, to: <element or null>}`). The
//! `changes` maps that events carry are added on top (a line change's fields as
//! `lines[<line_id>].<field>`).
//!
//! The order's state before each event comes from `read.order_history_states`, this
//! projection's own fold: the orders projection keeps its own checkpoint and may be ahead or
//! behind.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use oms_domain::changes::{Changes, FieldChange};
use oms_domain::order::ClaimReason;
use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderEvent};
use oms_domain::sales_order::{SalesOrder, SalesOrderEvent};
use oms_domain::values::{CreditNoteNumber, Currency, Money, Weight, WeightUnit};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::orders::OrderKind;
use super::{event_payload, grouped, load_many, payload_error, Folded};
use crate::documents::DocumentText;
use crate::{EventRecord, ProjectionError};

/// Lists in documents whose elements are compared one by one, and their id field.
const KEYED_LISTS: &[(&str, &str)] = &[
    ("lines", "line_id"),
    ("receipts", "receipt_id"),
    ("payments", "payment_id"),
    ("order_notes", "note_id"),
    ("claims", "claim_id"),
    ("refund_records", "refund_id"),
];

/// Longest reason or note text quoted in a summary, in characters.
const EXCERPT: usize = 100;

/// How an order's events read in history.
pub(super) trait Narrated: OrderKind {
    /// The summary of `event`, which led to `after`, done by `who`.
    fn summary(event: &Self::Event, after: &Self, who: &str) -> String;
    /// The before/after values the event itself carries.
    fn event_changes(event: &Self::Event) -> Changes;
}

/// Applies a batch's order events; other aggregate types change nothing.
pub(super) async fn apply(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    apply_orders::<PurchaseOrder>(conn, events).await?;
    apply_orders::<SalesOrder>(conn, events).await
}

/// The columns of the history rows of a batch, one vector per column (bound as arrays).
#[derive(Default)]
pub(super) struct HistoryRows {
    order_id: Vec<Uuid>,
    position: Vec<i64>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    actor: Vec<String>,
    actor_name: Vec<Option<String>>,
    occurred_at: Vec<DateTime<Utc>>,
    summary: Vec<String>,
    /// JSON text: serialised straight from the changes, without a JSON tree in between.
    changes: Vec<String>,
}

impl HistoryRows {
    /// Adds the row of `event` (of an order of kind `A`), which took the order from the state
    /// whose document is `before` to `after`, whose document is `after_document`: who did it,
    /// its summary and its `changes`.
    ///
    /// The one place a history row is made, for the projector and a rebuild alike.
    pub(super) fn push<A: Narrated>(
        &mut self,
        event: &EventRecord,
        payload: &A::Event,
        before: &DocumentText,
        after: &A,
        after_document: &DocumentText,
    ) -> Result<(), ProjectionError> {
        let (actor, actor_name) = actor_of(&event.metadata);
        let summary = A::summary(payload, after, actor_name.as_deref().unwrap_or(&actor));
        let (was, is) = before
            .changed(after_document)
            .map_err(|e| payload_error(event, e))?;
        let mut changes = document_changes(&was, &is);
        changes.extend(A::event_changes(payload));
        let changes = serde_json::to_string(&changes).map_err(|e| payload_error(event, e))?;
        self.order_id.push(event.aggregate_id);
        self.position.push(event.position);
        self.sequence.push(event.sequence);
        self.event_type.push(event.event_type.clone());
        self.actor.push(actor);
        self.actor_name.push(actor_name);
        self.occurred_at.push(event.recorded_at);
        self.summary.push(summary);
        self.changes.push(changes);
        Ok(())
    }

    /// Inserts the rows (orders of `order_type` of `tenant`) in one statement and empties the
    /// buffer. The projector skips rows it has (`on conflict do nothing`: a redelivered batch
    /// writes nothing twice); a rebuild has deleted the tenant's rows first, so it needs no
    /// conflict check and a duplicate there is an error, never silently dropped.
    pub(super) async fn insert(
        &mut self,
        conn: &mut PgConnection,
        tenant: Uuid,
        order_type: &str,
        skip_existing: bool,
    ) -> Result<(), sqlx::Error> {
        self.insert_with_states(conn, tenant, order_type, skip_existing, None)
            .await
    }

    /// [`HistoryRows::insert`], and in the same statement (a data-modifying `with`: the two
    /// tables do not depend on each other) what [`save_states`] writes for `states` (ids,
    /// versions and states as JSON text): the projector's batch writes history in one round
    /// trip.
    async fn insert_with_states(
        &mut self,
        conn: &mut PgConnection,
        tenant: Uuid,
        order_type: &str,
        skip_existing: bool,
        states: Option<(&[Uuid], &[i64], &[String])>,
    ) -> Result<(), sqlx::Error> {
        if self.order_id.is_empty() {
            if let Some((ids, versions, states)) = states {
                save_states(conn, tenant, order_type, ids, versions, states).await?;
            }
            return Ok(());
        }
        let rows = std::mem::take(self);
        let on_conflict = if skip_existing {
            "on conflict (tenant_id, order_id, sequence) do nothing"
        } else {
            ""
        };
        let with_states = if states.is_some() {
            format!("with states as ({}) ", save_states_sql(12))
        } else {
            String::new()
        };
        let sql = format!(
            "{with_states}insert into read.order_history (tenant_id, order_type, order_id, \
                 position, sequence, event_type, actor, actor_name, occurred_at, summary, changes) \
             select $1, $2, o, p, s, e, a, n, t, m, c::jsonb \
               from unnest($3::uuid[], $4::int8[], $5::int8[], $6::text[], $7::text[], \
                           $8::text[], $9::timestamptz[], $10::text[], $11::text[]) \
                    as r (o, p, s, e, a, n, t, m, c) \
             {on_conflict}"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant)
            .bind(order_type)
            .bind(&rows.order_id)
            .bind(&rows.position)
            .bind(&rows.sequence)
            .bind(&rows.event_type)
            .bind(&rows.actor)
            .bind(&rows.actor_name)
            .bind(&rows.occurred_at)
            .bind(&rows.summary)
            .bind(&rows.changes);
        if let Some((ids, versions, states)) = states {
            query = query.bind(ids).bind(versions).bind(states);
        }
        query.execute(&mut *conn).await?;
        Ok(())
    }
}

/// The upsert of the history projection's folds: `$1` the tenant, `$2` the order type, and
/// the ids, versions and states (JSON text) as `$first`, `$first + 1` and `$first + 2`. One
/// text for [`save_states`] (from 3) and for the statement that also inserts history rows
/// (from 12).
fn save_states_sql(first: usize) -> String {
    let (ids, versions, states) = (first, first + 1, first + 2);
    format!(
        "insert into read.order_history_states (tenant_id, order_type, order_id, version, state) \
         select $1, $2, o, v, s::jsonb \
           from unnest(${ids}::uuid[], ${versions}::int8[], ${states}::text[]) as r (o, v, s) \
         on conflict (tenant_id, order_id) \
         do update set version = excluded.version, state = excluded.state"
    )
}

/// Writes, in one statement, the projection's own fold of each order: (`ids`, `versions`,
/// `states` as JSON text) of orders of `order_type` of `tenant`, replacing what is there.
pub(super) async fn save_states(
    conn: &mut PgConnection,
    tenant: Uuid,
    order_type: &str,
    ids: &[Uuid],
    versions: &[i64],
    states: &[String],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(&save_states_sql(3))
        .bind(tenant)
        .bind(order_type)
        .bind(ids)
        .bind(versions)
        .bind(states)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes a history row per event of the batch and moves the projection's fold of each order,
/// in one statement.
async fn apply_orders<A: Narrated>(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    for (tenant, streams) in grouped(events, A::ORDER_TYPE) {
        let ids: Vec<Uuid> = streams.iter().map(|(id, _)| *id).collect();
        let mut stored = load_many(
            conn,
            "order_history_states",
            "order_id",
            false,
            tenant,
            &ids,
        )
        .await?;
        let mut rows = HistoryRows::default();
        let (mut folded_ids, mut versions, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for (id, stream) in streams {
            let mut folded = Folded::<A>::start(stored.remove(&id), stream[0])?;
            // The document before each event is the one after the previous event.
            let (mut before, mut after_document) =
                (DocumentText::default(), DocumentText::default());
            folded.state.document_text(&mut before);
            let mut last = None;
            for event in stream {
                let payload: A::Event = event_payload(event)?;
                if !folded.takes(event)? {
                    continue;
                }
                folded.state.apply(payload.clone());
                let after = &folded.state;
                if !after.created() {
                    return Err(payload_error(event, "the order has not been created"));
                }
                after.document_text(&mut after_document);
                rows.push(event, &payload, &before, after, &after_document)?;
                std::mem::swap(&mut before, &mut after_document);
                last = Some(event);
            }
            let Some(event) = last else { continue };
            folded_ids.push(id);
            versions.push(folded.version);
            states.push(serde_json::to_string(&folded.state).map_err(|e| payload_error(event, e))?);
        }
        if folded_ids.is_empty() {
            continue;
        }
        rows.insert_with_states(
            conn,
            tenant,
            A::ORDER_TYPE,
            true,
            Some((&folded_ids, &versions, &states)),
        )
        .await?;
    }
    Ok(())
}

/// The actor (metadata `actor`, else "unknown") and their display name (`actor_name`).
pub(crate) fn actor_of(metadata: &Value) -> (String, Option<String>) {
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    (
        text("actor").unwrap_or_else(|| "unknown".to_owned()),
        text("actor_name"),
    )
}

/// Every field whose value differs between two documents; keyed lists element by element.
pub(crate) fn document_changes(before: &Value, after: &Value) -> Changes {
    let empty = serde_json::Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changes = Changes::new();
    for key in keys {
        let from = before.get(key).unwrap_or(&Value::Null);
        let to = after.get(key).unwrap_or(&Value::Null);
        if from == to {
            continue;
        }
        match KEYED_LISTS.iter().find(|(list, _)| list == key) {
            Some((_, id_field)) => {
                let from = by_id(from, id_field);
                let to = by_id(to, id_field);
                let ids: BTreeSet<&String> = from.keys().chain(to.keys()).collect();
                for id in ids {
                    let was = from.get(id).copied().unwrap_or(&Value::Null);
                    let is = to.get(id).copied().unwrap_or(&Value::Null);
                    if was != is {
                        changes.insert(
                            format!("{key}[{id}]"),
                            FieldChange {
                                from: was.clone(),
                                to: is.clone(),
                            },
                        );
                    }
                }
            }
            None => {
                changes.insert(
                    key.clone(),
                    FieldChange {
                        from: from.clone(),
                        to: to.clone(),
                    },
                );
            }
        }
    }
    changes
}

/// The elements of a list by their id (by `#<index>` when one has none), borrowed: only the
/// elements that changed are copied into the changes.
fn by_id<'a>(list: &'a Value, id_field: &str) -> BTreeMap<String, &'a Value> {
    let Value::Array(items) = list else {
        return BTreeMap::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = match item.get(id_field) {
                Some(Value::String(id)) => id.clone(),
                Some(other) if !other.is_null() => other.to_string(),
                _ => format!("#{i}"),
            };
            (id, item)
        })
        .collect()
}

/// Keys of a line's `changes`, under `lines[<line_id>].`.
fn line_changes(line_id: &uuid::Uuid, changes: &Changes) -> Changes {
    changes
        .iter()
        .map(|(field, change)| (format!("lines[{line_id}].{field}"), change.clone()))
        .collect()
}

/// "1 line", "2 lines".
fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The first line of `text`, cut to [`EXCERPT`] characters.
fn excerpt(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut cut: String = line.chars().take(EXCERPT).collect();
    if cut.len() < line.len() || text.trim().lines().nth(1).is_some() {
        cut.push('…');
    }
    cut
}

/// The field names of a `changes` map, comma-separated.
fn fields(changes: &Changes) -> String {
    changes.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The sum of some weights, without trailing zeros.
fn total_weight<'a>(weights: impl Iterator<Item = &'a Weight>) -> Decimal {
    weights.map(Weight::value).sum::<Decimal>().normalize()
}

/// " (3 lots)" when some lots were named, else nothing.
fn lots_note(count_of_lots: usize) -> String {
    if count_of_lots == 0 {
        String::new()
    } else {
        format!(" ({})", count(count_of_lots, "lot"))
    }
}

/// A claim reason in words: "short weight".
fn reason_words(reason: ClaimReason) -> String {
    reason.as_str().replace('_', " ")
}

/// "Claim accepted by mary: CN-000004 for 300.00 USD", or without a credit note number
/// "Claim accepted by mary: 300.00 USD credited".
fn accepted(
    who: &str,
    number: Option<&CreditNoteNumber>,
    amount: &Money,
    currency: &str,
) -> String {
    match number {
        Some(number) => format!(
            "Claim accepted by {who}: {} for {amount} {currency}",
            number.as_str()
        ),
        None => format!("Claim accepted by {who}: {amount} {currency} credited"),
    }
}

/// The order's currency and weight unit (defaults before the header exists).
fn units(currency: Option<&Currency>, unit: Option<WeightUnit>) -> (String, String) {
    (
        currency.map(Currency::to_string).unwrap_or_default(),
        unit.unwrap_or_default().to_string(),
    )
}

impl Narrated for PurchaseOrder {
    fn summary(event: &PurchaseOrderEvent, after: &PurchaseOrder, who: &str) -> String {
        use PurchaseOrderEvent as E;
        let header = after.header.as_ref();
        let (currency, unit) = units(header.map(|h| &h.currency), header.map(|h| h.weight_unit));
        match event {
            E::Created {
                order_number,
                lines,
                total,
                ..
            } => format!(
                "Created by {who} ({order_number}, {}, {total} {currency})",
                count(lines.len(), "line")
            ),
            E::HeaderChanged { changes, .. } => {
                format!("Header changed by {who} ({})", fields(changes))
            }
            E::LineAdded { line, .. } => format!(
                "Line added by {who} ({} {unit} at {} {currency}/{unit} = {} {currency})",
                line.weight, line.price_per_unit, line.amount
            ),
            E::LineChanged { changes, .. } => {
                format!("Line changed by {who} ({})", fields(changes))
            }
            E::LineRemoved { line, .. } => format!(
                "Line removed by {who} ({} {unit}, {} {currency})",
                line.weight, line.amount
            ),
            E::Submitted { total } => format!("Submitted by {who} ({total} {currency})"),
            E::Approved => format!("Approved by {who}"),
            E::Rejected { reason } => format!("Rejected by {who}: {}", excerpt(reason.as_str())),
            E::Cancelled { reason, .. } => {
                format!("Cancelled by {who}: {}", excerpt(reason.as_str()))
            }
            E::ReceiptRecorded {
                lines, complete, ..
            } => format!(
                "Receipt of {} {unit} recorded by {who}{}{}",
                total_weight(lines.iter().map(|l| &l.weight)),
                lots_note(lines.iter().map(|l| l.lots.len()).sum()),
                if *complete {
                    " (receiving complete)"
                } else {
                    ""
                }
            ),
            E::PaymentRecorded { amount, method, .. } => {
                format!("Payment of {amount} {currency} ({method}) recorded by {who}")
            }
            E::NoteAdded { text, .. } => format!("Note added by {who}: {}", excerpt(text.as_str())),
            E::Closed => format!("Closed by {who}"),
            E::ClaimRaised {
                reason,
                claimed_amount,
                source_sales_claim_id,
                ..
            } => format!(
                "Claim of {claimed_amount} {currency} ({}) raised by {who}{}",
                reason_words(*reason),
                source_sales_claim_id
                    .map(|id| format!(", passing on sales claim {id}"))
                    .unwrap_or_default()
            ),
            E::ClaimAccepted {
                accepted_amount,
                credit_note_number,
                ..
            } => accepted(who, credit_note_number.as_ref(), accepted_amount, &currency),
            E::ClaimRejected { reason, .. } => {
                format!("Claim rejected by {who}: {}", excerpt(reason.as_str()))
            }
            E::RefundRecorded { amount, method, .. } => {
                format!("Refund of {amount} {currency} ({method}) recorded by {who}")
            }
        }
    }

    fn event_changes(event: &PurchaseOrderEvent) -> Changes {
        match event {
            PurchaseOrderEvent::HeaderChanged { changes, .. } => changes.clone(),
            PurchaseOrderEvent::LineChanged {
                line_id, changes, ..
            } => line_changes(line_id, changes),
            _ => Changes::new(),
        }
    }
}

impl Narrated for SalesOrder {
    fn summary(event: &SalesOrderEvent, after: &SalesOrder, who: &str) -> String {
        use SalesOrderEvent as E;
        let header = after.header.as_ref();
        let (currency, unit) = units(header.map(|h| &h.currency), header.map(|h| h.weight_unit));
        match event {
            E::Created {
                order_number,
                lines,
                total,
                ..
            } => format!(
                "Created by {who} ({order_number}, {}, {total} {currency})",
                count(lines.len(), "line")
            ),
            E::HeaderChanged { changes, .. } => {
                format!("Header changed by {who} ({})", fields(changes))
            }
            E::LineAdded { line, .. } => format!(
                "Line added by {who} ({} {unit} at {} {currency}/{unit} = {} {currency})",
                line.weight, line.price_per_unit, line.amount
            ),
            E::LineChanged { changes, .. } => {
                format!("Line changed by {who} ({})", fields(changes))
            }
            E::LineRemoved { line, .. } => format!(
                "Line removed by {who} ({} {unit}, {} {currency})",
                line.weight, line.amount
            ),
            E::Confirmed { total } => format!("Confirmed by {who} ({total} {currency})"),
            E::Shipped {
                lines, shipped_on, ..
            } => format!(
                "Shipment of {} {unit} on {shipped_on} recorded by {who}{}",
                total_weight(lines.iter().map(|l| &l.weight)),
                lots_note(lines.iter().map(|l| l.lots.len()).sum())
            ),
            E::Delivered { delivered_on } => {
                format!("Delivery on {delivered_on} recorded by {who}")
            }
            E::Invoiced {
                invoice_number,
                invoiced_amount,
                due_date,
                ..
            } => format!(
                "Invoiced by {who} ({invoice_number}, {invoiced_amount} {currency}, due {due_date})"
            ),
            E::PaymentRecorded { amount, method, .. } => {
                format!("Payment of {amount} {currency} ({method}) recorded by {who}")
            }
            E::NoteAdded { text, .. } => format!("Note added by {who}: {}", excerpt(text.as_str())),
            E::Closed => format!("Closed by {who}"),
            E::Cancelled { reason, .. } => {
                format!("Cancelled by {who}: {}", excerpt(reason.as_str()))
            }
            E::ClaimRaised {
                reason,
                claimed_amount,
                ..
            } => format!(
                "Claim of {claimed_amount} {currency} ({}) raised by {who}",
                reason_words(*reason)
            ),
            E::ClaimAccepted {
                accepted_amount,
                credit_note_number,
                ..
            } => accepted(who, Some(credit_note_number), accepted_amount, &currency),
            E::ClaimRejected { reason, .. } => {
                format!("Claim rejected by {who}: {}", excerpt(reason.as_str()))
            }
            E::RefundRecorded { amount, method, .. } => {
                format!("Refund of {amount} {currency} ({method}) recorded by {who}")
            }
        }
    }

    fn event_changes(event: &SalesOrderEvent) -> Changes {
        match event {
            SalesOrderEvent::HeaderChanged { changes, .. } => changes.clone(),
            SalesOrderEvent::LineChanged {
                line_id, changes, ..
            } => line_changes(line_id, changes),
            _ => Changes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn documents_are_compared_field_by_field_and_lists_element_by_element() {
        let before = json!({
            "status": "draft", "total": "1.00", "notes": null,
            "lines": [{"line_id": "a", "weight": "1"}, {"line_id": "b", "weight": "2"}],
            "payments": [],
        });
        let after = json!({
            "status": "submitted", "total": "1.00", "notes": "x",
            "lines": [{"line_id": "a", "weight": "1"}, {"line_id": "c", "weight": "3"}],
            "payments": [{"payment_id": "p", "amount": "5.00"}],
        });
        let changes = document_changes(&before, &after);
        let keys: Vec<&str> = changes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["lines[b]", "lines[c]", "notes", "payments[p]", "status"]
        );
        assert_eq!(changes["status"].from, json!("draft"));
        assert_eq!(changes["status"].to, json!("submitted"));
        assert_eq!(changes["lines[b]"].to, Value::Null);
        assert_eq!(changes["lines[c]"].from, Value::Null);
        assert_eq!(changes["payments[p]"].to["amount"], json!("5.00"));
    }

    #[test]
    fn the_actor_falls_back_from_name_to_subject_to_unknown() {
        assert_eq!(
            actor_of(&json!({"actor": "mary", "actor_name": "Mary Jones"})),
            ("mary".to_owned(), Some("Mary Jones".to_owned()))
        );
        assert_eq!(
            actor_of(&json!({"actor": "mary", "actor_name": " "})),
            ("mary".to_owned(), None)
        );
        assert_eq!(actor_of(&json!(null)), ("unknown".to_owned(), None));
    }

    #[test]
    fn claims_read_as_the_trade_says_them() {
        assert_eq!(reason_words(ClaimReason::ShortWeight), "short weight");
        let number = CreditNoteNumber::parse("CN-000004").unwrap();
        let amount = Money::parse("300.00").unwrap();
        assert_eq!(
            accepted("mary", Some(&number), &amount, "USD"),
            "Claim accepted by mary: CN-000004 for 300.00 USD"
        );
        assert_eq!(
            accepted("mary", None, &amount, "USD"),
            "Claim accepted by mary: 300.00 USD credited"
        );
        assert_eq!(lots_note(0), "");
        assert_eq!(lots_note(3), " (3 lots)");
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("too expensive"), "too expensive");
        assert_eq!(excerpt("first\nsecond"), "first…");
        assert_eq!(excerpt(&"x".repeat(150)).chars().count(), EXCERPT + 1);
        assert_eq!(count(1, "line"), "1 line");
        assert_eq!(count(2, "line"), "2 lines");
    }
}
