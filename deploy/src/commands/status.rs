//! `cityboard status`: every component with its health and restart count,
//! and each replica's replay lag in bytes, measured now by LSN. A shard
//! member's kind says its role now (`postgres` for the primary,
//! `postgres-replica`), which after `cityboard failover` is not what its
//! name says.

use anyhow::{Context, Result};
use serde::Serialize;

use crate::arrangement::{Arrangement, member_name};
use crate::home::Home;
use crate::postgres;
use crate::state::{ComponentState, Health, StackState};
use crate::topology::Topology;

/// What `status --json` prints.
#[derive(Debug, Serialize)]
pub struct Status {
    /// True while a supervisor runs this stack.
    pub supervised: bool,
    /// The supervisor's view.
    pub state: StackState,
    /// Replay lag per replica component name, in bytes (`None`: could not be measured).
    pub replica_lag_bytes: Vec<(String, Option<i64>)>,
    /// True when every component is healthy and a supervisor runs.
    pub healthy: bool,
}

/// Gathers the status of the stack in `home`.
pub async fn gather(home: &Home) -> Result<Status> {
    let supervised = super::running_supervisor(home)?.is_some();
    let state = StackState::read(&home.state_file())
        .context("no stack state here: run `cityboard up` first")?;
    let topology = Topology::load(&home.topology_file())?;
    let arrangement = Arrangement::load(&home.arrangement_file())?;
    let mut replica_lag_bytes = Vec::new();
    for (r, region) in topology.regions.iter().enumerate() {
        for (s, shard) in region.shards.iter().enumerate() {
            // Measured against the shard's primary now, which after a
            // failover is not the member named `primary`.
            let primary = arrangement.primary(&region.name, &shard.name);
            for k in (0..=shard.replicas).filter(|&k| k != primary) {
                let name = member_name(&region.name, &shard.name, k);
                let lag = postgres::replay_lag_bytes(
                    topology.shard_port(r, s, primary),
                    topology.shard_port(r, s, k),
                    &home.secrets_dir(),
                )
                .await
                .ok();
                replica_lag_bytes.push((name, lag));
            }
        }
    }
    let healthy = supervised && state.components.iter().all(|c| c.health == Health::Healthy);
    Ok(Status {
        supervised,
        state,
        replica_lag_bytes,
        healthy,
    })
}

/// Prints the status; the exit code says whether all is healthy.
pub async fn run(home: &Home, json: bool) -> Result<bool> {
    let status = gather(home).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(status.healthy);
    }
    println!(
        "stack {} — phase {:?}, supervisor {}",
        home.root().display(),
        status.state.phase,
        match (status.supervised, status.state.supervisor) {
            (true, Some(p)) => format!("pid {}", p.pid),
            _ => "NOT RUNNING (run `cityboard up` to repair)".into(),
        }
    );
    println!(
        "{:<32} {:<17} {:>6} {:>8} {:>9} {:>10}",
        "component", "kind", "port", "pid", "restarts", "health"
    );
    for c in &status.state.components {
        print_component(c, &status);
    }
    if let Some(e) = &status.state.error {
        println!("error: {e}");
    }
    Ok(status.healthy)
}

fn print_component(c: &ComponentState, status: &Status) {
    let pid = c.process.map_or("-".into(), |p| p.pid.to_string());
    let health = if status.supervised {
        format!("{:?}", c.health).to_lowercase()
    } else {
        "unknown".into()
    };
    let lag = status
        .replica_lag_bytes
        .iter()
        .find(|(name, _)| *name == c.name)
        .map(|(_, lag)| match lag {
            Some(bytes) => format!("  lag {bytes} B"),
            None => "  lag ?".into(),
        })
        .unwrap_or_default();
    println!(
        "{:<32} {:<17} {:>6} {:>8} {:>9} {:>10}{lag}",
        c.name, c.kind, c.port, pid, c.restarts, health
    );
    if let Some(e) = &c.last_error
        && c.health != Health::Healthy
    {
        println!("    last error: {e}");
    }
}
