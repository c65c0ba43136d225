//! The janitor role (design §4, Expiry): every sweep period it asks the
//! writer to expire the region's live posts past their lifetime, and sends
//! renewal reminders for those that end within the reminder lead. Old expired
//! posts are archived on an operator's request (`DELETE /old_posts`, served
//! by the api with the core's `archive`).
//!
//! Each sweep also prunes what is kept only for a while (`prune`): dedup
//! rows whose command the broker no longer serves, and revocations past
//! their token's expiry; and, given a KV to read, compares a slice of each
//! city's posts with what edge KV holds and has the publisher write again
//! what differs (`reconcile`).
//!
//! Time is the injectable clock's: a test moves it and runs `sweep` by hand.
//! The janitor never writes a post itself: an expiry is an `Expire` command
//! on the city's commands topic, so it is ordered with the city's renewals
//! and applied (fenced, deduplicated, with its outbox event) like any write.

pub mod expiry;
pub mod kv;
pub mod mail;
pub mod metrics;
pub mod photos;
pub mod prune;
pub mod reconcile;
pub mod reminders;
mod start;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::bus::Producer;
use crate::bus::watermarks::Watermarks;
use crate::clock::SharedClock;
use crate::db::{Router, ShardPools};
use crate::model::{Id, IdGenerator};
use crate::roles::common::add;

pub use mail::Mailer;
use metrics::JanitorMetrics;
use prune::Pruned;
use reconcile::{Reconciled, Reconciler};
pub use start::{JanitorArgs, run};

/// What the janitor does, and how much at a time.
#[derive(Debug, Clone)]
pub struct JanitorConfig {
    /// Region whose shards it sweeps.
    pub region: String,
    /// Where `Expire` commands go (`<region>.commands`); also the topic
    /// whose earliest offsets bound the pruning of dedup rows.
    pub commands_topic: String,
    /// Where the reconciler's republished events go (`<region>.events`).
    pub events_topic: String,
    /// Time between sweeps.
    pub sweep_period: Duration,
    /// How long before its end a post's reminder is sent.
    pub reminder_lead: chrono::Duration,
    /// Rows read per query (and commands produced at once).
    pub batch: i64,
    /// Only these cities (tests on a shared stack); none: every city.
    pub cities: Option<Vec<String>>,
    /// Most delete batches (of `batch` rows) a sweep runs per table and
    /// partition: a backlog is worked off over several sweeps.
    pub prune_batches: usize,
    /// Whether sweeps prune the catalog's expired revocations (region-wide,
    /// so a test on a shared stack with a clock of its own turns it off).
    pub prune_revocations: bool,
    /// Posts of each city the reconciler compares with KV per sweep.
    pub reconcile_batch: i64,
    /// Posts changed more recently than this are not compared yet: the
    /// pipeline's own write, and KV's propagation, may still be under way.
    pub reconcile_settle: chrono::Duration,
}

impl JanitorConfig {
    /// Defaults for `region`: a sweep a minute, reminders a day ahead.
    pub fn new(region: &str) -> JanitorConfig {
        JanitorConfig {
            region: region.to_string(),
            commands_topic: crate::bus::Topics::of_region(region).commands,
            events_topic: crate::bus::Topics::of_region(region).events,
            sweep_period: Duration::from_secs(60),
            reminder_lead: chrono::Duration::days(1),
            batch: 500,
            cities: None,
            prune_batches: 100,
            prune_revocations: true,
            reconcile_batch: 100,
            reconcile_settle: chrono::Duration::minutes(5),
        }
    }
}

/// The users' home catalogs, by region number (the region bits of a user
/// id): a poster's e-mail address lives only there.
#[derive(Debug, Clone, Default)]
pub struct HomeCatalogs {
    by_region: HashMap<u16, PgPool>,
}

impl HomeCatalogs {
    /// Catalog pools of every region of the stack, connected lazily (a
    /// region that is down delays only its users' reminders).
    pub fn of_stack(stack: &crate::stack::StackFile) -> anyhow::Result<HomeCatalogs> {
        let mut by_region = HashMap::new();
        for (number, region) in stack.regions.iter().enumerate() {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy(&region.catalog_url)
                .map_err(|e| anyhow::anyhow!("catalog of {}: {e}", region.name))?;
            by_region.insert(u16::try_from(number)?, pool);
        }
        Ok(HomeCatalogs { by_region })
    }

    /// The addresses of the `users` that still have an account, read from
    /// each one's home catalog; users of a region not listed are missing
    /// from the answer.
    pub async fn emails(&self, users: &[Id]) -> anyhow::Result<HashMap<Id, String>> {
        let mut by_region: HashMap<u16, Vec<i64>> = HashMap::new();
        for u in users {
            by_region.entry(u.region()).or_default().push(u.0);
        }
        let mut out = HashMap::new();
        for (region, ids) in by_region {
            let Some(catalog) = self.by_region.get(&region) else {
                tracing::warn!(region, "users of a region this stack does not list");
                continue;
            };
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, email FROM users WHERE id = ANY($1) AND deleted_at IS NULL",
            )
            .bind(&ids)
            .fetch_all(catalog)
            .await
            .map_err(|e| anyhow::anyhow!("reading addresses from region {region}: {e}"))?;
            out.extend(rows.into_iter().map(|(id, email)| (Id(id), email)));
        }
        Ok(out)
    }
}

/// What the janitor works with.
pub struct JanitorParts {
    /// The region's shards and shard map (expiry commands carry the city's
    /// epoch; a city is swept only on the shard the map places it on).
    pub router: Router,
    /// The region's catalog (its revocations).
    pub catalog: PgPool,
    /// Command ids.
    pub ids: IdGenerator,
    pub producer: Producer,
    /// The commands topic's earliest offsets (dedup rows below them go).
    pub watermarks: Watermarks,
    /// The one clock: what "now" is for lifetimes and reminders.
    pub clock: SharedClock,
    pub mailer: Mailer,
    pub homes: HomeCatalogs,
    pub metrics: Arc<JanitorMetrics>,
    /// Compares posts with edge KV; none: no KV to read (not configured).
    pub reconciler: Option<Reconciler>,
    /// The photo store, swept for orphans (`photos`); none: not swept.
    pub photos: Option<crate::media::Photos>,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// `Expire` commands produced.
    pub expire_commands: usize,
    /// Reminder e-mails sent.
    pub reminders_sent: usize,
    /// Posts whose poster has no address (recorded, not sent).
    pub reminders_without_address: usize,
    /// Shards or messages that failed this time (retried next sweep).
    pub failures: usize,
    /// Of those, mails the transport refused.
    pub mail_failures: usize,
    /// Rows pruned.
    pub pruned: Pruned,
    /// What the reconciler compared and republished.
    pub reconciled: Reconciled,
    /// Orphan photos removed from the photo store.
    pub orphan_photos: usize,
}

impl SweepReport {
    /// Whether the sweep changed or sent anything, or failed somewhere
    /// (comparing posts and running empty delete batches is not news).
    pub fn is_news(&self) -> bool {
        let p = &self.pruned;
        self.expire_commands
            + self.reminders_sent
            + self.reminders_without_address
            + self.failures
            + p.applied_commands
            + p.revoked_sessions
            + p.revoked_users
            + self.reconciled.pages
            + self.reconciled.tombstones
            + self.orphan_photos
            > 0
    }
}

/// The janitor of one region.
pub struct Janitor {
    pub config: JanitorConfig,
    pub parts: JanitorParts,
}

impl Janitor {
    /// One pass over every shard: expiries first (a post past its end gets
    /// no reminder), then reminders. A shard that fails is counted and
    /// skipped; the next sweep retries it.
    pub async fn sweep(&self) -> SweepReport {
        let mut report = SweepReport::default();
        if let Err(e) = self.parts.router.map.refresh().await {
            tracing::warn!(error = %e, "reloading the shard map; sweeping with the cached one");
        }
        let now = self.parts.clock.now();
        if let Err(e) = self.parts.router.refresh_shards().await {
            tracing::warn!(error = %e, "reloading the shard list; sweeping the known shards");
        }
        let shards = self.parts.router.shards();
        // The backlog before this sweep's own commands: what earlier sweeps
        // produced and the writer has not applied (a shard that cannot be
        // counted is a failure, and adds nothing).
        let mut backlog = 0;
        for shard in &shards {
            match expiry::backlog(self, shard, now).await {
                Ok(n) => backlog += n,
                Err(e) => {
                    report.failures += 1;
                    tracing::warn!(shard = %shard.name, error = format!("{e:#}"), "counting the expiry backlog failed");
                }
            }
        }
        self.parts.metrics.expired_unremoved.set(backlog);
        for shard in &shards {
            match expiry::sweep_shard(self, shard, now).await {
                Ok(n) => report.expire_commands += n,
                Err(e) => {
                    report.failures += 1;
                    tracing::warn!(shard = %shard.name, error = format!("{e:#}"), "expiry sweep failed");
                }
            }
        }
        for shard in &shards {
            match reminders::sweep_shard(self, shard, now).await {
                Ok(r) => {
                    report.reminders_sent += r.sent;
                    report.reminders_without_address += r.without_address;
                    report.failures += r.failures;
                    report.mail_failures += r.failures;
                }
                Err(e) => {
                    report.failures += 1;
                    tracing::warn!(shard = %shard.name, error = format!("{e:#}"), "reminder sweep failed");
                }
            }
        }
        self.prune(&shards, now, &mut report).await;
        report.pruned.count(self);
        match photos::sweep(self, now).await {
            Ok(n) => report.orphan_photos = n,
            Err(e) => {
                report.failures += 1;
                tracing::warn!(error = format!("{e:#}"), "orphan photo sweep failed");
            }
        }
        if let Some(r) = &self.parts.reconciler {
            for shard in &shards {
                match r.sweep_shard(self, shard, now).await {
                    Ok(done) => report.reconciled.merge(&done),
                    Err(e) => {
                        report.failures += 1;
                        tracing::warn!(shard = %shard.name, error = format!("{e:#}"), "reconciling with KV failed");
                    }
                }
            }
            report.reconciled.count(self);
        }
        let m = &self.parts.metrics;
        add(&m.sweeps, 1);
        add(&m.expire_commands, report.expire_commands);
        add(&m.reminders, report.reminders_sent);
        add(&m.mails_sent, report.reminders_sent);
        add(&m.mails_failed, report.mail_failures);
        add(
            &m.reminders_without_address,
            report.reminders_without_address,
        );
        add(&m.failures, report.failures);
        report
    }

    /// Prunes each shard's dedup rows below the commands topic's earliest
    /// offsets, then the catalog's expired revocations. Without the
    /// broker's answer no dedup row goes (counted as a failure).
    async fn prune(
        &self,
        shards: &[Arc<ShardPools>],
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) {
        match self
            .parts
            .watermarks
            .earliest(&self.config.commands_topic)
            .await
        {
            Ok(earliest) => {
                for shard in shards {
                    match prune::applied_commands(self, shard, &earliest).await {
                        Ok(p) => report.pruned.merge(&p),
                        Err(e) => {
                            report.failures += 1;
                            tracing::warn!(shard = %shard.name, error = %e, "pruning dedup rows failed");
                        }
                    }
                }
            }
            Err(e) => {
                report.failures += 1;
                tracing::warn!(
                    topic = %self.config.commands_topic,
                    error = format!("{e:#}"),
                    "no earliest offsets from the broker: no dedup row pruned"
                );
            }
        }
        if self.config.prune_revocations {
            match prune::revocations(self, now).await {
                Ok(p) => report.pruned.merge(&p),
                Err(e) => {
                    report.failures += 1;
                    tracing::warn!(error = %e, "pruning revocations failed");
                }
            }
        }
    }

    /// Sweeps every `sweep_period` until `shutdown`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.config.sweep_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let r = self.sweep().await;
                    if r.is_news() {
                        tracing::info!(
                            expire_commands = r.expire_commands,
                            reminders_sent = r.reminders_sent,
                            without_address = r.reminders_without_address,
                            failures = r.failures,
                            pruned_applied_commands = r.pruned.applied_commands,
                            pruned_revoked_sessions = r.pruned.revoked_sessions,
                            pruned_revoked_users = r.pruned.revoked_users,
                            reconciled_pages = r.reconciled.pages,
                            reconciled_tombstones = r.reconciled.tombstones,
                            "janitor sweep"
                        );
                    }
                }
            }
        }
        self.parts.producer.flush(Duration::from_secs(10));
        Ok(())
    }

    /// Whether the janitor looks after `city` on `shard`: the map places it
    /// there, in this region (rows a move left behind on the source shard
    /// until its cleanup are not the janitor's), and the config lets it.
    fn owns(&self, city: &str, shard: &str) -> Option<crate::catalog::CityRoute> {
        if let Some(only) = &self.config.cities
            && !only.iter().any(|c| c == city)
        {
            return None;
        }
        self.parts
            .router
            .map
            .route(city)
            .filter(|r| r.region == self.config.region && r.shard == shard)
    }
}
