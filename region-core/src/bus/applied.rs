//! One subscription to the writer's apply notifications per api process,
//! shared by every request waiting on its command.
//!
//! A subscription per waiting request would hold one Redis connection per
//! concurrent writer (512 posters: 512 connections, each opened and torn
//! down per request). Here one task holds the subscription, and a request
//! registers its command id before producing; a notification wakes exactly
//! the request that waits for it.
//!
//! Redis drops a message nobody listens to, so a notification sent while
//! the subscription is down is lost: the waiter then sees the wait run out
//! and reads the status key, which the writer sets before it publishes.
//! Nothing depends on a notification arriving; it only makes a 201 fast.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::backoff::doubling;
use crate::bus::notify::APPLIED_CHANNEL;
use crate::model::Id;

/// How often a waiter looks at the status key itself while the shared
/// subscription is down.
const POLL_WHILE_DOWN: Duration = Duration::from_millis(50);

/// First wait before subscribing again; doubles up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two subscription attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The registry of waiting requests and the task feeding it.
#[derive(Debug)]
pub struct AppliedWaiters {
    waiting: Mutex<HashMap<Id, oneshot::Sender<()>>>,
    subscribed: AtomicBool,
}

/// A registered wait; dropping it unregisters.
#[derive(Debug)]
pub struct Waiter {
    command: Id,
    notified: oneshot::Receiver<()>,
    waiters: Arc<AppliedWaiters>,
}

impl AppliedWaiters {
    /// Starts the subscription task on `redis_url` (it reconnects on its
    /// own, with backoff, for the life of the process).
    pub fn start(redis_url: &str) -> Arc<AppliedWaiters> {
        let waiters = Arc::new(AppliedWaiters {
            waiting: Mutex::new(HashMap::new()),
            subscribed: AtomicBool::new(false),
        });
        let url = redis_url.to_string();
        let task = Arc::downgrade(&waiters);
        tokio::spawn(async move {
            let mut waits = doubling(RECONNECT_FIRST, RECONNECT_MAX);
            loop {
                let Some(w) = task.upgrade() else { return };
                match w.listen(&url).await {
                    // A subscription that worked starts the waits again.
                    Ok(()) => waits = doubling(RECONNECT_FIRST, RECONNECT_MAX),
                    Err(e) => tracing::warn!(error = %e, "apply notifications: reconnecting"),
                }
                w.subscribed.store(false, Ordering::Release);
                drop(w);
                tokio::time::sleep(waits.next().unwrap_or(RECONNECT_MAX)).await;
            }
        });
        waiters
    }

    /// Holds the subscription until the connection ends.
    async fn listen(&self, url: &str) -> redis::RedisResult<()> {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(APPLIED_CHANNEL).await?;
        self.subscribed.store(true, Ordering::Release);
        let mut messages = pubsub.into_on_message();
        while let Some(m) = messages.next().await {
            let Ok(text) = m.get_payload::<String>() else {
                continue;
            };
            let Ok(id) = text.parse::<Id>() else { continue };
            let waiter = self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(tx) = waiter {
                let _ = tx.send(());
            }
        }
        Ok(())
    }

    /// Registers a wait for `command`; call before producing it.
    pub fn register(self: &Arc<Self>, command: Id) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(command, tx);
        Waiter {
            command,
            notified: rx,
            waiters: self.clone(),
        }
    }
}

impl Waiter {
    /// Waits up to `limit` for the notification, or, while the shared
    /// subscription is down, for `finished` (the status key) to say so.
    pub async fn wait<F, Fut>(mut self, limit: Duration, mut finished: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if !self.waiters.subscribed.load(Ordering::Acquire) && finished().await {
                return;
            }
            let slice = deadline.min(tokio::time::Instant::now() + POLL_WHILE_DOWN);
            match tokio::time::timeout_at(slice, &mut self.notified).await {
                Ok(_) => return,
                Err(_) if tokio::time::Instant::now() >= deadline => return,
                Err(_) => {}
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.command);
    }
}
