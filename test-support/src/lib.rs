//! Helpers shared by the tests of every crate. A crate of its own because
//! region-core's integration tests cannot depend on the `tests` crate (that
//! depends on deploy, which depends on region-core): both dev-depend on
//! this one instead, so each helper has one definition.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some`, or panics with
/// `what` after `limit`. Waiting on a condition, never on a clock.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
