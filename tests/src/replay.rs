//! Old messages of a topic produced to it again, byte for byte, keys and
//! headers included: what a relay re-sending after a crash, a producer
//! retry, or an operator re-driving a batch looks like to a consumer. The
//! chaos test's "publisher killed, a batch of old events replayed" uses it
//! on `<region>.events`; nothing in the pipeline may be resurrected by it.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Produces again the first `max` messages of `topic` (from its earliest
/// offsets, every partition, in the order read) on the broker at
/// `brokers`, each to its own partition with its own key and headers.
/// Stops early when nothing more arrives for `idle`. Returns how many were
/// replayed.
pub async fn replay_oldest(
    brokers: &str,
    topic: &str,
    max: usize,
    idle: Duration,
) -> anyhow::Result<usize> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("test-replay-{:08x}", rand::random::<u32>()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[topic])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let mut replayed = 0;
    while replayed < max {
        let Ok(message) = tokio::time::timeout(idle, consumer.recv()).await else {
            break;
        };
        let m = message?.detach();
        let mut headers = OwnedHeaders::new();
        for h in m.headers().into_iter().flat_map(|h| h.iter()) {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(m.partition())
            .headers(headers);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)?;
        replayed += 1;
    }
    Ok(replayed)
}
