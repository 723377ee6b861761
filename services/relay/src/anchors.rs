//! Anchors: each tenant's head (position, hash) signed with the anchor key (HMAC-SHA256, a
//! key the database never holds) and published to JetStream on `oms.anchors.<tenant>` every
//! few events or seconds, so that a rewrite of the chain by someone who can write to Postgres
//! still disagrees with what was published before it — and cannot be anchored anew.

use async_nats::jetstream::{self, consumer, stream};
use chrono::Utc;
use oms_store::audit::{Anchor, AnchorKey, ReceivedAnchor};
use oms_store::{EventStore, Head};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The anchors' stream.
pub const ANCHOR_STREAM: &str = "OMS_ANCHORS";

/// Creates the anchors' stream if missing, or updates an existing one to this configuration:
/// file storage, kept for ever, and `deny_delete` and `deny_purge`, so that no one can take an
/// anchor away through the JetStream API (NATS refuses to switch them off again).
pub async fn ensure_anchor_stream(
    jetstream: &jetstream::Context,
) -> Result<stream::Stream, String> {
    jetstream
        .create_or_update_stream(stream::Config {
            name: ANCHOR_STREAM.into(),
            subjects: vec!["oms.anchors.>".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        })
        .await
        .map_err(|err| err.to_string())?;
    jetstream
        .get_stream(ANCHOR_STREAM)
        .await
        .map_err(|err| err.to_string())
}

/// Publishes a tenant's head, signed with `key`, every `every_events` events or `every` time,
/// whichever first.
#[derive(Debug, Clone)]
pub struct Anchorer {
    store: EventStore,
    jetstream: jetstream::Context,
    key: AnchorKey,
    every_events: i64,
    every: Duration,
    last: HashMap<Uuid, (i64, Instant)>,
}

impl Anchorer {
    /// An anchorer over `store` publishing to `jetstream`, signing with `key`.
    pub fn new(
        store: EventStore,
        jetstream: jetstream::Context,
        key: AnchorKey,
        every_events: i64,
        every: Duration,
    ) -> Self {
        Self {
            store,
            jetstream,
            key,
            every_events,
            every,
            last: HashMap::new(),
        }
    }

    /// Publishes an anchor for every tenant whose head moved by `every_events`, or moved at
    /// all and was last anchored longer than `every` ago. Returns how many were published.
    pub async fn anchor_due(&mut self) -> Result<u64, String> {
        let heads = self.store.heads().await.map_err(|err| err.to_string())?;
        let mut published = 0;
        for (tenant, head) in heads.into_iter().filter(|(_, head)| head.position > 0) {
            let position = head.position;
            let due = match self.last.get(&tenant) {
                None => true,
                Some((anchored, at)) => {
                    position - anchored >= self.every_events
                        || (position > *anchored && at.elapsed() >= self.every)
                }
            };
            if !due {
                continue;
            }
            self.publish(tenant, &head).await?;
            self.last.insert(tenant, (position, Instant::now()));
            published += 1;
        }
        Ok(published)
    }

    /// Publishes one signed anchor and waits for JetStream to store it.
    pub async fn publish(&self, tenant: Uuid, head: &Head) -> Result<(), String> {
        let anchor = Anchor::signed(&self.key, tenant, head.position, &head.hash, Utc::now());
        let body = serde_json::to_vec(&anchor).map_err(|err| err.to_string())?;
        self.jetstream
            .publish(format!("oms.anchors.{tenant}"), body.into())
            .await
            .map_err(|err| err.to_string())?
            .await
            .map_err(|err| err.to_string())?;
        Ok(())
    }

    /// Runs until `shutdown` is cancelled; a round in progress finishes first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while ensure_anchor_stream(&self.jetstream).await.is_err() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        loop {
            if let Err(err) = self.anchor_due().await {
                tracing::warn!(error = %err, "anchors: publishing failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Every message published on `tenant`'s anchor subject, oldest first, with its stream
/// sequence: anchors, and messages that are not (reported by the verification, not dropped).
/// Only reads: a missing stream means no anchors.
pub async fn anchors(
    jetstream: &jetstream::Context,
    tenant: Uuid,
) -> Result<Vec<ReceivedAnchor>, String> {
    use futures::StreamExt;
    let mut stream = match jetstream.get_stream(ANCHOR_STREAM).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            // Not found (the relay never ran): no anchors.
            return Ok(Vec::new());
        }
        Err(err) => return Err(err.to_string()),
    };
    let subject = format!("oms.anchors.{tenant}");
    let info = stream.info().await.map_err(|err| err.to_string())?;
    if info.state.messages == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject,
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|err| err.to_string())?;
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .fetch()
        .max_messages(usize::try_from(pending).unwrap_or(usize::MAX))
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .map_err(|err| err.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|err| err.to_string())?;
        let sequence = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        out.push(ReceivedAnchor {
            sequence,
            anchor: serde_json::from_slice::<Anchor>(&message.payload)
                .map_err(|err| err.to_string()),
        });
        if u64::try_from(out.len()).unwrap_or(u64::MAX) >= pending {
            break;
        }
    }
    if u64::try_from(out.len()).unwrap_or(u64::MAX) < pending {
        return Err(format!(
            "read {} of the {pending} anchors of tenant {tenant}",
            out.len()
        ));
    }
    Ok(out)
}
