//! The topology file: which regions, shards, replicas and cities a stack has,
//! and the ports its components listen on.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file
//! and line, because a typo in a topology should stop `up` before it starts
//! anything, not surface later as a half-built stack.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use region_core::limits::Limits;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Most shards a region may have: the port scheme leaves room for nine.
pub const MAX_SHARDS_PER_REGION: usize = 9;
/// Most replicas a shard may have: the port scheme leaves room for nine.
pub const MAX_REPLICAS_PER_SHARD: usize = 9;

/// A mistake in a topology file, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", path.display())]
pub struct TopologyError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line of the mistake (1 when the whole file is at fault).
    pub line: usize,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl TopologyError {
    /// The file could not be read at all.
    pub fn unreadable(path: &Path, error: &std::io::Error) -> TopologyError {
        TopologyError {
            path: path.to_owned(),
            line: 1,
            message: format!("cannot read the topology file: {error}"),
        }
    }
}

/// A parsed and checked topology.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Apex domain; city hosts are `{slug}.{apex}`.
    pub apex: String,
    /// First port of the stack.
    pub port_base: u16,
    /// Partitions of each topic.
    pub partitions: u32,
    /// Regions in file order.
    pub regions: Vec<Region>,
    /// Rate limits of every region's api (`[limits]`; defaults when absent).
    pub limits: Limits,
}

/// One region: an origin with its catalog, Redis pair and shards.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// DNS label, e.g. `us-east`.
    pub name: String,
    /// Shards in file order, named `shard-1`, `shard-2`, ...
    pub shards: Vec<Shard>,
    /// Line of its `name` in the file, for renderers' error messages.
    #[serde(skip)]
    pub line: usize,
}

/// One shard: a primary and its streaming replicas.
#[derive(Debug, Clone, Serialize)]
pub struct Shard {
    /// `shard-N`, 1-based.
    pub name: String,
    /// Number of streaming replicas.
    pub replicas: usize,
    /// Cities whose posts live here.
    pub cities: Vec<City>,
    /// Line of its `replicas` in the file, for renderers' error messages.
    #[serde(skip)]
    pub line: usize,
}

/// A served city.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct City {
    /// Host label, e.g. `newyork`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// The ports of one region's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionPorts {
    /// Catalog Postgres.
    pub catalog: u16,
    /// Redis with allkeys-lru (page and query caches).
    pub redis_cache: u16,
    /// Redis with noeviction and an append-only file (limits, keys, nonces).
    pub redis_store: u16,
    /// The api role's HTTP port.
    pub api: u16,
    /// The api role's operator listener (`/metrics`, `DELETE /old_posts`),
    /// which the edge never forwards to.
    pub api_operator: u16,
    /// The writer role's `/metrics` and `/healthz`.
    pub writer: u16,
    /// The outbox relay's `/metrics` and `/healthz`.
    pub relay: u16,
    /// The publisher's `/metrics` and `/healthz`.
    pub publisher: u16,
    /// The janitor's `/metrics` and `/healthz`.
    pub janitor: u16,
}

// The file's shape, as serde reads it. Spans are kept where a later check
// (duplicates, counts) needs to point back at a line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    apex: String,
    port_base: Spanned<u16>,
    broker: RawBroker,
    #[serde(rename = "region", default)]
    regions: Vec<RawRegion>,
    #[serde(default)]
    limits: Limits,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    partitions: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    name: Spanned<String>,
    #[serde(rename = "shard", default)]
    shards: Vec<RawShard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShard {
    replicas: Spanned<usize>,
    cities: Spanned<Vec<Spanned<City>>>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| TopologyError::unreadable(path, &e))?;
        Topology::parse(path, &text)
    }

    /// Parses and checks topology text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Topology, TopologyError> {
        let at = |span: Option<Range<usize>>, message: String| TopologyError {
            path: path.to_owned(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            message,
        };
        let raw: RawTopology =
            toml::from_str(text).map_err(|e| at(e.span(), e.message().to_owned()))?;

        check_label(&raw.apex.replace('.', "-"))
            .map_err(|m| at(None, format!("apex {:?}: {m}", raw.apex)))?;
        if raw.regions.is_empty() {
            return Err(at(None, "the topology has no [[region]]".into()));
        }
        let partitions = *raw.broker.partitions.get_ref();
        if !(1..=256).contains(&partitions) {
            return Err(at(
                Some(raw.broker.partitions.span()),
                format!("broker.partitions must be 1-256, not {partitions}"),
            ));
        }
        let port_base = *raw.port_base.get_ref();
        let highest = u32::from(port_base) + 100 * raw.regions.len() as u32 + 99;
        if port_base < 1024 || highest > u32::from(u16::MAX) {
            return Err(at(
                Some(raw.port_base.span()),
                format!(
                    "port_base {port_base} leaves no room for the stack's ports (1024 ..= {})",
                    u16::MAX as u32 + port_base as u32 - highest
                ),
            ));
        }

        let mut regions = Vec::new();
        let mut region_names: HashMap<String, usize> = HashMap::new();
        // slug -> (region, shard) of its first appearance
        let mut homes: HashMap<String, (String, String)> = HashMap::new();
        for raw_region in raw.regions {
            let name = raw_region.name.get_ref().clone();
            let name_span = raw_region.name.span();
            check_label(&name).map_err(|m| {
                at(
                    Some(name_span.clone()),
                    format!("region name {name:?}: {m}"),
                )
            })?;
            if let Some(first) = region_names.insert(name.clone(), line_of(text, name_span.start)) {
                return Err(at(
                    Some(name_span),
                    format!("region {name:?} is declared twice (first on line {first})"),
                ));
            }
            let shard_count = raw_region.shards.len();
            if shard_count == 0 {
                return Err(at(
                    Some(name_span),
                    format!("region {name:?} has zero shards: add a [[region.shard]]"),
                ));
            }
            if shard_count > MAX_SHARDS_PER_REGION {
                return Err(at(
                    Some(name_span),
                    format!(
                        "region {name:?} has {shard_count} shards; at most {MAX_SHARDS_PER_REGION} fit the port scheme"
                    ),
                ));
            }
            let mut shards = Vec::new();
            for (index, raw_shard) in raw_region.shards.into_iter().enumerate() {
                let shard_name = format!("shard-{}", index + 1);
                let replicas = *raw_shard.replicas.get_ref();
                if replicas > MAX_REPLICAS_PER_SHARD {
                    return Err(at(
                        Some(raw_shard.replicas.span()),
                        format!(
                            "{name}/{shard_name} has {replicas} replicas; at most {MAX_REPLICAS_PER_SHARD}"
                        ),
                    ));
                }
                if raw_shard.cities.get_ref().is_empty() {
                    return Err(at(
                        Some(raw_shard.cities.span()),
                        format!("{name}/{shard_name} serves no city"),
                    ));
                }
                let mut cities = Vec::new();
                for spanned in raw_shard.cities.into_inner() {
                    let span = spanned.span();
                    let city = spanned.into_inner();
                    check_city(&city).map_err(|m| at(Some(span.clone()), m))?;
                    if let Some((r, s)) = homes.get(&city.slug) {
                        let msg = if *r == name && *s == shard_name {
                            format!("duplicate city {:?} in {name}/{shard_name}", city.slug)
                        } else {
                            format!(
                                "city {:?} is in two shards: {r}/{s} and {name}/{shard_name}; a city lives on exactly one shard",
                                city.slug
                            )
                        };
                        return Err(at(Some(span), msg));
                    }
                    homes.insert(city.slug.clone(), (name.clone(), shard_name.clone()));
                    cities.push(city);
                }
                shards.push(Shard {
                    name: shard_name,
                    replicas,
                    cities,
                    line: line_of(text, raw_shard.replicas.span().start),
                });
            }
            regions.push(Region {
                name,
                shards,
                line: line_of(text, name_span.start),
            });
        }
        Ok(Topology {
            apex: raw.apex,
            port_base,
            partitions,
            regions,
            limits: raw.limits,
        })
    }

    /// Port of the Kafka-protocol broker.
    pub fn broker_port(&self) -> u16 {
        self.port_base
    }

    /// Port of the geo DNS server (UDP and TCP).
    pub fn dns_port(&self) -> u16 {
        self.port_base + 1
    }

    /// Port of the edge Worker.
    pub fn edge_port(&self) -> u16 {
        self.port_base + 2
    }

    /// Port of the KV service behind the edge Worker's `PAGES` binding.
    pub fn edge_kv_port(&self) -> u16 {
        self.port_base + 3
    }

    fn region_base(&self, region: usize) -> u16 {
        self.port_base + 100 * (region as u16 + 1)
    }

    /// Ports of the region at `region` (index in file order).
    pub fn region_ports(&self, region: usize) -> RegionPorts {
        let base = self.region_base(region);
        RegionPorts {
            catalog: base,
            redis_cache: base + 1,
            redis_store: base + 2,
            api: base + 3,
            writer: base + 4,
            relay: base + 5,
            publisher: base + 6,
            janitor: base + 7,
            api_operator: base + 8,
        }
    }

    /// Port of a shard's primary (`member` 0) or replica `member` (1-based).
    pub fn shard_port(&self, region: usize, shard: usize, member: usize) -> u16 {
        self.region_base(region) + 10 * (shard as u16 + 1) + member as u16
    }

    /// The region with this name, with its index.
    pub fn region(&self, name: &str) -> Option<(usize, &Region)> {
        self.regions
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == name)
    }
}

/// The `[limits]` of stacks whose every client is 127.0.0.1 (tests and
/// benchmarks): `deploy/limits-load.toml`, which `deploy/test` passes to
/// `cityboard up --limits`; the small topologies below end with it.
pub const LOAD_LIMITS: &str = include_str!("../limits-load.toml");

/// A city of [`small_topology_text`]: slug, name, country, latitude,
/// longitude.
pub type SmallCity<'a> = (&'a str, &'a str, &'a str, f64, f64);

/// A region of [`small_topology_text`]: its name and its one shard.
#[derive(Debug, Clone, Copy)]
pub struct SmallRegion<'a> {
    /// The region's name.
    pub name: &'a str,
    /// The shard's streaming replicas.
    pub replicas: usize,
    /// The shard's cities.
    pub cities: &'a [SmallCity<'a>],
}

/// The text of a small topology file, as the tests write one to start a
/// stack of their own or to check the parser: apex `cityboard.localhost`,
/// `port_base`, `partitions` per topic, then `regions` in order, one shard
/// each. One key or city a line (the tests name the lines of errors).
pub fn small_topology_text(port_base: u16, partitions: u32, regions: &[SmallRegion<'_>]) -> String {
    let mut text = format!(
        "apex = \"cityboard.localhost\"\nport_base = {port_base}\n[broker]\npartitions = {partitions}\n"
    );
    for region in regions {
        text.push_str(&format!(
            "[[region]]\nname = \"{}\"\n[[region.shard]]\nreplicas = {}\ncities = [\n",
            region.name, region.replicas
        ));
        for (slug, name, country, lat, lon) in region.cities {
            text.push_str(&format!(
                "  {{ slug = \"{slug}\", name = \"{name}\", country = \"{country}\", lat = {lat:?}, lon = {lon:?} }},\n"
            ));
        }
        text.push_str("]\n");
    }
    text.push_str(LOAD_LIMITS);
    text
}

/// The text of the topology shard-tool's moves are tested and measured
/// on (the reshard tests and `cityboard bench reshard`): apex
/// `cityboard.localhost`, `port_base`, 2 partitions, one region `solo`
/// whose shard-1 holds `newyork` and `boston` with no replica, and whose
/// shard-2 holds `philadelphia` with `replicas` replicas.
pub fn two_shard_topology_text(port_base: u16, replicas: u32) -> String {
    let city = |slug: &str, name: &str, lat: f64, lon: f64| {
        format!(
            "  {{ slug = \"{slug}\", name = \"{name}\", country = \"US\", lat = {lat:?}, lon = {lon:?} }},\n"
        )
    };
    format!(
        "apex = \"cityboard.localhost\"\nport_base = {port_base}\n[broker]\npartitions = 2\n\
         [[region]]\nname = \"solo\"\n\
         [[region.shard]]\nreplicas = 0\ncities = [\n{}{}]\n\
         [[region.shard]]\nreplicas = {replicas}\ncities = [\n{}]\n{LOAD_LIMITS}",
        city("newyork", "New York", 40.71427, -74.00597),
        city("boston", "Boston", 42.35843, -71.05977),
        city("philadelphia", "Philadelphia", 39.95233, -75.16379),
    )
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Region names and city slugs become host names and directory names.
fn check_label(label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(
            "must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'"
                .into(),
        )
    }
}

fn check_city(city: &City) -> Result<(), String> {
    check_label(&city.slug).map_err(|m| format!("city slug {:?}: {m}", city.slug))?;
    if city.name.trim().is_empty() {
        return Err(format!("city {:?} has an empty name", city.slug));
    }
    if city.country.len() != 2 || !city.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "city {:?}: country {:?} is not an ISO 3166-1 alpha-2 code like \"US\"",
            city.slug, city.country
        ));
    }
    if !(-90.0..=90.0).contains(&city.lat) || !(-180.0..=180.0).contains(&city.lon) {
        return Err(format!(
            "city {:?}: coordinates {}, {} are outside -90..90, -180..180",
            city.slug, city.lat, city.lon
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One region, one shard with one replica, one city; starts with a
    /// newline, so `apex` is on line 2.
    fn good() -> String {
        let region = SmallRegion {
            name: "us-east",
            replicas: 1,
            cities: &[("newyork", "New York", "US", 40.7, -74.0)],
        };
        format!("\n{}", small_topology_text(17000, 4, &[region]))
    }

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        Topology::parse(Path::new("topo.toml"), text)
    }

    #[test]
    fn the_default_topology_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.toml");
        let topo = Topology::load(&path).expect("default topology");
        assert_eq!(topo.regions.len(), 2);
        assert!(topo.regions.iter().all(|r| r.shards.len() == 2));
        assert!(
            topo.regions
                .iter()
                .flat_map(|r| &r.shards)
                .all(|s| s.replicas == 1)
        );
        // Its [limits] documents the defaults: they must not drift apart.
        assert_eq!(topo.limits, Limits::default());
    }

    #[test]
    fn small_topologies_carry_the_load_limits_and_a_bad_limit_names_its_line() {
        let topo = parse(&two_shard_topology_text(21000, 1)).unwrap();
        assert!(topo.limits.enabled);
        assert_eq!(topo.limits.writes_per_ip.count, 1_000_000);
        let text = "apex = \"a.localhost\"\nport_base = 20000\n[broker]\npartitions = 1\n\
                    [[region]]\nname = \"r\"\n[limits]\nwrites_per_ip = \"many\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 8, "{err}");
        assert!(err.message.contains("COUNT/PERIOD"), "{err}");
    }

    #[test]
    fn the_two_shard_topology_parses_with_its_replicas_on_shard_2() {
        let topo = parse(&two_shard_topology_text(21000, 1)).expect("two-shard topology");
        let shards = &topo.regions[0].shards;
        assert_eq!(shards.len(), 2);
        assert_eq!((shards[0].replicas, shards[1].replicas), (0, 1));
        let slugs =
            |i: usize| -> Vec<String> { shards[i].cities.iter().map(|c| c.slug.clone()).collect() };
        assert_eq!(slugs(0), ["newyork", "boston"]);
        assert_eq!(slugs(1), ["philadelphia"]);
    }

    #[test]
    fn ports_follow_the_documented_scheme() {
        let topo = parse(&good()).unwrap();
        assert_eq!(topo.broker_port(), 17000);
        assert_eq!(topo.region_ports(0).catalog, 17100);
        assert_eq!(topo.region_ports(0).api, 17103);
        assert_eq!(topo.shard_port(0, 0, 0), 17110);
        assert_eq!(topo.shard_port(0, 0, 1), 17111);
        assert_eq!(topo.shard_port(0, 1, 0), 17120);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = good().replace("replicas = 1", "replicas = 1\nreplica_lag = 3");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 10, "{err}");
        assert!(
            err.to_string().contains("unknown field `replica_lag`"),
            "{err}"
        );
        assert!(err.to_string().starts_with("topo.toml:10:"), "{err}");
    }

    #[test]
    fn a_duplicate_city_is_named_with_its_line() {
        let text = good().replace(
            "lon = -74.0 },",
            "lon = -74.0 },\n  { slug = \"newyork\", name = \"NY\", country = \"US\", lat = 1.0, lon = 1.0 },",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 12, "{err}");
        assert!(err.message.contains("duplicate city \"newyork\""), "{err}");
    }

    #[test]
    fn a_city_in_two_shards_is_refused() {
        let text = format!(
            "{}\n[[region.shard]]\nreplicas = 0\ncities = [\n  {{ slug = \"newyork\", name = \"New York\", country = \"US\", lat = 40.7, lon = -74.0 }},\n]\n",
            good()
        );
        let err = parse(&text).unwrap_err();
        assert!(
            err.message
                .contains("is in two shards: us-east/shard-1 and us-east/shard-2"),
            "{err}"
        );
        // The shard appended after the load limits that end `good()`.
        assert_eq!(err.line, 17 + LOAD_LIMITS.lines().count(), "{err}");
    }

    #[test]
    fn zero_shards_is_refused() {
        let text = "apex = \"a.localhost\"\nport_base = 17000\n[broker]\npartitions = 1\n[[region]]\nname = \"solo\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, 6, "{err}");
        assert!(err.message.contains("zero shards"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (from, to, needle) in [
            ("lat = 40.7", "lat = 140.7", "coordinates"),
            ("country = \"US\"", "country = \"usa\"", "ISO 3166-1"),
            ("name = \"us-east\"", "name = \"US East\"", "region name"),
            ("port_base = 17000", "port_base = 80", "port_base"),
            ("partitions = 4", "partitions = 0", "partitions"),
            ("replicas = 1", "replicas = 12", "at most 9"),
        ] {
            let err = parse(&good().replace(from, to)).unwrap_err();
            assert!(err.message.contains(needle), "{from} -> {to}: {err}");
        }
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_panic() {
        let err = Topology::load(Path::new("/nonexistent/topology.toml")).unwrap_err();
        assert!(err.message.contains("cannot read"));
    }
}
