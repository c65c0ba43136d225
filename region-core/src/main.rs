//! `region-core`: the region origin binary. The supervisor (`cityboard up`)
//! runs `setup` once per region, then `serve` as the region's api role and
//! the pipeline roles beside it. This file only parses the command line and
//! hands it to the role (`region_core::roles`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use region_core::roles::{self, common::shutdown_signal};

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
        #[command(flatten)]
        args: roles::api::ServeArgs,
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
        args: roles::janitor::JanitorArgs,
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
        args: roles::writer::WriterArgs,
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
        args: roles::relay::RelayArgs,
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
        args: roles::publisher::PublisherArgs,
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
            // A refused configuration is a usage error (2), as a bad flag is
            // for clap: restarting will not cure it.
            if e.downcast_ref::<roles::janitor::mail::SmtpUrlError>()
                .is_some()
            {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Setup {
            state,
            region,
            demo,
        } => roles::setup::run(&state, &region, demo).await,
        Cmd::Serve {
            state,
            region,
            args,
        } => roles::api::run(&state, &region, args, shutdown_signal()).await,
        Cmd::Janitor {
            state,
            region,
            args,
        } => roles::janitor::run(&state, &region, args, shutdown_signal())
            .await
            .with_context(|| format!("the janitor of {region}")),
        Cmd::Writer {
            state,
            region,
            args,
        } => roles::writer::run(&state, &region, args, shutdown_signal())
            .await
            .with_context(|| format!("the writer of {region}")),
        Cmd::Relay {
            state,
            region,
            args,
        } => roles::relay::run(&state, &region, args, shutdown_signal())
            .await
            .with_context(|| format!("the relay of {region}")),
        Cmd::Publisher {
            state,
            region,
            args,
        } => roles::publisher::run(&state, &region, args, shutdown_signal())
            .await
            .with_context(|| format!("the publisher of {region}")),
        Cmd::Openapi => {
            print!("{}", region_core::http::openapi::document());
            Ok(())
        }
    }
}
