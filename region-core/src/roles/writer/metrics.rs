//! The writer's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`): prometheus-client series registered in
//! the role's own registry, so that the page's text is the library's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::roles::common::{Exposition, PipelineRegistry};

/// Everything the writer counts: each field a series of a family in
/// `registry`.
#[derive(Debug)]
pub struct WriterMetrics {
    /// Commands applied for the first time.
    pub applied: Counter,
    /// Commands found in `applied_commands` already (a replay): nothing
    /// written again.
    pub replayed: Counter,
    /// Commands rejected: by `apply` (e.g. editing someone else's post) or
    /// before it (poison: not JSON, unknown type, city not served).
    pub rejected: Counter,
    /// Messages copied to the dead-letter topic.
    pub dead_lettered: Counter,
    /// Dead-letter sends the broker did not acknowledge (each is tried
    /// again): rising means the dead-letter topic cannot be written.
    pub dead_letter_send_failures: Counter,
    /// Gauge: dead letters not sent within the writer's deadline, sent again
    /// in the background; their commands stay unfinished and their
    /// partitions paused until they are. Above zero: stuck (the alert).
    pub dead_letter_stuck: Gauge,
    /// Commands a frozen city's fence refused and the writer held.
    pub held: Counter,
    /// Commands sent again after the map moved their city.
    pub rerouted: Counter,
    /// `apply` calls (one transaction each).
    pub batches: Counter,
    /// `apply` calls that failed (shard down, conflict): retried.
    pub apply_failures: Counter,
    /// Apply notifications that could not be stored in Redis.
    pub notify_failures: Counter,
    /// Posts hidden by reports (their `PostGone` events of a fresh batch).
    pub hides: Counter,
    /// Gauge: commands in memory, not applied yet.
    pub queued: Gauge,
    /// Gauge: of those, commands waiting on a frozen city or a shard down.
    pub blocked: Gauge,
    /// Gauge: partitions paused because blocked commands passed the bound,
    /// or because one of their dead letters is stuck (which also delays the
    /// other cities sharing them).
    pub paused_partitions: Gauge,
    /// Times a partition was paused.
    pub pauses: Counter,
    /// Gauge: 1 while the idle consumer dozes (its fetches paused until a
    /// wake or a probe, `bus::doze`).
    pub dozing: Gauge,
    /// The families above, and the other pipeline roles' at zero.
    registry: Registry,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        let mut r = PipelineRegistry::default();
        let [applied, replayed, rejected] = r.counters(
            "cityboard_writer_commands",
            "Commands the writer finished, by result",
            "result",
            ["applied", "replayed", "rejected"],
        );
        let dead_lettered = r.counter(
            "cityboard_writer_dead_letters",
            "Messages copied to the dead-letter topic",
        );
        let dead_letter_send_failures = r.counter(
            "cityboard_writer_dead_letter_send_failures",
            "Dead-letter sends the broker did not acknowledge (each is tried again)",
        );
        let dead_letter_stuck = r.gauge(
            "cityboard_writer_dead_letter_stuck",
            "Dead letters not sent within the deadline: their commands wait unfinished, \
             their partitions paused, until the broker takes them",
        );
        let [held, rerouted] = r.counters(
            "cityboard_writer_refused",
            "Commands a shard's fence refused, by what the writer did",
            "action",
            ["held", "rerouted"],
        );
        let [batches, apply_failures] = r.counters(
            "cityboard_writer_batches",
            "Apply transactions, by result",
            "result",
            ["ok", "failed"],
        );
        let notify_failures = r.counter(
            "cityboard_writer_notify_failures",
            "Apply notifications Redis did not take",
        );
        let hides = r.counter(
            "cityboard_writer_hides",
            "Posts hidden because enough distinct readers reported them",
        );
        let [queued, blocked] = r.gauges(
            "cityboard_writer_pending_commands",
            "Commands in memory not applied yet, by state",
            "state",
            ["queued", "blocked"],
        );
        let paused_partitions = r.gauge(
            "cityboard_writer_paused_partitions",
            "Command partitions paused because blocked commands passed the bound; \
             pauses_total counts each pause",
        );
        let pauses = r.counter(
            "cityboard_writer_pauses",
            "Times a command partition was paused",
        );
        let dozing = r.gauge(
            "cityboard_writer_dozing",
            "1 while the idle commands consumer has its fetches paused until a wake",
        );
        WriterMetrics {
            dozing,
            applied,
            replayed,
            rejected,
            dead_lettered,
            dead_letter_send_failures,
            dead_letter_stuck,
            held,
            rerouted,
            batches,
            apply_failures,
            notify_failures,
            hides,
            queued,
            blocked,
            paused_partitions,
            pauses,
            registry: r.finish(),
        }
    }
}

impl Exposition for WriterMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::common::{add, openmetrics_text, recorded_families, served_families, set};

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = WriterMetrics::default();
        add(&m.applied, 3);
        add(&m.dead_lettered, 1);
        set(&m.paused_partitions, 2);
        let text = openmetrics_text(m.registry());
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_writer_commands_total{result=\"applied\"} 3");
        has("cityboard_writer_commands_total{result=\"rejected\"} 0");
        has("cityboard_writer_dead_letters_total 1");
        has("cityboard_writer_dead_letter_send_failures_total 0");
        has("# TYPE cityboard_writer_dead_letter_stuck gauge");
        has("# HELP cityboard_writer_dead_letters Messages copied to the dead-letter topic.");
        has("# TYPE cityboard_writer_paused_partitions gauge");
        has("cityboard_writer_paused_partitions 2");
        has("cityboard_writer_pending_commands{state=\"blocked\"} 0");
        has("cityboard_writer_pauses_total 0");
        // The other pipeline roles' families, at zero.
        has("# TYPE cityboard_publisher_pending_keys gauge");
        has("cityboard_relay_events_total 0");
        assert_eq!(served_families(&text), recorded_families("writer"));
        assert!(text.ends_with("# EOF\n"));
    }
}
