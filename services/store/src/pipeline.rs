//! The command pipeline: one transaction per command.
//!
//! ```text
//! begin
//!   idempotency lookup        a repeat returns the first response, writes nothing
//!   load the aggregate        its own events only (primary key of the tenant's partition)
//!   If-Match check            412 on a version mismatch
//!   [next number]             PO-/SO-/INV- series, when the command needs one
//!   handle                    the aggregate decides; its lookups use this transaction
//!   append                    unique keys, head row, events + hashes (store)
//!   idempotency record        the response, in the same transaction
//! commit
//! ```
//!
//! A lost race (another writer took the aggregate's next sequence) is retried from the top a
//! few times when the client sent no If-Match, then answered as a conflict.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use oms_domain::error::DomainError;
use oms_domain::services::{Clock, DomainServices};
use oms_domain::{NumberSeries, UniqueKeys};
use serde_json::{json, Value};
use sqlx::PgConnection;
use std::sync::{Arc, OnceLock};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::decided::DecidedCache;
use crate::group_commit::{
    is_stand_in, GroupCommit, GroupCommitCounters, Newest, Outcome, Submission, Verify,
};
use crate::idempotency::{
    self, Finished, IdempotencyKey, KeyError, KeyOrigin, Recorded, Reply, Started,
};
use crate::lookups::TxLookups;
use crate::{AppendError, EventStore, FoldError, NewEvent, StoredEvent};

/// The version and times of an aggregate after its newest stored event.
fn stamp<A>(loaded: &mut Loaded<A>, last: &StoredEvent) {
    loaded.version = last.sequence;
    loaded.updated_at = Some(last.recorded_at);
    loaded.created_at.get_or_insert(last.recorded_at);
}

/// How often a lost race is retried before the client gets a conflict.
const MAX_ATTEMPTS: usize = 5;

/// The largest payload one event may have, in bytes of JSON. An event travels whole on NATS
/// (whose default message limit is 1 MiB) inside its envelope, so a command whose event would be
/// larger is refused before anything is written, instead of being stored and then stuck in
/// front of its tenant's relay.
pub const MAX_EVENT_PAYLOAD_BYTES: usize = 512 * 1024;

/// Who sent a command; recorded in every event's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The token's `sub`.
    pub subject: String,
    /// The token's optional `name`.
    pub name: Option<String>,
}

/// Everything about a command that is not the command itself.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The tenant, from the verified token.
    pub tenant: Uuid,
    /// Who sent it.
    pub actor: Actor,
    /// The request's id (also on every log line of the request).
    pub request_id: String,
    /// The id that ties a chain of requests together (the client's `X-Correlation-Id`, or the
    /// request id).
    pub correlation_id: String,
    /// The id of what caused this command (the client's `X-Causation-Id`), if any.
    pub causation_id: Option<String>,
    /// The version the client expects (`If-Match`).
    pub expected_version: Option<i64>,
    /// The key the command's response is recorded under: the client's `Idempotency-Key`, or
    /// one made from the request id (none: no record, and a lost commit cannot be resolved).
    pub idempotency: Option<IdempotencyKey>,
}

impl CommandContext {
    fn metadata(&self) -> Value {
        json!({
            "actor": self.actor.subject,
            "actor_name": self.actor.name,
            "request_id": self.request_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "idempotency_key": self.idempotency.as_ref().and_then(|k| k.client_key()),
        })
    }
}

/// An aggregate as rebuilt from its events.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// Its id.
    pub id: Uuid,
    /// Its state.
    pub aggregate: A,
    /// How many events it has.
    pub version: i64,
    /// When its first event was recorded.
    pub created_at: Option<DateTime<Utc>>,
    /// When its newest event was recorded.
    pub updated_at: Option<DateTime<Utc>>,
}

impl<A> Loaded<A> {
    /// The id, version and timestamps every document carries.
    pub fn stamp(&self) -> oms_projections::documents::Stamp {
        oms_projections::documents::Stamp {
            id: self.id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Whether the aggregate has any event.
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

/// How a command went.
#[derive(Debug, Clone)]
pub enum Executed {
    /// Handled now; its events (possibly none) are committed.
    Fresh {
        /// The response, also recorded under the idempotency key.
        reply: Reply,
        /// The tenant's position after the command.
        position: i64,
    },
    /// A repeat of a keyed request: the first response, nothing written.
    Replayed(Reply),
}

/// Why a command was not carried out. Nothing was written, except perhaps after
/// [`CommandError::InDoubt`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// `If-Match` named another version.
    #[error("the order is at version {current}")]
    VersionMismatch {
        /// The version it is at.
        current: i64,
    },
    /// Lost the race for the aggregate more often than we retry.
    #[error("the aggregate was changed concurrently; retry")]
    Conflict,
    /// A per-tenant unique value is taken.
    #[error("{key} is already used")]
    Duplicate {
        /// The unique-key scope.
        scope: String,
        /// The value.
        key: String,
    },
    /// A shipment would take more of a lot than is left: another shipment took it first.
    #[error("lot {lot_id} has {} left, less than the {} this shipment takes", left.normalize(), taken.normalize())]
    OverShipped {
        /// The lot.
        lot_id: Uuid,
        /// What is left of it.
        left: rust_decimal::Decimal,
        /// What the shipment takes of it.
        taken: rust_decimal::Decimal,
    },
    /// The idempotency key was used for a different request.
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    /// The request id (standing in for a key) was used for a different request.
    #[error("the X-Request-Id was used for a different request")]
    RequestIdReused,
    /// One event would be larger than the pipeline carries (NATS's message size, with room for
    /// the envelope); nothing was written.
    #[error(
        "the command's event would be {bytes} bytes, more than the {limit} bytes an event may have"
    )]
    EventTooLarge {
        /// The event's payload size.
        bytes: usize,
        /// [`MAX_EVENT_PAYLOAD_BYTES`].
        limit: usize,
    },
    /// The connection failed at `COMMIT` and whether the command took effect could not be
    /// found out: the only error after which something may have been written.
    #[error("the database connection failed while committing; whether the command took effect is unknown — retry with the same Idempotency-Key or X-Request-Id")]
    InDoubt,
    /// The token's tenant does not exist.
    #[error("unknown tenant")]
    UnknownTenant,
    /// A stored event does not deserialise.
    #[error(transparent)]
    Corrupt(#[from] FoldError),
    /// Postgres failed or is unreachable.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<KeyError> for CommandError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Mismatch => Self::IdempotencyMismatch,
            KeyError::Raced => Self::Conflict,
            KeyError::InDoubt => Self::InDoubt,
            KeyError::Database(err) => Self::Database(err),
        }
    }
}

impl From<AppendError> for CommandError {
    fn from(err: AppendError) -> Self {
        match err {
            AppendError::Conflict => Self::Conflict,
            AppendError::Duplicate { scope, key } => Self::Duplicate { scope, key },
            AppendError::OverShipped {
                lot_id,
                left,
                taken,
            } => Self::OverShipped {
                lot_id,
                left,
                taken,
            },
            AppendError::UnknownTenant => Self::UnknownTenant,
            AppendError::Database(err) => Self::Database(err),
        }
    }
}

/// The rows a command's decided events become, their sequences following `version`; refused
/// when one would be larger than the pipeline carries.
fn new_events<A: OmsAggregate>(
    ctx: &CommandContext,
    id: Uuid,
    version: i64,
    decided: &[A::Event],
) -> Result<Vec<NewEvent>, CommandError>
where
    A::Event: UniqueKeys,
{
    let metadata = ctx.metadata();
    let new_events = decided
        .iter()
        .enumerate()
        .map(|(offset, event)| {
            Ok(NewEvent {
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: id,
                sequence: version + 1 + i64::try_from(offset).unwrap_or(0),
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(event).map_err(|err| {
                    sqlx::Error::Protocol(format!("an event does not serialise: {err}"))
                })?,
                metadata: metadata.clone(),
                unique_keys: event.unique_key_changes(),
                lot_movements: event.lot_movements(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if let Some(bytes) = new_events
        .iter()
        .map(|event| event.payload.to_string().len())
        .find(|bytes| *bytes > MAX_EVENT_PAYLOAD_BYTES)
    {
        return Err(CommandError::EventTooLarge {
            bytes,
            limit: MAX_EVENT_PAYLOAD_BYTES,
        });
    }
    Ok(new_events)
}

/// Runs commands against the event store.
#[derive(Clone)]
pub struct Commands {
    store: EventStore,
    clock: Arc<dyn Clock>,
    cache: Arc<DecidedCache>,
    /// The group-commit writers, started on first use (they need the runtime); `None` inside
    /// when group commit is off.
    group: Arc<OnceLock<Option<GroupCommit>>>,
    grouped: bool,
    counters: GroupCommitCounters,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

/// The aggregates the pipeline runs: every aggregate of the domain.
pub trait OmsAggregate:
    Aggregate<Services = DomainServices, Error = DomainError> + Clone + 'static
where
    Self::Event: UniqueKeys,
{
}

impl<A> OmsAggregate for A
where
    A: Aggregate<Services = DomainServices, Error = DomainError> + Clone + 'static,
    A::Event: UniqueKeys,
{
}

impl Commands {
    /// A pipeline over `store` whose aggregates read today's date from `clock`.
    pub fn new(store: EventStore, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            cache: Arc::new(DecidedCache::default()),
            group: Arc::new(OnceLock::new()),
            grouped: true,
            counters: GroupCommitCounters::default(),
        }
    }

    /// The same pipeline with group commit on or off. Off, every command runs in a
    /// transaction of its own (the path a command that takes a number always takes); on (the
    /// default), commands decided at the same moment share one (see `group_commit.rs`).
    pub fn with_group_commit(mut self, on: bool) -> Self {
        self.grouped = on;
        self.group = Arc::new(OnceLock::new());
        self
    }

    /// Group commit's counters, for `/metrics`.
    pub fn group_commit_counters(&self) -> &GroupCommitCounters {
        &self.counters
    }

    fn group(&self) -> Option<&GroupCommit> {
        self.group
            .get_or_init(|| {
                self.grouped
                    .then(|| GroupCommit::start(self.store.pool().clone(), self.counters.clone()))
            })
            .as_ref()
    }

    /// The store underneath.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Rebuilds an aggregate from its events (an empty `Loaded` when it has none).
    pub async fn load<A: OmsAggregate>(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<Loaded<A>, CommandError>
    where
        A::Event: UniqueKeys,
    {
        let events = self.store.load_stream(tenant, A::TYPE, id).await?;
        self.loaded(id, &events)
    }

    /// Rebuilds an aggregate from its events recorded at or before `as_of`.
    pub async fn load_as_of<A: OmsAggregate>(
        &self,
        tenant: Uuid,
        id: Uuid,
        as_of: DateTime<Utc>,
    ) -> Result<Loaded<A>, CommandError>
    where
        A::Event: UniqueKeys,
    {
        let mut events = self.store.load_stream(tenant, A::TYPE, id).await?;
        events.retain(|event| event.recorded_at <= as_of);
        self.loaded(id, &events)
    }

    fn loaded<A: OmsAggregate>(
        &self,
        id: Uuid,
        events: &[StoredEvent],
    ) -> Result<Loaded<A>, CommandError>
    where
        A::Event: UniqueKeys,
    {
        Ok(Loaded {
            id,
            aggregate: self.store.fold(events)?,
            version: i64::try_from(events.len()).unwrap_or(i64::MAX),
            created_at: events.first().map(|e| e.recorded_at),
            updated_at: events.last().map(|e| e.recorded_at),
        })
    }

    /// Runs one command. `make` builds the command (given the number taken from `number`, when
    /// the command needs one); `render` turns the state after it and the tenant's position into
    /// the response, which is recorded under the idempotency key in the same transaction.
    pub async fn execute<A, F, R>(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        number: Option<NumberSeries>,
        make: F,
        render: R,
    ) -> Result<Executed, CommandError>
    where
        A: OmsAggregate,
        A::Event: UniqueKeys,
        F: Fn(Option<String>) -> A::Command,
        R: Fn(&Loaded<A>, i64) -> Reply + Send + Sync + 'static,
    {
        let render = Arc::new(render);
        if self.group().is_some() {
            if let Some(executed) = self
                .grouped::<A, _, _>(ctx, id, number, &make, &render)
                .await?
            {
                return Ok(executed);
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            match self
                .attempt::<A, _, _>(ctx, id, number, &make, &*render)
                .await
            {
                Err(CommandError::Conflict) if ctx.expected_version.is_none() => continue,
                Err(CommandError::Conflict) => {
                    let current = self.load::<A>(ctx.tenant, id).await?.version;
                    return Err(CommandError::VersionMismatch { current });
                }
                other => return other,
            }
        }
        Err(CommandError::Conflict)
    }

    /// The aggregate as of the command's transaction: from the cache plus the events after
    /// it when the cache holds it (see [`DecidedCache`]), else from its whole stream. Returns
    /// the state and the hash of its newest event.
    async fn load_in<A: OmsAggregate>(
        &self,
        conn: &mut PgConnection,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<(Loaded<A>, Vec<u8>), CommandError>
    where
        A::Event: UniqueKeys,
    {
        if let Some((mut loaded, hash)) = self.cache.get::<A>(tenant, id) {
            let events =
                EventStore::load_stream_from(&mut *conn, tenant, A::TYPE, id, loaded.version)
                    .await?;
            self.store.prepare(&mut *conn, &events).await?;
            let still_there = events
                .first()
                .is_some_and(|first| first.sequence == loaded.version && first.hash == hash);
            if still_there {
                let newer = &events[1..];
                self.store.fold_into(&mut loaded.aggregate, newer)?;
                if let Some(last) = newer.last() {
                    loaded.version = last.sequence;
                    loaded.updated_at = Some(last.recorded_at);
                }
                let hash = events.last().map(|e| e.hash.clone()).unwrap_or(hash);
                if !newer.is_empty() {
                    self.cache.put(tenant, &loaded, &hash);
                }
                return Ok((loaded, hash));
            }
            self.cache.forget(tenant, A::TYPE, id);
        }
        let events = EventStore::load_stream_with(&mut *conn, tenant, A::TYPE, id).await?;
        self.store.prepare(&mut *conn, &events).await?;
        let loaded: Loaded<A> = self.loaded(id, &events)?;
        let hash = events.last().map(|e| e.hash.clone()).unwrap_or_default();
        self.cache.put(tenant, &loaded, &hash);
        Ok((loaded, hash))
    }

    /// Runs a command through group commit: the idempotency lookup, the load and the decision
    /// outside any transaction, then the events to the writers, which commit them with other
    /// commands' (see `group_commit.rs`). `None`: the command must run alone, in a transaction
    /// of its own — it decided no events, releases a unique key, or its batch could not write
    /// it as decided (a conflict, a key held, a concurrent request with its key); nothing of
    /// it was written.
    ///
    /// When this process holds the aggregate's decided state (see [`DecidedCache`]), the
    /// command is first decided on it without reading anything: no idempotency lookup, no
    /// read of the stream's tail. The batch checks both under the tenant's head lock, where no
    /// other writer can append (the newest event still the cached one, hash and all, and no
    /// live record under the key), and sets the command aside to run alone if either fails. A
    /// command that takes a number and whose aggregate the cache does not hold (a create, of
    /// an id with no events yet) is decided the same way on the empty state: the batch checks
    /// that the id still has no event. A decision that is refused, decides nothing or claims
    /// a unique key other than its own number's stand-in is not trusted: the command is
    /// decided again the usual way, so a repeat is answered from its record and a refusal is
    /// never made on a stale state.
    ///
    /// A command that takes a number is decided with the series' stand-in; the batch gives it
    /// its number (see `group_commit.rs`) and its response and cached state are made from its
    /// events as stored.
    async fn grouped<A, F, R>(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        number: Option<NumberSeries>,
        make: &F,
        render: &Arc<R>,
    ) -> Result<Option<Executed>, CommandError>
    where
        A: OmsAggregate,
        A::Event: UniqueKeys,
        F: Fn(Option<String>) -> A::Command,
        R: Fn(&Loaded<A>, i64) -> Reply + Send + Sync + 'static,
    {
        let Some(group) = self.group() else {
            return Ok(None);
        };
        // The command's idempotency key: a repeat is answered from its record.
        let looked_up = || async {
            let Some(key) = ctx.idempotency.as_ref() else {
                return Ok(None);
            };
            match idempotency::lookup(self.store.pool(), ctx.tenant, key).await? {
                Recorded::New => Ok(None),
                Recorded::Replay(reply) => Ok(Some(Executed::Replayed(reply))),
                Recorded::Mismatch => Err(match key.origin {
                    KeyOrigin::RequestId => CommandError::RequestIdReused,
                    KeyOrigin::Client => CommandError::IdempotencyMismatch,
                }),
            }
        };
        // A command that takes a number looks its key up first even when it is decided
        // without reading: the batch takes its number before it checks the key, so a repeat
        // found there would send every command of the batch to run alone (the number given
        // back).
        if number.is_some() {
            if let Some(replayed) = looked_up().await? {
                return Ok(Some(replayed));
            }
        }
        let trusted = match self.cache.get::<A>(ctx.tenant, id) {
            Some(cached) => Some(cached),
            // A command that takes a number and whose aggregate this process has not seen is
            // nearly always a create, of an id no event has yet: it is decided on the empty
            // state, which the batch checks as it checks a cached one (no event under the id).
            None if number.is_some() => Some((self.loaded::<A>(id, &[])?, Vec::new())),
            None => None,
        }
        .filter(|(loaded, _)| ctx.expected_version.is_none_or(|v| v == loaded.version));
        if let Some((loaded, hash)) = trusted {
            let aggregate = Newest {
                aggregate_type: A::TYPE,
                aggregate_id: id,
                sequence: loaded.version,
                hash,
            };
            let numbered = number.map(|series| (series, loaded.clone()));
            if let Ok(Some((decided, consulted))) = self
                .decide::<A, _>(ctx, id, loaded, number, make, true)
                .await
            {
                // The only claim trusted is the stand-in of the command's own number, which
                // the batch replaces with a number it takes in the same statement: a key no
                // one holds. Any other claim is decided again the usual way, because one the
                // batch cannot make (a key another aggregate holds) sends every command of
                // the batch to run alone.
                let claims_only_its_number = decided
                    .1
                    .iter()
                    .flat_map(NewEvent::claims)
                    .all(|(scope, key)| is_stand_in(number, scope, key));
                if claims_only_its_number {
                    let verify = Verify {
                        aggregate,
                        consulted,
                    };
                    return self
                        .submit(group, ctx, id, decided, Some(verify), numbered, render)
                        .await;
                }
            }
        }
        if number.is_none() {
            if let Some(replayed) = looked_up().await? {
                return Ok(Some(replayed));
            }
        }
        let (loaded, _) = {
            let mut conn = self.store.pool().acquire().await?;
            self.load_in::<A>(&mut conn, ctx.tenant, id).await?
        };
        if let Some(expected) = ctx.expected_version {
            if expected != loaded.version {
                return Err(CommandError::VersionMismatch {
                    current: loaded.version,
                });
            }
        }
        // The state before, to fold the events as numbered into.
        let numbered = number.map(|series| (series, loaded.clone()));
        match self
            .decide::<A, _>(ctx, id, loaded, number, make, false)
            .await?
        {
            Some((decided, _)) => {
                self.submit(group, ctx, id, decided, None, numbered, render)
                    .await
            }
            None => Ok(None),
        }
    }

    /// Decides a command on `loaded` for group commit (with `number`'s stand-in, when it takes
    /// one): the state after it and its events, and the newest event of each reference its
    /// lookups were answered from; or `None` when it must run alone (it decided nothing, or an
    /// event of it runs alone). With `trust`, the lookups answer from the cache of decided
    /// states (the batch must check what they consulted); without, they read.
    #[allow(clippy::type_complexity)]
    async fn decide<A, F>(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        mut loaded: Loaded<A>,
        number: Option<NumberSeries>,
        make: &F,
        trust: bool,
    ) -> Result<Option<((Loaded<A>, Vec<NewEvent>), Vec<Newest>)>, CommandError>
    where
        A: OmsAggregate,
        A::Event: UniqueKeys,
        F: Fn(Option<String>) -> A::Command,
    {
        let lookups = Arc::new(TxLookups::over_pool(
            self.store.clone(),
            ctx.tenant,
            self.cache.clone(),
            trust,
        ));
        let services = DomainServices::new(lookups.clone(), self.clock.clone());
        let version = loaded.version;
        let sink = EventSink::default();
        loaded
            .aggregate
            .handle(
                make(number.map(|series| series.format(0))),
                &services,
                &sink,
            )
            .await?;
        let decided = sink.collect().await;
        let events = new_events::<A>(ctx, id, version, &decided)?;
        if events.is_empty() || events.iter().any(NewEvent::runs_alone) {
            return Ok(None);
        }
        Ok(Some(((loaded, events), lookups.consulted())))
    }

    /// Hands a decided command to the group-commit writers and waits for its batch. A
    /// command that takes a number comes with its series and the state before it: its state
    /// after is that state with its events as stored (numbered) folded in.
    #[allow(clippy::too_many_arguments)]
    async fn submit<A, R>(
        &self,
        group: &GroupCommit,
        ctx: &CommandContext,
        id: Uuid,
        (loaded, events): (Loaded<A>, Vec<NewEvent>),
        verify: Option<Verify>,
        numbered: Option<(NumberSeries, Loaded<A>)>,
        render: &Arc<R>,
    ) -> Result<Option<Executed>, CommandError>
    where
        A: OmsAggregate,
        A::Event: UniqueKeys,
        R: Fn(&Loaded<A>, i64) -> Reply + Send + Sync + 'static,
    {
        let number = numbered.as_ref().map(|(series, _)| *series);
        let before = numbered.map(|(_, before)| before);
        // The state after the events as stored.
        let after = {
            let store = self.store.clone();
            move |stored: &[StoredEvent]| -> Option<Loaded<A>> {
                let mut loaded = match &before {
                    Some(before) => {
                        let mut loaded = before.clone();
                        store.fold_into(&mut loaded.aggregate, stored).ok()?;
                        loaded
                    }
                    None => loaded.clone(),
                };
                stamp(&mut loaded, stored.last()?);
                Some(loaded)
            }
        };
        let after = Arc::new(after);
        let render = render.clone();
        let rendered = after.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        let consulted = verify
            .as_ref()
            .map(|verify| verify.consulted.clone())
            .unwrap_or_default();
        let submission = Submission {
            tenant: ctx.tenant,
            events,
            number,
            key: ctx.idempotency.clone(),
            verify,
            render: Box::new(move |stored: &[StoredEvent]| {
                let loaded = rendered(stored)?;
                Some(render(&loaded, stored.last()?.position))
            }),
            done,
        };
        if !group.submit(submission) {
            return Ok(None);
        }
        match outcome.await {
            Ok(Outcome::Committed { reply, events }) => {
                let last = events.last().expect("a committed command has events");
                match after(&events) {
                    Some(loaded) => self.cache.put(ctx.tenant, &loaded, &last.hash),
                    None => self.cache.forget(ctx.tenant, A::TYPE, id),
                }
                Ok(Some(Executed::Fresh {
                    reply,
                    position: last.position,
                }))
            }
            Ok(Outcome::Alone) | Err(_) => {
                // A consulted reference may have changed: the next decision reads it again.
                for newest in consulted {
                    self.cache
                        .forget(ctx.tenant, newest.aggregate_type, newest.aggregate_id);
                }
                Ok(None)
            }
            Ok(Outcome::InDoubt) => {
                self.cache.forget(ctx.tenant, A::TYPE, id);
                Err(CommandError::InDoubt)
            }
        }
    }

    async fn attempt<A, F, R>(
        &self,
        ctx: &CommandContext,
        id: Uuid,
        number: Option<NumberSeries>,
        make: &F,
        render: &R,
    ) -> Result<Executed, CommandError>
    where
        A: OmsAggregate,
        A::Event: UniqueKeys,
        F: Fn(Option<String>) -> A::Command,
        R: Fn(&Loaded<A>, i64) -> Reply,
    {
        let key = ctx.idempotency.as_ref();
        let refused = |err: KeyError| match (err, key.map(|k| k.origin)) {
            (KeyError::Mismatch, Some(KeyOrigin::RequestId)) => CommandError::RequestIdReused,
            (err, _) => CommandError::from(err),
        };
        let mut tx = match idempotency::start(self.store.pool(), ctx.tenant, key)
            .await
            .map_err(refused)?
        {
            Started::New(tx) => tx,
            Started::Replay(reply) => return Ok(Executed::Replayed(reply)),
        };
        let (mut loaded, _) = self.load_in::<A>(&mut tx, ctx.tenant, id).await?;
        if let Some(expected) = ctx.expected_version {
            if expected != loaded.version {
                return Err(CommandError::VersionMismatch {
                    current: loaded.version,
                });
            }
        }

        // The aggregate decides; its lookups share this transaction (and remember their
        // answers, so a second decision asks nothing again).
        let shared = Arc::new(Mutex::new(tx));
        let services = DomainServices::new(
            Arc::new(TxLookups::new(
                self.store.clone(),
                ctx.tenant,
                shared.clone(),
            )),
            self.clock.clone(),
        );
        let before = loaded.aggregate.clone();
        let sink = EventSink::default();
        // A command that takes a number decides first with a stand-in (the series' number 0,
        // never handed out), and takes the number only once the command is known to be
        // allowed: the number-series row then stays locked from just before the head row to
        // commit, not for the whole command, and a refused command takes no number at all.
        let stand_in = number.map(|series| series.format(0));
        let decided = loaded
            .aggregate
            .handle(make(stand_in), &services, &sink)
            .await;
        let decided = match (decided, number) {
            (Err(err), _) => Err(err),
            (Ok(()), None) => Ok(sink.collect().await),
            (Ok(()), Some(series)) => {
                let assigned = {
                    let mut tx = shared.lock().await;
                    self.store
                        .next_number(&mut tx, ctx.tenant, series.series, series.scope, |n| {
                            series.format(n)
                        })
                        .await?
                };
                // Decide again, from the state before, with the number: the same command but
                // for it, so the same lookups, answered from memory.
                loaded.aggregate = before;
                let sink = EventSink::default();
                match loaded
                    .aggregate
                    .handle(make(Some(assigned)), &services, &sink)
                    .await
                {
                    Ok(()) => Ok(sink.collect().await),
                    Err(err) => Err(err),
                }
            }
        };
        drop(services);
        let mut tx = Arc::try_unwrap(shared)
            .map_err(|_| sqlx::Error::Protocol("a lookup outlived its command".into()))?
            .into_inner();
        let decided = decided?;

        let new_events = new_events::<A>(ctx, id, loaded.version, &decided)?;
        // Unique keys and the head row (one statement), then the events and the response's
        // record (one statement), then commit.
        let reserved = self.store.reserve(&mut tx, ctx.tenant, new_events).await?;
        let newest_hash = reserved.events.last().map(|e| e.hash.clone());
        if let Some(last) = reserved.events.last() {
            loaded.version = last.sequence;
            loaded.updated_at = Some(last.recorded_at);
            loaded.created_at.get_or_insert(last.recorded_at);
        }
        let position = reserved.position;
        let reply = render(&loaded, position);
        let (_, recorded) = self
            .store
            .write(
                &mut tx,
                ctx.tenant,
                reserved,
                key.map(|key| (key, &reply)),
                false,
            )
            .await?;
        let finished = match (recorded, key) {
            (false, Some(key)) => idempotency::lost(tx, self.store.pool(), ctx.tenant, key).await,
            _ => idempotency::commit(tx, self.store.pool(), ctx.tenant, key, reply).await,
        };
        match finished.map_err(|err| {
            // Whatever the outcome, the cache must not guess it.
            self.cache.forget(ctx.tenant, A::TYPE, id);
            refused(err)
        })? {
            Finished::Committed(reply) => {
                if let Some(hash) = newest_hash {
                    self.cache.put(ctx.tenant, &loaded, &hash);
                    self.store.notify_relay();
                }
                Ok(Executed::Fresh { reply, position })
            }
            Finished::Replayed(reply) => Ok(Executed::Replayed(reply)),
        }
    }
}
