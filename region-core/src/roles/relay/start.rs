//! `region-core relay`: its flags, and how the role is assembled from the
//! stack description.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use super::metrics::RelayMetrics;
use super::{RelayConfig, RelayShard, drain_outboxes};
use crate::bus::{Producer, ProducerConfig, Topics};
use crate::roles::common::{Common, catalog, metrics_listener, start_role};

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

/// Assembles the relay of `region` (every shard of its catalog) and runs it
/// until `shutdown`.
pub async fn run(
    state: &Path,
    region: &str,
    args: RelayArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let start = start_role(state, region, "relay", &args.common)?;
    let catalog = catalog(&start.entry().catalog_url, region, 4).await?;
    let shards = relay_shards(&catalog, region).await?;
    let metrics = Arc::new(RelayMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    let mut config = RelayConfig::new(
        &args
            .events_topic
            .unwrap_or_else(|| Topics::of_region(region).events),
    );
    config.batch = args.batch.max(1);
    config.poll = args.poll.into();
    let producer = Producer::new(ProducerConfig::new(&start.brokers))?;
    let result = drain_outboxes(shards, config, producer, metrics, shutdown).await;
    if let Some(l) = listener {
        l.abort();
    }
    Ok(result?)
}

/// The primaries of the region's shards, as its catalog lists them
/// (connected lazily: a shard down at start is drained once it is back).
async fn relay_shards(catalog: &PgPool, region: &str) -> anyhow::Result<Vec<RelayShard>> {
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
