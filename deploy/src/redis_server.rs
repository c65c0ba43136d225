//! The two Redis instances of each region.
//!
//! The cache may lose anything at any time (allkeys-lru, no persistence).
//! The store holds rate limits, idempotency keys, nonces and revocations,
//! which must never be evicted to make room and must survive a SIGKILL: it
//! runs with noeviction and an append-only file. `appendfsync everysec` is
//! enough for that: a killed process's writes are already in the kernel's
//! page cache; only a machine crash could lose the last second.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::which;

/// Which of the two instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisRole {
    /// allkeys-lru, nothing on disk.
    Cache,
    /// noeviction, append-only file.
    Store,
}

impl RedisRole {
    /// The eviction policy this role runs with.
    pub fn policy(self) -> &'static str {
        match self {
            RedisRole::Cache => "allkeys-lru",
            RedisRole::Store => "noeviction",
        }
    }
}

/// The command that runs the instance in the foreground, logging to stdout.
pub fn command(role: RedisRole, data: &Path, port: u16) -> Result<Command> {
    let program = which("redis-server")
        .context("redis-server not found: install it with `deploy/install.sh base`")?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--dir")
        .arg(data)
        .args(["--daemonize", "no", "--logfile", "", "--save", ""])
        .args(["--maxmemory-policy", role.policy()]);
    match role {
        RedisRole::Cache => cmd.args(["--maxmemory", "256mb", "--appendonly", "no"]),
        RedisRole::Store => cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]),
    };
    Ok(cmd)
}

/// Ready when it answers PING.
pub async fn probe(port: u16) -> Result<()> {
    let reply = request(port, "PING").await?;
    if reply.starts_with("+PONG") {
        Ok(())
    } else {
        bail!("PING answered {reply:?}")
    }
}

/// Sends one inline command and returns the raw reply.
pub async fn request(port: u16, command: &str) -> Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .with_context(|| format!("redis on port {port} did not answer"))?
}
