//! Dead letters the broker did not take within the writer's deadline
//! (`WriterConfig::dead_letter_deadline`): sent again by a task of their
//! own, in the order they were handed over, for as long as it takes.
//!
//! Why a task rather than the writer's loop: one send waits up to the
//! producer's message timeout (30 s) while the broker is away, and the loop
//! must keep applying, notifying and committing for every other partition
//! meanwhile. The loop keeps what matters for correctness: each waiting
//! letter's command stays unfinished in `Offsets`, so no commit passes it
//! (a crash, a stop or a rebalance makes the command read and rejected
//! again, and nothing is lost), and its partition stays paused (nothing more
//! piles up behind it). A letter is finished only when the task reports it
//! acknowledged.
//!
//! Later letters queue behind waiting ones (see [`Backlog::is_empty`]), so
//! a city's dead letters keep their order. A letter may land twice (a send
//! the deadline cut short can still be delivered, a rebalance or restart
//! sends it again): dead letters are at least once, and each carries its
//! command id and source offset to tell copies apart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::doubling;
use crate::bus::Producer;
use crate::bus::dead_letter::{self, DeadLetter};
use crate::roles::common::{add, set};

use super::metrics::WriterMetrics;

/// How [`try_within`] ended when its bound passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GaveUp {
    /// Failed tries (a try the bound cut short included).
    pub failures: u32,
    /// The last one's error.
    pub error: String,
}

/// Calls `send` until it succeeds, waiting `first`, then twice as long each
/// time up to `max`, between failures, for at most `bound` in all (a try
/// still running when the bound passes is abandoned). Each failure counts
/// on `failures` and is logged with `source`.
pub(super) async fn try_within<T, E, Fut>(
    bound: Duration,
    (first, max): (Duration, Duration),
    failures: &Counter,
    source: &str,
    mut send: impl FnMut() -> Fut,
) -> Result<T, GaveUp>
where
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + bound;
    let mut waits = doubling(first, max);
    let mut failed = 0;
    loop {
        let error = match tokio::time::timeout_at(deadline, send()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no acknowledgement before the deadline".to_string(),
        };
        add(failures, 1);
        failed += 1;
        let wait = waits.next().unwrap_or(max);
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(GaveUp {
                failures: failed,
                error,
            });
        }
        tracing::warn!(
            error,
            source,
            ?wait,
            "dead letter not acknowledged; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// One letter and the command message it copies.
#[derive(Debug)]
pub(super) struct Waiting {
    pub letter: DeadLetter,
    pub partition: i32,
    pub offset: i64,
}

/// The letters handed to the resending task and not acknowledged yet.
pub(super) struct Backlog {
    to_send: mpsc::UnboundedSender<Waiting>,
    /// `(partition, offset)` of each letter the task acknowledged.
    sent: mpsc::UnboundedReceiver<(i32, i64)>,
    /// `(partition, offset)` of each letter handed over and not reported
    /// sent; a revoked partition's are forgotten.
    waiting: BTreeSet<(i32, i64)>,
    task: JoinHandle<()>,
    metrics: Arc<WriterMetrics>,
}

impl Backlog {
    /// Starts the resending task: it sends to `topic` with `producer`,
    /// waiting `first` after a failure, doubling up to `max`.
    pub fn start(
        producer: Producer,
        topic: String,
        metrics: Arc<WriterMetrics>,
        first: Duration,
        max: Duration,
    ) -> Backlog {
        let (to_send, queue) = mpsc::unbounded_channel();
        let (done, sent) = mpsc::unbounded_channel();
        let task = tokio::spawn(resend(
            producer,
            topic,
            metrics.clone(),
            queue,
            done,
            (first, max),
        ));
        Backlog {
            to_send,
            sent,
            waiting: BTreeSet::new(),
            task,
            metrics,
        }
    }

    /// No letter is waiting: a new one may be sent at once without passing
    /// an older one.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Hands `w` to the task.
    pub fn push(&mut self, w: Waiting) {
        let at = (w.partition, w.offset);
        if self.to_send.send(w).is_err() {
            // The task is gone (it only ends with the runtime): the command
            // stays unfinished, and the next run reads it again.
            tracing::error!(
                partition = at.0,
                offset = at.1,
                "the dead-letter resender is gone"
            );
        }
        self.waiting.insert(at);
        set(&self.metrics.dead_letter_stuck, self.waiting.len());
    }

    /// The next letter the task acknowledged, if still ours: its command
    /// may be finished. Never resolves while none is sent.
    pub async fn next_sent(&mut self) -> Option<(i32, i64)> {
        loop {
            let at = self.sent.recv().await?;
            if self.waiting.remove(&at) {
                set(&self.metrics.dead_letter_stuck, self.waiting.len());
                return Some(at);
            }
        }
    }

    /// Partitions with a letter waiting: kept paused.
    pub fn partitions(&self) -> BTreeSet<i32> {
        self.waiting.iter().map(|(p, _)| *p).collect()
    }

    /// The partitions were revoked: their next owner reads their commands
    /// again from the last commit, so their letters are no longer this
    /// writer's to finish (the task may still send them: a copy).
    pub fn forget(&mut self, revoked: &BTreeSet<i32>) {
        self.waiting.retain(|(p, _)| !revoked.contains(p));
        set(&self.metrics.dead_letter_stuck, self.waiting.len());
    }

    /// How many letters wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task: each letter in turn, until the broker acknowledges it.
async fn resend(
    producer: Producer,
    topic: String,
    metrics: Arc<WriterMetrics>,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    done: mpsc::UnboundedSender<(i32, i64)>,
    (first, max): (Duration, Duration),
) {
    while let Some(w) = queue.recv().await {
        let mut waits = doubling(first, max);
        let mut failures = 0u32;
        loop {
            match dead_letter::send(&producer, &topic, &w.letter).await {
                Ok(_) => {
                    add(&metrics.dead_lettered, 1);
                    tracing::info!(
                        source = %w.letter.source,
                        failures,
                        "dead letter sent after all: its command is finished"
                    );
                    break;
                }
                Err(e) => {
                    add(&metrics.dead_letter_send_failures, 1);
                    failures += 1;
                    let wait = waits.next().unwrap_or(max);
                    tracing::warn!(
                        error = %e,
                        source = %w.letter.source,
                        failures,
                        ?wait,
                        "dead letter still not acknowledged; trying again"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if done.send((w.partition, w.offset)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const WAITS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

    #[tokio::test(start_paused = true)]
    async fn a_send_that_keeps_failing_is_given_up_within_the_bound() {
        let failures = Counter::default();
        let start = tokio::time::Instant::now();
        let result: Result<(), GaveUp> = try_within(
            Duration::from_secs(10),
            WAITS,
            &failures,
            "test/0/1",
            || async { Err::<(), _>("broker transport failure") },
        )
        .await;
        let took = start.elapsed();
        let gave_up = result.unwrap_err();
        assert!(took <= Duration::from_secs(10), "{took:?}");
        // 100 ms, 200, 400, 800, 1.6 s, 3.2 s: 6.3 s waited; the next wait
        // (5 s) would pass the bound.
        assert_eq!(gave_up.failures, 7);
        assert_eq!(failures.get(), 7);
        assert_eq!(gave_up.error, "broker transport failure");
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_never_answers_is_cut_at_the_bound() {
        let failures = Counter::default();
        let start = tokio::time::Instant::now();
        let result: Result<(), GaveUp> = try_within(
            Duration::from_secs(3),
            WAITS,
            &failures,
            "test/0/2",
            std::future::pending::<Result<(), String>>,
        )
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(result.unwrap_err().failures, 1);
        assert_eq!(failures.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_recovers_in_time_succeeds() {
        let failures = Counter::default();
        let tries = AtomicU32::new(0);
        let result = try_within(
            Duration::from_secs(10),
            WAITS,
            &failures,
            "test/0/3",
            || async {
                match tries.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => Err("not yet"),
                    _ => Ok((0, 42)),
                }
            },
        )
        .await;
        assert_eq!(result, Ok((0, 42)));
        assert_eq!(failures.get(), 2);
    }
}
