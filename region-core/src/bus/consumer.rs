//! The one Kafka consumer of the roles that read a topic (the writer its
//! commands, the publisher its events): manual offset commits (see
//! `offsets`), and revocations reported to the loop so it stops committing
//! partitions it lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::doze::{Doze, DozeConfig};

/// Longest time the broker may hold a fetch that found nothing new (see
/// `subscribe`).
pub const FETCH_WAIT_MS: u32 = 50;

/// Records the partitions a rebalance takes away.
pub struct Context {
    topic: String,
    revoked: Mutex<BTreeSet<i32>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
                for e in tpl.elements() {
                    if e.topic() == self.topic {
                        revoked.insert(e.partition());
                    }
                }
                tracing::info!(partitions = ?revoked, "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(partitions = ?parts, "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// The consumer and what it needs to commit, pause and doze.
pub struct Consumer {
    /// Read through [`Consumer::recv`], which tells the doze.
    consumer: Arc<StreamConsumer<Context>>,
    pub topic: String,
    doze: Arc<Doze>,
}

impl Consumer {
    /// Joins `group` on `topic`. Offsets are committed by hand and only past
    /// finished messages (see `offsets`); a new group starts at the oldest
    /// message, so nothing produced before the role first ran is skipped.
    pub fn subscribe(
        brokers: &str,
        topic: &str,
        group: &str,
        session_timeout: Duration,
    ) -> anyhow::Result<Consumer> {
        let consumer: StreamConsumer<Context> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // The broker here (nisshi 0.8) does not answer a parked fetch
            // when records arrive: it re-reads after sleeping half of the
            // time left, so with librdkafka's default 500 ms a record
            // waited ~250 ms per consumer hop (`bench write-pipeline`: p50
            // 277 ms at 64 posters, visibility p50 887 ms). 50 ms bounds a
            // hop at ~25 ms for ~20 idle fetches a second per consumer.
            .set("fetch.wait.max.ms", FETCH_WAIT_MS.to_string())
            // Design §7: the brokers here want session.timeout.ms <= 6000.
            .set(
                "session.timeout.ms",
                session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (session_timeout.as_millis() / 3).max(100).to_string(),
            )
            .set("log_level", "4")
            .create_with_context(Context {
                topic: topic.to_string(),
                revoked: Mutex::default(),
            })?;
        consumer.subscribe(&[topic])?;
        Ok(Consumer {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            doze: Arc::new(Doze::new(topic, None)),
        })
    }

    /// Lets the consumer doze when idle, as `config` says (see
    /// `bus::doze`).
    pub fn dozing(mut self, config: DozeConfig) -> Consumer {
        self.doze = Arc::new(Doze::new(&self.topic, Some(config)));
        self.doze.start(&self.consumer);
        self
    }

    /// The doze state (tests and logs).
    pub fn doze(&self) -> &Doze {
        &self.doze
    }

    /// The next message.
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        let _waiting = self.doze.waiting();
        let message = self.consumer.recv().await;
        if message.is_ok() {
            self.doze.saw_message();
        }
        message
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> BTreeSet<i32> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    fn list(&self, partitions: impl IntoIterator<Item = i32>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(&self.topic, p);
        }
        tpl
    }

    /// Commits `offsets` (partition, next offset to read). `sync` waits
    /// for the broker (at shutdown); otherwise the commit is sent in the
    /// background, and a failed one is superseded by the next.
    pub fn commit(&self, offsets: &[(i32, i64)], sync: bool) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer.commit(&tpl, mode)?;
        Ok(())
    }

    /// Stops fetching `partitions` until `resume`.
    pub fn pause(&self, partitions: &BTreeSet<i32>) -> anyhow::Result<()> {
        self.consumer
            .pause(&self.list(partitions.iter().copied()))?;
        self.doze.held(partitions);
        Ok(())
    }

    /// Fetches `partitions` again.
    pub fn resume(&self, partitions: &BTreeSet<i32>) -> anyhow::Result<()> {
        self.doze.released(partitions);
        self.consumer
            .resume(&self.list(partitions.iter().copied()))?;
        Ok(())
    }
}
