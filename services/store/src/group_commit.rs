//! Group commit: commands decided at the same moment share one transaction.
//!
//! A command's own transaction costs Postgres a `BEGIN`, its statements, a `COMMIT` and a WAL
//! flush, and costs the service a round trip for each. Under load many commands are ready to
//! be written at once, mostly of different tenants (20 tenants, 16 clients: a tenant rarely has
//! two in flight), so per-tenant batching would find nothing to share. Here any commands share
//! a transaction:
//!
//! ```text
//! command (its own task, no transaction)        writer (a few tasks, one transaction each)
//!   idempotency lookup, load, If-Match, decide
//!   (or decide on the cached state, reading
//!    nothing: see Verify)
//!   submit ───────────────────────────────────▶  take what is waiting (up to MAX_BATCH)
//!                                                begin
//!                                                  take order/invoice numbers, one statement
//!                                                  claim every unique key
//!                                                  lock the tenants' heads     in tenant-id order
//!                                                  positions, hashes, replies  in memory
//!                                                  check cached states, keys;
//!                                                  events + records + heads    one statement
//!                                                commit
//!   answer  ◀──────────────────────────────────  after the commit, never before
//! ```
//!
//! Nothing the write side promises is weakened. Positions are gapless and in commit order per
//! tenant (the head rows are locked until commit, and each command's positions follow the
//! previous one's in the batch); the chain runs through the batch; unique keys, idempotency
//! records and the aggregate's (tenant, aggregate, sequence) primary key are claimed in the
//! transaction as before. One command's refusal must not fail its neighbours, so the batch
//! never decides anything. A second command on an aggregate already in the batch (decided on
//! the state before the first one's events), or with an idempotency key or a unique key an
//! earlier command of the batch has, waits for the batch and then runs alone, in a transaction
//! of its own. A unique key another aggregate already holds sets its command aside the same
//! way (the transaction rolls back and the others try again in a new one: a conflict is rare,
//! so the common batch pays no savepoint for it). Anything else the
//! batch cannot write exactly as decided — a sequence another writer took, a record a
//! concurrent request with the same key wrote first, a deadlock, a failed statement — rolls
//! the batch back and sends each of its commands to run alone, where a refusal is found and
//! answered exactly as before. Those are conflicts, and rare; the common batch commits whole.
//! A command whose caller is gone (its request timed out) before the batch has its heads is
//! dropped, as it would be alone.
//!
//! A command that takes a number from a series (a create, an invoice, a credit note) is
//! decided with the series' stand-in (number 0, never handed out) and given its number here:
//! the statement that claims the batch's keys first moves each (tenant, series) counter on by
//! as many numbers as its commands take and claims each command's number (given in the order
//! the commands came); once the claims hold, each number goes in place of its command's
//! stand-in — in the claim and in the payload field that carries it
//! ([`oms_domain::scope_field`]) — and the response is rendered from the events as stored.
//! The numbers are taken in the transaction that claims them, so a command set aside gives
//! its number back and the series stays without gaps; a number a client already gave
//! explicitly fails its claim, and the next try leaves it out (as a single command skips it).
//!
//! Number-series rows, then unique keys, then heads: the order a single command takes them in.
//! Heads are locked in tenant-id order, so two batches never wait for each other in a cycle;
//! a single-command transaction takes one head only. A connection lost at `COMMIT` is resolved
//! through one of the batch's idempotency records (every command through the API has one): the
//! batch committed or not as a whole.

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use crate::idempotency::{self, IdempotencyKey, Reply};
use crate::{hash, NewEvent, NumberSeries, StoredEvent};
use oms_domain::UniqueKeyChange;
use prometheus_client::metrics::counter::Counter;

/// The most commands one transaction carries.
const MAX_BATCH: usize = 64;

/// How often a batch takes numbers and claims its keys again (each try sets aside a command
/// or skips a number a client gave) before its commands run alone instead.
const MAX_CLAIM_TRIES: usize = 16;

/// How many batches may be open at once. One batch waits for its WAL flush while the next is
/// being written; more only contend for the same head rows.
const WRITERS: usize = 2;

/// How a submitted command's response is made, once its events' positions, time, hashes and
/// numbers are known: given its events as stored (the last one's position is the tenant's
/// after it). `None` when the events do not fold into a state (a bug): the batch rolls back
/// and its commands run alone. Made again if a neighbour is set aside after it was made
/// (the positions after it move).
pub(crate) type Render = Box<dyn Fn(&[StoredEvent]) -> Option<Reply> + Send + Sync>;

/// A command decided outside any transaction, ready to be written.
pub(crate) struct Submission {
    /// The tenant.
    pub tenant: Uuid,
    /// Its events, their sequences following the state it was decided on; at least one, and
    /// unique-key changes that are claims only.
    pub events: Vec<NewEvent>,
    /// The series it takes a number from: its events hold the series' stand-in
    /// ([`NumberSeries::format`] of 0) where the number goes.
    pub number: Option<NumberSeries>,
    /// Where its response is recorded.
    pub key: Option<IdempotencyKey>,
    /// What the batch must check before writing a command decided on a cached state, without
    /// reading anything first; `None` for a command decided on what it read.
    pub verify: Option<Verify>,
    /// Makes its response.
    pub render: Render,
    /// Where the outcome goes.
    pub done: oneshot::Sender<Outcome>,
}

/// What a command was decided on without reading it: its aggregate's newest event as the
/// deciding process last saw it, and the newest event of each aggregate its decision consulted
/// (a reference that must be active, answered from the same cache). The batch writes the
/// command only if, under the tenant's head lock (where no one else can append), each of those
/// events is still the newest, hash and all, no earlier command of the batch writes one of
/// those aggregates, and no live record holds the command's idempotency key; otherwise the
/// command is set aside and runs alone, reading what it needs.
#[derive(Debug, Clone)]
pub(crate) struct Verify {
    /// The command's own aggregate.
    pub aggregate: Newest,
    /// The other aggregates its decision consulted (all of the command's tenant).
    pub consulted: Vec<Newest>,
}

/// An aggregate's newest event as a decision saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Newest {
    /// The aggregate's type.
    pub aggregate_type: &'static str,
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// The sequence of its newest event (0: it has none; a create decided on the empty
    /// state).
    pub sequence: i64,
    /// That event's hash (empty when it has none).
    pub hash: Vec<u8>,
}

/// What happened to a submitted command.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Committed with its batch.
    Committed {
        /// Its response (recorded under its key).
        reply: Reply,
        /// Its events as stored.
        events: Vec<StoredEvent>,
    },
    /// The batch could not write it as decided (see the module's documentation), or the
    /// batch's transaction failed and rolled back: nothing of it was written; run it alone.
    Alone,
    /// The connection was lost at `COMMIT` and whether the batch committed could not be found
    /// out.
    InDoubt,
}

/// What group commit has done, for `/metrics`: the batches' sizes are commands ÷ batches,
/// and how often a command was sent back to run alone.
#[derive(Debug, Clone, Default)]
pub struct GroupCommitCounters {
    /// Batches committed.
    pub batches: Counter,
    /// Commands committed in a batch.
    pub commands: Counter,
    /// Commands a batch sent back to run alone (a conflict, a key held, a rolled-back batch).
    pub alone: Counter,
}

impl GroupCommitCounters {
    /// Registers the counters (`oms_group_commit_*`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "oms_group_commit_batches",
            "Transactions group commit committed",
            self.batches.clone(),
        );
        registry.register(
            "oms_group_commit_commands",
            "Commands committed by group commit (divided by the batches: the mean batch size)",
            self.commands.clone(),
        );
        registry.register(
            "oms_group_commit_alone",
            "Commands group commit sent back to run in a transaction of their own",
            self.alone.clone(),
        );
    }
}

/// The writers' queue.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Submission>,
}

impl GroupCommit {
    /// Starts the writers on `pool`. Each batch wakes the relay itself: its statement
    /// notifies `oms_events`, which Postgres delivers when the batch commits.
    pub fn start(pool: PgPool, counters: GroupCommitCounters) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            let waiting = waiting.clone();
            let pool = pool.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut waiting = waiting.lock().await;
                        let Some(first) = waiting.recv().await else {
                            return;
                        };
                        let mut batch = vec![first];
                        while batch.len() < MAX_BATCH {
                            match waiting.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    write(&pool, batch, &counters).await;
                }
            });
        }
        Self { queue }
    }

    /// Queues a command; false when the writers are gone (the runtime is shutting down).
    pub fn submit(&self, submission: Submission) -> bool {
        self.queue.send(submission).is_ok()
    }
}

/// Why a batch was not committed.
enum Refused {
    /// Something could not be written as decided: every command runs alone.
    Alone,
    /// The connection was lost at `COMMIT`.
    Unacknowledged,
    /// A claim failed: the transaction rolled back, the commands it refuses are set aside
    /// (or the numbers it found taken are left out), and the rest try again.
    Retry,
}

impl From<sqlx::Error> for Refused {
    fn from(err: sqlx::Error) -> Self {
        tracing::debug!(error = %err, "a batch rolled back; its commands run alone");
        Refused::Alone
    }
}

/// Writes one batch and answers each of its commands.
async fn write(pool: &PgPool, batch: Vec<Submission>, counters: &GroupCommitCounters) {
    // A second command on an aggregate already in the batch was decided on the state before
    // the first one's events: it runs alone after this batch has committed. So does one that
    // consulted an aggregate an earlier command of the batch writes.
    // So does a second command with the same idempotency key, or one claiming a unique key
    // that an earlier command of the batch claims: the one claim either wins or is refused
    // alone, and the batch stays whole. So does a command whose events run alone
    // ([`NewEvent::runs_alone`]).
    let mut seen = HashSet::new();
    let mut keys = HashSet::new();
    let mut claimed = HashSet::new();
    let (batch, later): (Vec<_>, Vec<_>) = batch.into_iter().partition(|s| {
        let first = &s.events[0];
        // A stand-in number is no claim yet: each command gets a number of its own.
        let claims: Vec<(Uuid, String, String)> = s
            .events
            .iter()
            .flat_map(NewEvent::claims)
            .filter(|&(scope, key)| !is_stand_in(s.number, scope, key))
            .map(|(scope, key)| (s.tenant, scope.to_string(), key.to_string()))
            .collect();
        // The pipeline sends such commands to run alone; this keeps a batch from ever writing
        // one that it cannot write as decided.
        if s.events.iter().any(NewEvent::runs_alone)
            || s.number
                .is_some_and(|series| stand_in(&s.events, series).is_none())
            || claims.iter().any(|claim| claimed.contains(claim))
            || seen.contains(&(s.tenant, first.aggregate_type.clone(), first.aggregate_id))
            || s.verify.iter().flat_map(|v| &v.consulted).any(|consulted| {
                seen.contains(&(
                    s.tenant,
                    consulted.aggregate_type.to_string(),
                    consulted.aggregate_id,
                ))
            })
            || s.key
                .as_ref()
                .is_some_and(|key| keys.contains(&(s.tenant, key.stored())))
        {
            return false;
        }
        claimed.extend(claims);
        seen.insert((s.tenant, first.aggregate_type.clone(), first.aggregate_id));
        if let Some(key) = &s.key {
            keys.insert((s.tenant, key.stored()));
        }
        true
    });
    let mut pending: Vec<Pending> = batch
        .into_iter()
        .map(|s| Pending {
            tenant: s.tenant,
            events: s.events,
            number: s.number,
            offset: None,
            assigned: None,
            key: s.key,
            verify: s.verify,
            render: s.render,
            claims_held: false,
            done: s.done,
            stored: Vec::new(),
            reply: None,
        })
        .collect();
    let mut set_aside = Vec::new();
    let mut numbers = Numbers::default();
    let mut outcome = Err(Refused::Retry);
    for _ in 0..MAX_CLAIM_TRIES {
        outcome = transaction(pool, &mut pending, &mut set_aside, &mut numbers).await;
        if !matches!(outcome, Err(Refused::Retry)) {
            break;
        }
    }
    let outcome = match outcome {
        Err(Refused::Retry) => Err(Refused::Alone),
        Err(Refused::Unacknowledged) => resolve(pool, &pending).await,
        other => other,
    };
    match outcome {
        Ok(()) if pending.is_empty() => {}
        Ok(()) => {
            counters.batches.inc();
            counters.commands.inc_by(pending.len() as u64);
            for p in pending {
                let reply = p.reply.expect("a committed command has its reply");
                let _ = p.done.send(Outcome::Committed {
                    reply,
                    events: p.stored,
                });
            }
        }
        Err(Refused::Alone | Refused::Retry) => {
            counters.alone.inc_by(pending.len() as u64);
            for p in pending {
                let _ = p.done.send(Outcome::Alone);
            }
        }
        Err(Refused::Unacknowledged) => {
            for p in pending {
                let _ = p.done.send(Outcome::InDoubt);
            }
        }
    }
    counters
        .alone
        .inc_by((later.len() + set_aside.len()) as u64);
    for s in later {
        let _ = s.done.send(Outcome::Alone);
    }
    for p in set_aside {
        let _ = p.done.send(Outcome::Alone);
    }
}

/// A command inside a batch.
struct Pending {
    tenant: Uuid,
    events: Vec<NewEvent>,
    number: Option<NumberSeries>,
    /// Its number's place after its series' first number for this batch, in this try.
    offset: Option<i64>,
    /// The number it is given in this try, and as text (replacing the stand-in once the
    /// claims hold).
    assigned: Option<(i64, String)>,
    key: Option<IdempotencyKey>,
    verify: Option<Verify>,
    render: Render,
    /// Whether its events claim unique keys (in this transaction, once claimed).
    claims_held: bool,
    done: oneshot::Sender<Outcome>,
    stored: Vec<StoredEvent>,
    reply: Option<Reply>,
}

impl Pending {
    /// The unique keys its events claim, as `(aggregate, scope, key)`, with the number it was
    /// given in this try in place of its stand-in.
    fn claims(&self) -> impl Iterator<Item = (Uuid, &'static str, &str)> {
        let stand_in = self.number.map(|series| (series.scope, series.format(0)));
        self.events.iter().flat_map(move |event| {
            let stand_in = stand_in.clone();
            event.claims().map(move |(scope, key)| {
                let key = match (&stand_in, &self.assigned) {
                    (Some((numbered, zero)), Some((_, assigned)))
                        if scope == *numbered && key == zero =>
                    {
                        assigned.as_str()
                    }
                    _ => key,
                };
                (event.aggregate_id, scope, key)
            })
        })
    }
}

/// Whether the claim (`scope`, `key`) is the stand-in of the number a command takes from
/// `series`: no claim yet, but the place the batch puts the number it gives.
pub(crate) fn is_stand_in(series: Option<NumberSeries>, scope: &str, key: &str) -> bool {
    series.is_some_and(|series| scope == series.scope && key == series.format(0))
}

/// Where a command's events hold the stand-in number of `series`: the event that claims it
/// and the JSON pointer of the payload field that carries it
/// ([`oms_domain::scope_field`] of the series' scope, in the event's variant). `None` unless
/// exactly one event claims the stand-in and its payload has exactly one such field: a
/// command the batch could not number exactly as a second decision would, which runs alone.
fn stand_in(events: &[NewEvent], series: NumberSeries) -> Option<(usize, String)> {
    let zero = series.format(0);
    let field = oms_domain::scope_field(series.scope);
    let mut found = events.iter().enumerate().filter(|(_, event)| {
        event
            .claims()
            .any(|(scope, key)| scope == series.scope && key == zero)
    });
    let (at, event) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let escape = |part: &str| part.replace('~', "~0").replace('/', "~1");
    let mut slots = event
        .payload
        .as_object()?
        .iter()
        .filter(|(_, variant)| variant.get(field).and_then(Value::as_str) == Some(zero.as_str()))
        .map(|(name, _)| format!("/{}/{}", escape(name), escape(field)));
    let pointer = slots.next()?;
    slots.next().is_none().then_some((at, pointer))
}

/// The numbers a batch gives, across its tries (see [`transaction`]).
#[derive(Default)]
struct Numbers {
    /// Numbers a client gave explicitly, found by a failed claim: (tenant, series, number).
    skip: HashSet<(Uuid, &'static str, i64)>,
    /// The first number each series had for this batch, as the last try found it.
    first: HashMap<(Uuid, &'static str), i64>,
}

/// How far one try moves a (tenant, series) counter.
struct Span {
    tenant: Uuid,
    series: &'static str,
    /// Numbers given and numbers left out as taken.
    count: i64,
}

impl Numbers {
    /// Plans a try: each numbered command's place after its series' first number for this
    /// batch (in the order the commands came, past the numbers known to be taken; the first
    /// try knows none) as its `offset`, and how far each counter moves.
    fn plan(&self, pending: &mut [Pending]) -> Vec<Span> {
        let mut next: BTreeMap<(Uuid, &'static str), i64> = BTreeMap::new();
        for p in pending.iter_mut() {
            p.offset = None;
            let Some(series) = p.number else { continue };
            let at = (p.tenant, series.series);
            let offset = next.entry(at).or_default();
            if let Some(first) = self.first.get(&at) {
                while self.skip.contains(&(at.0, at.1, first + *offset)) {
                    *offset += 1;
                }
            }
            p.offset = Some(*offset);
            *offset += 1;
        }
        next.into_iter()
            .map(|((tenant, series), count)| Span {
                tenant,
                series,
                count,
            })
            .collect()
    }

    /// Gives each numbered command its number, from the counters as the claim statement moved
    /// them (tenant, series, last value). Fails when a number in a counter's span would be
    /// neither given nor known to be taken (the counter moved between two tries, its row
    /// unlocked): a gap; the batch then runs alone.
    fn settle(
        &mut self,
        pending: &mut [Pending],
        spans: &[Span],
        moved: &[(Uuid, String, i64)],
    ) -> Result<(), sqlx::Error> {
        let gap = || sqlx::Error::Protocol("a number series would have a gap".into());
        for span in spans {
            let last = moved
                .iter()
                .find(|(tenant, series, _)| *tenant == span.tenant && series == span.series)
                .map(|(_, _, last)| *last)
                .ok_or_else(gap)?;
            let first = last - span.count + 1;
            let given: HashSet<i64> = pending
                .iter()
                .filter(|p| {
                    p.tenant == span.tenant && p.number.map(|s| s.series) == Some(span.series)
                })
                .filter_map(|p| p.offset)
                .collect();
            let covered = (0..span.count).all(|offset| {
                given.contains(&offset)
                    || self
                        .skip
                        .contains(&(span.tenant, span.series, first + offset))
            });
            if !covered {
                return Err(gap());
            }
            self.first.insert((span.tenant, span.series), first);
        }
        for p in pending.iter_mut() {
            p.assigned = None;
            if let (Some(series), Some(offset)) = (p.number, p.offset) {
                let n = self.first[&(p.tenant, series.series)] + offset;
                p.assigned = Some((n, series.format(u64::try_from(n).unwrap_or_default())));
            }
        }
        Ok(())
    }
}

/// What one claim statement did.
struct Claimed {
    /// The counters it moved: (tenant, series, last value).
    numbers: Vec<(Uuid, String, i64)>,
    /// The keys it claimed (a key another aggregate holds is not among them).
    keys: HashSet<(Uuid, String, String)>,
}

/// Moves the number counters by `spans` (rows in (tenant, series) order, locked to commit),
/// and claims every unique key of the batch — a numbered command's number built in the same
/// statement, in the format of [`NumberSeries::format`], from its counter and its `offset` —
/// in one statement.
async fn claim(
    tx: &mut sqlx::PgConnection,
    pending: &[Pending],
    spans: &[Span],
) -> Result<Claimed, sqlx::Error> {
    // The claims that are not a stand-in number: (tenant, scope, key, aggregate).
    let mut plain: Vec<(Uuid, &str, &str, Uuid)> = Vec::new();
    // A numbered command's number: (tenant, series, scope, prefix, back from the counter's
    // last value, aggregate).
    let mut numbered: Vec<(Uuid, &str, &str, String, i64, Uuid)> = Vec::new();
    for p in pending {
        let stand_in = p.number.map(|series| (series, series.format(0)));
        for event in &p.events {
            for (scope, key) in event.claims() {
                match (&stand_in, p.offset) {
                    (Some((series, zero)), Some(offset))
                        if scope == series.scope && key == zero =>
                    {
                        let count = spans
                            .iter()
                            .find(|s| s.tenant == p.tenant && s.series == series.series)
                            .map_or(0, |s| s.count);
                        numbered.push((
                            p.tenant,
                            series.series,
                            scope,
                            zero.strip_suffix("000000").unwrap_or(zero).to_string(),
                            count - 1 - offset,
                            event.aggregate_id,
                        ));
                    }
                    _ => plain.push((p.tenant, scope, key, event.aggregate_id)),
                }
            }
        }
    }
    let row: ClaimRow = sqlx::query_as(
        "with numbers as (
             insert into number_series (tenant_id, series, last_value)
             select * from unnest($1::uuid[], $2::text[], $3::bigint[]) order by 1, 2
             on conflict (tenant_id, series)
             do update set last_value = number_series.last_value + excluded.last_value
             returning tenant_id, series, last_value
         ),
         wanted as (
             select c.tenant_id, c.scope,
                    c.prefix || lpad(v.n::text, greatest(6, length(v.n::text)), '0'),
                    c.aggregate_id
               from unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::bigint[],
                           $9::uuid[]) as c(tenant_id, series, scope, prefix, back, aggregate_id)
               join numbers n on n.tenant_id = c.tenant_id and n.series = c.series
               cross join lateral (select n.last_value - c.back as n) v
             union all
             select * from unnest($10::uuid[], $11::text[], $12::text[], $13::uuid[])
         ),
         claimed as (
             insert into unique_keys (tenant_id, scope, key, aggregate_id)
             select * from wanted
             on conflict (tenant_id, scope, key) do update
                set aggregate_id = excluded.aggregate_id
              where unique_keys.aggregate_id = excluded.aggregate_id
             returning tenant_id, scope, key
         )
         select array(select tenant_id from numbers) as number_tenants,
                array(select series from numbers) as number_series,
                array(select last_value from numbers) as number_last,
                array(select tenant_id from claimed) as tenants,
                array(select scope from claimed) as scopes,
                array(select key from claimed) as keys",
    )
    .bind(spans.iter().map(|s| s.tenant).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.series).collect::<Vec<_>>())
    .bind(spans.iter().map(|s| s.count).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.3.as_str()).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.4).collect::<Vec<_>>())
    .bind(numbered.iter().map(|c| c.5).collect::<Vec<_>>())
    .bind(plain.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(plain.iter().map(|c| c.1).collect::<Vec<_>>())
    .bind(plain.iter().map(|c| c.2).collect::<Vec<_>>())
    .bind(plain.iter().map(|c| c.3).collect::<Vec<_>>())
    .fetch_one(&mut *tx)
    .await?;
    Ok(Claimed {
        numbers: row
            .number_tenants
            .into_iter()
            .zip(row.number_series)
            .zip(row.number_last)
            .map(|((tenant, series), last)| (tenant, series, last))
            .collect(),
        keys: row
            .tenants
            .into_iter()
            .zip(row.scopes)
            .zip(row.keys)
            .map(|((tenant, scope), key)| (tenant, scope, key))
            .collect(),
    })
}

/// The claim statement's answer, as parallel arrays: the counters it moved, the keys it
/// claimed.
#[derive(sqlx::FromRow)]
struct ClaimRow {
    number_tenants: Vec<Uuid>,
    number_series: Vec<String>,
    number_last: Vec<i64>,
    tenants: Vec<Uuid>,
    scopes: Vec<String>,
    keys: Vec<String>,
}

/// After a lost `COMMIT` acknowledgement: whether the batch committed, learnt through the
/// first idempotency record in it (the batch committed or rolled back as a whole).
async fn resolve(pool: &PgPool, pending: &[Pending]) -> Result<(), Refused> {
    let Some(p) = pending.iter().find(|p| p.key.is_some()) else {
        return Err(Refused::Unacknowledged);
    };
    let key = p.key.as_ref().expect("found by its key");
    match idempotency::resolve(pool, p.tenant, key).await {
        Some(true) => Ok(()),
        Some(false) => Err(Refused::Alone),
        None => Err(Refused::Unacknowledged),
    }
}

/// Writes the batch's events, records and heads in one statement, unless a command decided on
/// a cached state finds it stale (another writer appended to its aggregate or to a reference
/// it consulted, or the stream is not what was cached; for a create decided on the empty
/// state, the id has an event) or its idempotency key has a live record (a repeat, or a
/// concurrent request with the key): then it writes nothing and returns the indexes in
/// `pending` of those commands.
async fn insert(
    tx: &mut sqlx::PgConnection,
    pending: &[Pending],
    heads: HashMap<Uuid, (i64, Vec<u8>)>,
) -> Result<HashSet<usize>, Refused> {
    let rows = pending.iter().flat_map(|p| p.stored.iter());
    let records: Vec<(&Pending, &IdempotencyKey, &Reply)> = pending
        .iter()
        .filter_map(|p| Some((p, p.key.as_ref()?, p.reply.as_ref()?)))
        .collect();
    let (head_tenants, head_positions, head_hashes): (Vec<Uuid>, Vec<i64>, Vec<Vec<u8>>) = heads
        .into_iter()
        .map(|(tenant, (position, hash))| (tenant, position, hash))
        .fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut t, mut p, mut h), (tenant, position, hash)| {
                t.push(tenant);
                p.push(position);
                h.push(hash);
                (t, p, h)
            },
        );
    let event_count = pending.iter().map(|p| p.stored.len()).sum::<usize>();
    // One row per aggregate to check; the key only with the command's own.
    let checks: Vec<(i32, &Pending, &Newest, Option<String>)> = pending
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i32::try_from(i).ok()?, p, p.verify.as_ref()?)))
        .flat_map(|(i, p, verify)| {
            let key = p.key.as_ref().map(IdempotencyKey::stored);
            std::iter::once((i, p, &verify.aggregate, key)).chain(
                verify
                    .consulted
                    .iter()
                    .map(move |newest| (i, p, newest, None)),
            )
        })
        .collect();
    let result: Result<(i64, i64, i64, Vec<i32>, i64), sqlx::Error> = sqlx::query_as(
        "with stale as (
             -- Each check is a lookup by primary key: the aggregate's newest event, and the key.
             select distinct c.i
               from unnest($22::int[], $23::uuid[], $24::text[], $25::uuid[], $26::bigint[],
                           $27::bytea[], $28::text[])
                 as c(i, tenant_id, aggregate_type, aggregate_id, sequence, hash, key)
               left join lateral (
                    select e.sequence, e.hash from events e
                     where e.tenant_id = c.tenant_id and e.aggregate_type = c.aggregate_type
                       and e.aggregate_id = c.aggregate_id
                     order by e.sequence desc limit 1) newest on true
               left join lateral (
                    select 1 as live from idempotency_keys k
                     where k.tenant_id = c.tenant_id and k.key = c.key
                       and k.created_at > now() - make_interval(hours => $18)
                     limit 1) held on true
              where coalesce(newest.sequence, 0) <> c.sequence
                 or coalesce(newest.hash, ''::bytea) <> c.hash
                 or held.live is not null
         ),
         inserted as (
             insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence,
                                 event_type, event_version, payload, metadata, recorded_at, hash)
             select * from unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::bigint[],
                                  $6::text[], $7::text[], $8::jsonb[], $9::jsonb[],
                                  $10::timestamptz[], $11::bytea[])
              where not exists (select from stale)
             returning 1
         ),
         recorded as (
             -- an expired record is replaced; a live one is left alone (no row returned)
             insert into idempotency_keys (tenant_id, key, request_hash, status, response, headers)
             select tenant_id, key, request_hash, status, response::json, headers
               from unnest($12::uuid[], $13::text[], $14::bytea[], $15::smallint[],
                           $16::text[], $17::jsonb[])
                 as r(tenant_id, key, request_hash, status, response, headers)
              where not exists (select from stale)
             on conflict (tenant_id, key) do update
                set request_hash = excluded.request_hash, status = excluded.status,
                    response = excluded.response, headers = excluded.headers,
                    created_at = now()
              where idempotency_keys.created_at <= now() - make_interval(hours => $18)
             returning 1
         ),
         -- The relay's wake-up: Postgres delivers it at the commit, and only then; the
         -- payload is empty (any login may LISTEN, analysts too, and must learn nothing of
         -- who wrote when).
         woken as (select pg_notify('oms_events', '') where not exists (select from stale)),
         moved as (
             update tenant_heads h set position = m.position, hash = m.hash
               from unnest($19::uuid[], $20::bigint[], $21::bytea[]) as m(tenant_id, position, hash)
              where h.tenant_id = m.tenant_id and not exists (select from stale)
             returning 1
         )
         select (select count(*) from inserted), (select count(*) from recorded),
                (select count(*) from moved), array(select i from stale),
                (select count(*) from woken)",
    )
    .bind(rows.clone().map(|e| e.tenant_id).collect::<Vec<_>>())
    .bind(rows.clone().map(|e| e.position).collect::<Vec<_>>())
    .bind(
        rows.clone()
            .map(|e| e.aggregate_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.clone().map(|e| e.aggregate_id).collect::<Vec<_>>())
    .bind(rows.clone().map(|e| e.sequence).collect::<Vec<_>>())
    .bind(
        rows.clone()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.clone()
            .map(|e| e.event_version.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.clone().map(|e| &e.payload).collect::<Vec<&Value>>())
    .bind(rows.clone().map(|e| &e.metadata).collect::<Vec<&Value>>())
    .bind(rows.clone().map(|e| e.recorded_at).collect::<Vec<_>>())
    .bind(rows.map(|e| e.hash.as_slice()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.0.tenant).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.1.stored()).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .map(|r| r.1.request_hash.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(
        records
            .iter()
            .map(|r| i16::try_from(r.2.status).unwrap_or(200))
            .collect::<Vec<_>>(),
    )
    .bind(records.iter().map(|r| r.2.body.text()).collect::<Vec<_>>())
    .bind(
        records
            .iter()
            .map(|r| serde_json::to_value(&r.2.headers).unwrap_or_default())
            .collect::<Vec<_>>(),
    )
    .bind(idempotency::RETENTION_HOURS)
    .bind(&head_tenants)
    .bind(&head_positions)
    .bind(&head_hashes)
    .bind(checks.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(checks.iter().map(|c| c.1.tenant).collect::<Vec<_>>())
    .bind(
        checks
            .iter()
            .map(|c| c.2.aggregate_type)
            .collect::<Vec<_>>(),
    )
    .bind(checks.iter().map(|c| c.2.aggregate_id).collect::<Vec<_>>())
    .bind(checks.iter().map(|c| c.2.sequence).collect::<Vec<_>>())
    .bind(
        checks
            .iter()
            .map(|c| c.2.hash.as_slice())
            .collect::<Vec<_>>(),
    )
    .bind(checks.iter().map(|c| c.3.as_deref()).collect::<Vec<_>>())
    .fetch_one(&mut *tx)
    .await;
    let (inserted, recorded, moved, stale, _woken) = result?;
    if !stale.is_empty() {
        return Ok(stale
            .into_iter()
            .filter_map(|i| usize::try_from(i).ok())
            .collect());
    }
    let as_expected = usize::try_from(inserted).ok() == Some(event_count)
        && usize::try_from(recorded).ok() == Some(records.len())
        && usize::try_from(moved).ok() == Some(head_tenants.len());
    if !as_expected {
        // A record a concurrent request with the same key wrote first: roll back (dropping the
        // transaction does) and let each command find its own answer alone.
        return Err(Refused::Alone);
    }
    Ok(HashSet::new())
}

/// How a batch's transaction begins: in the same round trip, its statements are told to use
/// the plan prepared once on the connection. They take arrays, which Postgres sizes when it
/// sees them: every plan made for the values at hand looks cheaper than the generic one, so
/// it planned the statements anew on each batch. The check of cached states (a lateral
/// lookup across the events' partitions) took 0.44 ms to plan and 0.08 ms to run; with the
/// generic plan, 0.03 ms to plan and the same to run. Every statement here looks rows up by
/// key, which the generic plan does as well as any.
const BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// The batch's transaction: claims, heads, one insert, commit.
async fn transaction(
    pool: &PgPool,
    pending: &mut Vec<Pending>,
    set_aside: &mut Vec<Pending>,
    numbers: &mut Numbers,
) -> Result<(), Refused> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with(BEGIN).await?;

    // Numbers and unique keys first, before any head is held (as a single command does), in
    // one statement. A key another aggregate holds refuses its command only: the transaction
    // rolls back, that command is set aside (it runs alone after this batch, and is refused
    // there), and the others try again in a new one. An assigned number a client gave
    // explicitly is left out the same way: the next try skips it. Such conflicts are rare, so
    // the common batch pays no savepoint for them.
    if pending.iter().any(|p| p.claims().next().is_some()) {
        let spans = numbers.plan(pending);
        let claimed = claim(&mut tx, pending, &spans).await?;
        numbers.settle(pending, &spans, &claimed.numbers)?;
        let held = |p: &Pending, scope: &str, key: &str| {
            claimed
                .keys
                .contains(&(p.tenant, scope.to_string(), key.to_string()))
        };
        let expected = pending.iter().map(|p| p.claims().count()).sum::<usize>();
        let all_held = claimed.keys.len() == expected
            && pending
                .iter()
                .all(|p| p.claims().all(|(_, scope, key)| held(p, scope, key)));
        if !all_held {
            tx.rollback().await?;
            for p in pending.iter() {
                if let (Some(series), Some((n, key))) = (p.number, &p.assigned) {
                    if !held(p, series.scope, key) {
                        numbers.skip.insert((p.tenant, series.series, *n));
                    }
                }
            }
            let (keep, refused): (Vec<Pending>, Vec<Pending>) =
                std::mem::take(pending).into_iter().partition(|p| {
                    p.claims().all(|(_, scope, key)| {
                        held(p, scope, key)
                            || p.number.is_some_and(|series| {
                                scope == series.scope
                                    && p.assigned.as_ref().is_some_and(|(_, a)| a == key)
                            })
                    })
                });
            *pending = keep;
            set_aside.extend(refused);
            return Err(Refused::Retry);
        }
    }
    // The numbers hold: each goes where its command's stand-in is.
    for p in pending.iter_mut() {
        if let (Some(series), Some((_, assigned))) = (p.number, p.assigned.take()) {
            let (at, pointer) = stand_in(&p.events, series).expect("checked before the batch");
            let event = &mut p.events[at];
            if let Some(slot) = event.payload.pointer_mut(&pointer) {
                *slot = Value::String(assigned.clone());
            }
            for change in &mut event.unique_keys {
                if let UniqueKeyChange::Claim { scope, key } = change {
                    if *scope == series.scope && *key == series.format(0) {
                        key.clone_from(&assigned);
                    }
                }
            }
        }
    }

    // The heads, in tenant-id order; held to commit.
    let mut tenants: Vec<Uuid> = pending.iter().map(|p| p.tenant).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let heads: Vec<(Uuid, i64, Vec<u8>)> = sqlx::query_as(
        "select tenant_id, position, hash from tenant_heads
          where tenant_id = any($1) order by tenant_id for update",
    )
    .bind(&tenants)
    .fetch_all(&mut *tx)
    .await?;
    if heads.len() != tenants.len() {
        // A tenant without a head: the command alone reports it.
        return Err(Refused::Alone);
    }
    // A command whose caller is gone (its request timed out while the batch waited for a
    // head) is dropped, as a command in a transaction of its own would be: nothing of it may
    // be written. Its keys are already claimed in this transaction, so a batch that holds
    // claims for it runs everyone alone instead.
    if pending.iter().any(|p| p.done.is_closed()) {
        let abandoned_claims = pending
            .iter()
            .filter(|p| p.done.is_closed())
            .any(|p| p.events.iter().any(|e| !e.unique_keys.is_empty()));
        if abandoned_claims {
            return Err(Refused::Alone);
        }
        pending.retain(|p| !p.done.is_closed());
    }
    let heads: HashMap<Uuid, (i64, Vec<u8>)> = heads
        .into_iter()
        .map(|(tenant, position, hash)| (tenant, (position, hash)))
        .collect();

    // The rows as stored, their positions and hashes to come.
    let recorded_at = hash::to_stored_precision(Utc::now());
    for p in pending.iter_mut() {
        p.claims_held = p.events.iter().any(|e| !e.unique_keys.is_empty());
        p.stored = std::mem::take(&mut p.events)
            .into_iter()
            .map(|event| StoredEvent {
                tenant_id: p.tenant,
                position: 0,
                aggregate_type: event.aggregate_type,
                aggregate_id: event.aggregate_id,
                sequence: event.sequence,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at,
                hash: Vec::new(),
            })
            .collect();
    }
    loop {
        // Positions, hashes and responses, in the order the commands came.
        let mut moved_heads = heads.clone();
        for p in pending.iter_mut() {
            let head = moved_heads
                .get_mut(&p.tenant)
                .expect("every tenant's head is locked");
            for row in &mut p.stored {
                head.0 += 1;
                row.position = head.0;
                row.hash = hash::chain_hash(&head.1, row).to_vec();
                head.1.clone_from(&row.hash);
            }
            p.reply = Some((p.render)(&p.stored).ok_or(Refused::Alone)?);
        }
        // Every event, record and head in one statement, which first checks the commands
        // decided on a cached state (see [`Verify`]) and writes nothing if one is stale. The
        // heads are held, so what it sees stays true until the commit; and the check is in
        // the same statement as the writes, so it costs the batch no round trip of its own
        // while it holds the heads.
        let stale = insert(&mut tx, pending, moved_heads).await?;
        if stale.is_empty() {
            break;
        }
        let mut index = 0;
        let (keep, aside): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(pending).into_iter().partition(|_| {
                index += 1;
                !stale.contains(&(index - 1))
            });
        if aside.iter().any(|p| p.claims_held) {
            // Its claims are in this transaction: everyone runs alone instead.
            *pending = keep;
            pending.extend(aside);
            return Err(Refused::Alone);
        }
        *pending = keep;
        set_aside.extend(aside);
        if pending.is_empty() {
            return Ok(());
        }
    }
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(err) if crate::is_unavailable(&err) => Err(Refused::Unacknowledged),
        Err(err) => Err(err.into()),
    }
}
