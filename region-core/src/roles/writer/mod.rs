//! The writer role: consumes `<region>.commands`, applies them per shard in
//! batches (one `apply` transaction each), and commits consumer offsets only
//! past finished commands.
//!
//! One loop owns all state (queues, offsets, pauses); applies run as tasks,
//! at most one per shard at a time, so a slow or stopped shard never delays
//! another. A command is *finished* once its outcome is durable: applied or
//! rejected in its shard's `applied_commands`, or, for one that never
//! reaches a shard (poison), copied to the dead-letter topic. Only then may
//! the offset pass it; see `offsets`. A dead letter the broker does not take
//! within a deadline is sent again in the background (`bus::letters`) while its
//! command stays unfinished and its partition paused, so that a broken
//! dead-letter topic stops only the partitions that need it, and alerts.

mod account;
pub mod decode;
pub mod metrics;
mod outcome;
pub mod queue;
mod start;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::Message;
use tokio::task::JoinSet;

use crate::apply::{Applied, ApplyConfig, ApplyError, CityBatch, ReadAt, ShardTarget, apply_read};
use crate::bus::consumer::Consumer;
use crate::bus::dead_letter::DeadLetter;
use crate::bus::doze::DozeConfig;
use crate::bus::letters::{self, DeadLetters, LetterMetrics};
use crate::bus::notify::Notifier;
use crate::bus::offsets::Offsets;
use crate::bus::{Producer, Topics};
use crate::db::{RouteError, Router};
use crate::model::{ACCOUNT_KEY, IdGenerator};
use crate::roles::common::{add, set};
use metrics::WriterMetrics;
use queue::{Dispatch, Queue, QueueConfig, Queued};
pub use start::{WriterArgs, run};

/// The default of [`WriterConfig::dead_letter_deadline`].
pub const DEAD_LETTER_DEADLINE: Duration = letters::DEFAULT_DEADLINE;

/// What the writer is told.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The region whose shards it writes.
    pub region: String,
    /// Its topics (commands in, dead letters out).
    pub topics: Topics,
    /// Consumer group: `<region>.writer`.
    pub group: String,
    /// Batching and retries.
    pub queue: QueueConfig,
    /// Commands waiting on held cities or failed shards past which their
    /// partitions pause (design §4: never unbounded buffering).
    pub max_blocked: usize,
    /// Commands in memory that could be applied now, past which the writer
    /// stops reading until batches drain (plain back-pressure).
    pub max_ready: usize,
    /// Consumer session timeout.
    pub session_timeout: Duration,
    /// Passed to `apply`.
    pub apply: ApplyConfig,
    /// How long the writer tries a dead letter (again and again, with
    /// backoff) before it stops waiting for it: the letter is then sent
    /// again in the background for as long as it takes, while its command
    /// stays unfinished (no offset commit passes it), its partition stays
    /// paused, `cityboard_writer_dead_letter_stuck` is above zero and an
    /// error is logged. Bounded so that a dead-letter topic the broker
    /// cannot write stops only the partitions that need it, not the whole
    /// writer; not zero so that a broker's short absence (a restart) costs
    /// no pause. Default 30 s (the producer's message timeout: one send's
    /// own retries while the broker is away).
    pub dead_letter_deadline: Duration,
    /// When the consumer dozes while idle (`bus::doze`); `None`: never.
    pub doze: Option<DozeConfig>,
}

impl WriterConfig {
    /// Defaults for `region` on its own topics.
    pub fn new(region: &str) -> Self {
        WriterConfig {
            region: region.to_string(),
            topics: Topics::of_region(region),
            group: format!("{region}.writer"),
            queue: QueueConfig {
                batch_max: 500,
                batch_window: Duration::from_millis(20),
                hold_retry: Duration::from_millis(50),
                shard_retry: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
            },
            max_blocked: 10_000,
            max_ready: 5_000,
            session_timeout: Duration::from_secs(6),
            apply: ApplyConfig::default(),
            dead_letter_deadline: DEAD_LETTER_DEADLINE,
            doze: None,
        }
    }
}

/// What the writer works with, built by `roles::writer` (or a test).
#[derive(Clone)]
pub struct WriterParts {
    /// Shard map and shard pools of the region.
    pub router: Router,
    /// The region's catalog, where account commands are recorded.
    pub catalog: sqlx::PgPool,
    /// Outbox sequence numbers (node leased from the catalog).
    pub ids: IdGenerator,
    /// For dead letters.
    pub producer: Producer,
    /// Apply notifications.
    pub notifier: Arc<Notifier>,
    pub metrics: Arc<WriterMetrics>,
    /// `host:port` of the broker.
    pub brokers: String,
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The apply task panicked (a bug): treated like a suspect error, so a
    /// command that triggers it ends up rejected rather than retried forever.
    #[error("apply panicked: {0}")]
    Panic(String),
}

type Done = (Dispatch, Result<Applied, Failed>);

/// The writer's state between loop turns.
struct Writer {
    config: WriterConfig,
    parts: WriterParts,
    commands: Consumer,
    queue: Queue,
    offsets: Offsets,
    paused: BTreeSet<i32>,
    applies: JoinSet<Done>,
    accounts: Vec<account::Pending>,
    /// Dead letters, and those not sent within the deadline being sent
    /// again (`bus::letters`).
    backlog: DeadLetters,
    /// The shard map's version: a change wakes the held cities.
    map_version: tokio::sync::watch::Receiver<i64>,
}

/// Runs the writer until `shutdown` resolves (then it lets the applies in
/// flight finish, commits, and returns), or until a crash point configured
/// to fail is reached (then it returns that error without committing, as a
/// crash would).
pub async fn apply_commands(
    config: WriterConfig,
    parts: WriterParts,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut commands = Consumer::subscribe(
        &parts.brokers,
        &config.topics.commands,
        &config.group,
        config.session_timeout,
    )?;
    if let Some(doze) = &config.doze {
        commands = commands.dozing(doze.clone());
    }
    tracing::info!(
        topic = %config.topics.commands,
        group = %config.group,
        batch_max = config.queue.batch_max,
        "writer consuming"
    );
    let backlog = DeadLetters::start(
        parts.producer.clone(),
        config.topics.dead_letters.clone(),
        config.dead_letter_deadline,
        LetterMetrics {
            sent: parts.metrics.dead_lettered.clone(),
            send_failures: parts.metrics.dead_letter_send_failures.clone(),
            stuck: parts.metrics.dead_letter_stuck.clone(),
        },
    );
    let mut w = Writer {
        backlog,
        map_version: parts.router.map.subscribe(),
        queue: Queue::new(config.queue),
        config,
        parts,
        commands,
        offsets: Offsets::default(),
        paused: BTreeSet::new(),
        applies: JoinSet::new(),
        accounts: Vec::new(),
    };
    tokio::pin!(shutdown);
    loop {
        w.dispatch().await?;
        w.carry_out_accounts().await;
        let now = Instant::now();
        let wake = w
            .queue
            .next_wake(now)
            .into_iter()
            .chain(w.accounts.iter().map(|a| a.due))
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        let (blocked, _) = w.queue.blocked(now);
        let intake = w.queue.len().saturating_sub(blocked) < w.config.max_ready;
        tokio::select! {
            _ = &mut shutdown => break,
            Some(joined) = w.applies.join_next(), if !w.applies.is_empty() => {
                w.finish_apply(joined).await?;
                // Collect whatever else finished meanwhile before committing.
                while let Some(Some(joined)) = w.applies.join_next().now_or_never() {
                    w.finish_apply(joined).await?;
                }
            }
            message = w.commands.recv(), if intake => {
                w.read(message.map(|m| m.detach())).await;
                // Whatever else is there already joins the same round, so
                // batches fill without a dispatch per message.
                for _ in 0..w.config.queue.batch_max {
                    match w.commands.recv().now_or_never() {
                        Some(message) => w.read(message.map(|m| m.detach())).await,
                        None => break,
                    }
                }
            }
            // A dead letter the broker took at last: its command is done.
            Some((partition, offset)) = w.backlog.next_sent() => {
                w.offsets.finished(partition, offset);
            }
            // A new shard map (a cutover flipped or aborted): the cities
            // held or re-routed go again now, not when their backoff ends.
            Ok(()) = w.map_version.changed() => {
                let version = *w.map_version.borrow_and_update();
                let woken = w.queue.wake_held(Instant::now());
                if woken > 0 {
                    tracing::info!(version, woken, "shard map changed: held cities go again");
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        w.after_turn();
    }
    tracing::info!(in_flight = w.applies.len(), "writer stopping");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, w.applies.join_next()).await {
        w.finish_apply(joined).await?;
    }
    let marks = w.offsets.to_commit();
    if !marks.is_empty()
        && let Err(e) = w.commands.commit(&marks, true)
    {
        tracing::warn!(error = %e, "final offset commit");
    }
    w.parts.producer.flush(Duration::from_secs(5));
    Ok(())
}

impl Writer {
    /// One message from the topic: queued, or (poison) dead-lettered and
    /// finished at once.
    async fn read(&mut self, message: rdkafka::error::KafkaResult<rdkafka::message::OwnedMessage>) {
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the commands topic");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        let (partition, offset) = (m.partition(), m.offset());
        self.offsets.read(partition, offset);
        let decoded = if m.key() == Some(ACCOUNT_KEY.as_bytes()) {
            match decode::decode_account(m.payload()) {
                Ok(command) => {
                    self.accounts
                        .push(account::Pending::new(command, partition, offset));
                    return;
                }
                Err(poison) => Err(poison),
            }
        } else {
            decode::decode(m.key(), m.payload())
        };
        match decoded {
            Ok(command) => self.queue.push(Queued {
                command,
                partition,
                offset,
                arrived: Instant::now(),
                strikes: 0,
            }),
            Err(poison) => {
                let source = format!("{}/{partition}/{offset}", m.topic());
                let key = poison
                    .city
                    .clone()
                    .or_else(|| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
                    .unwrap_or_default();
                tracing::warn!(%source, reason = %poison.reason, "poison message");
                let letter = DeadLetter {
                    payload: m.payload().unwrap_or_default().to_vec(),
                    key,
                    reason: poison.reason,
                    command: poison.command,
                    source,
                };
                self.reject_unapplied(letter, poison.city, partition, offset)
                    .await;
            }
        }
    }

    /// Sends every batch that is due to its shard.
    async fn dispatch(&mut self) -> anyhow::Result<()> {
        let router = &self.parts.router;
        let (batches, unroutable) = self.queue.due(Instant::now(), |city| {
            router
                .route(city)
                .ok()
                .map(|(route, _)| (route.shard, route.epoch))
        });
        for d in batches {
            let Some(pools) = self.parts.router.shard(&d.shard) else {
                // `route` only names shards the router has; should the two
                // ever disagree, the cities wait rather than stall.
                tracing::error!(shard = %d.shard, "no pools for a routed shard");
                for (city, _, _) in &d.cities {
                    self.queue.retry(city, true, Instant::now());
                }
                self.queue
                    .shard_done(&d.shard, Some(queue::Failure::Transient), Instant::now());
                continue;
            };
            let target = ShardTarget {
                name: d.shard.clone(),
                primary: pools.primary.clone(),
            };
            let ids = self.parts.ids.clone();
            let config = self.config.apply;
            let mut read = ReadAt {
                topic: self.config.topics.commands.clone(),
                ..ReadAt::default()
            };
            for &(id, partition, offset) in &d.read_at {
                read.add(id, partition, offset);
            }
            self.applies.spawn(async move {
                let batch: Vec<CityBatch> = d
                    .cities
                    .iter()
                    .map(|(city, epoch, commands)| CityBatch {
                        city: city.clone(),
                        epoch: *epoch,
                        commands: commands.clone(),
                    })
                    .collect();
                let result = match std::panic::AssertUnwindSafe(apply_read(
                    &target, &batch, &read, &ids, config,
                ))
                .catch_unwind()
                .await
                {
                    Ok(r) => r.map_err(Failed::from),
                    Err(panic) => Err(Failed::Panic(
                        panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default(),
                    )),
                };
                (d, result)
            });
        }
        if !unroutable.is_empty() {
            self.settle_unroutable(unroutable).await;
        }
        Ok(())
    }

    /// Cities the map does not place in this region: reload the map (and
    /// the shard list) once; still not served → their commands are rejected
    /// (dead letters), never dropped; placed on a shard this process does
    /// not know → held.
    async fn settle_unroutable(&mut self, cities: Vec<String>) {
        let refreshed = match self.parts.router.map.refresh().await {
            Ok(_) => self.parts.router.refresh_shards().await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = refreshed {
            tracing::warn!(error = %e, "reloading the shard map");
            for city in &cities {
                self.queue.retry(city, true, Instant::now());
            }
            return;
        }
        for city in cities {
            match self.parts.router.route(&city) {
                Ok(_) => {}
                Err(RouteError::NotServed(_)) => {
                    let n = usize::MAX;
                    let reason =
                        format!("city {city} is not served by region {}", self.config.region);
                    for q in self.queue.finish(&city, n) {
                        self.reject_queued(&q, &reason).await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "holding the city's commands");
                    self.queue.retry(&city, true, Instant::now());
                }
            }
        }
    }

    /// Account commands that are due, in the order read; each finished
    /// once the catalog has it (and, for a deletion, every city's command
    /// is on the topic).
    async fn carry_out_accounts(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.accounts.len() {
            if self.accounts[i].due > now {
                i += 1;
                continue;
            }
            let result = tokio::time::timeout(
                Duration::from_secs(5),
                account::carry_out(
                    &self.parts,
                    &self.config.region,
                    &self.config.topics.commands,
                    &self.accounts[i].command,
                ),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
            match result {
                Ok(cities) => {
                    let done = self.accounts.remove(i);
                    tracing::info!(command = %done.command.id, cities, "account command carried out");
                    self.offsets.finished(done.partition, done.offset);
                }
                Err(e) => {
                    let a = &mut self.accounts[i];
                    tracing::warn!(error = %format!("{e:#}"), command = %a.command.id, "account command: will retry");
                    a.failed(Instant::now());
                    i += 1;
                }
            }
        }
    }

    /// After every turn: revocations, offset commits, pauses, gauges.
    fn after_turn(&mut self) {
        let revoked = self.commands.take_revoked();
        if !revoked.is_empty() {
            // librdkafka keeps an application's pause on a partition through
            // its revocation: assigned here again, it would stay paused for
            // good while `paused` has forgotten it. So it is resumed as it is
            // forgotten (harmless if it went to another consumer).
            let was_paused: BTreeSet<i32> = revoked.intersection(&self.paused).copied().collect();
            if !was_paused.is_empty()
                && let Err(e) = self.commands.resume(&was_paused)
            {
                tracing::warn!(error = %e, partitions = ?was_paused, "resuming revoked partitions");
            }
            for p in &revoked {
                self.offsets.forget(*p);
                self.paused.remove(p);
            }
            self.queue.drop_partitions(&revoked);
            self.accounts.retain(|a| !revoked.contains(&a.partition));
            self.backlog.forget(&revoked);
        }
        let marks = self.offsets.to_commit();
        if !marks.is_empty() {
            match self.commands.commit(&marks, false) {
                Ok(()) => self.offsets.committed(&marks),
                Err(e) => tracing::warn!(error = %e, "committing offsets"),
            }
        }
        let (blocked, mut partitions) = self.queue.blocked(Instant::now());
        // A partition with a dead letter waiting pauses whatever the bound:
        // everything read after it would wait behind it for its commit.
        let stuck = self.backlog.partitions();
        let mut pause: BTreeSet<i32> = stuck.difference(&self.paused).copied().collect();
        if blocked > self.config.max_blocked {
            pause.extend(partitions.difference(&self.paused));
        }
        partitions.extend(stuck);
        if !pause.is_empty() {
            tracing::warn!(
                blocked,
                stuck_letters = self.backlog.len(),
                partitions = ?pause,
                "too many blocked commands, or a dead letter stuck: pausing partitions"
            );
            match self.commands.pause(&pause) {
                Ok(()) => {
                    add(&self.parts.metrics.pauses, pause.len());
                    self.paused.extend(pause);
                }
                Err(e) => tracing::warn!(error = %e, "pausing partitions"),
            }
        }
        // A paused partition resumes once none of its commands is blocked
        // and none of its dead letters waits.
        let drained: BTreeSet<i32> = self.paused.difference(&partitions).copied().collect();
        if !drained.is_empty() {
            tracing::info!(partitions = ?drained, "blocked commands drained: resuming partitions");
            match self.commands.resume(&drained) {
                Ok(()) => self.paused.retain(|p| !drained.contains(p)),
                Err(e) => tracing::warn!(error = %e, "resuming partitions"),
            }
        }
        let m = &self.parts.metrics;
        set(&m.queued, self.queue.len());
        set(&m.blocked, blocked);
        set(&m.paused_partitions, self.paused.len());
        set(&m.dozing, usize::from(self.commands.doze().is_dozing()));
    }
}
