//! The reads the api makes, as `ReadQuery`s.

use sqlx::PgConnection;

use crate::cursor::{Cursor, SortKey};
use crate::db::read::{BoxFuture, ReadQuery};
use crate::model::post::POST_COLUMNS;
use crate::model::{Id, Post};

/// One post of a city, whatever its status (the caller decides what a
/// tombstone means to its reader), with its photos.
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
            let mut post: Option<Post> = sqlx::query_as(&sql)
                .bind(&self.city)
                .bind(self.id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(p) = post.as_mut() {
                crate::db::photos::attach(conn, &mut [p]).await?;
            }
            Ok(post)
        })
    }
}

/// The orders of a listing. Each has its own index (shard migrations
/// 2008-2011) whose columns are exactly the ORDER BY below, so a page is a
/// range scan that stops after `limit` rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Sort {
    /// Newest first by `listed_at` (a renewal moves a post to the top).
    #[default]
    Newest,
    /// Cheapest first; posts without a price last.
    PriceAsc,
    /// Dearest first; posts without a price last.
    PriceDesc,
}

impl Sort {
    /// `newest`, `price_asc` or `price_desc` (the query parameter); anything
    /// else is none.
    pub fn parse(s: &str) -> Option<Sort> {
        match s {
            "newest" => Some(Sort::Newest),
            "price_asc" => Some(Sort::PriceAsc),
            "price_desc" => Some(Sort::PriceDesc),
            _ => None,
        }
    }

    /// The query parameter's value for this order.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Newest => "newest",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
        }
    }

    /// The sort expression: the price orders map "no price" to a value past
    /// either end of the allowed prices (0..=1 000 000 000), so that such
    /// posts come last in both and the keyset stays one row comparison. The
    /// text must match the index expressions of migrations 2010 and 2011.
    fn key(self) -> &'static str {
        match self {
            Sort::Newest => "listed_at",
            Sort::PriceAsc => "coalesce(price, 1000000001)",
            Sort::PriceDesc => "coalesce(price, -1)",
        }
    }

    /// The position of `p` in this order, for the next page's cursor.
    pub fn key_of(self, p: &Post) -> SortKey {
        match self {
            Sort::Newest => SortKey::ListedAt(p.listed_at),
            Sort::PriceAsc => SortKey::Price(p.fields.price.unwrap_or(1_000_000_001)),
            Sort::PriceDesc => SortKey::Price(p.fields.price.unwrap_or(-1)),
        }
    }
}

/// Listing and search of a city's live posts listed in the last 7 days, in
/// `sort` order from a keyset position. Served by `posts_city_live_listed`
/// (and its category twin), the two price-order indexes, `posts_city_search`
/// for text and `posts_city_price_live` for narrow price ranges.
#[derive(Debug, Clone, Default)]
pub struct ListPosts {
    /// The host's city.
    pub city: String,
    /// The api's clock: the 7-day window and expiry are measured from it.
    pub now: chrono::DateTime<chrono::Utc>,
    /// Web-search syntax, passed bound to `websearch_to_tsquery`.
    pub search: Option<String>,
    /// Match `search` against titles only.
    pub titles_only: bool,
    /// A known category.
    pub category: Option<String>,
    /// Inclusive lower price bound.
    pub min_price: Option<i64>,
    /// Inclusive upper price bound.
    pub max_price: Option<i64>,
    /// With (true) or without (false) photos.
    pub has_image: Option<bool>,
    /// Only posts listed at or after this instant ("posted today": the
    /// city's local midnight).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// The order.
    pub sort: Sort,
    /// Strictly after this position in `sort` order. A cursor whose key is
    /// not of `sort`'s kind matches no row (the caller refuses it first).
    pub after: Option<Cursor>,
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
            q.push(" AND listed_at > ");
            q.push_bind(self.now - crate::model::post::POST_LIFETIME);
            q.push(" AND expires_at > ");
            q.push_bind(self.now);
            if let Some(since) = self.since {
                q.push(" AND listed_at >= ");
                q.push_bind(since);
            }
            if let Some(s) = &self.search {
                q.push(" AND search @@ websearch_to_tsquery('english', ");
                q.push_bind(s);
                q.push(")");
                if self.titles_only {
                    // The title's words carry weight A (migration 2001's
                    // generated column). The first condition keeps the GIN
                    // index (posts_city_search) usable; this one, checked on
                    // the rows it finds, drops matches in the description.
                    q.push(" AND ts_filter(search, '{a}') @@ websearch_to_tsquery('english', ");
                    q.push_bind(s);
                    q.push(")");
                }
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
            let key = self.sort.key();
            let (cmp, dir) = match self.sort {
                Sort::PriceAsc => (">", "ASC"),
                Sort::Newest | Sort::PriceDesc => ("<", "DESC"),
            };
            if let Some(c) = &self.after {
                q.push(format!(" AND ({key}, id) {cmp} ("));
                match (self.sort, c.key) {
                    (Sort::Newest, SortKey::ListedAt(at)) => q.push_bind(at),
                    (Sort::PriceAsc | Sort::PriceDesc, SortKey::Price(p)) => q.push_bind(p),
                    _ => q.push("NULL"),
                };
                q.push(", ");
                q.push_bind(c.id);
                q.push(")");
            }
            q.push(format!(" ORDER BY {key} {dir}, id {dir} LIMIT "));
            q.push_bind(self.limit);
            // Planned for its values every time, never from a cached generic
            // plan: whether walking the listing index newest-first beats a
            // GIN or price-range lookup depends on how many posts the words
            // and ranges match. A prepared statement switches to a generic
            // plan after five runs, and for filter-only listings that plan
            // took 2 s instead of 1 ms (`bench origin-read`, BENCHMARKS.md).
            let mut posts: Vec<Post> = q
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut *conn)
                .await?;
            // The gallery view's thumbnails.
            crate::db::photos::attach(conn, &mut posts.iter_mut().collect::<Vec<_>>()).await?;
            Ok(posts)
        })
    }
}
