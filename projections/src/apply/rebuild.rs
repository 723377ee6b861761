//! Rebuilding read models from a tenant's first event: what `oms replay` runs.
//!
//! The projector's path ([`super::apply_batch`]) reads the fold of each aggregate of a batch
//! from its table, applies the batch and writes the rows back: right for a few events each of
//! many aggregates. A whole stream read page by page is another shape: an order's events span
//! pages, so each page would read its fold back (kilobytes of JSON to decode), encode and
//! rewrite its rows, and fold it twice (once for the orders projection, once for history).
//!
//! A [`Rebuild`] keeps the folds in memory from page to page instead. Each order is folded once
//! for both projections; each event's document (as history compares it) is made once (the
//! document after one event is the one before the next); history rows are written page by page,
//! without a conflict check (the tenant's rows were deleted first); and an order's rows and
//! history fold are written once, when the rebuild is done with it. Memory stays bounded: past
//! [`CAPACITY`] orders of a kind in memory, those whose last event is oldest are written out
//! and dropped, and an event of one of them later is folded from what was written, as the
//! projector would.
//!
//! The rows are made by the projector's own functions ([`super::orders::order_row`],
//! [`super::history::HistoryRows::push`], [`super::lots::LotRows`], whose rows of lots come
//! from each receipt or shipment event and are written with the page) from the same folds, so a
//! rebuild writes exactly what the projector writes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use oms_domain::purchase_order::PurchaseOrder;
use oms_domain::sales_order::SalesOrder;
use sqlx::PgConnection;
use uuid::Uuid;

use super::history::{save_states, HistoryRows, Narrated};
use super::lots::LotRows;
use super::orders::{
    claim_rows, line_rows_of, order_row, upsert_claims, write_lines, write_orders, ClaimTimes,
    OrderColumns,
};
use super::{delete_rows, event_payload, load_many, payload_error, reference, Folded};
use crate::documents::{DocumentText, Stamp};
use crate::{EventRecord, Projection, ProjectionError};

/// The most orders of one kind a rebuild keeps folded in memory. An order held takes about
/// 15 KB (its state and, for history, its current document, as JSON trees): two rebuilds side by
/// side hold some 30 MB at this figure (2,048 took the process past 200 MB on a million events).
/// Orders are mostly done with long before this many newer ones have started, so the ones
/// written out early are seldom read back.
pub const CAPACITY: usize = 512;

/// Orders written per statement when their folds are written out.
const WRITE_CHUNK: usize = 512;

/// The rebuild of some projections of one tenant, fed the tenant's events from its first one,
/// in position order, page by page.
///
/// The caller holds the projections' checkpoints locked ([`crate::checkpoints::lock`]) and
/// has deleted the tenant's rows of their tables ([`crate::checkpoints::clear`]) in the same
/// transaction; it calls [`Rebuild::apply`] for each page, then [`Rebuild::finish`], then moves
/// the checkpoints and commits. Until that commit other transactions see the old rows.
pub struct Rebuild {
    /// What is written, and for whom.
    output: Output,
    /// The most orders of one kind held in memory.
    capacity: usize,
    /// Purchase orders being folded.
    purchase: Folds<PurchaseOrder>,
    /// Sales orders being folded.
    sales: Folds<SalesOrder>,
}

/// Which projections a rebuild writes, and for which tenant.
#[derive(Debug, Clone, Copy)]
struct Output {
    /// The tenant.
    tenant: Uuid,
    /// Reference data (`read.suppliers`, …).
    reference: bool,
    /// The orders projection (`read.purchase_orders`, lines, …).
    orders: bool,
    /// The history projection (`read.order_history`, `read.order_history_states`).
    history: bool,
}

impl Rebuild {
    /// A rebuild of `projections` (each at most once) for `tenant`, holding up to [`CAPACITY`]
    /// orders of a kind in memory.
    pub fn new(tenant: Uuid, projections: &[Projection]) -> Self {
        Self::with_capacity(tenant, projections, CAPACITY)
    }

    /// [`Rebuild::new`] holding up to `capacity` orders of a kind in memory (at least 1): the
    /// rows are the same whatever it is; a small one writes orders out and folds them back
    /// more often.
    pub fn with_capacity(tenant: Uuid, projections: &[Projection], capacity: usize) -> Self {
        Rebuild {
            capacity: capacity.max(1),
            output: Output {
                tenant,
                reference: projections.contains(&Projection::ReferenceData),
                orders: projections.contains(&Projection::Orders),
                history: projections.contains(&Projection::OrderHistory),
            },
            purchase: Folds::default(),
            sales: Folds::default(),
        }
    }

    /// Applies the next page of the tenant's events (in position order, following the previous
    /// page): reference data as the projector does, orders folded in memory, history rows
    /// written.
    pub async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> Result<(), ProjectionError> {
        if let Some(other) = events.iter().find(|e| e.tenant_id != self.output.tenant) {
            return Err(payload_error(
                other,
                format!(
                    "not an event of the tenant being rebuilt ({})",
                    self.output.tenant
                ),
            ));
        }
        if self.output.reference
            && events
                .iter()
                .any(|e| reference::table_of(&e.aggregate_type).is_some())
        {
            reference::apply(conn, events).await?;
        }
        if self.output.orders || self.output.history {
            self.purchase
                .apply(conn, self.output, self.capacity, events)
                .await?;
            self.sales
                .apply(conn, self.output, self.capacity, events)
                .await?;
        }
        Ok(())
    }

    /// Writes the rows of every order still in memory. The rebuild is then complete; the
    /// caller moves the checkpoints and commits.
    pub async fn finish(mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let purchase = std::mem::take(&mut self.purchase.folds);
        write(conn, self.output, purchase.into_iter().collect()).await?;
        let sales = std::mem::take(&mut self.sales.folds);
        write(conn, self.output, sales.into_iter().collect()).await
    }
}

/// The orders of one kind being folded.
struct Folds<A> {
    /// By order id.
    folds: HashMap<Uuid, Fold<A>>,
    /// Whether some orders were written out and dropped: an order not in memory may then have
    /// rows to fold from.
    evicted: bool,
    /// The document after the event being applied, written here and then swapped with the
    /// order's own (so its buffers pass from order to order instead of being allocated).
    after: DocumentText,
}

impl<A> Default for Folds<A> {
    fn default() -> Self {
        Folds {
            folds: HashMap::new(),
            evicted: false,
            after: DocumentText::default(),
        }
    }
}

/// An order being folded.
struct Fold<A> {
    /// Its state, event count and first event's time.
    folded: Folded<A>,
    /// The document of its state (kept when history is rebuilt: the "before" of the next
    /// event's changes).
    document: Option<DocumentText>,
    /// Its last event applied here: what the rows are stamped with (`None`: none yet, nothing
    /// to write).
    last: Option<Last>,
    /// Whether its rows are in the tables already (written out earlier, folded back since).
    stored: bool,
    /// When its claims were raised and decided, from the events folded here.
    claim_times: ClaimTimes,
}

/// What an order's rows keep of its last event.
#[derive(Debug, Clone, Copy)]
struct Last {
    /// The event's tenant position.
    position: i64,
    /// When it was recorded.
    recorded_at: DateTime<Utc>,
}

impl<A: Narrated> Folds<A> {
    /// Folds the page's events of kind `A` into memory, writes their history rows, and writes
    /// out the oldest orders when more than `capacity` are held.
    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        output: Output,
        capacity: usize,
        events: &[EventRecord],
    ) -> Result<(), ProjectionError> {
        let ours = || events.iter().filter(|e| e.aggregate_type == A::ORDER_TYPE);
        if self.evicted {
            self.fold_back(conn, output, ours()).await?;
        }
        let mut history = HistoryRows::default();
        let mut lots = LotRows::default();
        for event in ours() {
            let fold = match self.folds.entry(event.aggregate_id) {
                Entry::Occupied(fold) => fold.into_mut(),
                Entry::Vacant(vacant) => {
                    let folded = Folded::<A>::start(None, event)?;
                    let document = output.history.then(|| document_of(&folded.state));
                    vacant.insert(Fold {
                        folded,
                        document,
                        last: None,
                        stored: false,
                        claim_times: ClaimTimes::default(),
                    })
                }
            };
            let payload: A::Event = event_payload(event)?;
            if !fold.folded.takes(event)? {
                continue;
            }
            fold.claim_times.note::<A>(event, &payload);
            if output.orders {
                fold.folded.state.push_lots(&mut lots, event, &payload)?;
            }
            match fold.document.as_mut() {
                Some(before) => {
                    fold.folded.state.apply(payload.clone());
                    let after = &fold.folded.state;
                    if !after.created() {
                        return Err(payload_error(event, "the order has not been created"));
                    }
                    after.document_text(&mut self.after);
                    history.push(event, &payload, before, after, &self.after)?;
                    std::mem::swap(before, &mut self.after);
                }
                None => {
                    fold.folded.state.apply(payload);
                    if !fold.folded.state.created() {
                        return Err(payload_error(event, "the order has not been created"));
                    }
                }
            }
            fold.last = Some(Last {
                position: event.position,
                recorded_at: event.recorded_at,
            });
        }
        history
            .insert(conn, output.tenant, A::ORDER_TYPE, false)
            .await?;
        if !lots.is_empty() {
            lots.insert(conn).await?;
        }
        if self.folds.len() > capacity {
            self.evict(conn, output, capacity / 2).await?;
        }
        Ok(())
    }

    /// Folds back, from the rows written out earlier, the orders of `events` that are not in
    /// memory: from the orders table when the orders projection is rebuilt (it has the first
    /// event's time too), else from history's own fold.
    async fn fold_back<'a>(
        &mut self,
        conn: &mut PgConnection,
        output: Output,
        events: impl Iterator<Item = &'a EventRecord>,
    ) -> Result<(), ProjectionError> {
        let mut missing: HashMap<Uuid, &EventRecord> = HashMap::new();
        for event in events {
            if !self.folds.contains_key(&event.aggregate_id) {
                missing.entry(event.aggregate_id).or_insert(event);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = missing.keys().copied().collect();
        let stored = if output.orders {
            load_many(conn, A::TABLE, "id", true, output.tenant, &ids).await?
        } else {
            load_many(
                conn,
                "order_history_states",
                "order_id",
                false,
                output.tenant,
                &ids,
            )
            .await?
        };
        for (id, stored) in stored {
            let first = missing[&id];
            let folded = Folded::<A>::start(Some(stored), first)?;
            let document = output.history.then(|| document_of(&folded.state));
            self.folds.insert(
                id,
                Fold {
                    folded,
                    document,
                    last: None,
                    stored: true,
                    claim_times: ClaimTimes::default(),
                },
            );
        }
        Ok(())
    }

    /// Writes out and drops the orders whose last event is oldest, down to `keep`.
    async fn evict(
        &mut self,
        conn: &mut PgConnection,
        output: Output,
        keep: usize,
    ) -> Result<(), ProjectionError> {
        let mut by_age: Vec<(i64, Uuid)> = self
            .folds
            .iter()
            .map(|(id, fold)| (fold.last.map_or(0, |last| last.position), *id))
            .collect();
        by_age.sort_unstable();
        let out: Vec<(Uuid, Fold<A>)> = by_age[..self.folds.len().saturating_sub(keep)]
            .iter()
            .filter_map(|(_, id)| self.folds.remove_entry(id))
            .collect();
        self.evicted = true;
        write(conn, output, out).await
    }
}

/// The document of `state`, as history compares it.
fn document_of<A: Narrated>(state: &A) -> DocumentText {
    let mut document = DocumentText::default();
    state.document_text(&mut document);
    document
}

/// Writes the rows of `folds` (orders rows and lines, history's folds), a chunk of orders per
/// statement; the rows of orders written before are replaced.
async fn write<A: Narrated>(
    conn: &mut PgConnection,
    output: Output,
    folds: Vec<(Uuid, Fold<A>)>,
) -> Result<(), ProjectionError> {
    let tenant = output.tenant;
    let mut folds = folds.into_iter().peekable();
    while folds.peek().is_some() {
        let mut stored = Vec::new();
        let (mut rows, mut line_rows, mut claims) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ids, mut versions, mut states) = (Vec::new(), Vec::new(), Vec::new());
        for (id, fold) in folds.by_ref().take(WRITE_CHUNK) {
            // Folded back but given no event since: its rows are as they were.
            let Some(last) = fold.last else { continue };
            let failed = |message: String| ProjectionError::Payload {
                position: last.position,
                message: format!("{} {id}: {message}", A::ORDER_TYPE),
            };
            if fold.stored {
                stored.push(id);
            }
            let state = &fold.folded.state;
            let state_json =
                serde_json::to_string(state).map_err(|e| failed(format!("state: {e}")))?;
            if output.orders {
                let stamp = Stamp {
                    id,
                    version: fold.folded.version,
                    created_at: Some(fold.folded.created_at.unwrap_or(last.recorded_at)),
                    updated_at: Some(last.recorded_at),
                };
                let document = state.document_texts(&stamp);
                let lines = line_rows_of(tenant, id, state.lines_json())
                    .ok_or_else(|| failed("the order's lines are not a list".into()))?;
                line_rows.extend(lines);
                claims.extend(
                    claim_rows(state, tenant, id, &fold.claim_times)
                        .map_err(|e| failed(format!("claims: {e}")))?,
                );
                rows.push(order_row(
                    state,
                    tenant,
                    last.position,
                    document,
                    state_json,
                ));
                if output.history {
                    ids.push(id);
                }
            } else if output.history {
                ids.push(id);
                versions.push(fold.folded.version);
                states.push(state_json);
            }
        }
        if output.orders {
            delete_rows(conn, A::TABLE, "id", tenant, &stored).await?;
            delete_rows(conn, A::LINES_TABLE, "order_id", tenant, &stored).await?;
            if !rows.is_empty() {
                // Read afresh: the tables are held since their rows were deleted, so these
                // are their columns until the commit.
                let columns = OrderColumns::read::<A>(conn).await?;
                let written = write_orders(conn, A::TABLE, &columns.orders, None, &rows).await?
                    && write_lines(conn, A::LINES_TABLE, &columns.lines, None, &line_rows).await?;
                if !written {
                    return Err(sqlx::Error::Protocol(format!(
                        "the columns of read.{} changed during a rebuild",
                        A::TABLE
                    ))
                    .into());
                }
            }
            upsert_claims(conn, &claims).await?;
        }
        if output.history {
            if output.orders {
                copy_states::<A>(conn, tenant, &ids).await?;
            } else {
                save_states(conn, tenant, A::ORDER_TYPE, &ids, &versions, &states).await?;
            }
        }
    }
    Ok(())
}

/// Writes history's fold of the orders `ids` as the orders projection's rows just written hold
/// it: the same fold of the same events (both start from nothing in a rebuild), so its state
/// is copied as stored rather than sent and parsed a second time.
async fn copy_states<A: Narrated>(
    conn: &mut PgConnection,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    // The table name comes from the order kinds' constants, never from input.
    sqlx::query(&format!(
        "insert into read.order_history_states (tenant_id, order_type, order_id, version, state) \
         select tenant_id, $2, id, version, state from read.{} \
          where tenant_id = $1 and id = any($3) \
         on conflict (tenant_id, order_id) \
         do update set version = excluded.version, state = excluded.state",
        A::TABLE
    ))
    .bind(tenant)
    .bind(A::ORDER_TYPE)
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
