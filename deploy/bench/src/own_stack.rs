//! A stack of a scenario's own (`reshard`, `idle`), started with
//! `cityboard up` from a topology text and stopped and deleted when
//! dropped, so that a scenario never touches the stack the operator runs.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, bail};

use super::env_size;

/// A stack of the bench's own, stopped and deleted when dropped (kept with
/// `CITYBOARD_BENCH_KEEP=1`).
pub struct OwnStack {
    root: PathBuf,
    /// Its `--home`.
    pub home: PathBuf,
    cityboard: PathBuf,
    topology: PathBuf,
    keep: bool,
}

impl OwnStack {
    /// Writes `topology` under `root` (deleted first, and a stack left
    /// there by a killed run stopped) and brings the stack up with `env`
    /// added to `up`'s environment (the supervisor passes it on to every
    /// component).
    pub fn start(
        root: PathBuf,
        cityboard: PathBuf,
        topology: &str,
        env: &[(&str, &str)],
    ) -> Result<OwnStack> {
        let home = root.join("home");
        if home.exists() {
            let _ = run_cmd(
                &cityboard,
                &["--home", path(&home)?, "down", "--purge"],
                &[],
            );
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let topo = root.join("topology.toml");
        std::fs::write(&topo, topology)?;
        let stack = OwnStack {
            root,
            home,
            cityboard,
            topology: topo,
            keep: env_size("CITYBOARD_BENCH_KEEP", 0) == 1,
        };
        stack.up(env)?;
        Ok(stack)
    }

    /// `cityboard up` with `env` added to its environment.
    pub fn up(&self, env: &[(&str, &str)]) -> Result<()> {
        let out = run_cmd(
            &self.cityboard,
            &[
                "--home",
                path(&self.home)?,
                "up",
                "--topology",
                path(&self.topology)?,
            ],
            env,
        )?;
        if !out.status.success() {
            bail!("cityboard up failed:\n{}", text(&out));
        }
        Ok(())
    }

    /// `cityboard down`, keeping the data.
    pub fn down(&self) -> Result<()> {
        let out = run_cmd(&self.cityboard, &["--home", path(&self.home)?, "down"], &[])?;
        if !out.status.success() {
            bail!("cityboard down failed:\n{}", text(&out));
        }
        Ok(())
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        if self.keep {
            println!("  stack kept in {}", self.home.display());
            return;
        }
        if let Some(h) = self.home.to_str() {
            let _ = run_cmd(&self.cityboard, &["--home", h, "down", "--purge"], &[]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `p` as a command-line argument.
pub fn path(p: &Path) -> Result<&str> {
    p.to_str().context("a path that is not UTF-8")
}

/// Runs `program` with `args`, `env` added, and returns its output.
pub fn run_cmd(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    std::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", program.display()))
}

/// A command's stdout and stderr, for an error message.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A binary beside this one (`cityboard`, `shard-tool`): the bench runs
/// the same build it belongs to.
pub fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        bail!(
            "{} not found: build it (cargo build --release --bins)",
            p.display()
        );
    }
    Ok(p)
}
