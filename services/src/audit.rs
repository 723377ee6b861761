//! Audit tooling: streaming export of a tenant's events, offline verification of an export,
//! and anchors — each tenant's head (position, hash) published outside the database.
//!
//! An export line carries everything the hash covers plus the previous event's hash, so an
//! outside auditor can recompute the chain from the file alone (`oms audit verify --file`).
//! Anchors are published to JetStream on `oms.anchors.<tenant>` every few events or seconds;
//! someone who can write to Postgres and recomputes the whole chain after a change still
//! disagrees with the anchors taken before the change.

use async_nats::jetstream::{self, consumer, stream};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::store::hash::{self, HashedFields, GENESIS};
use crate::store::{EventStore, Head, StoredEvent};

/// One line of an NDJSON export: the stored event, its hash and the hash before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The tenant's position.
    pub position: i64,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate.
    pub aggregate_id: Uuid,
    /// The aggregate's sequence.
    pub sequence: i64,
    /// The event type.
    pub event_type: String,
    /// The payload's version as stored.
    pub event_version: String,
    /// The event as stored (not upcast: that is what the hash covers).
    pub payload: Value,
    /// Actor, request and correlation ids.
    pub metadata: Value,
    /// When it was recorded (RFC 3339, microseconds, UTC).
    pub recorded_at: String,
    /// The previous event's hash (hex; 64 zeros before the first event).
    pub previous_hash: String,
    /// This event's hash (hex).
    pub hash: String,
}

impl ExportedEvent {
    fn from_stored(event: &StoredEvent, previous: &[u8]) -> Self {
        Self {
            tenant_id: event.tenant_id,
            position: event.position,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
            recorded_at: hash::format_timestamp(event.recorded_at),
            previous_hash: hex::encode(previous),
            hash: hex::encode(&event.hash),
        }
    }

    /// Recomputes this line's hash from its fields and its `previous_hash`.
    pub fn recompute(&self) -> Result<String, String> {
        let recorded_at = DateTime::parse_from_rfc3339(&self.recorded_at)
            .map_err(|err| format!("recorded_at: {err}"))?
            .with_timezone(&Utc);
        let previous =
            hex::decode(&self.previous_hash).map_err(|err| format!("previous_hash: {err}"))?;
        let fields = HashedFields {
            tenant_id: self.tenant_id,
            position: self.position,
            aggregate_type: &self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            recorded_at,
        };
        Ok(hex::encode(hash::chain_hash(&previous, &fields)))
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line (verifiable offline).
    Ndjson,
    /// A header row and one row per event; payload and metadata as JSON text.
    Csv,
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Events written.
    pub events: u64,
    /// The last position written (0 when none).
    pub last_position: i64,
    /// The last hash written (hex).
    pub last_hash: String,
}

const CSV_HEADER: &str = "position,recorded_at,aggregate_type,aggregate_id,sequence,event_type,event_version,actor,payload,metadata,previous_hash,hash\n";

/// RFC 4180 quoting of one CSV field. The export writes stored values verbatim (an auditor
/// gets exactly what was recorded); the API's CSV lists add formula defusing on top.
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// Streams `tenant`'s events recorded in `[from, to]` to `out`, in position order, one at a
/// time: memory does not grow with the tenant's history.
pub async fn export<W: AsyncWrite + Unpin>(
    pool: &PgPool,
    tenant: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    format: ExportFormat,
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    // The hash before the first exported event: the one of the event just before it.
    let mut rows = sqlx::query_as::<_, StoredEvent>(
        "select tenant_id, position, aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata, recorded_at, hash
           from events
          where tenant_id = $1
            and ($2::timestamptz is null or recorded_at >= $2)
            and ($3::timestamptz is null or recorded_at <= $3)
          order by position",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .fetch(pool);
    if format == ExportFormat::Csv {
        out.write_all(CSV_HEADER.as_bytes()).await?;
    }
    let mut previous: Option<Vec<u8>> = None;
    let mut summary = ExportSummary {
        events: 0,
        last_position: 0,
        last_hash: hex::encode(GENESIS),
    };
    while let Some(event) = rows.try_next().await? {
        let before = match previous.take() {
            Some(hash) => hash,
            None => previous_hash(pool, tenant, event.position).await?,
        };
        let line = ExportedEvent::from_stored(&event, &before);
        match format {
            ExportFormat::Ndjson => {
                let mut bytes = serde_json::to_vec(&line)
                    .map_err(|err| ExportError::Encode(err.to_string()))?;
                bytes.push(b'\n');
                out.write_all(&bytes).await?;
            }
            ExportFormat::Csv => {
                let actor = line
                    .metadata
                    .get("actor")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let row = [
                    line.position.to_string(),
                    line.recorded_at.clone(),
                    line.aggregate_type.clone(),
                    line.aggregate_id.to_string(),
                    line.sequence.to_string(),
                    line.event_type.clone(),
                    line.event_version.clone(),
                    actor.to_string(),
                    line.payload.to_string(),
                    line.metadata.to_string(),
                    line.previous_hash.clone(),
                    line.hash.clone(),
                ]
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(",");
                out.write_all(row.as_bytes()).await?;
                out.write_all(b"\n").await?;
            }
        }
        summary.events += 1;
        summary.last_position = event.position;
        summary.last_hash = line.hash.clone();
        previous = Some(event.hash);
    }
    out.flush().await?;
    Ok(summary)
}

async fn previous_hash(pool: &PgPool, tenant: Uuid, position: i64) -> Result<Vec<u8>, sqlx::Error> {
    if position <= 1 {
        return Ok(GENESIS.to_vec());
    }
    let hash: Option<Vec<u8>> =
        sqlx::query_scalar("select hash from events where tenant_id = $1 and position = $2")
            .bind(tenant)
            .bind(position - 1)
            .fetch_optional(pool)
            .await?;
    // A missing predecessor is a broken chain; the verifier of the export will say where.
    Ok(hash.unwrap_or_else(|| GENESIS.to_vec()))
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Writing the output failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// An event did not encode.
    #[error("cannot encode an event: {0}")]
    Encode(String),
}

/// The outcome of verifying an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// True when every line's hash recomputes and links to the line before it.
    pub ok: bool,
    /// Lines read.
    pub events_checked: u64,
    /// The last line's position.
    pub head_position: i64,
    /// The last line's hash.
    pub head_hash: String,
    /// The first line (1-based) that fails, and why.
    pub first_bad_line: Option<u64>,
    /// Its position, when the line could be read.
    pub first_bad_position: Option<i64>,
    /// What is wrong with it.
    pub problem: Option<String>,
}

/// Verifies an NDJSON export without the database: each line's hash recomputes from its
/// fields and its `previous_hash`, each `previous_hash` is the hash of the line before, and
/// positions follow each other.
pub async fn verify_file(path: &std::path::Path) -> Result<FileReport, std::io::Error> {
    let file = tokio::fs::File::open(path).await?;
    let mut lines = tokio::io::BufReader::new(file).lines();
    let mut report = FileReport {
        ok: true,
        events_checked: 0,
        head_position: 0,
        head_hash: hex::encode(GENESIS),
        first_bad_line: None,
        first_bad_position: None,
        problem: None,
    };
    let mut previous: Option<(i64, String)> = None;
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let fail = |report: &mut FileReport, position: Option<i64>, problem: String| {
            if report.ok {
                report.ok = false;
                report.first_bad_line = Some(number);
                report.first_bad_position = position;
                report.problem = Some(problem);
            }
        };
        let event: ExportedEvent = match serde_json::from_str(&line) {
            Ok(event) => event,
            Err(err) => {
                fail(&mut report, None, format!("not an exported event: {err}"));
                report.events_checked += 1;
                continue;
            }
        };
        report.events_checked += 1;
        if report.ok {
            if let Some((position, hash)) = &previous {
                if event.position != position + 1 {
                    fail(
                        &mut report,
                        Some(event.position),
                        format!("position {} follows {position}", event.position),
                    );
                } else if &event.previous_hash != hash {
                    fail(
                        &mut report,
                        Some(event.position),
                        "previous_hash is not the hash of the line before".into(),
                    );
                }
            } else if event.position == 1 && event.previous_hash != hex::encode(GENESIS) {
                fail(
                    &mut report,
                    Some(1),
                    "the first event must follow the genesis hash".into(),
                );
            }
        }
        if report.ok {
            match event.recompute() {
                Ok(hash) if hash == event.hash => {}
                Ok(_) => fail(
                    &mut report,
                    Some(event.position),
                    "the hash does not match the event's contents".into(),
                ),
                Err(err) => fail(&mut report, Some(event.position), err),
            }
        }
        report.head_position = event.position;
        report.head_hash = event.hash.clone();
        previous = Some((event.position, event.hash));
    }
    Ok(report)
}

/// A tenant's head, published outside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The head's position.
    pub position: i64,
    /// The head's hash (hex).
    pub hash: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
}

/// The anchors' stream.
pub const ANCHOR_STREAM: &str = "OMS_ANCHORS";

/// Creates the anchors' stream if missing (file storage, kept for ever).
pub async fn ensure_anchor_stream(
    jetstream: &jetstream::Context,
) -> Result<stream::Stream, String> {
    jetstream
        .get_or_create_stream(stream::Config {
            name: ANCHOR_STREAM.into(),
            subjects: vec!["oms.anchors.>".into()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        })
        .await
        .map_err(|err| err.to_string())
}

/// Publishes a tenant's head every `every_events` events or `every` time, whichever first.
#[derive(Debug, Clone)]
pub struct Anchorer {
    store: EventStore,
    jetstream: jetstream::Context,
    every_events: i64,
    every: Duration,
    last: HashMap<Uuid, (i64, Instant)>,
}

impl Anchorer {
    /// An anchorer over `store` publishing to `jetstream`.
    pub fn new(
        store: EventStore,
        jetstream: jetstream::Context,
        every_events: i64,
        every: Duration,
    ) -> Self {
        Self {
            store,
            jetstream,
            every_events,
            every,
            last: HashMap::new(),
        }
    }

    /// Publishes an anchor for every tenant whose head moved by `every_events`, or moved at
    /// all and was last anchored longer than `every` ago. Returns how many were published.
    pub async fn anchor_due(&mut self) -> Result<u64, String> {
        let heads: Vec<(Uuid, i64, Vec<u8>)> =
            sqlx::query_as("select tenant_id, position, hash from tenant_heads where position > 0")
                .fetch_all(self.store.pool())
                .await
                .map_err(|err| err.to_string())?;
        let mut published = 0;
        for (tenant, position, hash) in heads {
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
            self.publish(tenant, &Head { position, hash }).await?;
            self.last.insert(tenant, (position, Instant::now()));
            published += 1;
        }
        Ok(published)
    }

    /// Publishes one anchor and waits for JetStream to store it.
    pub async fn publish(&self, tenant: Uuid, head: &Head) -> Result<(), String> {
        let anchor = Anchor {
            tenant_id: tenant,
            position: head.position,
            hash: hex::encode(&head.hash),
            at: Utc::now(),
        };
        let body = serde_json::to_vec(&anchor).map_err(|err| err.to_string())?;
        self.jetstream
            .publish(format!("oms.anchors.{tenant}"), body.into())
            .await
            .map_err(|err| err.to_string())?
            .await
            .map_err(|err| err.to_string())?;
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        while ensure_anchor_stream(&self.jetstream).await.is_err() {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
        loop {
            if let Err(err) = self.anchor_due().await {
                tracing::warn!(error = %err, "anchors: publishing failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Every anchor published for `tenant`, oldest first.
pub async fn anchors(jetstream: &jetstream::Context, tenant: Uuid) -> Result<Vec<Anchor>, String> {
    use futures::StreamExt;
    let mut stream = ensure_anchor_stream(jetstream).await?;
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
        if let Ok(anchor) = serde_json::from_slice::<Anchor>(&message.payload) {
            out.push(anchor);
        }
        if u64::try_from(out.len()).unwrap_or(u64::MAX) >= pending {
            break;
        }
    }
    Ok(out)
}

/// The chain report with the anchors checked too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredReport {
    /// The chain recomputed from the store.
    #[serde(flatten)]
    pub chain: crate::store::ChainReport,
    /// Anchors compared.
    pub anchors_checked: u64,
    /// The first anchor whose position's stored hash differs from the anchored one (or whose
    /// position is missing): the chain was rewritten at or before it.
    pub first_bad_anchor: Option<i64>,
}

/// Verifies `tenant`'s chain and compares it with the anchors: every anchored position must
/// still carry the anchored hash.
pub async fn verify_with_anchors(
    store: &EventStore,
    tenant: Uuid,
    anchors: &[Anchor],
) -> Result<AnchoredReport, sqlx::Error> {
    let mut chain = store.verify_chain(tenant).await?;
    let mut first_bad_anchor = None;
    let mut last_good = 0;
    let mut sorted: Vec<&Anchor> = anchors.iter().collect();
    sorted.sort_by_key(|a| a.position);
    for anchor in &sorted {
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("select hash from events where tenant_id = $1 and position = $2")
                .bind(tenant)
                .bind(anchor.position)
                .fetch_optional(store.pool())
                .await?;
        if stored.map(hex::encode).as_deref() == Some(anchor.hash.as_str()) {
            last_good = anchor.position;
        } else {
            first_bad_anchor = Some(anchor.position);
            break;
        }
    }
    if first_bad_anchor.is_some() {
        chain.ok = false;
        // The rewrite happened after the last anchor that still matches.
        let earliest = last_good + 1;
        chain.first_bad_position = Some(
            chain
                .first_bad_position
                .map_or(earliest, |p| p.min(earliest)),
        );
    }
    Ok(AnchoredReport {
        chain,
        anchors_checked: u64::try_from(sorted.len()).unwrap_or_default(),
        first_bad_anchor,
    })
}
