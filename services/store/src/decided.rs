//! The cache of decided states: what each recently used aggregate was left in by a committed
//! transaction, kept by the process that saw it.
//!
//! Two readers use it. The pipeline decides a command on its aggregate's cached state (reading
//! only the events after it, or nothing at all under group commit, where the batch checks the
//! state is still the newest). And the lookups a command makes while deciding — is the
//! supplier active, does the source purchase order exist — are answered from the referenced
//! aggregates' cached states, which the batch checks the same way (see `lookups.rs`).

use cqrs_es::Aggregate;
use hashlink::LruCache;
use std::any::Any;
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

use crate::pipeline::Loaded;

/// How many aggregates' decided states a process keeps (each a few kilobytes); past it, the
/// one used longest ago makes room. (An arbitrary one did before: once the cache was full —
/// after about 20 s of the benchmark's write path — states of orders in flight and of the
/// references every create consults were evicted and read again, and the write path ran
/// 20–40 % slower; docs/benchmarks.md, "The cache of decided states evicts the one used
/// longest ago".)
const CACHED_AGGREGATES: usize = 10_000;

/// The state each recently used aggregate was left in, so that a command reads only the
/// events after it instead of its whole stream: a command on an order with 1,000 events then
/// costs what one on an order with 10 does.
///
/// An entry is only ever a state some committed transaction saw or wrote, and it names the
/// sequence and hash of its newest event. A command reads its aggregate's events from that
/// sequence on, in its own transaction: the first row must be the cached newest event with the
/// same hash, or the entry is ignored and the stream read whole. Newer events — written by a
/// concurrent command or another process — are applied to a copy, each once (the cqrs-es 0.5
/// double-apply trap is in its snapshot mode, which is not used). A state that is stale
/// nonetheless cannot be written from: the append's primary key (tenant, aggregate, sequence)
/// refuses a sequence another writer took.
pub(crate) struct DecidedCache {
    entries: Mutex<LruCache<(Uuid, &'static str, Uuid), CachedState>>,
}

impl Default for DecidedCache {
    fn default() -> Self {
        Self::with_capacity(CACHED_AGGREGATES)
    }
}

struct CachedState {
    /// A `Loaded<A>` of the aggregate type in the key.
    loaded: Arc<dyn Any + Send + Sync>,
    /// The hash of its newest event.
    hash: Vec<u8>,
}

impl DecidedCache {
    /// A cache of at most `capacity` states.
    fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn entries(&self) -> MutexGuard<'_, LruCache<(Uuid, &'static str, Uuid), CachedState>> {
        self.entries
            .lock()
            .expect("the cache's lock is never poisoned")
    }

    /// A copy of the cached state of `id` and the hash of its newest event.
    pub fn get<A>(&self, tenant: Uuid, id: Uuid) -> Option<(Loaded<A>, Vec<u8>)>
    where
        A: Aggregate + Clone + 'static,
    {
        self.read(tenant, id, |loaded: &Loaded<A>, hash| {
            (loaded.clone(), hash.to_vec())
        })
    }

    /// What `look` makes of the cached state of `id` and the hash of its newest event, without
    /// copying the state (a lookup needs one flag of it). Counts as a use.
    pub fn read<A, T>(
        &self,
        tenant: Uuid,
        id: Uuid,
        look: impl FnOnce(&Loaded<A>, &[u8]) -> T,
    ) -> Option<T>
    where
        A: Aggregate + 'static,
    {
        let mut entries = self.entries();
        let entry = entries.get(&(tenant, A::TYPE, id))?;
        let loaded = entry.loaded.downcast_ref::<Loaded<A>>()?;
        Some(look(loaded, &entry.hash))
    }

    /// Whether a state of the aggregate is cached: then it has events, and always will
    /// (events are never deleted).
    pub fn holds(&self, tenant: Uuid, aggregate_type: &'static str, id: Uuid) -> bool {
        self.entries().contains_key(&(tenant, aggregate_type, id))
    }

    /// Keeps `loaded` (whose newest event has `hash`), unless a newer state is cached.
    pub fn put<A>(&self, tenant: Uuid, loaded: &Loaded<A>, hash: &[u8])
    where
        A: Aggregate + Clone + 'static,
    {
        if loaded.version == 0 {
            return;
        }
        let mut entries = self.entries();
        let key = (tenant, A::TYPE, loaded.id);
        if let Some(existing) = entries.peek(&key) {
            // Keep the newer of two states (two commands may finish out of order).
            let newer = existing
                .loaded
                .downcast_ref::<Loaded<A>>()
                .is_some_and(|cached| cached.version > loaded.version);
            if newer {
                return;
            }
        }
        // Past the capacity, the state used longest ago goes.
        entries.insert(
            key,
            CachedState {
                loaded: Arc::new(loaded.clone()),
                hash: hash.to_vec(),
            },
        );
    }

    /// Drops the aggregate's state (the next command on it reads its stream).
    pub fn forget(&self, tenant: Uuid, aggregate_type: &'static str, id: Uuid) {
        self.entries().remove(&(tenant, aggregate_type, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::purchase_order::PurchaseOrder;

    fn state(id: Uuid, version: i64) -> Loaded<PurchaseOrder> {
        Loaded {
            id,
            aggregate: PurchaseOrder::default(),
            version,
            created_at: None,
            updated_at: None,
        }
    }

    #[test]
    fn a_full_cache_evicts_the_state_used_longest_ago_and_keeps_the_ones_in_use() {
        let tenant = Uuid::now_v7();
        let cache = DecidedCache::with_capacity(3);
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        for id in &ids[..3] {
            cache.put(tenant, &state(*id, 1), b"h");
        }
        // The first is used again (a command on an order in flight); the second is not.
        assert!(cache.get::<PurchaseOrder>(tenant, ids[0]).is_some());
        cache.put(tenant, &state(ids[3], 1), b"h");
        assert!(
            cache.holds(tenant, "purchase_order", ids[0]),
            "in use: kept"
        );
        assert!(
            !cache.holds(tenant, "purchase_order", ids[1]),
            "used longest ago: evicted"
        );
        assert!(cache.holds(tenant, "purchase_order", ids[2]));
        assert!(cache.holds(tenant, "purchase_order", ids[3]));
        // An older state never replaces a newer one.
        cache.put(tenant, &state(ids[0], 5), b"new");
        cache.put(tenant, &state(ids[0], 4), b"old");
        let (kept, hash) = cache.get::<PurchaseOrder>(tenant, ids[0]).unwrap();
        assert_eq!((kept.version, hash.as_slice()), (5, b"new".as_slice()));
    }
}
