//! nginx as a benchmark's baseline: the same bytes from a file, served by
//! a server that does nothing else. Each scenario gives its own `server`
//! locations; the rest of the configuration is this one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::role::{Spawned, free_port, wait_listening};

/// The nginx binary: on PATH, or where Debian puts it.
fn binary() -> Result<PathBuf> {
    cityboard_deploy::process::which("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .context("nginx not found (install step 'wrk + nginx'): run `deploy/install.sh base`")
}

/// A configuration for nginx under `prefix` (its `html/` the root) with
/// `workers` processes, listening on `port` with the `locations` given
/// (nginx syntax), without access logs and with keep-alive connections
/// that last the whole run.
pub fn config(prefix: &Path, workers: u32, port: u16, locations: &str) -> String {
    format!(
        r#"# A cityboard benchmark's baseline.
worker_processes {workers};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/tmp;
  proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp;
  uwsgi_temp_path {prefix}/tmp;
  scgi_temp_path {prefix}/tmp;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    root {prefix}/html;
{locations}
  }}
}}
"#,
        prefix = prefix.display()
    )
}

/// Starts nginx in `prefix` (which holds `html/`) with the configuration
/// `make_config` writes for a free port; returns its guard and port once it
/// listens. Its output goes to `log`.
pub async fn start(
    prefix: &Path,
    log: &Path,
    make_config: impl FnOnce(u16) -> String,
) -> Result<(Spawned, u16)> {
    let port = free_port()?;
    std::fs::create_dir_all(prefix.join("tmp"))?;
    std::fs::write(prefix.join("nginx.conf"), make_config(port))?;
    let mut cmd = Command::new(binary()?);
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .args(["-g", "daemon off;"]);
    let spawned = Spawned::start(cmd, log, "nginx")?;
    wait_listening(port, "nginx").await?;
    Ok((spawned, port))
}
