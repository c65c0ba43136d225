//! The earliest offset the broker still serves in each partition of a
//! topic (its low watermark): what the janitor prunes the dedup history by.
//! Retention drops a topic's oldest messages and moves this mark; nothing
//! below it can be read, so nothing below it can be replayed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// How long one metadata or watermark request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client that asks the broker for watermarks (it joins no group).
#[derive(Clone)]
pub struct Watermarks {
    consumer: Arc<BaseConsumer>,
}

impl std::fmt::Debug for Watermarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watermarks")
    }
}

impl Watermarks {
    /// A client of `brokers` (`host:port`); it connects on first use.
    pub fn new(brokers: &str) -> anyhow::Result<Watermarks> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("log_level", "3")
            .create()
            .context("creating the watermark client")?;
        Ok(Watermarks {
            consumer: Arc::new(consumer),
        })
    }

    /// `(partition, earliest offset)` of every partition of `topic`, in
    /// partition order. An error (the broker away, no such topic) means
    /// nothing is known: the caller prunes nothing.
    pub async fn earliest(&self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        let consumer = self.consumer.clone();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer
                .fetch_metadata(Some(&topic), TIMEOUT)
                .with_context(|| format!("metadata of {topic}"))?;
            let t = metadata
                .topics()
                .first()
                .with_context(|| format!("no metadata for {topic}"))?;
            if let Some(e) = t.error() {
                anyhow::bail!("metadata of {topic}: {e:?}");
            }
            let mut out = Vec::with_capacity(t.partitions().len());
            for p in t.partitions() {
                let (low, _) = consumer
                    .fetch_watermarks(&topic, p.id(), TIMEOUT)
                    .with_context(|| format!("watermarks of {topic}/{}", p.id()))?;
                out.push((p.id(), low));
            }
            out.sort_unstable();
            Ok(out)
        })
        .await?
    }
}
