//! The publisher role: consumes `<region>.events`, renders each post's page
//! with the origin's template (`render::post_page`), and writes pages and
//! tombstones to edge KV through a `KvSink`.
//!
//! What it guarantees (design §3, §4):
//! - **Nothing skipped.** Consumer offsets are committed only past events
//!   whose KV write happened (or that needed none); a sink that is down is
//!   retried with backoff, never passed over. A crash replays from the last
//!   commit, and the replay is harmless because of the next point.
//! - **Never an older version.** Per key the last version written is kept
//!   (`coalesce`), so a replayed or re-sent older event writes nothing; the
//!   edge's bulk route checks the same rule (`kv::replaces`) once more.
//! - **One write per key per second** (Cloudflare KV's limit): versions of a
//!   key that arrive within the interval are coalesced into one write of the
//!   newest, which carries the offsets of all of them.
//! - Deleted, hidden, expired and user-deleted posts become tombstones with
//!   a TTL, never bare deletes, so nothing late can bring them back.
//! - After a write, the cities concerned lose their cached listing and
//!   search pages in Redis (`invalidate`).
//! - Every page names its template version; after a template change the
//!   live pages of the region's cities are re-published (`republish`).

pub mod coalesce;
pub mod invalidate;
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
use tokio::task::JoinHandle;

use crate::backoff::doubling;
use crate::bus::consumer::Consumer;
use crate::bus::failpoint::{self, PUBLISHER_AFTER_KV_WRITE};
use crate::bus::offsets::Offsets;
use crate::model::{Event, Post, PostStatus};
use crate::render;
use crate::roles::common::{add, set};
use coalesce::{Coalescer, Due, Entry, Offered};
use invalidate::Invalidator;
use metrics::PublisherMetrics;
use republish::Republish;
use sink::{KvSink, chunks};
pub use start::{PublisherArgs, SinkKind, run};

/// What the publisher is told.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The events topic: `<region>.events`.
    pub topic: String,
    /// Consumer group: `<region>.publisher`.
    pub group: String,
    /// Shortest time between two writes of one key (Cloudflare KV: 1 s).
    pub interval: Duration,
    /// Most entries taken for the sink at once.
    pub batch_max: usize,
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
}

impl PublisherConfig {
    /// Defaults for `region`'s topic and group.
    pub fn new(region: &str) -> Self {
        PublisherConfig {
            topic: crate::bus::Topics::of_region(region).events,
            group: format!("{region}.publisher"),
            interval: Duration::from_secs(1),
            batch_max: 1000,
            max_pending: 20_000,
            max_keys: 500_000,
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            session_timeout: Duration::from_secs(6),
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
    })
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
    /// The bulk write in progress, if any (one at a time, in order).
    flush: Option<JoinHandle<Flushed>>,
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
    let consumer = Consumer::subscribe(
        &parts.brokers,
        &config.topic,
        &config.group,
        config.session_timeout,
    )?;
    tracing::info!(topic = %config.topic, group = %config.group, "publisher consuming");
    let mut p = Publisher {
        coalescer: Coalescer::new(config.interval, config.max_keys),
        config,
        parts,
        consumer,
        offsets: Offsets::default(),
        flush: None,
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
        let flushing = p.flush.is_some();
        tokio::select! {
            _ = &mut shutdown => break,
            done = wait_flush(&mut p.flush), if flushing => {
                p.flush = None;
                p.finish_flush(done?)?;
            }
            message = p.consumer.consumer.recv(), if intake => {
                p.read(message.map(|m| m.detach())).await;
                for _ in 0..p.config.batch_max {
                    match p.consumer.consumer.recv().now_or_never() {
                        Some(message) => p.read(message.map(|m| m.detach())).await,
                        None => break,
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        p.after_turn();
    }
    tracing::info!("publisher stopping");
    if let Some(flush) = p.flush.take() {
        match tokio::time::timeout(Duration::from_secs(10), flush).await {
            Ok(done) => p.finish_flush(done?)?,
            // Aborted mid-write: its events stay uncommitted and replay.
            Err(_) => tracing::warn!("the KV write in progress did not finish in 10 s"),
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

/// The bulk write in progress (never resolves when there is none).
async fn wait_flush(
    flush: &mut Option<JoinHandle<Flushed>>,
) -> Result<Flushed, tokio::task::JoinError> {
    match flush {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
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
        let pm = &self.parts.metrics;
        add(&pm.consumed, 1);
        let entry = serde_json::from_slice::<Event>(m.payload().unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|event| entry_of(&event));
        match entry {
            Ok(entry) => match repair::offer(&mut self.coalescer, &m, entry, at) {
                Offered::Queued => {}
                Offered::Coalesced => add(&pm.coalesced, 1),
                Offered::Stale => {
                    add(&pm.stale, 1);
                    self.offsets.finished(at.0, at.1);
                }
            },
            Err(reason) => {
                // An event this build cannot read cannot be rendered either;
                // waiting would stop the partition for good. The relay only
                // sends what `apply` wrote, so this means a version skew.
                tracing::error!(
                    source = %format!("{}/{}/{}", m.topic(), at.0, at.1),
                    %reason,
                    "unreadable event skipped"
                );
                add(&pm.unreadable, 1);
                self.offsets.finished(at.0, at.1);
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
        } else if self.coalescer.pending() == 0 && self.flush.is_none() {
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

    /// Starts a bulk write of what is due, unless one is in progress.
    fn start_flush(&mut self) {
        if self.flush.is_some() {
            return;
        }
        let due = self
            .coalescer
            .take_due(Instant::now(), self.config.batch_max);
        if due.is_empty() {
            return;
        }
        let sink = self.parts.sink.clone();
        let cache = self.parts.cache.clone();
        let metrics = self.parts.metrics.clone();
        let (min, max) = (self.config.retry_min, self.config.retry_max);
        let interval = self.config.interval;
        self.flush = Some(tokio::spawn(async move {
            write_all(&*sink, &due, &metrics, min, max, interval).await;
            let cities: BTreeSet<&str> = due.iter().map(|d| d.entry.city.as_str()).collect();
            for city in cities {
                if let Err(e) = cache.city(city).await {
                    add(&metrics.invalidate_failures, 1);
                    tracing::warn!(%city, error = %format!("{e:#}"), "invalidating cached pages");
                }
            }
            due
        }));
    }

    /// A bulk write finished: its keys are settled, and its events may be
    /// committed, past the crash point.
    fn finish_flush(&mut self, done: Flushed) -> anyhow::Result<()> {
        let now = Instant::now();
        self.coalescer
            .written(done.iter().map(|d| d.entry.key.as_str()), now);
        failpoint::crash_point(PUBLISHER_AFTER_KV_WRITE)?;
        for d in &done {
            for (partition, offset) in &d.covers {
                self.offsets.finished(*partition, *offset);
            }
        }
        Ok(())
    }

    /// After every turn: revocations, offset commits, gauges.
    fn after_turn(&mut self) {
        for partition in self.consumer.take_revoked() {
            // Its next owner starts from the last commit; writes pending
            // for it still go out (harmless: versions decide).
            self.offsets.forget(partition);
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

/// Writes `due` until the sink took every entry: failed calls wait and are
/// retried (doubling from `min` to `max`); keys the sink asks to retry wait
/// at least `interval` (their write may have half-happened, and the key's
/// one write a second applies).
async fn write_all<S: KvSink>(
    sink: &S,
    due: &[Due],
    metrics: &PublisherMetrics,
    min: Duration,
    max: Duration,
    interval: Duration,
) {
    let pm = metrics;
    let mut left: Vec<BulkWrite> = due.iter().map(|d| d.entry.write.clone()).collect();
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
        }
    }

    #[test]
    fn a_live_post_is_its_origin_page_and_a_gone_one_a_tombstone() {
        let p = post(3, PostStatus::Live);
        let e = entry_of(&Event::PostChanged {
            command_id: Id(1),
            post: p.clone(),
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
            post: post(5, PostStatus::Hidden),
        })
        .unwrap();
        assert!(hidden.meta.gone);
    }
}
