//! The cache of decided states: what each recently used aggregate was left in by a committed
//! transaction, kept by the process that saw it.
//!
//! Two readers use it. The pipeline decides a command on its aggregate's cached state (reading
//! only the events after it, or nothing at all under group commit, where the batch checks the
//! state is still the newest). And the lookups a command makes while deciding — is the
//! supplier active, does the source purchase order exist — are answered from the referenced
//! aggregates' cached states, which the batch checks the same way (see `lookups.rs`).

use cqrs_es::Aggregate;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

use crate::pipeline::Loaded;

/// How many aggregates' decided states a process keeps (each a few kilobytes); past it, an
/// arbitrary one makes room.
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
#[derive(Default)]
pub(crate) struct DecidedCache {
    entries: std::sync::Mutex<HashMap<(Uuid, &'static str, Uuid), CachedState>>,
}

struct CachedState {
    /// A `Loaded<A>` of the aggregate type in the key.
    loaded: Arc<dyn Any + Send + Sync>,
    /// The hash of its newest event.
    hash: Vec<u8>,
}

impl DecidedCache {
    /// The cached state of `id` and the hash of its newest event.
    pub fn get<A>(&self, tenant: Uuid, id: Uuid) -> Option<(Loaded<A>, Vec<u8>)>
    where
        A: Aggregate + Clone + 'static,
    {
        let entries = self
            .entries
            .lock()
            .expect("the cache's lock is never poisoned");
        let entry = entries.get(&(tenant, A::TYPE, id))?;
        let loaded = entry.loaded.downcast_ref::<Loaded<A>>()?;
        Some((loaded.clone(), entry.hash.clone()))
    }

    /// Whether a state of the aggregate is cached: then it has events, and always will
    /// (events are never deleted).
    pub fn holds(&self, tenant: Uuid, aggregate_type: &'static str, id: Uuid) -> bool {
        self.entries
            .lock()
            .expect("the cache's lock is never poisoned")
            .contains_key(&(tenant, aggregate_type, id))
    }

    /// Keeps `loaded` (whose newest event has `hash`), unless a newer state is cached.
    pub fn put<A>(&self, tenant: Uuid, loaded: &Loaded<A>, hash: &[u8])
    where
        A: Aggregate + Clone + 'static,
    {
        if loaded.version == 0 {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .expect("the cache's lock is never poisoned");
        let key = (tenant, A::TYPE, loaded.id);
        if let Some(existing) = entries.get(&key) {
            // Keep the newer of two states (two commands may finish out of order).
            let newer = existing
                .loaded
                .downcast_ref::<Loaded<A>>()
                .is_some_and(|cached| cached.version > loaded.version);
            if newer {
                return;
            }
        } else if entries.len() >= CACHED_AGGREGATES {
            if let Some(evicted) = entries.keys().next().copied() {
                entries.remove(&evicted);
            }
        }
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
        self.entries
            .lock()
            .expect("the cache's lock is never poisoned")
            .remove(&(tenant, aggregate_type, id));
    }
}
