//! Audit tooling over the event store: streaming export and offline verification
//! ([`export`]), an order as it was at an instant ([`show`]), signed anchors ([`anchor`]) and
//! the verification of a tenant's chain against them — each tenant's head (position, hash),
//! signed with a key the database never holds and published outside the database by the
//! relay. Someone who can write to Postgres and recomputes the whole chain after a change
//! still disagrees with the anchors taken before the change, and cannot sign new ones.

pub mod anchor;
pub mod export;
pub mod show;

pub use anchor::{Anchor, AnchorKey, AnchorKeyError, AnchorProblem};

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

use crate::hash::{self, GENESIS};
use crate::{ChainReport, EventStore, Head};

/// Events read per statement by the verification: each statement stays short (well inside
/// the service's `statement_timeout`) however long the chain is.
const VERIFY_BATCH: i64 = 1000;

/// At most this many anchor problems are listed in a report (all are counted).
const MAX_LISTED_PROBLEMS: usize = 50;

/// One message read from the anchors' stream: its stream sequence and the anchor, or why its
/// body is not one. Unreadable messages are reported, not skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedAnchor {
    /// The message's sequence in the anchors' stream (0 when not read from a stream).
    pub sequence: u64,
    /// The anchor, or why the message is not one.
    pub anchor: Result<Anchor, String>,
}

impl From<Anchor> for ReceivedAnchor {
    fn from(anchor: Anchor) -> Self {
        Self {
            sequence: 0,
            anchor: Ok(anchor),
        }
    }
}

/// Something wrong with the anchors of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchorIssue {
    /// The anchor's message in the stream, when the problem is one anchor's.
    pub sequence: Option<u64>,
    /// The anchored position, when known.
    pub position: Option<i64>,
    /// What is wrong.
    pub problem: String,
}

/// The chain report with the anchors checked too. `ok` (in the flattened chain report) is
/// true only when the chain recomputes, at least one anchor is valid (when there are events),
/// every anchor is signed and matches the stored hash at its position, and the newest valid
/// anchor is not stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredReport {
    /// The chain recomputed from the store.
    #[serde(flatten)]
    pub chain: ChainReport,
    /// Anchors read for the tenant (valid or not).
    pub anchors_checked: u64,
    /// Anchors whose signature checked.
    pub anchors_valid: u64,
    /// The newest position a valid anchor vouches for with the stored hash: the chain up to
    /// here is what was anchored (0: nothing is).
    pub anchored_position: i64,
    /// When that anchor was taken.
    pub anchored_at: Option<DateTime<Utc>>,
    /// Events after `anchored_position` (up to the head): what no anchor covers yet.
    pub unanchored_events: i64,
    /// The bound on how old an unanchored event may be, in seconds.
    pub max_anchor_age_secs: u64,
    /// The first valid anchor whose position's stored hash differs from the anchored one (or
    /// whose position is missing): the chain was rewritten at or before it.
    pub first_bad_anchor: Option<i64>,
    /// Every problem with the anchors (the first [`MAX_LISTED_PROBLEMS`]).
    pub anchor_problems: Vec<AnchorIssue>,
    /// How many problems there were in all.
    pub anchor_problems_total: u64,
}

/// What the verification needs besides the store: the keys anchors may be signed with and how
/// old an event may be before an anchor must cover it.
#[derive(Debug, Clone)]
pub struct AnchorPolicy {
    /// The keys accepted (the current one first; older ones after a rotation).
    pub keys: Vec<AnchorKey>,
    /// Events older than this must be covered by a valid anchor.
    pub max_age: Duration,
}

/// A valid anchor's stream sequence, hash and time.
type ValidAnchor = (u64, Vec<u8>, DateTime<Utc>);

/// Recomputes `tenant`'s chain and checks it against its anchors (read from NATS *before*
/// this call, so that every anchored position exists in the snapshot read here):
///
/// - every anchor must be signed by a key of `policy` for this tenant (unsigned, unreadable,
///   forged or foreign anchors are reported and fail the verification);
/// - a tenant with events must have a valid anchor;
/// - every valid anchor's position must still carry the anchored hash;
/// - the first event after the newest valid anchor must not be older than `policy.max_age`
///   (the anchorer stopped, or someone holds anchors back).
///
/// The chain is read in batches of [`VERIFY_BATCH`] events inside one read-only
/// repeatable-read transaction: one consistent snapshot, no statement that grows with the
/// chain, memory that does not grow with it either.
pub async fn verify_with_anchors(
    store: &EventStore,
    tenant: Uuid,
    anchors: &[ReceivedAnchor],
    policy: &AnchorPolicy,
) -> Result<AnchoredReport, sqlx::Error> {
    let mut problems = Vec::new();
    let mut valid: BTreeMap<i64, Vec<ValidAnchor>> = BTreeMap::new();
    let mut valid_count = 0;
    for received in anchors {
        let anchor = match &received.anchor {
            Ok(anchor) => anchor,
            Err(err) => {
                problems.push(AnchorIssue {
                    sequence: Some(received.sequence),
                    position: None,
                    problem: format!("not an anchor: {err}"),
                });
                continue;
            }
        };
        match anchor.check(tenant, &policy.keys) {
            Ok(()) => {
                valid_count += 1;
                let hash = anchor.hash_bytes().unwrap_or_default();
                valid.entry(anchor.position).or_default().push((
                    received.sequence,
                    hash,
                    anchor.at,
                ));
            }
            Err(problem) => problems.push(AnchorIssue {
                sequence: Some(received.sequence),
                position: Some(anchor.position),
                problem: problem.to_string(),
            }),
        }
    }
    let newest_valid = valid.keys().next_back().copied().unwrap_or(0);
    let scan = scan_chain(store, tenant, &valid, newest_valid).await?;
    let mut chain = scan.report;

    // Each valid anchor against the stored hash at its position, oldest first.
    let mut first_bad_anchor = None;
    let mut last_good = 0;
    let mut anchored_at = None;
    for (position, entries) in &valid {
        for (sequence, hash, at) in entries {
            if scan.anchored_hashes.get(position) == Some(hash) {
                if first_bad_anchor.is_none() {
                    last_good = *position;
                    anchored_at = Some(*at);
                }
            } else {
                first_bad_anchor.get_or_insert(*position);
                problems.push(AnchorIssue {
                    sequence: Some(*sequence),
                    position: Some(*position),
                    problem: match scan.anchored_hashes.get(position) {
                        Some(_) => "the stored hash at the anchored position differs".into(),
                        None => "no event at the anchored position".into(),
                    },
                });
            }
        }
    }
    if first_bad_anchor.is_some() {
        // The rewrite happened after the last anchor that still matches.
        let earliest = last_good + 1;
        chain.first_bad_position = Some(
            chain
                .first_bad_position
                .map_or(earliest, |p| p.min(earliest)),
        );
    }
    if chain.head_position > 0 && valid_count == 0 {
        problems.push(AnchorIssue {
            sequence: None,
            position: None,
            problem: format!(
                "no valid anchor: nothing vouches for the tenant's {} events",
                chain.head_position
            ),
        });
    }
    let max_age = chrono::Duration::from_std(policy.max_age).unwrap_or(chrono::Duration::MAX);
    if let Some(recorded_at) = scan.first_after_newest {
        if Utc::now() - recorded_at > max_age {
            problems.push(AnchorIssue {
                sequence: None,
                position: Some(newest_valid + 1),
                problem: format!(
                    "stale anchors: the newest valid anchor is at position {newest_valid}, and \
                     the event after it was recorded at {} — longer ago than {} s",
                    hash::format_timestamp(recorded_at),
                    policy.max_age.as_secs()
                ),
            });
        }
    }
    let total = u64::try_from(problems.len()).unwrap_or(u64::MAX);
    chain.ok = chain.ok && problems.is_empty();
    problems.truncate(MAX_LISTED_PROBLEMS);
    Ok(AnchoredReport {
        anchors_checked: u64::try_from(anchors.len()).unwrap_or(u64::MAX),
        anchors_valid: valid_count,
        anchored_position: last_good,
        anchored_at,
        unanchored_events: (chain.head_position - last_good).max(0),
        max_anchor_age_secs: policy.max_age.as_secs(),
        first_bad_anchor,
        anchor_problems: problems,
        anchor_problems_total: total,
        chain,
    })
}

/// Recomputes `tenant`'s chain alone (no anchors), in batches inside one snapshot like
/// [`verify_with_anchors`]. Proves only that the chain is consistent: a writer who recomputed
/// it passes.
pub async fn verify_chain(store: &EventStore, tenant: Uuid) -> Result<ChainReport, sqlx::Error> {
    Ok(scan_chain(store, tenant, &BTreeMap::<i64, ()>::new(), 0)
        .await?
        .report)
}

/// What one pass over the chain found.
struct Scan {
    report: ChainReport,
    /// The stored hash at each position some valid anchor names.
    anchored_hashes: BTreeMap<i64, Vec<u8>>,
    /// When the first event after `after` was recorded.
    first_after_newest: Option<DateTime<Utc>>,
}

async fn scan_chain<T>(
    store: &EventStore,
    tenant: Uuid,
    anchored: &BTreeMap<i64, T>,
    after: i64,
) -> Result<Scan, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    let head: Head = sqlx::query_as::<_, (i64, Vec<u8>)>(
        "select position, hash from tenant_heads where tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?
    .map_or(
        Head {
            position: 0,
            hash: GENESIS.to_vec(),
        },
        |(position, hash)| Head { position, hash },
    );
    let mut previous = GENESIS.to_vec();
    let mut expected_position = 1;
    let mut checked = 0;
    let mut first_bad = None;
    let mut anchored_hashes = BTreeMap::new();
    let mut first_after_newest = None;
    let mut cursor = 0;
    loop {
        let batch =
            EventStore::events_between(&mut *tx, tenant, cursor, i64::MAX, VERIFY_BATCH).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.position;
        for event in batch {
            checked += 1;
            if first_bad.is_none() {
                let recomputed = hash::chain_hash(&previous, &event);
                if event.position != expected_position || recomputed.as_slice() != event.hash {
                    // A deleted row shows as the first position that is not the expected one.
                    first_bad = Some(expected_position.min(event.position));
                }
            }
            if anchored.contains_key(&event.position) {
                anchored_hashes.insert(event.position, event.hash.clone());
            }
            if event.position > after && first_after_newest.is_none() {
                first_after_newest = Some(event.recorded_at);
            }
            previous = event.hash;
            expected_position += 1;
        }
    }
    tx.commit().await?;
    if first_bad.is_none() && (head.position != expected_position - 1 || head.hash != previous) {
        // Events missing at the end (or a head that does not match them).
        first_bad = Some(expected_position);
    }
    Ok(Scan {
        report: ChainReport {
            ok: first_bad.is_none(),
            events_checked: checked,
            head_position: head.position,
            head_hash: hex::encode(&head.hash),
            first_bad_position: first_bad,
        },
        anchored_hashes,
        first_after_newest,
    })
}

/// The default bound on how old an unanchored event may be: the relay anchors every 10 s,
/// so five minutes leaves room for a restart or a NATS hiccup but not for a stopped anchorer.
pub const DEFAULT_MAX_ANCHOR_AGE: Duration = Duration::from_secs(300);
