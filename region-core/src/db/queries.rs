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
