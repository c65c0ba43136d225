//! `region-core writer`: its flags, and how the role is assembled from the
//! stack description.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::WriterMetrics;
use super::{DEAD_LETTER_DEADLINE, WriterConfig, WriterParts, apply_commands};
use crate::bus::doze::DozeConfig;
use crate::bus::notify::Notifier;
use crate::bus::{Producer, ProducerConfig};
use crate::roles::common::{Common, catalog_and_router, metrics_listener, start_role};

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
    /// How long a dead letter is tried before the writer stops waiting for
    /// it: past it, the letter is sent again in the background while its
    /// command stays unfinished, its partition paused and
    /// `cityboard_writer_dead_letter_stuck` above zero.
    #[arg(
        long,
        env = "CITYBOARD_DEAD_LETTER_DEADLINE",
        default_value_t = DEAD_LETTER_DEADLINE.into()
    )]
    pub dead_letter_deadline: humantime::Duration,
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

/// Assembles the writer of `region` and runs it until `shutdown`.
pub async fn run(
    state: &Path,
    region: &str,
    args: WriterArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let start = start_role(state, region, "writer", &args.common)?;
    let entry = start.entry();
    let (catalog, router) = catalog_and_router(&entry.catalog_url, region, 4).await?;
    let followers = router.follow_catalog(Duration::from_secs(5));
    let (ids, lease) = start.lease_ids(&catalog, "outbox sequence numbers").await?;

    let metrics = Arc::new(WriterMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    let mut config = WriterConfig::new(region);
    config.queue.batch_max = args.batch_max.max(1);
    config.queue.batch_window = args.batch_window.into();
    config.max_blocked = args.max_held;
    config.dead_letter_deadline = args.dead_letter_deadline.into();
    config.doze = args
        .common
        .doze
        .then(|| DozeConfig::new(Some(&entry.redis_store_url)));
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
        producer: Producer::new(ProducerConfig::new(&start.brokers))?,
        notifier: Arc::new(Notifier::new(&entry.redis_store_url)),
        metrics,
        brokers: start.brokers.clone(),
    };
    let result = apply_commands(config, parts, shutdown).await;
    for f in followers {
        f.abort();
    }
    if let Some(l) = listener {
        l.abort();
    }
    lease.release(&catalog).await;
    result
}
