//! Region-core processes a benchmark starts beside the stack's own (an api
//! with other options, a writer on a topic of its own), stopped when their
//! guard drops.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// A free local port (bound, then released for a process to take).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running `region-core` role; SIGTERM and wait on drop.
pub struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

impl Role {
    /// Starts `region-core ROLE --state … --region REGION ARGS…`, its
    /// stderr in the stack's logs as `log` (a file name).
    pub fn start(home: &Home, role: &str, region: &str, args: &[&str], log: &str) -> Result<Role> {
        let bin = cityboard_deploy::process::sibling_binary("region-core")?;
        let log = std::fs::File::create(home.logs_dir().join(log))?;
        let child = Command::new(&bin)
            .arg(role)
            .arg("--state")
            .arg(home.state_file())
            .args(["--region", region])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {role}", bin.display()))?;
        Ok(Role(child))
    }

    /// Starts `region-core serve` on a free port with the stack's secrets
    /// and `args`, and waits until it answers `/healthz`. Returns the role
    /// and its port.
    pub async fn api(
        home: &Home,
        region: &str,
        args: &[&str],
        log: &str,
    ) -> Result<(Role, ApiPorts)> {
        // The stack's limits (a bench stack's: deploy/limits-load.toml).
        let limits = Topology::load(&home.topology_file())?.limits;
        Role::api_with_limits(home, region, &limits, args, log).await
    }

    /// [`Role::api`] with rate limits of the caller's instead of the
    /// stack's (the limiter's cost, measured with it on and off).
    pub async fn api_with_limits(
        home: &Home,
        region: &str,
        limits: &region_core::limits::Limits,
        args: &[&str],
        log: &str,
    ) -> Result<(Role, ApiPorts)> {
        let port = free_port()?;
        let operator = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let operator_listen = format!("127.0.0.1:{operator}");
        let secrets = home.secrets_dir().display().to_string();
        let limits = serde_json::to_string(limits)?;
        let mut all = vec![
            "--limits",
            &limits,
            "--listen",
            &listen,
            "--operator-listen",
            &operator_listen,
            "--secrets-dir",
            &secrets,
        ];
        all.extend_from_slice(args);
        let role = Role::start(home, "serve", region, &all, log)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while cityboard_deploy::http::http_get_status(port, "/healthz")
            .await
            .ok()
            != Some(200)
        {
            if Instant::now() > deadline {
                bail!(
                    "bench api on port {port} not healthy in 30 s (log {} in {})",
                    log,
                    home.logs_dir().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok((
            role,
            ApiPorts {
                public: port,
                operator,
            },
        ))
    }
}

/// The ports of a bench api.
#[derive(Debug, Clone, Copy)]
pub struct ApiPorts {
    /// What the edge would forward to (signed requests).
    pub public: u16,
    /// `/metrics`.
    pub operator: u16,
}

/// Waits until something listens on `port` (30 s at most); `what` names it,
/// with where its log is, in the error.
pub async fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port} within 30 s (see its log)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Any other child process of a benchmark (a Worker under workerd, nginx),
/// its output to a log file; SIGTERM on drop, SIGKILL 5 s later.
pub struct Spawned(Child);

impl Spawned {
    /// Starts `cmd` with stdout and stderr to `log`; `what` names it in
    /// errors.
    pub fn start(mut cmd: Command, log: &Path, what: &str) -> Result<Spawned> {
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", cmd.get_program()))?;
        Ok(Spawned(child))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
