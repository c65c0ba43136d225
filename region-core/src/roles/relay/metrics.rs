//! The relay's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`): prometheus-client series registered in
//! the role's own registry, so that the page's text is the library's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::roles::common::{Exposition, PipelineRegistry};

/// Everything the relay counts: each field a series of a family in
/// `registry`.
#[derive(Debug)]
pub struct RelayMetrics {
    /// Outbox rows produced to the events topic.
    pub relayed: Counter,
    /// Outbox rows deleted after their delivery was acknowledged.
    pub outbox_deleted: Counter,
    /// Relay rounds that failed (shard down, broker down): retried.
    pub relay_failures: Counter,
    /// The families above, and the other pipeline roles' at zero.
    registry: Registry,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let mut r = PipelineRegistry::default();
        let [relayed, outbox_deleted] = r.counters(
            "cityboard_relay_events",
            "Outbox rows the relay handled, by step",
            "step",
            ["produced", "deleted"],
        );
        let relay_failures = r.counter(
            "cityboard_relay_failures",
            "Relay rounds that failed and were retried",
        );
        RelayMetrics {
            relayed,
            outbox_deleted,
            relay_failures,
            registry: r.finish(),
        }
    }
}

impl Exposition for RelayMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::common::{add, openmetrics_text};

    #[test]
    fn renders_both_families() {
        let m = RelayMetrics::default();
        add(&m.outbox_deleted, 4);
        let text = openmetrics_text(m.registry());
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_relay_events_total{step=\"produced\"} 0");
        has("cityboard_relay_events_total{step=\"deleted\"} 4");
        has("# TYPE cityboard_relay_failures counter");
        has("cityboard_relay_failures_total 0");
        // The other pipeline roles' families, at zero.
        has("cityboard_writer_commands_total 0");
        assert_eq!(text.matches("# TYPE ").count(), 19, "{text}");
    }
}
