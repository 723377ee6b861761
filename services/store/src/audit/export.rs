//! Streaming export of a tenant's events and offline verification of an export.
//!
//! An export line carries everything the hash covers plus the previous event's hash, so an
//! outside auditor can recompute the chain from the file alone (`oms audit verify --file`).

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::hash::{self, GENESIS};
use crate::{EventStore, StoredEvent};

/// One line of an NDJSON export: the stored event in its serde form (the envelope the relay
/// publishes too) and the hash before it, so the file alone lets an auditor recompute the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The event as stored (not upcast: that is what the hash covers).
    #[serde(flatten)]
    pub event: StoredEvent,
    /// The previous event's hash (hex; 64 zeros before the first event).
    pub previous_hash: String,
}

impl ExportedEvent {
    fn from_stored(event: &StoredEvent, previous: &[u8]) -> Self {
        Self {
            event: event.clone(),
            previous_hash: hex::encode(previous),
        }
    }

    /// Recomputes this line's hash from its fields and its `previous_hash`.
    pub fn recompute(&self) -> Result<String, String> {
        let previous =
            hex::decode(&self.previous_hash).map_err(|err| format!("previous_hash: {err}"))?;
        Ok(hex::encode(hash::chain_hash(&previous, &self.event)))
    }
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The export's CSV columns.
const CSV_HEADER: [&str; 12] = [
    "position",
    "recorded_at",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "actor",
    "payload",
    "metadata",
    "previous_hash",
    "hash",
];

/// One CSV record (RFC 4180 quoting, CRLF line ends, like the API's CSV lists). The export
/// writes stored values verbatim — an auditor gets exactly what was recorded — so, unlike the
/// API's lists, it defuses no spreadsheet formulas.
fn csv_record(fields: &[&str]) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(fields)
        .map_err(|err| ExportError::Encode(err.to_string()))?;
    writer
        .into_inner()
        .map_err(|err| ExportError::Encode(err.to_string()))
}

/// Streams `tenant`'s events recorded in `[from, to]` to `out`, in position order, one at a
/// time: memory does not grow with the tenant's history.
pub async fn export<W: AsyncWrite + Unpin>(
    store: &EventStore,
    tenant: Uuid,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    format: ExportFormat,
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    // The hash before the first exported event: the one of the event just before it.
    let mut rows = sqlx::query_as::<_, StoredEvent>(crate::event_store::select_events!(
        "where tenant_id = $1
           and ($2::timestamptz is null or recorded_at >= $2)
           and ($3::timestamptz is null or recorded_at <= $3)
         order by position"
    ))
    .bind(tenant)
    .bind(from)
    .bind(to)
    .fetch(store.pool());
    if format == ExportFormat::Csv {
        out.write_all(&csv_record(&CSV_HEADER)?).await?;
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
            None => previous_hash(store, tenant, event.position).await?,
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
                let actor = event
                    .metadata
                    .get("actor")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let record = csv_record(&[
                    &event.position.to_string(),
                    &hash::format_timestamp(event.recorded_at),
                    &event.aggregate_type,
                    &event.aggregate_id.to_string(),
                    &event.sequence.to_string(),
                    &event.event_type,
                    &event.event_version,
                    actor,
                    &event.payload.to_string(),
                    &event.metadata.to_string(),
                    &line.previous_hash,
                    &hex::encode(&event.hash),
                ])?;
                out.write_all(&record).await?;
            }
        }
        summary.events += 1;
        summary.last_position = event.position;
        summary.last_hash = hex::encode(&event.hash);
        previous = Some(event.hash);
    }
    out.flush().await?;
    Ok(summary)
}

async fn previous_hash(
    store: &EventStore,
    tenant: Uuid,
    position: i64,
) -> Result<Vec<u8>, sqlx::Error> {
    if position <= 1 {
        return Ok(GENESIS.to_vec());
    }
    // A missing predecessor is a broken chain; the verifier of the export will say where.
    Ok(store
        .hash_at(tenant, position - 1)
        .await?
        .unwrap_or_else(|| GENESIS.to_vec()))
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
                if event.event.position != position + 1 {
                    fail(
                        &mut report,
                        Some(event.event.position),
                        format!("position {} follows {position}", event.event.position),
                    );
                } else if &event.previous_hash != hash {
                    fail(
                        &mut report,
                        Some(event.event.position),
                        "previous_hash is not the hash of the line before".into(),
                    );
                }
            } else if event.event.position == 1 && event.previous_hash != hex::encode(GENESIS) {
                fail(
                    &mut report,
                    Some(1),
                    "the first event must follow the genesis hash".into(),
                );
            }
        }
        if report.ok {
            match event.recompute() {
                Ok(hash) if hash == hex::encode(&event.event.hash) => {}
                Ok(_) => fail(
                    &mut report,
                    Some(event.event.position),
                    "the hash does not match the event's contents".into(),
                ),
                Err(err) => fail(&mut report, Some(event.event.position), err),
            }
        }
        report.head_position = event.event.position;
        report.head_hash = hex::encode(&event.event.hash);
        previous = Some((event.event.position, report.head_hash.clone()));
    }
    Ok(report)
}
