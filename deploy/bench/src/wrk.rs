//! wrk as the load generator of the edge benchmarks: one run, its
//! `--latency` report read back into figures.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

/// One wrk run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Who answered: `rust-worker`, `js-worker`, `nginx`.
    pub server: String,
    /// Concurrent connections.
    pub connections: u32,
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
}

/// A scenario's figures.
#[allow(clippy::too_many_arguments)]
pub fn wrk_run(
    wrk: &Path,
    port: u16,
    host: &str,
    path: &str,
    headers: &[String],
    connections: u32,
    seconds: u64,
    server: &str,
) -> Result<Run> {
    let mut cmd = Command::new(wrk);
    cmd.args(["-t", "2", "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency"])
        .args(["-H", &format!("Host: {host}")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report = parse_wrk(&text).with_context(|| format!("reading wrk's report:\n{text}"))?;
    if report.errors > 0 {
        bail!(
            "{server}: {} answers were errors (non-2xx/3xx or socket errors):\n{text}",
            report.errors
        );
    }
    Ok(Run {
        server: server.to_string(),
        connections,
        rps: report.rps,
        p50_ms: report.p50_ms,
        p99_ms: report.p99_ms,
    })
}

/// What a wrk `--latency` report says.
#[derive(Debug, PartialEq)]
struct WrkReport {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn parse_wrk(text: &str) -> Result<WrkReport> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => rps = words.next().and_then(|v| v.parse().ok()),
            Some("50%") => p50 = words.next().and_then(duration_ms),
            Some("99%") => p99 = words.next().and_then(duration_ms),
            Some("Non-2xx") => {
                errors += line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
            }
            Some("Socket") => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Ok(WrkReport {
        rps: rps.context("no Requests/sec line")?,
        p50_ms: p50.context("no 50% line")?,
        p99_ms: p99.context("no 99% line")?,
        errors,
    })
}

/// `635.00us`, `2.10ms`, `1.02s` → milliseconds.
fn duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrk_report_is_read() {
        let text = "Running 8s test @ http://127.0.0.1:1/\n  2 threads and 8 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.10ms  200.00us   9.00ms   90.00%\n  Latency Distribution\n     50%  635.00us\n     75%    1.00ms\n     90%    1.50ms\n     99%    2.10ms\n  96000 requests in 8.00s, 1.90GB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  12000.50\nTransfer/sec:    240.00MB\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.rps, 12000.5);
        assert!((r.p50_ms - 0.635).abs() < 1e-9);
        assert!((r.p99_ms - 2.1).abs() < 1e-9);
        assert_eq!(r.errors, 3);
        assert_eq!(duration_ms("1.5s"), Some(1500.0));
    }
}
