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

/// The secret (in the stack's `secrets/`) both instances of every region
/// require of their clients (`requirepass`).
pub const PASSWORD_FILE: &str = "redis.password";

/// The URL the roles connect with: the password in it, so a URL must never
/// be printed or logged as it is (`region_core::redact::url`).
pub fn url(port: u16, password: &str) -> String {
    format!("redis://:{password}@127.0.0.1:{port}/")
}

/// The command that runs the instance in the foreground, logging to stdout,
/// requiring `password` of every client. The password goes in a config file
/// of mode 0600 in `data`, not on the command line, where `ps` shows it.
pub fn command(role: RedisRole, data: &Path, port: u16, password: &str) -> Result<Command> {
    let program = which("redis-server")
        .context("redis-server not found: install it with `deploy/install.sh base`")?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let auth = data.join("auth.conf");
    crate::secrets::write_private(&auth, format!("requirepass {password}\n").as_bytes())?;
    let mut cmd = Command::new(program);
    // The config file must be the first argument.
    cmd.arg(&auth)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
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

/// Ready when it answers PING after AUTH with `password`.
pub async fn probe(port: u16, password: &str) -> Result<()> {
    let reply = request(port, &format!("AUTH {password}\r\nPING"), 2).await?;
    if reply.starts_with("+OK\r\n+PONG") {
        Ok(())
    } else {
        bail!("AUTH, PING answered {reply:?}")
    }
}

/// Sends inline commands (one a line) and returns the raw replies, once
/// `replies` lines have come.
pub async fn request(port: u16, commands: &str, replies: usize) -> Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(format!("{commands}\r\n").as_bytes())
            .await?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while got.iter().filter(|b| **b == b'\n').count() < replies {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        anyhow::Ok(String::from_utf8_lossy(&got).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .with_context(|| format!("redis on port {port} did not answer"))?
}
