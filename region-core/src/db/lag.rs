//! Replica staleness measured by LSN, not by timestamps.
//!
//! The monitor samples the primary's WAL position over time. A replica that
//! replayed up to LSN R has everything the primary had at the last sample
//! whose LSN is ≤ R, so its staleness is at most the age of that sample. An
//! idle primary does not make replicas look stale (their replay LSN equals
//! the primary's, staleness 0), which a `now() - pg_last_xact_replay_timestamp()`
//! measure would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::lsn::Lsn;

#[derive(Debug, Clone)]
pub struct PrimaryHistory {
    samples: VecDeque<(Instant, Lsn)>,
    keep: usize,
}

impl PrimaryHistory {
    pub fn new(keep: usize) -> Self {
        PrimaryHistory {
            samples: VecDeque::with_capacity(keep),
            keep: keep.max(2),
        }
    }

    pub fn record(&mut self, at: Instant, lsn: Lsn) {
        if self.samples.len() == self.keep {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    pub fn latest(&self) -> Option<Lsn> {
        self.samples.back().map(|(_, l)| *l)
    }

    /// An upper bound of how stale a replica at `replay` is, at `now`; `None`
    /// when it is behind everything the history remembers (treat as too
    /// stale) or nothing was sampled yet.
    pub fn staleness(&self, replay: Lsn, now: Instant) -> Option<Duration> {
        let (_, latest) = self.samples.back()?;
        if replay >= *latest {
            return Some(Duration::ZERO);
        }
        self.samples
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replay)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_primary_makes_no_replica_stale() {
        let t0 = Instant::now();
        let mut h = PrimaryHistory::new(10);
        for i in 0..5 {
            h.record(t0 + Duration::from_secs(i), Lsn(100));
        }
        assert_eq!(
            h.staleness(Lsn(100), t0 + Duration::from_secs(60)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn staleness_is_the_age_of_the_last_position_the_replica_has() {
        let t0 = Instant::now();
        let mut h = PrimaryHistory::new(10);
        h.record(t0, Lsn(100));
        h.record(t0 + Duration::from_millis(100), Lsn(100));
        h.record(t0 + Duration::from_millis(200), Lsn(500));
        let now = t0 + Duration::from_millis(300);
        assert_eq!(h.staleness(Lsn(100), now), Some(Duration::from_millis(200)));
        assert_eq!(h.staleness(Lsn(50), now), None);
    }
}
