//! The bounded pool photos are processed on: decoding and resizing are
//! CPU-bound and take up to a few hundred megabytes each, so they run on
//! blocking threads (never on the runtime's workers, which serve every
//! other request), and at most `workers` at a time: an upload beyond that
//! waits for its turn instead of taking another core and another slice of
//! memory.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::media::MediaError;
use crate::media::process::{DecodeLimits, Renditions, process};

/// A handle on the pool; cheap to clone, every clone shares the same bound.
#[derive(Debug, Clone)]
pub struct Pool {
    permits: Arc<Semaphore>,
    limits: DecodeLimits,
}

impl Pool {
    /// A pool running at most `workers` photos at once (at least one), each
    /// within `limits`: the memory it may take is about `workers` ×
    /// `limits.max_alloc`.
    pub fn new(workers: usize, limits: DecodeLimits) -> Pool {
        Pool {
            permits: Arc::new(Semaphore::new(workers.max(1))),
            limits,
        }
    }

    /// The limits every photo is decoded within.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// The sizes of the photo in `bytes`, made when a worker is free.
    pub async fn process(&self, bytes: Vec<u8>) -> Result<Renditions, MediaError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| MediaError::Busy)?;
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let done = process(&bytes, &limits);
            drop(permit);
            done
        })
        .await
        .map_err(|e| MediaError::Internal(anyhow::anyhow!("photo processing panicked: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(w, h)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn photos_wait_for_a_free_worker_and_all_get_done() {
        let pool = Pool::new(1, DecodeLimits::default());
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (pool, done) = (pool.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let photo = pool.process(png(100 + i, 50)).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                photo.large()
            }));
        }
        let mut sizes = Vec::new();
        for t in tasks {
            sizes.push(t.await.unwrap());
        }
        assert_eq!(sizes, [(100, 50), (101, 50), (102, 50), (103, 50)]);
        assert_eq!(done.load(Ordering::SeqCst), 4);
        // Every permit came back.
        assert_eq!(pool.permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_refused_photo_gives_its_worker_back() {
        let pool = Pool::new(1, DecodeLimits::default());
        let refused = pool.process(b"not a photo".to_vec()).await;
        assert!(matches!(refused, Err(MediaError::UnsupportedType(_))));
        assert_eq!(pool.permits.available_permits(), 1);
        assert!(pool.process(png(10, 10)).await.is_ok());
    }
}
