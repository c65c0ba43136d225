//! Archiving old posts (`DELETE /old_posts`): expired posts whose lifetime
//! ended before a cutoff are written to object storage as JSON lines, one
//! object per batch of a city, and then deleted from the shard.
//!
//! Crash-safe and idempotent: the object is written (and acknowledged) before
//! its rows are deleted, and its name is derived from what it holds (region,
//! city, first and last post id), so a rerun after a crash between the two
//! writes the same rows under the same name again (overwriting) and then
//! deletes them; a rerun after success finds nothing. Only rows that are
//! still expired and past the cutoff are deleted, so a post renewed in
//! between stays (its copy in the archive is then merely stale).
//!
//! Keep the retention longer than the commands topic's: a deleted row no
//! longer guards against a very late replay of its commands.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::db::{Router, ShardPools};
use crate::model::Post;
use crate::model::post::POST_COLUMNS;

/// Where archived posts go: an object store and a prefix within it.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Shown in logs and errors.
    location: String,
    /// The photo store: an archived post's photos are removed with its
    /// row (none: kept).
    photos: Option<crate::media::Photos>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("location", &crate::redact::url(&self.location))
            .finish()
    }
}

/// What one archive request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Archived {
    /// Posts written to the archive and removed from their shard.
    pub posts: u64,
    /// Names of the objects written (relative to the archive's location).
    pub objects: Vec<String>,
    /// Cities skipped because their fence was not active (a move in
    /// progress): retried by the next request.
    pub skipped_cities: Vec<String>,
}

/// One city on the shard the map places it on, at the map's epoch.
struct Scope<'a> {
    region: &'a str,
    shard: &'a ShardPools,
    city: &'a str,
    epoch: i64,
}

impl Archive {
    /// The archive at `location`: a directory (`/var/lib/cityboard/archive`
    /// or `file:///...`, created if missing), or `s3://bucket/prefix` in a
    /// build with the `s3` feature (credentials from the usual `AWS_*`
    /// environment).
    pub fn open(location: &str) -> anyhow::Result<Archive> {
        let (store, prefix) = crate::object_location::open(location, "archive")?;
        Ok(Archive {
            store,
            prefix,
            location: location.to_string(),
            photos: None,
        })
    }

    /// The same archive, removing archived posts' photos from `photos`.
    pub fn with_photos(self, photos: crate::media::Photos) -> Archive {
        Archive {
            photos: Some(photos),
            ..self
        }
    }

    /// An archive on any object store (tests use an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, location: &str) -> Archive {
        Archive {
            store,
            prefix: ObjectPath::from(prefix),
            location: location.to_string(),
            photos: None,
        }
    }

    /// The store and the object name of `relative` in it.
    pub fn object(&self, relative: &str) -> (Arc<dyn ObjectStore>, ObjectPath) {
        let mut path = self.prefix.clone();
        for part in relative.split('/') {
            path = path.join(part);
        }
        (self.store.clone(), path)
    }

    /// Archives and removes the expired posts of `region` (optionally one
    /// city) whose lifetime ended before `cutoff`, `batch` posts per object.
    pub async fn old_posts(
        &self,
        router: &Router,
        cutoff: DateTime<Utc>,
        city: Option<&str>,
        batch: i64,
    ) -> anyhow::Result<Archived> {
        let mut out = Archived::default();
        for shard in router.shards() {
            let cities: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT city FROM posts
                 WHERE status = 'expired' AND expires_at < $1
                   AND ($2::text IS NULL OR city = $2)
                 ORDER BY city",
            )
            .bind(cutoff)
            .bind(city)
            .fetch_all(&shard.primary)
            .await
            .with_context(|| format!("listing old posts on {}", shard.name))?;
            for c in cities {
                // Rows a move left on its source shard are not this shard's
                // to archive; the move's cleanup deletes them.
                let Some(route) = router
                    .map
                    .route(&c)
                    .filter(|r| r.region == router.region && r.shard == shard.name)
                else {
                    continue;
                };
                let scope = Scope {
                    region: &router.region,
                    shard: &shard,
                    city: &c,
                    epoch: route.epoch,
                };
                self.city(scope, cutoff, batch, &mut out)
                    .await
                    .with_context(|| format!("archiving {c} on {}", shard.name))?;
            }
        }
        Ok(out)
    }

    async fn city(
        &self,
        Scope {
            region,
            shard,
            city,
            epoch,
        }: Scope<'_>,
        cutoff: DateTime<Utc>,
        batch: i64,
        out: &mut Archived,
    ) -> anyhow::Result<()> {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM posts
             WHERE city = $1 AND status = 'expired' AND expires_at < $2 AND id > $3
             ORDER BY id LIMIT $4"
        );
        let mut after = 0i64;
        loop {
            let posts: Vec<Post> = sqlx::query_as(&sql)
                .bind(city)
                .bind(cutoff)
                .bind(after)
                .bind(batch.max(1))
                .fetch_all(&shard.primary)
                .await?;
            let (Some(first), Some(last)) = (posts.first(), posts.last()) else {
                return Ok(());
            };
            after = last.id.0;
            let mut lines = Vec::new();
            for p in &posts {
                serde_json::to_writer(&mut lines, p)?;
                lines.push(b'\n');
            }
            let name = format!(
                "old-posts/{region}/{city}/{:020}-{:020}.jsonl",
                first.id.0, last.id.0
            );
            let (store, path) = self.object(&name);
            store.put(&path, lines.into()).await.with_context(|| {
                format!("writing {name} to {}", crate::redact::url(&self.location))
            })?;

            // Deleted under the city's fence: a cutover in progress (or a
            // city that moved) waits or is skipped, never loses rows that
            // are being copied.
            let ids: Vec<i64> = posts.iter().map(|p| p.id.0).collect();
            let mut tx = shard.primary.begin().await?;
            let fence: Option<(i64, String)> =
                sqlx::query_as("SELECT epoch, state FROM city_fence WHERE city = $1 FOR SHARE")
                    .bind(city)
                    .fetch_optional(&mut *tx)
                    .await?;
            if fence != Some((epoch, "active".to_string())) {
                out.skipped_cities.push(city.to_string());
                return Ok(());
            }
            for table in ["reminders_sent", "reports"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE city = $1 AND post_id = ANY($2)"
                ))
                .bind(city)
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            }
            // Their post_images rows go with them (ON DELETE CASCADE).
            let deleted: Vec<(i64, i16)> = sqlx::query_as(
                "DELETE FROM posts WHERE city = $1 AND id = ANY($2)
                   AND status = 'expired' AND expires_at < $3
                 RETURNING id, image_count",
            )
            .bind(city)
            .bind(&ids)
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            out.posts += deleted.len() as u64;
            // Only the posts deleted: one renewed meanwhile keeps its
            // photos. A failure leaves orphans, logged, for a sweep.
            if let Some(photos) = &self.photos {
                for (id, _) in deleted.iter().filter(|(_, count)| *count > 0) {
                    if let Err(e) = photos.remove_post(city, crate::model::Id(*id)).await {
                        tracing::warn!(error = %e, %city, post = id, "removing an archived post's photos");
                    }
                }
            }
            out.objects.push(name);
            if (posts.len() as i64) < batch {
                return Ok(());
            }
        }
    }
}
