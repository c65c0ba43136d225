//! The relay's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`). Counters are kept by hand for now.

use std::sync::atomic::AtomicU64;

use crate::roles::common::{Exposition, write_family};

/// Everything the relay counts.
#[derive(Debug, Default)]
pub struct RelayMetrics {
    /// Outbox rows produced to the events topic.
    pub relayed: AtomicU64,
    /// Outbox rows deleted after their delivery was acknowledged.
    pub outbox_deleted: AtomicU64,
    /// Relay rounds that failed (shard down, broker down): retried.
    pub relay_failures: AtomicU64,
}

impl Exposition for RelayMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        write_family(
            &mut out,
            (
                "cityboard_relay_events_total",
                "counter",
                "Outbox rows the relay handled, by step.",
                vec![
                    ("step=\"produced\"", &self.relayed),
                    ("step=\"deleted\"", &self.outbox_deleted),
                ],
            ),
        );
        write_family(
            &mut out,
            (
                "cityboard_relay_failures_total",
                "counter",
                "Relay rounds that failed and were retried.",
                vec![("", &self.relay_failures)],
            ),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_families() {
        let text = RelayMetrics::default().render();
        assert!(text.contains("cityboard_relay_events_total{step=\"produced\"} 0"));
        assert!(text.contains("# TYPE cityboard_relay_failures_total counter"));
        assert!(text.contains("cityboard_relay_failures_total 0"));
    }
}
