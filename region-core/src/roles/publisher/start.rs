//! `region-core publisher`: flags, and how the role is assembled from the
//! stack description and the sink chosen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cityboard_protocol::kv::BulkWrite;

use super::invalidate::Invalidator;
use super::marks::Marks;
use super::metrics::PublisherMetrics;
use super::republish::Republish;
use super::sink::{CloudflareKvSink, EdgeBulkSink, KvSink, PutReport, SinkError};
use super::{PublisherConfig, PublisherParts, run_republishing, template_version};
use crate::bus::doze::DozeConfig;
use crate::bus::{Producer, ProducerConfig};
use crate::db::Router;
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
    /// Dead-letter topic; default `<region>.dead-letters`.
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Where the api keeps photos (the publisher removes a deleted post's);
    /// default: `photos/` beside the stack description, as the api's.
    #[arg(long, env = "CITYBOARD_PHOTOS_URL")]
    pub photos_url: Option<String>,
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
    config.doze = args
        .common
        .doze
        .then(|| DozeConfig::new(Some(&entry.redis_store_url)));
    if let Some(t) = &args.dead_letter_topic {
        config.dead_letters = t.clone();
    }
    let metrics = Arc::new(PublisherMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    // The catalog is needed for every write (the KV marks) and the shard
    // map for every event (which cities are served), kept fresh by NOTIFY.
    let (catalog, router) = catalog_and_router(&entry.catalog_url, region, 2).await?;
    let followers = router.follow_catalog(std::time::Duration::from_secs(5));
    let republish = republish_plan(&catalog, &router).await;
    let sink = match args.kv_sink {
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
            Sink::Edge(sink)
        }
        SinkKind::Cloudflare => {
            let (account, namespace, token) = args.cloudflare.account_namespace_token()?;
            let sink =
                CloudflareKvSink::new(&args.cloudflare.cloudflare_api, account, namespace, &token)?;
            tracing::info!(url = %sink.url(), "publisher writing to Cloudflare KV");
            Sink::Cloudflare(sink)
        }
    };
    let photos_url = args
        .photos_url
        .clone()
        .unwrap_or_else(|| crate::roles::common::beside_state(state, "photos"));
    let parts = PublisherParts {
        photos: Some(crate::media::Photos::open(&photos_url)?),
        sink: Arc::new(sink),
        cache: Arc::new(Invalidator::new(&entry.redis_cache_url)),
        metrics,
        producer: Producer::new(ProducerConfig::new(&brokers))?,
        brokers,
        router,
        marks: Marks::new(catalog),
    };
    let result = run_republishing(config, parts, republish, shutdown).await;
    for f in followers {
        f.abort();
    }
    if let Some(l) = listener {
        l.abort();
    }
    result
}

/// The sink `--kv-sink` chose.
enum Sink {
    Edge(EdgeBulkSink),
    Cloudflare(CloudflareKvSink),
}

impl KvSink for Sink {
    async fn put(&self, writes: &[BulkWrite]) -> Result<PutReport, SinkError> {
        match self {
            Sink::Edge(s) => s.put(writes).await,
            Sink::Cloudflare(s) => s.put(writes).await,
        }
    }

    fn max_bytes(&self) -> usize {
        match self {
            Sink::Edge(s) => s.max_bytes(),
            Sink::Cloudflare(s) => s.max_bytes(),
        }
    }
}

/// The cities of the router's region whose pages were published with
/// another template than this build's. A catalog that cannot be read skips
/// the re-publication (logged): pages of another template are still not
/// served by the edge, only slower from the origin, until the next start.
async fn republish_plan(catalog: &sqlx::PgPool, router: &Router) -> Option<Republish> {
    match Republish::plan(catalog, router, template_version(), None).await {
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
