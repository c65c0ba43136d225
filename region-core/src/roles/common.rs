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

/// What a role's `/metrics` page shows: each role renders its own counters.
pub trait Exposition: Send + Sync + 'static {
    /// The exposition text.
    fn render(&self) -> String;
}

async fn metrics_page(State(m): State<Arc<dyn Exposition>>) -> Response {
    let mut res = m.render().into_response();
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
