//! `cityboard edge-kv`: the KV namespace behind the local edge.
//!
//! Bare workerd has no KV store of its own: a `kvNamespace` binding sends
//! each `get`/`put`/`delete`/`list` of the Worker as an HTTP request to the
//! service it names (design §7). This is that service, one per stack on
//! `port_base + 3`, durable under the stack's data directory, so that pages
//! the publisher wrote are still there after a restart and the Worker runs
//! against the same semantics (metadata, expirations, list pages, limits)
//! it meets on Cloudflare. The protocol is described in [`routes`].

pub mod routes;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::serve::ListenerExt;
use tokio::signal::unix::{SignalKind, signal};

pub use routes::{METADATA_HEADER, Service};
pub use store::{Entry, Store};

use crate::http;

/// How often expired entries are deleted from disk (reads never see them
/// in between: expiration is checked on every read).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The options of `cityboard edge-kv`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address to listen on (loopback: the service has no authentication,
    /// as a KV binding's backend has none).
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// Directory holding the namespace, one file per key.
    #[arg(long)]
    pub dir: PathBuf,
    /// Shortest expiration a put may ask for, in seconds from now.
    /// Cloudflare KV's is 60; keep it, so that what works here works there.
    #[arg(long, default_value_t = 60)]
    pub min_ttl: i64,
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Serves the namespace until SIGTERM or SIGINT.
pub async fn serve(options: Options) -> Result<()> {
    let store = Store::open(&options.dir, unix_now())?;
    let entries = store.len();
    let service = Arc::new(Service {
        store,
        min_ttl: options.min_ttl,
        now: Arc::new(unix_now),
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    println!(
        "edge-kv: listening on {} with {entries} entries from {}",
        options.listen,
        options.dir.display()
    );
    let sweeper = {
        let service = service.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                let service = service.clone();
                let swept =
                    tokio::task::spawn_blocking(move || service.store.sweep(unix_now())).await;
                if let Ok(Err(e)) = swept {
                    eprintln!("edge-kv: sweeping expired entries: {e:#}");
                }
            }
        })
    };
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // No Nagle: workerd waits for each KV answer before it answers its
    // visitor, and a response written as head then body would otherwise sit
    // out a delayed ACK (40 ms) on every keep-alive request.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, routes::router(service))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
        .await
        .context("serving")?;
    sweeper.abort();
    println!("edge-kv: stopped");
    Ok(())
}

/// The supervised command: this same `cityboard` binary.
pub fn command(dir: &Path, port: u16) -> Result<Command> {
    let mut cmd = Command::new(own_binary()?);
    cmd.arg("edge-kv")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--dir")
        .arg(dir);
    Ok(cmd)
}

/// The `cityboard` binary this process runs. A supervisor that outlived a
/// rebuild sees its old file as `PATH (deleted)` (Linux): the new build at
/// the same path is the one to start, as for every sibling binary.
fn own_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the cityboard binary")?;
    if !exe.is_file()
        && let Some(path) = exe.to_str().and_then(|s| s.strip_suffix(" (deleted)"))
    {
        return Ok(PathBuf::from(path));
    }
    Ok(exe)
}

/// Ready when a one-key list answers 200 (every path is a key, so the
/// list is the one request with no side effect and no key of its own).
pub async fn probe(port: u16) -> Result<()> {
    let status = crate::region_api::http_get_status(port, "/?key_count_limit=1").await?;
    if status != 200 {
        bail!("KV list answered {status}");
    }
    Ok(())
}

/// A client of the service, for the orchestrator and the tests (the
/// Worker reaches it through its binding instead).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The service's port on 127.0.0.1.
    pub port: u16,
}

impl Client {
    /// `put(key, value, {metadata, expirationTtl})`.
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        metadata: Option<&serde_json::Value>,
        expiration_ttl: Option<u64>,
    ) -> Result<()> {
        let mut path = format!("/{}?urlencoded=true", encode_key(key));
        if let Some(ttl) = expiration_ttl {
            path.push_str(&format!("&expiration_ttl={ttl}"));
        }
        let metadata = metadata.map(|m| m.to_string());
        let mut headers = Vec::new();
        if let Some(m) = &metadata {
            headers.push((METADATA_HEADER, m.as_str()));
        }
        let response = http::request(self.port, "PUT", &path, &headers, value).await?;
        if response.status != 200 {
            bail!(
                "KV put {key}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(())
    }

    /// `getWithMetadata(key)`: `None` when there is no such live key.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<serde_json::Value>)>> {
        let path = format!("/{}?urlencoded=true", encode_key(key));
        let response = http::request(self.port, "GET", &path, &[], b"").await?;
        match response.status {
            404 => Ok(None),
            200 => {
                let metadata = response
                    .header(METADATA_HEADER)
                    .map(serde_json::from_str)
                    .transpose()
                    .context("metadata is not JSON")?;
                Ok(Some((response.body, metadata)))
            }
            other => bail!(
                "KV get {key}: {other} {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }

    /// `delete(key)`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = format!("/{}?urlencoded=true", encode_key(key));
        let response = http::request(self.port, "DELETE", &path, &[], b"").await?;
        if response.status != 200 {
            bail!("KV delete {key}: {}", response.status);
        }
        Ok(())
    }
}

/// A key as one path segment (what workerd sends: `encodeURIComponent`).
pub fn encode_key(key: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(key, COMPONENT).to_string()
}

#[cfg(test)]
mod tests;
