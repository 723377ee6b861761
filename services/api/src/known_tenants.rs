//! Which tenants exist, remembered for a short while.
//!
//! A token names its tenant, and a validly signed token may name one that does not exist (it
//! was minted for a tenant never created, or for another deployment). Such a token is refused
//! (401) on every tenant route instead of reading empty lists. Looking the tenant up on every
//! request would add a query to each; so a tenant seen to exist is remembered for
//! [`KnownTenants::TTL`], and only then looked up again. A tenant not found is not
//! remembered, so a tenant created a moment ago is usable at once. A failed lookup is an
//! error (503 when Postgres is down), never a 401: an outage must not look like a bad token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

/// The tenants recently seen to exist, with when each was last confirmed.
#[derive(Debug, Default)]
pub struct KnownTenants {
    seen: Mutex<HashMap<Uuid, Instant>>,
}

impl KnownTenants {
    /// How long a tenant seen to exist is taken to exist without asking again.
    pub const TTL: Duration = Duration::from_secs(30);

    /// Above this many remembered tenants, expired entries are dropped on the next insert.
    const PRUNE_ABOVE: usize = 10_000;

    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `tenant` exists: from memory within the TTL, else from the `tenants` table.
    pub async fn exists(&self, pool: &PgPool, tenant: Uuid) -> Result<bool, sqlx::Error> {
        if self.remembers(tenant, Instant::now()) {
            return Ok(true);
        }
        let found = oms_store::tenants::find(pool, tenant).await?.is_some();
        if found {
            self.remember(tenant, Instant::now());
        }
        Ok(found)
    }

    /// Whether `tenant` was confirmed less than [`Self::TTL`] before `now`.
    fn remembers(&self, tenant: Uuid, now: Instant) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&tenant)
            .is_some_and(|confirmed| now.saturating_duration_since(*confirmed) < Self::TTL)
    }

    /// Records that `tenant` was confirmed at `now`.
    fn remember(&self, tenant: Uuid, now: Instant) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.len() >= Self::PRUNE_ABOVE {
            seen.retain(|_, confirmed| now.saturating_duration_since(*confirmed) < Self::TTL);
        }
        seen.insert(tenant, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_remembered_for_the_ttl_only() {
        let known = KnownTenants::new();
        let tenant = Uuid::from_u128(1);
        let start = Instant::now();
        assert!(!known.remembers(tenant, start));
        known.remember(tenant, start);
        assert!(known.remembers(tenant, start + KnownTenants::TTL / 2));
        assert!(!known.remembers(tenant, start + KnownTenants::TTL));
        assert!(!known.remembers(Uuid::from_u128(2), start));
    }

    #[test]
    fn expired_tenants_are_pruned_when_many_are_remembered() {
        let known = KnownTenants::new();
        let start = Instant::now();
        for i in 0..KnownTenants::PRUNE_ABOVE as u128 {
            known.remember(Uuid::from_u128(i), start);
        }
        known.remember(Uuid::max(), start + KnownTenants::TTL);
        assert_eq!(known.seen.lock().unwrap().len(), 1);
    }
}
