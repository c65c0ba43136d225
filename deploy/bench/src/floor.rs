//! The floor under `origin-read`'s view: what the work every view must do
//! costs when servers written in C do it and the api does nothing.
//!
//! A signed view is one HTTP exchange with the load generator, one nonce
//! claim in the store Redis (`SET NX EX`, design §4) and one point read in
//! Postgres. Each is measured alone on the same two cores, by the same kind
//! of 16 clients: nginx answering the view's own bytes to the bench's
//! clients, `redis-benchmark` sending the api's `SET`, and `pgbench -S`. On
//! a machine whose cores every process shares, the costs of work done one
//! after another add up, so `1 / (1/http + 1/nonce + 1/read)` bounds the
//! views a second any api could serve here: the figure the view/pgbench
//! target can be weighed against.

use std::process::Command;

use anyhow::{Context, Result, bail};

use super::role::Spawned;
use cityboard_deploy::home::Home;

/// Requests `redis-benchmark` sends (about 5-8 s here).
const REDIS_REQUESTS: u32 = 400_000;

/// The floor's parts, each in operations a second.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// The bench's clients against nginx serving a view's bytes.
    pub http_rps: f64,
    /// `redis-benchmark`'s `SET key 1 NX EX 60` on the store Redis.
    pub nonce_rps: f64,
}

impl Floor {
    /// Views a second if the api cost nothing: the three parts' costs added.
    pub fn bound(&self, read_tps: f64) -> f64 {
        if self.http_rps <= 0.0 || self.nonce_rps <= 0.0 || read_tps <= 0.0 {
            return 0.0;
        }
        1.0 / (1.0 / self.http_rps + 1.0 / self.nonce_rps + 1.0 / read_tps)
    }
}

/// nginx (two workers, as the api has two runtime threads) serving `body`
/// as JSON at every `/post/...` path; returns its guard and port.
pub async fn nginx_serving(home: &Home, body: &[u8]) -> Result<(Spawned, u16)> {
    let dir = home.data_dir().join("bench-origin-floor");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("html"))?;
    std::fs::write(dir.join("html/view.json"), body)?;
    let locations = r#"    location /post/ {
      default_type application/json;
      etag off;
      try_files /view.json =404;
    }"#;
    super::nginx::start(
        &dir,
        &home.logs_dir().join("bench-origin-floor.nginx.log"),
        |port| super::nginx::config(&dir, 2, port, locations),
    )
    .await
}

/// `redis-benchmark` with `clients` connections sending the api's nonce
/// claim (`SET <random key> 1 NX EX 60`) to the Redis on `port`, which
/// requires `password` (given with `-a`: the bench's own stack, whose
/// secrets are local). The keys are the bench's own and expire within a
/// minute.
pub fn nonce_claims(port: u16, password: &str, clients: usize) -> Result<f64> {
    let tool = cityboard_deploy::process::which("redis-benchmark").context(
        "redis-benchmark not found (it comes with redis-server): run `deploy/install.sh base`",
    )?;
    let out = Command::new(tool)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-a", password])
        .args(["-c", &clients.to_string()])
        .args(["-n", &REDIS_REQUESTS.to_string()])
        .args(["-r", "1000000000", "-q"])
        .args(["SET", "cb:bench:nonce:__rand_int__", "1", "NX", "EX", "60"])
        .output()
        .context("running redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    requests_per_second(&String::from_utf8_lossy(&out.stdout))
        .context("redis-benchmark printed no 'requests per second'")
}

/// The figure of `redis-benchmark -q`'s last report ("...: 57413.52
/// requests per second, p50=0.175 msec"); progress reports before it are
/// separated by carriage returns.
fn requests_per_second(output: &str) -> Option<f64> {
    let last = output
        .split(['\r', '\n'])
        .rfind(|l| l.contains("requests per second"))?;
    let before = last.split(" requests per second").next()?;
    before.rsplit([' ', ':']).next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_report_of_redis_benchmark() {
        let out = "SET k: rps=0.0 (overall: -nan) avg_msec=-nan\rSET k: rps=58466.1 (overall: 58466.1)\r\
                   SET cb:bench:nonce:__rand_int__ 1 NX EX 60: 57413.52 requests per second, p50=0.175 msec\n\n";
        assert_eq!(requests_per_second(out), Some(57413.52));
        assert_eq!(requests_per_second("nothing here"), None);
    }

    #[test]
    fn the_bound_adds_the_costs_of_the_parts() {
        let f = Floor {
            http_rps: 60_000.0,
            nonce_rps: 60_000.0,
        };
        // 1 / (1/60k + 1/60k + 1/60k) = 20k.
        assert!((f.bound(60_000.0) - 20_000.0).abs() < 1e-6);
        assert_eq!(f.bound(0.0), 0.0);
    }
}
