//! The bounded dead-letter send every consumer of the region shares (the
//! writer for commands, the publisher for events): a message that will
//! never be handled is copied to the dead-letter topic before its offset may
//! be passed, tried for at most a deadline, and past it sent again by a task
//! of its own, in the order handed over, for as long as it takes.
//!
//! Why a task rather than the role's loop: one send waits up to the
//! producer's message timeout (30 s) while the broker is away, and the loop
//! must keep working for every other partition meanwhile. The loop keeps
//! what matters for correctness: each waiting letter's message stays
//! unfinished in `Offsets`, so no commit passes it (a crash, a stop or a
//! rebalance makes it read and dead-lettered again, and nothing is lost),
//! and the caller pauses its partition ([`DeadLetters::partitions`]) so that
//! nothing more piles up behind it. A letter is finished only when the task
//! reports it acknowledged, and the stuck gauge above zero is the alert.
//!
//! Later letters queue behind waiting ones, so a city's dead letters keep
//! their order. A letter may land twice (a send the deadline cut short can
//! still be delivered, a rebalance or restart sends it again): dead letters
//! are at least once, and each carries its source offset (and command id,
//! when known) to tell copies apart.

use std::collections::BTreeSet;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::doubling;
use crate::bus::Producer;
use crate::bus::dead_letter::{self, DeadLetter};

/// The default deadline of [`DeadLetters::start`]: the producer's message
/// timeout (one send's own retries while the broker is away). Not zero, so
/// that a broker's short absence (a restart) costs no pause; bounded, so
/// that a dead-letter topic the broker cannot write stops only the
/// partitions that need it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// First wait before a dead letter is sent again.
pub const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two sends of a dead letter.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// The series a role counts its dead letters on (clones of its own
/// registered series, so counting here is counting on its page).
#[derive(Debug, Clone)]
pub struct LetterMetrics {
    /// Messages copied to the dead-letter topic.
    pub sent: Counter,
    /// Sends the broker did not acknowledge (each is tried again).
    pub send_failures: Counter,
    /// Gauge: letters not sent within the deadline, waiting in the
    /// background. Above zero: stuck (the alert).
    pub stuck: Gauge,
}

/// How [`try_within`] ended when its bound passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GaveUp {
    /// Failed tries (a try the bound cut short included).
    pub failures: u32,
    /// The last one's error.
    pub error: String,
}

/// Calls `send` until it succeeds, waiting `first`, then twice as long each
/// time up to `max`, between failures, for at most `bound` in all (a try
/// still running when the bound passes is abandoned). Each failure counts
/// on `failures` and is logged with `source`.
pub(crate) async fn try_within<T, E, Fut>(
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
        failures.inc();
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

/// One letter and the message it copies.
#[derive(Debug)]
struct Waiting {
    letter: DeadLetter,
    partition: i32,
    offset: i64,
}

/// A role's dead letters: sent within a deadline, and those the broker did
/// not take by then handed to the resending task.
pub struct DeadLetters {
    producer: Producer,
    topic: String,
    /// How long [`send`](Self::send) tries before it hands a letter over.
    deadline: Duration,
    metrics: LetterMetrics,
    to_send: mpsc::UnboundedSender<Waiting>,
    /// `(partition, offset)` of each letter the task acknowledged.
    sent: mpsc::UnboundedReceiver<(i32, i64)>,
    /// `(partition, offset)` of each letter handed over and not reported
    /// sent; a revoked partition's are forgotten.
    waiting: BTreeSet<(i32, i64)>,
    task: JoinHandle<()>,
}

impl DeadLetters {
    /// Letters to `topic` with `producer`, each tried for `deadline` before
    /// the resending task takes it, counted on `metrics`.
    pub fn start(
        producer: Producer,
        topic: String,
        deadline: Duration,
        metrics: LetterMetrics,
    ) -> DeadLetters {
        let (to_send, queue) = mpsc::unbounded_channel();
        let (done, sent) = mpsc::unbounded_channel();
        let task = tokio::spawn(resend(
            producer.clone(),
            topic.clone(),
            metrics.clone(),
            queue,
            done,
        ));
        DeadLetters {
            producer,
            topic,
            deadline,
            metrics,
            to_send,
            sent,
            waiting: BTreeSet::new(),
            task,
        }
    }

    /// The topic the letters go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends the dead letter of the message read at `partition` and
    /// `offset`; whether the broker acknowledged it, so that the caller may
    /// finish the message. The offset must never pass a message that is
    /// neither handled nor copied to the dead-letter topic.
    ///
    /// Bounded: tried with backoff for at most the deadline. Past it the
    /// letter goes to the resending task, which sends it until the broker
    /// takes it; [`next_sent`](Self::next_sent) then names it, and only then
    /// may the caller finish it. Until then its message is unfinished (a
    /// crash, a stop or a rebalance makes it read and dead-lettered again:
    /// nothing lost), the caller keeps its partition paused, the stuck gauge
    /// says so and an error is logged. While letters wait, a new one joins
    /// them at once without a try of its own, so that a city's letters keep
    /// their order and a dead broker costs the loop one deadline, not one
    /// per letter.
    pub async fn send(&mut self, letter: DeadLetter, partition: i32, offset: i64) -> bool {
        let stuck = |letter| Waiting {
            letter,
            partition,
            offset,
        };
        if !self.waiting.is_empty() {
            self.push(stuck(letter));
            return false;
        }
        let sent = try_within(
            self.deadline,
            (RETRY_MIN, RETRY_MAX),
            &self.metrics.send_failures,
            &letter.source,
            || dead_letter::send(&self.producer, &self.topic, &letter),
        )
        .await;
        match sent {
            Ok(_) => {
                self.metrics.sent.inc();
                true
            }
            Err(GaveUp { failures, error }) => {
                tracing::error!(
                    error,
                    failures,
                    source = %letter.source,
                    deadline = ?self.deadline,
                    "dead letter not acknowledged within the deadline: its message stays \
                     unfinished and its partition paused while it is sent again"
                );
                self.push(stuck(letter));
                false
            }
        }
    }

    /// No letter is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Hands `w` to the task.
    fn push(&mut self, w: Waiting) {
        let at = (w.partition, w.offset);
        if self.to_send.send(w).is_err() {
            // The task is gone (it only ends with the runtime): the message
            // stays unfinished, and the next run reads it again.
            tracing::error!(
                partition = at.0,
                offset = at.1,
                "the dead-letter resender is gone"
            );
        }
        self.waiting.insert(at);
        self.gauge();
    }

    /// The next letter the task acknowledged, if still ours: its message
    /// may be finished. Never resolves while none is sent.
    pub async fn next_sent(&mut self) -> Option<(i32, i64)> {
        loop {
            let at = self.sent.recv().await?;
            if self.waiting.remove(&at) {
                self.gauge();
                return Some(at);
            }
        }
    }

    /// Partitions with a letter waiting: to keep paused.
    pub fn partitions(&self) -> BTreeSet<i32> {
        self.waiting.iter().map(|(p, _)| *p).collect()
    }

    /// The partitions were revoked: their next owner reads their messages
    /// again from the last commit, so their letters are no longer this
    /// consumer's to finish (the task may still send them: a copy).
    pub fn forget(&mut self, revoked: &BTreeSet<i32>) {
        self.waiting.retain(|(p, _)| !revoked.contains(p));
        self.gauge();
    }

    fn gauge(&self) {
        self.metrics
            .stuck
            .set(i64::try_from(self.waiting.len()).unwrap_or(i64::MAX));
    }

    /// How many letters wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

impl Drop for DeadLetters {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task: each letter in turn, until the broker acknowledges it.
async fn resend(
    producer: Producer,
    topic: String,
    metrics: LetterMetrics,
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    done: mpsc::UnboundedSender<(i32, i64)>,
) {
    while let Some(w) = queue.recv().await {
        let mut waits = doubling(RETRY_MIN, RETRY_MAX);
        let mut failures = 0u32;
        loop {
            match dead_letter::send(&producer, &topic, &w.letter).await {
                Ok(_) => {
                    metrics.sent.inc();
                    tracing::info!(
                        source = %w.letter.source,
                        failures,
                        "dead letter sent after all: its message is finished"
                    );
                    break;
                }
                Err(e) => {
                    metrics.send_failures.inc();
                    failures += 1;
                    let wait = waits.next().unwrap_or(RETRY_MAX);
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
