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
/// Its `Debug` masks the URL's password (`region_core::redact::url`).
#[derive(Args)]
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

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("state", &self.state)
            .field(
                "catalog_url",
                &self.catalog_url.as_deref().map(region_core::redact::url),
            )
            .field("region", &self.region)
            .finish()
    }
}

/// The commands: `status` reads; the others drive a move, each step
/// resumable from the job row.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per shard: primary, replicas and their lag, replication slots and the
    /// WAL they retain, cities with rows and bytes; then the reshard jobs.
    Status(StatusArgs),
    /// Start moving a city to another shard of its region: preflight, the
    /// job, the copy by logical replication, until the target caught up.
    Move(MoveArgs),
    /// Compare the city's rows on both shards, chunk by chunk.
    Verify(VerifyArgs),
    /// Switch the city to the target: freeze, flip, unfreeze.
    Cutover(CutoverArgs),
    /// Switch the city back to the source (until cleanup).
    Rollback(CutoverArgs),
    /// After a cutover: drop the move's replication, delete the city from
    /// the source.
    Cleanup(JobArgs),
    /// Before a cutover (or after a rollback): undo the move.
    Cancel(JobArgs),
    /// Go on with a job from where its row says it is.
    Resume(JobArgs),
    /// Find (and with --repair, fix) half-finished jobs, orphan
    /// replication objects, expired freezes, and catalogs that disagree
    /// with fences.
    Doctor(DoctorArgs),
}

/// `move CITY --to SHARD`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The city's slug.
    pub city: String,
    /// The shard of the same region to move it to.
    #[arg(long)]
    pub to: String,
    /// The role the target's subscription connects to the source as; it
    /// needs REPLICATION. Default: the user of the source's URL.
    #[arg(long)]
    pub replication_role: Option<String>,
    /// Make the job and start the copy, then return (`resume` waits).
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the slot's creation, in seconds.
    #[arg(long, default_value_t = 30)]
    pub slot_wait_seconds: u64,
    /// Pause the copy while a replica of the target is this many MiB
    /// behind (it goes on below half).
    #[arg(long, default_value_t = 256)]
    pub max_replica_lag_mb: u64,
}

/// A job id, and the copy's settings for `resume`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The reshard job's id (`status` lists them).
    pub job: i64,
    /// Longest wait for a slot's creation, in seconds.
    #[arg(long, default_value_t = 30)]
    pub slot_wait_seconds: u64,
    /// Pause a copy while a replica of the target is this many MiB behind.
    #[arg(long, default_value_t = 256)]
    pub max_replica_lag_mb: u64,
}

/// `cutover JOB` and `rollback JOB`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The reshard job's id.
    pub job: i64,
    /// The longest freeze, in milliseconds: past it the switch aborts and
    /// the city takes writes where it was, at its epoch.
    #[arg(long, default_value_t = 2000)]
    pub max_pause: u64,
    /// Refused while the live replication is more MiB than this behind.
    #[arg(long, default_value_t = 16)]
    pub max_lag_mb: u64,
    /// Refused while a replica of the receiving shard is more MiB than this
    /// behind.
    #[arg(long, default_value_t = 64)]
    pub max_replica_lag_mb: u64,
    /// Longest wait for the reverse slot's creation, in seconds.
    #[arg(long, default_value_t = 30)]
    pub slot_wait_seconds: u64,
}

/// `verify JOB`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The reshard job's id.
    pub job: i64,
    /// Rows per chunk.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_rows: i64,
    /// Start again from the first chunk instead of where the last run
    /// stopped.
    #[arg(long)]
    pub restart: bool,
}

/// `doctor [JOB]`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this job.
    pub job: Option<i64>,
    /// Fix what is found (each fix is printed before it is made).
    #[arg(long)]
    pub repair: bool,
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
