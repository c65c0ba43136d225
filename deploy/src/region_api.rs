//! The api role of `region-core`: the region's JSON API and HTML site.
//!
//! Before each start the supervisor runs `region-core setup` for the region:
//! it migrates the catalog and every shard and seeds the shard map, and is
//! idempotent, so a restart after a crash repairs a half-done setup.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::http::http_get_status;
use crate::postgres;
use crate::process::sibling_binary;

/// Migrates and seeds the region's databases (`region-core setup`).
pub fn setup(state_file: &Path, secrets_dir: &Path, region: &str, log: &Path) -> Result<()> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    // Migrations are the owner's work: setup connects as the superuser.
    let mut cmd = region_core("setup", state_file, region)?;
    cmd.envs(postgres::client_env(secrets_dir, postgres::ADMIN)?);
    let status = cmd
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("running {}", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!(
            "`region-core setup --region {region}` failed ({status}); see {}",
            log.display()
        );
    }
    Ok(())
}

/// `region-core SUBCOMMAND --state STATE --region REGION`: what every
/// supervised role of a region starts with.
fn region_core(subcommand: &str, state_file: &Path, region: &str) -> Result<Command> {
    let mut cmd = Command::new(sibling_binary("region-core")?);
    cmd.arg(subcommand)
        .arg("--state")
        .arg(state_file)
        .args(["--region", region]);
    Ok(cmd)
}

/// The command that serves the region's api on `port` and its operator
/// listener on `operator_port`, with the topology's rate limits.
pub fn command(
    state_file: &Path,
    secrets_dir: &Path,
    region: &str,
    (port, operator_port): (u16, u16),
    limits: &region_core::limits::Limits,
) -> Result<Command> {
    let mut cmd = region_core("serve", state_file, region)?;
    cmd.envs(postgres::client_env(secrets_dir, "cb_api")?);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--operator-listen", &format!("127.0.0.1:{operator_port}")])
        .arg("--secrets-dir")
        .arg(secrets_dir)
        .arg("--limits")
        .arg(serde_json::to_string(limits)?);
    Ok(cmd)
}

/// The region-core roles besides the api that `up` supervises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineRole {
    /// Applies the region's commands to its shards.
    Writer,
    /// Sends each shard's outbox to the region's events topic.
    Relay,
    /// Renders the region's events into edge KV pages and tombstones.
    Publisher,
    /// Expires posts, sends renewal reminders, archives old posts.
    Janitor,
}

impl PipelineRole {
    /// The subcommand, also the component's name within its region.
    pub fn kind(self) -> &'static str {
        match self {
            PipelineRole::Writer => "writer",
            PipelineRole::Relay => "relay",
            PipelineRole::Publisher => "publisher",
            PipelineRole::Janitor => "janitor",
        }
    }

    /// The Postgres login it connects as (one per purpose).
    pub fn pg_user(self) -> &'static str {
        match self {
            PipelineRole::Writer => "cb_writer",
            PipelineRole::Relay => "cb_relay",
            PipelineRole::Publisher => "cb_publisher",
            PipelineRole::Janitor => "cb_janitor",
        }
    }
}

/// The command that runs `role` for `region`, its `/metrics` and
/// `/healthz` on `port` (the broker, and the edge the publisher writes
/// through, come from the state file).
pub fn role_command(
    role: PipelineRole,
    state_file: &Path,
    secrets_dir: &Path,
    region: &str,
    port: u16,
) -> Result<Command> {
    let mut cmd = region_core(role.kind(), state_file, region)?;
    cmd.envs(postgres::client_env(secrets_dir, role.pg_user())?);
    cmd.args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    if matches!(role, PipelineRole::Publisher | PipelineRole::Janitor) {
        // kv-route.key signs the edge's bulk KV route (the publisher's
        // writes); edge-kv.key opens the KV service (the janitor's reads).
        cmd.arg("--secrets-dir").arg(secrets_dir);
    }
    if role == PipelineRole::Janitor {
        // Renewal reminders as `.eml` files under the stack home: a local
        // stack sends no mail.
        let home = state_file.parent().unwrap_or_else(|| Path::new("."));
        cmd.arg("--mail-dir").arg(home.join("mail"));
    }
    Ok(cmd)
}

/// Ready when `GET /healthz` answers 200 (it checks the databases too).
pub async fn probe(port: u16) -> Result<()> {
    let status = http_get_status(port, "/healthz").await?;
    if status != 200 {
        bail!("GET /healthz answered {status}");
    }
    Ok(())
}
