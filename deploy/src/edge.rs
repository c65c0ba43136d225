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
//!   `ORIGINS` (region → `http://127.0.0.1:<api port>`);
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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cityboard_protocol::kv::{Route, route_key};
use serde::Serialize;

use crate::topology::Topology;

/// Same as `edge/wrangler.toml`; must not be newer than the workerd in use.
pub const COMPATIBILITY_DATE: &str = "2026-11-01";
/// Environment variable of the workerd process that holds `FORWARD_KEY`.
pub const FORWARD_KEY_ENV: &str = "CITYBOARD_EDGE_FORWARD_KEY";
/// Environment variable of the workerd process that holds `KV_ROUTE_KEY`.
pub const KV_ROUTE_KEY_ENV: &str = "CITYBOARD_EDGE_KV_ROUTE_KEY";
/// Secret file of the forward key (see [`crate::secrets`]).
pub const FORWARD_KEY_FILE: &str = "edge-forward.key";
/// Secret file of the internal bulk KV route's key.
pub const KV_ROUTE_KEY_FILE: &str = "kv-route.key";

/// One entry of the `CITIES` binding.
#[derive(Debug, Clone, Serialize)]
pub struct CityBinding {
    /// Host label.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// ISO country code.
    pub country: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// The region serving it.
    pub region: String,
}

/// The origin base URL of each region of the local stack.
pub fn origins(topology: &Topology) -> serde_json::Map<String, serde_json::Value> {
    topology
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| {
            (
                region.name.clone(),
                format!("http://127.0.0.1:{}", topology.region_ports(r).api).into(),
            )
        })
        .collect()
}

/// Every served city with its region, in topology order.
pub fn cities(topology: &Topology) -> Vec<CityBinding> {
    topology
        .regions
        .iter()
        .flat_map(|region| {
            region.shards.iter().flat_map(move |shard| {
                shard.cities.iter().map(move |c| CityBinding {
                    slug: c.slug.clone(),
                    name: c.name.clone(),
                    country: c.country.clone(),
                    lat: c.lat,
                    lon: c.lon,
                    region: region.name.clone(),
                })
            })
        })
        .collect()
}

/// `route:{city}` for every city: what `up` writes into KV, so the Worker
/// learns routes from KV (and a move only has to rewrite one key).
pub fn routes(topology: &Topology) -> Vec<(String, Route)> {
    let origins = origins(topology);
    cities(topology)
        .into_iter()
        .map(|c| {
            let origin = origins
                .get(&c.region)
                .and_then(|o| o.as_str())
                .unwrap_or_default()
                .to_string();
            (
                route_key(&c.slug),
                Route {
                    region: c.region,
                    origin,
                },
            )
        })
        .collect()
}

/// The compact city database the Worker embeds: `$CITYBOARD_EDGE_MMDB`
/// when set, else what `deploy/build-edge.sh` compiles.
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

/// A Cap'n Proto text string literal.
fn capnp_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What the generated config needs besides the topology.
#[derive(Debug, Clone)]
pub struct EdgeConfig<'a> {
    /// `host:port` of the Worker's socket.
    pub listen: String,
    /// `host:port` of the KV service.
    pub kv: String,
    /// File names of the Worker's modules, relative to the config file;
    /// the first is the entry module.
    pub modules: &'a [String],
    /// Apex host.
    pub apex: &'a str,
    /// `CITIES` JSON.
    pub cities: String,
    /// `ORIGINS` JSON.
    pub origins: String,
    /// Extra text bindings (e.g. `TEST_MODE` in a test's own runtime).
    pub extra_text: &'a [(&'a str, &'a str)],
}

/// The workerd config text.
pub fn render(config: &EdgeConfig<'_>) -> String {
    let mut modules = String::new();
    for name in config.modules {
        let kind = if name.ends_with(".wasm") {
            "wasm"
        } else {
            "esModule"
        };
        let _ = writeln!(
            modules,
            "    (name = {}, {kind} = embed {}),",
            capnp_string(name.rsplit('/').next().unwrap_or(name)),
            capnp_string(name)
        );
    }
    let mut extra = String::new();
    for (name, value) in config.extra_text {
        let _ = writeln!(
            extra,
            "    (name = {}, text = {}),",
            capnp_string(name),
            capnp_string(value)
        );
    }
    format!(
        r#"# Generated by `cityboard up` from the stack's topology at each start of
# the edge; edits are overwritten. Secrets come from the environment.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    # The PAGES namespace: `cityboard edge-kv` (workerd's kvNamespace protocol).
    (name = "kv", external = (address = {kv}, http = ())),
    # Outbound fetches: the origins are on loopback, which workerd's default
    # `internet` service refuses.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    ( name = "http", address = {listen}, service = "edge",
      http = (cfBlobHeader = "cf-blob") ),
  ],
);

const edge :Workerd.Worker = (
  modules = [
{modules}  ],
  compatibilityDate = {date},
  bindings = [
    (name = "PAGES", kvNamespace = "kv"),
    (name = "APEX", text = {apex}),
    (name = "CITIES", text = {cities}),
    (name = "ORIGINS", text = {origins}),
    (name = "FORWARD_KEY", fromEnvironment = {forward_env}),
    (name = "KV_ROUTE_KEY", fromEnvironment = {kv_route_env}),
{extra}  ],
  globalOutbound = "internet",
);
"#,
        kv = capnp_string(&config.kv),
        listen = capnp_string(&config.listen),
        date = capnp_string(COMPATIBILITY_DATE),
        apex = capnp_string(config.apex),
        cities = capnp_string(&config.cities),
        origins = capnp_string(&config.origins),
        forward_env = capnp_string(FORWARD_KEY_ENV),
        kv_route_env = capnp_string(KV_ROUTE_KEY_ENV),
    )
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
pub fn build_dir() -> PathBuf {
    std::env::var_os("CITYBOARD_EDGE_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("edge/build"))
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

/// A secret file's text, trimmed (the bytes the Worker keys its HMAC with).
pub fn read_secret(secrets_dir: &Path, file: &str) -> Result<String> {
    let path = secrets_dir.join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Writes the stack's edge config (`config`, mode 0600) with the Worker's
/// modules copied beside it.
pub fn prepare(topology: &Topology, config: &Path) -> Result<()> {
    let run_dir = config
        .parent()
        .context("the edge config has no directory")?;
    let modules = copy_modules(&build_dir(), &run_dir.join("edge"))?;
    let text = render(&EdgeConfig {
        listen: format!("127.0.0.1:{}", topology.edge_port()),
        kv: format!("127.0.0.1:{}", topology.edge_kv_port()),
        modules: &modules,
        apex: &topology.apex,
        cities: serde_json::to_string(&cities(topology))?,
        origins: serde_json::to_string(&origins(topology))?,
        extra_text: &[],
    });
    write_private(config, text.as_bytes())
}

/// Writes a file that only its owner may read, atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
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
    let status = crate::region_api::http_get_status(port, "/healthz").await?;
    if status != 200 {
        bail!("GET /healthz answered {status}");
    }
    Ok(())
}

/// Writes `route:{city}` of every city into the KV service on `kv_port`.
pub async fn write_routes(topology: &Topology, kv_port: u16) -> Result<()> {
    let client = crate::edge_kv::Client { port: kv_port };
    for (key, route) in routes(topology) {
        client
            .put(&key, serde_json::to_string(&route)?.as_bytes(), None, None)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.toml");
        Topology::load(&path).unwrap()
    }

    #[test]
    fn bindings_follow_the_topology() {
        let t = topology();
        let cities = cities(&t);
        assert_eq!(cities.len(), 8);
        assert_eq!(cities[0].slug, "newyork");
        assert_eq!(cities[0].region, "us-east");
        assert_eq!(cities[7].region, "eu-west");
        let origins = origins(&t);
        assert_eq!(origins["us-east"], "http://127.0.0.1:17103");
        assert_eq!(origins["eu-west"], "http://127.0.0.1:17203");
        let routes = routes(&t);
        assert_eq!(routes[4].0, "route:london");
        assert_eq!(
            routes[4].1,
            Route {
                region: "eu-west".into(),
                origin: "http://127.0.0.1:17203".into()
            }
        );
    }

    #[test]
    fn the_config_quotes_json_and_names_every_binding() {
        let t = topology();
        let modules = [
            "edge/index.js".to_string(),
            "edge/index_bg.wasm".to_string(),
        ];
        let text = render(&EdgeConfig {
            listen: "127.0.0.1:17002".into(),
            kv: "127.0.0.1:17003".into(),
            modules: &modules,
            apex: &t.apex,
            cities: serde_json::to_string(&cities(&t)).unwrap(),
            origins: serde_json::to_string(&origins(&t)).unwrap(),
            extra_text: &[("TEST_MODE", "1")],
        });
        assert!(text.contains(r#"(name = "index.js", esModule = embed "edge/index.js")"#));
        assert!(text.contains(r#"(name = "index_bg.wasm", wasm = embed "edge/index_bg.wasm")"#));
        assert!(text.contains(r#"{\"slug\":\"newyork\""#), "{text}");
        assert!(text.contains(r#"(name = "PAGES", kvNamespace = "kv")"#));
        assert!(text.contains(r#"fromEnvironment = "CITYBOARD_EDGE_FORWARD_KEY""#));
        assert!(text.contains(r#"(name = "TEST_MODE", text = "1")"#));
        assert!(text.contains(r#"cfBlobHeader = "cf-blob""#));
    }

    #[test]
    fn wrangler_environments_serve_the_default_topology() {
        let t = topology();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge/wrangler.toml");
        let wrangler: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
        let expected = serde_json::to_value(cities(&t)).unwrap();
        for env in ["local", "staging", "production"] {
            let e = &wrangler["env"][env];
            let cities: serde_json::Value =
                serde_json::from_str(e["vars"]["CITIES"].as_str().unwrap()).unwrap();
            assert_eq!(
                cities, expected,
                "{env}: CITIES differs from deploy/topology.toml"
            );
            let origins: serde_json::Value =
                serde_json::from_str(e["vars"]["ORIGINS"].as_str().unwrap()).unwrap();
            for region in &t.regions {
                assert!(
                    origins[&region.name].is_string(),
                    "{env}: no origin for {}",
                    region.name
                );
            }
            assert_eq!(
                e["kv_namespaces"][0]["binding"].as_str(),
                Some("PAGES"),
                "{env}"
            );
            assert!(e["vars"].get("TEST_MODE").is_none(), "{env}");
        }
        let local: serde_json::Value = serde_json::from_str(
            wrangler["env"]["local"]["vars"]["ORIGINS"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(local, serde_json::Value::Object(origins(&t)));
    }

    #[test]
    fn capnp_strings_escape_quotes_and_controls() {
        assert_eq!(capnp_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(capnp_string("x\ny\u{1}"), r#""x\ny\x01""#);
        assert_eq!(capnp_string("ünï"), "\"ünï\"");
    }
}
