//! `region-core publisher`: flags, and how the role is assembled from the
//! stack description and the sink chosen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::invalidate::Invalidator;
use super::metrics::PublisherMetrics;
use super::republish::Republish;
use super::sink::{CloudflareKvSink, EdgeBulkSink, KvSink};
use super::{PublisherConfig, PublisherParts, run_republishing, template_version};
use crate::roles::common::{
    CloudflareKv, Common, catalog_and_router, component_url_from_state, metrics_listener,
    start_role,
};
use crate::stack::Secrets;

/// Which KV the publisher writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// The local edge Worker's signed bulk route.
    Edge,
    /// Cloudflare KV's REST bulk API (production).
    Cloudflare,
}

/// Flags of `region-core publisher`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublisherArgs {
    #[command(flatten)]
    pub common: Common,
    /// Where pages and tombstones go.
    #[arg(long, env = "CITYBOARD_KV_SINK", value_enum, default_value = "edge")]
    pub kv_sink: SinkKind,
    /// Base URL of the edge (`--kv-sink edge`); default: the `edge`
    /// component of the stack description, on loopback.
    #[arg(long, env = "CITYBOARD_EDGE_URL")]
    pub edge_url: Option<String>,
    /// Directory holding `kv-route.key`, the bulk route's signing key
    /// (`--kv-sink edge`).
    #[arg(long, env = "CITYBOARD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    #[command(flatten)]
    pub cloudflare: CloudflareKv,
    /// Shortest time between two writes of one key.
    #[arg(long, env = "CITYBOARD_KV_INTERVAL", default_value = "1s")]
    pub interval: humantime::Duration,
    /// Events topic; default `<region>.events`.
    #[arg(long)]
    pub events_topic: Option<String>,
    /// Consumer group; default `<region>.publisher`.
    #[arg(long)]
    pub group: Option<String>,
}

/// `http://127.0.0.1:{port}` of the stack's `edge` component, as the
/// supervisor wrote it into `state.json`.
pub fn edge_url_from_state(path: &Path) -> anyhow::Result<String> {
    component_url_from_state(path, "edge").context("pass --edge-url")
}

/// Assembles the publisher of `region` and runs it until `shutdown`.
pub async fn run(
    state: &Path,
    region: &str,
    args: PublisherArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let start = start_role(state, region, "publisher", &args.common)?;
    let entry = start.entry();
    let brokers = start.brokers.clone();
    let mut config = PublisherConfig::new(region);
    config.interval = args.interval.into();
    if let Some(t) = &args.events_topic {
        config.topic = t.clone();
    }
    if let Some(g) = &args.group {
        config.group = g.clone();
    }
    let metrics = Arc::new(PublisherMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    let cache = Arc::new(Invalidator::new(&entry.redis_cache_url));
    let republish = republish_plan(&entry.catalog_url, region).await;
    let result = match args.kv_sink {
        SinkKind::Edge => {
            let url = match &args.edge_url {
                Some(u) => u.clone(),
                None => edge_url_from_state(state)?,
            };
            let dir = args
                .secrets_dir
                .as_deref()
                .context("--kv-sink edge needs --secrets-dir (for kv-route.key)")?;
            let key = Secrets::read(dir)?.kv_route;
            let sink = EdgeBulkSink::new(&url, &key)
                .with_context(|| format!("the edge's bulk route at {url}"))?;
            tracing::info!(%url, "publisher writing through the edge's bulk route");
            go(config, sink, cache, metrics, brokers, republish, shutdown).await
        }
        SinkKind::Cloudflare => {
            let (account, namespace, token) = args.cloudflare.account_namespace_token()?;
            let sink =
                CloudflareKvSink::new(&args.cloudflare.cloudflare_api, account, namespace, &token)?;
            tracing::info!(url = %sink.url(), "publisher writing to Cloudflare KV");
            go(config, sink, cache, metrics, brokers, republish, shutdown).await
        }
    };
    if let Some(l) = listener {
        l.abort();
    }
    result
}

/// The cities of `region` whose pages were published with another template
/// than this build's. A catalog that cannot be read skips the
/// re-publication (logged): pages of another template are still not served
/// by the edge, only slower from the origin, until the next start.
async fn republish_plan(catalog_url: &str, region: &str) -> Option<Republish> {
    let plan = async {
        let (catalog, router) = catalog_and_router(catalog_url, region, 2).await?;
        let plan = Republish::plan(&catalog, &router, template_version(), None).await?;
        anyhow::Ok(plan)
    };
    match plan.await {
        Ok(Some(plan)) => {
            tracing::info!(
                template = plan.version(),
                cities = ?plan.cities_left(),
                "template changed: re-publishing the cities' live pages"
            );
            Some(plan)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot plan the re-publication of pages");
            None
        }
    }
}

async fn go<S: KvSink>(
    config: PublisherConfig,
    sink: S,
    cache: Arc<Invalidator>,
    metrics: Arc<PublisherMetrics>,
    brokers: String,
    republish: Option<Republish>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let parts = PublisherParts {
        sink: Arc::new(sink),
        cache,
        metrics,
        brokers,
    };
    run_republishing(config, parts, republish, shutdown).await
}
