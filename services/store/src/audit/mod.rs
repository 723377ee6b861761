//! Audit tooling over the event store: streaming export and offline verification
//! ([`export`]), an order as it was at an instant ([`show`]), and the comparison of a tenant's
//! chain with its anchors — each tenant's head (position, hash), published outside the
//! database by the relay. Someone who can write to Postgres and recomputes the whole chain
//! after a change still disagrees with the anchors taken before the change.

pub mod export;
pub mod show;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ChainReport, EventStore};

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

/// The chain report with the anchors checked too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnchoredReport {
    /// The chain recomputed from the store.
    #[serde(flatten)]
    pub chain: ChainReport,
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
        let stored = store.hash_at(tenant, anchor.position).await?;
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
