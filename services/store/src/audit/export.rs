//! Streaming export of a tenant's events and offline verification of an export.
//!
//! An export line carries everything the hash covers plus the previous event's hash, so an
//! outside auditor can recompute the chain from the file alone (`oms audit verify --file`).
//! The NDJSON export ends with a trailer line (`{"trailer": {...}}`) giving the count and the
//! last position and hash: a file cut short (or emptied) has no trailer, or one that does not
//! match, and the verifier refuses it. Given a signed anchor, the verifier also checks that the
//! file's chain reaches the anchored position with the anchored hash.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use super::{Anchor, AnchorKey};
use crate::hash::{self, GENESIS};
use crate::{EventStore, StoredEvent};

/// The format named in the trailer of an NDJSON export. Files written before the trailer
/// existed have none and no longer verify: export them again.
pub const EXPORT_FORMAT: &str = "oms-audit-export/2";

/// The last line of an NDJSON export, alone under the key `trailer`: what was written, so a
/// truncated file can be told from a complete one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// The tenant exported.
    pub tenant_id: Uuid,
    /// Event lines before the trailer.
    pub events: u64,
    /// The last event's position (0 when none).
    pub last_position: i64,
    /// The last event's hash (hex; 64 zeros when none).
    pub last_hash: String,
}

/// The trailer line's shape: one key, so no event line can be mistaken for it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrailerLine {
    trailer: Trailer,
}

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

/// A cell a spreadsheet would run as a formula — one that begins with `=`, `+`, `-`, `@`, a
/// tab or a carriage return — gets a leading `'`, so it opens as text. A plain decimal number
/// (an optional `-` or `+`, digits, optionally a point and digits: `-12.50`) is data, not a
/// formula, and is left as it is so that it still reads as a number. The NDJSON export, which
/// is what the hash covers and what `verify --file` checks, is never altered.
pub fn defuse_cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(value) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

fn is_plain_number(value: &str) -> bool {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// One CSV record (RFC 4180 quoting, CRLF line ends, like the API's CSV lists), every cell
/// defused ([`defuse_cell`]): an export opened in a spreadsheet runs nothing an actor typed.
fn csv_record(fields: &[&str]) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(fields.iter().map(|field| defuse_cell(field).into_owned()))
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
    if format == ExportFormat::Ndjson {
        let trailer = TrailerLine {
            trailer: Trailer {
                format: EXPORT_FORMAT.into(),
                tenant_id: tenant,
                events: summary.events,
                last_position: summary.last_position,
                last_hash: summary.last_hash.clone(),
            },
        };
        let mut bytes =
            serde_json::to_vec(&trailer).map_err(|err| ExportError::Encode(err.to_string()))?;
        bytes.push(b'\n');
        out.write_all(&bytes).await?;
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
    /// True when every line's hash recomputes and links to the line before it, the trailer
    /// is there and agrees with the lines, and the anchor (when given) is reached with its
    /// hash.
    pub ok: bool,
    /// Event lines read.
    pub events_checked: u64,
    /// The last line's position.
    pub head_position: i64,
    /// The last line's hash.
    pub head_hash: String,
    /// The first line (1-based) that fails, and why.
    pub first_bad_line: Option<u64>,
    /// Its position, when the line could be read.
    pub first_bad_position: Option<i64>,
    /// What is wrong with it (or with the file as a whole: empty, no trailer, the anchor).
    pub problem: Option<String>,
    /// Whether the file ended with a trailer that matches its lines.
    pub trailer: bool,
    /// The position of the anchor checked, when one was given and it was reached with its
    /// hash.
    pub anchored_position: Option<i64>,
    /// Events in the file after the anchored position (not covered by the anchor).
    pub unanchored_events: Option<i64>,
}

/// A signed anchor to check an export against, and the keys it may be signed with.
#[derive(Debug, Clone, Copy)]
pub struct FileAnchor<'a> {
    /// The anchor (as published on `oms.anchors.<tenant>`).
    pub anchor: &'a Anchor,
    /// The keys accepted.
    pub keys: &'a [AnchorKey],
}

impl FileReport {
    fn fail(&mut self, line: Option<u64>, position: Option<i64>, problem: String) {
        if self.ok {
            self.ok = false;
            self.first_bad_line = line;
            self.first_bad_position = position;
            self.problem = Some(problem);
        }
    }
}

/// Verifies an NDJSON export without the database: each line's hash recomputes from its
/// fields and its `previous_hash`, each `previous_hash` is the hash of the line before,
/// positions follow each other, every line is of one tenant, and the file ends with a trailer
/// that counts its lines and names its last hash — an empty or truncated file fails. With an
/// `anchor`, the anchor must be signed by one of its keys for the file's tenant, and the
/// file's chain must reach the anchored position with the anchored hash.
pub async fn verify_file(
    path: &std::path::Path,
    anchor: Option<FileAnchor<'_>>,
) -> Result<FileReport, std::io::Error> {
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
        trailer: false,
        anchored_position: None,
        unanchored_events: None,
    };
    let mut previous: Option<(i64, String)> = None;
    let mut tenant: Option<Uuid> = None;
    let mut trailer: Option<(u64, Trailer)> = None;
    // The anchored position's hash in the file (or the hash before the first line, when the
    // anchor is just before the file's first position).
    let mut anchored_hash: Option<String> = None;
    let anchored_position = anchor.map(|a| a.anchor.position);
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some((at, _)) = &trailer {
            report.fail(
                Some(number),
                None,
                format!("a line after the trailer (line {at})"),
            );
            break;
        }
        if let Ok(TrailerLine { trailer: found }) = serde_json::from_str::<TrailerLine>(&line) {
            trailer = Some((number, found));
            continue;
        }
        let event: ExportedEvent = match serde_json::from_str(&line) {
            Ok(event) => event,
            Err(err) => {
                report.fail(Some(number), None, format!("not an exported event: {err}"));
                report.events_checked += 1;
                continue;
            }
        };
        report.events_checked += 1;
        let position = event.event.position;
        if report.ok {
            match tenant {
                None => tenant = Some(event.event.tenant_id),
                Some(t) if t != event.event.tenant_id => report.fail(
                    Some(number),
                    Some(position),
                    format!(
                        "a line of tenant {} in an export of {t}",
                        event.event.tenant_id
                    ),
                ),
                Some(_) => {}
            }
        }
        if report.ok {
            if let Some((before, hash)) = &previous {
                if position != before + 1 {
                    report.fail(
                        Some(number),
                        Some(position),
                        format!("position {position} follows {before}"),
                    );
                } else if &event.previous_hash != hash {
                    report.fail(
                        Some(number),
                        Some(position),
                        "previous_hash is not the hash of the line before".into(),
                    );
                }
            } else if position == 1 && event.previous_hash != hex::encode(GENESIS) {
                report.fail(
                    Some(number),
                    Some(1),
                    "the first event must follow the genesis hash".into(),
                );
            }
        }
        if report.ok {
            match event.recompute() {
                Ok(hash) if hash == hex::encode(&event.event.hash) => {}
                Ok(_) => report.fail(
                    Some(number),
                    Some(position),
                    "the hash does not match the event's contents".into(),
                ),
                Err(err) => report.fail(Some(number), Some(position), err),
            }
        }
        if previous.is_none() && anchored_position == Some(position - 1) {
            anchored_hash = Some(event.previous_hash.clone());
        }
        report.head_position = position;
        report.head_hash = hex::encode(&event.event.hash);
        if anchored_position == Some(position) {
            anchored_hash = Some(report.head_hash.clone());
        }
        previous = Some((position, report.head_hash.clone()));
    }
    match &trailer {
        _ if number == 0 || (report.events_checked == 0 && trailer.is_none()) => {
            report.fail(None, None, "the file is empty: it is not an export".into());
        }
        None => report.fail(
            None,
            None,
            format!(
                "no trailer: the export is truncated (or older than format {EXPORT_FORMAT}; \
                 export it again)"
            ),
        ),
        Some((at, found)) => {
            let problem = if found.format != EXPORT_FORMAT {
                Some(format!("unknown export format {}", found.format))
            } else if found.events != report.events_checked {
                Some(format!(
                    "the trailer counts {} events, the file has {}: the export is truncated or \
                     was edited",
                    found.events, report.events_checked
                ))
            } else if found.last_position != report.head_position
                || found.last_hash != report.head_hash
            {
                Some("the trailer's last position and hash are not the last line's".into())
            } else if tenant.is_some_and(|t| t != found.tenant_id) {
                Some(format!("the trailer is of tenant {}", found.tenant_id))
            } else {
                None
            };
            match problem {
                Some(problem) => report.fail(Some(*at), None, problem),
                None => report.trailer = true,
            }
        }
    }
    if let Some(FileAnchor { anchor, keys }) = anchor {
        let file_tenant = tenant.or_else(|| trailer.as_ref().map(|(_, t)| t.tenant_id));
        let checked = match file_tenant {
            Some(t) => anchor
                .check(t, keys)
                .map_err(|p| format!("the anchor: {p}")),
            None => Err("the anchor: the file names no tenant".into()),
        };
        let reached = checked.and_then(|()| {
            let want = anchor.hash_bytes().map(hex::encode);
            match &anchored_hash {
                None => Err(format!(
                    "the export does not reach the anchored position {} (it holds {})",
                    anchor.position,
                    match &previous {
                        None => "no events".to_string(),
                        Some(_) => format!("positions up to {}", report.head_position),
                    }
                )),
                Some(hash) if Some(hash) == want.as_ref() => Ok(()),
                Some(hash) => Err(format!(
                    "the export's hash at the anchored position {} is {hash}, the anchor's is {}: \
                     the history was rewritten",
                    anchor.position, anchor.hash
                )),
            }
        });
        match reached {
            Ok(()) => {
                report.anchored_position = Some(anchor.position);
                report.unanchored_events = Some((report.head_position - anchor.position).max(0));
            }
            Err(problem) => report.fail(None, Some(anchor.position), problem),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_run_get_a_quote_and_numbers_stay_numbers() {
        for (cell, expected) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-inf", "'-inf"),
            ("-1e5", "'-1e5"),
            ("-", "'-"),
            ("-.5", "'-.5"),
            ("-12.50", "-12.50"),
            ("+7", "+7"),
            ("-3", "-3"),
            ("mary", "mary"),
            ("{\"a\":1}", "{\"a\":1}"),
            ("", ""),
        ] {
            assert_eq!(defuse_cell(cell), expected, "{cell:?}");
        }
        let record = String::from_utf8(csv_record(&["=1+1", "-4.25", "ok"]).unwrap()).unwrap();
        assert_eq!(record, "'=1+1,-4.25,ok\r\n");
    }
}
