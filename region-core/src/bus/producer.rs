//! One Kafka producer for the api, the writer's dead letters and the relay:
//! idempotent, `acks=all`, keyed by city, and rebuilt after a fatal error.
//!
//! Why the rebuild: after a broker restart the idempotent producer can lose
//! its producer id or sequence state and fail *fatally*; librdkafka then
//! refuses every further message on that instance. A fresh instance gets a
//! new producer id, so the broker can no longer deduplicate a message the
//! old one had sent before failing: it may land twice. That is safe because
//! every consumer downstream deduplicates (`applied_commands`, and
//! `(post id, version)` for events), and it is the only way to make sure a
//! message whose delivery was not acknowledged is not lost.
//!
//! Why not rdkafka's `FutureProducer`: its polling thread calls `poll`
//! with 100 ms in a loop, and rdkafka 0.39 hands librdkafka the time left
//! in whole milliseconds, so the last millisecond of every 100 becomes a
//! run of non-blocking polls: about 1 % of a core per idle producer, the
//! largest share of an idle stack after the broker (`cityboard bench
//! idle`, BENCHMARKS.md). Here a thread of our own serves the delivery
//! reports with a one-second poll (a report still comes back as soon as it
//! is ready; only the spin at the end of each wait is ten times rarer).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::oneshot;

use super::wake::Waker;

/// How the producer talks to the broker.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of the broker(s).
    pub brokers: String,
    /// How long librdkafka keeps retrying one message before reporting it
    /// failed (`message.timeout.ms`).
    pub message_timeout: Duration,
    /// How long a message may wait to share a request with others
    /// (`linger.ms`): a little batching for the relay and bursts of posts.
    pub linger: Duration,
    /// Rebuilds one `produce` call may go through before giving up.
    pub max_rebuilds: u32,
    /// The Redis on which each send is announced to the topic's dozing
    /// consumers (`bus::wake`); `None`: not announced (nothing consumes
    /// the topic, or its consumers never doze).
    pub wake: Option<String>,
}

impl ProducerConfig {
    /// Defaults for `brokers`.
    pub fn new(brokers: &str) -> Self {
        ProducerConfig {
            brokers: brokers.to_string(),
            message_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(2),
            max_rebuilds: 5,
            wake: None,
        }
    }

    /// The same, announcing each send on the wake channel of the Redis at
    /// `url`.
    pub fn waking(mut self, url: &str) -> Self {
        self.wake = Some(url.to_string());
        self
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            // Exactly-once per producer session and in order per partition;
            // implies acks=all, retries and at most 5 requests in flight.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.linger.as_millis().to_string())
            // The default murmur2 partitioner as the Java client uses, so a
            // city lands on the same partition whatever client produced it.
            .set("partitioner", "murmur2_random")
            .set("log_level", "4");
        c
    }
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("producing to {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("producing to {topic}: the producer failed fatally {rebuilds} times in a row")]
    TooManyRebuilds { topic: String, rebuilds: u32 },
    #[error("creating the Kafka producer: {0}")]
    Create(#[source] KafkaError),
}

/// How long one poll of the delivery thread waits for a report: also how
/// long that thread outlives its producer.
const POLL_WAIT: Duration = Duration::from_secs(1);

/// The name of the thread that serves a producer's delivery reports (at
/// most 15 bytes: what Linux keeps of a thread's name).
pub const DELIVERY_THREAD: &str = "kafka-delivery";

/// How long a send waits between tries while librdkafka's queue is full.
const QUEUE_FULL_RETRY: Duration = Duration::from_millis(100);

/// Where a message's delivery report goes: its partition and offset, or
/// why it failed.
type Report = oneshot::Sender<Result<(i32, i64), KafkaError>>;

/// Hands each delivery report to the send that waits for it.
struct Deliveries;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Report>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Box<Report>) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        // The send may have given up waiting: nothing to tell then.
        let _ = report.send(outcome);
    }
}

type Base = BaseProducer<Deliveries>;

/// One librdkafka producer and the thread that serves its delivery
/// reports; dropped (replaced and no longer used), its thread stops within
/// `POLL_WAIT`, and the producer's own drop then fails what it still held.
struct Generation {
    number: u64,
    producer: Arc<Base>,
    stop: Arc<AtomicBool>,
}

impl Generation {
    fn new(number: u64, config: &ProducerConfig) -> Result<Generation, ProduceError> {
        let producer: Arc<Base> = Arc::new(
            config
                .client_config()
                .create_with_context(Deliveries)
                .map_err(ProduceError::Create)?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (p, halt) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name(DELIVERY_THREAD.into())
            .spawn(move || {
                while !halt.load(Ordering::Acquire) {
                    p.poll(POLL_WAIT);
                }
            })
            .map_err(|e| ProduceError::Create(KafkaError::ClientCreation(e.to_string())))?;
        Ok(Generation {
            number,
            producer,
            stop,
        })
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Queues one message on `producer` (waiting up to `queue_timeout` while
/// librdkafka's queue is full) and waits for its delivery report.
async fn send(
    producer: &Base,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: OwnedHeaders,
    queue_timeout: Duration,
) -> Result<(i32, i64), KafkaError> {
    let (tx, rx) = oneshot::channel();
    let mut record = BaseRecord::with_opaque_to(topic, Box::new(tx))
        .key(key)
        .payload(payload)
        .headers(headers);
    let started = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                if started.elapsed() < queue_timeout =>
            {
                record = r;
                tokio::time::sleep(QUEUE_FULL_RETRY).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
    // Every queued message gets a report, a purge on drop included; a
    // sender dropped without one means the producer went away.
    rx.await.unwrap_or(Err(KafkaError::Canceled))
}

/// Cheap to clone; clones share the producer.
#[derive(Clone)]
pub struct Producer {
    config: Arc<ProducerConfig>,
    current: Arc<RwLock<Arc<Generation>>>,
    rebuilds: Arc<AtomicU64>,
    /// Started on the first send (it needs the runtime).
    waker: Arc<OnceLock<Waker>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("brokers", &self.config.brokers)
            .field("rebuilds", &self.rebuilds())
            .finish()
    }
}

impl Producer {
    /// Creates the producer (it connects in the background).
    pub fn new(config: ProducerConfig) -> Result<Producer, ProduceError> {
        let first = Generation::new(0, &config)?;
        Ok(Producer {
            config: Arc::new(config),
            current: Arc::new(RwLock::new(Arc::new(first))),
            rebuilds: Arc::default(),
            waker: Arc::default(),
        })
    }

    /// How many times the producer was rebuilt after a fatal error.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }

    fn generation(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces generation `failed` by a new producer, unless another task
    /// already did: every send that failed with it retries on the one new
    /// instance.
    fn rebuild(&self, failed: u64) -> Result<(), ProduceError> {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.number != failed {
            return Ok(());
        }
        *cur = Arc::new(Generation::new(failed + 1, &self.config)?);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            generation = failed + 1,
            "Kafka producer rebuilt after a fatal error"
        );
        Ok(())
    }

    /// Sends one message keyed by `key` (the city) and waits until the
    /// broker acknowledged it (all in-sync replicas); returns its partition
    /// and offset. After a fatal error the message is sent again on a
    /// rebuilt producer, so the caller only sees errors a retry would not
    /// cure by itself (e.g. the broker unreachable for `message_timeout`).
    pub async fn produce(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<(i32, i64), ProduceError> {
        // Before the send rather than after its acknowledgement: a woken
        // consumer stays awake long enough to read it, and the wake costs
        // the send no time.
        if let Some(url) = &self.config.wake {
            self.waker.get_or_init(|| Waker::start(url)).wake(topic);
        }
        let mut rebuilds = 0;
        loop {
            let generation = self.generation();
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in headers {
                owned = owned.insert(Header {
                    key: name,
                    value: Some(*value),
                });
            }
            let err = match send(
                &generation.producer,
                topic,
                key,
                payload,
                owned,
                self.config.message_timeout,
            )
            .await
            {
                Ok(delivery) => return Ok(delivery),
                Err(err) => err,
            };
            // Fatal on this instance, or failed because another task
            // replaced the instance (purged on drop): send again on the new
            // one.
            let fatal = err.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal)
                || generation.producer.client().fatal_error().is_some();
            let replaced = self.generation().number != generation.number;
            if !fatal && !replaced {
                return Err(ProduceError::Kafka {
                    topic: topic.to_string(),
                    source: err,
                });
            }
            if rebuilds >= self.config.max_rebuilds {
                return Err(ProduceError::TooManyRebuilds {
                    topic: topic.to_string(),
                    rebuilds,
                });
            }
            if fatal {
                tracing::warn!(topic, error = %err, "fatal producer error; rebuilding and sending again");
                self.rebuild(generation.number)?;
                rebuilds += 1;
            }
        }
    }

    /// Waits for every message in flight (clean shutdown).
    ///
    /// (`flush` serves the delivery reports itself, beside the thread.)
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.generation().producer.flush(timeout) {
            tracing::warn!(error = %e, "flushing the producer");
        }
    }

    /// Raises a fabricated fatal error in the current instance, as a broker
    /// restart can (librdkafka's own testing hook): tests prove the rebuild
    /// with it. Not for production use.
    #[doc(hidden)]
    pub fn inject_fatal_error_for_test(&self) {
        let generation = self.generation();
        let reason = c"injected by a test";
        // SAFETY: the client pointer is valid while `generation` is alive,
        // and librdkafka copies the reason string.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                generation.producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}
