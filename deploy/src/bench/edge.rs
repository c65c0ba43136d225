//! `cityboard bench edge-kv` and `cityboard bench edge-geo`: the edge
//! Worker's two hot paths under wrk, beside their ceilings on this machine.
//!
//! - `edge-kv`: `GET /post/{id}` on a city host for a 20 KB page that is in
//!   KV (the Worker reads `post:{id}` with its metadata and streams it).
//! - `edge-geo`: `GET /` on the apex from an address the embedded city
//!   database places in New York (the Worker parses the request, finds no
//!   cookie and no `cf` location, looks the address up, answers 302).
//!
//! Each at 8 and 64 concurrent connections, against, in the same run:
//! - the Rust Worker (`edge/build`) under workerd, `PAGES` on a fresh
//!   `cityboard edge-kv` holding the page;
//! - a minimal JavaScript Worker in the same workerd with the same KV
//!   service: `getWithMetadata` as a stream and return it, or a fixed 302
//!   (no lookup at all, so the Rust redirect is measured against less work);
//! - nginx serving the same bytes from a file, or `return 302`.
//!
//! workerd runs a Worker's requests on one thread, so nginx gets one worker
//! process too: the ratios compare one core with one core. wrk (2 threads)
//! shares the machine's two cores with them; absolute figures move with the
//! machine's load, ratios much less (all sides run back to back).
//! `CITYBOARD_BENCH_SECS` sets the seconds per measurement (default 8).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cityboard_protocol::kv::{PostMeta, etag, post_key};
use serde::Serialize;

use crate::edge::{self, EdgeConfig};
use crate::edge_kv;
use crate::home::Home;
use crate::topology::Topology;

/// The page's size.
const PAGE_BYTES: usize = 20 * 1024;
/// The page's post id.
const POST_ID: u64 = 4_242_424_242;
/// Connection counts measured.
const CONNECTIONS: [u32; 2] = [8, 64];
/// The city the visitor is placed in and the page belongs to.
const CITY: &str = "newyork";

/// The minimal JavaScript Worker: the same two answers with nothing else.
const JS_WORKER: &str = r#"
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path.startsWith("/post/")) {
      const id = path.slice(6);
      const { value, metadata } = await env.PAGES.getWithMetadata("post:" + id, "stream");
      if (value === null) return new Response("not in KV", { status: 404 });
      return new Response(value, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "etag": `"p${id}v${metadata.version}"`,
          "cache-control": "public, max-age=60",
        },
      });
    }
    return new Response(null, {
      status: 302,
      headers: { "location": "http://newyork.cityboard.localhost/", "cache-control": "private, no-store" },
    });
  },
};
"#;

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
#[derive(Debug, Clone, Serialize)]
pub struct EdgeFigures {
    /// `edge-kv` or `edge-geo`.
    pub scenario: String,
    /// Seconds per run.
    pub seconds: u64,
    /// Every run.
    pub runs: Vec<Run>,
    /// The Worker's modules gzipped together, bytes.
    pub worker_gzip_bytes: u64,
    /// The embedded city database, bytes (raw).
    pub mmdb_bytes: u64,
}

impl EdgeFigures {
    fn find(&self, server: &str, connections: u32) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.server == server && r.connections == connections)
    }

    fn print(&self) {
        println!(
            "\n{}: {} s per run, wrk 2 threads, keep-alive",
            self.scenario, self.seconds
        );
        println!(
            "{:<12} {:>5} {:>12} {:>10} {:>10}",
            "server", "conns", "req/s", "p50 ms", "p99 ms"
        );
        for r in &self.runs {
            println!(
                "{:<12} {:>5} {:>12.0} {:>10.2} {:>10.2}",
                r.server, r.connections, r.rps, r.p50_ms, r.p99_ms
            );
        }
        for c in CONNECTIONS {
            let (Some(rust), Some(js), Some(nginx)) = (
                self.find("rust-worker", c),
                self.find("js-worker", c),
                self.find("nginx", c),
            ) else {
                continue;
            };
            println!(
                "ratios at {c:>2} connections: Rust/nginx {:.3} (1/{:.1}), Rust/JS {:.2}, JS/nginx {:.3}",
                rust.rps / nginx.rps,
                nginx.rps / rust.rps,
                rust.rps / js.rps,
                js.rps / nginx.rps
            );
        }
        println!(
            "Worker: {} bytes gzip (modules together; embedded city db {} bytes raw)",
            self.worker_gzip_bytes, self.mmdb_bytes
        );
    }
}

/// Runs `edge-kv` or `edge-geo`.
pub async fn run(home: &Home, topology: &Topology, scenario: &str, json: bool) -> Result<()> {
    let seconds = std::env::var("CITYBOARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8u64);
    let wrk = crate::process::which("wrk")
        .context("wrk not found (install step 'wrk + nginx'): run `deploy/install.sh base`")?;
    let nginx = crate::process::which("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .context("nginx not found (install step 'wrk + nginx'): run `deploy/install.sh base`")?;
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
        edge_kv::command(&dir.join("kv"), kv_port)?,
        &logs.join("bench-edge.kv.log"),
        "edge-kv",
    )?;
    wait_listening(kv_port, "edge-kv").await?;
    edge_kv::Client { port: kv_port }
        .put(
            &post_key(POST_ID),
            page.as_bytes(),
            Some(&serde_json::to_value(&meta)?),
            None,
        )
        .await?;

    let rust_port = free_port()?;
    let modules = edge::copy_modules(&edge::build_dir(), &dir.join("edge"))?;
    let config = edge::render(&EdgeConfig {
        listen: format!("127.0.0.1:{rust_port}"),
        kv: format!("127.0.0.1:{kv_port}"),
        modules: &modules,
        apex: &topology.apex,
        cities: serde_json::to_string(&edge::cities(topology))?,
        origins: serde_json::to_string(&edge::origins(topology))?,
        extra_text: &[],
    });
    edge::write_private(&dir.join("rust.capnp"), config.as_bytes())?;
    let workerd = edge::workerd_bin()?;
    let mut rust_cmd = Command::new(&workerd);
    rust_cmd
        .arg("serve")
        .arg(dir.join("rust.capnp"))
        .env(edge::FORWARD_KEY_ENV, "bench-forward-key");
    let _rust = Spawned::start(
        rust_cmd,
        &logs.join("bench-edge.rust.log"),
        "workerd (Rust)",
    )?;

    let js_port = free_port()?;
    std::fs::write(dir.join("baseline.js"), JS_WORKER)?;
    std::fs::write(dir.join("js.capnp"), js_config(js_port, kv_port))?;
    let mut js_cmd = Command::new(&workerd);
    js_cmd.arg("serve").arg(dir.join("js.capnp"));
    let _js = Spawned::start(js_cmd, &logs.join("bench-edge.js.log"), "workerd (JS)")?;

    let nginx_port = free_port()?;
    std::fs::create_dir_all(dir.join("nginx/html/post"))?;
    std::fs::write(dir.join(format!("nginx/html/post/{POST_ID}")), &page)?;
    std::fs::write(
        dir.join("nginx/nginx.conf"),
        nginx_config(&dir.join("nginx"), nginx_port, &etag(POST_ID, &meta)),
    )?;
    let mut nginx_cmd = Command::new(&nginx);
    nginx_cmd
        .arg("-p")
        .arg(dir.join("nginx"))
        .arg("-c")
        .arg(dir.join("nginx/nginx.conf"))
        .args(["-g", "daemon off;"]);
    let _nginx = Spawned::start(nginx_cmd, &logs.join("bench-edge.nginx.log"), "nginx")?;
    for (port, what) in [
        (rust_port, "workerd (Rust)"),
        (js_port, "workerd (JS)"),
        (nginx_port, "nginx"),
    ] {
        wait_listening(port, what).await?;
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
    for (port, what) in [
        (rust_port, "rust-worker"),
        (js_port, "js-worker"),
        (nginx_port, "nginx"),
    ] {
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
        for (port, server) in [
            (rust_port, "rust-worker"),
            (js_port, "js-worker"),
            (nginx_port, "nginx"),
        ] {
            if !json {
                println!("{scenario}: {server}, {connections} connections ...");
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
    let figures = EdgeFigures {
        scenario: scenario.to_string(),
        seconds,
        runs,
        worker_gzip_bytes: worker_gzip_bytes(&edge::build_dir())?,
        mmdb_bytes: std::fs::metadata(&mmdb).map(|m| m.len()).unwrap_or(0),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        figures.print();
    }
    Ok(())
}

/// A 20 KB HTML page shaped like a rendered post.
fn page_html() -> String {
    let mut page = String::from(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Vintage oak desk - New York - cityboard</title></head><body><main><h1>Vintage oak desk</h1>",
    );
    let mut n = 0;
    while page.len() < PAGE_BYTES {
        page.push_str(&format!(
            "<p>Paragraph {n}: solid oak, three drawers, pick up in Brooklyn, cash only.</p>"
        ));
        n += 1;
    }
    page.truncate(PAGE_BYTES - 22);
    page.push_str("</main></body></html>\n");
    page
}

fn js_config(port: u16, kv_port: u16) -> String {
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .main),
    (name = "kv", external = (address = "127.0.0.1:{kv_port}", http = ())),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{port}", service = "main")],
);
const main :Workerd.Worker = (
  modules = [(name = "baseline.js", esModule = embed "baseline.js")],
  compatibilityDate = "{}",
  bindings = [(name = "PAGES", kvNamespace = "kv")],
);
"#,
        edge::COMPATIBILITY_DATE
    )
}

fn nginx_config(prefix: &Path, port: u16, etag: &str) -> String {
    format!(
        r#"# cityboard bench edge-*: the ceiling on this machine, one worker like workerd's one thread.
worker_processes 1;
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
    location /post/ {{
      default_type "text/html; charset=utf-8";
      etag off;
      add_header ETag '{etag}';
      add_header Cache-Control "public, max-age=60";
    }}
    location = / {{
      add_header Cache-Control "private, no-store" always;
      return 302 http://newyork.cityboard.localhost/;
    }}
  }}
}}
"#,
        prefix = prefix.display()
    )
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
    let r = crate::http::request(port, "GET", path, &all, b"").await?;
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

#[allow(clippy::too_many_arguments)]
fn wrk_run(
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

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_listening(port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!(
                "{what} did not listen on port {port} within 30 s (see its log under logs/bench-edge.*)"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A child process of the benchmark, stopped when dropped.
struct Spawned(Child);

impl Spawned {
    fn start(mut cmd: Command, log: &Path, what: &str) -> Result<Spawned> {
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

    #[test]
    fn the_page_is_20_kb_of_html() {
        let page = page_html();
        assert_eq!(page.len(), PAGE_BYTES);
        assert!(page.ends_with("</html>\n"));
    }
}
