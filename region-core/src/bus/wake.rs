//! Wake-ups for dozing consumers (see `bus::doze`): a producer announces on
//! the region's store Redis, channel `wake:<topic>`, that it is sending to
//! `topic`; the consumers of that topic, their fetches paused while idle,
//! resume at once instead of at their next probe.
//!
//! Why a side channel: the broker here (nisshi 0.8) answers a parked fetch
//! only by reading every requested partition again, at shrinking intervals,
//! so a consumer that waits for records costs the broker a steady stream of
//! reads even when nothing is written (`cityboard bench idle`). A paused
//! consumer sends no fetch at all; this channel is what lets it pause
//! without making the next write wait.
//!
//! Nothing depends on a wake arriving: a lost one (Redis down, the
//! subscription reconnecting) costs at most one probe interval of latency,
//! never a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};

use crate::backoff::doubling;
use crate::lazy_redis::LazyRedis;

/// The channel a producer to `topic` publishes on.
pub fn channel(topic: &str) -> String {
    format!("wake:{topic}")
}

/// Within this time after a wake for a topic, another is not sent: a woken
/// consumer stays awake far longer (`doze::IDLE_AFTER`), so it reads what
/// follows without being told.
const COALESCE: Duration = Duration::from_millis(200);

/// Wakes queued for publishing; past this, new ones are dropped (one
/// already queued does the same job).
const QUEUE: usize = 64;

/// How long one PUBLISH may take (connecting included).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// First wait before subscribing again; doubles up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two subscription attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The producer side: publishes wakes in the background, so a produce never
/// waits for Redis.
#[derive(Debug, Clone)]
pub struct Waker {
    queue: mpsc::Sender<String>,
    last: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Waker {
    /// Publishes on the Redis at `redis_url` (connected on first use).
    pub fn start(redis_url: &str) -> Waker {
        let (queue, mut wakes) = mpsc::channel::<String>(QUEUE);
        let redis = LazyRedis::new(redis_url);
        tokio::spawn(async move {
            while let Some(topic) = wakes.recv().await {
                let publish = async {
                    let mut conn = redis.connection(PUBLISH_TIMEOUT).await?;
                    redis::cmd("PUBLISH")
                        .arg(channel(&topic))
                        .arg("")
                        .query_async::<()>(&mut conn)
                        .await
                };
                match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(%topic, error = %e, "wake not published"),
                    Err(_) => tracing::debug!(%topic, "wake not published in time"),
                }
            }
        });
        Waker {
            queue,
            last: Arc::default(),
        }
    }

    /// Announces a message to `topic`, unless one was announced just now.
    pub fn wake(&self, topic: &str) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match last.get_mut(topic) {
                Some(at) if now.duration_since(*at) < COALESCE => return,
                Some(at) => *at = now,
                None => {
                    last.insert(topic.to_string(), now);
                }
            }
        }
        // Full: wakes are queued already, and one is as good as many.
        let _ = self.queue.try_send(topic.to_string());
    }
}

/// The consumer side: a subscription to `wake:<topic>` that notifies
/// `notify` at each wake, reconnecting with backoff for the life of the
/// process. `subscribed` says whether it listens now: a consumer must not
/// doze while a wake would be lost.
pub fn listen(redis_url: &str, topic: &str, notify: Arc<Notify>, subscribed: Arc<AtomicBool>) {
    let url = redis_url.to_string();
    let channel = channel(topic);
    let task = Arc::downgrade(&notify);
    drop(notify);
    tokio::spawn(async move {
        let mut waits = doubling(RECONNECT_FIRST, RECONNECT_MAX);
        loop {
            // The consumer is gone: so is the need for wakes.
            if task.strong_count() == 0 {
                return;
            }
            match subscribe(&url, &channel, &task, &subscribed).await {
                Ok(()) => waits = doubling(RECONNECT_FIRST, RECONNECT_MAX),
                Err(e) => tracing::debug!(%channel, error = %e, "wake subscription: reconnecting"),
            }
            subscribed.store(false, Ordering::Release);
            // A wake may have been missed while the subscription was down:
            // one spurious wake costs one fetch round, a missed one a probe
            // interval.
            if let Some(n) = task.upgrade() {
                n.notify_one();
            }
            tokio::time::sleep(waits.next().unwrap_or(RECONNECT_MAX)).await;
        }
    });
}

/// Holds the subscription until the connection ends.
async fn subscribe(
    url: &str,
    channel: &str,
    notify: &std::sync::Weak<Notify>,
    subscribed: &AtomicBool,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    subscribed.store(true, Ordering::Release);
    let mut messages = pubsub.into_on_message();
    while messages.next().await.is_some() {
        match notify.upgrade() {
            Some(n) => n.notify_one(),
            None => return Ok(()),
        }
    }
    Ok(())
}
