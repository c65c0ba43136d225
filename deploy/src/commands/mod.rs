//! One module per `cityboard` subcommand.

pub mod capacity;
pub mod down;
pub mod logs;
pub mod psql;
pub mod render;
pub mod status;
pub mod up;

use crate::home::Home;
use crate::process::ProcessId;
use crate::supervisor;

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
