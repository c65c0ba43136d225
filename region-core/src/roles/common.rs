//! What every role starts from: the flags they share, the stack
//! description's broker, the region's catalog and shard router, the
//! `/metrics` listener and the shutdown signal. Imports no role.

use std::fmt::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

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

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Sets a gauge.
pub fn set(gauge: &AtomicU64, n: usize) {
    gauge.store(n as u64, Ordering::Relaxed);
}

/// Name, type, help and (labels, value) series of one metric family.
pub type Family<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a AtomicU64)>);

/// Appends one family in the Prometheus text format: its `HELP` and `TYPE`
/// lines, then a line per series (labels may be empty).
pub fn write_family(out: &mut String, (family, kind, help, series): Family<'_>) {
    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
    for (labels, value) in series {
        let value = value.load(Ordering::Relaxed);
        if labels.is_empty() {
            let _ = writeln!(out, "{family} {value}");
        } else {
            let _ = writeln!(out, "{family}{{{labels}}} {value}");
        }
    }
}

/// Every pipeline metric family, as (name, type, help). Since the pipeline
/// roles first shared one `/metrics` page, each of them (writer, relay,
/// publisher, janitor) has listed all of these, the other roles' at zero,
/// and dashboards read them from any of the four; so that moving each
/// role's counters into its own room changes no page, a role renders its
/// own families and [`metrics_page`] adds the rest from this table at zero.
/// The families themselves are defined (and counted) by their roles; this
/// table only names them, and the metric-names test holds the two together.
const PIPELINE_FAMILIES: &[(&str, &str, &str)] = &[
    (
        "cityboard_janitor_expire_commands_total",
        "counter",
        "Expire commands the janitor produced.",
    ),
    (
        "cityboard_janitor_failures_total",
        "counter",
        "Janitor shard passes or sends that failed and are retried.",
    ),
    (
        "cityboard_janitor_reminders_total",
        "counter",
        "Renewal reminders, by result.",
    ),
    (
        "cityboard_janitor_sweeps_total",
        "counter",
        "Janitor sweeps finished.",
    ),
    (
        "cityboard_publisher_events_total",
        "counter",
        "Events the publisher read, and what became of those not written as such.",
    ),
    (
        "cityboard_publisher_invalidate_failures_total",
        "counter",
        "Cities whose cached pages could not be invalidated.",
    ),
    (
        "cityboard_publisher_kv_failures_total",
        "counter",
        "Bulk KV calls that failed and were retried.",
    ),
    (
        "cityboard_publisher_kv_writes_total",
        "counter",
        "KV entries sent, by what the sink did.",
    ),
    (
        "cityboard_publisher_pending_keys",
        "gauge",
        "Keys with a coalesced write waiting.",
    ),
    (
        "cityboard_relay_events_total",
        "counter",
        "Outbox rows the relay handled, by step.",
    ),
    (
        "cityboard_relay_failures_total",
        "counter",
        "Relay rounds that failed and were retried.",
    ),
    (
        "cityboard_writer_batches_total",
        "counter",
        "Apply transactions, by result.",
    ),
    (
        "cityboard_writer_commands_total",
        "counter",
        "Commands the writer finished, by result.",
    ),
    (
        "cityboard_writer_dead_letters_total",
        "counter",
        "Messages copied to the dead-letter topic.",
    ),
    (
        "cityboard_writer_notify_failures_total",
        "counter",
        "Apply notifications Redis did not take.",
    ),
    (
        "cityboard_writer_paused_partitions",
        "gauge",
        "Command partitions paused because blocked commands passed the bound; pauses_total counts each pause.",
    ),
    (
        "cityboard_writer_pauses_total",
        "counter",
        "Times a command partition was paused.",
    ),
    (
        "cityboard_writer_pending_commands",
        "gauge",
        "Commands in memory not applied yet, by state.",
    ),
    (
        "cityboard_writer_refused_total",
        "counter",
        "Commands a shard's fence refused, by what the writer did.",
    ),
];

/// Appends, at zero, each pipeline family `page` does not list yet.
fn fill_pipeline_families(page: &mut String) {
    for (family, kind, help) in PIPELINE_FAMILIES {
        if !page.contains(&format!("# TYPE {family} ")) {
            let _ = writeln!(
                page,
                "# HELP {family} {help}\n# TYPE {family} {kind}\n{family} 0"
            );
        }
    }
}

/// What a role's `/metrics` page shows: each role renders its own counters.
pub trait Exposition: Send + Sync + 'static {
    /// The exposition text.
    fn render(&self) -> String;
}

async fn metrics_page(State(m): State<Arc<dyn Exposition>>) -> Response {
    let mut page = m.render();
    fill_pipeline_families(&mut page);
    let mut res = page.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
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
