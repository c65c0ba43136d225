//! The writer's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`). Counters are kept by hand for now.

use std::sync::atomic::AtomicU64;

use crate::roles::common::{Exposition, Family, write_family};

/// Everything the writer counts.
#[derive(Debug, Default)]
pub struct WriterMetrics {
    /// Commands applied for the first time.
    pub applied: AtomicU64,
    /// Commands found in `applied_commands` already (a replay): nothing
    /// written again.
    pub replayed: AtomicU64,
    /// Commands rejected: by `apply` (e.g. editing someone else's post) or
    /// before it (poison: not JSON, unknown type, city not served).
    pub rejected: AtomicU64,
    /// Messages copied to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Commands a frozen city's fence refused and the writer held.
    pub held: AtomicU64,
    /// Commands sent again after the map moved their city.
    pub rerouted: AtomicU64,
    /// `apply` calls (one transaction each).
    pub batches: AtomicU64,
    /// `apply` calls that failed (shard down, conflict): retried.
    pub apply_failures: AtomicU64,
    /// Apply notifications that could not be stored in Redis.
    pub notify_failures: AtomicU64,
    /// Gauge: commands in memory, not applied yet.
    pub queued: AtomicU64,
    /// Gauge: of those, commands waiting on a frozen city or a shard down.
    pub blocked: AtomicU64,
    /// Gauge: partitions paused because blocked commands passed the bound
    /// (which also delays the other cities sharing them).
    pub paused_partitions: AtomicU64,
    /// Times a partition was paused.
    pub pauses: AtomicU64,
}

impl Exposition for WriterMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        let families: [Family<'_>; 8] = [
            (
                "cityboard_writer_commands_total",
                "counter",
                "Commands the writer finished, by result.",
                vec![
                    ("result=\"applied\"", &self.applied),
                    ("result=\"replayed\"", &self.replayed),
                    ("result=\"rejected\"", &self.rejected),
                ],
            ),
            (
                "cityboard_writer_dead_letters_total",
                "counter",
                "Messages copied to the dead-letter topic.",
                vec![("", &self.dead_lettered)],
            ),
            (
                "cityboard_writer_refused_total",
                "counter",
                "Commands a shard's fence refused, by what the writer did.",
                vec![
                    ("action=\"held\"", &self.held),
                    ("action=\"rerouted\"", &self.rerouted),
                ],
            ),
            (
                "cityboard_writer_batches_total",
                "counter",
                "Apply transactions, by result.",
                vec![
                    ("result=\"ok\"", &self.batches),
                    ("result=\"failed\"", &self.apply_failures),
                ],
            ),
            (
                "cityboard_writer_notify_failures_total",
                "counter",
                "Apply notifications Redis did not take.",
                vec![("", &self.notify_failures)],
            ),
            (
                "cityboard_writer_pending_commands",
                "gauge",
                "Commands in memory not applied yet, by state.",
                vec![
                    ("state=\"queued\"", &self.queued),
                    ("state=\"blocked\"", &self.blocked),
                ],
            ),
            (
                "cityboard_writer_paused_partitions",
                "gauge",
                "Command partitions paused because blocked commands passed the bound; \
                 pauses_total counts each pause.",
                vec![("", &self.paused_partitions)],
            ),
            (
                "cityboard_writer_pauses_total",
                "counter",
                "Times a command partition was paused.",
                vec![("", &self.pauses)],
            ),
        ];
        for family in families {
            write_family(&mut out, family);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::common::{add, set};

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = WriterMetrics::default();
        add(&m.applied, 3);
        add(&m.dead_lettered, 1);
        set(&m.paused_partitions, 2);
        let text = m.render();
        assert!(text.contains("cityboard_writer_commands_total{result=\"applied\"} 3"));
        assert!(text.contains("cityboard_writer_dead_letters_total 1"));
        assert!(text.contains("# TYPE cityboard_writer_paused_partitions gauge"));
        assert!(text.contains("cityboard_writer_paused_partitions 2"));
        assert!(text.contains("cityboard_writer_pauses_total 0"));
    }
}
