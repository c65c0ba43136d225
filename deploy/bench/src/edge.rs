//! `cityboard bench edge-kv` and `cityboard bench edge-geo`: the edge
//! Worker's two hot paths under wrk, beside their ceilings on this machine.
//!
//! - `edge-kv`: `GET /post/{id}` on a city host for a 20 KB page that is in
//!   KV. The Worker keeps KV's answer in the isolate for `PAGE_CACHE_MS`
//!   (1 s by default), so most requests are served from the isolate; a
//!   third workerd runs the same Worker with `PAGE_CACHE_MS=0`
//!   (`rust-kv-read`: `post:{id}` read from KV and streamed every time).
//! - `edge-geo`: `GET /` on the apex from an address the embedded city
//!   database places in New York (the Worker parses the request, finds no
//!   cookie and no `cf` location, looks the address up, answers 302).
//!
//! Each at 8 and 64 concurrent connections, against, in the same run:
//! - the Rust Worker (`edge/build`) under workerd, `PAGES` on a fresh
//!   `cityboard edge-kv` holding the page;
//! - a minimal JavaScript Worker in the same workerd with the same KV
//!   service: `getWithMetadata`, kept for 1 s as the Rust Worker does, and
//!   return it, or a fixed 302
//!   (no lookup at all, so the Rust redirect is measured against less work);
//! - nginx serving the same bytes from a file, or `return 302`.
//!
//! workerd runs a Worker's requests on one thread, so nginx gets one worker
//! process too: the ratios compare one core with one core. wrk (2 threads)
//! shares the machine's two cores with them; absolute figures move with the
//! machine's load, ratios much less (all sides run back to back).
//!
//! A single run of workerd can stall (round 6 of BENCHMARKS.md: one run in
//! six at half the rate of its neighbours), so each connection count is
//! measured in rounds, every side once per round in turn, and the ratios
//! are of each side's median run. `CITYBOARD_BENCH_SECS` sets the seconds
//! per run (default 8), `CITYBOARD_BENCH_ROUNDS` the rounds (default 3).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cityboard_protocol::kv::{PostMeta, etag, post_key};
use serde::Serialize;

use super::edge_fixtures::{JS_WORKER, PAGE_BYTES, nginx_config, page_html};
use super::env_size;
use super::role::{Spawned, free_port, wait_listening};
use super::wrk::{Run, wrk_run};
use cityboard_deploy::edge::workerd::{Binding, js_worker};
use cityboard_deploy::edge::{self, EdgeConfig};
use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// The page's post id.
const POST_ID: u64 = 4_242_424_242;
/// Connection counts measured.
const CONNECTIONS: [u32; 2] = [8, 64];
/// The city the visitor is placed in and the page belongs to.
const CITY: &str = "newyork";

#[derive(Debug, Clone, Serialize)]
pub struct EdgeFigures {
    /// `edge-kv` or `edge-geo`.
    pub scenario: String,
    /// Seconds per run.
    pub seconds: u64,
    /// Rounds per connection count: every side runs once per round.
    pub rounds: u32,
    /// Every run, in the order run.
    pub runs: Vec<Run>,
    /// The Worker's modules gzipped together, bytes.
    pub worker_gzip_bytes: u64,
    /// The compact city database the range table is made from, bytes.
    pub mmdb_bytes: u64,
    /// The IPv4 range table the Worker embeds, bytes (raw).
    pub ranges_bytes: u64,
}

impl EdgeFigures {
    /// The run of `server` at `connections` with the median rate (the
    /// higher middle one for an even count).
    fn median(&self, server: &str, connections: u32) -> Option<&Run> {
        let mut runs: Vec<&Run> = self
            .runs
            .iter()
            .filter(|r| r.server == server && r.connections == connections)
            .collect();
        runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        runs.get(runs.len() / 2).copied()
    }

    fn print(&self) {
        println!(
            "\n{}: {} s per run, {} rounds, wrk 2 threads, keep-alive",
            self.scenario, self.seconds, self.rounds
        );
        println!(
            "{:<13} {:>5} {:>12} {:>10} {:>10}",
            "server", "conns", "req/s", "p50 ms", "p99 ms"
        );
        for r in &self.runs {
            println!(
                "{:<13} {:>5} {:>12.0} {:>10.2} {:>10.2}",
                r.server, r.connections, r.rps, r.p50_ms, r.p99_ms
            );
        }
        println!("medians (req/s of each side's median run):");
        for c in CONNECTIONS {
            let (Some(rust), Some(js), Some(nginx)) = (
                self.median("rust-worker", c),
                self.median("js-worker", c),
                self.median("nginx", c),
            ) else {
                continue;
            };
            println!(
                "  {c:>2} connections: Rust {:.0}, JS {:.0}, nginx {:.0}",
                rust.rps, js.rps, nginx.rps
            );
            println!(
                "ratios at {c:>2} connections: Rust/nginx {:.3} (1/{:.1}), Rust/JS {:.2}, JS/nginx {:.3}",
                rust.rps / nginx.rps,
                nginx.rps / rust.rps,
                rust.rps / js.rps,
                js.rps / nginx.rps
            );
            if let Some(read) = self.median("rust-kv-read", c) {
                println!(
                    "  keeping off (a KV read per request): Rust/nginx {:.3} (1/{:.1})",
                    read.rps / nginx.rps,
                    nginx.rps / read.rps
                );
            }
        }
        println!(
            "Worker: {} bytes gzip (modules together; embedded range table {} bytes raw, from the compact city db of {} bytes)",
            self.worker_gzip_bytes, self.ranges_bytes, self.mmdb_bytes
        );
    }
}

/// Runs `edge-kv` or `edge-geo`.
pub async fn run(home: &Home, topology: &Topology, scenario: &str, json: bool) -> Result<()> {
    let seconds = env_size("CITYBOARD_BENCH_SECS", 8);
    let rounds = env_size("CITYBOARD_BENCH_ROUNDS", 3).clamp(1, 100) as u32;
    let wrk = cityboard_deploy::process::which("wrk")
        .context("wrk not found (install step 'wrk + nginx'): run `deploy/install.sh base`")?;
    let dir = home.data_dir().join("bench-edge");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let logs = home.logs_dir();

    let page = page_html();
    let meta = PostMeta::page(CITY, 1, chrono::Utc::now().timestamp() + 30 * 24 * 3600);
    let mmdb = edge::embedded_database();
    let visitor = edge::addresses_in(&mmdb, &[CITY])?
        .remove(CITY)
        .with_context(|| format!("{} places no address in {CITY}", mmdb.display()))?
        .to_string();

    // The KV service, the two Workers, nginx: all on free ports.
    let kv_port = free_port()?;
    let _kv = Spawned::start(
        cityboard_deploy::edge_kv::command(&dir.join("kv"), kv_port, None)?,
        &logs.join("bench-edge.kv.log"),
        "edge-kv",
    )?;
    wait_listening(kv_port, "edge-kv").await?;
    cityboard_deploy::edge_kv::Client::new(kv_port)
        .put(
            &post_key(POST_ID),
            page.as_bytes(),
            Some(&serde_json::to_value(&meta)?),
            None,
        )
        .await?;

    let modules = edge::copy_modules(&edge::build_dir(), &dir.join("edge"))?;
    let workerd = edge::workerd_bin()?;
    // The Worker as the stack runs it, and (edge-kv only) with the
    // in-isolate keep of KV pages off.
    let start_rust = |name: &str, extra: &[Binding]| -> Result<(u16, Spawned)> {
        let port = free_port()?;
        let config = EdgeConfig {
            listen: format!("127.0.0.1:{port}"),
            kv: format!("127.0.0.1:{kv_port}"),
            kv_key: None,
            modules: &modules,
            apex: &topology.apex,
            cities: serde_json::to_string(&edge::cities(topology))?,
            origins: serde_json::to_string(&edge::origins(topology))?,
            extra,
        }
        .render();
        cityboard_deploy::secrets::write_private(
            &dir.join(format!("{name}.capnp")),
            config.as_bytes(),
        )?;
        let mut cmd = Command::new(&workerd);
        cmd.arg("serve")
            .arg(dir.join(format!("{name}.capnp")))
            .env(edge::FORWARD_KEY_ENV, "bench-forward-key");
        let spawned = Spawned::start(
            cmd,
            &logs.join(format!("bench-edge.{name}.log")),
            &format!("workerd ({name})"),
        )?;
        Ok((port, spawned))
    };
    let (rust_port, _rust) = start_rust("rust", &[])?;
    let kv_read = if scenario == "edge-kv" {
        Some(start_rust(
            "rust-kv-read",
            &[Binding::Text("PAGE_CACHE_MS", "0")],
        )?)
    } else {
        None
    };

    let js_port = free_port()?;
    std::fs::write(dir.join("baseline.js"), JS_WORKER)?;
    std::fs::write(
        dir.join("js.capnp"),
        js_worker(
            &format!("127.0.0.1:{js_port}"),
            &format!("127.0.0.1:{kv_port}"),
            "baseline.js",
        ),
    )?;
    let mut js_cmd = Command::new(&workerd);
    js_cmd.arg("serve").arg(dir.join("js.capnp"));
    let _js = Spawned::start(js_cmd, &logs.join("bench-edge.js.log"), "workerd (JS)")?;

    std::fs::create_dir_all(dir.join("nginx/html/post"))?;
    std::fs::write(dir.join(format!("nginx/html/post/{POST_ID}")), &page)?;
    let page_etag = etag(POST_ID, &meta);
    let (_nginx, nginx_port) = super::nginx::start(
        &dir.join("nginx"),
        &logs.join("bench-edge.nginx.log"),
        |port| nginx_config(&dir.join("nginx"), port, &page_etag),
    )
    .await?;
    // The servers measured, in the order they are run.
    let mut servers = vec![(rust_port, "rust-worker")];
    if let Some((port, _)) = &kv_read {
        servers.push((*port, "rust-kv-read"));
    }
    servers.extend([(js_port, "js-worker"), (nginx_port, "nginx")]);
    for (port, what) in &servers {
        wait_listening(*port, what).await?;
    }

    let city_host = format!("{CITY}.{}", topology.apex);
    let post_path = format!("/post/{POST_ID}");
    let (host, path, headers): (&str, &str, Vec<String>) = match scenario {
        "edge-kv" => (
            &city_host,
            &post_path,
            vec!["Accept: text/html".to_string()],
        ),
        "edge-geo" => (
            &topology.apex,
            "/",
            vec![format!("CF-Connecting-IP: {visitor}")],
        ),
        other => bail!("edge bench: unknown scenario {other:?}"),
    };
    // Every side must answer what the scenario asks before it is timed.
    let expect = if scenario == "edge-kv" { 200 } else { 302 };
    for &(port, what) in &servers {
        check_answer(
            port,
            host,
            path,
            &headers,
            expect,
            scenario == "edge-kv",
            what,
        )
        .await?;
    }

    let mut runs = Vec::new();
    for connections in CONNECTIONS {
        for round in 1..=rounds {
            for &(port, server) in &servers {
                if !json {
                    println!(
                        "{scenario}: {server}, {connections} connections, round {round}/{rounds} ..."
                    );
                }
                let run = wrk_run(
                    &wrk,
                    port,
                    host,
                    path,
                    &headers,
                    connections,
                    seconds,
                    server,
                )?;
                runs.push(run);
            }
        }
    }
    let figures = EdgeFigures {
        scenario: scenario.to_string(),
        seconds,
        rounds,
        runs,
        worker_gzip_bytes: worker_gzip_bytes(&edge::build_dir())?,
        mmdb_bytes: std::fs::metadata(&mmdb).map(|m| m.len()).unwrap_or(0),
        ranges_bytes: std::fs::metadata(mmdb.with_extension("ranges"))
            .map(|m| m.len())
            .unwrap_or(0),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        figures.print();
    }
    Ok(())
}

async fn check_answer(
    port: u16,
    host: &str,
    path: &str,
    headers: &[String],
    expect: u16,
    page: bool,
    what: &str,
) -> Result<()> {
    let mut all = vec![("host", host)];
    let split: Vec<(String, String)> = headers
        .iter()
        .filter_map(|h| h.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    all.extend(split.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let r = cityboard_deploy::http::request(port, "GET", path, &all, b"").await?;
    if r.status != expect {
        bail!(
            "{what} answered {} instead of {expect}: {}",
            r.status,
            r.text()
        );
    }
    if page && r.body.len() != PAGE_BYTES {
        bail!(
            "{what} served {} bytes instead of the {PAGE_BYTES}-byte page",
            r.body.len()
        );
    }
    Ok(())
}

/// Every module of the Worker, gzipped together (what the upload limit counts).
pub fn worker_gzip_bytes(build: &Path) -> Result<u64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(build)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "js" || e == "wasm"))
        .collect();
    files.sort();
    let out = Command::new("sh")
        .arg("-c")
        .arg("cat \"$@\" | gzip -9 | wc -c")
        .arg("sh")
        .args(&files)
        .output()
        .context("gzip")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("gzip size")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, connections: u32, rps: f64) -> Run {
        Run {
            server: server.to_string(),
            connections,
            rps,
            p99_ms: 1.0,
            p50_ms: 0.5,
        }
    }

    #[test]
    fn ratios_use_each_sides_median_run_not_its_stalled_one() {
        let figures = EdgeFigures {
            scenario: "edge-geo".into(),
            seconds: 1,
            rounds: 3,
            runs: vec![
                run("rust-worker", 8, 12_000.0),
                run("rust-worker", 64, 5_000.0),
                run("rust-worker", 8, 6_000.0),
                run("rust-worker", 8, 14_000.0),
                run("js-worker", 8, 15_000.0),
            ],
            worker_gzip_bytes: 0,
            mmdb_bytes: 0,
            ranges_bytes: 0,
        };
        assert_eq!(
            figures.median("rust-worker", 8).map(|r| r.rps),
            Some(12_000.0)
        );
        assert_eq!(
            figures.median("rust-worker", 64).map(|r| r.rps),
            Some(5_000.0)
        );
        assert_eq!(
            figures.median("js-worker", 8).map(|r| r.rps),
            Some(15_000.0)
        );
        assert!(figures.median("nginx", 8).is_none());
    }
}
