//! `post_images` in the apply transaction: the photos of the posts a batch
//! touches are read with them (every event carries its post's photos), and
//! the fold's new and cleared rows are written before the commit.

use std::collections::HashMap;

use sqlx::{Postgres, Transaction};

use crate::apply::fold::NewImage;
use crate::model::{Id, Post};

/// The content type of every stored size (each is re-encoded as JPEG).
const STORED_TYPE: &str = "image/jpeg";

/// The object key of a photo, relative to the photo store's prefix: the
/// layout `media::Photos` writes (`<city>/<post>/<photo>/<size>.jpg`).
fn object_key(city: &str, post: Id, photo: Id) -> String {
    format!("{city}/{post}/{photo}")
}

/// Fills in the photos of `posts`, in slot order. The posts are locked
/// already, and every `post_images` write goes through a locked post, so
/// the rows read are the ones the fold builds on.
pub async fn load_photos(
    tx: &mut Transaction<'_, Postgres>,
    posts: &mut HashMap<(String, Id), Post>,
) -> Result<(), sqlx::Error> {
    let mut posts: Vec<&mut Post> = posts.values_mut().collect();
    crate::db::photos::attach(tx, &mut posts).await
}

/// Inserts the fold's new rows, then removes the rows of `cleared` posts
/// (in that order: a post given photos and deleted in one batch keeps
/// none).
pub async fn write_images(
    tx: &mut Transaction<'_, Postgres>,
    images: &[NewImage],
    cleared: &[(String, Id)],
) -> Result<(), sqlx::Error> {
    if !images.is_empty() {
        let dimension = |d: u32| i32::try_from(d).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO post_images (city, post_id, slot, object_key, content_type, width,
                                      height, created_at)
             SELECT city, post_id, slot, object_key, $5, width, height, created_at
             FROM unnest($1::text[], $2::bigint[], $3::smallint[], $4::text[], $6::integer[],
                         $7::integer[], $8::timestamptz[])
                  AS r(city, post_id, slot, object_key, width, height, created_at)",
        )
        .bind(images.iter().map(|i| i.city.clone()).collect::<Vec<_>>())
        .bind(images.iter().map(|i| i.post_id.0).collect::<Vec<_>>())
        .bind(images.iter().map(|i| i.slot).collect::<Vec<_>>())
        .bind(
            images
                .iter()
                .map(|i| object_key(&i.city, i.post_id, i.photo.id))
                .collect::<Vec<_>>(),
        )
        .bind(STORED_TYPE)
        .bind(
            images
                .iter()
                .map(|i| dimension(i.photo.width))
                .collect::<Vec<_>>(),
        )
        .bind(
            images
                .iter()
                .map(|i| dimension(i.photo.height))
                .collect::<Vec<_>>(),
        )
        .bind(images.iter().map(|i| i.created_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !cleared.is_empty() {
        let (cities, ids): (Vec<String>, Vec<i64>) =
            cleared.iter().map(|(c, id)| (c.clone(), id.0)).unzip();
        sqlx::query(
            "DELETE FROM post_images
             WHERE (city, post_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))",
        )
        .bind(&cities)
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_key_names_its_photo() {
        let key = object_key("boston", Id(7), Id(70));
        assert_eq!(key, "boston/7/70");
        assert_eq!(crate::db::photos::photo_id(&key), Some(Id(70)));
        assert_eq!(crate::db::photos::photo_id("boston/7/x"), None);
    }
}
