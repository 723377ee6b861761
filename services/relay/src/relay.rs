//! The relay: carries each tenant's events, in position order, from the event store to a
//! NATS JetStream stream.
//!
//! For each tenant with unpublished events it locks the tenant's checkpoint row
//! (`for update skip locked`: several relays may run, each tenant is relayed by one at a
//! time), reads the events after the checkpoint, publishes them on
//! `oms.events.<tenant>.<aggregate_type>.<aggregate_id>` with `Nats-Msg-Id =
//! <tenant>:<position>`, waits for every ack, and only then moves the checkpoint. Each is
//! published in its type's current version — an event stored in an older one is upcast
//! first and marked with `Oms-Stored-Version` — as the AsyncAPI document promises integrators
//! (docs/integration.md). A crash
//! between the ack and the checkpoint republishes; JetStream drops the duplicate within the
//! stream's duplicate window (and the projectors skip positions they have applied anyway).
//! A timed-out ack does not mean the message was not stored, so it is retried with the same
//! id.
//!
//! It wakes on `LISTEN oms_events` (the append transaction notifies) and polls as well,
//! because notifications are lost while the listener is disconnected. While NATS is down
//! commands still succeed — the events are safe in Postgres — and the relay catches up when
//! it returns.
//!
//! # One tenant never holds back another
//!
//! A round visits every tenant that is behind. When a tenant's event cannot be published
//! (NATS refuses it, its ack never comes), the tenant's acknowledged prefix is checkpointed,
//! the tenant is marked failing — the position, the reason, since when — logged at warn,
//! counted (`oms_relay_failures_total{tenant}`, `oms_relay_failing_tenants`), and the round
//! goes on with the next tenant. The failing tenant is retried after a delay that doubles
//! from [`RelayConfig::retry_min`] to [`RelayConfig::retry_max`] (so it is logged once per
//! retry, not once per poll), and its mark is cleared when it catches up. [`Relay::failing`]
//! lists the marks for health checks. Its events stay in order: a tenant is never relayed
//! past an event that was not acknowledged.
//!
//! Failures that are no tenant's own stop the round instead and mark no one: NATS not
//! connected (nothing could be published), Postgres unreachable (nothing could be read or
//! checkpointed). So an outage is not followed by every tenant's backoff; and when NATS
//! reconnects, every failing tenant is retried at once.
//!
//! # Events larger than a NATS message
//!
//! NATS refuses a message over the server's `max_payload` (1 MiB by default), headers and
//! body together. The command pipeline refuses events whose payload is over
//! [`oms_store::MAX_EVENT_PAYLOAD_BYTES`] (half of NATS's default), but events stored before
//! that rule — or a server configured with a smaller limit — may not fit. Such an event is
//! published **by reference**: the same subject and `Nats-Msg-Id`, the same headers plus
//! `Oms-Payload: omitted`, and as its body the envelope with `payload` null (and `metadata`
//! too, if even that does not fit) — everything that identifies the event (tenant, position,
//! aggregate, sequence, type, time, hash) stays. The projector reads such an event from the
//! event store, as it reads every event: it applies the store's rows, never a message's body.
//! That keeps the stream's order and deduplication, needs no second store (object store,
//! chunks) and no reassembly, and costs nothing more than any other event. Other readers of
//! the stream see the event's identity and can fetch it the same way.
//!
//! The threshold is not a constant: a body is sent whole when it is at most the
//! `max_payload` the client negotiated with the server it is connected to (from the server's
//! `INFO`, read again on every reconnect; 1 MiB until the first), less
//! [`HEADER_HEADROOM`](crate::HEADER_HEADROOM) for the headers. A server configured with a
//! larger or smaller limit moves it with no change here.

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use oms_store::{EventStore, StoredEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stream::{
    body_limit, encode, ensure_stream, message_id, subject, AGGREGATE_TYPE_HEADER,
    EVENT_TYPE_HEADER, PAYLOAD_HEADER, PAYLOAD_OMITTED, POSITION_HEADER, SEQUENCE_HEADER,
    STORED_VERSION_HEADER, TENANT_HEADER,
};

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
    /// How long a tenant whose publish failed waits before its first retry; the wait doubles
    /// with each failure in a row, so a tenant that keeps failing is neither retried nor
    /// logged at every poll.
    pub retry_min: Duration,
    /// The longest wait between two retries of a failing tenant.
    pub retry_max: Duration,
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
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The `tenant` label of the relay's per-tenant counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabel {
    /// The tenant's id.
    pub tenant: String,
}

/// The relay's counters, served at `/metrics` by whichever role endpoint the process serves.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    /// Events published and acknowledged.
    pub published: Counter,
    /// Acks that said "duplicate" (a republish after a crash).
    pub duplicates: Counter,
    /// Publish attempts retried after a failure or time-out.
    pub retries: Counter,
    /// Events acknowledged that were published by reference (too large for a message).
    pub by_reference: Counter,
    /// Failed attempts to relay a tenant, by tenant: which tenant is stuck, and how often it
    /// was retried.
    pub failures: Family<TenantLabel, Counter>,
    /// Tenants whose relaying is failing now (an alert's condition: above 0 for long).
    pub failing: Gauge,
}

impl RelayMetrics {
    /// Adds the counters to `registry` (prometheus-client appends `_total` to counters).
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
        registry.register(
            "oms_relay_by_reference",
            "Events too large for a NATS message, published by reference (without their payload)",
            self.by_reference.clone(),
        );
        registry.register(
            "oms_relay_failures",
            "Failed attempts to relay a tenant's next event, per tenant",
            self.failures.clone(),
        );
        registry.register(
            "oms_relay_failing_tenants",
            "Tenants whose next event the relay cannot publish now",
            self.failing.clone(),
        );
    }
}

/// Why a round of relaying, or one tenant's part of it, stopped early.
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
    /// The NATS client is not connected; nothing can be published until it reconnects.
    #[error("NATS is not connected")]
    Disconnected,
}

impl RelayError {
    /// Whether the failure is no one tenant's own, so that it stops the round instead of
    /// marking the tenant: NATS not connected, or Postgres failing (unreachable, restarting,
    /// refusing statements). Only an event row that cannot be decoded is a tenant's own among
    /// database errors.
    pub fn is_systemic(&self) -> bool {
        match self {
            Self::Disconnected => true,
            Self::Database(err) => !matches!(
                err,
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)
            ),
            Self::Publish(_) | Self::Stream(_) => false,
        }
    }
}

/// A tenant whose next event the relay cannot publish, as health checks report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailingTenant {
    /// The tenant.
    pub tenant: Uuid,
    /// Its first event not published (the relay's checkpoint + 1).
    pub position: i64,
    /// Why the last attempt failed.
    pub reason: String,
    /// Since when the tenant fails at this position.
    pub since: DateTime<Utc>,
    /// Attempts that failed since then.
    pub attempts: u32,
    /// How long until the next attempt, in milliseconds.
    pub retry_in_ms: u64,
}

/// One failing tenant's state.
#[derive(Debug, Clone)]
struct Failure {
    position: i64,
    reason: String,
    since: DateTime<Utc>,
    attempts: u32,
    delay: Duration,
    retry_at: Instant,
}

/// What a relay and its clones know about failing tenants.
#[derive(Debug, Default)]
struct Failures {
    tenants: Mutex<HashMap<Uuid, Failure>>,
    /// Whether NATS was connected at the last round: on a reconnect every failing tenant is
    /// retried at once.
    connected: AtomicBool,
}

impl Failures {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Failure>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one tenant's relaying stopped: at `position`, its first event not acknowledged,
/// after `sent` events of this round were.
#[derive(Debug)]
struct Stopped {
    position: i64,
    sent: u64,
    error: RelayError,
}

impl Stopped {
    /// A database failure, where the position does not matter (it is systemic, or it is
    /// reported at the checkpoint the caller knows).
    fn database(error: sqlx::Error, position: i64) -> Self {
        Self {
            position,
            sent: 0,
            error: error.into(),
        }
    }
}

/// The relay.
#[derive(Clone)]
pub struct Relay {
    store: EventStore,
    jetstream: jetstream::Context,
    config: RelayConfig,
    metrics: RelayMetrics,
    failures: Arc<Failures>,
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
            failures: Arc::default(),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> RelayMetrics {
        self.metrics.clone()
    }

    /// The tenants this relay (or a clone of it) cannot publish for now, the longest failing
    /// first: a health detail, which does not make the process unready — the other tenants
    /// are relayed.
    pub fn failing(&self) -> Vec<FailingTenant> {
        let now = Instant::now();
        let mut failing: Vec<FailingTenant> = self
            .failures
            .lock()
            .iter()
            .map(|(tenant, failure)| FailingTenant {
                tenant: *tenant,
                position: failure.position,
                reason: failure.reason.clone(),
                since: failure.since,
                attempts: failure.attempts,
                retry_in_ms: u64::try_from(
                    failure.retry_at.saturating_duration_since(now).as_millis(),
                )
                .unwrap_or(u64::MAX),
            })
            .collect();
        failing.sort_by_key(|f| (f.since, f.tenant));
        failing
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
        // The last round failure logged, and when: the same failure is logged again only
        // after `retry_max`, not at every poll.
        let mut logged: Option<(String, Instant)> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match self.relay_all().await {
                Ok(_) => {
                    if logged.take().is_some() {
                        tracing::info!("relay: rounds succeed again");
                    }
                }
                Err(err) => {
                    let text = err.to_string();
                    let again = logged.as_ref().is_none_or(|(last, at)| {
                        *last != text || at.elapsed() >= self.config.retry_max
                    });
                    if again {
                        tracing::warn!(error = %err, "relay round failed; retrying");
                        logged = Some((text, Instant::now()));
                    }
                }
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

    /// One round: every tenant whose head is past its checkpoint, until each is caught up,
    /// held by another relay, or failing. A failing tenant is marked and retried in a later
    /// round once its backoff has passed; the others go on. Returns how many events were
    /// published; an error only for a failure that is no tenant's own
    /// ([`RelayError::is_systemic`]), which ends the round.
    pub async fn relay_all(&self) -> Result<u64, RelayError> {
        self.check_connected()?;
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
            if !self.due(tenant) {
                continue;
            }
            match self.relay_caught_up(tenant).await {
                Ok(sent) => {
                    published += sent;
                    self.recovered(tenant);
                }
                Err(stopped) => {
                    published += stopped.sent;
                    if stopped.error.is_systemic() {
                        return Err(stopped.error);
                    }
                    self.failed(tenant, stopped.position, &stopped.error);
                }
            }
        }
        Ok(published)
    }

    /// Publishes one batch of `tenant`'s events after its checkpoint and moves the checkpoint
    /// past those acknowledged. Returns 0 when another relay holds the tenant.
    pub async fn relay_tenant(&self, tenant: Uuid) -> Result<u64, RelayError> {
        self.relay_batch(tenant)
            .await
            .map_err(|stopped| stopped.error)
    }

    /// Batches of `tenant` until one is short (caught up, or held by another relay).
    async fn relay_caught_up(&self, tenant: Uuid) -> Result<u64, Stopped> {
        let full = u64::try_from(self.config.batch_size).unwrap_or(u64::MAX);
        let mut published = 0;
        loop {
            match self.relay_batch(tenant).await {
                Ok(sent) => {
                    published += sent;
                    if sent < full {
                        return Ok(published);
                    }
                }
                Err(mut stopped) => {
                    stopped.sent += published;
                    return Err(stopped);
                }
            }
        }
    }

    async fn relay_batch(&self, tenant: Uuid) -> Result<u64, Stopped> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|err| Stopped::database(err, 0))?;
        let read = EventStore::lock_relay_batch(&mut tx, tenant, self.config.batch_size).await;
        let events = match read {
            Ok(events) => events,
            Err(err) => {
                drop(tx);
                // Where the tenant stands, for the failure's report.
                let checkpoint: Option<i64> = sqlx::query_scalar(
                    "select position from relay_checkpoints where tenant_id = $1",
                )
                .bind(tenant)
                .fetch_optional(self.pool())
                .await
                .ok()
                .flatten();
                return Err(Stopped::database(err, checkpoint.unwrap_or(0) + 1));
            }
        };
        let Some(checkpoint) = events.first().map(|event| event.position - 1) else {
            return Ok(0);
        };

        // Publish the batch, then collect the acks in order; the checkpoint moves past the
        // longest acknowledged prefix. The body limit is read once per batch: the server's
        // max_payload changes only on a reconnect.
        let limit = body_limit(self.jetstream.client().max_payload());
        let mut pending = Vec::with_capacity(events.len());
        let mut failure = None;
        for stored in &events {
            // Integrators are promised each type's current version: an event stored in an
            // older one is published upcast (its hash still covers the stored form).
            let event = self.store.upcast_stored(stored);
            let outgoing = match encode(&event, limit) {
                Ok(encoded) => Outgoing {
                    upcast: (event.event_version != stored.event_version).then(|| Upcast {
                        stored_version: stored.event_version.clone(),
                        event_type: event.event_type.clone(),
                    }),
                    event: stored,
                    body: Bytes::from(encoded.body),
                    omitted: encoded.omitted,
                },
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            };
            match self.publish(&outgoing).await {
                Ok(ack) => pending.push((outgoing, ack)),
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        let mut acknowledged = checkpoint;
        for (outgoing, ack) in pending {
            match self.confirm(&outgoing, ack).await {
                Ok(()) => {
                    acknowledged = outgoing.event.position;
                    if outgoing.omitted {
                        self.metrics.by_reference.inc();
                        tracing::warn!(
                            tenant = %tenant,
                            position = acknowledged,
                            limit,
                            "relay: an event larger than a NATS message was published by reference (without its payload)"
                        );
                    }
                }
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
            .await
            .map_err(|err| Stopped::database(err, checkpoint + 1))?;
        }
        tx.commit()
            .await
            .map_err(|err| Stopped::database(err, checkpoint + 1))?;
        let sent = u64::try_from(acknowledged - checkpoint).unwrap_or_default();
        match failure {
            Some(error) => Err(Stopped {
                position: acknowledged + 1,
                sent,
                error,
            }),
            None => Ok(sent),
        }
    }

    /// Nothing can be published while NATS is disconnected: the round ends without marking
    /// any tenant. On the first round after a reconnect, every failing tenant is due at once.
    fn check_connected(&self) -> Result<(), RelayError> {
        let connected = self.jetstream.client().connection_state() == State::Connected;
        let was = self.failures.connected.swap(connected, Ordering::Relaxed);
        if connected && !was {
            let now = Instant::now();
            for failure in self.failures.lock().values_mut() {
                failure.retry_at = now;
            }
        }
        if connected {
            Ok(())
        } else {
            Err(RelayError::Disconnected)
        }
    }

    /// Whether `tenant` may be tried now (it is not failing, or its backoff has passed).
    fn due(&self, tenant: Uuid) -> bool {
        let now = Instant::now();
        !matches!(self.failures.lock().get(&tenant), Some(failure) if failure.retry_at > now)
    }

    /// Marks `tenant` failing at `position`, or backs it off further if it already failed
    /// there; counts and logs the attempt.
    fn failed(&self, tenant: Uuid, position: i64, error: &RelayError) {
        let reason = error.to_string();
        let now = Instant::now();
        let mut tenants = self.failures.lock();
        let failure = tenants
            .entry(tenant)
            .and_modify(|failure| {
                if failure.position == position {
                    failure.attempts += 1;
                    failure.delay = (failure.delay * 2).min(self.config.retry_max);
                } else {
                    // Progress was made: a new failure at a later position.
                    failure.position = position;
                    failure.since = Utc::now();
                    failure.attempts = 1;
                    failure.delay = self.config.retry_min;
                }
            })
            .or_insert_with(|| Failure {
                position,
                reason: String::new(),
                since: Utc::now(),
                attempts: 1,
                delay: self.config.retry_min,
                retry_at: now,
            });
        failure.reason.clone_from(&reason);
        failure.retry_at = now + failure.delay;
        let (attempts, delay) = (failure.attempts, failure.delay);
        self.metrics
            .failures
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .inc();
        self.metrics
            .failing
            .set(i64::try_from(tenants.len()).unwrap_or(i64::MAX));
        drop(tenants);
        tracing::warn!(
            tenant = %tenant,
            position,
            attempts,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason = %reason,
            "relay: cannot publish the tenant's next event; the other tenants go on, this one is retried later"
        );
    }

    /// Clears `tenant`'s failure, if it had one.
    fn recovered(&self, tenant: Uuid) {
        let mut tenants = self.failures.lock();
        let Some(failure) = tenants.remove(&tenant) else {
            return;
        };
        self.metrics
            .failing
            .set(i64::try_from(tenants.len()).unwrap_or(i64::MAX));
        drop(tenants);
        tracing::info!(
            tenant = %tenant,
            position = failure.position,
            attempts = failure.attempts,
            since = %failure.since,
            "relay: the tenant's events are published again"
        );
    }

    async fn publish(
        &self,
        outgoing: &Outgoing<'_>,
    ) -> Result<jetstream::context::PublishAckFuture, RelayError> {
        let event = outgoing.event;
        // An upcast event is published under its current type (an upcaster may rename it).
        let event_type = outgoing
            .upcast
            .as_ref()
            .map_or(event.event_type.as_str(), |u| u.event_type.as_str());
        let mut message = PublishMessage::build()
            .payload(outgoing.body.clone())
            .message_id(message_id(event.tenant_id, event.position))
            .header(TENANT_HEADER, event.tenant_id.to_string().as_str())
            .header(POSITION_HEADER, event.position.to_string().as_str())
            .header(SEQUENCE_HEADER, event.sequence.to_string().as_str())
            .header(EVENT_TYPE_HEADER, event_type)
            .header(AGGREGATE_TYPE_HEADER, event.aggregate_type.as_str());
        if let Some(upcast) = &outgoing.upcast {
            message = message.header(STORED_VERSION_HEADER, upcast.stored_version.as_str());
        }
        if outgoing.omitted {
            message = message.header(PAYLOAD_HEADER, PAYLOAD_OMITTED);
        }
        self.jetstream
            .send_publish(subject(event), message)
            .await
            .map_err(|err| RelayError::Publish(err.to_string()))
    }

    /// Waits for an ack; on a time-out or failure republishes with the same id (JetStream
    /// drops it if the first one was stored) a few times.
    async fn confirm(
        &self,
        outgoing: &Outgoing<'_>,
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
                    ack = self.publish(outgoing).await?;
                }
            }
        }
        Err(RelayError::Publish("no ack".into()))
    }
}

/// An event ready to publish: its body (whole, or by reference) encoded once, so a republish
/// sends the same bytes.
#[derive(Debug)]
struct Outgoing<'a> {
    /// The event as stored (its identity is the same upcast or not).
    event: &'a StoredEvent,
    /// Set when it was published upcast to a later version.
    upcast: Option<Upcast>,
    body: Bytes,
    omitted: bool,
}

/// How an event published upcast differs from its stored row, for its headers.
#[derive(Debug)]
struct Upcast {
    /// The version it was stored (and hashed) in.
    stored_version: String,
    /// Its type in the current version.
    event_type: String,
}
