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
    leftovers += stop_postmasters(home);
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

/// Stops every Postgres still running on one of the stack's data
/// directories, whoever started it: a test that stops a node and starts it
/// again with `pg_ctl` (region-core's `tests/common/nodes.rs`) leaves a
/// postmaster no pid file of the supervisor names, which would hold its
/// port against the next `up`. Returns how many it stopped.
fn stop_postmasters(home: &Home) -> usize {
    let Ok(entries) = std::fs::read_dir(home.data_dir()) else {
        return 0;
    };
    let mut stopped = 0;
    for dir in entries.flatten().map(|e| e.path()) {
        // The first line of postmaster.pid is the postmaster's pid.
        let Some(pid) = std::fs::read_to_string(dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        else {
            continue;
        };
        // Only that very postmaster: a pid reused by another program since
        // does not run with this data directory on its command line.
        let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            let dir = dir.as_os_str().as_encoded_bytes();
            cmdline.windows(dir.len()).any(|w| w == dir)
        });
        if let Some(process) = ProcessId::of(pid).filter(|_| ours) {
            stopped += 1;
            println!(
                "down: stopping Postgres pid {pid} started outside the supervisor ({})",
                dir.display()
            );
            process.stop(Signal::SIGINT, Duration::from_secs(20));
        }
    }
    stopped
}
