//! The publisher's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`). Counters are kept by hand for now.

use std::sync::atomic::AtomicU64;

use crate::roles::common::{Exposition, Family, write_family};

/// What the publisher counts.
#[derive(Debug, Default)]
pub struct PublisherMetrics {
    /// Events read from the events topic.
    pub consumed: AtomicU64,
    /// Events older than what their key has (or will have): nothing written.
    pub stale: AtomicU64,
    /// Events whose write replaced a pending one of the same key.
    pub coalesced: AtomicU64,
    /// Events that are not readable (not JSON, not an event): skipped.
    pub unreadable: AtomicU64,
    /// Entries the sink wrote.
    pub written: AtomicU64,
    /// Entries the sink refused as older than what it holds.
    pub skipped_older: AtomicU64,
    /// Bulk calls that failed (sink unreachable, refused): retried.
    pub failures: AtomicU64,
    /// Cities whose cached pages could not be invalidated.
    pub invalidate_failures: AtomicU64,
    /// Gauge: keys with a write pending.
    pub pending: AtomicU64,
}

impl Exposition for PublisherMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        let families: [Family<'_>; 5] = [
            (
                "cityboard_publisher_events_total",
                "counter",
                "Events the publisher read, and what became of those not written as such.",
                vec![
                    ("result=\"consumed\"", &self.consumed),
                    ("result=\"stale\"", &self.stale),
                    ("result=\"coalesced\"", &self.coalesced),
                    ("result=\"unreadable\"", &self.unreadable),
                ],
            ),
            (
                "cityboard_publisher_kv_writes_total",
                "counter",
                "KV entries sent, by what the sink did.",
                vec![
                    ("result=\"written\"", &self.written),
                    ("result=\"skipped_older\"", &self.skipped_older),
                ],
            ),
            (
                "cityboard_publisher_kv_failures_total",
                "counter",
                "Bulk KV calls that failed and were retried.",
                vec![("", &self.failures)],
            ),
            (
                "cityboard_publisher_invalidate_failures_total",
                "counter",
                "Cities whose cached pages could not be invalidated.",
                vec![("", &self.invalidate_failures)],
            ),
            (
                "cityboard_publisher_pending_keys",
                "gauge",
                "Keys with a coalesced write waiting.",
                vec![("", &self.pending)],
            ),
        ];
        for family in families {
            write_family(&mut out, family);
        }
        out
    }
}
