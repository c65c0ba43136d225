//! `region-core`: the region origin binary. The supervisor (`cityboard up`)
//! runs `setup` once per region, then `serve` as the region's api role.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use region_core::db::ReadConfig;
use region_core::http::writes::WritePath;
use region_core::http::{ApiOptions, AppState};
use region_core::stack::{Secrets, StackFile};

#[derive(Parser)]
#[command(name = "region-core", about = "cityboard region origin")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Migrate the region's catalog and shards, register its topology;
    /// idempotent (run at every `cityboard up`).
    Setup {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region to set up.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        /// Also add demo posts to cities without any.
        #[arg(long)]
        demo: bool,
    },
    /// Run the api role of a region.
    Serve {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region to serve.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        /// Address to listen on.
        #[arg(long, env = "CITYBOARD_LISTEN")]
        listen: SocketAddr,
        /// Directory of `session.key`, `kv-route.key`, `edge-forward.key`,
        /// `edge-forward.previous.key`, `operator.token`.
        #[arg(long, env = "CITYBOARD_SECRETS_DIR")]
        secrets_dir: PathBuf,
        /// Lifetime of listing pages in the Redis cache; 0s turns it off.
        #[arg(long, env = "CITYBOARD_PAGE_CACHE_TTL", default_value = "5s")]
        page_cache_ttl: humantime::Duration,
        /// Lifetime of posts and listing pages in the in-process cache (reads
        /// without a read-your-writes token); 0s turns it off. Off by
        /// default until the pipeline's events invalidate it.
        #[arg(long, env = "CITYBOARD_LOCAL_CACHE_TTL", default_value = "0s")]
        local_cache_ttl: humantime::Duration,
        /// Posts (and, separately, pages) the in-process cache holds at most.
        #[arg(long, env = "CITYBOARD_LOCAL_CACHE_ENTRIES", default_value_t = 10_000)]
        local_cache_entries: usize,
        /// Lifetime of session access tokens.
        #[arg(long, env = "CITYBOARD_SESSION_TTL", default_value = "15m")]
        session_ttl: humantime::Duration,
        /// DEVELOPMENT ONLY: serve requests that carry no edge signature
        /// (curl against the origin). A request with a bad signature is
        /// still refused, and client-IP headers of unsigned requests are
        /// still ignored. Never set by `cityboard up`.
        #[arg(long, env = "CITYBOARD_ALLOW_UNSIGNED")]
        allow_unsigned: bool,
        /// Longest a write waits for the writer before answering 202 (with
        /// the status URL) instead of 201/200; 0s answers 202 at once.
        #[arg(long, env = "CITYBOARD_APPLY_WAIT", default_value = "1500ms")]
        apply_wait: humantime::Duration,
        /// How writes reach the shard: `pipeline` (produce the command, the
        /// writer applies it) or `direct` (one transaction per write on the
        /// primary, from the api: a benchmark's baseline, not for serving).
        #[arg(long, env = "CITYBOARD_WRITE_PATH", value_enum, default_value_t = WritePath::Pipeline)]
        write_path: WritePath,
        /// Where `DELETE /old_posts` archives old posts: a directory or
        /// `file://` URL, or `s3://bucket/prefix` (builds with the `s3`
        /// feature); default: `archive/` beside the stack description.
        #[arg(long, env = "CITYBOARD_ARCHIVE_URL")]
        archive_url: Option<String>,
        /// Read connections per database node (each replica, and the
        /// primary as the last resort). Reads beyond it wait their turn in
        /// the api rather than share the node's cores in Postgres.
        #[arg(long, env = "CITYBOARD_READ_CONNECTIONS", default_value_t = ReadConfig::default().max_connections)]
        read_connections: u32,
    },
    /// Print the OpenAPI document (the checked-in `openapi.json`).
    Openapi,
    /// Run the janitor of a region: expires posts past their lifetime,
    /// sends renewal reminders a day ahead.
    Janitor {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region whose shards it sweeps.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        #[command(flatten)]
        args: region_core::janitor::role::JanitorArgs,
    },
    /// Run the writer role of a region: applies `<region>.commands` to its
    /// shards in batches.
    Writer {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region whose commands it applies.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        #[command(flatten)]
        args: region_core::pipeline::roles::WriterArgs,
    },
    /// Run the outbox relay of a region: moves its shards' outbox rows to
    /// `<region>.events`.
    Relay {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region whose shards it drains.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        #[command(flatten)]
        args: region_core::pipeline::roles::RelayArgs,
    },
    /// Run the publisher of a region: renders `<region>.events` into edge KV
    /// pages and tombstones.
    Publisher {
        /// The supervisor's stack description.
        #[arg(long, env = "CITYBOARD_STATE")]
        state: PathBuf,
        /// Region whose events it publishes.
        #[arg(long, env = "CITYBOARD_REGION")]
        region: String,
        #[command(flatten)]
        args: region_core::pipeline::publisher::role::PublisherArgs,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("region-core: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("region-core: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Setup {
            state,
            region,
            demo,
        } => {
            let stack = StackFile::read(&state)?;
            let report = region_core::setup::run(&stack, &region, demo)
                .await
                .with_context(|| format!("setting up region {region}"))?;
            for line in report.lines {
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Serve {
            state,
            region,
            listen,
            secrets_dir,
            page_cache_ttl,
            local_cache_ttl,
            local_cache_entries,
            session_ttl,
            allow_unsigned,
            apply_wait,
            write_path,
            archive_url,
            read_connections,
        } => {
            // The api's crash point (api-after-produce), armed by FAILPOINTS
            // or the control directory; kept for the life of the process.
            let _failpoints = region_core::pipeline::failpoint::setup_role(&region, "api");
            let stack = StackFile::read(&state)?;
            let (number, entry) = stack.region(&region)?;
            let secrets = Secrets::read(&secrets_dir)?;
            let options = ApiOptions {
                cache_ttl: page_cache_ttl.into(),
                local_cache_ttl: local_cache_ttl.into(),
                local_cache_entries,
                session_ttl: chrono::Duration::from_std(session_ttl.into())
                    .context("--session-ttl is too long")?,
                require_signatures: !allow_unsigned,
                apply_wait: apply_wait.into(),
                write_path,
                archive_url: Some(archive_url.unwrap_or_else(|| {
                    state
                        .parent()
                        .unwrap_or_else(|| std::path::Path::new("."))
                        .join("archive")
                        .to_string_lossy()
                        .into_owned()
                })),
                // Without a broker the api still serves reads; writes are 503.
                broker: region_core::pipeline::broker_from_state(&state)
                    .map_err(|e| tracing::warn!(error = %e, "no broker: writes will answer 503"))
                    .ok(),
                regions: stack.regions.iter().map(|r| r.name.clone()).collect(),
                read: ReadConfig {
                    max_connections: read_connections,
                    ..ReadConfig::default()
                },
                ..ApiOptions::default()
            };
            if allow_unsigned {
                tracing::warn!(
                    "--allow-unsigned: requests without an edge signature are served \
                     (development only)"
                );
            }
            let (app_state, background) = AppState::connect(
                &stack.apex,
                number,
                entry,
                &secrets,
                Arc::new(region_core::clock::SystemClock),
                options,
            )
            .await
            .with_context(|| format!("starting the api of {region}"))?;
            let catalog = app_state.catalog.clone();
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            tracing::info!(%listen, region, "api serving");
            // The peer address is the client's IP of requests that do not
            // come through the edge (`ClientIp`).
            let app = region_core::http::app(app_state)
                .into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("serving")?;
            for t in &background.tasks {
                t.abort();
            }
            if let Err(e) = background.lease.release(&catalog).await {
                tracing::warn!(error = %e, "releasing the node lease");
            }
            tracing::info!("api stopped");
            Ok(())
        }
        Cmd::Janitor {
            state,
            region,
            args,
        } => {
            let _failpoints = region_core::pipeline::failpoint::setup_role(&region, "janitor");
            region_core::janitor::role::run(&state, &region, args, shutdown_signal())
                .await
                .with_context(|| format!("the janitor of {region}"))
        }
        Cmd::Writer {
            state,
            region,
            args,
        } => {
            let _failpoints = region_core::pipeline::failpoint::setup_role(&region, "writer");
            region_core::pipeline::roles::writer(&state, &region, args, shutdown_signal())
                .await
                .with_context(|| format!("the writer of {region}"))
        }
        Cmd::Relay {
            state,
            region,
            args,
        } => {
            let _failpoints = region_core::pipeline::failpoint::setup_role(&region, "relay");
            region_core::pipeline::roles::relay(&state, &region, args, shutdown_signal())
                .await
                .with_context(|| format!("the relay of {region}"))
        }
        Cmd::Publisher {
            state,
            region,
            args,
        } => {
            let _failpoints = region_core::pipeline::failpoint::setup_role(&region, "publisher");
            region_core::pipeline::publisher::role::run(&state, &region, args, shutdown_signal())
                .await
                .with_context(|| format!("the publisher of {region}"))
        }
        Cmd::Openapi => {
            print!("{}", region_core::http::openapi::document());
            Ok(())
        }
    }
}

/// SIGTERM (the supervisor) or Ctrl-C: stop accepting, finish what is in
/// flight, exit 0.
async fn shutdown_signal() {
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
