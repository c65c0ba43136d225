//! The janitor's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`): prometheus-client series registered in
//! the role's own registry, so that the page's text is the library's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::roles::common::{Exposition, PipelineRegistry};

/// What the janitor counts: each field a series of a family in `registry`.
#[derive(Debug)]
pub struct JanitorMetrics {
    /// Sweeps finished.
    pub sweeps: Counter,
    /// `Expire` commands produced.
    pub expire_commands: Counter,
    /// Reminder e-mails sent.
    pub reminders: Counter,
    /// Reminders recorded without a send (no address).
    pub reminders_without_address: Counter,
    /// Shard passes or sends that failed (retried at the next sweep).
    pub failures: Counter,
    /// The families above, and the other pipeline roles' at zero.
    registry: Registry,
}

impl Default for JanitorMetrics {
    fn default() -> Self {
        let mut r = PipelineRegistry::default();
        let sweeps = r.counter("cityboard_janitor_sweeps", "Janitor sweeps finished");
        let expire_commands = r.counter(
            "cityboard_janitor_expire_commands",
            "Expire commands the janitor produced",
        );
        let failures = r.counter(
            "cityboard_janitor_failures",
            "Janitor shard passes or sends that failed and are retried",
        );
        let [reminders, reminders_without_address] = r.counters(
            "cityboard_janitor_reminders",
            "Renewal reminders, by result",
            "result",
            ["sent", "no_address"],
        );
        JanitorMetrics {
            sweeps,
            expire_commands,
            reminders,
            reminders_without_address,
            failures,
            registry: r.finish(),
        }
    }
}

impl Exposition for JanitorMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::common::{add, openmetrics_text, recorded_families, served_families};

    #[test]
    fn renders_its_families_and_the_others_at_zero() {
        let m = JanitorMetrics::default();
        add(&m.sweeps, 2);
        add(&m.reminders, 1);
        let text = openmetrics_text(m.registry());
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_janitor_sweeps_total 2");
        has("cityboard_janitor_reminders_total{result=\"sent\"} 1");
        has("cityboard_janitor_reminders_total{result=\"no_address\"} 0");
        has("# HELP cityboard_janitor_sweeps Janitor sweeps finished.");
        has("cityboard_publisher_events_total 0");
        assert_eq!(served_families(&text), recorded_families("janitor"));
    }
}
