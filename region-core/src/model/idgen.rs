//! The id generator: one per process, node number leased from the catalog.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::SharedClock;
use crate::model::id::{EPOCH_MS, Id, MAX_NODE, MAX_REGION, MAX_SEQ};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The node lease ran out (renewal failed): another process may hold the
    /// number now, so issuing ids could repeat one of its ids.
    #[error("node lease {0} expired; no ids until it is re-acquired")]
    LeaseExpired(u16),
    #[error("the clock is before the id epoch (2025-01-01)")]
    BeforeEpoch,
}

/// What the generator needs before it can issue the next id.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Ready(Id),
    /// The clock stepped back or this millisecond's sequence is used up:
    /// wait until the clock passes the last issued millisecond.
    WaitMs(i64),
}

#[derive(Debug)]
struct State {
    last_ms: i64,
    seq: u16,
}

#[derive(Debug, Clone)]
pub struct IdGenerator {
    clock: SharedClock,
    region: u16,
    node: u16,
    state: Arc<Mutex<State>>,
    lease_valid_until: Arc<Mutex<Instant>>,
}

impl IdGenerator {
    /// `lease_valid_until` is moved forward by the lease renewal task; past
    /// it the generator refuses to issue ids.
    pub fn new(clock: SharedClock, region: u16, node: u16, lease_valid_until: Instant) -> Self {
        IdGenerator {
            clock,
            region: region.min(MAX_REGION),
            node: node.min(MAX_NODE),
            state: Arc::new(Mutex::new(State {
                last_ms: -1,
                seq: 0,
            })),
            lease_valid_until: Arc::new(Mutex::new(lease_valid_until)),
        }
    }

    pub fn node(&self) -> u16 {
        self.node
    }

    pub fn region(&self) -> u16 {
        self.region
    }

    pub fn extend_lease(&self, until: Instant) {
        *self
            .lease_valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// The next id. Waits (never repeats) when the clock stepped backwards or
    /// 1024 ids were issued in the current millisecond.
    pub async fn next(&self) -> Result<Id, IdError> {
        loop {
            match self.try_next()? {
                Next::Ready(id) => return Ok(id),
                Next::WaitMs(ms) => {
                    let ms = u64::try_from(ms.clamp(1, 1000)).unwrap_or(1);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        }
    }

    fn try_next(&self) -> Result<Next, IdError> {
        let valid_until = *self
            .lease_valid_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= valid_until {
            return Err(IdError::LeaseExpired(self.node));
        }
        let ms = self.clock.now().timestamp_millis() - EPOCH_MS;
        if ms < 0 {
            return Err(IdError::BeforeEpoch);
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if ms < st.last_ms {
            return Ok(Next::WaitMs(st.last_ms - ms));
        }
        if ms == st.last_ms {
            if st.seq >= MAX_SEQ {
                return Ok(Next::WaitMs(1));
            }
            st.seq += 1;
        } else {
            st.last_ms = ms;
            st.seq = 0;
        }
        Ok(Next::Ready(Id::compose(ms, self.region, self.node, st.seq)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn generator() -> (Arc<ManualClock>, IdGenerator) {
        let clock = Arc::new(ManualClock::new(
            chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        let g = IdGenerator::new(
            clock.clone(),
            3,
            7,
            Instant::now() + Duration::from_secs(60),
        );
        (clock, g)
    }

    fn ready(n: Next) -> Id {
        match n {
            Next::Ready(id) => id,
            other => panic!("expected an id, got {other:?}"),
        }
    }

    #[test]
    fn ids_grow_within_and_across_milliseconds() {
        let (clock, g) = generator();
        let a = ready(g.try_next().unwrap());
        let b = ready(g.try_next().unwrap());
        clock.advance(chrono::Duration::milliseconds(1));
        let c = ready(g.try_next().unwrap());
        assert!(a < b && b < c);
        assert_eq!((a.region(), a.node()), (3, 7));
    }

    #[test]
    fn a_clock_that_steps_back_makes_it_wait_not_repeat() {
        let (clock, g) = generator();
        let a = ready(g.try_next().unwrap());
        clock.advance(chrono::Duration::milliseconds(-5));
        assert_eq!(g.try_next().unwrap(), Next::WaitMs(5));
        clock.advance(chrono::Duration::milliseconds(5));
        assert!(ready(g.try_next().unwrap()) > a);
    }

    #[test]
    fn a_full_millisecond_waits_for_the_next() {
        let (_clock, g) = generator();
        for _ in 0..=MAX_SEQ {
            ready(g.try_next().unwrap());
        }
        assert_eq!(g.try_next().unwrap(), Next::WaitMs(1));
    }

    #[test]
    fn an_expired_lease_issues_nothing() {
        let (_clock, g) = generator();
        g.extend_lease(Instant::now());
        assert_eq!(g.try_next().unwrap_err(), IdError::LeaseExpired(7));
    }
}
