//! Where photos are kept: an object store (a local directory by default,
//! S3-compatible storage by configuration), one object per size under
//! `<prefix>/<city>/<post>/<photo>/<size>.jpg`.
//!
//! A photo's id is new for each upload and its objects are never
//! rewritten, which is what lets `/media/` answer `immutable`. Everything
//! of a post shares one prefix, so a deleted post's photos go with one
//! listing, whatever rows said about them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::media::{MediaError, Renditions, Size};
use crate::model::Id;

/// A photo the store holds, as a listing finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub post: Id,
    pub photo: Id,
    /// When its newest object was written.
    pub written: DateTime<Utc>,
}

/// The photos of `stored` that no row keeps (`kept`: the photo ids of the
/// city's `post_images`) and that were written before `before`. A photo is
/// stored before its command adds its row, so a young one without a row
/// is most likely an upload in progress, not an orphan.
pub fn orphans<'a>(
    stored: &'a [Stored],
    kept: &HashSet<Id>,
    before: DateTime<Utc>,
) -> Vec<&'a Stored> {
    stored
        .iter()
        .filter(|s| !kept.contains(&s.photo) && s.written < before)
        .collect()
}

/// The photos' object store and the prefix within it; cheap to clone.
#[derive(Clone)]
pub struct Photos {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

impl std::fmt::Debug for Photos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Photos({})", self.prefix)
    }
}

impl Photos {
    /// The photos at `location` (see `object_location::open`).
    pub fn open(location: &str) -> anyhow::Result<Photos> {
        let (store, prefix) = crate::object_location::open(location, "photo store")?;
        Ok(Photos { store, prefix })
    }

    /// Photos on any object store (tests use an in-memory one).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Photos {
        Photos {
            store,
            prefix: ObjectPath::from(prefix),
        }
    }

    /// The prefix of every object of `post`.
    fn post_prefix(&self, city: &str, post: Id) -> ObjectPath {
        // `join` escapes a '/' or '..' in a part: a part never climbs out.
        self.prefix.clone().join(city).join(post.to_string())
    }

    fn object(&self, city: &str, post: Id, photo: Id, size: Size) -> ObjectPath {
        self.post_prefix(city, post)
            .join(photo.to_string())
            .join(format!("{}.jpg", size.name()))
    }

    /// Stores every size of `photo`. All or nothing: when one size fails,
    /// those already written are removed again before the error returns.
    pub async fn put(
        &self,
        city: &str,
        post: Id,
        photo: Id,
        renditions: &Renditions,
    ) -> Result<(), MediaError> {
        for r in &renditions.sizes {
            let path = self.object(city, post, photo, r.size);
            let payload = PutPayload::from(Bytes::from(r.jpeg.clone()));
            if let Err(e) = self.store.put(&path, payload).await {
                if let Err(undo) = self.remove_photo(city, post, photo).await {
                    tracing::warn!(error = %undo, %path, "photo objects left after a failed put");
                }
                return Err(MediaError::Internal(
                    anyhow::Error::new(e).context(format!("storing {path}")),
                ));
            }
        }
        Ok(())
    }

    /// One size of a photo, or `None` when there is no such object.
    pub async fn get(
        &self,
        city: &str,
        post: Id,
        photo: Id,
        size: Size,
    ) -> anyhow::Result<Option<Bytes>> {
        let path = self.object(city, post, photo, size);
        match self.store.get(&path).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .with_context(|| format!("reading {path}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {path}"))),
        }
    }

    /// Removes every size of one photo (those that exist).
    pub async fn remove_photo(&self, city: &str, post: Id, photo: Id) -> anyhow::Result<()> {
        let prefix = self.post_prefix(city, post).join(photo.to_string());
        self.remove_under(&prefix).await.map(|_| ())
    }

    /// Removes every photo of `post`; the number of objects removed.
    pub async fn remove_post(&self, city: &str, post: Id) -> anyhow::Result<usize> {
        self.remove_under(&self.post_prefix(city, post)).await
    }

    /// The cities the store holds photos of.
    pub async fn cities(&self) -> anyhow::Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .with_context(|| format!("listing {}", self.prefix))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Every photo of `city` the store holds (objects whose names are not
    /// ours are left out).
    pub async fn stored(&self, city: &str) -> anyhow::Result<Vec<Stored>> {
        let prefix = self.prefix.clone().join(city);
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .with_context(|| format!("listing {prefix}"))?;
        let mut photos: HashMap<(Id, Id), DateTime<Utc>> = HashMap::new();
        for meta in objects {
            // <prefix>/<city>/<post>/<photo>/<size>.jpg
            let Some(rest) = meta.location.prefix_match(&prefix) else {
                continue;
            };
            let parts: Vec<String> = rest.map(|p| p.as_ref().to_string()).collect();
            let [post, photo, _size] = parts.as_slice() else {
                continue;
            };
            let (Ok(post), Ok(photo)) = (post.parse(), photo.parse()) else {
                continue;
            };
            let newest = photos.entry((post, photo)).or_insert(meta.last_modified);
            *newest = (*newest).max(meta.last_modified);
        }
        Ok(photos
            .into_iter()
            .map(|((post, photo), written)| Stored {
                post,
                photo,
                written,
            })
            .collect())
    }

    async fn remove_under(&self, prefix: &ObjectPath) -> anyhow::Result<usize> {
        let found = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let removed: Vec<ObjectPath> = self
            .store
            .delete_stream(found)
            .try_collect()
            .await
            .with_context(|| format!("removing the objects under {prefix}"))?;
        Ok(removed.len())
    }
}

#[cfg(test)]
mod tests {
    use object_store::local::LocalFileSystem;

    use super::*;
    use crate::media::process::{DecodeLimits, process};

    fn photo() -> Renditions {
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(1600, 1200)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        process(png.get_ref(), &DecodeLimits::default()).unwrap()
    }

    fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    found.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn the_sizes_land_in_a_local_directory_and_go_with_their_post() {
        let dir = tempfile::tempdir().unwrap();
        let photos = Photos::open(dir.path().join("photos").to_str().unwrap()).unwrap();
        let p = photo();
        photos.put("boston", Id(7), Id(70), &p).await.unwrap();
        photos.put("boston", Id(7), Id(71), &p).await.unwrap();
        photos.put("boston", Id(8), Id(80), &p).await.unwrap();
        assert_eq!(
            files_under(&dir.path().join("photos/boston/7/70")),
            ["1200.jpg", "300.jpg", "600.jpg"]
        );
        let medium = photos
            .get("boston", Id(7), Id(71), Size::Medium)
            .await
            .unwrap();
        assert_eq!(medium.as_deref(), Some(&p.sizes[1].jpeg[..]));
        assert_eq!(
            photos
                .get("boston", Id(7), Id(72), Size::Medium)
                .await
                .unwrap(),
            None
        );

        assert_eq!(photos.remove_post("boston", Id(7)).await.unwrap(), 6);
        assert_eq!(
            photos
                .get("boston", Id(7), Id(70), Size::Thumb)
                .await
                .unwrap(),
            None
        );
        // Another post's photos stay.
        assert_eq!(files_under(&dir.path().join("photos/boston/8")).len(), 3);
        photos.remove_photo("boston", Id(8), Id(80)).await.unwrap();
        assert!(
            photos
                .get("boston", Id(8), Id(80), Size::Large)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_listing_finds_each_photo_once_and_orphans_are_the_old_ones_without_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let photos = Photos::open(dir.path().to_str().unwrap()).unwrap();
        let p = photo();
        photos.put("boston", Id(7), Id(70), &p).await.unwrap();
        photos.put("boston", Id(7), Id(71), &p).await.unwrap();
        photos.put("chicago", Id(8), Id(80), &p).await.unwrap();
        std::fs::write(dir.path().join("boston/README"), "not a photo").unwrap();
        let mut cities = photos.cities().await.unwrap();
        cities.sort();
        assert_eq!(cities, ["boston", "chicago"]);
        let mut stored = photos.stored("boston").await.unwrap();
        stored.sort_by_key(|s| s.photo);
        assert_eq!(
            stored.iter().map(|s| (s.post, s.photo)).collect::<Vec<_>>(),
            [(Id(7), Id(70)), (Id(7), Id(71))]
        );
        let kept: HashSet<Id> = [Id(70)].into();
        let later = Utc::now() + chrono::Duration::hours(2);
        let found: Vec<Id> = orphans(&stored, &kept, later)
            .iter()
            .map(|s| s.photo)
            .collect();
        assert_eq!(found, [Id(71)]);
        // Written within the last hour: perhaps an upload whose command
        // has not applied yet.
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        assert!(orphans(&stored, &kept, hour_ago).is_empty());
    }

    #[tokio::test]
    async fn a_city_name_cannot_climb_out_of_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let photos = Photos::new(store, "photos");
        photos
            .put("../../etc", Id(1), Id(2), &photo())
            .await
            .unwrap();
        let files = files_under(dir.path());
        assert_eq!(files.len(), 3);
        assert!(files.iter().all(|f| f.starts_with("photos/")), "{files:?}");
    }
}
