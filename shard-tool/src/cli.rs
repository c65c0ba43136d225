//! The command line: where the stack is, the output format, the command.
//!
//! One struct of flags, as the roles have: shard-tool runs the same way
//! against the local stack (its state file) and against a production
//! catalog (`--catalog-url` and `--region`), because everything else it
//! needs (shards, replicas, the shard map, jobs) comes from the catalog.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `shard-tool [--state FILE | --catalog-url URL --region R] [--json] <command>`
#[derive(Debug, Parser)]
#[command(
    name = "shard-tool",
    about = "Move cities between shards online, and see where everything is",
    version
)]
pub struct Cli {
    /// Which stack and region(s).
    #[command(flatten)]
    pub target: Target,
    /// One JSON object per line on stdout, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the catalogs are. The state file names every region's catalog;
/// a catalog URL names one region's, for stacks shard-tool did not start.
#[derive(Debug, Args)]
pub struct Target {
    /// The stack description the supervisor writes (`state.json`); default:
    /// `$CITYBOARD_HOME/state.json`, else `.cityboard/state.json`.
    #[arg(long, env = "CITYBOARD_STATE")]
    pub state: Option<PathBuf>,
    /// A region's catalog database, instead of a state file (it wins over
    /// one: a role's environment carries `CITYBOARD_STATE`, and a flag
    /// given on the command line must not be refused for it).
    #[arg(long, env = "CITYBOARD_CATALOG_URL", requires = "region")]
    pub catalog_url: Option<String>,
    /// The region to look at; with a state file, default: every region.
    #[arg(long, env = "CITYBOARD_REGION")]
    pub region: Option<String>,
}

/// The commands. Only `status` exists yet; the move and its steps (issue
/// 26) come next, on the same catalog, job row and table list.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per shard: primary, replicas and their lag, replication slots and the
    /// WAL they retain, cities with rows and bytes; then the reshard jobs.
    Status(StatusArgs),
}

/// `status [JOB]`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this reshard job (its id), with the shards it moves between.
    pub job: Option<i64>,
    /// Rows from the planner's statistics instead of `count(*)`, for shards
    /// too big to scan (each figure is labelled; see `counts`).
    #[arg(long)]
    pub estimate: bool,
}

impl Target {
    /// The state file to read when no catalog URL is given.
    pub fn state_path(&self) -> PathBuf {
        if let Some(p) = &self.state {
            return p.clone();
        }
        let home = std::env::var_os("CITYBOARD_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".cityboard"));
        home.join("state.json")
    }
}
