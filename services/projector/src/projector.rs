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
//! since the last sweep (a lost tail message, NATS down). Each (projection, tenant) is caught
//! up on its own: one that fails is logged, counted and tried again at the next sweep, and the
//! sweep goes on with the others.
//!
//! # Events delivered by reference
//!
//! An event larger than a NATS message is published by the relay without its payload: the
//! message carries the header `Oms-Payload: omitted` and the envelope with `payload` null
//! (and perhaps `metadata` null too). Such a message — marked by the header, or by a null
//! payload, which no domain event serialises to — is never applied as it is: the event at its
//! (tenant, position) is read from the event store and that is applied, exactly as a gap is
//! filled. A message naming a position the store does not have is terminated (nothing is
//! applied from it); one whose hash disagrees with the store's is logged, and the store's
//! event applied.

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use oms_projections::{checkpoints, Projection};
use oms_store::{EventStore, StoredEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::apply::{apply_event, catch_up, Outcome, ProjectorError};

/// The header (and its value) of a message sent by reference: the store's wire contract.
pub use oms_store::{PAYLOAD_HEADER, PAYLOAD_OMITTED};

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

/// The `projection` label of the projector's counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProjectionLabel {
    /// The projection's name.
    pub projection: &'static str,
}

/// The projector's counters, labelled by projection, served at `/metrics` by whichever role
/// endpoint the process serves.
#[derive(Debug, Clone, Default)]
pub struct ProjectorMetrics {
    /// Events applied from NATS.
    pub applied: Family<ProjectionLabel, Counter>,
    /// Deliveries at or below the checkpoint (acked, skipped).
    pub duplicates: Family<ProjectionLabel, Counter>,
    /// Events applied from the event store to fill a gap or catch up.
    pub gap_filled: Family<ProjectionLabel, Counter>,
    /// Events read from the event store because their message left the payload out.
    pub by_reference: Family<ProjectionLabel, Counter>,
    /// Deliveries and catch-ups that failed (redelivered or retried), and messages refused
    /// as not an event: a projection that keeps failing shows here before its lag alerts.
    pub failures: Family<ProjectionLabel, Counter>,
}

impl ProjectorMetrics {
    /// Adds the counters to `registry` (prometheus-client appends `_total`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "oms_projector_applied",
            "Events applied to the read models from NATS",
            self.applied.clone(),
        );
        registry.register(
            "oms_projector_duplicates",
            "Deliveries at or below the checkpoint, acknowledged and skipped",
            self.duplicates.clone(),
        );
        registry.register(
            "oms_projector_gap_filled",
            "Events applied straight from the event store to fill a gap or catch up",
            self.gap_filled.clone(),
        );
        registry.register(
            "oms_projector_by_reference",
            "Events read from the event store because their message left the payload out",
            self.by_reference.clone(),
        );
        registry.register(
            "oms_projector_failures",
            "Deliveries or catch-ups that failed and will be retried, and messages refused",
            self.failures.clone(),
        );
    }

    fn label(projection: Projection) -> ProjectionLabel {
        ProjectionLabel {
            projection: projection.name(),
        }
    }
}

/// The projector.
#[derive(Clone)]
pub struct Projector {
    store: EventStore,
    jetstream: jetstream::Context,
    config: ProjectorConfig,
    metrics: ProjectorMetrics,
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
        Self {
            store,
            jetstream,
            config,
            metrics: ProjectorMetrics::default(),
        }
    }

    /// Its counters.
    pub fn metrics(&self) -> ProjectorMetrics {
        self.metrics.clone()
    }

    /// Runs every projection's consumer and the sweeper until `shutdown` is cancelled; an
    /// event being applied is committed and acknowledged before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
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

    async fn consume(&self, projection: Projection, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
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
                        _ = shutdown.cancelled() => return Ok(()),
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
                _ = shutdown.cancelled() => {}
            }
        }
    }

    async fn handle(&self, projection: Projection, message: &jetstream::Message) {
        let label = ProjectorMetrics::label(projection);
        let delivered = match serde_json::from_slice::<StoredEvent>(&message.payload) {
            Ok(event) => event,
            Err(err) => {
                self.metrics.failures.get_or_create(&label).inc();
                tracing::error!(error = %err, subject = %message.subject, "projector: not an event; terminating it");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let event = if payload_omitted(message, &delivered) {
            match self.referenced(&delivered).await {
                Ok(Some(event)) => {
                    self.metrics.by_reference.get_or_create(&label).inc();
                    event
                }
                Ok(None) => {
                    self.metrics.failures.get_or_create(&label).inc();
                    tracing::error!(
                        projection = projection.name(),
                        tenant = %delivered.tenant_id,
                        position = delivered.position,
                        subject = %message.subject,
                        "projector: a message by reference names an event the store does not have; terminating it"
                    );
                    let _ = message.ack_with(AckKind::Term).await;
                    return;
                }
                Err(err) => {
                    self.metrics.failures.get_or_create(&label).inc();
                    tracing::warn!(projection = projection.name(), position = delivered.position, error = %err, "projector: cannot read an event sent by reference; redelivering later");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    return;
                }
            }
        } else {
            delivered
        };
        match apply_event(&self.store, projection, &event).await {
            Ok(outcome) => {
                match outcome {
                    Outcome::Applied { gap_filled } => {
                        self.metrics.applied.get_or_create(&label).inc();
                        self.metrics
                            .gap_filled
                            .get_or_create(&label)
                            .inc_by(gap_filled);
                    }
                    Outcome::Duplicate => {
                        self.metrics.duplicates.get_or_create(&label).inc();
                    }
                }
                if let Err(err) = message.ack().await {
                    // Committed but not acked: the redelivery will be a duplicate.
                    tracing::warn!(error = %err, "projector: ack failed");
                }
            }
            Err(err) => {
                self.metrics.failures.get_or_create(&label).inc();
                tracing::warn!(projection = projection.name(), position = event.position, error = %err, "projector: apply failed; redelivering later");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }

    /// The stored event a message by reference names (its tenant and position), if the store
    /// has it. The store's event is what is applied; a hash that disagrees with it (a forged
    /// or corrupted message) is logged.
    async fn referenced(
        &self,
        delivered: &StoredEvent,
    ) -> Result<Option<StoredEvent>, ProjectorError> {
        let (tenant, position) = (delivered.tenant_id, delivered.position);
        let stored = EventStore::events_between(
            self.store.pool(),
            tenant,
            position.saturating_sub(1),
            position.saturating_add(1),
            1,
        )
        .await?
        .into_iter()
        .find(|event| event.position == position);
        if let Some(event) = &stored {
            if event.hash != delivered.hash || event.aggregate_id != delivered.aggregate_id {
                tracing::warn!(
                    tenant = %tenant,
                    position,
                    "projector: a message by reference disagrees with the event store; applying the store's event"
                );
            }
        }
        Ok(stored)
    }

    async fn sweep(&self, shutdown: CancellationToken) {
        let mut seen: HashMap<(Projection, Uuid), i64> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.config.sweep_interval) => {}
                _ = shutdown.cancelled() => return,
            }
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(err) = self.sweep_once(&mut seen).await {
                tracing::warn!(error = %err, "projector: sweep failed");
            }
        }
    }

    /// Catches up every (projection, tenant) that is behind and did not move since the last
    /// sweep, each on its own.
    async fn sweep_once(
        &self,
        seen: &mut HashMap<(Projection, Uuid), i64>,
    ) -> Result<(), ProjectorError> {
        // The heads (the store's) against the checkpoints (the read models'): every
        // (projection, tenant) whose checkpoint is behind its head.
        let applied_to: HashMap<(Uuid, Projection), i64> = checkpoints::all(self.store.pool())
            .await?
            .into_iter()
            .map(|(tenant, projection, position)| ((tenant, projection), position))
            .collect();
        for (tenant, head) in self.store.heads().await? {
            for projection in Projection::ALL {
                let checkpoint = applied_to.get(&(tenant, projection)).copied().unwrap_or(0);
                if head.position <= checkpoint {
                    continue;
                }
                let key = (projection, tenant);
                if seen.get(&key) == Some(&checkpoint) {
                    // One (projection, tenant) that fails does not stop the sweep: it stays
                    // in `seen` and is tried again at the next one.
                    let label = ProjectorMetrics::label(projection);
                    match catch_up(&self.store, projection, tenant, self.config.catch_up_batch)
                        .await
                    {
                        Ok(applied) => {
                            self.metrics
                                .gap_filled
                                .get_or_create(&label)
                                .inc_by(applied);
                            seen.remove(&key);
                        }
                        Err(err) => {
                            self.metrics.failures.get_or_create(&label).inc();
                            tracing::warn!(projection = projection.name(), tenant = %tenant, position = checkpoint + 1, error = %err, "projector: catch-up failed; retrying at the next sweep");
                        }
                    }
                } else {
                    seen.insert(key, checkpoint);
                }
            }
        }
        Ok(())
    }
}

/// Whether `message` carries its event by reference: marked so by the relay, or with a null
/// payload (no domain event serialises to null, so such a payload is never applied as is).
fn payload_omitted(message: &jetstream::Message, delivered: &StoredEvent) -> bool {
    delivered.payload.is_null()
        || message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(PAYLOAD_HEADER))
            .is_some_and(|value| value.as_str() == PAYLOAD_OMITTED)
}
