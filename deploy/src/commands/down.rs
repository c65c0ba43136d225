//! `cityboard down`: stop exactly what the stack started.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::home::Home;
use crate::process::ProcessId;

/// Stops the supervisor (which stops its components), then anything a dead
/// supervisor left behind; with `purge`, deletes the home as well.
pub fn run(home: &Home, purge: bool) -> Result<()> {
    if let Some(supervisor) = super::running_supervisor(home)? {
        println!("down: stopping the supervisor (pid {})", supervisor.pid);
        supervisor.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(120);
        while supervisor.is_alive() {
            if Instant::now() > deadline {
                bail!(
                    "the supervisor (pid {}) did not stop within 120 s",
                    supervisor.pid
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Components whose supervisor died (SIGKILL) are still ours to stop.
    let mut leftovers = 0;
    if let Ok(entries) = std::fs::read_dir(home.run_dir()) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                if let Some(process) = ProcessId::read(&path).filter(ProcessId::is_alive) {
                    leftovers += 1;
                    println!(
                        "down: stopping leftover pid {} ({})",
                        process.pid,
                        path.display()
                    );
                    // SIGINT is a fast, clean stop for Postgres and Redis alike.
                    process.stop(Signal::SIGINT, Duration::from_secs(20));
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if leftovers == 0 {
        println!("down: nothing left running");
    }
    if purge && home.root().exists() {
        std::fs::remove_dir_all(home.root())
            .with_context(|| format!("removing {}", home.root().display()))?;
        println!("down: purged {}", home.root().display());
    } else {
        println!(
            "down: data kept in {} (`--purge` deletes it)",
            home.data_dir().display()
        );
    }
    Ok(())
}
