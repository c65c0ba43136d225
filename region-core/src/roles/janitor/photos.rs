//! Orphan photos: stored sizes that no `post_images` row names. An upload
//! stores its photos before its command adds their rows, so a process that
//! stops in between, or a command the writer rejects after the api gave up
//! waiting, leaves photos nobody shows. Those older than `ORPHAN_AFTER` go
//! (younger ones may belong to an upload still waiting for its command).

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::db::photos::photo_id;
use crate::media::orphans;
use crate::model::Id;
use crate::roles::janitor::Janitor;

/// How old a photo without a row must be to count as an orphan.
pub const ORPHAN_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Removes the orphan photos of every city of this region the photo store
/// holds; returns how many photos went. Cities of other regions are left
/// to their janitors.
pub async fn sweep(j: &Janitor, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let Some(photos) = &j.parts.photos else {
        return Ok(0);
    };
    let mut removed = 0;
    for city in photos.cities().await? {
        let Ok((_, shard)) = j.parts.router.route(&city) else {
            continue;
        };
        let stored = photos.stored(&city).await?;
        if stored.is_empty() {
            continue;
        }
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT object_key FROM post_images WHERE city = $1")
                .bind(&city)
                .fetch_all(&shard.primary)
                .await?;
        let kept: HashSet<Id> = keys.iter().filter_map(|k| photo_id(k)).collect();
        for orphan in orphans(&stored, &kept, now - ORPHAN_AFTER) {
            photos
                .remove_photo(&city, orphan.post, orphan.photo)
                .await?;
            removed += 1;
        }
    }
    Ok(removed)
}
