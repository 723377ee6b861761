//! Counters served at `GET /metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::projector::ProjectorMetrics;
use crate::relay::RelayMetrics;
use oms_projections::Projection;

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Commands that wrote events.
    commands_committed: AtomicU64,
    /// Commands answered from an idempotency record.
    commands_replayed: AtomicU64,
    /// Commands refused (any 4xx).
    commands_refused: AtomicU64,
    /// The relay's counters, when this process runs the relay.
    relay: OnceLock<Arc<RelayMetrics>>,
    /// The projector's counters, when this process runs the projector.
    projector: OnceLock<Arc<std::collections::HashMap<Projection, ProjectorMetrics>>>,
}

impl Metrics {
    /// Serves the relay's counters too.
    pub fn attach_relay(&self, relay: Arc<RelayMetrics>) {
        let _ = self.relay.set(relay);
    }

    /// Serves the projector's counters too.
    pub fn attach_projector(
        &self,
        projector: Arc<std::collections::HashMap<Projection, ProjectorMetrics>>,
    ) {
        let _ = self.projector.set(projector);
    }

    /// Counts a response.
    pub fn response(&self, status: u16) {
        if let Ok(mut map) = self.responses.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    /// Counts a committed command.
    pub fn committed(&self) {
        self.commands_committed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a replayed command.
    pub fn replayed(&self) {
        self.commands_replayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused command.
    pub fn refused(&self) {
        self.commands_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP oms_http_responses_total HTTP responses by status code.\n");
        out.push_str("# TYPE oms_http_responses_total counter\n");
        if let Ok(map) = self.responses.lock() {
            for (status, count) in map.iter() {
                let _ = writeln!(
                    out,
                    "oms_http_responses_total{{status=\"{status}\"}} {count}"
                );
            }
        }
        for (name, help, value) in [
            (
                "oms_commands_committed_total",
                "Commands whose events were committed.",
                &self.commands_committed,
            ),
            (
                "oms_commands_replayed_total",
                "Commands answered from an idempotency record.",
                &self.commands_replayed,
            ),
            (
                "oms_commands_refused_total",
                "Commands refused with a client error.",
                &self.commands_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
