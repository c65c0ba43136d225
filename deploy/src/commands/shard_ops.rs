//! What `cityboard failover`, `backup` and `restore` share: finding the
//! shard on the running stack, telling the supervisor about a new
//! arrangement and waiting until it took effect, pointing the catalog at
//! the shard's members, and printing steps as text or JSON lines.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::UsageError;
use crate::arrangement::{Arrangement, member_name};
use crate::components::region_states;
use crate::home::Home;
use crate::postgres;
use crate::process::ProcessId;
use crate::state::{Health, Phase, StackState};
use crate::topology::Topology;

/// How long the supervisor may take to apply an arrangement (it stops a
/// held Postgres with its fast shutdown, at most 20 s, before it answers).
const APPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One shard of the running stack, as a command about to change it sees it.
pub struct ShardTarget {
    /// The stack's home.
    pub home: Home,
    /// Its topology (the home's copy).
    pub topology: Topology,
    /// The arrangement as the command found it.
    pub arrangement: Arrangement,
    /// The running supervisor.
    pub supervisor: ProcessId,
    /// Region name and index.
    pub region: String,
    /// Index of the region in the topology.
    pub r: usize,
    /// Shard name (`shard-N`) and index.
    pub shard: String,
    /// Index of the shard in its region.
    pub s: usize,
    /// Its replica count in the topology (members are 0..=replicas).
    pub replicas: usize,
}

impl ShardTarget {
    /// Finds `region`'s `shard` (`shard-N` or `N`) on the stack running in
    /// `home`. An unknown region or shard, or no running stack, is a
    /// [`UsageError`] (exit code 2).
    pub fn resolve(home: &Home, region: &str, shard: &str) -> Result<ShardTarget> {
        let Some(supervisor) = super::running_supervisor(home)? else {
            return Err(UsageError(format!(
                "no stack is running in {} (start it with `cityboard up`)",
                home.root().display()
            ))
            .into());
        };
        let state = StackState::read(&home.state_file())?;
        if state.phase != Phase::Running {
            return Err(UsageError(format!(
                "the stack in {} is {:?}, not running: wait for `cityboard up` to finish",
                home.root().display(),
                state.phase
            ))
            .into());
        }
        let topology = Topology::load(&home.topology_file())?;
        let Some((r, found)) = topology.region(region) else {
            let names: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(UsageError(format!(
                "no region {region:?}; regions: {}",
                names.join(", ")
            ))
            .into());
        };
        let wanted = if shard.starts_with("shard-") {
            shard.to_string()
        } else {
            format!("shard-{shard}")
        };
        let Some(s) = found.shards.iter().position(|x| x.name == wanted) else {
            let names: Vec<&str> = found.shards.iter().map(|x| x.name.as_str()).collect();
            return Err(UsageError(format!(
                "no shard {shard:?} in {region}; shards: {}",
                names.join(", ")
            ))
            .into());
        };
        let replicas = found.shards[s].replicas;
        let region = found.name.clone();
        Ok(ShardTarget {
            arrangement: Arrangement::load(&home.arrangement_file())?,
            home: home.clone(),
            topology,
            supervisor,
            region,
            r,
            shard: wanted,
            s,
            replicas,
        })
    }

    /// Member `member`'s component name.
    pub fn name(&self, member: usize) -> String {
        member_name(&self.region, &self.shard, member)
    }

    /// Member `member`'s port.
    pub fn port(&self, member: usize) -> u16 {
        self.topology.shard_port(self.r, self.s, member)
    }

    /// Member `member`'s data directory.
    pub fn data(&self, member: usize) -> PathBuf {
        self.home.component_data(&self.name(member))
    }

    /// The member that is primary now.
    pub fn primary(&self) -> usize {
        self.arrangement.primary(&self.region, &self.shard)
    }

    /// Every member, primary or not (0..=replicas).
    pub fn members(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.replicas
    }

    /// Saves the arrangement, asks the supervisor to apply it (SIGHUP) and
    /// waits until the state file says it did: by then every member newly
    /// held is stopped.
    pub async fn apply(&mut self) -> Result<()> {
        let generation = self.arrangement.save(&self.home.arrangement_file())?;
        self.supervisor.signal(Signal::SIGHUP);
        let deadline = Instant::now() + APPLY_TIMEOUT;
        loop {
            let state = StackState::read(&self.home.state_file())?;
            if state.arrangement >= generation {
                return Ok(());
            }
            if !self.supervisor.is_alive() {
                bail!("the supervisor exited before applying the arrangement");
            }
            if Instant::now() > deadline {
                bail!(
                    "the supervisor did not apply arrangement {generation} within {APPLY_TIMEOUT:?}{}; see {}",
                    state.error.map(|e| format!(" ({e})")).unwrap_or_default(),
                    self.home.supervisor_log().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the supervisor reports member `member` healthy.
    pub async fn wait_healthy(&self, member: usize, limit: Duration) -> Result<()> {
        let name = self.name(member);
        let deadline = Instant::now() + limit;
        loop {
            let state = StackState::read(&self.home.state_file())?;
            let c = state
                .component(&name)
                .with_context(|| format!("{name} is not in the state file"))?;
            if c.health == Health::Healthy && c.process.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} is not healthy after {limit:?} ({:?}: {}); see {}",
                    c.health,
                    c.last_error.as_deref().unwrap_or("no error"),
                    c.log
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Points the region catalog's `shards` row at the members as the
    /// arrangement has them (the addresses the state file publishes). The
    /// catalog's trigger bumps the map version and notifies, and every
    /// running role makes new pools for the shard: no role restarts.
    /// Returns the primary URL written.
    pub async fn register(&self) -> Result<String> {
        let regions = region_states(&self.topology, &self.home.secrets_dir(), &self.arrangement)?;
        let shard = regions
            .iter()
            .find(|r| r.name == self.region)
            .and_then(|r| r.shards.iter().find(|s| s.name == self.shard))
            .context("the shard is not in the region states")?;
        let mut catalog = postgres::connect(
            self.topology.region_ports(self.r).catalog,
            postgres::DATABASE,
            &self.home.secrets_dir(),
        )
        .await?;
        sqlx::query(
            "UPDATE shards SET primary_url = $3, replica_urls = $4, updated_at = now()
              WHERE region = $1 AND name = $2
                AND (primary_url, replica_urls) IS DISTINCT FROM ($3, $4)",
        )
        .bind(&self.region)
        .bind(&self.shard)
        .bind(&shard.primary_url)
        .bind(&shard.replica_urls)
        .execute(&mut catalog)
        .await
        .context("updating the catalog's shards row")?;
        Ok(shard.primary_url.clone())
    }
}

/// Prints a command's plan and steps: numbered text lines, or with `json`
/// one JSON object per line (`{"step": ..., ...}`) for scripts.
pub struct Steps {
    json: bool,
    count: usize,
}

impl Steps {
    /// A printer in the chosen format.
    pub fn new(json: bool) -> Steps {
        Steps { json, count: 0 }
    }

    /// Prints a line of the plan: `text` for people, `fields` for scripts.
    pub fn plan(&self, text: &str, fields: serde_json::Value) {
        self.emit("plan", text, fields);
    }

    /// Prints a finished step.
    pub fn done(&mut self, step: &str, text: &str, fields: serde_json::Value) {
        self.count += 1;
        let numbered = format!("  {}. {text}", self.count);
        self.emit(step, &numbered, fields);
    }

    fn emit(&self, step: &str, text: &str, fields: serde_json::Value) {
        if self.json {
            let mut object = serde_json::json!({ "step": step });
            if let (Some(o), serde_json::Value::Object(extra)) = (object.as_object_mut(), fields) {
                o.extend(extra);
            }
            println!("{object}");
        } else {
            println!("{text}");
        }
    }
}

/// Owner and mode of a data directory as Postgres insists on them: the
/// `postgres` user's, 0700, every file inside given to that user.
pub fn give_to_postgres(dir: &std::path::Path) -> Result<()> {
    let (uid, gid) = postgres::postgres_user()?;
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(dir)
        .status()
        .context("running chown")?;
    if !status.success() {
        bail!("chown -R {} failed ({status})", dir.display());
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))
}
