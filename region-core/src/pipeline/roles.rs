//! `region-core writer` and `region-core relay`: flags, and how each role
//! is assembled from the stack description.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::catalog::NodeLease;
use crate::clock::SystemClock;
use crate::db::{ReadConfig, Router};
use crate::pipeline::metrics::PipelineMetrics;
use crate::pipeline::notify::Notifier;
use crate::pipeline::relay::{RelayConfig, RelayShard};
use crate::pipeline::writer::{WriterConfig, WriterParts};
use crate::pipeline::{Producer, ProducerConfig, Topics, broker_from_state};
use crate::stack::StackFile;

/// Flags of both roles.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Broker `host:port`; default: the `broker` of the stack description.
    #[arg(long, env = "CITYBOARD_BROKER")]
    pub broker: Option<String>,
    /// Where `/metrics` and `/healthz` listen (the topology reserves
    /// region base + 4 .. + 9 for the roles' metrics); none: not served.
    #[arg(long, env = "CITYBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Flags of `region-core writer`.
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    #[command(flatten)]
    pub common: Common,
    /// Most commands in one apply transaction.
    #[arg(long, env = "CITYBOARD_BATCH_MAX", default_value_t = 500)]
    pub batch_max: usize,
    /// How long a shard's first waiting command waits for company.
    #[arg(long, env = "CITYBOARD_BATCH_WINDOW", default_value = "20ms")]
    pub batch_window: humantime::Duration,
    /// Commands waiting on frozen cities or stopped shards past which their
    /// partitions pause.
    #[arg(long, env = "CITYBOARD_MAX_HELD", default_value_t = 10_000)]
    pub max_held: usize,
    /// Commands topic; default `<region>.commands`.
    #[arg(long)]
    pub commands_topic: Option<String>,
    /// Dead-letter topic; default `<region>.dead-letters`.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Consumer group; default `<region>.writer`.
    #[arg(long)]
    pub group: Option<String>,
}

/// Flags of `region-core relay`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Outbox rows per round.
    #[arg(long, env = "CITYBOARD_RELAY_BATCH", default_value_t = 500)]
    pub batch: i64,
    /// Poll period when no NOTIFY arrives.
    #[arg(long, env = "CITYBOARD_RELAY_POLL", default_value = "1s")]
    pub poll: humantime::Duration,
    /// Events topic; default `<region>.events`.
    #[arg(long)]
    pub events_topic: Option<String>,
}

/// The region's catalog pool, checked for a schema this build knows.
pub(crate) async fn catalog(
    url: &str,
    region: &str,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let catalog = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .with_context(|| format!("connecting to the catalog of {region}"))?;
    crate::migrate::check_catalog(&catalog)
        .await
        .with_context(|| format!("catalog of {region}"))?;
    Ok(catalog)
}

/// The region's catalog (checked as `catalog` does) and a router over its
/// shards, with at most `connections` connections to each database: what a
/// role that reads shards starts from.
pub(crate) async fn catalog_and_router(
    url: &str,
    region: &str,
    connections: u32,
) -> anyhow::Result<(PgPool, Router)> {
    let catalog = catalog(url, region, connections).await?;
    let read = ReadConfig {
        max_connections: connections,
        ..ReadConfig::default()
    };
    let router = Router::connect(catalog.clone(), region, read).await?;
    Ok((catalog, router))
}

/// `--broker`, else the broker the stack description names.
pub(crate) fn broker(state: &Path, common: &Common) -> anyhow::Result<String> {
    match &common.broker {
        Some(b) => Ok(b.clone()),
        None => broker_from_state(state),
    }
}

/// Assembles the writer of `region` and runs it until `shutdown`.
pub async fn writer(
    state: &Path,
    region: &str,
    args: WriterArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stack = StackFile::read(state)?;
    let (number, entry) = stack.region(region)?;
    let brokers = broker(state, &args.common)?;
    let (catalog, router) = catalog_and_router(&entry.catalog_url, region, 4).await?;
    let map_watch = router.map.watch(Duration::from_secs(5));
    let (lease, ids, renew) =
        NodeLease::ids_for(&catalog, "writer", region, number, Arc::new(SystemClock))
            .await
            .context("leasing a node number for outbox sequence numbers")?;

    let metrics = Arc::new(PipelineMetrics::default());
    let listener = match args.common.metrics_listen {
        Some(addr) => Some(crate::pipeline::metrics::serve(addr, metrics.clone()).await?),
        None => None,
    };
    let mut config = WriterConfig::new(region);
    config.queue.batch_max = args.batch_max.max(1);
    config.queue.batch_window = args.batch_window.into();
    config.max_blocked = args.max_held;
    if let Some(t) = args.commands_topic {
        config.topics.commands = t;
    }
    if let Some(t) = args.dead_letter_topic {
        config.topics.dead_letters = t;
    }
    if let Some(g) = args.group {
        config.group = g;
    }
    let parts = WriterParts {
        router,
        catalog: catalog.clone(),
        ids,
        producer: Producer::new(ProducerConfig::new(&brokers))?,
        notifier: Arc::new(Notifier::new(&entry.redis_store_url)),
        metrics,
        brokers,
    };
    let result = crate::pipeline::writer::run(config, parts, shutdown).await;
    map_watch.abort();
    renew.abort();
    if let Some(l) = listener {
        l.abort();
    }
    if let Err(e) = lease.release(&catalog).await {
        tracing::warn!(error = %e, "releasing the node lease");
    }
    result
}

/// Assembles the relay of `region` (every shard of its catalog) and runs it
/// until `shutdown`.
pub async fn relay(
    state: &Path,
    region: &str,
    args: RelayArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let stack = StackFile::read(state)?;
    let (_, entry) = stack.region(region)?;
    let brokers = broker(state, &args.common)?;
    let catalog = catalog(&entry.catalog_url, region, 4).await?;
    let shards = relay_shards(&catalog, region).await?;
    let metrics = Arc::new(PipelineMetrics::default());
    let listener = match args.common.metrics_listen {
        Some(addr) => Some(crate::pipeline::metrics::serve(addr, metrics.clone()).await?),
        None => None,
    };
    let mut config = RelayConfig::new(
        &args
            .events_topic
            .unwrap_or_else(|| Topics::of_region(region).events),
    );
    config.batch = args.batch.max(1);
    config.poll = args.poll.into();
    let producer = Producer::new(ProducerConfig::new(&brokers))?;
    let result = crate::pipeline::relay::run(shards, config, producer, metrics, shutdown).await;
    if let Some(l) = listener {
        l.abort();
    }
    Ok(result?)
}

/// The primaries of the region's shards, as its catalog lists them
/// (connected lazily: a shard down at start is drained once it is back).
pub async fn relay_shards(catalog: &PgPool, region: &str) -> anyhow::Result<Vec<RelayShard>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, primary_url FROM shards WHERE region = $1 ORDER BY name")
            .bind(region)
            .fetch_all(catalog)
            .await
            .context("listing the region's shards")?;
    rows.into_iter()
        .map(|(name, url)| {
            let primary = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy(&url)
                .with_context(|| format!("shard {name}"))?;
            Ok(RelayShard { name, primary })
        })
        .collect()
}
