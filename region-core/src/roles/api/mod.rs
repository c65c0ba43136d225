//! `region-core serve`: the api role. Its flags, and how it starts: the
//! shared state (`connect`), the HTTP app (`http::app`), the listener.

mod connect;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use cityboard_protocol::sign::Version;

pub use connect::{ApiOptions, Background, connect};

use crate::bus::commands::WritePath;
use crate::bus::failpoint;
use crate::db::ReadConfig;
use crate::limits::Limits;
use crate::roles::common::{beside_state, broker_from_state};
use crate::stack::{Secrets, StackFile};

/// Flags of `region-core serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (what the edge forwards to).
    #[arg(long, env = "CITYBOARD_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the operator's listener: `/metrics`, `DELETE
    /// /old_posts`, `/healthz` (`http::operator_app`). Keep it inside the
    /// deployment's network; the edge never forwards to it. None: those
    /// routes are not served.
    #[arg(long, env = "CITYBOARD_OPERATOR_LISTEN")]
    pub operator_listen: Option<SocketAddr>,
    /// Directory of `session.key`, `kv-route.key`, `edge-forward.key`,
    /// `operator.token` and, during a rotation of the forwarding key,
    /// `edge-forward.previous.key` with `edge-forward.previous.expires`
    /// (an RFC 3339 time from which the previous key is refused).
    #[arg(long, env = "CITYBOARD_SECRETS_DIR")]
    pub secrets_dir: PathBuf,
    /// Lifetime of listing pages in the Redis cache; 0s turns it off.
    #[arg(long, env = "CITYBOARD_PAGE_CACHE_TTL", default_value = "5s")]
    pub page_cache_ttl: humantime::Duration,
    /// Lifetime of posts and listing pages in the in-process cache (reads
    /// without a read-your-writes token); 0s turns it off. Off by
    /// default until the pipeline's events invalidate it.
    #[arg(long, env = "CITYBOARD_LOCAL_CACHE_TTL", default_value = "0s")]
    pub local_cache_ttl: humantime::Duration,
    /// Posts (and, separately, pages) the in-process cache holds at most.
    #[arg(long, env = "CITYBOARD_LOCAL_CACHE_ENTRIES", default_value_t = 10_000)]
    pub local_cache_entries: usize,
    /// Lifetime of session access tokens.
    #[arg(long, env = "CITYBOARD_SESSION_TTL", default_value = "15m")]
    pub session_ttl: humantime::Duration,
    /// DEVELOPMENT ONLY: serve requests that carry no edge signature
    /// (curl against the origin). A request with a bad signature is
    /// still refused, and client-IP headers of unsigned requests are
    /// still ignored. Never set by `cityboard up`.
    #[arg(long, env = "CITYBOARD_ALLOW_UNSIGNED")]
    pub allow_unsigned: bool,
    /// The oldest edge signature scheme version accepted: 1 (the default)
    /// accepts both versions, so that edges and apis can be upgraded in
    /// any order; 2 retires version 1 (signatures that do not cover
    /// `Content-Type`) once every edge and publisher signs version 2.
    #[arg(long, env = "CITYBOARD_SIGNING_MIN_VERSION", default_value = "1")]
    pub signing_min_version: Version,
    /// Longest a write waits for the writer before answering 202 (with
    /// the status URL) instead of 201/200; 0s answers 202 at once.
    #[arg(long, env = "CITYBOARD_APPLY_WAIT", default_value = "1500ms")]
    pub apply_wait: humantime::Duration,
    /// How writes reach the shard: `pipeline` (produce the command, the
    /// writer applies it) or `direct` (one transaction per write on the
    /// primary, from the api: a benchmark's baseline, not for serving).
    #[arg(long, env = "CITYBOARD_WRITE_PATH", value_enum, default_value_t = WritePath::Pipeline)]
    pub write_path: WritePath,
    /// Where `DELETE /old_posts` archives old posts: a directory or
    /// `file://` URL, or `s3://bucket/prefix` (builds with the `s3`
    /// feature); default: `archive/` beside the stack description.
    #[arg(long, env = "CITYBOARD_ARCHIVE_URL")]
    pub archive_url: Option<String>,
    /// Where photos are kept: a directory or `file://` URL, or
    /// `s3://bucket/prefix` (builds with the `s3` feature); default:
    /// `photos/` beside the stack description.
    #[arg(long, env = "CITYBOARD_PHOTOS_URL")]
    pub photos_url: Option<String>,
    /// Photos decoded and resized at once; each may take up to 256 MiB
    /// while it is (a 50-megapixel photo), and a core.
    #[arg(long, env = "CITYBOARD_PHOTO_WORKERS", default_value_t = 1)]
    pub photo_workers: usize,
    /// Read connections per database node (each replica, and the
    /// primary as the last resort). Reads beyond it wait their turn in
    /// the api rather than share the node's cores in Postgres.
    #[arg(long, env = "CITYBOARD_READ_CONNECTIONS", default_value_t = ReadConfig::default().max_connections)]
    pub read_connections: u32,
    /// Longest a request may take before it is stopped with a 503; also
    /// the `statement_timeout` of the api's shard connections.
    #[arg(long, env = "CITYBOARD_REQUEST_TIMEOUT", default_value = "10s")]
    pub request_timeout: humantime::Duration,
    /// Rate limits as JSON, the keys of the topology's `[limits]` table
    /// (`cityboard up` passes them); keys left out keep their defaults.
    #[arg(long, env = "CITYBOARD_LIMITS", value_parser = parse_limits, default_value = "{}")]
    pub limits: Limits,
}

fn parse_limits(text: &str) -> Result<Limits, String> {
    serde_json::from_str(text).map_err(|e| format!("--limits: {e}"))
}

/// Starts the api of `region` and serves until `shutdown`.
pub async fn run(
    state: &Path,
    region: &str,
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The api's crash point (api-after-produce), armed by FAILPOINTS or the
    // control directory; kept for the life of the process.
    let _failpoints = failpoint::setup_role(region, "api");
    let stack = StackFile::read(state)?;
    let (number, entry) = stack.region(region)?;
    let secrets = Secrets::read(&args.secrets_dir)?;
    if args.request_timeout.is_zero() {
        anyhow::bail!("--request-timeout must be longer than 0s");
    }
    let options = ApiOptions {
        cache_ttl: args.page_cache_ttl.into(),
        local_cache_ttl: args.local_cache_ttl.into(),
        local_cache_entries: args.local_cache_entries,
        session_ttl: chrono::Duration::from_std(args.session_ttl.into())
            .context("--session-ttl is too long")?,
        require_signatures: !args.allow_unsigned,
        signing_min_version: args.signing_min_version,
        apply_wait: args.apply_wait.into(),
        write_path: args.write_path,
        request_timeout: args.request_timeout.into(),
        limits: args.limits,
        archive_url: Some(
            args.archive_url
                .unwrap_or_else(|| beside_state(state, "archive")),
        ),
        photos_url: Some(
            args.photos_url
                .unwrap_or_else(|| beside_state(state, "photos")),
        ),
        photo_workers: args.photo_workers,
        // Without a broker the api still serves reads; writes are 503.
        broker: broker_from_state(state)
            .map_err(|e| tracing::warn!(error = %e, "no broker: writes will answer 503"))
            .ok(),
        regions: stack.regions.iter().map(|r| r.name.clone()).collect(),
        read: ReadConfig {
            max_connections: args.read_connections,
            statement_timeout: Some(args.request_timeout.into()),
            ..ReadConfig::default()
        },
        ..ApiOptions::default()
    };
    if args.allow_unsigned {
        tracing::warn!(
            "--allow-unsigned: requests without an edge signature are served \
             (development only)"
        );
    }
    let (app_state, background) = connect(
        &stack.apex,
        number,
        entry,
        &secrets,
        Arc::new(crate::clock::SystemClock),
        options,
    )
    .await
    .with_context(|| format!("starting the api of {region}"))?;
    let catalog = app_state.catalog.clone();
    let listen = args.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let operator = match args.operator_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("listening on {at} (operator)"))?,
        ),
        None => None,
    };
    tracing::info!(%listen, operator = ?args.operator_listen, region, "api serving");
    // Both listeners stop on the one shutdown signal.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let operator_task = operator.map(|listener| {
        let app = crate::http::operator_app(app_state.clone());
        let rx = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(rx))
                .await
        })
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // The peer address is the client's IP of requests that do not come
    // through the edge (`ClientIp`).
    let app = crate::http::app(app_state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .context("serving")?;
    if let Some(task) = operator_task {
        match task.await {
            Ok(result) => result.context("serving the operator listener")?,
            Err(e) => tracing::warn!(error = %e, "operator listener task"),
        }
    }
    for t in &background.tasks {
        t.abort();
    }
    if let Err(e) = background.lease.release(&catalog).await {
        tracing::warn!(error = %e, "releasing the node lease");
    }
    tracing::info!("api stopped");
    Ok(())
}
