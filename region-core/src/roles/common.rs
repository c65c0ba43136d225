//! What every role starts from: the flags they share, the stack
//! description's broker, the region's catalog and shard router, the
//! `/metrics` listener and the shutdown signal. Imports no role.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};

use crate::db::{ReadConfig, Router};

/// Flags every long-running role shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Broker `host:port`; default: the `broker` of the stack description.
    #[arg(long, env = "CITYBOARD_BROKER")]
    pub broker: Option<String>,
    /// Where `/metrics` and `/healthz` listen (the topology reserves
    /// region base + 4 .. + 9 for the roles' metrics); none: not served.
    #[arg(long, env = "CITYBOARD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Whether an idle consumer (writer, publisher) pauses its fetches
    /// until a producer's wake or its next probe (`bus::doze`). It saves
    /// the idle broker nine tenths of its CPU, and sparse writes were no
    /// slower with it in the release bench (`cityboard bench idle`,
    /// BENCHMARKS.md). Still off by default: with it on, the CI rehearsal's
    /// schemathesis run met a write whose outcome took more than 3.5 s
    /// (its 202, then a 404 for the read that waited for it), not yet
    /// explained.
    #[arg(long, env = "CITYBOARD_DOZE", default_value_t = false, action = clap::ArgAction::Set)]
    pub doze: bool,
}

/// The region's catalog pool, checked for a schema this build knows.
pub async fn catalog(url: &str, region: &str, max_connections: u32) -> anyhow::Result<PgPool> {
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
pub async fn catalog_and_router(
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
pub fn broker(state: &Path, common: &Common) -> anyhow::Result<String> {
    match &common.broker {
        Some(b) => Ok(b.clone()),
        None => broker_from_state(state),
    }
}

/// The broker address (`host:port`) the supervisor wrote into `state.json`.
/// Read here rather than through `stack::StackFile` so that only the roles
/// that talk to the broker need the field.
pub fn broker_from_state(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the stack description {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stack description", path.display()))?;
    value
        .get("broker")
        .and_then(|b| b.as_str())
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{} names no broker", path.display()))
}

/// The directory `name` beside the stack description `state` (the
/// archive's and the photos' default places).
pub fn beside_state(state: &Path, name: &str) -> String {
    state
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// `http://127.0.0.1:{port}` of the stack's component `name` (`edge`,
/// `edge-kv`), as the supervisor wrote it into `state.json` (every planned
/// component is listed from the start, before it runs).
pub fn component_url_from_state(path: &Path, name: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the stack description {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a stack description", path.display()))?;
    value
        .get("components")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
        .and_then(|c| c.get("port"))
        .and_then(|p| p.as_u64())
        .map(|port| format!("http://127.0.0.1:{port}"))
        .with_context(|| format!("{} names no {name} component", path.display()))
}

/// An HTTP client for KV's APIs (the publisher's sinks, the janitor's
/// reads): rustls with the ring provider (installed once per process;
/// reqwest would otherwise want aws-lc), `timeout` per call.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3))
        .build()?)
}

/// Base of Cloudflare's REST API.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";

/// The environment variable holding the Cloudflare API token.
pub const CLOUDFLARE_TOKEN_ENV: &str = "CLOUDFLARE_API_TOKEN";

/// The Cloudflare KV namespace holding the pages (`--kv-sink cloudflare`):
/// the publisher writes it, the janitor reads it.
#[derive(Debug, Clone, clap::Args)]
pub struct CloudflareKv {
    /// Cloudflare account id (`--kv-sink cloudflare`). The API token is
    /// read from `CLOUDFLARE_API_TOKEN` only, never from a flag, so that it
    /// does not show in process listings.
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID")]
    pub cloudflare_account: Option<String>,
    /// Id of the KV namespace holding the pages (`--kv-sink cloudflare`).
    #[arg(long, env = "CITYBOARD_KV_NAMESPACE_ID")]
    pub cloudflare_namespace: Option<String>,
    /// Base of Cloudflare's REST API (a proxy, or a test double).
    #[arg(long, env = "CLOUDFLARE_API_BASE", default_value = CLOUDFLARE_API)]
    pub cloudflare_api: String,
}

impl CloudflareKv {
    /// Account, namespace and the API token (from [`CLOUDFLARE_TOKEN_ENV`]);
    /// an error names what is missing.
    pub fn account_namespace_token(&self) -> anyhow::Result<(&str, &str, String)> {
        let account = self
            .cloudflare_account
            .as_deref()
            .context("--kv-sink cloudflare needs --cloudflare-account")?;
        let namespace = self
            .cloudflare_namespace
            .as_deref()
            .context("--kv-sink cloudflare needs --cloudflare-namespace")?;
        let token = std::env::var(CLOUDFLARE_TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .with_context(|| format!("--kv-sink cloudflare needs {CLOUDFLARE_TOKEN_ENV}"))?;
        Ok((account, namespace, token))
    }
}

/// Cloudflare's envelope around every answer of its REST API, `result`
/// the route's own.
#[derive(Debug, serde::Deserialize)]
pub struct CloudflareEnvelope<T> {
    pub success: bool,
    #[serde(default)]
    pub errors: Vec<serde_json::Value>,
    #[serde(default = "none")]
    pub result: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// `{api}/accounts/{account}/storage/kv/namespaces/{namespace}/{rest...}`:
/// a route of Cloudflare's KV REST API.
pub fn cloudflare_kv_url(
    api: &str,
    account: &str,
    namespace: &str,
    rest: &[&str],
) -> anyhow::Result<reqwest::Url> {
    let mut url: reqwest::Url = api
        .parse()
        .with_context(|| format!("Cloudflare API {api}"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{api} cannot be a base URL"))?
        .pop_if_empty()
        .extend([
            "accounts",
            account,
            "storage",
            "kv",
            "namespaces",
            namespace,
        ])
        .extend(rest);
    Ok(url)
}

/// Adds `n` to a counter.
pub fn add(counter: &Counter, n: usize) {
    counter.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Sets a gauge.
pub fn set(gauge: &Gauge, n: usize) {
    gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// The content type of every `/metrics` page: the OpenMetrics text that
/// `prometheus_client::encoding::text::encode` writes (Prometheus scrapes it
/// natively and reads the same `…_total` series as from its classic format).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One series of a family with one label whose values are fixed.
type Fixed = [(&'static str, &'static str); 1];

/// Every pipeline metric family, as (name, type, help); a counter is named
/// without its `_total`, which the encoder adds to its samples. Since the
/// pipeline roles first shared one `/metrics` page, each of them (writer,
/// relay, publisher, janitor) has listed all of these, the other roles' at
/// zero, and dashboards read them from any of the four; so that giving each
/// role its own registry changes no page, [`PipelineRegistry::finish`]
/// registers a zero-valued stand-in for each family the role does not count
/// itself. The families themselves are defined (and counted) by their roles,
/// which import no other role; this table only names them, registering a
/// family that is not here (or with another type or help) is caught in debug
/// builds, and the metric-names test holds the pages to the recorded list.
/// Help texts without their final period, which the registry adds.
const PIPELINE_FAMILIES: &[(&str, MetricType, &str)] = &[
    (
        "cityboard_janitor_expire_commands",
        MetricType::Counter,
        "Expire commands the janitor produced",
    ),
    (
        "cityboard_janitor_expired_unremoved",
        MetricType::Gauge,
        "Live posts more than two sweep periods past their expiry, at the last sweep: expiries the pipeline has not applied",
    ),
    (
        "cityboard_janitor_failures",
        MetricType::Counter,
        "Janitor shard passes or sends that failed and are retried",
    ),
    (
        "cityboard_janitor_mails",
        MetricType::Counter,
        "Mails the janitor handed to its transport, by result",
    ),
    (
        "cityboard_janitor_prune_batches",
        MetricType::Counter,
        "Bounded delete batches the janitor's pruning ran",
    ),
    (
        "cityboard_janitor_pruned",
        MetricType::Counter,
        "Rows the janitor pruned, by table",
    ),
    (
        "cityboard_janitor_reconcile_checked",
        MetricType::Counter,
        "Posts the janitor's reconciler compared with KV",
    ),
    (
        "cityboard_janitor_reconciled",
        MetricType::Counter,
        "KV entries that differed from the shard and were republished, by what was republished",
    ),
    (
        "cityboard_janitor_reminders",
        MetricType::Counter,
        "Renewal reminders, by result",
    ),
    (
        "cityboard_janitor_sweeps",
        MetricType::Counter,
        "Janitor sweeps finished",
    ),
    (
        "cityboard_publisher_dead_letter_send_failures",
        MetricType::Counter,
        "Dead-letter sends the broker did not acknowledge (each is tried again)",
    ),
    (
        "cityboard_publisher_dead_letter_stuck",
        MetricType::Gauge,
        "Dead letters not sent within the deadline: their events wait uncommitted, their partitions paused, until the broker takes them",
    ),
    (
        "cityboard_publisher_dead_letters",
        MetricType::Counter,
        "Events copied to the dead-letter topic",
    ),
    (
        "cityboard_publisher_events",
        MetricType::Counter,
        "Events the publisher read, and what became of those not written as such",
    ),
    (
        "cityboard_publisher_invalidate_failures",
        MetricType::Counter,
        "Cities whose cached pages could not be invalidated",
    ),
    (
        "cityboard_publisher_kv_failures",
        MetricType::Counter,
        "Bulk KV calls that failed and were retried",
    ),
    (
        "cityboard_publisher_kv_writes",
        MetricType::Counter,
        "KV entries sent, by what the sink did",
    ),
    (
        "cityboard_publisher_mark_failures",
        MetricType::Counter,
        "Claims of durable KV marks that failed and were retried",
    ),
    (
        "cityboard_publisher_pending_keys",
        MetricType::Gauge,
        "Keys with a coalesced write waiting",
    ),
    (
        "cityboard_relay_events",
        MetricType::Counter,
        "Outbox rows the relay handled, by step",
    ),
    (
        "cityboard_relay_failures",
        MetricType::Counter,
        "Relay rounds that failed and were retried",
    ),
    (
        "cityboard_writer_batches",
        MetricType::Counter,
        "Apply transactions, by result",
    ),
    (
        "cityboard_writer_commands",
        MetricType::Counter,
        "Commands the writer finished, by result",
    ),
    (
        "cityboard_writer_dead_letter_send_failures",
        MetricType::Counter,
        "Dead-letter sends the broker did not acknowledge (each is tried again)",
    ),
    (
        "cityboard_writer_dead_letter_stuck",
        MetricType::Gauge,
        "Dead letters not sent within the deadline: their commands wait unfinished, their partitions paused, until the broker takes them",
    ),
    (
        "cityboard_writer_dead_letters",
        MetricType::Counter,
        "Messages copied to the dead-letter topic",
    ),
    (
        "cityboard_writer_dozing",
        MetricType::Gauge,
        "1 while the idle commands consumer has its fetches paused until a wake",
    ),
    (
        "cityboard_writer_hides",
        MetricType::Counter,
        "Posts hidden because enough distinct readers reported them",
    ),
    (
        "cityboard_writer_notify_failures",
        MetricType::Counter,
        "Apply notifications Redis did not take",
    ),
    (
        "cityboard_writer_paused_partitions",
        MetricType::Gauge,
        "Command partitions paused because blocked commands passed the bound; pauses_total counts each pause",
    ),
    (
        "cityboard_writer_pauses",
        MetricType::Counter,
        "Times a command partition was paused",
    ),
    (
        "cityboard_writer_pending_commands",
        MetricType::Gauge,
        "Commands in memory not applied yet, by state",
    ),
    (
        "cityboard_writer_refused",
        MetricType::Counter,
        "Commands a shard's fence refused, by what the writer did",
    ),
];

/// Where a pipeline role registers what it counts: each method registers a
/// family and hands back its series, which the role keeps as named fields
/// (a series shares its atomic with the registered family, so counting on
/// the field is counting on the page). A family with fixed label values has
/// every series created at once, so a scraper sees each at zero from start.
#[derive(Debug, Default)]
pub struct PipelineRegistry {
    registry: Registry,
    /// The families registered so far.
    own: Vec<&'static str>,
}

impl PipelineRegistry {
    /// A counter without labels; `name` without `_total`, `help` without
    /// its final period.
    pub fn counter(&mut self, name: &'static str, help: &str) -> Counter {
        self.single(name, help)
    }

    /// A counter family with one label and the given values: their series,
    /// in the order of `values`.
    pub fn counters<const N: usize>(
        &mut self,
        name: &'static str,
        help: &str,
        label: &'static str,
        values: [&'static str; N],
    ) -> [Counter; N] {
        self.labelled(name, help, label, values)
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &'static str, help: &str) -> Gauge {
        self.single(name, help)
    }

    /// A gauge family with one label and the given values.
    pub fn gauges<const N: usize>(
        &mut self,
        name: &'static str,
        help: &str,
        label: &'static str,
        values: [&'static str; N],
    ) -> [Gauge; N] {
        self.labelled(name, help, label, values)
    }

    /// One metric without labels, of whichever kind `M` is.
    fn single<M>(&mut self, name: &'static str, help: &str) -> M
    where
        M: Metric + TypedMetric + Default + Clone,
    {
        self.note(name, M::TYPE, help);
        let metric = M::default();
        self.registry.register(name, help, metric.clone());
        metric
    }

    /// A family of `M` with one label and the given values: their series,
    /// in the order of `values`.
    fn labelled<M, const N: usize>(
        &mut self,
        name: &'static str,
        help: &str,
        label: &'static str,
        values: [&'static str; N],
    ) -> [M; N]
    where
        M: Metric + TypedMetric + Default + Clone,
        Family<Fixed, M>: Metric,
    {
        self.note(name, M::TYPE, help);
        let family = Family::<Fixed, M>::default();
        let series = values.map(|v| family.get_or_create(&[(label, v)]).clone());
        self.registry.register(name, help, family);
        series
    }

    fn note(&mut self, name: &'static str, kind: MetricType, help: &str) {
        debug_assert!(
            PIPELINE_FAMILIES.contains(&(name, kind, help)),
            "{name} ({kind:?}, {help:?}) is not in roles::common's PIPELINE_FAMILIES as such"
        );
        self.own.push(name);
    }

    /// The role's registry, with a zero-valued stand-in (one series without
    /// labels, as the shared page showed) for every pipeline family the role
    /// did not register.
    pub fn finish(mut self) -> Registry {
        for &(name, kind, help) in PIPELINE_FAMILIES {
            if self.own.contains(&name) {
                continue;
            }
            match kind {
                MetricType::Gauge => self.registry.register(name, help, Gauge::<i64>::default()),
                _ => self
                    .registry
                    .register(name, help, Counter::<u64>::default()),
            }
        }
        self.registry
    }
}

/// What a role's `/metrics` page shows: the registry the role counts in.
pub trait Exposition: Send + Sync + 'static {
    /// The role's registry (for a pipeline role, from
    /// [`PipelineRegistry::finish`]).
    fn registry(&self) -> &Registry;
}

/// A registry in the OpenMetrics text format, with its `# EOF`.
pub fn openmetrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; a metric that failed to encode
    // would leave the page short, which the scraper reports.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "encoding /metrics");
    }
    text
}

/// An exposition as the `/metrics` response, with its content type.
pub fn openmetrics_response(text: String) -> Response {
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    res
}

async fn metrics_page(State(m): State<Arc<dyn Exposition>>) -> Response {
    openmetrics_response(openmetrics_text(m.registry()))
}

/// The families `role` served when they were recorded in
/// `tests/fixtures/metric-names.txt` (the stack test's list), as `name type`
/// with a counter's name without `_total`: what the unit tests of each
/// page compare with [`served_families`].
#[cfg(test)]
pub(crate) fn recorded_families(role: &str) -> std::collections::BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/metric-names.txt"
    );
    let text = std::fs::read_to_string(path).expect("the recorded metric names");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(role)?.strip_prefix(' '))
        .map(family_without_total)
        .collect()
}

/// The families a page serves, from its `# TYPE` lines, as
/// [`recorded_families`] gives them.
#[cfg(test)]
pub(crate) fn served_families(page: &str) -> std::collections::BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(family_without_total)
        .collect()
}

#[cfg(test)]
fn family_without_total(line: &str) -> String {
    match line.split_once(' ') {
        Some((name, "counter")) => {
            format!("{} counter", name.strip_suffix("_total").unwrap_or(name))
        }
        _ => line.to_string(),
    }
}

/// Serves `/metrics` and `/healthz` on `addr` until the task is aborted.
/// Binds before returning, so a port already taken fails the role at start.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<dyn Exposition>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics_page))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics listener on {addr}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}

/// `serve_metrics` on `--metrics-listen`, when given.
pub async fn metrics_listener(
    common: &Common,
    metrics: Arc<dyn Exposition>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    match common.metrics_listen {
        Some(addr) => Ok(Some(serve_metrics(addr, metrics).await?)),
        None => Ok(None),
    }
}

/// SIGTERM (the supervisor) or Ctrl-C: stop accepting, finish what is in
/// flight, exit 0.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

// Start-up wiring of the pipeline roles (writer, relay, publisher,
// janitor). Kept apart from the metrics above, and with full paths rather
// than new imports at the top of the file.

/// What every pipeline role reads first, from [`start_role`]: the stack
/// description, its region's number, the broker, and its crash points
/// (armed for as long as this is kept: the life of the role).
pub struct RoleStart {
    /// The stack description the supervisor wrote.
    pub stack: crate::stack::StackFile,
    /// The region's number in ids (its place in the stack description).
    pub number: u16,
    /// The broker, `host:port`.
    pub brokers: String,
    role: &'static str,
    region: String,
    _failpoints: crate::bus::failpoint::RoleFailpoints,
}

/// The start of every pipeline role: arms `role`'s crash points of
/// `region` (by `FAILPOINTS` or the control directory), reads the stack
/// description at `state`, finds the region in it and the broker (see
/// [`broker`]).
///
/// Each role's `run(state, region, args, shutdown)` (main.rs calls them
/// alike) opens with this call, then does its own wiring: `duplicates`
/// still pairs those first seven lines of the roles' start.rs by shape;
/// they are the shared signature and this one call, nothing to merge.
pub fn start_role(
    state: &Path,
    region: &str,
    role: &'static str,
    common: &Common,
) -> anyhow::Result<RoleStart> {
    let failpoints = crate::bus::failpoint::setup_role(region, role);
    let stack = crate::stack::StackFile::read(state)?;
    let (number, _) = stack.region(region)?;
    let brokers = broker(state, common)?;
    Ok(RoleStart {
        stack,
        number,
        brokers,
        role,
        region: region.to_string(),
        _failpoints: failpoints,
    })
}

impl RoleStart {
    /// The region's entry in the stack description.
    pub fn entry(&self) -> &crate::stack::RegionEntry {
        &self.stack.regions[usize::from(self.number)]
    }

    /// Leases a node number for the role's ids (see
    /// [`crate::catalog::NodeLease::ids_for`]) on the system clock, as
    /// every role does: ids need a clock that moves on its own. `purpose`
    /// says what the ids are for, in the error.
    pub async fn lease_ids(
        &self,
        catalog: &PgPool,
        purpose: &str,
    ) -> anyhow::Result<(crate::model::IdGenerator, LeasedIds)> {
        let (lease, ids, renew) = crate::catalog::NodeLease::ids_for(
            catalog,
            self.role,
            &self.region,
            self.number,
            Arc::new(crate::clock::SystemClock),
        )
        .await
        .with_context(|| format!("leasing a node number for {purpose}"))?;
        Ok((ids, LeasedIds { lease, renew }))
    }
}

/// A role's node lease, renewed in the background until [`release`d].
///
/// [`release`d]: LeasedIds::release
pub struct LeasedIds {
    lease: crate::catalog::NodeLease,
    renew: tokio::task::JoinHandle<()>,
}

impl LeasedIds {
    /// On a clean stop: stops renewing and frees the node number (a
    /// failure is logged; the lease then expires on its own).
    pub async fn release(self, catalog: &PgPool) {
        self.renew.abort();
        if let Err(e) = self.lease.release(catalog).await {
            tracing::warn!(error = %e, "releasing the node lease");
        }
    }
}
