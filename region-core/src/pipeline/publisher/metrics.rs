//! The publisher's counters. They live in `PipelineMetrics` (one page per
//! process, served by `metrics::serve`), rendered from here so the
//! publisher's families stay beside the code that counts them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Name, type, help and (labels, value) series of one metric family.
type Family<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a AtomicU64)>);

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

impl PublisherMetrics {
    /// Appends the exposition text of the publisher's families.
    pub fn render_into(&self, out: &mut String) {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
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
        for (family, kind, help, series) in families {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for (labels, value) in series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{family} {}", v(value));
                } else {
                    let _ = writeln!(out, "{family}{{{labels}}} {}", v(value));
                }
            }
        }
    }
}
