//! `cityboard up`: start the stack (or repair a running one) and print
//! where everything is.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use region_core::redact;

use crate::home::Home;
use crate::process::ProcessId;
use crate::state::{Health, Phase, StackState};
use crate::topology::Topology;
use crate::{log_tail, postgres, secrets};

/// How long `up` waits for the whole stack to become healthy.
const UP_TIMEOUT: Duration = Duration::from_secs(300);

/// What `up` changes in the topology file it is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct Overrides<'a> {
    /// Another port base.
    pub port_base: Option<u16>,
    /// A file whose `[limits]` table replaces the topology's.
    pub limits: Option<&'a Path>,
}

/// Starts the stack described by `topology_path` in `home`.
pub fn run(home: &Home, topology_path: &Path, overrides: Overrides<'_>, demo: bool) -> Result<()> {
    let text = topology_text(topology_path, overrides)?;
    let topology = Topology::parse(topology_path, &text)?;
    home.create()?;
    if let Some(supervisor) = super::running_supervisor(home)? {
        let running = Topology::load(&home.topology_file())?;
        if serde_json::to_value(&running)? != serde_json::to_value(&topology)? {
            bail!(
                "a stack with another topology already runs in {} (supervisor pid {}): \
                 `cityboard down` first",
                home.root().display(),
                supervisor.pid
            );
        }
        println!(
            "up: the stack already runs (supervisor pid {}); checking it",
            supervisor.pid
        );
        let state = wait_healthy(home, supervisor)?;
        print_summary(&state, home);
        return Ok(());
    }
    postgres::check_reachable(&home.data_dir())?;
    secrets::ensure(home)?;
    crate::process::write_atomic(&home.topology_file(), text.as_bytes())?;
    let state_file = home.state_file();
    let _ = std::fs::remove_file(&state_file);

    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(home.supervisor_log())?;
    let exe = std::env::current_exe().context("finding the cityboard binary")?;
    let mut command = Command::new(exe);
    command
        .arg("--home")
        .arg(home.root())
        .arg("supervise")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: the stack outlives this terminal and `up` itself.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().context("starting the supervisor")?;
    let supervisor = ProcessId::of(child.id() as i32).context("the supervisor exited at once")?;
    println!(
        "up: supervisor pid {} starting {} ({} regions); log {}",
        supervisor.pid,
        topology_path.display(),
        topology.regions.len(),
        home.supervisor_log().display()
    );
    // The child is reaped by init once we exit; we only watch it.
    std::mem::forget(child);
    let state = wait_healthy(home, supervisor)?;
    if demo {
        seed_demo(home, &state)?;
    }
    print_summary(&state, home);
    Ok(())
}

/// The topology file's text, with `port_base` and `[limits]` replaced when
/// asked. The overrides are written into the home's copy, so every later
/// command (and the supervisor) sees the ports and limits actually in use.
fn topology_text(path: &Path, overrides: Overrides<'_>) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::topology::TopologyError::unreadable(path, &e))?;
    if overrides.port_base.is_none() && overrides.limits.is_none() {
        return Ok(text);
    }
    // Syntax errors are reported by the parser, with their line, below.
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Ok(text);
    };
    let mut changed = Vec::new();
    if let Some(port_base) = overrides.port_base {
        table.insert("port_base".into(), toml::Value::Integer(port_base.into()));
        changed.push(format!("port_base = {port_base} (--port-base)"));
    }
    if let Some(file) = overrides.limits {
        let limits = std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .parse::<toml::Table>()
            .with_context(|| format!("{}: not TOML", file.display()))?
            .remove("limits")
            .with_context(|| format!("{} has no [limits] table", file.display()))?;
        table.insert("limits".into(), limits);
        changed.push(format!("[limits] of {} (--limits)", file.display()));
    }
    Ok(format!(
        "# {} with {}\n{}",
        path.display(),
        changed.join(", "),
        toml::to_string(&table)?
    ))
}

/// Seeds each region's demo posts through `region-core setup --demo`, which
/// skips what an earlier run seeded.
fn seed_demo(home: &Home, state: &StackState) -> Result<()> {
    let program = crate::process::sibling_binary("region-core")?;
    for region in &state.regions {
        println!("up: --demo: seeding demo posts in {}", region.name);
        let status = Command::new(&program)
            .arg("setup")
            .arg("--state")
            .arg(home.state_file())
            .args(["--region", &region.name, "--demo"])
            .status()
            .with_context(|| format!("running {}", program.display()))?;
        if !status.success() {
            bail!("seeding demo posts in {} failed ({status})", region.name);
        }
    }
    Ok(())
}

/// Follows the state file until every component is healthy, printing each
/// as it becomes so.
fn wait_healthy(home: &Home, supervisor: ProcessId) -> Result<StackState> {
    let deadline = Instant::now() + UP_TIMEOUT;
    let mut reported = std::collections::HashSet::new();
    loop {
        if let Ok(state) = StackState::read(&home.state_file())
            && state.supervisor == Some(supervisor)
        {
            for c in &state.components {
                if c.health == Health::Healthy && reported.insert(c.name.clone()) {
                    println!("  ✓ {:<32} port {}", c.name, c.port);
                }
            }
            match state.phase {
                Phase::Failed => bail!(
                    "the stack did not start: {}\n(everything it had started was stopped again)",
                    state.error.as_deref().unwrap_or("see the supervisor log")
                ),
                // Stopped while running: held by the arrangement (a
                // failover or restore that did not finish; `status` says).
                Phase::Running
                    if state
                        .components
                        .iter()
                        .all(|c| matches!(c.health, Health::Healthy | Health::Stopped)) =>
                {
                    return Ok(state);
                }
                _ => {}
            }
        }
        if !supervisor.is_alive() {
            bail!(
                "the supervisor exited; last lines of {}:\n{}",
                home.supervisor_log().display(),
                log_tail(&home.supervisor_log(), 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the stack was not healthy after {UP_TIMEOUT:?}; see `cityboard status` and {}",
                home.logs_dir().display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_summary(state: &StackState, home: &Home) {
    println!(
        "\ncityboard is up ({} components healthy)\n",
        state.components.len()
    );
    match state.component("edge") {
        Some(edge) => {
            println!("  open in a browser (through the edge, the Worker under workerd):");
            println!(
                "    http://{}:{}/   (the apex: GeoIP redirect to your city, or the city picker)",
                state.apex, edge.port
            );
            for region in &state.regions {
                for slug in region.shards.iter().flat_map(|s| &s.cities) {
                    println!("    http://{slug}.{}:{}/post", state.apex, edge.port);
                }
            }
        }
        None => {
            println!("  open in a browser (city pages are served by the city's region):");
            for region in &state.regions {
                for slug in region.shards.iter().flat_map(|s| &s.cities) {
                    println!("    http://{slug}.{}:{}/post", state.apex, region.api_port);
                }
            }
        }
    }
    println!();
    if let Some(edge) = state.component("edge") {
        println!(
            "  edge           http://127.0.0.1:{}/healthz  (workerd; config {})",
            edge.port,
            home.run_dir().join("edge.capnp").display()
        );
    }
    if let Some(kv) = state.component("edge-kv") {
        println!(
            "  edge KV        http://127.0.0.1:{}/?prefix=route%3A  (cityboard edge-kv, the PAGES namespace, bearer key secrets/edge-kv.key; data {})",
            kv.port,
            home.component_data("edge-kv").display()
        );
    }
    println!();
    for region in &state.regions {
        println!(
            "  api {:<10} http://127.0.0.1:{}/  (/healthz, /openapi.json; signed requests only)",
            region.name, region.api_port
        );
        println!(
            "  operator       http://127.0.0.1:{}/metrics  ({}: /metrics, DELETE /old_posts)",
            region.operator_port, region.name
        );
    }
    if let Some(dns) = state.component("geo-dns") {
        println!(
            "  origin DNS     dig @127.0.0.1 -p {} origin.{}.{}",
            dns.port,
            state.regions.first().map_or("REGION", |r| r.name.as_str()),
            state.apex
        );
    }
    println!("  broker (Kafka protocol)  {}", state.broker);
    for region in &state.regions {
        println!("  region {}", region.name);
        // The URLs hold the passwords (secrets/): masked, as everywhere.
        println!("    catalog        {}", redact::url(&region.catalog_url));
        println!(
            "    redis cache    {}",
            redact::url(&region.redis_cache_url)
        );
        println!(
            "    redis store    {}",
            redact::url(&region.redis_store_url)
        );
        for shard in &region.shards {
            println!(
                "    {:<14} {}  cities: {}",
                shard.name,
                redact::url(&shard.primary_url),
                shard.cities.join(", ")
            );
            for url in &shard.replica_urls {
                println!("      replica     {}", redact::url(url));
            }
        }
    }
    println!("\n  home     {}", home.root().display());
    println!("  logs     {}", home.logs_dir().display());
    println!("  secrets  {}", home.secrets_dir().display());
    println!(
        "  postgres as its superuser: `cityboard psql REGION SHARD`, or export PGUSER={} \
         PGPASSFILE={}",
        crate::postgres::ADMIN,
        crate::postgres::passfile(&home.secrets_dir(), crate::postgres::ADMIN).display()
    );
    println!("\n  `cityboard status` shows health and replica lag; `cityboard down` stops it all.");
}
