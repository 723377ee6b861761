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

/// The projector's counters, labelled by projection, served at `/metrics` when this process
/// also serves the API.
#[derive(Debug, Clone, Default)]
pub struct ProjectorMetrics {
    /// Events applied from NATS.
    pub applied: Family<ProjectionLabel, Counter>,
    /// Deliveries at or below the checkpoint (acked, skipped).
    pub duplicates: Family<ProjectionLabel, Counter>,
    /// Events applied from the event store to fill a gap or catch up.
    pub gap_filled: Family<ProjectionLabel, Counter>,
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
        let event = match serde_json::from_slice::<StoredEvent>(&message.payload) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(error = %err, subject = %message.subject, "projector: not an event; terminating it");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        match apply_event(&self.store, projection, &event).await {
            Ok(outcome) => {
                let label = ProjectorMetrics::label(projection);
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
                tracing::warn!(projection = projection.name(), position = event.position, error = %err, "projector: apply failed; redelivering later");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
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
    /// sweep.
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
                    let applied =
                        catch_up(&self.store, projection, tenant, self.config.catch_up_batch)
                            .await?;
                    self.metrics
                        .gap_filled
                        .get_or_create(&ProjectorMetrics::label(projection))
                        .inc_by(applied);
                    seen.remove(&key);
                } else {
                    seen.insert(key, checkpoint);
                }
            }
        }
        Ok(())
    }
}
