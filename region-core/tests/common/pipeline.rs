//! The pipeline roles in process, on topics of their own, against the
//! stack's broker, shards and Redis: each test creates its topics (Admin
//! API) and consumer groups, so tests run side by side and never touch the
//! stack's own `<region>.*` topics.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use region_core::bus::notify::Notifier;
use region_core::bus::{Producer, ProducerConfig, Topics};
use region_core::roles::relay::metrics::RelayMetrics;
use region_core::roles::relay::{RelayConfig, RelayShard};
use region_core::roles::writer::metrics::WriterMetrics;
use region_core::roles::writer::{WriterConfig, WriterParts};
use region_core::stack::StackFile;
use tokio::sync::oneshot;

use crate::common::Region;

fn state_path() -> PathBuf {
    PathBuf::from(std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME")).join("state.json")
}

/// Posts of `city` on `shard`.
pub async fn posts_in(shard: &crate::common::Shard, city: &str) -> i64 {
    crate::common::count(
        &crate::common::pool(&shard.primary_url).await,
        "SELECT count(*) FROM posts WHERE city = $1",
        city,
    )
    .await
}

/// The stack's broker, `host:port`.
pub fn broker() -> String {
    region_core::roles::common::broker_from_state(&state_path()).unwrap()
}

/// The store Redis (noeviction) of the stack's first region.
pub fn store_url() -> String {
    let stack = StackFile::read(&state_path()).unwrap();
    stack.regions[0].redis_store_url.clone()
}

/// Topics no other test uses, created with `partitions` partitions.
pub async fn own_topics(prefix: &str, partitions: i32) -> Topics {
    let base = format!("test-{prefix}-{:08x}", rand::random::<u32>());
    let topics = Topics {
        commands: format!("{base}.commands"),
        events: format!("{base}.events"),
        dead_letters: format!("{base}.dead-letters"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    // Each with the retention the stack's topics get.
    let names = [&topics.commands, &topics.events, &topics.dead_letters];
    let configs: Vec<_> = names
        .iter()
        .map(|t| region_core::bus::retention::topic_config(t))
        .collect();
    let new: Vec<NewTopic> = names
        .into_iter()
        .zip(&configs)
        .map(|(t, config)| {
            config.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(1)),
                |topic, (name, value)| topic.set(name, value),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => panic!("creating topic {t}: {code}"),
        }
    }
    topics
}

pub fn producer() -> Producer {
    Producer::new(ProducerConfig::new(&broker())).unwrap()
}

/// Produces a command as the api will: JSON, keyed by its city.
pub async fn send(producer: &Producer, topic: &str, command: &region_core::model::Command) {
    let payload = serde_json::to_vec(command).unwrap();
    producer
        .produce(topic, &command.city, &payload, &[])
        .await
        .unwrap();
}

/// A writer of the first region running in this process.
pub struct RunningWriter {
    pub metrics: Arc<WriterMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningWriter {
    /// Starts a writer on `topics` with its own consumer group `group`
    /// (the same group again resumes from its committed offsets).
    pub async fn start(
        region: &Region,
        topics: &Topics,
        group: &str,
        tune: impl FnOnce(&mut WriterConfig),
    ) -> RunningWriter {
        let mut config = WriterConfig::new(&region.name);
        config.topics = topics.clone();
        config.group = group.to_string();
        tune(&mut config);
        let metrics = Arc::new(WriterMetrics::default());
        let parts = WriterParts {
            router: crate::common::router(region).await,
            catalog: crate::common::pool(&region.catalog_url).await,
            ids: crate::common::ids(region).await,
            producer: producer(),
            notifier: Arc::new(Notifier::new(&store_url())),
            metrics: metrics.clone(),
            brokers: broker(),
        };
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(region_core::roles::writer::apply_commands(
            config,
            parts,
            async {
                let _ = rx.await;
            },
        ));
        RunningWriter {
            metrics,
            stop: Some(tx),
            task,
        }
    }

    /// Stops it cleanly (in-flight applies finish, offsets committed).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap()
    }

    /// Waits for the writer to end by itself (a crash point).
    pub async fn ended(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the writer did not end")
            .unwrap()
    }
}

/// A relay of the first region's shards, for `cities` only, in process.
pub struct RunningRelay {
    pub metrics: Arc<RelayMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), region_core::roles::relay::RelayError>>,
}

impl RunningRelay {
    pub async fn start(region: &Region, topic: &str, cities: &[String]) -> RunningRelay {
        let shards = region
            .shards
            .iter()
            .map(|s| RelayShard {
                name: s.name.clone(),
                primary: sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_lazy(&s.primary_url)
                    .unwrap(),
            })
            .collect();
        let mut config = RelayConfig::new(topic);
        config.cities = Some(cities.to_vec());
        config.poll = Duration::from_millis(200);
        let metrics = Arc::new(RelayMetrics::default());
        let (tx, rx) = oneshot::channel();
        // A fixed list: the sender goes at once, so the relay never expects
        // another.
        let task = tokio::spawn(region_core::roles::relay::drain_outboxes(
            tokio::sync::watch::channel(shards).1,
            config,
            producer(),
            metrics.clone(),
            async {
                let _ = rx.await;
            },
        ));
        RunningRelay {
            metrics,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub async fn ended(self) -> Result<(), region_core::roles::relay::RelayError> {
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the relay did not end")
            .unwrap()
    }
}

/// A message as read back, with its headers as text.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Read {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

fn read_of(m: &OwnedMessage) -> Read {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Read {
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Reads `topic` from the start (a group of its own) until `done` says the
/// messages read so far are enough, or panics after `limit`.
pub async fn read_until(topic: &str, limit: Duration, done: impl Fn(&[Read]) -> bool) -> Vec<Read> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set(
            "group.id",
            format!("test-reader-{:08x}", rand::random::<u32>()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        if done(&seen) {
            return seen;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out reading {topic}; read so far: {seen:#?}"
        );
        if let Ok(m) =
            tokio::time::timeout(left.min(Duration::from_millis(500)), consumer.recv()).await
        {
            seen.push(read_of(&m.unwrap().detach()));
        }
    }
}

/// A reader of `topic` from its end as it was when the tail was made: for
/// the stack's own topics, which hold everything every test and bench ever
/// sent.
pub struct Tail {
    consumer: StreamConsumer,
    pub topic: String,
}

impl Tail {
    pub async fn new(topic: &str) -> Tail {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker())
            .set(
                "group.id",
                format!("test-tail-{:08x}", rand::random::<u32>()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in metadata.topics()[0].partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Offset(high))
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        Tail {
            consumer,
            topic: topic.to_string(),
        }
    }

    /// What arrived since the last call, waiting at most `wait`.
    pub async fn poll(&self, wait: Duration) -> Vec<Read> {
        let mut out = Vec::new();
        let deadline = Instant::now() + wait;
        while let Ok(m) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.consumer.recv(),
        )
        .await
        {
            out.push(read_of(&m.unwrap().detach()));
        }
        out
    }
}
