//! One module per `cityboard` subcommand.

pub mod backup;
pub mod capacity;
pub mod down;
pub mod failover;
pub mod logs;
pub mod psql;
pub mod render;
pub mod shard_ops;
pub mod status;
pub mod up;

use crate::home::Home;
use crate::process::ProcessId;
use crate::supervisor;

/// A command asked for something that cannot be (an unknown region or
/// shard, a shard with no replica, no stack running): `cityboard` exits
/// with code 2, as for any usage error, and nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The running supervisor of a home, if there is one: its lock is held.
pub fn running_supervisor(home: &Home) -> anyhow::Result<Option<ProcessId>> {
    if !home.run_dir().exists() {
        return Ok(None);
    }
    if supervisor::try_lock(home)?.is_some() {
        return Ok(None);
    }
    Ok(ProcessId::read(&home.run_dir().join("supervisor.pid")).filter(ProcessId::is_alive))
}
