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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

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

struct Generation {
    number: u64,
    producer: FutureProducer,
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
        let producer = config
            .client_config()
            .create()
            .map_err(ProduceError::Create)?;
        Ok(Producer {
            config: Arc::new(config),
            current: Arc::new(RwLock::new(Arc::new(Generation {
                number: 0,
                producer,
            }))),
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
        let producer = self
            .config
            .client_config()
            .create()
            .map_err(ProduceError::Create)?;
        *cur = Arc::new(Generation {
            number: failed + 1,
            producer,
        });
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
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned);
            let err = match generation
                .producer
                .send(record, Timeout::After(self.config.message_timeout))
                .await
            {
                Ok(delivery) => return Ok((delivery.partition, delivery.offset)),
                Err((err, _message)) => err,
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
