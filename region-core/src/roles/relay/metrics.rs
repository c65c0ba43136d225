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
    use crate::roles::common::{
        add, openmetrics_response, openmetrics_text, recorded_families, served_families,
    };

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
        // The other pipeline roles' families, at zero, as one series.
        has("cityboard_writer_commands_total 0");
        has("cityboard_publisher_pending_keys 0");
        has(
            "# HELP cityboard_writer_paused_partitions Command partitions paused because \
             blocked commands passed the bound; pauses_total counts each pause.",
        );
        assert_eq!(served_families(&text), recorded_families("relay"));
    }

    #[tokio::test]
    async fn the_page_is_openmetrics_text() {
        let m = RelayMetrics::default();
        add(&m.relay_failures, 2);
        let res = openmetrics_response(openmetrics_text(m.registry()));
        assert_eq!(
            res.headers()[axum::http::header::CONTENT_TYPE],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // The role's own families first, in the order registered.
        assert_eq!(
            lines[0],
            "# HELP cityboard_relay_events Outbox rows the relay handled, by step."
        );
        assert_eq!(lines[1], "# TYPE cityboard_relay_events counter");
        assert!(lines.contains(&"cityboard_relay_failures_total 2"));
        assert_eq!(lines.last(), Some(&"# EOF"));
    }

    /// A family the table does not name would be listed by its role only.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "PIPELINE_FAMILIES")]
    fn a_family_missing_from_the_table_is_caught() {
        PipelineRegistry::default().counter("cityboard_relay_retries", "Relay retries");
    }

    /// Nor may a role's help drift from the stand-ins' on the other pages.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "PIPELINE_FAMILIES")]
    fn a_help_text_unlike_the_tables_is_caught() {
        PipelineRegistry::default().counter("cityboard_relay_failures", "Failed rounds");
    }
}
