//! The domain's [`Lookups`] answered from the event store.
//!
//! A command that runs in a transaction of its own holds exactly one connection from start to
//! commit: its reference checks go through the same transaction as its append. (Lookups
//! through the pool would need a second connection while the first waits on a tenant's
//! number-series row: under load every connection could end up waiting for one more.) A
//! command decided before any transaction is open (group commit) holds no connection while it
//! decides, and its lookups go through the pool — or, for a decision the batch checks, are
//! answered from the process's cache of decided states: the referenced aggregate's state as
//! a committed transaction left it, whose newest event the batch checks is still the newest
//! under the tenant's head lock (see `group_commit.rs`). A reference deactivated meanwhile,
//! by this process or another, sets the command aside to run alone, where it is read again.

use async_trait::async_trait;
use cqrs_es::Aggregate;
use oms_domain::purchase_order::{PurchaseOrder, LOT_ID_SCOPE, PURCHASE_ORDER_TYPE};
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, Reference, ReferenceKind, Supplier,
};
use oms_domain::sales_order::{SalesOrder, SALES_CLAIM_SCOPE, SALES_ORDER_TYPE};
use oms_domain::services::{
    LookupError, Lookups, LotSummary, ReferenceSummary, ReferenceType, SalesClaimSummary,
};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::decided::DecidedCache;
use crate::group_commit::Newest;
use crate::pipeline::Loaded;
use crate::{EventStore, StoredEvent};

/// A command's open transaction, shared between the pipeline and the lookups of `handle`.
pub type SharedTx = Arc<Mutex<Transaction<'static, Postgres>>>;

/// What one lookup found, remembered for the rest of the command.
type Answers = HashMap<(&'static str, Uuid), Option<ReferenceSummary>>;

/// Lookups of one tenant through a command's transaction.
///
/// Answers are remembered for the command's life: [`Lookups::prefetch`] fills them for every
/// reference of a create in one round trip, and a command decided twice (once before its
/// number is taken, once after) asks the database only once.
pub struct TxLookups {
    store: EventStore,
    tenant: Uuid,
    conn: Conn,
    answers: std::sync::Mutex<Answers>,
    /// The newest event of each reference an answer was made from, for the batch to check.
    consulted: std::sync::Mutex<Vec<Newest>>,
}

/// Where the lookups read.
enum Conn {
    /// The command's own transaction (a command that holds a number-series row).
    Tx(SharedTx),
    /// The pool: a command decided outside any transaction, written by group commit, holds
    /// nothing another connection could wait for. What is read goes into the cache of decided
    /// states; with `trust`, a reference the cache holds is answered from it without reading.
    Pool {
        /// The process's decided states.
        cache: Arc<DecidedCache>,
        /// Answer from the cache (the batch checks what was consulted).
        trust: bool,
    },
}

impl TxLookups {
    /// Lookups for `tenant` through `tx`.
    pub fn new(store: EventStore, tenant: Uuid, tx: SharedTx) -> Self {
        Self {
            store,
            tenant,
            conn: Conn::Tx(tx),
            answers: std::sync::Mutex::new(HashMap::new()),
            consulted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Lookups for `tenant` through the store's pool, for a command decided before any
    /// transaction is open. What they read is kept in `cache`; with `trust`, they answer from
    /// it, and the command's batch must check [`Self::consulted`].
    pub(crate) fn over_pool(
        store: EventStore,
        tenant: Uuid,
        cache: Arc<DecidedCache>,
        trust: bool,
    ) -> Self {
        Self {
            store,
            tenant,
            conn: Conn::Pool { cache, trust },
            answers: std::sync::Mutex::new(HashMap::new()),
            consulted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The newest event of every reference the answers so far were made from (sequence 0 for
    /// one that has none): the decision holds while each is still the newest.
    pub(crate) fn consulted(&self) -> Vec<Newest> {
        self.consulted
            .lock()
            .expect("the consulted list's lock is never poisoned")
            .clone()
    }

    fn consult(
        &self,
        aggregate_type: &'static str,
        aggregate_id: Uuid,
        sequence: i64,
        hash: &[u8],
    ) {
        self.consulted
            .lock()
            .expect("the consulted list's lock is never poisoned")
            .push(Newest {
                aggregate_type,
                aggregate_id,
                sequence,
                hash: hash.to_vec(),
            });
    }

    /// A reference's answer from the cache of decided states, when the lookups may trust it.
    fn cached(&self, kind: ReferenceType, id: Uuid) -> Option<Option<ReferenceSummary>> {
        let Conn::Pool { cache, trust: true } = &self.conn else {
            return None;
        };
        fn active<K: ReferenceKind>(
            cache: &DecidedCache,
            tenant: Uuid,
            id: Uuid,
        ) -> Option<(bool, i64, Vec<u8>)>
        where
            Reference<K>: Aggregate,
        {
            cache.read(tenant, id, |loaded: &Loaded<Reference<K>>, hash| {
                (loaded.aggregate.active, loaded.version, hash.to_vec())
            })
        }
        let (active, sequence, hash) = match kind {
            ReferenceType::Supplier => active::<Supplier>(cache, self.tenant, id),
            ReferenceType::Customer => active::<Customer>(cache, self.tenant, id),
            ReferenceType::Product => active::<Product>(cache, self.tenant, id),
            ReferenceType::Plant => active::<Plant>(cache, self.tenant, id),
            ReferenceType::Carrier => active::<Carrier>(cache, self.tenant, id),
        }?;
        self.consult(kind.aggregate_type(), id, sequence, &hash);
        Some(Some(ReferenceSummary { active }))
    }

    /// Whether the cache of decided states knows the purchase order exists. Existence, once
    /// true, stays true (events are never deleted), so this needs no check by the batch.
    fn known_purchase_order(&self, id: Uuid) -> bool {
        match &self.conn {
            Conn::Pool { cache, .. } => cache.holds(self.tenant, PURCHASE_ORDER_TYPE, id),
            Conn::Tx(_) => false,
        }
    }

    fn remembered(
        &self,
        aggregate_type: &'static str,
        id: Uuid,
    ) -> Option<Option<ReferenceSummary>> {
        self.answers
            .lock()
            .expect("the answers' lock is never poisoned")
            .get(&(aggregate_type, id))
            .cloned()
    }

    fn remember(&self, aggregate_type: &'static str, id: Uuid, answer: Option<ReferenceSummary>) {
        self.answers
            .lock()
            .expect("the answers' lock is never poisoned")
            .insert((aggregate_type, id), answer);
    }

    /// Folds one reference's events (the domain's own `apply` decides whether it is active),
    /// notes what the answer was made from and, read through the pool, keeps the state in the
    /// cache of decided states.
    fn summary<K: ReferenceKind>(
        &self,
        id: Uuid,
        events: &[StoredEvent],
    ) -> Result<Option<ReferenceSummary>, LookupError>
    where
        Reference<K>: Aggregate + Clone,
    {
        let Some(newest) = events.last() else {
            self.consult(K::TYPE, id, 0, &[]);
            return Ok(None);
        };
        let reference: Reference<K> = self
            .store
            .fold(events)
            .map_err(|err| LookupError(err.to_string()))?;
        let active = reference.active;
        self.consult(K::TYPE, id, newest.sequence, &newest.hash);
        if let Conn::Pool { cache, .. } = &self.conn {
            let loaded = Loaded {
                id,
                aggregate: reference,
                version: newest.sequence,
                created_at: events.first().map(|e| e.recorded_at),
                updated_at: Some(newest.recorded_at),
            };
            cache.put(self.tenant, &loaded, &newest.hash);
        }
        Ok(Some(ReferenceSummary { active }))
    }

    fn summary_of(
        &self,
        kind: ReferenceType,
        id: Uuid,
        events: &[StoredEvent],
    ) -> Result<Option<ReferenceSummary>, LookupError> {
        match kind {
            ReferenceType::Supplier => self.summary::<Supplier>(id, events),
            ReferenceType::Customer => self.summary::<Customer>(id, events),
            ReferenceType::Product => self.summary::<Product>(id, events),
            ReferenceType::Plant => self.summary::<Plant>(id, events),
            ReferenceType::Carrier => self.summary::<Carrier>(id, events),
        }
    }

    /// The id of the aggregate of `aggregate_type` holding the unique key (`scope`, `key`),
    /// and that aggregate folded; `None` if no aggregate holds it. Sales claims and lots are found this way: their events claim
    /// their ids as unique keys, so the key's holder is the order they are on.
    async fn holder<A: Aggregate>(
        &self,
        scope: &str,
        key: Uuid,
        aggregate_type: &str,
    ) -> Result<Option<(Uuid, A)>, LookupError> {
        let holder_query = sqlx::query_scalar::<_, Uuid>(
            "select aggregate_id from unique_keys
              where tenant_id = $1 and scope = $2 and key = $3",
        )
        .bind(self.tenant)
        .bind(scope)
        .bind(key.to_string());
        let found = match &self.conn {
            Conn::Tx(tx) => {
                let mut tx = tx.lock().await;
                match holder_query.fetch_optional(&mut **tx).await {
                    Ok(Some(holder)) => {
                        match EventStore::load_stream_with(
                            &mut **tx,
                            self.tenant,
                            aggregate_type,
                            holder,
                        )
                        .await
                        {
                            Ok(events) => self
                                .store
                                .prepare(&mut **tx, &events)
                                .await
                                .map(|()| Some((holder, events))),
                            Err(err) => Err(err),
                        }
                    }
                    Ok(None) => Ok(None),
                    Err(err) => Err(err),
                }
            }
            Conn::Pool { .. } => match holder_query.fetch_optional(self.store.pool()).await {
                Ok(Some(holder)) => match EventStore::load_stream_with(
                    self.store.pool(),
                    self.tenant,
                    aggregate_type,
                    holder,
                )
                .await
                {
                    Ok(events) => self
                        .store
                        .prepare(self.store.pool(), &events)
                        .await
                        .map(|()| Some((holder, events))),
                    Err(err) => Err(err),
                },
                Ok(None) => Ok(None),
                Err(err) => Err(err),
            },
        }
        .map_err(|err| LookupError(err.to_string()))?;
        let Some((holder, events)) = found else {
            return Ok(None);
        };
        if events.is_empty() {
            return Ok(None);
        }
        self.store
            .fold(&events)
            .map(|aggregate| Some((holder, aggregate)))
            .map_err(|err| LookupError(err.to_string()))
    }

    /// The streams of several aggregates in one statement: every event of each reference, and
    /// only the first event of each purchase order (whose existence is all a lookup asks).
    async fn streams(
        &self,
        wanted: &[(&'static str, Uuid)],
    ) -> Result<Vec<StoredEvent>, LookupError> {
        let query = sqlx::query_as::<_, StoredEvent>(crate::event_store::select_events!(
            "join unnest($2::text[], $3::uuid[]) as wanted(aggregate_type, aggregate_id)
               using (aggregate_type, aggregate_id)
              where tenant_id = $1 and (aggregate_type <> $4 or sequence = 1)
              order by aggregate_type, aggregate_id, sequence"
        ))
        .bind(self.tenant)
        .bind(wanted.iter().map(|(t, _)| *t).collect::<Vec<_>>())
        .bind(wanted.iter().map(|(_, id)| *id).collect::<Vec<_>>())
        .bind(PURCHASE_ORDER_TYPE);
        // A supplier's or customer's personal fields are decrypted with data keys read with
        // the events: this process may never have seen them (it restarted, or another one
        // registered the reference).
        match &self.conn {
            Conn::Tx(tx) => {
                let mut tx = tx.lock().await;
                match query.fetch_all(&mut **tx).await {
                    Ok(events) => self
                        .store
                        .prepare(&mut **tx, &events)
                        .await
                        .map(|()| events),
                    Err(err) => Err(err),
                }
            }
            Conn::Pool { .. } => match query.fetch_all(self.store.pool()).await {
                Ok(events) => self
                    .store
                    .prepare(self.store.pool(), &events)
                    .await
                    .map(|()| events),
                Err(err) => Err(err),
            },
        }
        .map_err(|err| LookupError(err.to_string()))
    }
}

#[async_trait]
impl Lookups for TxLookups {
    async fn reference(
        &self,
        kind: ReferenceType,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError> {
        let aggregate_type = kind.aggregate_type();
        if let Some(answer) = self.remembered(aggregate_type, id) {
            return Ok(answer);
        }
        if let Some(answer) = self.cached(kind, id) {
            self.remember(aggregate_type, id, answer.clone());
            return Ok(answer);
        }
        let events = self.streams(&[(aggregate_type, id)]).await?;
        let answer = self.summary_of(kind, id, &events)?;
        self.remember(aggregate_type, id, answer.clone());
        Ok(answer)
    }

    async fn purchase_order_exists(&self, id: Uuid) -> Result<bool, LookupError> {
        if let Some(answer) = self.remembered(PURCHASE_ORDER_TYPE, id) {
            return Ok(answer.is_some());
        }
        if self.known_purchase_order(id) {
            return Ok(true);
        }
        let exists = match &self.conn {
            Conn::Tx(tx) => {
                let mut tx = tx.lock().await;
                EventStore::stream_exists_with(&mut **tx, self.tenant, PURCHASE_ORDER_TYPE, id)
                    .await
            }
            Conn::Pool { .. } => {
                EventStore::stream_exists_with(
                    self.store.pool(),
                    self.tenant,
                    PURCHASE_ORDER_TYPE,
                    id,
                )
                .await
            }
        }
        .map_err(|err| LookupError(err.to_string()))?;
        self.remember(
            PURCHASE_ORDER_TYPE,
            id,
            exists.then_some(ReferenceSummary { active: true }),
        );
        Ok(exists)
    }

    async fn prefetch(
        &self,
        references: &[(ReferenceType, Uuid)],
        purchase_orders: &[Uuid],
    ) -> Result<(), LookupError> {
        // What the cache answers is not read.
        for (kind, id) in references {
            if self.remembered(kind.aggregate_type(), *id).is_none() {
                if let Some(answer) = self.cached(*kind, *id) {
                    self.remember(kind.aggregate_type(), *id, answer);
                }
            }
        }
        for id in purchase_orders {
            if self.known_purchase_order(*id) {
                self.remember(
                    PURCHASE_ORDER_TYPE,
                    *id,
                    Some(ReferenceSummary { active: true }),
                );
            }
        }
        let mut wanted: Vec<(&'static str, Uuid)> = references
            .iter()
            .map(|(kind, id)| (kind.aggregate_type(), *id))
            .chain(purchase_orders.iter().map(|id| (PURCHASE_ORDER_TYPE, *id)))
            .filter(|(t, id)| self.remembered(t, *id).is_none())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let events = self.streams(&wanted).await?;
        let mut by_stream: HashMap<(&str, Uuid), Vec<StoredEvent>> = HashMap::new();
        for event in events {
            let key = wanted
                .iter()
                .find(|(t, id)| *t == event.aggregate_type && *id == event.aggregate_id)
                .map(|(t, id)| (*t, *id));
            if let Some(key) = key {
                by_stream.entry(key).or_default().push(event);
            }
        }
        for (aggregate_type, id) in wanted {
            let events = by_stream.remove(&(aggregate_type, id)).unwrap_or_default();
            let answer = if aggregate_type == PURCHASE_ORDER_TYPE {
                (!events.is_empty()).then_some(ReferenceSummary { active: true })
            } else {
                let kind = ReferenceType::ALL
                    .iter()
                    .find(|kind| kind.aggregate_type() == aggregate_type)
                    .copied()
                    .expect("a wanted reference type is one of the five");
                self.summary_of(kind, id, &events)?
            };
            self.remember(aggregate_type, id, answer);
        }
        Ok(())
    }

    async fn sales_claim(&self, claim_id: Uuid) -> Result<Option<SalesClaimSummary>, LookupError> {
        let found: Option<(Uuid, SalesOrder)> = self
            .holder(SALES_CLAIM_SCOPE, claim_id, SALES_ORDER_TYPE)
            .await?;
        let Some((sales_order_id, order)) = found else {
            return Ok(None);
        };
        Ok(order.claim(claim_id).map(|claim| SalesClaimSummary {
            sales_order_id,
            status: claim.status,
            source_purchase_order_ids: claim
                .lines
                .iter()
                .filter_map(|l| order.line(l.line_id))
                .filter_map(|l| l.line.source_purchase_order_id)
                .collect(),
        }))
    }

    async fn lot(&self, lot_id: Uuid) -> Result<Option<LotSummary>, LookupError> {
        let found: Option<(Uuid, PurchaseOrder)> = self
            .holder(LOT_ID_SCOPE, lot_id, PURCHASE_ORDER_TYPE)
            .await?;
        let Some((purchase_order_id, order)) = found else {
            return Ok(None);
        };
        let summary = order
            .lots()
            .find(|lot| lot.lot_id == lot_id)
            .map(|lot| LotSummary {
                purchase_order_id,
                supplier_id: lot.supplier_id,
                lot_number: lot.lot_number.clone(),
                received_weight: lot.weight,
                weight_unit: order
                    .header
                    .as_ref()
                    .map(|h| h.weight_unit)
                    .unwrap_or_default(),
            });
        Ok(summary)
    }
}
