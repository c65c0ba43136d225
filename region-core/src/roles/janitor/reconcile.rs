//! The reconciler: each sweep compares a bounded slice of every city's
//! posts in the shard (live and gone) with what edge KV holds for them, and
//! asks the publisher to write again what differs: the page of a live post
//! whose entry is missing, older, a tombstone or unreadable; the tombstone
//! of a gone post whose entry is a page or an older tombstone (while a
//! tombstone would still be there, `TOMBSTONE_TTL_SECS`).
//!
//! Only the publisher writes KV (design §3), so the janitor only reads it
//! (`kv`) and sends what the shard says now as an event on the events
//! topic, keyed by city like the relay's, with the `REPAIR_HEADER`: the
//! publisher then writes it even when it remembers having written that
//! version (the entry was lost or overwritten since), and still never over
//! a newer one. This is also what repairs an event the publisher could not
//! read (a `post_gone` dead-lettered): the post's state is read from the
//! shard, not from the event.
//!
//! Bounded per round: at most `reconcile_batch` posts of each city, read
//! from the primary by id from where the last round stopped, starting over
//! after the last post. Posts changed within `reconcile_settle` are left for
//! a later round, so that the pipeline's own write (and KV's propagation,
//! up to a minute on Cloudflare) is not mistaken for a difference.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use cityboard_protocol::kv::{TOMBSTONE_TTL_SECS, post_key};
use futures_util::future::try_join_all;

use super::kv::{Held, KvReader};
use crate::bus::{EVENT_TYPE_HEADER, POST_ID_HEADER, REPAIR_HEADER, VERSION_HEADER};
use crate::db::ShardPools;
use crate::model::event::GoneReason;
use crate::model::post::POST_COLUMNS;
use crate::model::{Event, Post, PostStatus};
use crate::roles::common::add;
use crate::roles::janitor::Janitor;

/// The KV the reconciler reads, and where each city's last round stopped.
#[derive(Debug)]
pub struct Reconciler {
    kv: KvReader,
    /// Per city, the last post id compared (absent: start from the first).
    cursors: Mutex<HashMap<String, i64>>,
}

/// What one round found and republished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Posts compared with KV.
    pub checked: usize,
    /// Pages republished (live posts whose entry differed).
    pub pages: usize,
    /// Tombstones republished (gone posts whose entry differed).
    pub tombstones: usize,
}

impl Reconciled {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Reconciled) {
        self.checked += other.checked;
        self.pages += other.pages;
        self.tombstones += other.tombstones;
    }

    /// Counts these on the janitor's metrics.
    pub fn count(&self, j: &Janitor) {
        let m = &j.parts.metrics;
        add(&m.reconcile_checked, self.checked);
        add(&m.reconciled_pages, self.pages);
        add(&m.reconciled_tombstones, self.tombstones);
    }
}

/// What KV should be given for a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    Page,
    Tombstone,
}

/// The fix `post` needs at `now`, given what KV holds for it; `None` when
/// KV agrees with the shard (or the post is not the reconciler's to judge:
/// a live post past its end is the expiry sweep's).
pub fn fix(post: &Post, held: &Held, now: DateTime<Utc>) -> Option<Fix> {
    if post.status == PostStatus::Live {
        if post.expires_at <= now {
            return None;
        }
        return match held {
            Held::Entry(m) if !m.gone && m.version == post.version => None,
            _ => Some(Fix::Page),
        };
    }
    match held {
        Held::Entry(m) if m.gone && m.version >= post.version => None,
        // The tombstone's TTL has run out since the post went: KV dropped
        // it as designed.
        Held::Nothing
            if now.signed_duration_since(post.updated_at).num_seconds()
                >= TOMBSTONE_TTL_SECS as i64 =>
        {
            None
        }
        _ => Some(Fix::Tombstone),
    }
}

/// The event that asks the publisher for `fix` of `post`.
fn event(post: &Post, fix: Fix, command_id: crate::model::Id) -> Event {
    match fix {
        Fix::Page => Event::PostChanged {
            command_id,
            request_id: None,
            post: Box::new(post.clone()),
        },
        Fix::Tombstone => Event::PostGone {
            command_id,
            request_id: None,
            city: post.city.clone(),
            post_id: post.id,
            version: post.version,
            reason: match post.status {
                PostStatus::Hidden => GoneReason::Hidden,
                PostStatus::Expired => GoneReason::Expired,
                PostStatus::Deleted | PostStatus::Live => GoneReason::Deleted,
            },
        },
    }
}

impl Reconciler {
    /// A reconciler reading `kv`.
    pub fn new(kv: KvReader) -> Reconciler {
        Reconciler {
            kv,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    fn cursor(&self, city: &str) -> i64 {
        let cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.get(city).copied().unwrap_or(0)
    }

    fn set_cursor(&self, city: &str, after: i64) {
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors.insert(city.to_string(), after);
    }

    /// One round over the cities `shard` holds for the janitor.
    pub async fn sweep_shard(
        &self,
        j: &Janitor,
        shard: &ShardPools,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Reconciled> {
        let map = j.parts.router.map.get();
        let mut cities: Vec<&str> = map
            .cities
            .keys()
            .map(String::as_str)
            .filter(|c| j.owns(c, &shard.name).is_some())
            .collect();
        cities.sort_unstable();
        let mut done = Reconciled::default();
        for city in cities {
            done.merge(&self.city(j, shard, city, now).await?);
        }
        Ok(done)
    }

    /// The next `reconcile_batch` posts of `city`.
    async fn city(
        &self,
        j: &Janitor,
        shard: &ShardPools,
        city: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Reconciled> {
        let after = self.cursor(city);
        // The primary: a replica behind KV would look like a difference and
        // republish an older state.
        let posts: Vec<Post> = sqlx::query_as(&format!(
            "SELECT {POST_COLUMNS} FROM posts WHERE city = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(city)
        .bind(after)
        .bind(j.config.reconcile_batch)
        .fetch_all(&shard.primary)
        .await?;
        let next = match posts.last() {
            Some(last) if posts.len() as i64 == j.config.reconcile_batch => last.id.0,
            _ => 0,
        };
        let settled = now - j.config.reconcile_settle;
        let posts: Vec<Post> = posts
            .into_iter()
            .filter(|p| p.updated_at <= settled && p.id.0 >= 0)
            .collect();
        let mut done = Reconciled {
            checked: posts.len(),
            ..Reconciled::default()
        };
        if posts.is_empty() {
            self.set_cursor(city, next);
            return Ok(done);
        }
        let keys: Vec<String> = posts.iter().map(|p| post_key(p.id.0 as u64)).collect();
        let held = self.kv.held(&keys).await?;
        let mut fixes = Vec::new();
        for (post, key) in posts.iter().zip(&keys) {
            let held = held.get(key).unwrap_or(&Held::Nothing);
            if let Some(f) = fix(post, held, now) {
                tracing::info!(
                    %city, post = %post.id, version = post.version, ?held, fix = ?f,
                    "KV differs from the shard: republishing"
                );
                fixes.push(event(post, f, j.parts.ids.next().await?));
                match f {
                    Fix::Page => done.pages += 1,
                    Fix::Tombstone => done.tombstones += 1,
                }
            }
        }
        // Sent together; the cursor moves only once the broker has them, so
        // a failed send is compared (and found) again next round.
        try_join_all(fixes.iter().map(|e| async move {
            let payload = serde_json::to_vec(e)?;
            let (post, version, kind) = match e {
                Event::PostChanged { post, .. } => (post.id, post.version, "post_changed"),
                Event::PostGone {
                    post_id, version, ..
                } => (*post_id, *version, "post_gone"),
            };
            let (post, version) = (post.to_string(), version.to_string());
            let headers: [(&str, &[u8]); 4] = [
                (POST_ID_HEADER, post.as_bytes()),
                (VERSION_HEADER, version.as_bytes()),
                (EVENT_TYPE_HEADER, kind.as_bytes()),
                (REPAIR_HEADER, b"1"),
            ];
            j.parts
                .producer
                .produce(&j.config.events_topic, city, &payload, &headers)
                .await?;
            anyhow::Ok(())
        }))
        .await?;
        self.set_cursor(city, next);
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use cityboard_protocol::kv::PostMeta;

    use super::*;
    use crate::model::{Id, PostFields};

    fn post(status: PostStatus, version: i64, now: DateTime<Utc>) -> Post {
        Post {
            city: "boston".into(),
            id: Id(7),
            user_id: Id(1),
            fields: PostFields {
                category: "bikes".into(),
                title: "t".into(),
                description: "d".into(),
                price: None,
                location: None,
                image_count: 0,
            },
            status,
            version,
            created_at: now,
            updated_at: now,
            expires_at: now + chrono::Duration::days(7),
            listed_at: now,
            photos: Vec::new(),
        }
    }

    #[test]
    fn a_live_post_needs_its_page_of_its_version() {
        let now = Utc::now();
        let live = post(PostStatus::Live, 3, now);
        let page = |v| Held::Entry(PostMeta::page("boston", v, 0));
        assert_eq!(fix(&live, &page(3), now), None);
        assert_eq!(fix(&live, &page(2), now), Some(Fix::Page));
        assert_eq!(fix(&live, &Held::Nothing, now), Some(Fix::Page));
        assert_eq!(fix(&live, &Held::Unreadable, now), Some(Fix::Page));
        let tomb = Held::Entry(PostMeta::tombstone(2));
        assert_eq!(fix(&live, &tomb, now), Some(Fix::Page));
        let ended = now + chrono::Duration::days(8);
        assert_eq!(fix(&live, &Held::Nothing, ended), None, "the expiry's");
    }

    #[test]
    fn a_gone_post_needs_a_tombstone_while_one_would_last() {
        let now = Utc::now();
        let gone = post(PostStatus::Deleted, 4, now);
        assert_eq!(
            fix(&gone, &Held::Entry(PostMeta::page("boston", 3, 0)), now),
            Some(Fix::Tombstone)
        );
        assert_eq!(
            fix(&gone, &Held::Entry(PostMeta::tombstone(3)), now),
            Some(Fix::Tombstone)
        );
        assert_eq!(fix(&gone, &Held::Entry(PostMeta::tombstone(4)), now), None);
        assert_eq!(fix(&gone, &Held::Nothing, now), Some(Fix::Tombstone));
        let later = now + chrono::Duration::seconds(TOMBSTONE_TTL_SECS as i64);
        assert_eq!(fix(&gone, &Held::Nothing, later), None);
        assert_eq!(
            fix(&gone, &Held::Entry(PostMeta::page("boston", 3, 0)), later),
            Some(Fix::Tombstone)
        );
    }

    #[test]
    fn a_tombstone_event_names_why_the_post_went() {
        let now = Utc::now();
        let hidden = post(PostStatus::Hidden, 5, now);
        match event(&hidden, Fix::Tombstone, Id(9)) {
            Event::PostGone {
                version, reason, ..
            } => assert_eq!((version, reason), (5, GoneReason::Hidden)),
            e => panic!("{e:?}"),
        }
    }
}
