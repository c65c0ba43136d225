//! The janitor's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`): prometheus-client series registered in
//! the role's own registry, so that the page's text is the library's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
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
    /// Mails handed to the transport (file or SMTP) that it took.
    pub mails_sent: Counter,
    /// Mails the transport refused (retried at the next sweep).
    pub mails_failed: Counter,
    /// Live posts well past their expiry (more than two sweep periods), as
    /// the last sweep counted them: zero while expiries flow.
    pub expired_unremoved: Gauge,
    /// Shard passes or sends that failed (retried at the next sweep).
    pub failures: Counter,
    /// Dedup rows pruned (their command below its partition's earliest
    /// offset).
    pub pruned_applied_commands: Counter,
    /// Revoked sessions pruned (past their token's expiry).
    pub pruned_revoked_sessions: Counter,
    /// Revoked users pruned (past their last token's expiry).
    pub pruned_revoked_users: Counter,
    /// Delete batches pruning ran (each at most `batch` rows).
    pub prune_batches: Counter,
    /// Posts the reconciler compared with KV.
    pub reconcile_checked: Counter,
    /// Live posts whose KV page differed (missing, older, a tombstone):
    /// their page republished.
    pub reconciled_pages: Counter,
    /// Gone posts whose KV entry differed (a page, an older tombstone):
    /// their tombstone republished.
    pub reconciled_tombstones: Counter,
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
        let [mails_sent, mails_failed] = r.counters(
            "cityboard_janitor_mails",
            "Mails the janitor handed to its transport, by result",
            "result",
            ["sent", "failed"],
        );
        let expired_unremoved = r.gauge(
            "cityboard_janitor_expired_unremoved",
            "Live posts more than two sweep periods past their expiry, at the last sweep: expiries the pipeline has not applied",
        );
        let [reminders, reminders_without_address] = r.counters(
            "cityboard_janitor_reminders",
            "Renewal reminders, by result",
            "result",
            ["sent", "no_address"],
        );
        let [
            pruned_applied_commands,
            pruned_revoked_sessions,
            pruned_revoked_users,
        ] = r.counters(
            "cityboard_janitor_pruned",
            "Rows the janitor pruned, by table",
            "table",
            ["applied_commands", "revoked_sessions", "revoked_users"],
        );
        let prune_batches = r.counter(
            "cityboard_janitor_prune_batches",
            "Bounded delete batches the janitor's pruning ran",
        );
        let reconcile_checked = r.counter(
            "cityboard_janitor_reconcile_checked",
            "Posts the janitor's reconciler compared with KV",
        );
        let [reconciled_pages, reconciled_tombstones] = r.counters(
            "cityboard_janitor_reconciled",
            "KV entries that differed from the shard and were republished, by what was republished",
            "entry",
            ["page", "tombstone"],
        );
        JanitorMetrics {
            sweeps,
            expire_commands,
            reminders,
            reminders_without_address,
            mails_sent,
            mails_failed,
            expired_unremoved,
            failures,
            pruned_applied_commands,
            pruned_revoked_sessions,
            pruned_revoked_users,
            prune_batches,
            reconcile_checked,
            reconciled_pages,
            reconciled_tombstones,
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
        add(&m.pruned_revoked_users, 3);
        let text = openmetrics_text(m.registry());
        assert!(
            text.lines()
                .any(|l| l == "cityboard_janitor_pruned_total{table=\"revoked_users\"} 3"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "cityboard_janitor_reconciled_total{entry=\"tombstone\"} 0"),
            "{text}"
        );
        has("# HELP cityboard_janitor_sweeps Janitor sweeps finished.");
        has("cityboard_publisher_events_total 0");
        has("cityboard_janitor_mails_total{result=\"failed\"} 0");
        m.expired_unremoved.set(7);
        has("cityboard_writer_hides_total 0");
        let text = openmetrics_text(m.registry());
        assert!(
            text.lines()
                .any(|l| l == "cityboard_janitor_expired_unremoved 7"),
            "{text}"
        );
        assert_eq!(served_families(&text), recorded_families("janitor"));
    }
}
