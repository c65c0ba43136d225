//! The reads the api makes, as `ReadQuery`s.

use sqlx::PgConnection;

use crate::db::read::{BoxFuture, ReadQuery};
use crate::model::post::POST_COLUMNS;
use crate::model::{Id, Post};

/// One post of a city, whatever its status (the caller decides what a
/// tombstone means to its reader).
#[derive(Debug, Clone)]
pub struct GetPost {
    pub city: String,
    pub id: Id,
}

impl ReadQuery for GetPost {
    type Output = Option<Post>;
    fn run<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Option<Post>, sqlx::Error>> {
        Box::pin(async move {
            let sql = format!("SELECT {POST_COLUMNS} FROM posts WHERE city = $1 AND id = $2");
            sqlx::query_as(&sql)
                .bind(&self.city)
                .bind(self.id)
                .fetch_optional(conn)
                .await
        })
    }
}

/// Listing and search of a city's live posts of the last 7 days, newest
/// first, from a keyset position. Served by `posts_city_live_recent` (and
/// its category twin), `posts_city_search` for text and `posts_city_price_live`
/// for narrow price ranges.
#[derive(Debug, Clone, Default)]
pub struct ListPosts {
    /// The host's city.
    pub city: String,
    /// The api's clock: the 7-day window and expiry are measured from it.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Web-search syntax, passed bound to `websearch_to_tsquery`.
    pub search: Option<String>,
    /// A known category.
    pub category: Option<String>,
    /// Inclusive lower price bound.
    pub min_price: Option<i64>,
    /// Inclusive upper price bound.
    pub max_price: Option<i64>,
    /// With (true) or without (false) photos.
    pub has_image: Option<bool>,
    /// Strictly older than this (created_at, id).
    pub after: Option<(chrono::DateTime<chrono::Utc>, Id)>,
    /// Page size.
    pub limit: i64,
}

impl ReadQuery for ListPosts {
    type Output = Vec<Post>;
    fn run<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Vec<Post>, sqlx::Error>> {
        Box::pin(async move {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "SELECT {POST_COLUMNS} FROM posts WHERE status = 'live' AND city = "
            ));
            q.push_bind(&self.city);
            q.push(" AND created_at > ");
            q.push_bind(self.now - crate::model::post::POST_LIFETIME);
            q.push(" AND expires_at > ");
            q.push_bind(self.now);
            if let Some(s) = &self.search {
                q.push(" AND search @@ websearch_to_tsquery('english', ");
                q.push_bind(s);
                q.push(")");
            }
            if let Some(c) = &self.category {
                q.push(" AND category = ");
                q.push_bind(c);
            }
            if let Some(p) = self.min_price {
                q.push(" AND price >= ");
                q.push_bind(p);
            }
            if let Some(p) = self.max_price {
                q.push(" AND price <= ");
                q.push_bind(p);
            }
            match self.has_image {
                Some(true) => {
                    q.push(" AND image_count > 0");
                }
                Some(false) => {
                    q.push(" AND image_count = 0");
                }
                None => {}
            }
            if let Some((at, id)) = self.after {
                q.push(" AND (created_at, id) < (");
                q.push_bind(at);
                q.push(", ");
                q.push_bind(id);
                q.push(")");
            }
            q.push(" ORDER BY created_at DESC, id DESC LIMIT ");
            q.push_bind(self.limit);
            // Planned for its values every time, never from a cached generic
            // plan: whether walking the listing index newest-first beats a
            // GIN or price-range lookup depends on how many posts the words
            // and ranges match. A prepared statement switches to a generic
            // plan after five runs, and for filter-only listings that plan
            // took 2 s instead of 1 ms (`bench origin-read`, BENCHMARKS.md).
            q.build_query_as().persistent(false).fetch_all(conn).await
        })
    }
}
