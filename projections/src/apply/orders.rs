//! The orders projection: `read.purchase_orders`, `purchase_order_lines`, `sales_orders`,
//! `sales_order_lines`, `read.claims` (the claims of both kinds of order), and the lots
//! received and shipped (`read.lots`, `lot_movements`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use oms_domain::order::Claim;
use oms_domain::purchase_order::{PurchaseOrder, PurchaseOrderEvent, PURCHASE_ORDER_TYPE};
use oms_domain::sales_order::{SalesOrder, SalesOrderEvent, SALES_ORDER_TYPE};
use oms_domain::values::CreditTerms;
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use uuid::Uuid;

use super::lots::LotRows;
use super::{
    deleting_first, event_payload, grouped, json_array, load_many, payload_error, row_text, Folded,
};
use crate::documents::{self, DocumentText, FieldTexts, Stamp};
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
    /// Its document (what the API answers with), as its fields' JSON text.
    fn document_texts(&self, stamp: &Stamp) -> FieldTexts;
    /// Its document, without the stamp, as history compares it (see [`DocumentText`]).
    fn document_text(&self, text: &mut DocumentText);
    /// Its lines' serde form, in order.
    fn lines_json(&self) -> Value;
    /// Columns of its row that are not fields of its document.
    fn extra_columns(&self, row: &mut Map<String, Value>);
    /// Its claims, in the order raised.
    fn claims(&self) -> &[Claim];
    /// The claim that `event` raises or decides, if it is such an event.
    fn claim_step(event: &Self::Event) -> Option<(Uuid, ClaimStep)>;
    /// The columns of its claims' rows that are the order's: its number, its counterparty
    /// (`supplier_id` or `customer_id`), currency and weight unit.
    fn claim_columns(&self, row: &mut Map<String, Value>);
    /// Adds to `rows` the lot rows of `event` (whose payload is `payload`), applied to `self`
    /// (the state before it): what receipts and shipments of lots add.
    fn push_lots(
        &self,
        rows: &mut LotRows,
        event: &EventRecord,
        payload: &Self::Event,
    ) -> Result<(), ProjectionError>;
}

impl OrderKind for PurchaseOrder {
    const ORDER_TYPE: &'static str = PURCHASE_ORDER_TYPE;
    const TABLE: &'static str = "purchase_orders";
    const LINES_TABLE: &'static str = "purchase_order_lines";

    fn created(&self) -> bool {
        self.exists() && self.header.is_some()
    }

    fn document_texts(&self, stamp: &Stamp) -> FieldTexts {
        FieldTexts::stamped(stamp, |fields| {
            documents::purchase_order_fields(self, fields)
        })
    }

    fn document_text(&self, text: &mut DocumentText) {
        text.write(|fields| documents::purchase_order_fields(self, fields));
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

    fn claims(&self) -> &[Claim] {
        &self.claims
    }

    fn claim_step(event: &PurchaseOrderEvent) -> Option<(Uuid, ClaimStep)> {
        match event {
            PurchaseOrderEvent::ClaimRaised { claim_id, .. } => {
                Some((*claim_id, ClaimStep::Raised))
            }
            PurchaseOrderEvent::ClaimAccepted { claim_id, .. }
            | PurchaseOrderEvent::ClaimRejected { claim_id, .. } => {
                Some((*claim_id, ClaimStep::Decided))
            }
            _ => None,
        }
    }

    fn claim_columns(&self, row: &mut Map<String, Value>) {
        row.insert("order_number".into(), json!(self.order_number));
        if let Some(header) = &self.header {
            row.insert("supplier_id".into(), json!(header.supplier_id));
            row.insert("currency".into(), json!(header.currency));
            row.insert("weight_unit".into(), json!(header.weight_unit));
        }
    }

    fn push_lots(
        &self,
        rows: &mut LotRows,
        event: &EventRecord,
        payload: &Self::Event,
    ) -> Result<(), ProjectionError> {
        rows.push_purchase(event, payload, self)
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

    fn document_texts(&self, stamp: &Stamp) -> FieldTexts {
        FieldTexts::stamped(stamp, |fields| documents::sales_order_fields(self, fields))
    }

    fn document_text(&self, text: &mut DocumentText) {
        text.write(|fields| documents::sales_order_fields(self, fields));
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

    fn claims(&self) -> &[Claim] {
        &self.claims
    }

    fn claim_step(event: &SalesOrderEvent) -> Option<(Uuid, ClaimStep)> {
        match event {
            SalesOrderEvent::ClaimRaised { claim_id, .. } => Some((*claim_id, ClaimStep::Raised)),
            SalesOrderEvent::ClaimAccepted { claim_id, .. }
            | SalesOrderEvent::ClaimRejected { claim_id, .. } => {
                Some((*claim_id, ClaimStep::Decided))
            }
            _ => None,
        }
    }

    fn claim_columns(&self, row: &mut Map<String, Value>) {
        row.insert("order_number".into(), json!(self.order_number));
        if let Some(header) = &self.header {
            row.insert("customer_id".into(), json!(header.customer_id));
            row.insert("currency".into(), json!(header.currency));
            row.insert("weight_unit".into(), json!(header.weight_unit));
        }
    }

    fn push_lots(
        &self,
        rows: &mut LotRows,
        event: &EventRecord,
        payload: &Self::Event,
    ) -> Result<(), ProjectionError> {
        rows.push_sales(event, payload, self)
    }
}

/// A step of a claim's life whose time its row keeps; its value is its place in
/// [`ClaimTimes`]' pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimStep {
    /// Raised (`raised_at`).
    Raised = 0,
    /// Accepted or rejected (`decided_at`).
    Decided = 1,
}

/// When an order's claims were raised and decided, as far as the events folded here tell:
/// the order's state keeps no times (the events' shapes carry none), so the projection takes
/// them from the events it applies. A claim whose events were applied by an earlier batch
/// keeps the times its row has (see [`upsert_claims`]).
#[derive(Debug, Default)]
pub(super) struct ClaimTimes(HashMap<Uuid, [Option<DateTime<Utc>>; 2]>);

impl ClaimTimes {
    /// Notes the time of `event` (with `payload`, its domain event) if it raises or decides a
    /// claim.
    pub(super) fn note<A: OrderKind>(&mut self, event: &EventRecord, payload: &A::Event) {
        if let Some((claim_id, step)) = A::claim_step(payload) {
            let times = self.0.entry(claim_id).or_default();
            times[step as usize] = Some(event.recorded_at);
        }
    }

    /// `raised_at` and `decided_at` of `claim_id`, as far as known here.
    fn of(&self, claim_id: Uuid) -> [Option<DateTime<Utc>>; 2] {
        self.0.get(&claim_id).copied().unwrap_or_default()
    }
}

/// The rows of `order`'s claims in `read.claims` (JSON objects' text, keyed by column): each
/// claim's serde form, the order's columns ([`OrderKind::claim_columns`]) and the claim's
/// times from `times` (null where unknown here).
pub(super) fn claim_rows<A: OrderKind>(
    order: &A,
    tenant: Uuid,
    id: Uuid,
    times: &ClaimTimes,
) -> Result<Vec<String>, serde_json::Error> {
    if order.claims().is_empty() {
        return Ok(Vec::new());
    }
    let mut common = Map::new();
    common.insert("tenant_id".into(), json!(tenant));
    common.insert("order_type".into(), json!(A::ORDER_TYPE));
    common.insert("order_id".into(), json!(id));
    order.claim_columns(&mut common);
    let common: Vec<(String, String)> = common
        .into_iter()
        .map(|(column, value)| (column, value.to_string()))
        .collect();
    order
        .claims()
        .iter()
        .map(|claim| {
            let [raised_at, decided_at] = times.of(claim.claim_id);
            let (raised_at, decided_at) =
                (json!(raised_at).to_string(), json!(decided_at).to_string());
            let mut columns: Vec<(&str, &str)> = common
                .iter()
                .map(|(c, v)| (c.as_str(), v.as_str()))
                .collect();
            columns.push(("raised_at", &raised_at));
            columns.push(("decided_at", &decided_at));
            Ok(row_text(&serde_json::to_string(claim)?, &columns))
        })
        .collect()
}

/// Writes the claims' `rows` ([`claim_rows`]) in one statement, replacing the rows of the same
/// claims. A time the new row does not know (null) keeps the one stored: the events that raised
/// or decided a claim may have been applied by an earlier batch, and the state has no times.
pub(super) async fn upsert_claims(
    conn: &mut PgConnection,
    rows: &[String],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into read.claims as c \
         select * from jsonb_populate_recordset(null::read.claims, $1::jsonb) \
         on conflict (tenant_id, order_id, claim_id) do update set \
             order_type = excluded.order_type, order_number = excluded.order_number, \
             supplier_id = excluded.supplier_id, customer_id = excluded.customer_id, \
             reason = excluded.reason, status = excluded.status, \
             currency = excluded.currency, weight_unit = excluded.weight_unit, \
             claimed_amount = excluded.claimed_amount, \
             accepted_amount = excluded.accepted_amount, \
             credit_note_number = excluded.credit_note_number, \
             reject_reason = excluded.reject_reason, notes = excluded.notes, \
             source_sales_claim_id = excluded.source_sales_claim_id, lines = excluded.lines, \
             raised_at = coalesce(excluded.raised_at, c.raised_at), \
             decided_at = coalesce(excluded.decided_at, c.decided_at)",
    )
    .bind(json_array(rows))
    .execute(&mut *conn)
    .await?;
    Ok(())
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
/// when they changed, its lines) back once, and the rows of the lots its receipts or its
/// shipment carried.
async fn apply_orders<A: OrderKind>(
    conn: &mut PgConnection,
    events: &[EventRecord],
) -> Result<(), ProjectionError> {
    for (tenant, streams) in grouped(events, A::ORDER_TYPE) {
        let ids: Vec<Uuid> = streams.iter().map(|(id, _)| *id).collect();
        let mut stored = load_many(conn, A::TABLE, "id", true, tenant, &ids).await?;
        let (mut replaced, mut rows) = (Vec::new(), Vec::new());
        let (mut relined, mut line_rows) = (Vec::new(), Vec::new());
        let mut claim_batch = Vec::new();
        let mut lot_rows = LotRows::default();
        for (id, stream) in streams {
            let mut folded = Folded::<A>::start(stored.remove(&id), stream[0])?;
            let lines_before = (folded.version > 0).then(|| folded.state.lines_json());
            let claims_before = folded.state.claims().to_vec();
            let mut times = ClaimTimes::default();
            let mut last = None;
            for event in stream {
                let payload: A::Event = event_payload(event)?;
                if !folded.takes(event)? {
                    continue;
                }
                times.note::<A>(event, &payload);
                folded.state.push_lots(&mut lot_rows, event, &payload)?;
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
            let document = folded.state.document_texts(&stamp);
            let state =
                serde_json::to_string(&folded.state).map_err(|e| payload_error(event, e))?;
            replaced.push(id);
            rows.push(order_row(
                &folded.state,
                tenant,
                event.position,
                document,
                state,
            ));

            let lines = folded.state.lines_json();
            if lines_before.as_ref() != Some(&lines) {
                let Some(lines) = line_rows_of(tenant, id, lines) else {
                    return Err(payload_error(event, "the order's lines are not a list"));
                };
                relined.push(id);
                line_rows.extend(lines);
            }
            if folded.state.claims() != claims_before.as_slice() {
                let rows = claim_rows(&folded.state, tenant, id, &times)
                    .map_err(|e| payload_error(event, e))?;
                claim_batch.extend(rows);
            }
        }
        if !replaced.is_empty() {
            replace_orders::<A>(conn, tenant, &replaced, &rows, &relined, &line_rows).await?;
        }
        upsert_claims(conn, &claim_batch).await?;
        lot_rows.insert(conn).await?;
    }
    Ok(())
}

/// An order's row in its table: the fields of its `document` that are columns, its `state`
/// (the fold the next event starts from) and `document` themselves, and `extra`: `tenant_id`,
/// `last_position` (the tenant position of its last event) and the
/// [`OrderKind::extra_columns`], which come before a document field of the same name.
pub(super) struct OrderRow {
    /// The document.
    document: FieldTexts,
    /// The state's JSON text.
    state: String,
    /// The other columns, by name.
    extra: Map<String, Value>,
}

/// The row of an order (see [`OrderRow`]): the one place it is made, for the projector and a
/// rebuild alike.
pub(super) fn order_row<A: OrderKind>(
    order: &A,
    tenant: Uuid,
    last_position: i64,
    document: FieldTexts,
    state: String,
) -> OrderRow {
    let mut extra = Map::new();
    extra.insert("tenant_id".into(), json!(tenant));
    extra.insert("last_position".into(), json!(last_position));
    order.extra_columns(&mut extra);
    OrderRow {
        document,
        state,
        extra,
    }
}

/// The columns of an order kind's table and of its lines' table, in order, as the catalog has
/// them: the code writes whatever columns the tables have, whichever migration they are at.
///
/// The projector keeps them from one write to the next ([`OrderColumns::cached`]): reading
/// them took a round trip and a join over the catalog on every tenant's batch, 7 % of the
/// pipeline's Postgres statement time. Each write checks, in its own statement, that
/// the table is still the one they were read from ([`TableColumns::shape`]); when it is not,
/// the write inserts nothing and they are read again (see [`replace_orders`]). A rebuild
/// reads them afresh ([`OrderColumns::read`]): it writes rarely, and holds the tables from
/// its first statement, so they cannot change under it.
pub(super) struct OrderColumns {
    /// `purchase_orders` or `sales_orders`.
    pub(super) orders: TableColumns,
    /// `purchase_order_lines` or `sales_order_lines`.
    pub(super) lines: TableColumns,
}

/// One table's columns, and how to tell they are still its columns.
pub(super) struct TableColumns {
    /// Its columns, in order.
    columns: Vec<Column>,
    /// The table's `relnatts` and `relfilenode` when its columns were read. A column added
    /// moves the first; a column's type changed rewrites the table and moves the second (a
    /// value cast to the old type on its way to the new one could lose what the new one
    /// keeps, a scale's digits); a column dropped or renamed moves neither, but then the write
    /// names a column the table no longer has and fails, and a failed write forgets the
    /// cached columns.
    shape: (i16, i64),
}

/// The columns [`OrderColumns::cached`] keeps, by order table: a process's every connection
/// and database share them, each write checking them against its table.
static CACHED: Mutex<Vec<(&str, Arc<OrderColumns>)>> = Mutex::new(Vec::new());

impl OrderColumns {
    /// Reads both tables' columns in one statement.
    pub(super) async fn read<A: OrderKind>(conn: &mut PgConnection) -> Result<Self, sqlx::Error> {
        let columns: Vec<(String, i16, i64, String, String)> = sqlx::query_as(
            "select c.relname::text, c.relnatts, c.relfilenode::int8, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod) \
               from pg_class c join pg_attribute a on a.attrelid = c.oid \
              where c.oid = any($1::text[]::regclass[]) and a.attnum > 0 \
                and not a.attisdropped \
              order by a.attrelid, a.attnum",
        )
        .bind([
            format!("read.{}", A::TABLE),
            format!("read.{}", A::LINES_TABLE),
        ])
        .fetch_all(&mut *conn)
        .await?;
        let table = || TableColumns {
            columns: Vec::new(),
            shape: (0, 0),
        };
        let (mut orders, mut lines) = (table(), table());
        for (table, natts, filenode, name, type_name) in columns {
            let table = if table == A::TABLE {
                &mut orders
            } else {
                &mut lines
            };
            table.shape = (natts, filenode);
            table.columns.push(Column { name, type_name });
        }
        Ok(Self { orders, lines })
    }

    /// The columns this process read last for `A`'s tables, or [`OrderColumns::read`] (and
    /// kept) when it has none.
    async fn cached<A: OrderKind>(conn: &mut PgConnection) -> Result<Arc<Self>, sqlx::Error> {
        let kept = cached()
            .iter()
            .find(|(table, _)| *table == A::TABLE)
            .map(|(_, columns)| Arc::clone(columns));
        match kept {
            Some(columns) => Ok(columns),
            None => Self::reread::<A>(conn).await,
        }
    }

    /// [`OrderColumns::read`], kept in place of what this process had for `A`'s tables.
    async fn reread<A: OrderKind>(conn: &mut PgConnection) -> Result<Arc<Self>, sqlx::Error> {
        let columns = Arc::new(Self::read::<A>(conn).await?);
        Self::forget::<A>();
        cached().push((A::TABLE, Arc::clone(&columns)));
        Ok(columns)
    }

    /// Drops what this process kept of `A`'s tables' columns: the next write reads them.
    fn forget<A: OrderKind>() {
        cached().retain(|(table, _)| *table != A::TABLE);
    }
}

/// The cached columns, locked for a moment (never across an await); a panic while they were
/// locked left nothing half-written, so a poisoned lock is taken as it is.
fn cached() -> std::sync::MutexGuard<'static, Vec<(&'static str, Arc<OrderColumns>)>> {
    CACHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The projector's write of a tenant's changed orders of kind `A`: their rows (`rows`, of
/// the orders `replaced`) and, for the orders `relined`, their lines (`line_rows`), each
/// replacing what the tables held for them, with the columns this process keeps
/// ([`OrderColumns::cached`]). A write that finds its table changed since (it inserts nothing)
/// is made again with the columns read afresh, in the same transaction (its delete finds
/// nothing more to delete); a write that fails forgets the columns, so that the batch,
/// delivered again, reads them.
async fn replace_orders<A: OrderKind>(
    conn: &mut PgConnection,
    tenant: Uuid,
    replaced: &[Uuid],
    rows: &[OrderRow],
    relined: &[Uuid],
    line_rows: &[LineRow],
) -> Result<(), ProjectionError> {
    let mut columns = OrderColumns::cached::<A>(conn).await?;
    for last_try in [false, true] {
        let written = async {
            Ok::<_, sqlx::Error>(
                write_orders(
                    conn,
                    A::TABLE,
                    &columns.orders,
                    Some((tenant, replaced)),
                    rows,
                )
                .await?
                    && (relined.is_empty()
                        || write_lines(
                            conn,
                            A::LINES_TABLE,
                            &columns.lines,
                            Some((tenant, relined)),
                            line_rows,
                        )
                        .await?),
            )
        }
        .await;
        match written {
            Ok(true) => return Ok(()),
            Ok(false) if !last_try => columns = OrderColumns::reread::<A>(conn).await?,
            Ok(false) => break,
            Err(err) => {
                OrderColumns::forget::<A>();
                return Err(err.into());
            }
        }
    }
    OrderColumns::forget::<A>();
    Err(ProjectionError::Database(sqlx::Error::Protocol(format!(
        "the columns of read.{} or read.{} changed while they were written",
        A::TABLE,
        A::LINES_TABLE
    ))))
}

/// Writes the rows of orders into `table` (`purchase_orders` or `sales_orders`; its
/// `columns`, [`OrderColumns`]) in one statement, first deleting the rows of `replaced` (a
/// tenant and its orders' ids), if any, in the same statement.
///
/// Each column's value is `state`, `document`, else the row's extra value or its document's
/// field of the column's name (null when neither has it), so the typed columns are literally
/// the document's values. The rows used to be sent as JSON and given to
/// `jsonb_populate_record` after merging the document, the state and the extra fields into
/// one object: that read each document twice and copied it into the merged object, and made
/// up about half of a rebuild's Postgres time. The document comes as its fields' JSON text
/// ([`FieldTexts`]), which gives both the `document` column and the fields' columns without a
/// JSON tree of the document in between.
pub(super) async fn write_orders(
    conn: &mut PgConnection,
    table: &str,
    columns: &TableColumns,
    replaced: Option<(Uuid, &[Uuid])>,
    rows: &[OrderRow],
) -> Result<bool, sqlx::Error> {
    let values = column_arrays(&columns.columns, rows, |column, row| {
        match (row.extra.get(&column.name), column.name.as_str()) {
            (Some(value), _) => column.text(value),
            (None, "state") => Some(row.state.clone()),
            (None, "document") => Some(row.document.document()),
            (None, name) => row.document.get(name).and_then(|text| column.text_of(text)),
        }
    });
    write_columns(conn, table, "id", columns, replaced, &values).await
}

/// Writes the rows of orders' lines into `table` (`purchase_order_lines` or
/// `sales_order_lines`; its `columns`, [`OrderColumns`]) in one statement, first deleting the
/// lines of the orders of `replaced` (a tenant and its orders' ids), if any, in the same
/// statement. Each column's value is the line's field of its name as
/// `jsonb_populate_recordset` would read it ([`Column::text`]): the lines used to be sent as
/// JSON to that function, which parsed every line (its lots too) into jsonb first, at twice
/// the cost of these typed arrays.
pub(super) async fn write_lines(
    conn: &mut PgConnection,
    table: &str,
    columns: &TableColumns,
    replaced: Option<(Uuid, &[Uuid])>,
    rows: &[LineRow],
) -> Result<bool, sqlx::Error> {
    let values = column_arrays(&columns.columns, rows, |column, row| row.text(column));
    write_columns(conn, table, "order_id", columns, replaced, &values).await
}

/// The arrays [`write_columns`] binds: for each of `columns`, the text `text` gives of it for
/// each of `rows`, in order.
fn column_arrays<R>(
    columns: &[Column],
    rows: &[R],
    text: impl Fn(&Column, &R) -> Option<String>,
) -> Vec<Vec<Option<String>>> {
    let mut values: Vec<Vec<Option<String>>> = columns
        .iter()
        .map(|_| Vec::with_capacity(rows.len()))
        .collect();
    for row in rows {
        for (column, values) in columns.iter().zip(values.iter_mut()) {
            values.push(text(column, row));
        }
    }
    values
}

/// One statement inserting into `table` a row per element of the arrays in `values` (one
/// array per column of `columns`, each bound as its values' text and cast to the column's
/// type), first deleting the rows of `replaced` whose `key` is one of its ids, if any. Does
/// nothing when there is nothing to delete or insert.
///
/// Returns false, having inserted nothing (the delete done), when the table is no longer the
/// one `columns` were read from ([`TableColumns::shape`]): the statement checks that once,
/// before its first row, against the catalog's row of the table.
async fn write_columns(
    conn: &mut PgConnection,
    table: &str,
    key: &str,
    columns: &TableColumns,
    replaced: Option<(Uuid, &[Uuid])>,
    values: &[Vec<Option<String>>],
) -> Result<bool, sqlx::Error> {
    let rows = values.first().map_or(0, Vec::len);
    if rows == 0 && replaced.is_none_or(|(_, ids)| ids.is_empty()) {
        return Ok(true);
    }
    let count = columns.columns.len();
    // The table and key come from the order kinds' constants, the columns from the catalog.
    let (delete, after_delete) = match replaced {
        Some(_) => deleting_first(table, key, count + 3, count + 4),
        None => (String::new(), ""),
    };
    let names: Vec<String> = columns
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    let cast: Vec<String> = (1..=count)
        .zip(&columns.columns)
        .map(|(i, c)| format!("u.c{i}::{}", c.type_name))
        .collect();
    let arrays: Vec<String> = (1..=count).map(|i| format!("${i}::text[]")).collect();
    let aliases: Vec<String> = (1..=count).map(|i| format!("c{i}")).collect();
    let (natts, filenode) = (count + 1, count + 2);
    let unchanged = format!(
        "exists (select from pg_class where oid = 'read.{table}'::regclass \
                    and relnatts = ${natts}::int2 and relfilenode::int8 = ${filenode}::int8)"
    );
    let condition = match after_delete {
        "" => format!(" where {unchanged}"),
        after_delete => format!("{after_delete} and {unchanged}"),
    };
    let sql = format!(
        "{delete}insert into read.{table} ({}) select {} from unnest({}) as u ({}){condition}",
        names.join(", "),
        cast.join(", "),
        arrays.join(", "),
        aliases.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for values in values {
        query = query.bind(values);
    }
    query = query.bind(columns.shape.0).bind(columns.shape.1);
    if let Some((tenant, ids)) = replaced {
        query = query.bind(tenant).bind(ids);
    }
    let inserted = query.execute(&mut *conn).await?.rows_affected();
    Ok(inserted == u64::try_from(rows).unwrap_or(u64::MAX))
}

/// A column of a read table.
#[derive(Debug)]
pub(super) struct Column {
    /// Its name.
    name: String,
    /// Its type, as SQL writes it (`numeric(24,2)`, `jsonb`, …).
    type_name: String,
}

impl Column {
    /// The text a JSON `value` is bound as, for the column's type to read: as
    /// `jsonb_populate_record` gives it, a string's own text (the JSON text for `json` and
    /// `jsonb` columns), a number's or a boolean's JSON text, an object or array as JSON; null
    /// for null.
    fn text(&self, value: &Value) -> Option<String> {
        match value {
            Value::Null => None,
            Value::String(text) if !self.type_name.starts_with("json") => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    /// [`Column::text`] of a value given as its JSON text (a document's field as
    /// [`FieldTexts`] holds it): the same text, without parsing anything but a string.
    fn text_of(&self, json: &str) -> Option<String> {
        match json {
            "null" => None,
            text if self.type_name.starts_with("json") => Some(text.to_owned()),
            text if text.starts_with('"') => serde_json::from_str(text).ok(),
            text => Some(text.to_owned()),
        }
    }
}

/// A line of an order as a row of its lines' table: the line's fields, and `tenant_id`,
/// `order_id` and `line_no` (from 1, in order), which come before a field of the same name.
pub(super) struct LineRow {
    tenant: Uuid,
    order: Uuid,
    line_no: usize,
    fields: Map<String, Value>,
}

impl LineRow {
    /// The text `column` is bound as (see [`Column::text`]).
    fn text(&self, column: &Column) -> Option<String> {
        match column.name.as_str() {
            "tenant_id" => Some(self.tenant.to_string()),
            "order_id" => Some(self.order.to_string()),
            "line_no" => Some(self.line_no.to_string()),
            name => self.fields.get(name).and_then(|value| column.text(value)),
        }
    }
}

/// The rows of an order's lines (`lines`: [`OrderKind::lines_json`]); `None` when the lines
/// are not a list (a bug of the aggregate's serde form). A line that is not an object has no
/// fields of its own.
pub(super) fn line_rows_of(
    tenant: Uuid,
    id: Uuid,
    lines: Value,
) -> Option<impl Iterator<Item = LineRow>> {
    let Value::Array(lines) = lines else {
        return None;
    };
    Some(lines.into_iter().enumerate().map(move |(i, line)| LineRow {
        tenant,
        order: id,
        line_no: i + 1,
        fields: match line {
            Value::Object(fields) => fields,
            _ => Map::new(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
        }
    }

    /// What `jsonb_populate_recordset` made of a line's JSON, column by column: a string's
    /// own text, a number's text, an object or array as JSON text, null for null or missing;
    /// the row's own columns before the line's fields of the same names.
    #[test]
    fn a_lines_columns_are_bound_as_jsonb_populate_recordset_read_them() {
        let (tenant, order) = (Uuid::new_v4(), Uuid::new_v4());
        let lines = json!([
            {"line_id": "l1", "weight": 20592, "price_per_unit": "2.1575", "description": null,
             "lots": [{"lot": 1}], "order_id": "not this one", "line_no": 7},
            "not an object"
        ]);
        let rows: Vec<LineRow> = line_rows_of(tenant, order, lines).unwrap().collect();
        let columns = [
            column("tenant_id", "uuid"),
            column("order_id", "uuid"),
            column("line_no", "integer"),
            column("line_id", "uuid"),
            column("weight", "numeric"),
            column("price_per_unit", "numeric"),
            column("description", "text"),
            column("lots", "jsonb"),
            column("quantity", "bigint"),
        ];
        let texts = |row: &LineRow| -> Vec<Option<String>> {
            columns.iter().map(|c| row.text(c)).collect()
        };
        let some = |text: &str| Some(text.to_string());
        assert_eq!(
            texts(&rows[0]),
            vec![
                some(&tenant.to_string()),
                some(&order.to_string()),
                some("1"),
                some("l1"),
                some("20592"),
                some("2.1575"),
                None,
                some(r#"[{"lot":1}]"#),
                None,
            ]
        );
        assert_eq!(
            texts(&rows[1]),
            vec![
                some(&tenant.to_string()),
                some(&order.to_string()),
                some("2"),
                None,
                None,
                None,
                None,
                None,
                None,
            ]
        );
        assert!(line_rows_of(tenant, order, json!({"not": "a list"})).is_none());
    }
}
