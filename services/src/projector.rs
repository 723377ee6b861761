//! The projector: applies events from NATS JetStream to the read models.
//!
//! One durable pull consumer per projection. For each event, in one Postgres transaction: lock
//! the (projection, tenant) checkpoint; skip (and ack) a position at or below it; on a gap,
//! read the missing events from the event store and apply them first; apply the event; move
//! the checkpoint; commit; then ack. A crash between commit and ack redelivers an event whose
//! position is now at the checkpoint: skipped, no second effect. Several projector processes
//! may share the consumers: the checkpoint row serialises them per tenant, and whoever gets a
//! later event first fills the gap from the store.
//!
//! NATS gives speed; the event store gives correctness: a sweeper also catches up, straight
//! from the store, any (projection, tenant) that is behind its tenant's head and has not moved
//! since the last sweep (a lost tail message, NATS down).

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use oms_projections::{EventRecord, Projection, ProjectionError};
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

use crate::relay::EventMessage;
use crate::store::{EventStore, StoredEvent};

/// How the projector consumes.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// The JetStream stream the relay publishes to.
    pub stream: String,
    /// Durable consumer names are `<prefix>-<projection>`.
    pub consumer_prefix: String,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// How often the sweeper compares checkpoints with heads.
    pub sweep_interval: Duration,
    /// Events per transaction when catching up from the store.
    pub catch_up_batch: i64,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            stream: "OMS_EVENTS".into(),
            consumer_prefix: "oms-projector".into(),
            ack_wait: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(2),
            catch_up_batch: 500,
        }
    }
}

/// The projector's counters, per projection.
#[derive(Debug, Default)]
pub struct ProjectorMetrics {
    /// Events applied from NATS.
    pub applied: AtomicU64,
    /// Deliveries at or below the checkpoint (acked, skipped).
    pub duplicates: AtomicU64,
    /// Events applied from the event store to fill a gap or catch up.
    pub gap_filled: AtomicU64,
}

/// What happened to one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, after filling a gap of this many events from the store.
    Applied {
        /// Events read from the store first.
        gap_filled: u64,
    },
    /// At or below the checkpoint: nothing done.
    Duplicate,
}

/// Why an event was not applied (it stays unacked and is redelivered).
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The read model refused the event.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// A message that is not an event.
    #[error("not an event message: {0}")]
    Message(String),
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
}

/// The event as the projections see it, upcast.
pub fn record(store: &EventStore, event: &StoredEvent) -> EventRecord {
    let upcast = store.upcast(event);
    EventRecord {
        tenant_id: event.tenant_id,
        position: event.position,
        aggregate_type: event.aggregate_type.clone(),
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: upcast.event_type,
        event_version: upcast.event_version,
        payload: upcast.payload,
        metadata: event.metadata.clone(),
        recorded_at: event.recorded_at,
    }
}

/// Locks and returns the (projection, tenant) checkpoint, creating it at 0, and scopes the
/// transaction to the tenant for row-level security.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "insert into read.checkpoints (tenant_id, projection) values ($1, $2)
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(projection.name())
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(
        "select position from read.checkpoints
          where tenant_id = $1 and projection = $2 for update",
    )
    .bind(tenant)
    .bind(projection.name())
    .fetch_one(&mut *conn)
    .await
}

pub(crate) async fn move_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
    tenant: Uuid,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update read.checkpoints set position = $3, updated_at = now()
          where tenant_id = $1 and projection = $2",
    )
    .bind(tenant)
    .bind(projection.name())
    .bind(position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn events_between(
    conn: &mut PgConnection,
    tenant: Uuid,
    after: i64,
    before: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as::<_, StoredEvent>(
        "select tenant_id, position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at, hash
           from events where tenant_id = $1 and position > $2 and position < $3
          order by position limit $4",
    )
    .bind(tenant)
    .bind(after)
    .bind(before)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// Applies one delivered event for `projection` in one transaction, with the checkpoint and
/// the gap fill.
pub async fn apply_event(
    store: &EventStore,
    projection: Projection,
    event: &StoredEvent,
) -> Result<Outcome, ProjectorError> {
    let mut tx = store.pool().begin().await?;
    let checkpoint = lock_checkpoint(&mut tx, projection, event.tenant_id).await?;
    if event.position <= checkpoint {
        tx.commit().await?;
        return Ok(Outcome::Duplicate);
    }
    let mut gap_filled = 0;
    if event.position > checkpoint + 1 {
        let missing = events_between(
            &mut tx,
            event.tenant_id,
            checkpoint,
            event.position,
            i64::MAX,
        )
        .await?;
        for missed in &missing {
            projection.apply(&mut tx, &record(store, missed)).await?;
        }
        gap_filled = u64::try_from(missing.len()).unwrap_or_default();
    }
    projection.apply(&mut tx, &record(store, event)).await?;
    move_checkpoint(&mut tx, projection, event.tenant_id, event.position).await?;
    tx.commit().await?;
    Ok(Outcome::Applied { gap_filled })
}

/// Applies, straight from the event store, everything of `tenant` after the projection's
/// checkpoint, in batches of one transaction each. Returns how many events were applied.
pub async fn catch_up(
    store: &EventStore,
    projection: Projection,
    tenant: Uuid,
    batch: i64,
) -> Result<u64, ProjectorError> {
    let mut applied = 0;
    loop {
        let mut tx = store.pool().begin().await?;
        let checkpoint = lock_checkpoint(&mut tx, projection, tenant).await?;
        let events = events_between(&mut tx, tenant, checkpoint, i64::MAX, batch).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.commit().await?;
            return Ok(applied);
        };
        for event in &events {
            projection.apply(&mut tx, &record(store, event)).await?;
        }
        move_checkpoint(&mut tx, projection, tenant, last).await?;
        tx.commit().await?;
        applied += u64::try_from(events.len()).unwrap_or_default();
    }
}

/// Catches every projection of every tenant up from the event store. Returns how many events
/// were applied.
pub async fn catch_up_all(store: &EventStore, batch: i64) -> Result<u64, ProjectorError> {
    let tenants: Vec<Uuid> =
        sqlx::query_scalar("select tenant_id from tenant_heads order by tenant_id")
            .fetch_all(store.pool())
            .await?;
    let mut applied = 0;
    for tenant in tenants {
        for projection in Projection::ALL {
            applied += catch_up(store, projection, tenant, batch).await?;
        }
    }
    Ok(applied)
}

/// The projector.
#[derive(Clone)]
pub struct Projector {
    store: EventStore,
    jetstream: jetstream::Context,
    config: ProjectorConfig,
    metrics: Arc<HashMap<Projection, ProjectorMetrics>>,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Projector {
    /// A projector reading `jetstream` and writing through `store`'s pool.
    pub fn new(store: EventStore, jetstream: jetstream::Context, config: ProjectorConfig) -> Self {
        let metrics = Projection::ALL
            .into_iter()
            .map(|p| (p, ProjectorMetrics::default()))
            .collect();
        Self {
            store,
            jetstream,
            config,
            metrics: Arc::new(metrics),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> Arc<HashMap<Projection, ProjectorMetrics>> {
        self.metrics.clone()
    }

    fn counters(&self, projection: Projection) -> &ProjectorMetrics {
        &self.metrics[&projection]
    }

    /// Runs every projection's consumer and the sweeper until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), ProjectorError> {
        let mut tasks = Vec::new();
        for projection in Projection::ALL {
            let this = self.clone();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                this.consume(projection, shutdown).await
            }));
        }
        let this = self.clone();
        tasks.push(tokio::spawn(async move { this.sweep(shutdown).await }));
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }

    /// The durable consumer of `projection`, created if missing.
    pub async fn consumer(
        &self,
        projection: Projection,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, ProjectorError> {
        let name = format!("{}-{}", self.config.consumer_prefix, projection.name());
        let stream = self
            .jetstream
            .get_stream(&self.config.stream)
            .await
            .map_err(|err| ProjectorError::Nats(err.to_string()))?;
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: "oms.events.>".into(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: self.config.ack_wait,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| ProjectorError::Nats(err.to_string()))
    }

    async fn consume(&self, projection: Projection, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let result: Result<(), ProjectorError> = async {
                let consumer = self.consumer(projection).await?;
                let mut messages = consumer
                    .messages()
                    .await
                    .map_err(|err| ProjectorError::Nats(err.to_string()))?;
                loop {
                    let next = tokio::select! {
                        next = messages.next() => next,
                        _ = shutdown.changed() => return Ok(()),
                    };
                    let Some(message) = next else { return Ok(()) };
                    let message = message.map_err(|err| ProjectorError::Nats(err.to_string()))?;
                    self.handle(projection, &message).await;
                }
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(projection = projection.name(), error = %err, "projector: consumer interrupted; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn handle(&self, projection: Projection, message: &jetstream::Message) {
        let event = match serde_json::from_slice::<EventMessage>(&message.payload) {
            Ok(event) => event.into_stored(),
            Err(err) => {
                tracing::error!(error = %err, subject = %message.subject, "projector: not an event; terminating it");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        match apply_event(&self.store, projection, &event).await {
            Ok(outcome) => {
                let counters = self.counters(projection);
                match outcome {
                    Outcome::Applied { gap_filled } => {
                        counters.applied.fetch_add(1, Ordering::Relaxed);
                        counters.gap_filled.fetch_add(gap_filled, Ordering::Relaxed);
                    }
                    Outcome::Duplicate => {
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Err(err) = message.ack().await {
                    // Committed but not acked: the redelivery will be a duplicate.
                    tracing::warn!(error = %err, "projector: ack failed");
                }
            }
            Err(err) => {
                tracing::warn!(projection = projection.name(), position = event.position, error = %err, "projector: apply failed; redelivering later");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }

    async fn sweep(&self, mut shutdown: watch::Receiver<bool>) {
        let mut seen: HashMap<(Projection, Uuid), i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.sweep_interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(err) = self.sweep_once(&mut seen).await {
                tracing::warn!(error = %err, "projector: sweep failed");
            }
        }
    }

    /// Catches up every (projection, tenant) that is behind and did not move since the last
    /// sweep.
    async fn sweep_once(
        &self,
        seen: &mut HashMap<(Projection, Uuid), i64>,
    ) -> Result<(), ProjectorError> {
        let rows: Vec<(Uuid, i64, String, i64)> = sqlx::query_as(
            "select h.tenant_id, h.position, p.name, coalesce(c.position, 0)
               from tenant_heads h
              cross join unnest($1::text[]) as p(name)
               left join read.checkpoints c on c.tenant_id = h.tenant_id and c.projection = p.name
              where h.position > coalesce(c.position, 0)",
        )
        .bind(Projection::ALL.iter().map(|p| p.name()).collect::<Vec<_>>())
        .fetch_all(self.store.pool())
        .await?;
        for (tenant, _, name, checkpoint) in rows {
            let Some(projection) = Projection::from_name(&name) else {
                continue;
            };
            let key = (projection, tenant);
            if seen.get(&key) == Some(&checkpoint) {
                let applied =
                    catch_up(&self.store, projection, tenant, self.config.catch_up_batch).await?;
                self.counters(projection)
                    .gap_filled
                    .fetch_add(applied, Ordering::Relaxed);
                seen.remove(&key);
            } else {
                seen.insert(key, checkpoint);
            }
        }
        Ok(())
    }
}

/// The lowest checkpoint of `tenant` over every projection (0 if one has none yet): the
/// position up to which every read model of the tenant is complete.
pub async fn read_models_position(pool: &PgPool, tenant: Uuid) -> Result<i64, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("select projection, position from read.checkpoints where tenant_id = $1")
            .bind(tenant)
            .fetch_all(pool)
            .await?;
    Ok(Projection::ALL
        .iter()
        .map(|p| {
            rows.iter()
                .find(|(name, _)| name == p.name())
                .map(|(_, position)| *position)
                .unwrap_or(0)
        })
        .min()
        .unwrap_or(0))
}
