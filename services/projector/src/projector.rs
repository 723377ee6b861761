//! The projector: applies events to the read models as NATS JetStream announces them.
//!
//! One durable pull consumer (`<prefix>-read-models`) feeds every projection. A message is
//! only a notice: "the tenant's event at this position is in the store". Messages are taken
//! as many as are ready at once (up to `fetch_batch`) and grouped by tenant; for each tenant's
//! group, in one Postgres transaction for every projection: lock the (projection, tenant)
//! checkpoints (one statement); positions at or below a projection's checkpoint are
//! duplicates for it (nothing done); read the store's events after the lowest checkpoint up to
//! the highest position the group names (one indexed range read: the events, and any gap
//! between them), apply each projection's part as one batch (`Projection::apply_batch`: each
//! aggregate loaded once, folded in memory, written once), move the checkpoints (one
//! statement); commit (without waiting for the WAL flush:
//! `checkpoints::Durability::Deferred` says why nothing is lost); then ack each message. A
//! transaction's fixed cost and the read of the events are paid once per tenant group, not
//! once per projection. If one projection cannot apply, the group is applied again one
//! projection at a time, so the others keep moving, and the messages are redelivered. Tenants'
//! groups are applied side by side (`apply_concurrency`). A crash between commit and ack
//! redelivers an event whose position is now at the checkpoints: skipped, no second effect.
//! Several projector processes may share the consumer: the checkpoint rows serialise them per
//! tenant, and whoever gets a later event first fills the gap from the store.
//!
//! # NATS is not trusted
//!
//! Whoever can publish on the stream could send anything, so nothing of a message's body is
//! applied: the tenant, the position and everything applied come from the event store's rows.
//! A message is refused — terminated (`AckKind::Term`), logged at error with its tenant,
//! position and subject, counted in `oms_projector_refused_total`, the checkpoint unmoved, so
//! the tenant's later events keep applying — when it is not an event, when its body names
//! another tenant than its subject, or when the store has no event at its (tenant, position)
//! (beyond the tenant's head, a tenant that does not exist). A message whose hash, aggregate,
//! type, time, payload, metadata or subject disagrees with the store's row is logged at error
//! as forged or corrupted and counted in `oms_projector_forged_total`; the store's row is what
//! was applied. A forged message that takes the real one's `Nats-Msg-Id` first (so JetStream
//! drops the real one as a duplicate) therefore applies the real event — or, sent before the
//! event exists, is refused, and the sweeper applies the real one from the store.
//!
//! NATS gives speed; the event store gives correctness: a sweeper also catches up, straight
//! from the store, any (projection, tenant) that is behind its tenant's head and has not moved
//! since the last sweep (a lost or refused tail message, NATS down). Each (projection, tenant)
//! is caught up on its own: one that fails is logged, counted and tried again at the next
//! sweep, and the sweep goes on with the others.
//!
//! # Events delivered by reference
//!
//! An event larger than a NATS message is published by the relay without its payload: the
//! message carries the header `Oms-Payload: omitted` and the envelope with `payload` null
//! (and perhaps `metadata` null too). Since every event is read from the store anyway, such a
//! message takes the same path as any other; only the comparison leaves out what the message
//! left out, and it is counted in `oms_projector_by_reference_total`.

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

use crate::apply::{
    apply_deliveries, apply_deliveries_to, catch_up, Delivery, Outcome, ProjectorError,
};

/// The durable consumer's name is `<prefix>-read-models`: one consumer feeds every projection.
const CONSUMER_SUFFIX: &str = "read-models";

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
    /// Messages taken from a consumer at once (as many as are ready, up to this): those of one
    /// tenant are applied in one transaction.
    pub fetch_batch: usize,
    /// Tenants applied at the same time (each in its own transaction for every projection;
    /// one connection each). On cores the writes saturate, the read side's share of the CPU
    /// follows how many of its transactions run at once: 12 (as many as the three
    /// per-projection consumers of earlier versions ran between them) kept the lag lower than
    /// 4 in alternating runs of `oms bench` (p99 301 and 335 ms against 383 and 430 ms at the
    /// maximum rate), at the same commands/s.
    pub apply_concurrency: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            stream: "OMS_EVENTS".into(),
            consumer_prefix: "oms-projector".into(),
            ack_wait: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(2),
            catch_up_batch: 500,
            fetch_batch: 500,
            apply_concurrency: 12,
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
    /// Deliveries and catch-ups that failed (redelivered or retried): a projection that keeps
    /// failing shows here before its lag alerts.
    pub failures: Family<ProjectionLabel, Counter>,
    /// Messages terminated unapplied: not an event, a body naming another tenant than its
    /// subject, or a (tenant, position) the event store does not have. Anything above 0 means
    /// someone publishes on the stream who should not, or a message was corrupted.
    pub refused: Family<ProjectionLabel, Counter>,
    /// Messages whose content disagreed with the event store's row at their position (forged
    /// or corrupted); the store's row was applied, not the message.
    pub forged: Family<ProjectionLabel, Counter>,
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
            "Deliveries or catch-ups that failed and will be retried",
            self.failures.clone(),
        );
        registry.register(
            "oms_projector_refused",
            "Messages terminated unapplied: not an event, another tenant than their subject's, or a position the event store does not have",
            self.refused.clone(),
        );
        registry.register(
            "oms_projector_forged",
            "Messages that disagreed with the event store's row at their position; the store's row was applied",
            self.forged.clone(),
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

    /// Runs the consumer and the sweeper until `shutdown` is cancelled; an
    /// event being applied is committed and acknowledged before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        let this = self.clone();
        let consuming = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { this.consume(shutdown).await })
        };
        let this = self.clone();
        let sweeping = tokio::spawn(async move { this.sweep(shutdown).await });
        let _ = consuming.await;
        let _ = sweeping.await;
        Ok(())
    }

    /// The durable consumer of every projection, created if missing.
    pub async fn consumer(
        &self,
    ) -> Result<consumer::Consumer<consumer::pull::Config>, ProjectorError> {
        let name = format!("{}-{}", self.config.consumer_prefix, CONSUMER_SUFFIX);
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

    async fn consume(&self, shutdown: CancellationToken) {
        let batch = self.config.fetch_batch.max(1);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let result: Result<(), ProjectorError> = async {
                let consumer = self.consumer().await?;
                let messages = consumer
                    .stream()
                    .max_messages_per_batch(batch)
                    .messages()
                    .await
                    .map_err(|err| ProjectorError::Nats(err.to_string()))?;
                // Every message that is ready, up to `batch`: under load a fetch brings many,
                // applied per tenant in one transaction each; when idle, one at a time.
                let mut messages = messages.ready_chunks(batch);
                loop {
                    let next = tokio::select! {
                        next = messages.next() => next,
                        _ = shutdown.cancelled() => return Ok(()),
                    };
                    let Some(chunk) = next else { return Ok(()) };
                    let mut ready = Vec::with_capacity(chunk.len());
                    let mut failed = None;
                    for message in chunk {
                        match message {
                            Ok(message) => ready.push(message),
                            Err(err) => failed = Some(ProjectorError::Nats(err.to_string())),
                        }
                    }
                    self.handle_batch(ready).await;
                    if let Some(err) = failed {
                        return Err(err);
                    }
                }
            }
            .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "projector: consumer interrupted; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Handles the messages of one fetch: refuses those that are not events of their
    /// subject's tenant, applies the others per tenant (one transaction each for every
    /// projection, tenants side by side), then acknowledges, terminates or redelivers each.
    async fn handle_batch(&self, messages: Vec<jetstream::Message>) {
        let mut tenants: Vec<(Uuid, Vec<(jetstream::Message, StoredEvent)>)> = Vec::new();
        for message in messages {
            let delivered = match serde_json::from_slice::<StoredEvent>(&message.payload) {
                Ok(event) => event,
                Err(err) => {
                    self.count_refused();
                    tracing::error!(error = %err, subject = %message.subject, "projector: not an event; terminating it");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let tenant = delivered.tenant_id;
            if subject_tenant(&message.subject) != Some(tenant.to_string().as_str()) {
                // The relay publishes each event on its own tenant's subject: a body naming
                // another tenant is forged, whichever of the two was changed.
                self.count_refused();
                tracing::error!(
                    tenant = %tenant,
                    position = delivered.position,
                    subject = %message.subject,
                    "projector: refused a message whose event names another tenant than its subject; terminating it"
                );
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            }
            match tenants.iter_mut().find(|(t, _)| *t == tenant) {
                Some((_, group)) => group.push((message, delivered)),
                None => tenants.push((tenant, vec![(message, delivered)])),
            }
        }
        futures::stream::iter(tenants)
            .for_each_concurrent(self.config.apply_concurrency.max(1), |(tenant, group)| {
                self.handle_tenant(tenant, group)
            })
            .await;
    }

    /// A message refused before any projection saw it is refused by each of them.
    fn count_refused(&self) {
        for projection in Projection::ALL {
            self.metrics
                .refused
                .get_or_create(&ProjectorMetrics::label(projection))
                .inc();
        }
    }

    /// Applies one tenant's messages of a fetch to every projection in one transaction and
    /// settles each message. If that fails, each projection is applied on its own, so one
    /// projection that cannot apply an event does not hold the others back; the messages are
    /// then redelivered, and are duplicates for the projections that applied them.
    async fn handle_tenant(&self, tenant: Uuid, group: Vec<(jetstream::Message, StoredEvent)>) {
        let delivered: Vec<&StoredEvent> = group.iter().map(|(_, event)| event).collect();
        let per_projection = match apply_deliveries_to(
            &self.store,
            &Projection::ALL,
            tenant,
            &delivered,
        )
        .await
        {
            Ok(per_projection) => Projection::ALL.into_iter().zip(per_projection).collect(),
            Err(err) => {
                tracing::debug!(tenant = %tenant, error = %err, "projector: applying every projection at once failed; applying each on its own");
                self.apply_each(tenant, &delivered).await
            }
        };
        if per_projection.len() < Projection::ALL.len() {
            for (message, _) in &group {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
            return;
        }
        for (i, (message, delivered)) in group.iter().enumerate() {
            let deliveries: Vec<(Projection, &Delivery)> = per_projection
                .iter()
                .map(|(projection, deliveries)| (*projection, &deliveries[i]))
                .collect();
            self.settle(message, delivered, &deliveries).await;
        }
    }

    /// Applies `delivered` to each projection in a transaction of its own; returns the
    /// projections that applied (with their deliveries), counting and logging the others.
    async fn apply_each(
        &self,
        tenant: Uuid,
        delivered: &[&StoredEvent],
    ) -> Vec<(Projection, Vec<Delivery>)> {
        let mut applied = Vec::new();
        for projection in Projection::ALL {
            match apply_deliveries(&self.store, projection, tenant, delivered).await {
                Ok(deliveries) => applied.push((projection, deliveries)),
                Err(err) => {
                    self.metrics
                        .failures
                        .get_or_create(&ProjectorMetrics::label(projection))
                        .inc();
                    let positions: Vec<i64> =
                        delivered.iter().map(|event| event.position).collect();
                    tracing::warn!(projection = projection.name(), tenant = %tenant, ?positions, error = %err, "projector: apply failed; redelivering later");
                }
            }
        }
        applied
    }

    /// Counts, logs and acknowledges (or terminates) one message after its tenant's apply,
    /// given what each projection made of it.
    async fn settle(
        &self,
        message: &jetstream::Message,
        delivered: &StoredEvent,
        deliveries: &[(Projection, &Delivery)],
    ) {
        let (tenant, position) = (delivered.tenant_id, delivered.position);
        // Every projection compared the same message with the same row; the first one that
        // read the row says how they disagree.
        let mut disagreeing = deliveries
            .iter()
            .map(|(_, delivery)| &delivery.disagreeing)
            .find(|fields| !fields.is_empty())
            .cloned()
            .unwrap_or_default();
        if message.subject.as_str() != subject_of(delivered) {
            disagreeing.push("subject");
        }
        let forged = !disagreeing.is_empty();
        if forged {
            tracing::error!(
                tenant = %tenant,
                position,
                subject = %message.subject,
                fields = ?disagreeing,
                "projector: a forged or corrupted message disagrees with the event store; the store's event is applied, not the message"
            );
        }
        let by_reference = payload_omitted(message, delivered);
        let mut refused = false;
        for (projection, delivery) in deliveries {
            let label = ProjectorMetrics::label(*projection);
            if forged {
                self.metrics.forged.get_or_create(&label).inc();
            }
            match delivery.outcome {
                Outcome::Applied { gap_filled } => {
                    self.metrics.applied.get_or_create(&label).inc();
                    self.metrics
                        .gap_filled
                        .get_or_create(&label)
                        .inc_by(gap_filled);
                    if by_reference {
                        self.metrics.by_reference.get_or_create(&label).inc();
                    }
                }
                Outcome::Duplicate => {
                    self.metrics.duplicates.get_or_create(&label).inc();
                }
                Outcome::Refused => {
                    self.metrics.refused.get_or_create(&label).inc();
                    refused = true;
                }
            }
        }
        if refused {
            tracing::error!(
                tenant = %tenant,
                position,
                subject = %message.subject,
                "projector: refused a message naming an event the event store does not have (beyond the tenant's head, or no such tenant); terminating it, the checkpoints stay"
            );
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
        if let Err(err) = message.ack().await {
            // Committed but not acked: the redelivery will be a duplicate.
            tracing::warn!(error = %err, "projector: ack failed");
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

/// The tenant part of an event subject, `oms.events.<tenant>.<aggregate_type>.<aggregate_id>`.
fn subject_tenant(subject: &str) -> Option<&str> {
    subject.strip_prefix("oms.events.")?.split('.').next()
}

/// The subject the relay publishes `event` on.
fn subject_of(event: &StoredEvent) -> String {
    format!(
        "oms.events.{}.{}.{}",
        event.tenant_id, event.aggregate_type, event.aggregate_id
    )
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
