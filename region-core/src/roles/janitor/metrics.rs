//! The janitor's counters, served as its `/metrics` page
//! (`roles::common::serve_metrics`). Counters are kept by hand for now.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::roles::common::Exposition;

/// What the janitor counts.
#[derive(Debug, Default)]
pub struct JanitorMetrics {
    /// Sweeps finished.
    pub sweeps: AtomicU64,
    /// `Expire` commands produced.
    pub expire_commands: AtomicU64,
    /// Reminder e-mails sent.
    pub reminders: AtomicU64,
    /// Reminders recorded without a send (no address).
    pub reminders_without_address: AtomicU64,
    /// Shard passes or sends that failed (retried at the next sweep).
    pub failures: AtomicU64,
}

impl Exposition for JanitorMetrics {
    fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (family, help, value) in [
            (
                "cityboard_janitor_sweeps_total",
                "Janitor sweeps finished.",
                &self.sweeps,
            ),
            (
                "cityboard_janitor_expire_commands_total",
                "Expire commands the janitor produced.",
                &self.expire_commands,
            ),
            (
                "cityboard_janitor_failures_total",
                "Janitor shard passes or sends that failed and are retried.",
                &self.failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {family} {help}\n# TYPE {family} counter\n{family} {}",
                get(value)
            );
        }
        let family = "cityboard_janitor_reminders_total";
        let _ = writeln!(
            out,
            "# HELP {family} Renewal reminders, by result.\n# TYPE {family} counter\n\
             {family}{{result=\"sent\"}} {}\n{family}{{result=\"no_address\"}} {}",
            get(&self.reminders),
            get(&self.reminders_without_address)
        );
        out
    }
}
