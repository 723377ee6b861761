//! The event store: one `events` table, hash-partitioned by tenant, with gapless per-tenant
//! positions, a per-tenant hash chain, and the small per-tenant tables (unique keys, number
//! series, idempotency records) written in the same transaction as the events.
//!
//! An append takes the tenant's head row last, just before commit:
//!
//! ```text
//! begin
//!   [number_series row]            order/invoice number for a create or invoice command
//!   unique_keys insert/delete      order numbers, invoice numbers, reference codes
//!   update tenant_heads ... returning position, hash      ← serialises the tenant's appends
//!   insert into events ...; update tenant_heads set hash; pg_notify  (one statement)
//!   [idempotency_keys insert]
//! commit
//! ```
//!
//! so positions are gapless and in commit order, and a reader's rule is "next = checkpoint + 1".

use chrono::Utc;
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::Aggregate;
use oms_domain::UniqueKeyChange;
use sqlx::{PgPool, Postgres, Transaction};
use std::sync::Arc;
use uuid::Uuid;

use crate::event::{AppendError, Appended, ChainReport, FoldError, Head, NewEvent, StoredEvent};
use crate::hash::{self, GENESIS};

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
        }
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

    /// One aggregate's events in sequence order (reads only that aggregate's rows, through the
    /// primary key of the tenant's partition).
    pub async fn load_stream(
        &self,
        tenant: Uuid,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        Self::load_stream_with(&self.pool, tenant, aggregate_type, aggregate_id).await
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

    /// Turns a stored row into cqrs-es's serialised form, with the upcasters applied.
    pub fn upcast(&self, event: &StoredEvent) -> SerializedEvent {
        let mut serialized = SerializedEvent::new(
            event.aggregate_id.to_string(),
            usize::try_from(event.sequence).unwrap_or_default(),
            event.aggregate_type.clone(),
            event.event_type.clone(),
            event.event_version.clone(),
            event.payload.clone(),
            event.metadata.clone(),
        );
        for upcaster in self.upcasters.iter() {
            if upcaster.can_upcast(&serialized.event_type, &serialized.event_version) {
                serialized = upcaster.upcast(serialized);
            }
        }
        serialized
    }

    /// Rebuilds an aggregate by applying its stored events (upcast first) to its default.
    pub fn fold<A: Aggregate>(&self, events: &[StoredEvent]) -> Result<A, FoldError> {
        let mut aggregate = A::default();
        for event in events {
            let serialized = self.upcast(event);
            let payload: A::Event =
                serde_json::from_value(serialized.payload).map_err(|err| FoldError {
                    position: event.position,
                    message: err.to_string(),
                })?;
            aggregate.apply(payload);
        }
        Ok(aggregate)
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
        for event in &events {
            for change in &event.unique_keys {
                apply_unique_key(tx, tenant, event.aggregate_id, change).await?;
            }
        }

        // The head row, taken last: from here to commit the tenant's other appends wait.
        let count = i64::try_from(events.len()).expect("a command writes few events");
        let (last, mut previous): (i64, Vec<u8>) = sqlx::query_as(
            "update tenant_heads set position = position + $2
              where tenant_id = $1
          returning position, hash",
        )
        .bind(tenant)
        .bind(count)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(AppendError::UnknownTenant)?;

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

        // One round trip: insert every event, move the head's hash, and notify the relay.
        let result = sqlx::query(
            "with inserted as (
                 insert into events (tenant_id, position, aggregate_type, aggregate_id, sequence,
                                     event_type, event_version, payload, metadata, recorded_at, hash)
                 select $1, * from unnest($2::bigint[], $3::text[], $4::uuid[], $5::bigint[],
                                          $6::text[], $7::text[], $8::jsonb[], $9::jsonb[],
                                          $10::timestamptz[], $11::bytea[])
                 returning 1
             )
             update tenant_heads set hash = $12
              where tenant_id = $1 and (select count(*) from inserted) = $13
             -- wake the relay when the transaction commits; the payload is empty because any
             -- login may LISTEN (analysts too) and must learn nothing of who wrote when
             returning pg_notify('oms_events', '')",
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
        .execute(&mut **tx)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                return Err(AppendError::Database(sqlx::Error::Protocol(
                    "the event insert and the head update disagree".into(),
                )))
            }
            // The only unique key this statement can hit for a correct head is the primary key
            // (tenant, aggregate, sequence): another writer took the sequence.
            Err(err) if is_unique_violation(&err) => return Err(AppendError::Conflict),
            Err(err) => return Err(err.into()),
        }
        Ok(Appended {
            events: stored,
            position: last,
        })
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
            let n: i64 = sqlx::query_scalar(
                "insert into number_series (tenant_id, series, last_value) values ($1, $2, 1)
                 on conflict (tenant_id, series)
                 do update set last_value = number_series.last_value + 1
                 returning last_value",
            )
            .bind(tenant)
            .bind(series)
            .fetch_one(&mut **tx)
            .await?;
            let candidate = format(u64::try_from(n).unwrap_or_default());
            let taken: bool = sqlx::query_scalar(
                "select exists (select 1 from unique_keys
                                 where tenant_id = $1 and scope = $2 and key = $3)",
            )
            .bind(tenant)
            .bind(scope)
            .bind(&candidate)
            .fetch_one(&mut **tx)
            .await?;
            if !taken {
                return Ok(candidate);
            }
        }
    }

    /// The tenant's events with `after < position < before`, in position order, at most
    /// `limit`, through any executor: the relay's batches, the projector's gap fills and
    /// catch-ups, a rebuild's batches and the audit feed all read through this one statement.
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
