//! The edge in the local stack: the Worker (`edge/build`, from
//! `deploy/build-edge.sh`) under bare workerd on `port_base + 2`, its
//! `PAGES` namespace backed by `cityboard edge-kv` on `port_base + 3`.
//!
//! Bare workerd rather than `wrangler dev` or Miniflare because it is the
//! leanest runtime that keeps KV and `cf` semantics (design §7 measured it
//! at 1/6.5 of nginx, wrangler dev at 1/37). Its configuration is generated
//! from the topology at each start into `run/edge.capnp` (mode 0600):
//!
//! - `PAGES` → the KV service (a `kvNamespace` binding to an external HTTP
//!   service), `APEX`, `CITIES` (every served city with its region),
//!   `ORIGINS` (region → `http://127.0.0.1:<api port>`), `TEMPLATE_VERSION`
//!   (the post page template the publishers render, [`template_version`]);
//! - `FORWARD_KEY` and `KV_ROUTE_KEY` from the stack's secrets, passed as
//!   environment variables (`fromEnvironment`), so the file holds no secret;
//! - no `TEST_MODE`: the stack's edge behaves as production does. Tests
//!   place a visitor with `CF-Connecting-IP` (which Cloudflare sets and
//!   locally nothing strips) or a `cf-blob` header;
//! - the Worker's outbound network allows loopback and private addresses
//!   (workerd's default `internet` service allows public ones only, and the
//!   origins are on 127.0.0.1);
//! - `cfBlobHeader = "cf-blob"` on the socket: locally a request may carry
//!   the `request.cf` object as JSON, which Cloudflare fills in production.
//!
//! The Worker's modules are copied into `run/edge/` before the config is
//! written, so a rebuild of `edge/build` never changes a running edge
//! underfoot; a restart picks it up.

pub mod config;
pub mod workerd;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

pub use config::{EdgeConfig, FORWARD_KEY_ENV, KV_ROUTE_KEY_ENV, cities, origins, routes};

use self::workerd::Binding;

use crate::render::wrangler::WorkerVars;
use crate::secrets::{read_secret, write_private};
use crate::topology::Topology;

/// Secret file of the forward key (see [`crate::secrets`]).
pub const FORWARD_KEY_FILE: &str = "edge-forward.key";
/// Secret file of the internal bulk KV route's key.
pub const KV_ROUTE_KEY_FILE: &str = "kv-route.key";

/// The compact city database the Worker's range table is made from (the
/// Worker embeds the table, `<name>.ranges` beside it):
/// `$CITYBOARD_EDGE_MMDB` when set, else what `deploy/build-edge.sh`
/// compiles.
pub fn embedded_database() -> PathBuf {
    std::env::var_os("CITYBOARD_EDGE_MMDB")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/edge/cities.mmdb"))
}

/// One IPv4 address per city of `cities` that the compact database
/// `mmdb` places there, found by walking it (the `.1.1` address of each
/// /16, in order): tests and benchmarks follow the data instead of a list
/// of addresses that moves with each DB-IP release. Cities no /16 lands in
/// are missing from the answer.
pub fn addresses_in(mmdb: &Path, cities: &[&str]) -> Result<BTreeMap<String, Ipv4Addr>> {
    let bytes = std::fs::read(mmdb).with_context(|| {
        format!(
            "reading {} (deploy/build-edge.sh compiles it)",
            mmdb.display()
        )
    })?;
    let locator = geo_router::Locator::from_bytes(bytes)
        .with_context(|| format!("{} is not a compact city database", mmdb.display()))?;
    let mut found = BTreeMap::new();
    for a in 1u8..=223 {
        for b in 0u8..=255 {
            let ip = Ipv4Addr::new(a, b, 1, 1);
            if let Some(p) = locator.locate(IpAddr::V4(ip))
                && cities.contains(&p.city)
            {
                found.entry(p.city.to_string()).or_insert(ip);
                if found.len() == cities.len() {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

/// The repository checkout the stack runs from: `$CITYBOARD_ROOT`
/// (deploy/env.sh), else the one whose `target/` holds this binary, else
/// the current directory.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("CITYBOARD_ROOT") {
        return PathBuf::from(root);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .find(|dir| dir.join("edge/wrangler.toml").is_file())
            .map(Path::to_path_buf)
    });
    from_exe.unwrap_or_else(|| PathBuf::from("."))
}

/// The built Worker: `$CITYBOARD_EDGE_BUILD`, else `edge/build` of the checkout.
/// The production build (`deploy/build-edge.sh`): no test mode in it.
pub fn build_dir() -> PathBuf {
    std::env::var_os("CITYBOARD_EDGE_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("edge/build"))
}

/// The runtime tests' Worker, built with the `test-mode` feature
/// (`deploy/build-edge.sh --test-mode`): `$CITYBOARD_EDGE_TEST_BUILD`, else
/// `edge/build-test` of the checkout. Only it obeys `TEST_MODE=1`; the
/// stack always runs [`build_dir`]'s.
pub fn test_build_dir() -> PathBuf {
    std::env::var_os("CITYBOARD_EDGE_TEST_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("edge/build-test"))
}

/// The native workerd: `$WORKERD_BIN` (deploy/env.sh), else where
/// `deploy/install.sh edge` puts it, else `workerd` on PATH.
pub fn workerd_bin() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WORKERD_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let installed =
        repo_root().join(".tools/node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    if installed.is_file() {
        return Ok(installed);
    }
    crate::process::which("workerd")
        .context("workerd not found (install step 'workerd'): run `deploy/install.sh edge`")
}

/// Copies the Worker's modules from `build` into `dest` (replacing what an
/// earlier start copied) and returns their names relative to `dest`'s
/// parent, entry module first.
pub fn copy_modules(build: &Path, dest: &Path) -> Result<Vec<String>> {
    let entry = build.join("index.js");
    if !entry.is_file() {
        bail!(
            "the edge Worker is not built: {} is missing; run deploy/build-edge.sh",
            entry.display()
        );
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let prefix = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("edge")
        .to_string();
    let mut modules = vec![format!("{prefix}/index.js")];
    let mut others = Vec::new();
    for item in std::fs::read_dir(build).with_context(|| format!("reading {}", build.display()))? {
        let path = item?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let is_module = name.ends_with(".js") || name.ends_with(".mjs") || name.ends_with(".wasm");
        if !path.is_file() || !is_module {
            continue;
        }
        std::fs::copy(&path, dest.join(&name))
            .with_context(|| format!("copying {}", path.display()))?;
        if name != "index.js" {
            others.push(format!("{prefix}/{name}"));
        }
    }
    others.sort();
    modules.extend(others);
    Ok(modules)
}

/// The post page template version the region's publishers write into KV
/// metadata: the Worker's `TEMPLATE_VERSION` (it serves only KV pages of
/// this version). From the region-core this workspace builds, so the
/// stack's edge and roles agree.
pub fn template_version() -> u32 {
    region_core::roles::publisher::template_version()
}

/// Writes the stack's edge config (`config`, mode 0600: it holds the KV
/// service's key) with the Worker's modules copied beside it.
pub fn prepare(topology: &Topology, config: &Path, secrets_dir: &Path) -> Result<()> {
    let run_dir = config
        .parent()
        .context("the edge config has no directory")?;
    let modules = copy_modules(&build_dir(), &run_dir.join("edge"))?;
    // The same variables `cityboard render wrangler` gives `wrangler dev`.
    let vars = WorkerVars::local(topology);
    let text = EdgeConfig {
        listen: format!("127.0.0.1:{}", topology.edge_port()),
        kv: format!("127.0.0.1:{}", topology.edge_kv_port()),
        kv_key: Some(read_secret(secrets_dir, crate::edge_kv::KEY_FILE)?),
        modules: &modules,
        apex: &vars.apex,
        cities: vars.cities_json(),
        origins: vars.origins_json(),
        extra: &[Binding::Text(
            "TEMPLATE_VERSION",
            &template_version().to_string(),
        )],
    }
    .render();
    write_private(config, text.as_bytes())
}

/// The supervised command: workerd serving the generated config, with the
/// secrets in its environment.
pub fn command(config: &Path, secrets_dir: &Path) -> Result<Command> {
    let mut cmd = Command::new(workerd_bin()?);
    cmd.arg("serve")
        .arg(config)
        .env(FORWARD_KEY_ENV, read_secret(secrets_dir, FORWARD_KEY_FILE)?)
        .env(
            KV_ROUTE_KEY_ENV,
            read_secret(secrets_dir, KV_ROUTE_KEY_FILE)?,
        );
    Ok(cmd)
}

/// Ready when the Worker answers `GET /healthz` with 200.
pub async fn probe(port: u16) -> Result<()> {
    let status = crate::http::http_get_status(port, "/healthz").await?;
    if status != 200 {
        bail!("GET /healthz answered {status}");
    }
    Ok(())
}

/// Writes `route:{city}` of every city into the KV service of `client`.
pub async fn write_routes(topology: &Topology, client: &crate::edge_kv::Client) -> Result<()> {
    for (key, route) in routes(topology) {
        client
            .put(&key, serde_json::to_string(&route)?.as_bytes(), None, None)
            .await?;
    }
    Ok(())
}
