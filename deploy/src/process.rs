//! Facts about operating-system processes: is a pid still the process we
//! started, stop it, is a port free, which binary to start.
//!
//! A pid alone is not an identity (pids are reused), so a pid file holds the
//! pid and the process start time from `/proc/PID/stat`; both must match.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// A process as recorded in a pid file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Operating-system pid.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_ticks: u64,
}

impl ProcessId {
    /// Identity of a live process, or `None` if it is gone.
    pub fn of(pid: i32) -> Option<ProcessId> {
        let start_ticks = stat(pid)?.start_ticks;
        Some(ProcessId { pid, start_ticks })
    }

    /// True while the very process we recorded runs (not a zombie, not a
    /// newer process that got the same pid).
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some(s) if s.start_ticks == self.start_ticks && s.state != 'Z' && s.state != 'X')
    }

    /// Sends a signal; a process that is already gone is not an error.
    pub fn signal(&self, signal: Signal) {
        if self.is_alive() {
            let _ = kill(Pid::from_raw(self.pid), signal);
        }
    }

    /// Sends `signal`, waits up to `grace` for the process to end, then
    /// SIGKILLs it. Returns true if it had to be killed.
    pub fn stop(&self, signal: Signal, grace: Duration) -> bool {
        self.signal(signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_alive() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Writes this identity to a pid file (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &serde_json::to_vec(self)?)
    }

    /// Reads a pid file; a missing or unreadable one is `None`.
    pub fn read(path: &Path) -> Option<ProcessId> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

struct Stat {
    state: char,
    start_ticks: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: the
    // fields we need come after its last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); start time is field 22.
    Some(Stat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// True if nothing listens on this TCP port of 127.0.0.1 (and, when `udp`,
/// nothing holds the UDP port either).
pub fn port_is_free(port: u16, udp: bool) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    TcpListener::bind(addr).is_ok() && (!udp || UdpSocket::bind(addr).is_ok())
}

/// Finds a program on PATH (the supervisor starts programs by path, and a
/// missing one must be named before anything is started).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Writes a file through a temporary name and a rename, so that a reader
/// (or a crash) never sees half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A binary of this workspace built beside `cityboard` (same profile), else
/// the one on PATH: the stack runs what was just built, never a stale copy
/// from elsewhere when a fresh one exists. A supervisor that outlived a
/// rebuild sees its own file as `PATH (deleted)` (Linux); the name beside
/// it is the new build, `cityboard` itself included.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name(name);
    if beside.is_file() {
        return Ok(beside);
    }
    which(name).with_context(|| {
        format!(
            "{name} not found beside {} nor on PATH: build it with `cargo build -p {name}`",
            exe.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_forged_start_time_is_not() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let reused = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!reused.is_alive());
    }

    #[test]
    fn a_bound_port_is_not_free() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!port_is_free(port, false));
        drop(listener);
    }

    #[test]
    fn a_pid_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        me.write(&path).unwrap();
        assert_eq!(ProcessId::read(&path), Some(me));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(ProcessId::read(&path), None);
    }
}
