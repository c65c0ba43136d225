//! A consumer that dozes when idle: once its role has waited
//! `idle_after` for a message that did not come, its partitions are
//! paused, so librdkafka sends the broker no fetch at all; a wake (see
//! `bus::wake`) resumes them at once, and a probe every `probe_every`
//! resumes them for `probe_awake` in case a wake was lost
//! ([`DozeConfig`]).
//!
//! Why: the broker here (nisshi 0.8) serves a parked fetch by reading every
//! requested partition again at shrinking intervals (half the time left,
//! down to a millisecond), about eight reads of every partition per 50 ms
//! wait and per consumer, so an idle stack kept the broker busy
//! (`cityboard bench idle`, BENCHMARKS.md). A longer fetch wait would trade
//! that for latency on every hop; a paused consumer costs nothing, and the
//! wake makes its first fetch as prompt as before.
//!
//! Pauses the role makes itself (`Consumer::pause`, e.g. the writer's for
//! blocked commands) are its own: the doze never resumes those, and the
//! role's resume of a partition the doze had paused only makes it fetch
//! sooner. Offsets are untouched: a paused partition resumes from the
//! role's position, so nothing is skipped or read twice because of a doze.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;

/// How often the doze looks at the consumer.
const TICK: Duration = Duration::from_millis(50);

/// How long a wake-up query ([`kick`]) may wait for its answer.
const KICK_TIMEOUT: Duration = Duration::from_secs(1);

/// When a consumer dozes and what wakes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DozeConfig {
    /// The Redis whose wake channel the topic's producers announce on
    /// (none: only probes wake it).
    pub wake: Option<String>,
    /// How long the role must have waited for a message before its
    /// consumer dozes. Two seconds: far longer than the gap between two
    /// messages of any load (so a busy consumer never dozes), and than the
    /// wakes' coalescing (`bus::wake`).
    pub idle_after: Duration,
    /// How often a dozing consumer looks for messages without a wake: the
    /// most a lost wake costs. Three seconds: each probe fetches for
    /// `probe_awake`, and nisshi serves that fetch as busily as any other,
    /// so the idle broker's CPU follows `probe_awake / probe_every`: 11 %
    /// of what it takes without the doze at 2 s, 8 % at 3 s (the target
    /// is 10 %: BENCHMARKS.md, idle).
    pub probe_every: Duration,
    /// How long a probe stays awake when it finds nothing: a few fetch
    /// waits (`bus::consumer::FETCH_WAIT_MS`).
    pub probe_awake: Duration,
}

impl DozeConfig {
    /// The defaults, woken through the Redis at `wake`.
    pub fn new(wake: Option<&str>) -> DozeConfig {
        DozeConfig {
            wake: wake.map(str::to_string),
            idle_after: Duration::from_secs(2),
            probe_every: Duration::from_secs(3),
            probe_awake: Duration::from_millis(150),
        }
    }
}

/// The doze state of one consumer.
#[derive(Debug)]
pub struct Doze {
    topic: String,
    /// `None`: it never dozes.
    config: Option<DozeConfig>,
    state: Mutex<State>,
    wake: Arc<Notify>,
    /// Whether wakes can reach it now: with a wake channel configured, it
    /// dozes only while subscribed (a wake sent meanwhile would be lost).
    listening: Arc<AtomicBool>,
}

#[derive(Debug)]
struct State {
    /// `recv` calls of the role now waiting: a role that is not asking for
    /// messages (its queue full) is busy, not idle.
    waiting: usize,
    last_message: Instant,
    /// Partitions the role paused.
    held: BTreeSet<i32>,
    /// The assignment last seen awake.
    assigned: BTreeSet<i32>,
    /// Partitions the doze paused, and since when (`None`: awake).
    dozing: BTreeSet<i32>,
    since: Option<Instant>,
    /// Times the consumer fell asleep, for the tests and the logs.
    dozes: u64,
    /// Partitions just resumed whose leaders' threads must be woken
    /// ([`kick`]).
    kick: BTreeSet<i32>,
}

impl Doze {
    /// The state of a consumer of `topic`; it dozes only with a `config`,
    /// once started (`start`).
    pub fn new(topic: &str, config: Option<DozeConfig>) -> Doze {
        Doze {
            topic: topic.to_string(),
            config,
            state: Mutex::new(State {
                waiting: 0,
                last_message: Instant::now(),
                held: BTreeSet::new(),
                assigned: BTreeSet::new(),
                dozing: BTreeSet::new(),
                since: None,
                dozes: 0,
                kick: BTreeSet::new(),
            }),
            wake: Arc::new(Notify::new()),
            listening: Arc::new(AtomicBool::new(false)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the doze of `consumer` while it lives.
    pub fn start<C: ConsumerContext + 'static>(
        self: &Arc<Self>,
        consumer: &Arc<StreamConsumer<C>>,
    ) {
        let Some(config) = &self.config else {
            return;
        };
        match &config.wake {
            Some(url) => {
                super::wake::listen(url, &self.topic, self.wake.clone(), self.listening.clone())
            }
            None => self.listening.store(true, Ordering::Release),
        }
        let (doze, consumer) = (Arc::downgrade(self), Arc::downgrade(consumer));
        tokio::spawn(async move {
            loop {
                let Some(wake) = doze.upgrade().map(|d| d.wake.clone()) else {
                    return;
                };
                let woke = tokio::select! {
                    _ = wake.notified() => true,
                    _ = tokio::time::sleep(TICK) => false,
                };
                let (Some(d), Some(c)) = (doze.upgrade(), consumer.upgrade()) else {
                    return;
                };
                let assigned = d.assigned(&c);
                d.turn(&c, woke, &assigned, Instant::now());
                let resumed = std::mem::take(&mut d.state().kick);
                if !resumed.is_empty() {
                    let (c, topic) = (c.clone(), d.topic.clone());
                    tokio::task::spawn_blocking(move || kick(&c, &topic, &resumed));
                }
            }
        });
    }

    /// A `recv` of the role began: returns the guard that ends it.
    pub fn waiting(self: &Arc<Self>) -> Waiting {
        self.state().waiting += 1;
        Waiting(Arc::downgrade(self))
    }

    /// The role got a message.
    pub fn saw_message(&self) {
        self.state().last_message = Instant::now();
    }

    /// The role paused `partitions`.
    pub fn held(&self, partitions: &BTreeSet<i32>) {
        self.state().held.extend(partitions);
    }

    /// The role resumed `partitions`.
    pub fn released(&self, partitions: &BTreeSet<i32>) {
        self.state().held.retain(|p| !partitions.contains(p));
    }

    /// Whether the consumer is dozing now.
    pub fn is_dozing(&self) -> bool {
        self.state().since.is_some()
    }

    /// Times it fell asleep so far.
    pub fn dozes(&self) -> u64 {
        self.state().dozes
    }

    /// One look at the consumer at `now`; `woke` when a wake came,
    /// `assigned` its partitions now.
    fn turn<C: ConsumerContext + 'static>(
        &self,
        consumer: &StreamConsumer<C>,
        woke: bool,
        assigned: &BTreeSet<i32>,
        now: Instant,
    ) {
        let Some(config) = &self.config else {
            return;
        };
        let mut s = self.state();
        // A new assignment (a rebalance) wakes it too, and gets the same
        // time as after a message before it dozes (below).
        let reassigned = *assigned != s.assigned;
        match s.since {
            Some(since)
                if woke || reassigned || now.duration_since(since) >= config.probe_every =>
            {
                let resume: BTreeSet<i32> = s.dozing.difference(&s.held).copied().collect();
                // A partition revoked meanwhile may refuse: nothing to do then.
                match consumer.resume(&self.list(&resume)) {
                    Ok(()) => s.kick = resume,
                    Err(e) => {
                        tracing::debug!(topic = %self.topic, error = %e, "resuming after a doze")
                    }
                }
                s.dozing.clear();
                s.since = None;
                // Woken: a message is on its way, stay awake as after one.
                // Probing: stay awake just long enough to see one.
                s.last_message = if woke || reassigned {
                    now
                } else {
                    now.checked_sub(config.idle_after.saturating_sub(config.probe_awake))
                        .unwrap_or(now)
                };
            }
            Some(_) => {}
            None if woke => s.last_message = now,
            // A new assignment first fetches for a while: paused in the
            // middle of looking up its committed (or earliest) offset,
            // librdkafka took longer than a probe's stay awake to fetch
            // again after the resume (seen in the doze tests).
            None if reassigned => {
                s.assigned = assigned.clone();
                s.last_message = now;
            }
            None if s.waiting > 0
                && now.duration_since(s.last_message) >= config.idle_after
                && self.listening.load(Ordering::Acquire) =>
            {
                let pause: BTreeSet<i32> = assigned
                    .iter()
                    .copied()
                    .filter(|p| !s.held.contains(p))
                    .collect();
                if pause.is_empty() {
                    return;
                }
                match consumer.pause(&self.list(&pause)) {
                    Ok(()) => {
                        tracing::debug!(topic = %self.topic, partitions = ?pause, "idle: dozing");
                        s.dozing = pause;
                        s.since = Some(now);
                        s.dozes += 1;
                    }
                    Err(e) => tracing::warn!(topic = %self.topic, error = %e, "pausing to doze"),
                }
            }
            None => {}
        }
    }

    fn assigned<C: ConsumerContext + 'static>(
        &self,
        consumer: &StreamConsumer<C>,
    ) -> BTreeSet<i32> {
        consumer
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter(|e| e.topic() == self.topic)
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn list(&self, partitions: &BTreeSet<i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            // Pause and resume ignore the offset.
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Invalid);
        }
        tpl
    }
}

/// Wakes the broker threads that fetch `partitions`, just resumed.
///
/// librdkafka resumes a partition on its main thread and does not wake the
/// thread that fetches it (`rd_kafka_toppar_pause_resume` changes a flag;
/// only a change of fetch state calls `rd_kafka_broker_wakeup`), so with
/// every partition paused that thread sleeps out its full idle wait
/// (`rd_kafka_max_block_ms`, 1 s) before it fetches again: a write after a
/// quiet spell waited up to a second at each dozing hop, and a probe's
/// short stay awake often ended before its first fetch. Any request to the
/// partition's leader wakes that thread; a watermark query (one
/// ListOffsets, answered from the log's bounds) is the cheapest the client
/// offers. Its answer is not needed. Blocking: run off the async threads.
fn kick<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    partitions: &BTreeSet<i32>,
) {
    for p in partitions {
        if let Err(e) = consumer.fetch_watermarks(topic, *p, KICK_TIMEOUT) {
            tracing::debug!(%topic, partition = p, error = %e, "waking the fetcher after a doze");
        }
    }
}

/// A `recv` of the role in progress; dropping it (the message came, or the
/// role stopped waiting) ends it.
#[derive(Debug)]
pub struct Waiting(Weak<Doze>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(d) = self.0.upgrade() {
            let mut s = d.state();
            s.waiting = s.waiting.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::ClientConfig;

    /// A consumer of `topic` assigned partitions 0..4; no broker needed:
    /// assignment, pause and resume are the client's own state.
    fn consumer(topic: &str) -> StreamConsumer {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "doze-test")
            .set("log_level", "0")
            .create()
            .expect("a consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(topic, p, Offset::Offset(0))
                .expect("a partition");
        }
        c.assign(&tpl).expect("assign");
        c
    }

    fn doze(topic: &str) -> Arc<Doze> {
        let d = Arc::new(Doze::new(
            topic,
            Some(DozeConfig {
                wake: None,
                idle_after: Duration::from_secs(2),
                probe_every: Duration::from_secs(5),
                probe_awake: Duration::from_millis(200),
            }),
        ));
        // As `start` leaves it without a wake channel.
        d.listening.store(true, Ordering::Release);
        d
    }

    #[tokio::test]
    async fn an_idle_consumer_dozes_but_never_resumes_what_its_role_paused() {
        let (c, d) = (consumer("t"), doze("t"));
        let all = BTreeSet::from([0, 1, 2, 3]);
        let t0 = d.state().last_message;
        let _waiting = d.waiting();
        // The assignment arrives: it fetches for `idle_after` from then.
        d.turn(&c, false, &all, t0);
        d.turn(&c, false, &all, t0 + Duration::from_millis(1900));
        assert!(!d.is_dozing(), "dozed before it was idle long enough");
        d.held(&BTreeSet::from([1]));
        d.turn(&c, false, &all, t0 + Duration::from_secs(2));
        assert!(d.is_dozing());
        assert_eq!(d.state().dozing, BTreeSet::from([0, 2, 3]));
        assert_eq!(d.dozes(), 1);
        // A wake: awake, and kept awake as after a message.
        let t1 = t0 + Duration::from_secs(3);
        d.turn(&c, true, &all, t1);
        assert!(!d.is_dozing());
        assert_eq!(
            d.state().held,
            BTreeSet::from([1]),
            "the role's pause is its own"
        );
        d.turn(&c, false, &all, t1 + Duration::from_millis(1900));
        assert!(!d.is_dozing());
        d.turn(&c, false, &all, t1 + Duration::from_secs(2));
        assert!(d.is_dozing());
        assert_eq!(d.dozes(), 2);
    }

    #[tokio::test]
    async fn a_probe_wakes_it_briefly_and_a_busy_role_never_dozes() {
        let (c, d) = (consumer("t"), doze("t"));
        let all = BTreeSet::from([0, 1, 2, 3]);
        let t0 = d.state().last_message;
        d.turn(&c, false, &all, t0);
        // Not waiting for messages (its queue full): busy, not idle.
        d.turn(&c, false, &all, t0 + Duration::from_secs(60));
        assert!(!d.is_dozing());
        let waiting = d.waiting();
        let asleep = t0 + Duration::from_secs(60);
        d.turn(&c, false, &all, asleep);
        assert!(d.is_dozing());
        d.turn(&c, false, &all, asleep + Duration::from_millis(4900));
        assert!(d.is_dozing(), "probed too early");
        let probe = asleep + Duration::from_secs(5);
        d.turn(&c, false, &all, probe);
        assert!(!d.is_dozing(), "the probe did not wake it");
        d.turn(&c, false, &all, probe + Duration::from_millis(150));
        assert!(!d.is_dozing(), "the probe was shorter than probe_awake");
        d.turn(&c, false, &all, probe + Duration::from_millis(200));
        assert!(d.is_dozing(), "it stayed awake after an empty probe");
        drop(waiting);
        assert_eq!(d.state().waiting, 0);
    }
}
