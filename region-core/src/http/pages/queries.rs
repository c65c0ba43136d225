//! The reads only pages make: counts per category, the sitemap's posts,
//! and a user's own posts (from the primary).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::db::read::{BoxFuture, ReadQuery};
use crate::model::post::POST_COLUMNS;
use crate::model::{Id, Post};

/// Live posts of a city per category. "Live" is what the listing shows:
/// status live and not yet expired (a post expires 7 days after its
/// creation or last renewal).
pub struct CategoryCounts {
    /// The host's city.
    pub city: String,
    /// The api's clock.
    pub now: DateTime<Utc>,
}

impl ReadQuery for CategoryCounts {
    type Output = Vec<(String, i64)>;
    fn run<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>> {
        Box::pin(async move {
            sqlx::query_as(
                "SELECT category, count(*) FROM posts
                 WHERE city = $1 AND status = 'live' AND expires_at > $2
                 GROUP BY category",
            )
            .bind(&self.city)
            .bind(self.now)
            .fetch_all(conn)
            .await
        })
    }
}

/// The sitemap's entries: a city's live posts, newest change first, at most
/// 50 000 (the sitemap protocol's limit per file).
pub struct LivePostUrls {
    /// The host's city.
    pub city: String,
    /// The api's clock.
    pub now: DateTime<Utc>,
}

impl ReadQuery for LivePostUrls {
    type Output = Vec<(Id, DateTime<Utc>)>;
    fn run<'c>(
        &'c self,
        conn: &'c mut PgConnection,
    ) -> BoxFuture<'c, Result<Self::Output, sqlx::Error>> {
        Box::pin(async move {
            sqlx::query_as(
                "SELECT id, updated_at FROM posts
                 WHERE city = $1 AND status = 'live' AND expires_at > $2
                 ORDER BY updated_at DESC LIMIT 50000",
            )
            .bind(&self.city)
            .bind(self.now)
            .fetch_all(conn)
            .await
        })
    }
}

/// A user's posts of a city that they can still act on (live or expired;
/// hidden ones too, so they see why a post vanished), newest first, from
/// `posts_city_user`.
pub async fn own_posts(
    primary: &sqlx::PgPool,
    city: &str,
    user: Id,
) -> Result<Vec<Post>, sqlx::Error> {
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts
         WHERE city = $1 AND user_id = $2 AND status IN ('live', 'expired', 'hidden')
         ORDER BY created_at DESC, id DESC LIMIT 200"
    );
    sqlx::query_as(&sql)
        .bind(city)
        .bind(user)
        .fetch_all(primary)
        .await
}
