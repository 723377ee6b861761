//! The relay: carries each tenant's events, in position order, from the event store to a
//! NATS JetStream stream.
//!
//! For each tenant with unpublished events it locks the tenant's checkpoint row
//! (`for update skip locked`: several relays may run, each tenant is relayed by one at a
//! time), reads the events after the checkpoint, publishes them on
//! `oms.events.<tenant>.<aggregate_type>.<aggregate_id>` with `Nats-Msg-Id =
//! <tenant>:<position>`, waits for every ack, and only then moves the checkpoint. A crash
//! between the ack and the checkpoint republishes; JetStream drops the duplicate within the
//! stream's duplicate window (and the projectors skip positions they have applied anyway).
//! A timed-out ack does not mean the message was not stored, so it is retried with the same
//! id.
//!
//! It wakes on `LISTEN oms_events` (the append transaction notifies) and polls as well,
//! because notifications are lost while the listener is disconnected. While NATS is down
//! commands still succeed — the events are safe in Postgres — and the relay catches up when
//! it returns.

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use oms_store::{EventStore, StoredEvent};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stream::{ensure_stream, message_id, subject};

/// The channel the append transaction notifies on.
pub const NOTIFY_CHANNEL: &str = "oms_events";

/// How the relay and its stream are set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The JetStream stream (`OMS_STREAM`, default `OMS_EVENTS`).
    pub stream: String,
    /// How long JetStream remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// How long the stream keeps messages (zero: for ever).
    pub max_age: Duration,
    /// Events read and published per round and tenant.
    pub batch_size: i64,
    /// How often to look for work without a notification.
    pub poll_interval: Duration,
    /// How long to wait for one publish ack before retrying it.
    pub ack_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: "OMS_EVENTS".into(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// The relay's counters, served at `/metrics` when this process also serves the API.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    /// Events published and acknowledged.
    pub published: Counter,
    /// Acks that said "duplicate" (a republish after a crash).
    pub duplicates: Counter,
    /// Publish attempts retried after a failure or time-out.
    pub retries: Counter,
}

impl RelayMetrics {
    /// Adds the counters to `registry` (prometheus-client appends `_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "oms_relay_published",
            "Events published to JetStream and acknowledged",
            self.published.clone(),
        );
        registry.register(
            "oms_relay_duplicates",
            "Acks that reported a duplicate (a republish after a crash)",
            self.duplicates.clone(),
        );
        registry.register(
            "oms_relay_retries",
            "Publishes retried after a failure or a timed-out ack",
            self.retries.clone(),
        );
    }
}

/// Why a round of relaying stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// NATS did not take a message.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The stream could not be created or read.
    #[error("stream: {0}")]
    Stream(String),
}

/// The relay.
#[derive(Clone)]
pub struct Relay {
    store: EventStore,
    jetstream: jetstream::Context,
    config: RelayConfig,
    metrics: RelayMetrics,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from the store to `jetstream`.
    pub fn new(store: EventStore, jetstream: jetstream::Context, config: RelayConfig) -> Self {
        Self {
            store,
            jetstream,
            config,
            metrics: RelayMetrics::default(),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> RelayMetrics {
        self.metrics.clone()
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// Runs until `shutdown` is cancelled: creates the stream, then relays every tenant with
    /// work whenever notified, and at least every poll interval. A round in progress finishes
    /// (its acknowledged events are checkpointed) before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RelayError> {
        loop {
            match ensure_stream(&self.jetstream, &self.config).await {
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "relay: the stream is not available yet");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
        let mut listener = self.listen().await;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if let Err(err) = self.relay_all().await {
                tracing::warn!(error = %err, "relay round failed; retrying");
            }
            let wait = tokio::time::sleep(self.config.poll_interval);
            tokio::select! {
                _ = wait => {}
                _ = shutdown.cancelled() => {}
                notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                } => {
                    if notified.is_err() {
                        // Reconnected or failed; polling covers what was missed.
                        listener = self.listen().await;
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        match PgListener::connect_with(self.pool()).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => Some(listener),
                Err(err) => {
                    tracing::warn!(error = %err, "relay: LISTEN failed; polling only");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "relay: cannot listen; polling only");
                None
            }
        }
    }

    /// One round: every tenant whose head is past its checkpoint, until each is caught up or
    /// held by another relay. Returns how many events were published.
    pub async fn relay_all(&self) -> Result<u64, RelayError> {
        sqlx::query(
            "insert into relay_checkpoints (tenant_id)
             select tenant_id from tenant_heads on conflict do nothing",
        )
        .execute(self.pool())
        .await?;
        let behind: Vec<Uuid> = sqlx::query_scalar(
            "select h.tenant_id from tenant_heads h
               join relay_checkpoints c on c.tenant_id = h.tenant_id
              where h.position > c.position",
        )
        .fetch_all(self.pool())
        .await?;
        let mut published = 0;
        for tenant in behind {
            loop {
                let sent = self.relay_tenant(tenant).await?;
                published += sent;
                if sent < u64::try_from(self.config.batch_size).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        Ok(published)
    }

    /// Publishes one batch of `tenant`'s events after its checkpoint and moves the checkpoint
    /// past those acknowledged. Returns 0 when another relay holds the tenant.
    pub async fn relay_tenant(&self, tenant: Uuid) -> Result<u64, RelayError> {
        let mut tx = self.pool().begin().await?;
        let checkpoint: Option<i64> = sqlx::query_scalar(
            "select position from relay_checkpoints where tenant_id = $1 for update skip locked",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(checkpoint) = checkpoint else {
            return Ok(0);
        };
        let events = EventStore::events_between(
            &mut *tx,
            tenant,
            checkpoint,
            i64::MAX,
            self.config.batch_size,
        )
        .await?;
        if events.is_empty() {
            return Ok(0);
        }

        // Publish the batch, then collect the acks in order; the checkpoint moves past the
        // longest acknowledged prefix.
        let mut pending = Vec::with_capacity(events.len());
        let mut failure = None;
        for event in &events {
            match self.publish(event).await {
                Ok(ack) => pending.push((event, ack)),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        let mut acknowledged = checkpoint;
        for (event, ack) in pending {
            match self.confirm(event, ack).await {
                Ok(()) => acknowledged = event.position,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        if acknowledged > checkpoint {
            sqlx::query(
                "update relay_checkpoints set position = $2, updated_at = now() where tenant_id = $1",
            )
            .bind(tenant)
            .bind(acknowledged)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let sent = u64::try_from(acknowledged - checkpoint).unwrap_or_default();
        match failure {
            Some(err) => Err(err),
            None => Ok(sent),
        }
    }

    async fn publish(
        &self,
        event: &StoredEvent,
    ) -> Result<jetstream::context::PublishAckFuture, RelayError> {
        let body = serde_json::to_vec(event).map_err(|err| RelayError::Publish(err.to_string()))?;
        let message = PublishMessage::build()
            .payload(Bytes::from(body))
            .message_id(message_id(event.tenant_id, event.position))
            .header("Oms-Tenant", event.tenant_id.to_string().as_str())
            .header("Oms-Position", event.position.to_string().as_str())
            .header("Oms-Sequence", event.sequence.to_string().as_str())
            .header("Oms-Event-Type", event.event_type.as_str())
            .header("Oms-Aggregate-Type", event.aggregate_type.as_str());
        self.jetstream
            .send_publish(subject(event), message)
            .await
            .map_err(|err| RelayError::Publish(err.to_string()))
    }

    /// Waits for an ack; on a time-out or failure republishes with the same id (JetStream
    /// drops it if the first one was stored) a few times.
    async fn confirm(
        &self,
        event: &StoredEvent,
        first: jetstream::context::PublishAckFuture,
    ) -> Result<(), RelayError> {
        let mut ack = first;
        for attempt in 0..3 {
            match tokio::time::timeout(
                self.config.ack_timeout,
                std::future::IntoFuture::into_future(ack),
            )
            .await
            {
                Ok(Ok(reply)) => {
                    self.metrics.published.inc();
                    if reply.duplicate {
                        self.metrics.duplicates.inc();
                    }
                    return Ok(());
                }
                Ok(Err(err)) if attempt == 2 => return Err(RelayError::Publish(err.to_string())),
                Err(_) if attempt == 2 => {
                    return Err(RelayError::Publish("timed out waiting for the ack".into()))
                }
                _ => {
                    self.metrics.retries.inc();
                    ack = self.publish(event).await?;
                }
            }
        }
        Err(RelayError::Publish("no ack".into()))
    }
}
