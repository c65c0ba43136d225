//! Reading `post_images` into the posts it belongs to. One query for any
//! number of posts, and none when no post has a photo (`image_count`, kept
//! by `apply` from the same rows, says which do).

use sqlx::PgConnection;

use crate::model::{Id, Photo, Post};

/// The photo an object key names (its last part: `media::Photos` keys are
/// `<city>/<post>/<photo>`), if it is well formed.
pub fn photo_id(key: &str) -> Option<Id> {
    key.rsplit('/').next()?.parse().ok()
}

/// `post_images`' city, post id, object key, width and height.
type ImageRow = (String, i64, String, Option<i32>, Option<i32>);

/// Fills in the photos of `posts` in slot order (replacing what they had).
pub async fn attach(conn: &mut PgConnection, posts: &mut [&mut Post]) -> Result<(), sqlx::Error> {
    let (cities, ids): (Vec<String>, Vec<i64>) = posts
        .iter()
        .filter(|p| p.fields.image_count > 0)
        .map(|p| (p.city.clone(), p.id.0))
        .unzip();
    for p in posts.iter_mut() {
        p.photos.clear();
    }
    if ids.is_empty() {
        return Ok(());
    }
    let rows: Vec<ImageRow> = sqlx::query_as(
        "SELECT city, post_id, object_key, width, height FROM post_images
         WHERE (city, post_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))
         ORDER BY city, post_id, slot",
    )
    .bind(&cities)
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    for (city, post, key, width, height) in rows {
        let Some(id) = photo_id(&key) else {
            continue;
        };
        let Some(p) = posts.iter_mut().find(|p| p.id.0 == post && p.city == city) else {
            continue;
        };
        p.photos.push(Photo {
            id,
            width: width.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
            height: height.and_then(|h| u32::try_from(h).ok()).unwrap_or(0),
        });
    }
    Ok(())
}
