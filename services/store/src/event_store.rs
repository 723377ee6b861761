//! The event store: one `events` table, hash-partitioned by tenant, with gapless per-tenant
//! positions, a per-tenant hash chain, and the small per-tenant tables (unique keys, number
//! series, idempotency records, lot stock) written in the same transaction as the events.
//!
//! An append takes the tenant's head row last, just before commit:
//!
//! ```text
//! begin
//!   [number_series row]            order/invoice number for a create or invoice command
//!   unique_keys insert/delete      order numbers, invoice numbers, reference codes
//!   [lot_stock insert/update]      receipts and shipments that name lots (see `move_lots`)
//!   update tenant_heads ... returning position, hash      ← serialises the tenant's appends
//!   insert into events ...; [idempotency_keys insert]; update tenant_heads set hash
//!                                  (one statement; `append_in` also notifies the relay in it)
//! commit
//! [select pg_notify(...)]          the pipeline: after the commit (see `Notifier`)
//! ```
//!
//! so positions are gapless and in commit order, and a reader's rule is "next = checkpoint + 1".

use chrono::Utc;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::Aggregate;
use oms_domain::UniqueKeyChange;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use uuid::Uuid;

use crate::event::{AppendError, Appended, ChainReport, FoldError, Head, NewEvent, StoredEvent};
use crate::hash::{self, GENESIS};
use crate::idempotency::{self, IdempotencyKey, Reply};
use crate::personal::{is_personal, Keyring, MasterKey};

/// `select <every column of an event> from events <rest>`: the one place the column list is
/// written, so every read decodes into [`StoredEvent`] the same way.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "select tenant_id, position, aggregate_type, aggregate_id, sequence, event_type, \
                    event_version, payload, metadata, recorded_at, hash \
               from events ",
            $rest
        )
    };
}
pub(crate) use select_events;

/// The event store over a Postgres pool.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    upcasters: Arc<Vec<Box<dyn EventUpcaster>>>,
    notifier: Arc<Notifier>,
    keyring: Arc<Keyring>,
}

/// The relay's wake-up sent after commits rather than inside them.
///
/// A transaction that calls `pg_notify` takes a lock that is global to the database cluster at
/// commit and holds it through the commit's WAL flush, so commands that notify inside their
/// transactions commit one at a time, every tenant behind every other. The pipeline's
/// commands instead notify after they committed, through [`EventStore::notify_relay`]: one
/// `select pg_notify(…)` at a time per process, and one more when commits arrived while it
/// ran, so every commit is followed by a notification sent after it (the relay also polls).
#[derive(Debug, Default)]
struct Notifier {
    /// A notification task is running.
    running: AtomicBool,
    /// A commit happened since the running task last notified.
    again: AtomicBool,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore").finish_non_exhaustive()
    }
}

/// A unique-violation's SQLSTATE.
const UNIQUE_VIOLATION: &str = "23505";

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION))
}

impl EventStore {
    /// A store over `pool` that reads older event versions through the domain's upcasters.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            upcasters: Arc::new(oms_domain::upcasters::all()),
            notifier: Arc::new(Notifier::default()),
            keyring: Arc::new(Keyring::new(MasterKey::development())),
        }
    }

    /// The store with `master` as the key that wraps the personal data keys (the
    /// development key otherwise, which protects nothing: `oms serve` refuses to start
    /// without `OMS_DATA_KEY` outside `--demo`).
    pub fn with_master_key(mut self, master: MasterKey) -> Self {
        self.keyring = Arc::new(Keyring::new(master));
        self
    }

    /// The keyring that encrypts personal fields on append and decrypts them on read.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Reads the data keys `events` need to be decrypted by [`EventStore::upcast`]: every
    /// reader calls it on the rows it read (see [`crate::personal`]).
    pub async fn prepare<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        events: &[StoredEvent],
    ) -> Result<(), sqlx::Error> {
        self.keyring.prepare(executor, events).await
    }

    /// Replaces the upcasters applied to stored events before they are deserialised.
    pub fn with_upcasters(mut self, upcasters: Vec<Box<dyn EventUpcaster>>) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The pool the store writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wakes the relay after a commit whose events were written without notifying inside the
    /// transaction ([`EventStore::write`] with `notify` false): see [`Notifier`]. Returns at
    /// once; the notification follows on the pool.
    pub fn notify_relay(&self) {
        let notifier = self.notifier.clone();
        notifier.again.store(true, Ordering::SeqCst);
        if notifier.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                while notifier.again.swap(false, Ordering::SeqCst) {
                    // The payload is empty: any login may LISTEN (analysts too) and must learn
                    // nothing of who wrote when.
                    if let Err(err) = sqlx::query("select pg_notify('oms_events', '')")
                        .execute(&pool)
                        .await
                    {
                        tracing::debug!(error = %err, "could not wake the relay; it polls");
                    }
                }
                notifier.running.store(false, Ordering::SeqCst);
                // A commit that came after the last swap but found the task still running left
                // its flag for this task: take the task back, unless a new one started.
                if !notifier.again.load(Ordering::SeqCst)
                    || notifier.running.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            }
        });
    }

    /// One aggregate's events in sequence order (reads only that aggregate's rows, through the
    /// primary key of the tenant's partition).
    pub async fn load_stream(
        &self,
        tenant: Uuid,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let events =
            Self::load_stream_with(&self.pool, tenant, aggregate_type, aggregate_id).await?;
        self.prepare(&self.pool, &events).await?;
        Ok(events)
    }

    /// [`EventStore::load_stream`] through any executor (a pool, a connection, a transaction).
    pub async fn load_stream_with<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        tenant: Uuid,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as::<_, StoredEvent>(select_events!(
            "where tenant_id = $1 and aggregate_type = $2 and aggregate_id = $3
                 order by sequence"
        ))
        .bind(tenant)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(executor)
        .await
    }

    /// One aggregate's events from `sequence` on (inclusive), in sequence order: what a
    /// command whose aggregate is cached at version `sequence` reads (the cached newest event,
    /// to check it is still there, and whatever came after it).
    pub async fn load_stream_from<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        tenant: Uuid,
        aggregate_type: &str,
        aggregate_id: Uuid,
        sequence: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as::<_, StoredEvent>(select_events!(
            "where tenant_id = $1 and aggregate_type = $2 and aggregate_id = $3
                   and sequence >= $4
                 order by sequence"
        ))
        .bind(tenant)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_all(executor)
        .await
    }

    /// Whether an aggregate has any event, through any executor.
    pub async fn stream_exists_with<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        tenant: Uuid,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(
            "select exists (select 1 from events
                             where tenant_id = $1 and aggregate_type = $2
                               and aggregate_id = $3 and sequence = 1)",
        )
        .bind(tenant)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_one(executor)
        .await
    }

    /// Turns a stored row into cqrs-es's serialised form, with its personal fields
    /// decrypted (null once erased; see [`EventStore::prepare`]) and the upcasters applied.
    pub fn upcast(&self, event: &StoredEvent) -> SerializedEvent {
        self.into_upcast(event.clone())
    }

    /// [`EventStore::upcast`] of an event read only to be applied: its payload and metadata
    /// are moved, not copied (a rebuild upcasts every event of a tenant once).
    pub fn into_upcast(&self, event: StoredEvent) -> SerializedEvent {
        let mut payload = event.payload;
        if is_personal(&event.aggregate_type) {
            self.keyring.open_payload(
                event.tenant_id,
                &event.event_type,
                event.aggregate_id,
                &mut payload,
            );
        }
        let mut serialized = SerializedEvent::new(
            event.aggregate_id.to_string(),
            usize::try_from(event.sequence).unwrap_or_default(),
            event.aggregate_type,
            event.event_type,
            event.event_version,
            payload,
            event.metadata,
        );
        for upcaster in self.upcasters.iter() {
            if upcaster.can_upcast(&serialized.event_type, &serialized.event_version) {
                serialized = upcaster.upcast(serialized);
            }
        }
        serialized
    }

    /// `event` in its type's current version, as it is published to integrators: the row
    /// itself when no upcaster applies (no copy), otherwise a copy whose type, version and
    /// payload are upcast, the payload in the form the current version writes
    /// ([`oms_domain::upcasters::as_written_now`]) — its identity, time and hash (which
    /// covers the stored form) stay.
    pub fn upcast_stored<'a>(&self, event: &'a StoredEvent) -> std::borrow::Cow<'a, StoredEvent> {
        if !self
            .upcasters
            .iter()
            .any(|u| u.can_upcast(&event.event_type, &event.event_version))
        {
            return std::borrow::Cow::Borrowed(event);
        }
        let upcast = self.upcast(event);
        std::borrow::Cow::Owned(StoredEvent {
            payload: oms_domain::upcasters::as_written_now(&event.aggregate_type, upcast.payload),
            event_type: upcast.event_type,
            event_version: upcast.event_version,
            ..event.clone()
        })
    }

    /// Rebuilds an aggregate by applying its stored events (upcast first) to its default.
    pub fn fold<A: Aggregate>(&self, events: &[StoredEvent]) -> Result<A, FoldError> {
        let mut aggregate = A::default();
        self.fold_into(&mut aggregate, events)?;
        Ok(aggregate)
    }

    /// Applies stored events (upcast first), each exactly once, to an aggregate that already
    /// holds the events before them: how a cached state is brought up to date.
    pub fn fold_into<A: Aggregate>(
        &self,
        aggregate: &mut A,
        events: &[StoredEvent],
    ) -> Result<(), FoldError> {
        for event in events {
            let serialized = self.upcast(event);
            let payload: A::Event =
                serde_json::from_value(serialized.payload).map_err(|err| FoldError {
                    position: event.position,
                    message: err.to_string(),
                })?;
            aggregate.apply(payload);
        }
        Ok(())
    }

    /// The tenant's head.
    pub async fn head(&self, tenant: Uuid) -> Result<Option<Head>, sqlx::Error> {
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("select position, hash from tenant_heads where tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(position, hash)| Head { position, hash }))
    }

    /// Appends in a transaction of its own.
    pub async fn append(
        &self,
        tenant: Uuid,
        events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        let mut tx = self.pool.begin().await?;
        let appended = self.append_in(&mut tx, tenant, events).await?;
        tx.commit().await?;
        Ok(appended)
    }

    /// Appends inside the caller's transaction: claims and releases the events' unique keys,
    /// then takes the tenant's head row, and inserts the events with their positions and
    /// hashes. The caller commits (or rolls back, which gives everything back, positions
    /// included).
    pub async fn append_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        let reserved = self.reserve(tx, tenant, events).await?;
        self.write(tx, tenant, reserved, None, true)
            .await
            .map(|(appended, _)| appended)
    }

    /// The first half of an append, one round trip in the common case: claims the events'
    /// unique keys and then takes the tenant's head row (from here to commit the tenant's
    /// other appends wait), and gives the events their positions, time and hashes. Nothing of
    /// the events is written yet: [`EventStore::write`] does that, so that the caller can
    /// render the response (which names the position) in between and record it in the same
    /// statement as the events.
    pub async fn reserve(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        mut events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        if events.is_empty() {
            let head = sqlx::query_scalar("select position from tenant_heads where tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or(AppendError::UnknownTenant)?;
            return Ok(Appended {
                events: Vec::new(),
                position: head,
            });
        }
        // Personal fields are encrypted (and an erasure destroys its key) before anything is
        // hashed: the chain covers what is stored.
        self.keyring.seal_events(tx, tenant, &mut events).await?;
        // Claims only, each key once (a create's order number, an invoice's number): they go
        // into the head row's statement. Anything else (a release, a key named twice) is
        // applied change by change first, in the order the events give.
        let mut claims: Vec<(&'static str, &str, Uuid)> = Vec::new();
        let mut simple = events.iter().all(NewEvent::only_claims);
        for event in &events {
            for (scope, key) in event.claims() {
                if claims.iter().any(|(s, k, _)| *s == scope && *k == key) {
                    simple = false;
                } else {
                    claims.push((scope, key, event.aggregate_id));
                }
            }
        }
        if !simple {
            claims.clear();
            for event in &events {
                for change in &event.unique_keys {
                    apply_unique_key(tx, tenant, event.aggregate_id, change).await?;
                }
            }
        }

        move_lots(tx, tenant, &events).await?;

        // The head row, taken last: from here to commit the tenant's other appends wait. The
        // claims run first (the head's condition reads them), so a claim that waits for
        // another transaction's claim does so before this one holds the head.
        let count = i64::try_from(events.len()).expect("a command writes few events");
        let head: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "with claimed as (
                 insert into unique_keys (tenant_id, scope, key, aggregate_id)
                 select $1, c.scope, c.key, c.aggregate_id
                   from unnest($3::text[], $4::text[], $5::uuid[]) as c(scope, key, aggregate_id)
                 on conflict (tenant_id, scope, key) do update
                    set aggregate_id = excluded.aggregate_id
                  where unique_keys.aggregate_id = excluded.aggregate_id
                 returning 1
             )
             update tenant_heads set position = position + $2
              where tenant_id = $1 and (select count(*) from claimed) = cardinality($3::text[])
          returning position, hash",
        )
        .bind(tenant)
        .bind(count)
        .bind(claims.iter().map(|(s, _, _)| *s).collect::<Vec<_>>())
        .bind(claims.iter().map(|(_, k, _)| *k).collect::<Vec<_>>())
        .bind(claims.iter().map(|(_, _, a)| *a).collect::<Vec<_>>())
        .fetch_optional(&mut **tx)
        .await?;
        let (last, mut previous) = match head {
            Some(head) => head,
            None => return Err(self.refused_claim(tx, tenant, &claims).await?),
        };

        let recorded_at = hash::to_stored_precision(Utc::now());
        let first = last - count + 1;
        let mut stored = Vec::with_capacity(events.len());
        for (offset, event) in events.into_iter().enumerate() {
            let mut row = StoredEvent {
                tenant_id: tenant,
                position: first + i64::try_from(offset).expect("few events"),
                aggregate_type: event.aggregate_type,
                aggregate_id: event.aggregate_id,
                sequence: event.sequence,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at,
                hash: Vec::new(),
            };
            row.hash = hash::chain_hash(&previous, &row).to_vec();
            previous = row.hash.clone();
            stored.push(row);
        }
        Ok(Appended {
            events: stored,
            position: last,
        })
    }

    /// Why the head statement of [`EventStore::reserve`] returned no row: a key held by another
    /// aggregate, else no head row (the tenant does not exist).
    async fn refused_claim(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        claims: &[(&'static str, &str, Uuid)],
    ) -> Result<AppendError, sqlx::Error> {
        for (scope, key, aggregate_id) in claims {
            let holder: Option<Uuid> = sqlx::query_scalar(
                "select aggregate_id from unique_keys
                  where tenant_id = $1 and scope = $2 and key = $3",
            )
            .bind(tenant)
            .bind(*scope)
            .bind(*key)
            .fetch_optional(&mut **tx)
            .await?;
            if holder.is_some_and(|holder| holder != *aggregate_id) {
                return Ok(AppendError::Duplicate {
                    scope: (*scope).to_string(),
                    key: (*key).to_string(),
                });
            }
        }
        Ok(AppendError::UnknownTenant)
    }

    /// The second half of an append, one round trip: inserts the events reserved by
    /// [`EventStore::reserve`], moves the head's hash, and — when a record is given — records
    /// the command's response under its idempotency key. With `notify` the statement also
    /// wakes the relay at commit; without, the caller calls [`EventStore::notify_relay`] after
    /// its commit. Returns whether the record was written (false: a live record of the same
    /// key exists, written by a concurrent request that committed first; the caller rolls
    /// back).
    pub async fn write(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        reserved: Appended,
        record: Option<(&IdempotencyKey, &Reply)>,
        notify: bool,
    ) -> Result<(Appended, bool), AppendError> {
        let stored = &reserved.events;
        let Some(last) = stored.last() else {
            let recorded = match record {
                Some((key, reply)) => idempotency::record(tx, tenant, key, reply).await?,
                None => true,
            };
            return Ok((reserved, recorded));
        };
        let previous = last.hash.clone();
        let count = i64::try_from(stored.len()).expect("a command writes few events");
        // One round trip: insert every event, record the response, move the head's hash, and
        // notify the relay.
        let result = sqlx::query(
            "with inserted as (
                 insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence,
                                     event_type, event_version, payload, metadata, recorded_at, hash)
                 select $1, * from unnest($2::bigint[], $3::text[], $4::uuid[], $5::bigint[],
                                          $6::text[], $7::text[], $8::jsonb[], $9::jsonb[],
                                          $10::timestamptz[], $11::bytea[])
                 returning 1
             ),
             recorded as (
                 -- an expired record is replaced; a live one is left alone (no row returned)
                 insert into idempotency_keys (tenant_id, key, request_hash, status, response, headers)
                 select $1, $14, $15, $16, $17::json, $18 where $14::text is not null
                 on conflict (tenant_id, key) do update
                    set request_hash = excluded.request_hash, status = excluded.status,
                        response = excluded.response, headers = excluded.headers,
                        created_at = now()
                  where idempotency_keys.created_at <= now() - make_interval(hours => $19)
                 returning 1
             )
             update tenant_heads set hash = $12
              where tenant_id = $1 and (select count(*) from inserted) = $13
             -- wake the relay when the transaction commits; the payload is empty because any
             -- login may LISTEN (analysts too) and must learn nothing of who wrote when
             returning (select count(*) from recorded),
                       case when $20 then pg_notify('oms_events', '')::text end",
        )
        .bind(tenant)
        .bind(stored.iter().map(|e| e.position).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.aggregate_type.clone()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.aggregate_id).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.sequence).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.event_version.clone()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
        .bind(stored.iter().map(|e| e.hash.clone()).collect::<Vec<_>>())
        .bind(previous)
        .bind(count)
        .bind(record.map(|(key, _)| key.stored()))
        .bind(record.map(|(key, _)| key.request_hash.clone()))
        .bind(record.map(|(_, reply)| i16::try_from(reply.status).unwrap_or(200)))
        .bind(record.map(|(_, reply)| reply.body.text()))
        .bind(record.map(|(_, reply)| serde_json::to_value(&reply.headers).unwrap_or_default()))
        .bind(idempotency::RETENTION_HOURS)
        .bind(notify)
        .fetch_all(&mut **tx)
        .await;
        match result {
            Ok(rows) if rows.len() == 1 => {
                let recorded: i64 = rows[0].try_get(0)?;
                Ok((reserved, record.is_none() || recorded == 1))
            }
            Ok(_) => Err(AppendError::Database(sqlx::Error::Protocol(
                "the event insert and the head update disagree".into(),
            ))),
            // The only unique key this statement can hit for a correct head is the primary key
            // (tenant, aggregate, sequence): another writer took the sequence. (The record's
            // key is resolved by its `on conflict`.)
            Err(err) if is_unique_violation(&err) => Err(AppendError::Conflict),
            Err(err) => Err(err.into()),
        }
    }

    /// Takes the next number of a series (`PO-000001`, …) inside the caller's transaction,
    /// skipping numbers that were given explicitly. The series row stays locked until commit;
    /// a rollback gives the number back.
    pub async fn next_number(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: Uuid,
        series: &str,
        scope: &str,
        format: impl Fn(u64) -> String,
    ) -> Result<String, sqlx::Error> {
        loop {
            // One round trip per number tried: take the next value and ask whether the number
            // it gives (built by `format`, passed in as the candidate for the value the row
            // will hold) is taken. The candidate is computed before the value is known, so the
            // statement returns the value too, and a candidate that does not belong to it is
            // checked again on its own.
            let (n, taken): (i64, bool) = sqlx::query_as(
                "with next as (
                     insert into number_series (tenant_id, series, last_value) values ($1, $2, 1)
                     on conflict (tenant_id, series)
                     do update set last_value = number_series.last_value + 1
                     returning last_value
                 )
                 select last_value,
                        exists (select 1 from unique_keys
                                 where tenant_id = $1 and scope = $3
                                   and key = $4 || lpad(last_value::text,
                                                        greatest(6, length(last_value::text)), '0'))
                   from next",
            )
            .bind(tenant)
            .bind(series)
            .bind(scope)
            .bind(format(0).trim_end_matches('0').to_string())
            .fetch_one(&mut **tx)
            .await?;
            let candidate = format(u64::try_from(n).unwrap_or_default());
            let expected = format!("{}{n:06}", format(0).trim_end_matches('0'));
            let taken = if candidate == expected {
                taken
            } else {
                // A format the statement cannot build: ask about the number itself.
                sqlx::query_scalar(
                    "select exists (select 1 from unique_keys
                                     where tenant_id = $1 and scope = $2 and key = $3)",
                )
                .bind(tenant)
                .bind(scope)
                .bind(&candidate)
                .fetch_one(&mut **tx)
                .await?
            };
            if !taken {
                return Ok(candidate);
            }
        }
    }

    /// The tenant's events with `after < position < before`, in position order, at most
    /// `limit`, through any executor: the projector's gap fills and catch-ups, a rebuild's
    /// batches and the audit feed all read through this one statement.
    pub async fn events_between<'e>(
        executor: impl sqlx::PgExecutor<'e>,
        tenant: Uuid,
        after: i64,
        before: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as::<_, StoredEvent>(select_events!(
            "where tenant_id = $1 and position > $2 and position < $3
             order by position limit $4"
        ))
        .bind(tenant)
        .bind(after)
        .bind(before)
        .bind(limit)
        .fetch_all(executor)
        .await
    }

    /// A relay's next batch of the tenant, in one statement: its relay checkpoint locked until
    /// `conn`'s transaction ends, and at most `limit` events after it, in position order. None
    /// when there are none after it, or when another relay holds the checkpoint. Positions
    /// are gapless, so the checkpoint is the first event's position less one.
    ///
    /// The transaction's commit does not wait for the WAL flush (`synchronous_commit` off,
    /// for it alone: a pool may be shared with appends, which must stay synchronous). The
    /// checkpoint only says how far publishing has got, and publishing again is harmless:
    /// JetStream drops a repeated Nats-Msg-Id within its duplicate window, and the projectors
    /// skip positions they have. A crash may lose the last few advances; the events after the
    /// older checkpoint are then published again and dropped as duplicates.
    pub async fn lock_relay_batch(
        conn: &mut PgConnection,
        tenant: Uuid,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        sqlx::query_as::<_, StoredEvent>(select_events!(
            "where tenant_id = $1
               and position > (select position from relay_checkpoints,
                                      set_config('synchronous_commit', 'off', true)
                                where tenant_id = $1 for update of relay_checkpoints skip locked)
             order by position limit $2"
        ))
        .bind(tenant)
        .bind(limit)
        .fetch_all(conn)
        .await
    }

    /// The hash stored at a tenant's position, if there is an event there.
    pub async fn hash_at(
        &self,
        tenant: Uuid,
        position: i64,
    ) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("select hash from events where tenant_id = $1 and position = $2")
            .bind(tenant)
            .bind(position)
            .fetch_optional(&self.pool)
            .await
    }

    /// Every head: `(tenant, position, hash)` of each tenant, in tenant order.
    pub async fn heads(&self) -> Result<Vec<(Uuid, Head)>, sqlx::Error> {
        let rows: Vec<(Uuid, i64, Vec<u8>)> =
            sqlx::query_as("select tenant_id, position, hash from tenant_heads order by tenant_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, position, hash)| (tenant, Head { position, hash }))
            .collect())
    }

    /// Recomputes a tenant's hash chain from the first event, streaming, and names the first
    /// position where it breaks.
    pub async fn verify_chain(&self, tenant: Uuid) -> Result<ChainReport, sqlx::Error> {
        use futures::TryStreamExt;
        let head = self.head(tenant).await?.unwrap_or(Head {
            position: 0,
            hash: GENESIS.to_vec(),
        });
        let mut rows = sqlx::query_as::<_, StoredEvent>(select_events!(
            "where tenant_id = $1 order by position"
        ))
        .bind(tenant)
        .fetch(&self.pool);
        let mut previous = GENESIS.to_vec();
        let mut expected_position = 1;
        let mut checked = 0;
        let mut first_bad = None;
        while let Some(event) = rows.try_next().await? {
            checked += 1;
            if first_bad.is_none() {
                let recomputed = hash::chain_hash(&previous, &event);
                if event.position != expected_position || recomputed.as_slice() != event.hash {
                    // A deleted row shows as the first position that is not the expected one.
                    first_bad = Some(expected_position.min(event.position));
                }
            }
            previous = event.hash;
            expected_position += 1;
        }
        if first_bad.is_none() && (head.position != expected_position - 1 || head.hash != previous)
        {
            // Events missing at the end (or a head that does not match them).
            first_bad = Some(expected_position);
        }
        Ok(ChainReport {
            ok: first_bad.is_none(),
            events_checked: checked,
            head_position: head.position,
            head_hash: hex::encode(&head.hash),
            first_bad_position: first_bad,
        })
    }
}

/// Moves the stock of the lots `events` receive or ship, refusing a shipment of more of a lot
/// than is left ([`AppendError::OverShipped`]). Received lots are added; shipped lots' rows
/// are locked in lot order (two shipments of the same lots wait for each other instead of
/// deadlocking) and taken from only where enough is left, so of two shipments racing for the
/// last of a lot the second, once the first commits, finds too little and is refused.
async fn move_lots(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Uuid,
    events: &[NewEvent],
) -> Result<(), AppendError> {
    let mut received: BTreeMap<Uuid, Decimal> = BTreeMap::new();
    let mut shipped: BTreeMap<Uuid, Decimal> = BTreeMap::new();
    for movement in events.iter().flat_map(|event| &event.lot_movements) {
        if !movement.received.is_zero() {
            *received.entry(movement.lot_id).or_default() += movement.received;
        }
        if !movement.shipped.is_zero() {
            *shipped.entry(movement.lot_id).or_default() += movement.shipped;
        }
    }
    if !received.is_empty() {
        sqlx::query(
            "insert into lot_stock (tenant_id, lot_id, received, shipped)
             select $1, r.lot_id, r.received, 0
               from unnest($2::uuid[], $3::numeric[]) as r(lot_id, received)
              order by r.lot_id
             on conflict (tenant_id, lot_id) do update
                set received = lot_stock.received + excluded.received",
        )
        .bind(tenant)
        .bind(received.keys().copied().collect::<Vec<_>>())
        .bind(received.values().copied().collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if shipped.is_empty() {
        return Ok(());
    }
    let lots: Vec<Uuid> = shipped.keys().copied().collect();
    sqlx::query(
        "select 1 from lot_stock where tenant_id = $1 and lot_id = any($2)
          order by lot_id for update",
    )
    .bind(tenant)
    .bind(&lots)
    .execute(&mut **tx)
    .await?;
    let moved: Vec<Uuid> = sqlx::query_scalar(
        "update lot_stock s set shipped = s.shipped + w.shipped
           from unnest($2::uuid[], $3::numeric[]) as w(lot_id, shipped)
          where s.tenant_id = $1 and s.lot_id = w.lot_id and s.shipped + w.shipped <= s.received
         returning s.lot_id",
    )
    .bind(tenant)
    .bind(&lots)
    .bind(shipped.values().copied().collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let Some((&lot_id, &taken)) = shipped.iter().find(|(lot, _)| !moved.contains(lot)) else {
        return Ok(());
    };
    let left: Option<Decimal> = sqlx::query_scalar(
        "select received - shipped from lot_stock where tenant_id = $1 and lot_id = $2",
    )
    .bind(tenant)
    .bind(lot_id)
    .fetch_optional(&mut **tx)
    .await?;
    Err(AppendError::OverShipped {
        lot_id,
        left: left.unwrap_or_default(),
        taken,
    })
}

async fn apply_unique_key(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Uuid,
    aggregate_id: Uuid,
    change: &UniqueKeyChange,
) -> Result<(), AppendError> {
    match change {
        UniqueKeyChange::Claim { scope, key } => {
            // Inserts the key, or finds it already held by this aggregate; a key held by
            // another aggregate returns no row. A concurrent claim waits for the first to
            // commit and then sees it.
            let held: Option<Uuid> = sqlx::query_scalar(
                "insert into unique_keys (tenant_id, scope, key, aggregate_id)
                 values ($1, $2, $3, $4)
                 on conflict (tenant_id, scope, key) do update set aggregate_id = excluded.aggregate_id
                  where unique_keys.aggregate_id = excluded.aggregate_id
                 returning aggregate_id",
            )
            .bind(tenant)
            .bind(*scope)
            .bind(key)
            .bind(aggregate_id)
            .fetch_optional(&mut **tx)
            .await?;
            if held.is_none() {
                return Err(AppendError::Duplicate {
                    scope: (*scope).to_string(),
                    key: key.clone(),
                });
            }
        }
        UniqueKeyChange::Release { scope, key } => {
            sqlx::query(
                "delete from unique_keys
                  where tenant_id = $1 and scope = $2 and key = $3 and aggregate_id = $4",
            )
            .bind(tenant)
            .bind(*scope)
            .bind(key)
            .bind(aggregate_id)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}
