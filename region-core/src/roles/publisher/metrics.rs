//! The publisher's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`): prometheus-client series registered in
//! the role's own registry, so that the page's text is the library's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::roles::common::{Exposition, PipelineRegistry};

/// What the publisher counts: each field a series of a family in
/// `registry`.
#[derive(Debug)]
pub struct PublisherMetrics {
    /// Events read from the events topic.
    pub consumed: Counter,
    /// Events older than what their key has (or will have): nothing written.
    pub stale: Counter,
    /// Events whose write replaced a pending one of the same key.
    pub coalesced: Counter,
    /// Events that are not readable (not JSON, not an event): copied to
    /// the dead-letter topic with their reason.
    pub unreadable: Counter,
    /// Events of a city this region does not serve: dead-lettered too.
    pub not_served: Counter,
    /// Events copied to the dead-letter topic.
    pub dead_lettered: Counter,
    /// Dead-letter sends the broker did not acknowledge (each is tried
    /// again): rising means the dead-letter topic cannot be written.
    pub dead_letter_send_failures: Counter,
    /// Gauge: dead letters not sent within the deadline, sent again in the
    /// background; their events stay uncommitted and their partitions
    /// paused until they are. Above zero: stuck (the alert).
    pub dead_letter_stuck: Gauge,
    /// Entries the sink wrote.
    pub written: Counter,
    /// Entries not written because KV holds (the edge's route says so) or
    /// was claimed for (`marks`) the same or a newer version.
    pub skipped_older: Counter,
    /// Bulk calls that failed (sink unreachable, refused): retried.
    pub failures: Counter,
    /// Claims of KV marks that failed (the catalog unreachable): retried,
    /// nothing written meanwhile.
    pub mark_failures: Counter,
    /// Cities whose cached pages could not be invalidated.
    pub invalidate_failures: Counter,
    /// Gauge: keys with a write pending.
    pub pending: Gauge,
    /// The families above, and the other pipeline roles' at zero.
    registry: Registry,
}

impl Default for PublisherMetrics {
    fn default() -> Self {
        let mut r = PipelineRegistry::default();
        let [consumed, stale, coalesced, unreadable, not_served] = r.counters(
            "cityboard_publisher_events",
            "Events the publisher read, and what became of those not written as such",
            "result",
            ["consumed", "stale", "coalesced", "unreadable", "not_served"],
        );
        let dead_lettered = r.counter(
            "cityboard_publisher_dead_letters",
            "Events copied to the dead-letter topic",
        );
        let dead_letter_send_failures = r.counter(
            "cityboard_publisher_dead_letter_send_failures",
            "Dead-letter sends the broker did not acknowledge (each is tried again)",
        );
        let dead_letter_stuck = r.gauge(
            "cityboard_publisher_dead_letter_stuck",
            "Dead letters not sent within the deadline: their events wait uncommitted, their partitions paused, until the broker takes them",
        );
        let mark_failures = r.counter(
            "cityboard_publisher_mark_failures",
            "Claims of durable KV marks that failed and were retried",
        );
        let [written, skipped_older] = r.counters(
            "cityboard_publisher_kv_writes",
            "KV entries sent, by what the sink did",
            "result",
            ["written", "skipped_older"],
        );
        let failures = r.counter(
            "cityboard_publisher_kv_failures",
            "Bulk KV calls that failed and were retried",
        );
        let invalidate_failures = r.counter(
            "cityboard_publisher_invalidate_failures",
            "Cities whose cached pages could not be invalidated",
        );
        let pending = r.gauge(
            "cityboard_publisher_pending_keys",
            "Keys with a coalesced write waiting",
        );
        PublisherMetrics {
            consumed,
            stale,
            coalesced,
            unreadable,
            not_served,
            dead_lettered,
            dead_letter_send_failures,
            dead_letter_stuck,
            written,
            skipped_older,
            failures,
            mark_failures,
            invalidate_failures,
            pending,
            registry: r.finish(),
        }
    }
}

impl Exposition for PublisherMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::common::{add, openmetrics_text, recorded_families, served_families, set};

    #[test]
    fn renders_the_series_the_write_bench_reads() {
        let m = PublisherMetrics::default();
        add(&m.consumed, 5);
        add(&m.skipped_older, 2);
        set(&m.pending, 7);
        let text = openmetrics_text(m.registry());
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_publisher_events_total{result=\"consumed\"} 5");
        has("cityboard_publisher_events_total{result=\"unreadable\"} 0");
        has("cityboard_publisher_kv_writes_total{result=\"skipped_older\"} 2");
        has("cityboard_publisher_pending_keys 7");
        has("cityboard_publisher_kv_failures_total 0");
        has("cityboard_publisher_events_total{result=\"not_served\"} 0");
        has("cityboard_publisher_dead_letter_stuck 0");
        // The other pipeline roles' families, at zero.
        has("cityboard_writer_paused_partitions 0");
        assert_eq!(served_families(&text), recorded_families("publisher"));
    }
}
