//! The counters served at `GET /metrics`, in the Prometheus text format, through
//! `prometheus-client`. The registry is shared: the relay and the projector register their own
//! counters into it when they run in the same process, without the API knowing them.

use oms_store::progress::Lag;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// The `status` label of the response counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status code.
    pub status: u16,
}

/// The service's metrics: the API's counters, the lag gauges refreshed at each scrape, and
/// whatever other roles of the process registered.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Responses by status code.
    responses: Family<StatusLabel, Counter>,
    /// Commands that wrote events.
    committed: Counter,
    /// Commands answered from an idempotency record.
    replayed: Counter,
    /// Commands refused (any 4xx).
    refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Registry::default())
    }
}

impl Metrics {
    /// The API's metrics in `registry`, which may already hold other roles' counters.
    pub fn new(mut registry: Registry) -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::default()),
            responses: Family::default(),
            committed: Counter::default(),
            replayed: Counter::default(),
            refused: Counter::default(),
        };
        registry.register(
            "oms_http_responses",
            "HTTP responses by status code",
            metrics.responses.clone(),
        );
        registry.register(
            "oms_commands_committed",
            "Commands whose events were committed",
            metrics.committed.clone(),
        );
        registry.register(
            "oms_commands_replayed",
            "Commands answered from an idempotency record",
            metrics.replayed.clone(),
        );
        registry.register(
            "oms_commands_refused",
            "Commands refused with a client error",
            metrics.refused.clone(),
        );
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }

    /// Adds the command pipeline's group-commit counters.
    pub fn register_group_commit(&self, counters: &oms_store::group_commit::GroupCommitCounters) {
        counters.register(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Counts a response.
    pub fn response(&self, status: u16) {
        self.responses.get_or_create(&StatusLabel { status }).inc();
    }

    /// Counts a committed command.
    pub fn committed(&self) {
        self.committed.inc();
    }

    /// Counts a replayed command.
    pub fn replayed(&self) {
        self.replayed.inc();
    }

    /// Counts a refused command.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// The text exposition of everything registered, with the pipeline's lag per tenant.
    pub fn render(&self, lag: &[Lag]) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %err, "metrics: encoding failed");
        }
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_string();
        body + &render_lag(lag) + "# EOF\n"
    }
}

/// A registry other roles can add their counters to before the API's metrics are built.
pub fn registry() -> Registry {
    Registry::default()
}

/// Shared handle to the metrics.
pub type SharedMetrics = Arc<Metrics>;

/// The lag gauges, written as text here rather than through registered gauges: they are a
/// reading of the database taken at each scrape (not state this process keeps), a tenant that
/// is gone must disappear at once, and seconds are given to the millisecond, which
/// prometheus-client's float encoding does not offer.
fn render_lag(lag: &[Lag]) -> String {
    let mut out = String::new();
    for (name, help) in [
        ("oms_relay_lag_events", "Events committed but not yet published, per tenant."),
        ("oms_relay_lag_seconds", "Age of the oldest event not yet published, per tenant."),
        ("oms_projection_lag_events", "Events committed but not yet applied, per tenant and projection."),
        ("oms_projection_lag_seconds", "Age of the oldest event not yet applied (commit to read model), per tenant and projection."),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for row in lag {
            let relay = row.stage == "relay";
            if relay != name.starts_with("oms_relay") {
                continue;
            }
            let labels = if relay {
                format!("tenant=\"{}\"", row.tenant)
            } else {
                format!("tenant=\"{}\",projection=\"{}\"", row.tenant, row.stage)
            };
            if name.ends_with("_events") {
                let _ = writeln!(out, "{name}{{{labels}}} {}", row.events);
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {:.3}", row.seconds);
            }
        }
    }
    out
}
