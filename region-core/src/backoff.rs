//! The waits of every retry loop in region-core: one constructor, so that
//! each loop states only its first wait and its cap.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The waits `min`, `2 × min`, `4 × min`, ... up to `max`, then `max` for
/// ever (never above `max`: a `min` above it starts at `max`). Start again
/// from `min` by building a new one.
///
/// No jitter: each loop that waits is one task (a subscription, a shard's
/// relay, a publisher's bulk write, a writer's shard or city), not a crowd
/// of clients that would retry in step against one server, and the waits
/// stay the plain doubling they were before (the writer queue's tests
/// count on them). backon doubles in `f32`, so a wait past the first may
/// differ from the exact double by some nanoseconds.
pub fn doubling(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(min.min(max))
        .with_max_delay(max)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Within a microsecond (the `f32` doubling).
    fn near(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn waits_double_from_min_to_max_and_stay_there() {
        let waits: Vec<Duration> = doubling(ms(100), ms(1000)).take(7).collect();
        let want = [100, 200, 400, 800, 1000, 1000, 1000].map(ms);
        assert!(
            waits.iter().zip(want).all(|(a, b)| near(*a, b)),
            "{waits:?}"
        );
        assert_eq!(waits[0], ms(100), "the first wait is exact");
        assert_eq!(waits[6], ms(1000), "the cap is exact");
    }

    #[test]
    fn a_min_above_max_starts_at_max() {
        let waits: Vec<Duration> = doubling(ms(300), ms(200)).take(2).collect();
        assert_eq!(waits, vec![ms(200), ms(200)]);
    }

    #[test]
    fn it_never_runs_out() {
        assert!(doubling(ms(1), ms(2)).nth(10_000).is_some());
    }
}
