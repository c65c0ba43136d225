//! The publisher role: consumes `<region>.events`, renders each post's page
//! with the origin's template (`render::post_page`), and writes pages and
//! tombstones to edge KV through a `KvSink`.
//!
//! What it guarantees (design §3, §4):
//! - **Nothing skipped.** Consumer offsets are committed only past events
//!   whose KV write happened (or that needed none), or that were copied to
//!   the dead-letter topic: an event that does not decode, or of a city
//!   this region does not serve, goes there with its reason and is counted
//!   (`intake`); that send is bounded by a deadline, past which it goes on
//!   in the background while its partition pauses and a gauge alerts
//!   (`bus::letters`, shared with the writer). A sink that is down is
//!   retried with backoff, never passed over. A crash replays from the last
//!   commit, and the replay is harmless because of the next point.
//! - **Never an older version**, whatever the sink: per key the last
//!   version written is kept in memory (`coalesce`), so a replayed or
//!   re-sent older event usually writes nothing at all; and before every
//!   bulk write the keys are claimed against a durable high-water mark per
//!   key in the region's catalog (`marks`), which survives a restart and is
//!   shared by every publisher of the region, so that a duplicate event
//!   after a restart or a rebalance cannot write a page over a tombstone
//!   even through Cloudflare KV's unconditional bulk API. The rule is
//!   `kv::replaces`, the edge's own (its bulk route checks it once more):
//!   a newer version, such as a renewed or restored post, still replaces a
//!   tombstone.
//! - **One write per key per second** (Cloudflare KV's limit): versions of a
//!   key that arrive within the interval are coalesced into one write of the
//!   newest, which carries the offsets of all of them.
//! - **Several bulk writes in flight** (`max_in_flight`), each of keys none
//!   of the others has: a key has at most one write in flight and its next
//!   starts after that one ended, so per key the order and the one write a
//!   second hold, while one call's round trip no longer bounds the rate.
//! - Deleted, hidden, expired and user-deleted posts become tombstones with
//!   a TTL, never bare deletes, so nothing late can bring them back.
//! - After a write, the cities concerned lose their cached listing and
//!   search pages in Redis (`invalidate`).
//! - Every page names its template version; after a template change the
//!   live pages of the region's cities are re-published (`republish`).

pub mod coalesce;
pub mod intake;
pub mod invalidate;
pub mod marks;
pub mod metrics;
pub mod repair;
pub mod republish;
pub mod sink;
mod start;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cityboard_protocol::kv::{BulkWrite, PostMeta, TOMBSTONE_TTL_SECS, post_key};
use futures_util::FutureExt;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use tokio::task::JoinSet;

use crate::backoff::doubling;
use crate::bus::Producer;
use crate::bus::consumer::Consumer;
use crate::bus::doze::DozeConfig;
use crate::bus::failpoint::{self, PUBLISHER_AFTER_KV_WRITE};
use crate::bus::letters::{self, DeadLetters, LetterMetrics};
use crate::bus::offsets::Offsets;
use crate::db::{RouteError, Router};
use crate::model::{Event, Post, PostStatus};
use crate::render;
use crate::roles::common::{add, set};
use crate::trail;
use coalesce::{Coalescer, Due, Entry, Offered};
use intake::{Intake, Raw, Refused, intake};
use invalidate::Invalidator;
use marks::Marks;
use metrics::PublisherMetrics;
use republish::Republish;
use sink::{KvSink, chunks};
pub use start::{PublisherArgs, SinkKind, run};

/// What the publisher is told.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The events topic: `<region>.events`.
    pub topic: String,
    /// Where events that cannot be written go: `<region>.dead-letters`
    /// (the writer's too; a letter's source header names its topic).
    pub dead_letters: String,
    /// How long a dead letter is tried before it goes on in the background
    /// while its partition pauses (`bus::letters`).
    pub dead_letter_deadline: Duration,
    /// Consumer group: `<region>.publisher`.
    pub group: String,
    /// Shortest time between two writes of one key (Cloudflare KV: 1 s).
    pub interval: Duration,
    /// Most entries taken for the sink at once.
    pub batch_max: usize,
    /// Bulk writes in flight at most, each of other keys (a key is in at
    /// most one, so its order and its one write a second hold): one bulk
    /// call's round trip no longer bounds the publisher's rate.
    pub max_in_flight: usize,
    /// Keys with a pending write past which reading pauses until writes
    /// drain (plain back-pressure, never unbounded buffering).
    pub max_pending: usize,
    /// Keys whose last version is remembered at most.
    pub max_keys: usize,
    /// First wait after a failed bulk call; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Consumer session timeout.
    pub session_timeout: Duration,
    /// When the consumer dozes while idle (`bus::doze`); `None`: never.
    pub doze: Option<DozeConfig>,
}

impl PublisherConfig {
    /// Defaults for `region`'s topic and group.
    pub fn new(region: &str) -> Self {
        let topics = crate::bus::Topics::of_region(region);
        PublisherConfig {
            topic: topics.events,
            dead_letters: topics.dead_letters,
            dead_letter_deadline: letters::DEFAULT_DEADLINE,
            group: format!("{region}.publisher"),
            interval: Duration::from_secs(1),
            batch_max: 1000,
            max_in_flight: 4,
            max_pending: 20_000,
            max_keys: 500_000,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            session_timeout: Duration::from_secs(6),
            doze: None,
        }
    }
}

/// What the publisher works with, built by `role::run` (or a test).
pub struct PublisherParts<S> {
    pub sink: Arc<S>,
    /// The region's LRU Redis (listing and search pages).
    pub cache: Arc<Invalidator>,
    pub metrics: Arc<PublisherMetrics>,
    /// `host:port` of the broker.
    pub brokers: String,
    /// For dead letters.
    pub producer: Producer,
    /// The region's shard map: which cities it serves.
    pub router: Router,
    /// The durable high-water mark of every key (the region's catalog).
    pub marks: Marks,
    /// The photo store: a deleted post's photos are removed from it as its
    /// event goes by (none: kept).
    pub photos: Option<crate::media::Photos>,
}

/// Version of the post page template this build renders, written into
/// every page's metadata (`PostMeta::template`) and given to the edge
/// (its `TEMPLATE_VERSION`), which serves only pages of this version.
pub fn template_version() -> u32 {
    render::TEMPLATE_VERSION
}

/// The KV entry an event becomes: a rendered page, or a tombstone.
pub fn entry_of(event: &Event) -> Result<Entry, String> {
    let key_of = |id: i64| {
        u64::try_from(id)
            .map(post_key)
            .map_err(|_| format!("post id {id} is negative"))
    };
    let tombstone = |key: String, city: &str, version: i64| {
        let meta = PostMeta::tombstone(version);
        Entry {
            write: BulkWrite {
                key: key.clone(),
                value: String::new(),
                metadata: serde_json::to_value(&meta).ok(),
                expiration_ttl: Some(TOMBSTONE_TTL_SECS),
            },
            key,
            meta,
            city: city.to_string(),
        }
    };
    let request = event.request_id().map(|r| r.as_str());
    Ok(match event {
        Event::PostChanged { post, .. } if post.status == PostStatus::Live => page_entry(post)?,
        // A change that leaves the post invisible is a tombstone all the
        // same (the writer sends PostGone for those; this is a safeguard).
        Event::PostChanged { post, .. } => tombstone(key_of(post.id.0)?, &post.city, post.version),
        Event::PostGone {
            city,
            post_id,
            version,
            ..
        } => tombstone(key_of(post_id.0)?, city, *version),
    }
    .naming(request))
}

/// The page of a live post, rendered with this build's template.
pub fn page_entry(post: &Post) -> Result<Entry, String> {
    let key = u64::try_from(post.id.0)
        .map(post_key)
        .map_err(|_| format!("post id {} is negative", post.id.0))?;
    let meta = PostMeta::page(&post.city, post.version, post.expires_at.timestamp())
        .with_template(template_version());
    Ok(Entry {
        write: BulkWrite {
            key: key.clone(),
            value: render::post_page(post),
            metadata: serde_json::to_value(&meta).ok(),
            expiration_ttl: None,
        },
        key,
        meta,
        city: post.city.clone(),
    })
}

/// The post an event says was deleted (by its poster or with its account),
/// whose photos must go at once: a hidden post may come back, and an
/// expired one keeps its photos until it is archived.
fn deleted_post(payload: &[u8]) -> Option<(String, crate::model::Id)> {
    use crate::model::event::GoneReason;
    match serde_json::from_slice::<Event>(payload).ok()? {
        Event::PostGone {
            city,
            post_id,
            reason: GoneReason::Deleted | GoneReason::UserDeleted,
            ..
        } => Some((city, post_id)),
        _ => None,
    }
}

/// A flush task's answer: the writes it made (all of them: it retries
/// until the sink took each).
type Flushed = Vec<Due>;

/// The publisher's state between loop turns.
struct Publisher<S> {
    config: PublisherConfig,
    parts: PublisherParts<S>,
    consumer: Consumer,
    offsets: Offsets,
    coalescer: Coalescer,
    /// The bulk writes in progress (at most `max_in_flight`, of distinct
    /// keys).
    flushes: JoinSet<Flushed>,
    /// Events that could not be written, on their way to the dead-letter
    /// topic.
    letters: DeadLetters,
    /// Partitions paused because one of their dead letters is stuck.
    paused: BTreeSet<i32>,
    /// The re-publication after a template change, while it lasts.
    republish: Option<Republish>,
    /// No shard or catalog call for the re-publication before this (after
    /// a failed one).
    republish_pause: Option<Instant>,
}

/// Runs the publisher until `shutdown` resolves (the write in progress is
/// let finish, offsets committed), or until a crash point configured to
/// fail is reached (then it returns that error without committing, as a
/// crash would).
pub async fn publish_events<S: KvSink>(
    config: PublisherConfig,
    parts: PublisherParts<S>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_republishing(config, parts, None, shutdown).await
}

/// [`publish_events`], re-publishing the pages `republish` reads (a template change)
/// beside the events.
pub async fn run_republishing<S: KvSink>(
    config: PublisherConfig,
    parts: PublisherParts<S>,
    republish: Option<Republish>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut consumer = Consumer::subscribe(
        &parts.brokers,
        &config.topic,
        &config.group,
        config.session_timeout,
    )?;
    if let Some(doze) = &config.doze {
        consumer = consumer.dozing(doze.clone());
    }
    tracing::info!(topic = %config.topic, group = %config.group, "publisher consuming");
    let m = &parts.metrics;
    let letters = DeadLetters::start(
        parts.producer.clone(),
        config.dead_letters.clone(),
        config.dead_letter_deadline,
        LetterMetrics {
            sent: m.dead_lettered.clone(),
            send_failures: m.dead_letter_send_failures.clone(),
            stuck: m.dead_letter_stuck.clone(),
        },
    );
    let mut p = Publisher {
        letters,
        paused: BTreeSet::new(),
        coalescer: Coalescer::new(config.interval, config.max_keys),
        config,
        parts,
        consumer,
        offsets: Offsets::default(),
        flushes: JoinSet::new(),
        republish,
        republish_pause: None,
    };
    tokio::pin!(shutdown);
    loop {
        p.republish_step().await;
        p.start_flush();
        let wake = p
            .coalescer
            .next_due()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let intake = p.coalescer.pending() < p.config.max_pending;
        let flushing = !p.flushes.is_empty();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = p.flushes.join_next(), if flushing => {
                p.finish_flush(done?)?;
            }
            message = p.consumer.recv(), if intake => {
                p.read(message.map(|m| m.detach())).await;
                for _ in 0..p.config.batch_max {
                    match p.consumer.recv().now_or_never() {
                        Some(message) => p.read(message.map(|m| m.detach())).await,
                        None => break,
                    }
                }
            }
            // A dead letter the broker took at last: its event is done.
            Some((partition, offset)) = p.letters.next_sent() => {
                p.offsets.finished(partition, offset);
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        p.after_turn();
    }
    tracing::info!("publisher stopping");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !p.flushes.is_empty() {
        match tokio::time::timeout_at(deadline, p.flushes.join_next()).await {
            Ok(Some(done)) => p.finish_flush(done?)?,
            Ok(None) => break,
            // Aborted mid-write (the set drops them): their events stay
            // uncommitted and replay.
            Err(_) => {
                tracing::warn!(
                    writes = p.flushes.len(),
                    "KV writes in progress did not finish in 10 s"
                );
                break;
            }
        }
    }
    let marks = p.offsets.to_commit();
    if !marks.is_empty()
        && let Err(e) = p.consumer.commit(&marks, true)
    {
        tracing::warn!(error = %e, "final offset commit");
    }
    Ok(())
}

impl<S: KvSink> Publisher<S> {
    /// One message: offered to the coalescer, or finished at once when it
    /// needs no write (stale, unreadable).
    async fn read(&mut self, message: rdkafka::error::KafkaResult<OwnedMessage>) {
        let m = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "reading the events topic");
                tokio::time::sleep(Duration::from_millis(100)).await;
                return;
            }
        };
        let at = (m.partition(), m.offset());
        self.offsets.read(at.0, at.1);
        let pm = self.parts.metrics.clone();
        add(&pm.consumed, 1);
        let raw = Raw {
            topic: m.topic(),
            partition: at.0,
            offset: at.1,
            key: m.key(),
            payload: m.payload(),
        };
        if let Some(photos) = &self.parts.photos
            && let Some((city, post)) = m.payload().and_then(deleted_post)
        {
            let photos = photos.clone();
            // Beside the KV write, never holding it up; a failure leaves
            // orphans, logged, for a sweep to find.
            tokio::spawn(async move {
                if let Err(e) = photos.remove_post(&city, post).await {
                    tracing::warn!(error = %e, %city, %post, "removing a deleted post's photos");
                }
            });
        }
        let router = &self.parts.router;
        let served = |city: &str| !matches!(router.route(city), Err(RouteError::NotServed(_)));
        match intake(raw, &router.region, served) {
            Intake::Write(entry) => match repair::offer(&mut self.coalescer, &m, entry, at) {
                Offered::Queued => {}
                Offered::Coalesced => add(&pm.coalesced, 1),
                Offered::Stale => {
                    add(&pm.stale, 1);
                    self.offsets.finished(at.0, at.1);
                }
            },
            Intake::Letter { letter, why } => {
                add(
                    match why {
                        Refused::Unreadable => &pm.unreadable,
                        Refused::NotServed => &pm.not_served,
                    },
                    1,
                );
                tracing::error!(
                    source = %letter.source,
                    reason = %letter.reason,
                    "event not written: copying it to the dead-letter topic"
                );
                if self.letters.send(letter, at.0, at.1).await {
                    self.offsets.finished(at.0, at.1);
                }
            }
        }
    }

    /// One step of the re-publication, if there is one: the next batch of
    /// pages offered while the coalescer has room, and once all were
    /// offered and written, the version recorded.
    async fn republish_step(&mut self) {
        let Some(r) = self.republish.as_mut() else {
            return;
        };
        if self.republish_pause.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let failed = if !r.all_read() {
            if self.coalescer.pending() >= self.config.max_pending / 2 {
                return;
            }
            match r.next().await {
                Ok(posts) => {
                    for post in &posts {
                        match page_entry(post) {
                            Ok(entry) => {
                                self.coalescer.offer_republished(entry);
                            }
                            Err(reason) => tracing::error!(%reason, "page not re-published"),
                        }
                    }
                    None
                }
                Err(e) => Some(format!("reading live posts: {e}")),
            }
        } else if self.coalescer.pending() == 0 && self.flushes.is_empty() {
            match r.record().await {
                Ok(()) => {
                    tracing::info!(template = r.version(), "pages re-published");
                    self.republish = None;
                    None
                }
                Err(e) => Some(format!("recording the template version: {e}")),
            }
        } else {
            None
        };
        if let Some(error) = failed {
            tracing::warn!(%error, "re-publishing pages; retrying in a second");
            self.republish_pause = Some(Instant::now() + Duration::from_secs(1));
        }
    }

    /// Starts bulk writes of what is due while fewer than `max_in_flight`
    /// are in progress. The coalescer hands out a key only while none of
    /// its writes is in flight, so the writes in flight are of distinct
    /// keys, and a key's next write starts after its last one ended.
    fn start_flush(&mut self) {
        while self.flushes.len() < self.config.max_in_flight.max(1) {
            let due = self
                .coalescer
                .take_due(Instant::now(), self.config.batch_max);
            if due.is_empty() {
                return;
            }
            self.spawn_flush(due);
        }
    }

    /// A bulk write of `due`, as a task of its own.
    fn spawn_flush(&mut self, due: Vec<Due>) {
        let sink = self.parts.sink.clone();
        let cache = self.parts.cache.clone();
        let marks = self.parts.marks.clone();
        let metrics = self.parts.metrics.clone();
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let interval = self.config.interval;
        self.flushes.spawn(async move {
            let refused = claim(&marks, &due, &metrics, min, max).await;
            add(&metrics.skipped_older, refused.len());
            let writes: Vec<BulkWrite> = due
                .iter()
                .filter(|d| !refused.contains(&d.entry.key))
                .map(|d| d.entry.write.clone())
                .collect();
            write_all(&*sink, writes, &metrics, min, max, interval).await;
            let cities: BTreeSet<&str> = due.iter().map(|d| d.entry.city.as_str()).collect();
            for city in cities {
                if let Err(e) = cache.city(city).await {
                    add(&metrics.invalidate_failures, 1);
                    tracing::warn!(%city, error = %format!("{e:#}"), "invalidating cached pages");
                }
            }
            due
        });
    }

    /// A bulk write finished: its keys are settled, and its events may be
    /// committed, past the crash point.
    fn finish_flush(&mut self, done: Flushed) -> anyhow::Result<()> {
        let now = Instant::now();
        self.coalescer
            .written(done.iter().map(|d| d.entry.key.as_str()), now);
        failpoint::crash_point(PUBLISHER_AFTER_KV_WRITE)?;
        for d in &done {
            let meta = &d.entry.meta;
            trail::published(
                meta.request.as_deref(),
                &d.entry.key,
                meta.version,
                meta.gone,
            );
            for (partition, offset) in &d.covers {
                self.offsets.finished(*partition, *offset);
            }
        }
        Ok(())
    }

    /// After every turn: revocations, offset commits, pauses, gauges.
    fn after_turn(&mut self) {
        let revoked = self.consumer.take_revoked();
        for partition in &revoked {
            // Its next owner starts from the last commit; writes pending
            // for it still go out (harmless: the marks decide).
            self.offsets.forget(*partition);
        }
        if !revoked.is_empty() {
            // Its letters are the next owner's to send again. librdkafka
            // keeps a pause through a revocation, so a paused partition is
            // resumed as it goes (see the writer's `after_turn`).
            self.letters.forget(&revoked);
            let was_paused: BTreeSet<i32> = revoked.intersection(&self.paused).copied().collect();
            if !was_paused.is_empty()
                && let Err(e) = self.consumer.resume(&was_paused)
            {
                tracing::warn!(error = %e, partitions = ?was_paused, "resuming revoked partitions");
            }
            self.paused.retain(|p| !revoked.contains(p));
        }
        // A partition with a stuck dead letter reads nothing more until it
        // is sent: its offsets could not be committed past it anyway.
        let stuck = self.letters.partitions();
        let pause: BTreeSet<i32> = stuck.difference(&self.paused).copied().collect();
        if !pause.is_empty() {
            match self.consumer.pause(&pause) {
                Ok(()) => self.paused.extend(pause),
                Err(e) => tracing::warn!(error = %e, partitions = ?pause, "pausing partitions"),
            }
        }
        let drained: BTreeSet<i32> = self.paused.difference(&stuck).copied().collect();
        if !drained.is_empty() {
            match self.consumer.resume(&drained) {
                Ok(()) => self.paused.retain(|p| !drained.contains(p)),
                Err(e) => tracing::warn!(error = %e, partitions = ?drained, "resuming partitions"),
            }
        }
        let marks = self.offsets.to_commit();
        if !marks.is_empty() {
            match self.consumer.commit(&marks, false) {
                Ok(()) => self.offsets.committed(&marks),
                Err(e) => tracing::warn!(error = %e, "offset commit"),
            }
        }
        set(&self.parts.metrics.pending, self.coalescer.pending());
    }
}

/// Claims the keys of `due` against their durable marks (`marks`) until the
/// catalog answers (failed claims wait and are retried, doubling from `min`
/// to `max`, and nothing is written meanwhile): the keys whose write must
/// not go out.
async fn claim(
    marks: &Marks,
    due: &[Due],
    metrics: &PublisherMetrics,
    min: Duration,
    max: Duration,
) -> std::collections::HashSet<String> {
    let entries: Vec<&Entry> = due.iter().map(|d| &d.entry).collect();
    let mut waits = doubling(min, max);
    loop {
        match marks.claim(&entries).await {
            Ok(refused) => return refused,
            Err(e) => {
                add(&metrics.mark_failures, 1);
                let wait = waits.next().unwrap_or(max);
                tracing::warn!(error = %e, ?wait, "claiming KV marks failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Writes `writes` until the sink took every entry: failed calls wait and
/// are retried (doubling from `min` to `max`); keys the sink asks to retry
/// wait at least `interval` (their write may have half-happened, and the
/// key's one write a second applies).
async fn write_all<S: KvSink>(
    sink: &S,
    writes: Vec<BulkWrite>,
    metrics: &PublisherMetrics,
    min: Duration,
    max: Duration,
    interval: Duration,
) {
    let pm = metrics;
    let mut left = writes;
    let mut waits = doubling(min, max);
    while !left.is_empty() {
        let wait = waits.next().unwrap_or(max);
        let mut retry: Vec<String> = Vec::new();
        let mut failed = false;
        for chunk in chunks(&left, sink.max_bytes()) {
            match sink.put(chunk).await {
                Ok(report) => {
                    add(&pm.written, report.written as usize);
                    add(&pm.skipped_older, report.skipped_older as usize);
                    retry.extend(report.retry);
                }
                Err(e) => {
                    add(&pm.failures, 1);
                    tracing::warn!(error = %e, ?wait, entries = chunk.len(), "KV write failed; retrying");
                    retry.extend(chunk.iter().map(|w| w.key.clone()));
                    failed = true;
                }
            }
        }
        if retry.is_empty() {
            return;
        }
        let again: BTreeSet<String> = retry.into_iter().collect();
        left.retain(|w| again.contains(&w.key));
        tokio::time::sleep(if failed { wait } else { wait.max(interval) }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::GoneReason;
    use crate::model::{Id, Post, PostFields};

    fn post(version: i64, status: PostStatus) -> Post {
        let now = chrono::Utc::now();
        Post {
            city: "boston".into(),
            id: Id(7),
            user_id: Id(6),
            fields: PostFields {
                category: "for-sale".into(),
                title: "desk".into(),
                description: "oak".into(),
                price: Some(3),
                location: None,
                image_count: 0,
            },
            status,
            version,
            created_at: now,
            updated_at: now,
            expires_at: now,
            listed_at: now,
            photos: Vec::new(),
        }
    }

    #[test]
    fn only_a_deleted_post_s_photos_go_with_its_event() {
        let gone = |reason| {
            serde_json::to_vec(&Event::PostGone {
                command_id: Id(1),
                request_id: None,
                city: "boston".into(),
                post_id: Id(7),
                version: 2,
                reason,
            })
            .unwrap()
        };
        let deleted = Some(("boston".to_string(), Id(7)));
        assert_eq!(deleted_post(&gone(GoneReason::Deleted)), deleted);
        assert_eq!(deleted_post(&gone(GoneReason::UserDeleted)), deleted);
        // A hidden post may be restored; an expired one is archived later.
        assert_eq!(deleted_post(&gone(GoneReason::Hidden)), None);
        assert_eq!(deleted_post(&gone(GoneReason::Expired)), None);
        let changed = serde_json::to_vec(&Event::PostChanged {
            command_id: Id(1),
            request_id: None,
            post: Box::new(post(3, PostStatus::Live)),
        })
        .unwrap();
        assert_eq!(deleted_post(&changed), None);
        assert_eq!(deleted_post(b"not json"), None);
    }

    #[test]
    fn a_live_post_is_its_origin_page_and_a_gone_one_a_tombstone() {
        let p = post(3, PostStatus::Live);
        let e = entry_of(&Event::PostChanged {
            command_id: Id(1),
            request_id: None,
            post: Box::new(p.clone()),
        })
        .unwrap();
        assert_eq!(e.key, "post:7");
        assert_eq!(e.write.value, render::post_page(&p));
        assert_eq!(
            e.meta,
            PostMeta::page("boston", 3, p.expires_at.timestamp()).with_template(template_version())
        );
        assert_eq!(e.write.expiration_ttl, None);
        for reason in [
            GoneReason::Deleted,
            GoneReason::Hidden,
            GoneReason::Expired,
            GoneReason::UserDeleted,
        ] {
            let t = entry_of(&Event::PostGone {
                command_id: Id(2),
                request_id: None,
                city: "boston".into(),
                post_id: Id(7),
                version: 4,
                reason,
            })
            .unwrap();
            assert_eq!(t.meta, PostMeta::tombstone(4));
            assert_eq!(t.write.value, "");
            assert_eq!(t.write.expiration_ttl, Some(TOMBSTONE_TTL_SECS));
        }
        let hidden = entry_of(&Event::PostChanged {
            command_id: Id(1),
            request_id: None,
            post: Box::new(post(5, PostStatus::Hidden)),
        })
        .unwrap();
        assert!(hidden.meta.gone);
    }
}
