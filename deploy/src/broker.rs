//! The Kafka-protocol broker: nisshi with SQLite storage, so that messages
//! survive a broker restart (design §7: no Apache Kafka is obtainable here,
//! and the in-memory brokers lose everything when they stop).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::process::which;

/// The topics of a region: commands in, events out, and the dead letters
/// of commands that could not be applied.
pub fn region_topics(region: &str) -> [String; 3] {
    [
        format!("{region}.commands"),
        format!("{region}.events"),
        format!("{region}.dead-letters"),
    ]
}

/// The command that runs the broker in the foreground.
pub fn command(data: &Path, port: u16) -> Result<Command> {
    // deploy/env.sh names the one deploy/install.sh built.
    let program = std::env::var_os("NISSHI_BIN")
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| which("nisshi"))
        .context(
        "nisshi (the Kafka-protocol broker) not found: install it with `deploy/install.sh base`",
    )?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let listener = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(program);
    cmd.arg("broker")
        .args([
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
        ])
        // nisshi reads the URL's path as relative to its working directory
        // (`sqlite:///abs` becomes `$PWD/abs`), so it runs in its data dir.
        .current_dir(data)
        // Retention (`retention.ms` of each topic) is enforced at each
        // maintenance sweep, every 10 minutes by default; every minute, so
        // that a topic's earliest offset follows its retention closely (the
        // janitor prunes dedup rows by it, and a test checks it moves).
        .args([
            "--storage-engine",
            "sqlite://nisshi.db?maintenance_interval=1m",
        ])
        // A lone consumer should not wait 3 s for company that never comes.
        .args(["--group-initial-rebalance-delay", "0s"]);
    Ok(cmd)
}

/// Ready when it answers a metadata request.
pub async fn probe(port: u16) -> Result<()> {
    let bootstrap = format!("127.0.0.1:{port}");
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        consumer.fetch_metadata(None, Duration::from_secs(2))?;
        anyhow::Ok(())
    })
    .await?
}

/// Creates topics through the Admin API, each with its explicit retention
/// (`region_core::bus::retention`); ones that exist are left alone.
pub async fn ensure_topics(port: u16, topics: &[String], partitions: u32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .create()
        .context("creating the admin client")?;
    let configs: Vec<_> = topics
        .iter()
        .map(|t| region_core::bus::retention::topic_config(t))
        .collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .zip(&configs)
        .map(|(t, config)| {
            config.iter().fold(
                NewTopic::new(t, partitions as i32, TopicReplication::Fixed(1)),
                |topic, (name, value)| topic.set(name, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &options)
        .await
        .context("CreateTopics")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}
