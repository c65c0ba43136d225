//! Messages produced into a topic before the consumer under test starts,
//! so that what is timed is the consumer alone.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Produces every payload to `topic` keyed by `key` (acks=all), then checks
/// that the topic's partitions hold that many messages. Blocking: run it
/// on a blocking thread.
pub fn preload(port: u16, topic: &str, key: &str, payloads: &[Vec<u8>]) -> Result<()> {
    let bootstrap = format!("127.0.0.1:{port}");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .set("log_level", "3")
        .create()
        .context("creating the preload producer")?;
    for payload in payloads {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => return Err(e).context("producing a preloaded message"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(300))
        .context("flushing the preloaded messages")?;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("log_level", "3")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut held = 0i64;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            held += high - low;
        }
    }
    // Every message is keyed alike, so one partition holds them all; the
    // sum also covers a broker that spreads them.
    if held < payloads.len() as i64 {
        bail!(
            "{topic} holds {held} messages after producing {}: some were lost",
            payloads.len()
        );
    }
    Ok(())
}
