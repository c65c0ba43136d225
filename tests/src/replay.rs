//! Old messages of a topic produced to it again, byte for byte, keys and
//! headers included: what a relay re-sending after a crash, a producer
//! retry, or an operator re-driving a batch looks like to a consumer. The
//! chaos test's "publisher killed, a batch of old events replayed" uses it
//! on `<region>.events`; nothing in the pipeline may be resurrected by it.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// Produces the oldest `max` events of `topic` (spread over its
/// partitions) again, each to its own partition with its key, payload and
/// headers, acknowledged by all replicas; returns how many. Blocking
/// (the client's polls): call it from `spawn_blocking`.
pub fn replay_oldest(broker: &str, topic: &str, max: usize) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", format!("chaos-replay-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("the events topic's metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut old = Vec::new();
    while old.len() < max {
        match consumer.poll(Duration::from_secs(2)) {
            Some(Ok(m)) => old.push(m.detach()),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => break,
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("acks", "all")
        .create()
        .expect("a producer");
    for m in &old {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(m.partition());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = m.payload() {
            record = record.payload(p);
        }
        if let Some(h) = m.headers() {
            record = record.headers(h.clone());
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    producer.poll(Duration::from_millis(50));
                    record = r;
                }
                Err((e, _)) => panic!("replaying into {topic}: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("the replayed events acknowledged");
    old.len()
}
