//! The KV namespace behind the local edge (run as `cityboard edge-kv`).
//!
//! Bare workerd has no KV store of its own: a `kvNamespace` binding sends
//! each `get`/`put`/`delete`/`list` of the Worker as an HTTP request to the
//! service it names (design §7). This is that service, one per stack on
//! `port_base + 3`, durable under the stack's data directory, so that pages
//! the publisher wrote are still there after a restart and the Worker runs
//! against the same semantics (metadata, expirations, list pages, limits)
//! it meets on Cloudflare. The protocol is described in [`routes`].
//!
//! A crate of its own so that the orchestrator only starts it and talks to
//! it (`cityboard_deploy::edge_kv`): the service and its store are here,
//! `cityboard` links it for its `edge-kv` command (one binary for the stack
//! to start, however often it was rebuilt underfoot).

pub mod routes;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::serve::ListenerExt;
use tokio::signal::unix::{SignalKind, signal};

pub use routes::{METADATA_HEADER, Service};
pub use store::{Entry, Store};

/// How often expired entries are deleted from disk (reads never see them
/// in between: expiration is checked on every read).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The options of `cityboard edge-kv`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// A file holding the key every request must carry as a bearer token
    /// (the stack's `secrets/edge-kv.key`; workerd injects it into its
    /// binding's requests). Without it, any client is served.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
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
    let key = match &options.key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let store = Store::open(&options.dir, unix_now())?;
    let entries = store.len();
    let service = Arc::new(Service {
        store,
        min_ttl: options.min_ttl,
        now: Arc::new(unix_now),
        key,
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
