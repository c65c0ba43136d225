//! `cityboard bench idle`: what an idle stack costs (issue 28, point 4).
//!
//! A stack of its own with the running stack's topology (port base
//! `CITYBOARD_BENCH_PORT_BASE`, default 25000, home
//! `CITYBOARD_BENCH_IDLE_DIR`, default `.cityboard-bench-idle`), brought up
//! with the consumers' doze on (ours) and off (the settings before it:
//! every consumer fetching all the time), alternated on, off, on, off, with
//! `cityboard down` and `up` between (data kept). In each:
//!
//! 1. Idle CPU: after `CITYBOARD_BENCH_SETTLE` seconds (default 15: groups
//!    joined, first rounds done), the CPU time of every component over
//!    `CITYBOARD_BENCH_SECS` seconds (default 60) with no load, each
//!    component with every process under it (a Postgres server's backends,
//!    workerd's children), from `/proc/<pid>/stat`, as a share of one core.
//! 2. Visibility of sparse writes: posts at `CITYBOARD_BENCH_RATE` per
//!    second (default 0.5: a write every two seconds, so that the
//!    consumers doze between two of them) for 30 s, from the api's answer
//!    to the page served by the edge from KV (`write_load::visibility`):
//!    a doze must not make the first write after a quiet spell slower.
//!
//! Targets: the whole stack under 5 % of one core with the doze; the broker
//! at most 10 % of what it takes without.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::env_size;
use super::own_stack::{OwnStack, sibling};
use super::write_load::{self, Visibility};
use cityboard_deploy::home::Home;
use cityboard_deploy::state::StackState;
use cityboard_deploy::topology::Topology;

/// The roles' switch (`roles::common::Common::doze`).
const DOZE_ENV: &str = "CITYBOARD_DOZE";

/// One mode's run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRun {
    /// Whether the consumers dozed.
    pub doze: bool,
    /// Share of one core per component, over the idle window.
    pub cores: BTreeMap<String, f64>,
    /// Their sum.
    pub total: f64,
    /// Sparse writes, POST answered to page served from KV.
    pub visibility: Visibility,
}

/// Everything the scenario measured, in run order.
#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    /// Seconds of each idle window.
    pub secs: u64,
    pub runs: Vec<IdleRun>,
}

/// Runs the scenario beside the stack in `home` (its topology, not its
/// processes).
pub async fn run(home: &Home, json: bool) -> Result<()> {
    let secs = env_size("CITYBOARD_BENCH_SECS", 60);
    let settle = env_size("CITYBOARD_BENCH_SETTLE", 15);
    let rate = std::env::var("CITYBOARD_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.5);
    let port_base = u16::try_from(env_size("CITYBOARD_BENCH_PORT_BASE", 25000))
        .context("CITYBOARD_BENCH_PORT_BASE is not a port")?;
    let root = PathBuf::from(
        std::env::var("CITYBOARD_BENCH_IDLE_DIR")
            .unwrap_or_else(|_| ".cityboard-bench-idle".into()),
    );
    let topology = std::fs::read_to_string(home.topology_file())
        .context("the idle bench copies the running stack's topology: run `cityboard up` first")?;
    let topology = with_port_base(&topology, port_base);
    println!(
        "idle: the stack's topology on port base {port_base} in {}, doze on/off alternated, \
         {settle} s to settle, {secs} s idle, then posts at {rate}/s for 30 s",
        root.display()
    );
    let cityboard = sibling("cityboard")?;
    let mut stack: Option<OwnStack> = None;
    let mut runs = Vec::new();
    for doze in [true, false, true, false] {
        let env = [(DOZE_ENV, if doze { "true" } else { "false" })];
        match &stack {
            None => {
                stack = Some(OwnStack::start(
                    root.clone(),
                    cityboard.clone(),
                    &topology,
                    &env,
                )?)
            }
            Some(s) => {
                s.down()?;
                s.up(&env)?;
            }
        }
        let s = stack.as_ref().context("the stack")?;
        let own = Home::new(&s.home)?;
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let cores = idle_cpu(&own, Duration::from_secs(secs)).await?;
        let total = cores.values().sum();
        let visibility = sparse_writes(&own, rate).await?;
        let run = IdleRun {
            doze,
            cores,
            total,
            visibility,
        };
        print_run(&run);
        runs.push(run);
    }
    let figures = Idle { secs, runs };
    summary(&figures);
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(())
}

/// The topology text with `port_base` set to `port_base`.
fn with_port_base(text: &str, port_base: u16) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("port_base") {
                format!("port_base = {port_base}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// CPU time (user + system, clock ticks) and parent of every process.
fn processes() -> HashMap<i32, (i32, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields
        // start after the last ')'. Then: state, ppid, ..., utime (14th
        // field of the line, 12th here), stime.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        if let (Some(ppid), Some(utime), Some(stime)) = (num(1), num(11), num(12)) {
            out.insert(pid, (ppid as i32, utime + stime));
        }
    }
    out
}

/// CPU ticks of `root` and every process under it in `procs`.
fn tree_ticks(procs: &HashMap<i32, (i32, u64)>, root: i32) -> u64 {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, (ppid, _)) in procs {
        children.entry(*ppid).or_default().push(*pid);
    }
    let (mut ticks, mut todo) = (0, vec![root]);
    while let Some(p) = todo.pop() {
        ticks += procs.get(&p).map_or(0, |(_, t)| *t);
        todo.extend(children.get(&p).into_iter().flatten());
    }
    ticks
}

/// Each component's share of one core over `window`.
async fn idle_cpu(home: &Home, window: Duration) -> Result<BTreeMap<String, f64>> {
    let state = StackState::read(&home.state_file())?;
    let pids: Vec<(String, i32)> = state
        .components
        .iter()
        .filter_map(|c| c.process.as_ref().map(|p| (c.name.clone(), p.pid)))
        .collect();
    if pids.is_empty() {
        bail!("no component of the stack runs");
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = processes();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = processes();
    let elapsed = started.elapsed().as_secs_f64();
    let mut cores = BTreeMap::new();
    for (name, pid) in pids {
        let used = tree_ticks(&after, pid).saturating_sub(tree_ticks(&before, pid));
        cores.insert(name, used as f64 / hz / elapsed);
    }
    Ok(cores)
}

/// Sparse posts through the first region's api, timed to the edge's page.
async fn sparse_writes(home: &Home, rate: f64) -> Result<Visibility> {
    let topology = Topology::load(&home.topology_file())?;
    let (host, key) = write_load::first_city_host_and_key(home, &topology)?;
    let api = topology.region_ports(0).api;
    let users = write_load::sign_up(api, &host, &key, 2).await?;
    write_load::visibility(api, topology.edge_port(), &host, &key, &users, rate, 30).await
}

fn print_run(run: &IdleRun) {
    println!(
        "  doze {}: whole stack {:.1} % of a core; broker {:.1} %; sparse writes: {}",
        if run.doze { "on " } else { "off" },
        run.total * 100.0,
        run.cores.get("broker").copied().unwrap_or(0.0) * 100.0,
        visibility_line(&run.visibility)
    );
    let mut top: Vec<(&String, &f64)> = run.cores.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    let top: Vec<String> = top
        .iter()
        .take(6)
        .map(|(n, c)| format!("{n} {:.1} %", **c * 100.0))
        .collect();
    println!("      most: {}", top.join(", "));
}

fn visibility_line(v: &Visibility) -> String {
    format!(
        "{} watched, p50 {:.0} ms, p99 {:.0} ms, {} missed",
        v.watched, v.p50_ms, v.p99_ms, v.missed
    )
}

/// Medians of the two runs of each mode, and the ratios.
fn summary(f: &Idle) {
    let median = |doze: bool, pick: &dyn Fn(&IdleRun) -> f64| {
        let mut v: Vec<f64> = f.runs.iter().filter(|r| r.doze == doze).map(pick).collect();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    let total = |r: &IdleRun| r.total;
    let broker = |r: &IdleRun| r.cores.get("broker").copied().unwrap_or(0.0);
    let p99 = |r: &IdleRun| r.visibility.p99_ms;
    let (t_on, t_off) = (median(true, &total), median(false, &total));
    let (b_on, b_off) = (median(true, &broker), median(false, &broker));
    println!(
        "  whole stack idle: {:.1} % of a core with the doze, {:.1} % without (target < 5 %)",
        t_on * 100.0,
        t_off * 100.0
    );
    println!(
        "  broker idle: {:.2} % with, {:.2} % without: {:.0} % of it (target <= 10 %)",
        b_on * 100.0,
        b_off * 100.0,
        if b_off > 0.0 {
            b_on / b_off * 100.0
        } else {
            0.0
        }
    );
    println!(
        "  sparse writes' visibility p99: {:.0} ms with, {:.0} ms without",
        median(true, &p99),
        median(false, &p99)
    );
}
