//! Re-publishing a region's live pages after a template change.
//!
//! Every KV page names the template version it was rendered with
//! (`PostMeta::template`), and the edge serves only pages of its current
//! `TEMPLATE_VERSION` (the rest go to the origin, which renders the current
//! template). So when a publisher starts with another template than the
//! one recorded for a city (`published_templates` in the region's catalog),
//! it re-renders the city's live posts, read from the shard primary in
//! batches by id, and offers them to the same coalescer as its events: one
//! write a second per key still holds, a newer version from the events
//! topic still wins (the page read here is then stale and dropped), and the
//! writes go out in the same bulk calls. Once every page of the cities has
//! been written, the new version is recorded; a crash before that only
//! means the next start re-publishes again (writes of the same version and
//! template are no-ops).
//!
//! Expiry needs no care here: an expired post is no longer live, and a page
//! that expires later says so in its metadata.

use std::collections::VecDeque;

use sqlx::PgPool;

use crate::db::Router;
use crate::model::Post;
use crate::model::post::POST_COLUMNS;

/// Posts read from a shard primary at once.
pub const BATCH: i64 = 500;

/// A city whose posts are being read, from `after` (an id) on.
struct Cursor {
    city: String,
    primary: PgPool,
    after: i64,
}

/// The re-publication of some cities' live pages with template `version`.
pub struct Republish {
    version: u32,
    catalog: PgPool,
    todo: VecDeque<Cursor>,
    /// Cities whose every live post has been read and offered.
    offered: Vec<String>,
    batch: i64,
}

impl Republish {
    /// The cities of the router's region (or only those of `only`) whose
    /// recorded template version is not `version`, to re-publish; `None`
    /// when every one is up to date.
    pub async fn plan(
        catalog: &PgPool,
        router: &Router,
        version: u32,
        only: Option<&[String]>,
    ) -> Result<Option<Republish>, sqlx::Error> {
        let map = router.map.get();
        let mut cities: Vec<&str> = map
            .cities
            .keys()
            .map(String::as_str)
            .filter(|c| only.is_none_or(|o| o.iter().any(|x| x == c)))
            .filter(|c| router.route(c).is_ok())
            .collect();
        cities.sort_unstable();
        let recorded: Vec<(String, i64)> =
            sqlx::query_as("SELECT city, version FROM published_templates WHERE city = ANY($1)")
                .bind(&cities)
                .fetch_all(catalog)
                .await?;
        let current = i64::from(version);
        let todo: VecDeque<Cursor> = cities
            .into_iter()
            .filter(|c| !recorded.iter().any(|(r, v)| r == c && *v == current))
            .filter_map(|c| {
                let (_, shard) = router.route(c).ok()?;
                Some(Cursor {
                    city: c.to_string(),
                    primary: shard.primary.clone(),
                    after: 0,
                })
            })
            .collect();
        if todo.is_empty() {
            return Ok(None);
        }
        Ok(Some(Republish {
            version,
            catalog: catalog.clone(),
            todo,
            offered: Vec::new(),
            batch: BATCH,
        }))
    }

    /// The template version being published.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The cities still to read.
    pub fn cities_left(&self) -> Vec<&str> {
        self.todo.iter().map(|c| c.city.as_str()).collect()
    }

    /// Whether every live post of every city has been read.
    pub fn all_read(&self) -> bool {
        self.todo.is_empty()
    }

    /// The next batch of live posts (empty once [`all_read`](Self::all_read)).
    pub async fn next(&mut self) -> Result<Vec<Post>, sqlx::Error> {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM posts \
             WHERE city = $1 AND id > $2 AND status = 'live' AND expires_at > now() \
             ORDER BY id LIMIT $3"
        );
        while let Some(cursor) = self.todo.front_mut() {
            let posts: Vec<Post> = sqlx::query_as(&sql)
                .bind(&cursor.city)
                .bind(cursor.after)
                .bind(self.batch)
                .fetch_all(&cursor.primary)
                .await?;
            if let Some(last) = posts.last() {
                cursor.after = last.id.0;
            }
            if (posts.len() as i64) < self.batch
                && let Some(done) = self.todo.pop_front()
            {
                self.offered.push(done.city);
            }
            if !posts.is_empty() {
                return Ok(posts);
            }
        }
        Ok(Vec::new())
    }

    /// Records the version for the cities read so far; call once their
    /// pages have all been written.
    pub async fn record(&mut self) -> Result<(), sqlx::Error> {
        if self.offered.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO published_templates (city, version, updated_at) \
             SELECT city, $2, now() FROM unnest($1::text[]) AS city \
             ON CONFLICT (city) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
        )
        .bind(&self.offered)
        .bind(i64::from(self.version))
        .execute(&self.catalog)
        .await?;
        self.offered.clear();
        Ok(())
    }
}

/// The template version recorded for `city`, if any.
pub async fn recorded(catalog: &PgPool, city: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM published_templates WHERE city = $1")
        .bind(city)
        .fetch_optional(catalog)
        .await
}
