//! `arrangement.json` in the home: which member of each shard is its
//! primary now, and which members are held stopped.
//!
//! A shard's members keep their names, ports and data directories for
//! life (`REGION/SHARD/primary`, `REGION/SHARD/replica-K`): a failover
//! changes what a member *does*, not what it is called, so logs, pid files
//! and `cityboard logs` keep working across it. The names are where each
//! member started; this file says where they are now. [`crate::components::plan`]
//! and [`crate::components::region_states`] read it, so `up` (and the
//! catalog rows its setup writes from the state file) follow the last
//! failover, and the supervisor re-reads it on SIGHUP.
//!
//! No file means the topology's own arrangement: member `primary` is the
//! primary, nothing held.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::process::write_atomic;

/// Where every shard's members are, as the last failover or restore left them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrangement {
    /// Bumped on every save: the supervisor publishes the generation it
    /// applied (`StackState::arrangement`), which is how a command knows
    /// its change took effect.
    pub generation: u64,
    /// `REGION/SHARD` → the member that is primary (0 = `primary`, K =
    /// `replica-K`). Absent: member 0.
    #[serde(default)]
    pub primaries: BTreeMap<String, usize>,
    /// Component names the supervisor must keep stopped: a fenced old
    /// primary, or the members of a shard being restored.
    #[serde(default)]
    pub held: Vec<String>,
}

impl Arrangement {
    /// Reads the arrangement of the home whose file is `path`; no file is
    /// the topology's own arrangement. A file that cannot be parsed is an
    /// error, never a silent default: guessing could start a fenced old
    /// primary as a primary beside the new one.
    pub fn load(path: &Path) -> Result<Arrangement> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {} (fix or remove it)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Arrangement::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes it atomically with the next generation; returns that generation.
    pub fn save(&mut self, path: &Path) -> Result<u64> {
        self.generation += 1;
        self.held.sort();
        self.held.dedup();
        write_atomic(path, &serde_json::to_vec_pretty(self)?)?;
        Ok(self.generation)
    }

    /// The member of `region`'s `shard` that is its primary.
    pub fn primary(&self, region: &str, shard: &str) -> usize {
        self.primaries
            .get(&shard_key(region, shard))
            .copied()
            .unwrap_or(0)
    }

    /// Makes `member` the primary of `region`'s `shard`.
    pub fn set_primary(&mut self, region: &str, shard: &str, member: usize) {
        let key = shard_key(region, shard);
        if member == 0 {
            self.primaries.remove(&key);
        } else {
            self.primaries.insert(key, member);
        }
    }

    /// True if the supervisor must keep `component` stopped.
    pub fn is_held(&self, component: &str) -> bool {
        self.held.iter().any(|h| h == component)
    }

    /// Holds (`true`) or releases `component`.
    pub fn hold(&mut self, component: &str, held: bool) {
        self.held.retain(|h| h != component);
        if held {
            self.held.push(component.to_string());
        }
    }
}

/// The key of a shard in [`Arrangement::primaries`].
pub fn shard_key(region: &str, shard: &str) -> String {
    format!("{region}/{shard}")
}

/// Component name of member `member` of a shard: `primary` for 0 (where
/// it started), `replica-K` for K.
pub fn member_name(region: &str, shard: &str, member: usize) -> String {
    if member == 0 {
        format!("{region}/{shard}/primary")
    } else {
        format!("{region}/{shard}/replica-{member}")
    }
}

/// The physical replication slot member `member` streams through while it
/// is a replica: `replica_K` as before any failover, and `member_primary`
/// for member 0 once it follows another member.
pub fn slot_name(member: usize) -> String {
    if member == 0 {
        "member_primary".into()
    } else {
        format!("replica_{member}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_is_the_topologys_arrangement_and_a_save_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("arrangement.json");
        let mut a = Arrangement::load(&path).expect("no file");
        assert_eq!(a.primary("us-east", "shard-1"), 0);
        a.set_primary("us-east", "shard-1", 2);
        a.hold("us-east/shard-1/primary", true);
        a.hold("us-east/shard-1/primary", true);
        assert_eq!(a.save(&path).expect("save"), 1);
        let b = Arrangement::load(&path).expect("load");
        assert_eq!(b, a);
        assert_eq!(b.held.len(), 1);
        assert_eq!(b.primary("us-east", "shard-1"), 2);
        assert_eq!(b.primary("us-east", "shard-2"), 0);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("arrangement.json");
        std::fs::write(&path, b"{ not json").expect("write");
        assert!(Arrangement::load(&path).is_err());
    }
}
