//! `cityboard bench reshard`: moving a city between two shards of a region
//! with `shard-tool` under a steady write load (issue 26, point 7).
//!
//! The scenario starts a stack of its own (one region `solo`, shard-1 with
//! `newyork` and `boston`, shard-2 with `philadelphia`, no replicas, port
//! base 31000) so a move never touches the stack the operator runs, and
//! seeds `newyork` with N posts by COPY. An open-loop load posts to
//! `newyork` through the stack's api for the whole run. Then:
//!
//! 1. Quiet windows: the load alone, for the POST p99 without cutovers,
//!    one before the copies and one after the switches.
//! 2. Baseline copy: `COPY (SELECT … WHERE city = …) TO STDOUT` on shard-1
//!    piped into `COPY … FROM STDIN` of empty `bench_<table>` copies of
//!    every city-keyed table on shard-2 (`LIKE … INCLUDING ALL`: the
//!    target's indexes, GIN included), one transaction, committed; rows/s.
//! 3. Ours: `shard-tool move newyork --to shard-2`; rows over all moved
//!    tables / (`copy_started_at` to `copy_finished_at` of the job row).
//! 4. Switches: `shard-tool cutover JOB` and `rollback JOB` alternately;
//!    the pauses are the job row's `progress.pauses` (freeze to flip, from
//!    the fence's timestamps); the load's POST p99 over the requests due
//!    while a switch command ran, beside the quiet window's.
//!
//! Sizes: `--posts N` or `CITYBOARD_BENCH_POSTS` (default 1 000 000)
//! seeded posts, `--switches N` or `CITYBOARD_BENCH_SWITCHES` (default
//! 100) cutovers plus rollbacks,
//! `CITYBOARD_BENCH_RATE` (default 100) posts/s of load,
//! `CITYBOARD_BENCH_SECS` (default 20) seconds of each quiet window,
//! `CITYBOARD_BENCH_PORT_BASE` (default 31000). The stack lives in
//! `CITYBOARD_BENCH_RESHARD_DIR` (default `.cityboard-bench-reshard`) and is
//! stopped and deleted at the end (`CITYBOARD_BENCH_KEEP=1` keeps it).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::env_size;
use super::own_stack::{OwnStack, path, sibling, text};
use super::write_load::{self, percentile};
use cityboard_deploy::home::Home;
use cityboard_deploy::postgres;
use cityboard_deploy::topology::{Topology, two_shard_topology_text};

/// The city that moves.
const CITY: &str = "newyork";
/// Where it moves to.
const TO_SHARD: &str = "shard-2";
/// Connections of the load (each sends its share of the rate).
const LOAD_CONNECTIONS: usize = 16;
/// Users the load posts as.
const LOAD_USERS: usize = 8;
/// Targets of issue 26, point 7.
const COPY_RATIO_TARGET: f64 = 0.5;
const PAUSE_P99_TARGET_MS: f64 = 250.0;
const PAUSE_MAX_TARGET_MS: f64 = 1000.0;
const POST_P99_EXTRA_TARGET_MS: f64 = 250.0;

/// Everything the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Reshard {
    /// Posts seeded into the city.
    pub posts: u64,
    /// Load offered, posts/s.
    pub load_rate: f64,
    /// Baseline: rows piped by COPY TO / COPY FROM.
    pub baseline_rows: i64,
    /// Baseline rows/s.
    pub baseline_rows_per_s: f64,
    /// Rows over all moved tables (the job's `rows_total`).
    pub move_rows: i64,
    /// Subscription start to all tables ready, s.
    pub move_copy_s: f64,
    /// Ours, rows/s.
    pub move_rows_per_s: f64,
    /// Switch commands run.
    pub switches: usize,
    /// Of those, exited other than 0.
    pub switch_failures: usize,
    /// Pauses recorded by the job (freeze to flip), with outcome `flipped`.
    pub pauses_flipped: usize,
    /// Pauses that ended in an abort.
    pub pauses_aborted: usize,
    /// Pause p50, ms.
    pub pause_p50_ms: f64,
    /// Pause p99, ms.
    pub pause_p99_ms: f64,
    /// Longest pause, ms.
    pub pause_max_ms: f64,
    /// Wall time of one switch command, median, ms.
    pub switch_command_p50_ms: f64,
    /// POSTs due while a switch command ran.
    pub window_posts: usize,
    /// Their p99, ms (from when each was due: open loop).
    pub window_post_p99_ms: f64,
    /// POSTs of the two quiet windows.
    pub quiet_posts: usize,
    /// Their p99, ms.
    pub quiet_post_p99_ms: f64,
    /// Answers of the whole load other than 201/202 (or broken).
    pub load_errors: u64,
    /// Answers 5xx.
    pub load_5xx: u64,
}

/// Runs shard-tool on the stack in `home`, as that stack's superuser.
fn shard_tool_on(home: &Home, program: &Path, args: &[&str]) -> Result<Output> {
    std::process::Command::new(program)
        .envs(postgres::client_env(&home.secrets_dir(), postgres::ADMIN)?)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))
}

/// Runs the scenario on a stack of its own.
pub async fn run(json: bool, knobs: super::Knobs) -> Result<()> {
    let posts = knobs
        .posts
        .unwrap_or_else(|| env_size("CITYBOARD_BENCH_POSTS", 1_000_000));
    let switches = knobs
        .switches
        .unwrap_or_else(|| env_size("CITYBOARD_BENCH_SWITCHES", 100)) as usize;
    let rate = env_size("CITYBOARD_BENCH_RATE", 100) as f64;
    let quiet = env_size("CITYBOARD_BENCH_SECS", 20);
    let port_base = env_size("CITYBOARD_BENCH_PORT_BASE", 31000);
    let root = PathBuf::from(
        std::env::var("CITYBOARD_BENCH_RESHARD_DIR")
            .unwrap_or_else(|_| ".cityboard-bench-reshard".into()),
    );
    let shard_tool = sibling("shard-tool")?;
    let cityboard = sibling("cityboard")?;
    println!(
        "reshard: {CITY} with {posts} posts, shard-1 -> {TO_SHARD}, load {rate:.0} posts/s, \
         {switches} switches, stack in {} (port base {port_base})",
        root.display()
    );
    let started = Instant::now();
    let port_base = u16::try_from(port_base)
        .map_err(|_| anyhow::anyhow!("port base {port_base} is not a port"))?;
    let stack = OwnStack::start(root, cityboard, &two_shard_topology_text(port_base, 0), &[])?;
    println!("  stack up in {:.0} s", started.elapsed().as_secs_f64());
    let home = Home::new(&stack.home)?;
    let topo = Topology::load(&home.topology_file())?;
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(home.state_file())?)?;
    let region = &state["regions"][0];
    // Its own stack, with passwords of its own: the superuser's is put into
    // the URLs here, and into shard-tool's environment ([`run_cmd`]).
    let url = |v: &serde_json::Value| {
        v.as_str()
            .context("state.json")
            .and_then(|u| postgres::admin_url(u, &home.secrets_dir()))
    };
    let catalog_url = url(&region["catalog_url"])?;
    let source_url = url(&region["shards"][0]["primary_url"])?;
    let target_url = url(&region["shards"][1]["primary_url"])?;

    let t = Instant::now();
    seed(&source_url, posts).await?;
    println!(
        "  seeded {posts} posts by COPY in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let host = format!("{CITY}.{}", topo.apex);
    let key = cityboard_protocol::sign::Key::new(
        cityboard_deploy::secrets::read_secret(
            &home.secrets_dir(),
            cityboard_deploy::edge::FORWARD_KEY_FILE,
        )?
        .into_bytes(),
    );
    let api = topo.region_ports(0).api;
    let users = write_load::sign_up(api, &host, &key, LOAD_USERS).await?;
    let load = Load::start(api, host, key, users, rate);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let q0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let quiet_window = (q0, Instant::now());
    println!("  quiet window: {quiet} s of load alone");

    let (baseline_rows, baseline_s) = copy_baseline(&source_url, &target_url).await?;
    let baseline_rate = baseline_rows as f64 / baseline_s;
    println!(
        "  baseline COPY TO | COPY FROM: {baseline_rows} rows in {baseline_s:.1} s, {baseline_rate:.0} rows/s"
    );

    let state_file = home.state_file();
    let st = path(&state_file)?;
    let out = shard_tool_on(
        &home,
        &shard_tool,
        &["--state", st, "--json", "move", CITY, "--to", TO_SHARD],
    )?;
    if !out.status.success() {
        bail!(
            "shard-tool --state {st} --json move {CITY} --to {TO_SHARD} exited {:?}:\n{}",
            out.status.code(),
            text(&out)
        );
    }
    let job = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|l| l["job"].as_i64())
        .with_context(|| format!("no job id in move's output:\n{}", text(&out)))?;
    let progress = job_progress(&catalog_url, job).await?;
    let move_rows = progress["rows_total"].as_i64().unwrap_or(0);
    let stamp = |k: &str| -> Result<chrono::DateTime<chrono::Utc>> {
        progress[k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("job {job}'s progress has no {k}: {progress}"))
    };
    let move_s = (stamp("copy_finished_at")? - stamp("copy_started_at")?)
        .num_microseconds()
        .unwrap_or(0) as f64
        / 1e6;
    let move_rate = move_rows as f64 / move_s.max(1e-3);
    println!(
        "  shard-tool move (job {job}): {move_rows} rows in {move_s:.1} s, {move_rate:.0} rows/s"
    );

    let mut windows = Vec::new();
    let mut failures = 0;
    let mut command_ms = Vec::new();
    for i in 0..switches {
        let what = if i % 2 == 0 { "cutover" } else { "rollback" };
        let job_s = job.to_string();
        let t0 = Instant::now();
        let out = shard_tool_on(&home, &shard_tool, &["--state", st, "--json", what, &job_s])?;
        let t1 = Instant::now();
        windows.push((t0, t1));
        command_ms.push(t1 - t0);
        if !out.status.success() {
            failures += 1;
            println!(
                "  switch {i}: shard-tool --state {st} --json {what} {job} exited {:?}:\n{}",
                out.status.code(),
                text(&out)
            );
            if failures >= 5 {
                println!("  five switches failed: no more");
                break;
            }
        }
        if (i + 1) % 10 == 0 {
            println!("  {} switches done", i + 1);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second quiet window after the switches: the first one follows the
    // seed (autovacuum and ANALYZE of a million rows), and the two
    // together make the baseline of neither moment alone.
    let q1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(quiet)).await;
    let quiet_windows = [quiet_window, (q1, Instant::now())];
    let samples = load.stop().await?;

    let progress = job_progress(&catalog_url, job).await?;
    let pauses = progress["pauses"].as_array().cloned().unwrap_or_default();
    let mut flipped: Vec<f64> = pauses
        .iter()
        .filter(|p| p["outcome"] == "flipped")
        .filter_map(|p| p["ms"].as_f64())
        .collect();
    flipped.sort_by(f64::total_cmp);
    let aborted = pauses.iter().filter(|p| p["outcome"] != "flipped").count();
    let all_ms: Vec<f64> = {
        let mut v: Vec<f64> = pauses.iter().filter_map(|p| p["ms"].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let pct = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    command_ms.sort();

    let in_window = |s: &Sample| windows.iter().any(|(a, b)| s.due >= *a && s.due <= *b);
    let mut window_lat: Vec<Duration> = samples
        .iter()
        .filter(|s| in_window(s))
        .map(|s| s.took)
        .collect();
    let mut quiet_lat: Vec<Duration> = samples
        .iter()
        .filter(|s| {
            quiet_windows
                .iter()
                .any(|(a, b)| s.due >= *a && s.due <= *b)
        })
        .map(|s| s.took)
        .collect();
    window_lat.sort();
    quiet_lat.sort();
    let figures = Reshard {
        posts,
        load_rate: rate,
        baseline_rows,
        baseline_rows_per_s: baseline_rate,
        move_rows,
        move_copy_s: move_s,
        move_rows_per_s: move_rate,
        switches: windows.len(),
        switch_failures: failures,
        pauses_flipped: flipped.len(),
        pauses_aborted: aborted,
        pause_p50_ms: pct(&all_ms, 0.50),
        pause_p99_ms: pct(&all_ms, 0.99),
        pause_max_ms: all_ms.last().copied().unwrap_or(0.0),
        switch_command_p50_ms: percentile(&command_ms, 0.50),
        window_posts: window_lat.len(),
        window_post_p99_ms: percentile(&window_lat, 0.99),
        quiet_posts: quiet_lat.len(),
        quiet_post_p99_ms: percentile(&quiet_lat, 0.99),
        load_errors: samples
            .iter()
            .filter(|s| !matches!(s.status, Some(201 | 202)))
            .count() as u64,
        load_5xx: samples
            .iter()
            .filter(|s| s.status.is_some_and(|c| c >= 500))
            .count() as u64,
    };
    print(&figures, json)?;
    drop(stack);
    Ok(())
}

/// One figure line: printed as a table row, and as one JSON object with
/// `--json`.
#[derive(Serialize)]
struct Line {
    figure: &'static str,
    ours: f64,
    baseline: Option<f64>,
    unit: &'static str,
    ratio: Option<f64>,
    target: String,
    met: bool,
}

fn print(f: &Reshard, json: bool) -> Result<()> {
    let copy_ratio = f.move_rows_per_s / f.baseline_rows_per_s.max(1e-9);
    let lines = [
        Line {
            figure: "copy rate",
            ours: f.move_rows_per_s,
            baseline: Some(f.baseline_rows_per_s),
            unit: "rows/s",
            ratio: Some(copy_ratio),
            target: format!(">= {:.0} % of baseline", COPY_RATIO_TARGET * 100.0),
            met: copy_ratio >= COPY_RATIO_TARGET,
        },
        Line {
            figure: "pause p50",
            ours: f.pause_p50_ms,
            baseline: None,
            unit: "ms",
            ratio: None,
            target: "-".into(),
            met: true,
        },
        Line {
            figure: "pause p99",
            ours: f.pause_p99_ms,
            baseline: None,
            unit: "ms",
            ratio: None,
            target: format!("< {PAUSE_P99_TARGET_MS:.0} ms"),
            met: f.pause_p99_ms < PAUSE_P99_TARGET_MS,
        },
        Line {
            figure: "pause max",
            ours: f.pause_max_ms,
            baseline: None,
            unit: "ms",
            ratio: None,
            target: format!("< {PAUSE_MAX_TARGET_MS:.0} ms"),
            met: f.pause_max_ms < PAUSE_MAX_TARGET_MS,
        },
        Line {
            figure: "POST p99 in switch windows",
            ours: f.window_post_p99_ms,
            baseline: Some(f.quiet_post_p99_ms),
            unit: "ms",
            ratio: Some(f.window_post_p99_ms / f.quiet_post_p99_ms.max(1e-9)),
            target: format!("<= baseline + {POST_P99_EXTRA_TARGET_MS:.0} ms"),
            met: f.window_post_p99_ms <= f.quiet_post_p99_ms + POST_P99_EXTRA_TARGET_MS,
        },
    ];
    println!(
        "  {} posts moved ({} rows over all moved tables), load {:.0} posts/s; \
         {} switches ({} failed), {} pauses flipped, {} aborted; \
         switch command p50 {:.0} ms; {} POSTs in windows, {} quiet; load errors {} (5xx {})",
        f.posts,
        f.move_rows,
        f.load_rate,
        f.switches,
        f.switch_failures,
        f.pauses_flipped,
        f.pauses_aborted,
        f.switch_command_p50_ms,
        f.window_posts,
        f.quiet_posts,
        f.load_errors,
        f.load_5xx
    );
    println!(
        "  {:<28} {:>12} {:>14} {:>8}  {:<24} met",
        "figure", "ours", "baseline", "ratio", "target"
    );
    for l in &lines {
        println!(
            "  {:<28} {:>12} {:>14} {:>8}  {:<24} {}",
            l.figure,
            format!("{:.1} {}", l.ours, l.unit),
            l.baseline
                .map_or("-".into(), |b| format!("{b:.1} {}", l.unit)),
            l.ratio
                .map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
            l.target,
            if l.met { "yes" } else { "NO" }
        );
    }
    if json {
        for l in &lines {
            println!("{}", serde_json::to_string(l)?);
        }
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "figure": "all", "figures": f }))?
        );
    }
    Ok(())
}

/// `reshard_jobs.progress` of `job`.
async fn job_progress(catalog_url: &str, job: i64) -> Result<serde_json::Value> {
    let mut db = PgConnection::connect(catalog_url).await?;
    Ok(
        sqlx::query_scalar("SELECT progress FROM reshard_jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&mut db)
            .await?,
    )
}

/// COPYs `n` posts of the city into the source shard (ids 1..=n, far
/// below the api's Snowflake ids), in 4 MB sends.
async fn seed(source_url: &str, n: u64) -> Result<()> {
    let mut db = PgConnection::connect(source_url).await?;
    let mut copy = db
        .copy_in_raw(
            "COPY posts (city, id, user_id, category, title, description, price, location, \
             status, version, image_count, created_at, updated_at, expires_at) FROM STDIN",
        )
        .await?;
    let now = chrono::Utc::now();
    let stamp = now.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    // Beyond the janitor's reminder lead (see origin.rs).
    let expires = (now + chrono::Duration::days(6))
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string();
    let mut buf = String::with_capacity(4 << 20);
    for i in 1..=n {
        buf.push_str(&format!(
            "{CITY}\t{i}\t{}\tfor-sale\tseeded bike number {i}\tA sturdy bicycle, barely used, collect in person.\t{}\tdowntown\tlive\t1\t0\t{stamp}\t{stamp}\t{expires}\n",
            1000 + i % 97,
            i % 5000,
        ));
        if buf.len() > (4 << 20) - 512 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    sqlx::query("ANALYZE posts").execute(&mut db).await?;
    Ok(())
}

/// The city-keyed tables (primary key starting with `city`), as shard-tool
/// derives what a move copies; `city_fence` and `move_marks` are its own.
async fn city_keyed_tables(db: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE i.indisprimary AND a.attname = 'city'
           AND c.relname NOT IN ('city_fence', 'move_marks')
           AND c.relname NOT LIKE 'bench\\_%'
           AND c.relnamespace = current_schema()::regnamespace
         ORDER BY 1",
    )
    .fetch_all(db)
    .await?)
}

/// The baseline: every city-keyed table's rows of the city, `COPY (SELECT
/// …) TO STDOUT` on the source piped into `COPY bench_<table> FROM STDIN`
/// on the target, into empty tables made `LIKE` the target's own
/// (`INCLUDING ALL`: its indexes, GIN included), in one transaction,
/// committed. Generated columns are left out (the target computes them, as
/// the subscription's apply does). Returns rows and seconds; the tables
/// are dropped afterwards.
async fn copy_baseline(source_url: &str, target_url: &str) -> Result<(i64, f64)> {
    let mut src = PgConnection::connect(source_url).await?;
    let mut dst = PgConnection::connect(target_url).await?;
    let tables = city_keyed_tables(&mut src).await?;
    let mut plan = Vec::new();
    for t in &tables {
        let cols: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(attname) FROM pg_attribute
              WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped
                AND attgenerated = '' ORDER BY attnum",
        )
        .bind(t)
        .fetch_all(&mut src)
        .await?;
        let cols = cols.join(", ");
        sqlx::query(&format!("DROP TABLE IF EXISTS bench_{t}"))
            .execute(&mut dst)
            .await?;
        sqlx::query(&format!("CREATE TABLE bench_{t} (LIKE {t} INCLUDING ALL)"))
            .execute(&mut dst)
            .await?;
        plan.push((t.clone(), cols));
    }
    let started = Instant::now();
    let mut tx = dst.begin().await?;
    for (t, cols) in &plan {
        let mut out = src
            .copy_out_raw(&format!(
                "COPY (SELECT {cols} FROM {t} WHERE city = '{CITY}') TO STDOUT"
            ))
            .await?;
        let mut copy = tx
            .copy_in_raw(&format!("COPY bench_{t} ({cols}) FROM STDIN"))
            .await?;
        while let Some(chunk) = out.next().await {
            copy.send(chunk?).await?;
        }
        copy.finish().await?;
    }
    tx.commit().await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut rows = 0;
    for (t, _) in &plan {
        rows += sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM bench_{t}"))
            .fetch_one(&mut dst)
            .await?;
        sqlx::query(&format!("DROP TABLE bench_{t}"))
            .execute(&mut dst)
            .await?;
    }
    Ok((rows, elapsed))
}

/// One POST of the load.
struct Sample {
    /// When it was due (open loop: post k at k / rate).
    due: Instant,
    /// Due to answered.
    took: Duration,
    /// None: the connection broke.
    status: Option<u16>,
}

/// The steady load: posts at a fixed rate over `LOAD_CONNECTIONS`
/// connections (open loop, so a freeze shows as the queue it makes, not as
/// fewer requests), timed from when each was due.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<Sample>>>>,
}

impl Load {
    fn start(
        api: u16,
        host: String,
        key: cityboard_protocol::sign::Key,
        users: Vec<String>,
        rate: f64,
    ) -> Load {
        let rate = rate.max(1.0);
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let key = Arc::new(key);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..LOAD_CONNECTIONS {
            let (key, host, next, stop) = (key.clone(), host.clone(), next.clone(), stop.clone());
            let auth = users[p % users.len()].clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = None;
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let due = started + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    let body = write_load::post_body(p, k)?;
                    let (status, _) =
                        write_load::post_once(&mut conn, api, &host, &key, &auth, &body).await;
                    out.push(Sample {
                        due,
                        took: due.elapsed(),
                        status,
                    });
                }
                Ok(out)
            }));
        }
        Load { stop, tasks }
    }

    async fn stop(self) -> Result<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await??);
        }
        Ok(all)
    }
}
