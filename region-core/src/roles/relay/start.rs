//! `region-core relay`: its flags, and how the role is assembled from the
//! stack description.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;

use super::metrics::RelayMetrics;
use super::{RelayConfig, RelayShard, drain_outboxes};
use crate::bus::{Producer, ProducerConfig, Topics};
use crate::catalog::ShardMapCache;
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
    // The shard list as the catalog has it now, and kept so: a shard added
    // to the region (or a primary's new address) reaches the drain tasks
    // through the map's version, which the catalog bumps for both.
    let map = ShardMapCache::load(catalog.clone()).await?;
    let listed = list_shards(&catalog, region).await?;
    let (shards, follow) = watch::channel(relay_shards(&listed)?);
    let map_watch = map.watch(Duration::from_secs(5));
    let follower = tokio::spawn(follow_shards(
        catalog.clone(),
        region.to_string(),
        map.subscribe(),
        listed,
        shards,
    ));
    let metrics = Arc::new(RelayMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    let mut config = RelayConfig::new(
        &args
            .events_topic
            .unwrap_or_else(|| Topics::of_region(region).events),
    );
    config.batch = args.batch.max(1);
    config.poll = args.poll.into();
    let producer =
        Producer::new(ProducerConfig::new(&start.brokers).waking(&start.entry().redis_store_url))?;
    let result = drain_outboxes(follow, config, producer, metrics, shutdown).await;
    follower.abort();
    map_watch.abort();
    if let Some(l) = listener {
        l.abort();
    }
    Ok(result?)
}

/// The region's shards as (name, primary address), as its catalog lists
/// them.
async fn list_shards(catalog: &PgPool, region: &str) -> anyhow::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT name, primary_url FROM shards WHERE region = $1 ORDER BY name")
        .bind(region)
        .fetch_all(catalog)
        .await
        .context("listing the region's shards")
}

/// The primaries of `listed` (connected lazily: a shard down at start is
/// drained once it is back).
fn relay_shards(listed: &[(String, String)]) -> anyhow::Result<Vec<RelayShard>> {
    listed
        .iter()
        .map(|(name, url)| {
            let primary = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy(url)
                .with_context(|| format!("shard {name}"))?;
            Ok(RelayShard {
                name: name.clone(),
                primary,
            })
        })
        .collect()
}

/// Lists the shards again at every change of the map's version and sends
/// the new list when it differs from `listed` (a move alone changes
/// nothing here). A failed listing is retried every 5 s.
async fn follow_shards(
    catalog: PgPool,
    region: String,
    mut versions: watch::Receiver<i64>,
    mut listed: Vec<(String, String)>,
    shards: watch::Sender<Vec<RelayShard>>,
) {
    let mut failed = false;
    loop {
        tokio::select! {
            changed = versions.changed() => if changed.is_err() {
                return;
            },
            _ = tokio::time::sleep(Duration::from_secs(5)), if failed => {}
        }
        let next = match list_shards(&catalog, &region).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "relay: listing the shards again");
                failed = true;
                continue;
            }
        };
        failed = false;
        if next == listed {
            continue;
        }
        match relay_shards(&next) {
            Ok(list) => {
                tracing::info!(shards = ?next.iter().map(|(n, _)| n).collect::<Vec<_>>(), "relay: the shard list changed");
                shards.send_replace(list);
                listed = next;
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "relay: a shard's address is not usable"
            ),
        }
    }
}
