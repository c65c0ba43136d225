//! `cityboard backup REGION SHARD` and `cityboard restore REGION SHARD
//! --from DIR`: the local rehearsal of restoring a shard from backup.
//!
//! A backup is a physical base backup of the shard's primary
//! (`pg_basebackup -Ft -X stream`: `base.tar`, `pg_wal.tar` and Postgres'
//! own `backup_manifest`) plus `cityboard-backup.json`. Physical rather
//! than `pg_dump -Fc` because a restore then needs no database to drop
//! and recreate under connected roles, and no schema, role or replication
//! setting to put back by hand: the data directory is replaced as a whole
//! and the replicas are copied from it; the WAL streamed with it makes the
//! copy consistent at one LSN (the manifest's `end_lsn`), the same way
//! CloudNativePG's backups are.
//!
//! A restore puts the shard back at that LSN. Commands applied after it
//! are lost: the writer's committed offsets are already past them, so
//! nothing replays them; the runbook (`deploy/README.md`) says so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::UsageError;
use super::shard_ops::{ShardTarget, Steps, give_to_postgres};
use crate::home::Home;
use crate::postgres;

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "cityboard-backup.json";
/// What [`Manifest::format`] says for the only format there is.
pub const FORMAT: &str = "pg_basebackup-tar-stream";
/// How long a member may take to start after a restore (a replica copies
/// the restored primary first).
const START: Duration = Duration::from_secs(300);

/// What a backup holds, written beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// How it was taken ([`FORMAT`]).
    pub format: String,
    /// Region of the shard.
    pub region: String,
    /// The shard.
    pub shard: String,
    /// The member it was taken from (the primary then).
    pub member: String,
    /// When it finished (RFC 3339).
    pub taken_at: String,
    /// Timeline of the WAL it holds.
    pub timeline: u64,
    /// Where its WAL begins.
    pub start_lsn: String,
    /// The point it is consistent at: a restore brings the shard back to this.
    pub end_lsn: String,
}

/// Backs up `region`'s `shard` into `out` (new or empty), or a new
/// directory under the home's `backups/`.
pub async fn backup(
    home: &Home,
    region: &str,
    shard: &str,
    out: Option<&Path>,
    json: bool,
) -> Result<()> {
    let t = ShardTarget::resolve(home, region, shard)?;
    let primary = t.primary();
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => home.backups_dir().join(format!(
            "{}.{}.{}",
            t.region,
            t.shard,
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        )),
    };
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(UsageError(format!(
            "{} is not empty: give a new or empty directory",
            dir.display()
        ))
        .into());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut steps = Steps::new(json);
    steps.plan(
        &format!(
            "backing up {}/{} from {} (port {}) into {}",
            t.region,
            t.shard,
            t.name(primary),
            t.port(primary),
            dir.display()
        ),
        json!({ "region": t.region, "shard": t.shard, "member": t.name(primary),
                "out": dir.display().to_string(), "format": FORMAT }),
    );
    let role = region_core::privileges::REPLICATION_ROLE;
    let output = Command::new(postgres::program("pg_basebackup")?)
        .arg("-D")
        .arg(&dir)
        .args(["-h", "127.0.0.1", "-p", &t.port(primary).to_string()])
        .args(["-U", role, "-w", "-Ft", "-X", "stream", "--checkpoint=fast"])
        .env("PGPASSWORD", postgres::password(&home.secrets_dir(), role)?)
        .output()
        .context("running pg_basebackup")?;
    if !output.status.success() {
        bail!(
            "pg_basebackup failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let (timeline, start_lsn, end_lsn) = wal_range(&dir.join("backup_manifest"))?;
    let manifest = Manifest {
        format: FORMAT.into(),
        region: t.region.clone(),
        shard: t.shard.clone(),
        member: t.name(primary),
        taken_at: chrono::Utc::now().to_rfc3339(),
        timeline,
        start_lsn,
        end_lsn,
    };
    std::fs::write(dir.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", dir.join(MANIFEST).display()))?;
    steps.done(
        "backup",
        &format!(
            "backup of {}/{} consistent at {} in {}",
            t.region,
            t.shard,
            manifest.end_lsn,
            dir.display()
        ),
        json!({ "dir": dir.display().to_string(), "manifest": manifest }),
    );
    Ok(())
}

/// The timeline and LSN range of the WAL a base backup needs, from the
/// `WAL-Ranges` of Postgres' `backup_manifest` (the last range's end is
/// where the backup is consistent).
fn wal_range(path: &Path) -> Result<(u64, String, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let ranges = manifest["WAL-Ranges"]
        .as_array()
        .filter(|r| !r.is_empty())
        .with_context(|| format!("{} has no WAL-Ranges", path.display()))?;
    let field = |v: &serde_json::Value, key: &str| -> Result<String> {
        v[key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{}: WAL-Ranges without {key}", path.display()))
    };
    let (first, last) = (&ranges[0], &ranges[ranges.len() - 1]);
    Ok((
        last["Timeline"].as_u64().unwrap_or(1),
        field(first, "Start-LSN")?,
        field(last, "End-LSN")?,
    ))
}

/// Reads and checks the backup in `from` for `region`'s `shard`.
fn read_backup(from: &Path, region: &str, shard: &str) -> Result<Manifest> {
    let path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "{} is not a backup `cityboard backup` wrote (no {MANIFEST}: {e})",
            from.display()
        ))
    })?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    if manifest.format != FORMAT {
        return Err(UsageError(format!(
            "{}: format {:?}, this cityboard restores {FORMAT:?}",
            path.display(),
            manifest.format
        ))
        .into());
    }
    if (manifest.region.as_str(), manifest.shard.as_str()) != (region, shard) {
        return Err(UsageError(format!(
            "{} is a backup of {}/{}, not of {region}/{shard}",
            from.display(),
            manifest.region,
            manifest.shard
        ))
        .into());
    }
    for file in ["base.tar", "pg_wal.tar"] {
        if !from.join(file).is_file() {
            return Err(UsageError(format!("{} has no {file}", from.display())).into());
        }
    }
    Ok(manifest)
}

/// Restores `region`'s `shard` from the backup in `from` while the stack
/// runs: every member held stopped, the primary's data directory replaced
/// by the backup, the replicas copied afresh from it, all started again.
/// The roles' pools reconnect by themselves.
pub async fn restore(
    home: &Home,
    region: &str,
    shard: &str,
    from: &Path,
    json: bool,
) -> Result<()> {
    let mut t = ShardTarget::resolve(home, region, shard)?;
    let manifest = read_backup(from, &t.region, &t.shard)?;
    let primary = t.primary();
    let replicas: Vec<usize> = t.members().filter(|&m| m != primary).collect();
    let mut steps = Steps::new(json);
    steps.plan(
        &format!(
            "plan for restoring {}/{} to {} (taken {}, consistent at {})\n  \
             1. stop every member of the shard (held by the arrangement)\n  \
             2. replace the data of {} (the primary) with the backup\n  \
             3. start it; then copy each replica afresh from it\n  \
             writes applied to the shard after {} are lost",
            t.region,
            t.shard,
            from.display(),
            manifest.taken_at,
            manifest.end_lsn,
            t.name(primary),
            manifest.taken_at,
        ),
        json!({ "region": t.region, "shard": t.shard, "from": from.display().to_string(),
                "primary": t.name(primary), "manifest": manifest }),
    );

    for m in t.members() {
        t.arrangement.hold(&t.name(m), true);
    }
    t.apply().await.context("stopping the shard's members")?;
    steps.done(
        "stop",
        "stopped every member of the shard",
        json!({ "members": t.members().map(|m| t.name(m)).collect::<Vec<_>>() }),
    );

    let data = t.data(primary);
    let aside = data.with_extension("before-restore");
    put_back(from, &data, &aside)?;
    for &m in &replicas {
        let dir = t.data(m);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    steps.done(
        "replace",
        &format!("{}'s data is the backup's", t.name(primary)),
        json!({ "member": t.name(primary), "data": data.display().to_string() }),
    );

    t.arrangement.hold(&t.name(primary), false);
    t.apply().await.context("starting the restored primary")?;
    t.wait_healthy(primary, START).await?;
    steps.done(
        "start",
        &format!("{} runs on the backup's data", t.name(primary)),
        json!({ "member": t.name(primary) }),
    );
    for &m in &replicas {
        t.arrangement.hold(&t.name(m), false);
    }
    t.apply().await.context("starting the replicas")?;
    for &m in &replicas {
        t.wait_healthy(m, START).await?;
        steps.done(
            "replica",
            &format!("{} copied afresh from the restored primary", t.name(m)),
            json!({ "member": t.name(m) }),
        );
    }
    // The data it replaced is kept until the restore worked.
    std::fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    t.register().await?;
    steps.done(
        "done",
        &format!(
            "{}/{} restored to {}; writes after {} are not in it",
            t.region, t.shard, manifest.end_lsn, manifest.taken_at
        ),
        json!({ "end_lsn": manifest.end_lsn }),
    );
    Ok(())
}

/// Replaces `data` with the base backup in `from`, moving the old
/// directory to `aside` first (an older `aside` is removed).
fn put_back(from: &Path, data: &Path, aside: &Path) -> Result<()> {
    if aside.exists() {
        std::fs::remove_dir_all(aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    if data.exists() {
        std::fs::rename(data, aside).with_context(|| format!("moving {} aside", data.display()))?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    untar(&from.join("base.tar"), data)?;
    untar(&from.join("pg_wal.tar"), &data.join("pg_wal"))?;
    // Started as a primary: it replays the WAL the backup_label points to
    // and comes up at the backup's end.
    for signal in ["standby.signal", "recovery.signal"] {
        let _ = std::fs::remove_file(data.join(signal));
    }
    give_to_postgres(data)
}

fn untar(archive: &Path, into: &Path) -> Result<()> {
    std::fs::create_dir_all(into).with_context(|| format!("creating {}", into.display()))?;
    let status = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .context("running tar")?;
    if !status.success() {
        bail!("tar -xf {} failed ({status})", archive.display());
    }
    Ok(())
}
