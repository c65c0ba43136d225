//! `cityboard render wrangler`: the edge Worker's configuration, from the
//! topology, for both places it runs. [`WorkerVars`] is the one source of
//! the Worker's `APEX`, `CITIES` and `ORIGINS`: `cityboard up` writes the
//! local workerd config from [`WorkerVars::local`] (`crate::edge::prepare`),
//! and [`render`] writes `edge/wrangler.toml`'s environments (local for
//! `wrangler dev`, staging, production) from the same function, so no city
//! list is kept by hand anywhere.
//!
//! Cities come from the topology; where each lives comes from the region
//! catalogs when the renderer is given them ([`Placements`], `render
//! wrangler --catalog URL ...`), since after shard-tool moves the catalogs,
//! not the topology, are the truth. Without catalogs (a first deploy) each
//! city is in the region the topology lists it under. The Worker reads
//! `route:{city}` in KV first anyway, so `CITIES` only decides a city whose
//! route KV has not got yet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use cityboard_protocol::bindings::CityBinding;

use super::values::Values;
use crate::edge::config::{cities, origins};
use crate::edge::workerd::COMPATIBILITY_DATE;
use crate::topology::{Topology, TopologyError};

/// The Worker environments deployed to Cloudflare, each with a
/// `[wrangler.<name>]` table in the values file.
pub const DEPLOYED: [&str; 2] = ["staging", "production"];

/// The secrets each deployed environment needs (`wrangler secret put NAME
/// --env ENV`), with what they are.
pub const SECRETS: &[(&str, &str)] = &[(
    "FORWARD_KEY",
    "HMAC key of forwarded requests: the region origins' edge-forward.key (cityboard-keys)",
)];

/// The text variables of one environment of the Worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerVars {
    /// `APEX`.
    pub apex: String,
    /// `CITIES`: every city with its home region, in topology order.
    pub cities: Vec<CityBinding>,
    /// `ORIGINS`: region -> origin base URL.
    pub origins: serde_json::Map<String, serde_json::Value>,
}

impl WorkerVars {
    /// The local stack's: origins on loopback at the topology's api ports.
    pub fn local(topology: &Topology) -> WorkerVars {
        WorkerVars {
            apex: topology.apex.clone(),
            cities: cities(topology),
            origins: origins(topology),
        }
    }

    /// A deployed environment's: each region's origin is
    /// `https://origin.{region}.{apex}`, the name the geo DNS answers.
    pub fn deployed(topology: &Topology, apex: &str) -> WorkerVars {
        WorkerVars {
            apex: apex.to_string(),
            cities: cities(topology),
            origins: topology
                .regions
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        format!("https://origin.{}.{apex}", r.name).into(),
                    )
                })
                .collect(),
        }
    }

    /// Each city in the region `placements` names for it; a city the
    /// catalogs do not list keeps the topology's region.
    pub fn placed(mut self, placements: &Placements) -> WorkerVars {
        for city in &mut self.cities {
            if let Some(region) = placements.region_of(&city.slug) {
                city.region = region.to_string();
            }
        }
        self
    }

    /// `CITIES` as the Worker reads it.
    pub fn cities_json(&self) -> String {
        serde_json::to_string(&self.cities).expect("cities serialise")
    }

    /// `ORIGINS` as the Worker reads it.
    pub fn origins_json(&self) -> String {
        serde_json::to_string(&self.origins).expect("origins serialise")
    }
}

/// Where each city lives, as the region catalogs' `shard_map` say: city ->
/// (region, epoch). During a cross-region move both regions' catalogs
/// list the city; the row with the higher epoch (the cutover bumps it) is
/// the one that holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placements(BTreeMap<String, (String, i64)>);

impl Placements {
    /// Records that a catalog places `city` in `region` at `epoch`; an
    /// older epoch than one already known is ignored.
    pub fn add(&mut self, city: &str, region: &str, epoch: i64) {
        let newer = self.0.get(city).is_none_or(|(_, known)| epoch > *known);
        if newer {
            self.0.insert(city.to_string(), (region.to_string(), epoch));
        }
    }

    /// The region the catalogs place `city` in.
    pub fn region_of(&self, city: &str) -> Option<&str> {
        self.0.get(city).map(|(region, _)| region.as_str())
    }

    /// Reads every catalog of `urls` (read-only: one SELECT each).
    pub async fn read(urls: &[String]) -> anyhow::Result<Placements> {
        use anyhow::Context as _;
        use sqlx::Connection as _;
        let mut placements = Placements::default();
        for url in urls {
            let shown = region_core::redact::url(url);
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .with_context(|| format!("connecting to the catalog {shown}"))?;
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT city, region, epoch FROM shard_map")
                    .fetch_all(&mut conn)
                    .await
                    .with_context(|| format!("reading shard_map of the catalog {shown}"))?;
            for (city, region, epoch) in rows {
                placements.add(&city, &region, epoch);
            }
        }
        Ok(placements)
    }

    /// Refuses placements the topology cannot serve: a city it does not
    /// list, or a region it has no origin for (the catalogs belong to
    /// another stack, or the topology is out of date).
    pub fn check(&self, topology: &Topology, path: &Path) -> Result<(), TopologyError> {
        for (city, (region, _)) in &self.0 {
            let message = if !topology.regions.iter().any(|r| &r.name == region) {
                format!(
                    "the catalogs place city {city} in region {region}, which this topology does not have"
                )
            } else if !topology
                .regions
                .iter()
                .flat_map(|r| &r.shards)
                .any(|s| s.cities.iter().any(|c| &c.slug == city))
            {
                format!("the catalogs list city {city}, which this topology does not")
            } else {
                continue;
            };
            return Err(TopologyError {
                path: path.to_owned(),
                line: 1,
                message,
            });
        }
        Ok(())
    }
}

/// `edge/wrangler.toml` for `topology` with the deployed environments of
/// `values`, each city in the region `placements` names (the topology's
/// when empty); an error names the values file's line when an environment
/// or its KV namespace id is missing.
pub fn render(
    topology: &Topology,
    values: &Values,
    placements: &Placements,
) -> Result<String, TopologyError> {
    let mut text = String::from(HEADER);
    let _ = writeln!(text, "compatibility_date = {}", quote(COMPATIBILITY_DATE));
    let local = WorkerVars::local(topology).placed(placements);
    text.push_str(
        "\n# Local development: `wrangler dev --env local`, against a `cityboard up`\n\
         # stack of this topology (its origins on loopback).\n[env.local]\n\
         name = \"cityboard-edge-local\"\n\
         # Any id: wrangler dev keeps local KV under .wrangler/state by binding.\n\
         kv_namespaces = [{ binding = \"PAGES\", id = \"local-pages\" }]\n",
    );
    vars(&mut text, "local", &local);
    for env in DEPLOYED {
        let (settings, kv_id) = values.edge_environment(env)?;
        let deployed = WorkerVars::deployed(topology, &settings.apex).placed(placements);
        let _ = write!(
            text,
            "\n# `wrangler deploy --env {env}`; then, once, `wrangler secret put FORWARD_KEY --env {env}`.\n\
             [env.{env}]\nname = {}\nroutes = [\n  {{ pattern = {}, zone_name = {} }},\n  {{ pattern = {}, zone_name = {} }},\n]\n\
             kv_namespaces = [{{ binding = \"PAGES\", id = {} }}]\n",
            quote(&format!("cityboard-edge-{env}")),
            quote(&format!("{}/*", settings.apex)),
            quote(&settings.zone),
            quote(&format!("*.{}/*", settings.apex)),
            quote(&settings.zone),
            quote(kv_id),
        );
        vars(&mut text, env, &deployed);
    }
    Ok(text)
}

fn vars(text: &mut String, env: &str, vars: &WorkerVars) {
    let _ = write!(
        text,
        "\n[env.{env}.vars]\nAPEX = {}\nCITIES = {}\nORIGINS = {}\n",
        quote(&vars.apex),
        quote(&vars.cities_json()),
        quote(&vars.origins_json()),
    );
}

/// A TOML string (literal when it can be, as JSON reads best unescaped).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

const HEADER: &str = r#"# Generated by `cityboard render wrangler` from deploy/topology.toml and
# deploy/render/values.toml: edit those, then render again (a test in
# deploy/tests/wrangler.rs fails while this file differs from the rendering).
#
# The cityboard edge Worker (workers-rs). Built by deploy/build-edge.sh
# (worker-build --release, then our own entry module entry.js bundled over
# its output), which writes build/index.js + build/index_bg.wasm with the
# compact city database of deploy/topology.toml embedded.
#
# Local runs: `cityboard up` serves the same build under bare workerd with a
# config it generates from the topology with the same renderer (run/edge.capnp
# in the stack's home; PAGES backed by `cityboard edge-kv`). `wrangler dev
# --env local` from this directory also works (wrangler on PATH after
# `. deploy/env.sh`; its KV is kept under .wrangler/state).
#
# Bindings (the Worker's contract; edge/README.md):
#   PAGES         KV namespace: post:{id} pages (metadata PostMeta) and route:{city}
#   APEX          text: the apex host
#   CITIES        JSON text: every served city with its home region
#   ORIGINS       JSON text: region -> origin base URL (when route:{city} is absent)
#   FORWARD_KEY   secret: HMAC key of forwarded requests, the same bytes as
#                 region-core's edge-forward.key (the file's trimmed text)
#   KV_ROUTE_KEY  secret, optional: key of the internal bulk KV route; unset,
#                 the route answers 404. Only local runs set it: in production
#                 the publisher writes through the Cloudflare KV REST bulk API.
#   TEST_MODE     never set here, and ignored by this Worker anyway: only a
#                 build with the test-mode cargo feature (the runtime tests',
#                 deploy/build-edge.sh --test-mode) has the X-Forwarded-For
#                 client-IP override and the test routes it turns on.
#   ORIGIN_TIMEOUT_MS  optional, default 5000.
#   PAGE_CACHE_MS  optional, default 1000 (0 to 60000): how long an isolate
#                 keeps KV's answer for a post page (src/hot.rs); 0 reads KV
#                 on every request.
#   TEMPLATE_VERSION  the post page template the publishers render
#                 (region-core's render::TEMPLATE_VERSION); a KV page of
#                 another version goes to the origin. It changes with every
#                 template, so it is not written here but given at each
#                 deploy, from the same build as the region's roles:
#                   wrangler deploy --env production \
#                     --var TEMPLATE_VERSION:$(target/release/cityboard template-version)
#                 Unset, the Worker serves KV pages of any template.
#
# Secrets are not in this file. Per environment:
#   wrangler secret put FORWARD_KEY --env staging      # paste the key region-core verifies with
#   wrangler secret put FORWARD_KEY --env production
#   wrangler secret put KV_ROUTE_KEY --env local       # only for `wrangler dev`; .dev.vars works too
# Rotating FORWARD_KEY: give region-core the new key as current and the old as
# previous, with an expiry, first (it accepts both until then; README,
# Security), then `wrangler secret put FORWARD_KEY`.
#
# vars and kv_namespaces are not inherited by environments in wrangler, so
# each environment names all of its own.
name = "cityboard-edge"
main = "build/index.js"
# No [build] section on purpose: deploy/build-edge.sh builds with the tools
# of deploy/env.sh, so wrangler only serves or uploads what it built.
"#;
