//! The stack's home directory: where data, logs, pid files, secrets and the
//! state file live. One home is one stack; two homes with different port
//! bases can run side by side (the tests rely on that).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Paths inside a stack home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home rooted at `root`, made absolute so that child processes started
    /// from another directory find the same files.
    pub fn new(root: &Path) -> Result<Home> {
        let root = if root.is_absolute() {
            root.to_owned()
        } else {
            std::env::current_dir()
                .context("reading the current directory")?
                .join(root)
        };
        Ok(Home { root })
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directories `up` needs.
    pub fn create(&self) -> Result<()> {
        for dir in [self.data_dir(), self.logs_dir(), self.run_dir()] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Databases, broker and Redis files, one subdirectory per component.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// One log file per component.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Pid files of the components and of the supervisor.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Generated keys and tokens, mode 0600.
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// The topology the running stack was started from (a copy, so that
    /// editing the source file does not change a running stack underfoot).
    pub fn topology_file(&self) -> PathBuf {
        self.root.join("topology.toml")
    }

    /// What the supervisor last wrote about the stack; see [`crate::state`].
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Which member of each shard is primary and which are held stopped;
    /// see [`crate::arrangement`].
    pub fn arrangement_file(&self) -> PathBuf {
        self.root.join("arrangement.json")
    }

    /// Where `cityboard backup` puts a backup when not told (`--out`).
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }

    /// Held (flock) by the one running supervisor.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.run_dir().join("supervisor.lock")
    }

    /// The supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.logs_dir().join("supervisor.log")
    }

    /// Log file of a component; `/` in names becomes `.`.
    pub fn log_file(&self, component: &str) -> PathBuf {
        self.logs_dir()
            .join(format!("{}.log", file_stem(component)))
    }

    /// Pid file of a component.
    pub fn pid_file(&self, component: &str) -> PathBuf {
        self.run_dir().join(format!("{}.pid", file_stem(component)))
    }

    /// Data directory of a component.
    pub fn component_data(&self, component: &str) -> PathBuf {
        self.data_dir().join(file_stem(component))
    }
}

/// Component names contain `/`; files are flat.
pub fn file_stem(component: &str) -> String {
    component.replace('/', ".")
}
