//! The parts of `deploy/topology.toml` geo-router needs.
//!
//! geo-router reads the topology file itself instead of depending on the
//! `deploy` crate, which would pull tokio and Postgres drivers into the wasm
//! build. Only the keys used here are declared; everything else is ignored,
//! because `deploy` owns the file's full schema and validates it strictly.

use std::net::IpAddr;

use serde::Deserialize;

use crate::error::{GeoError, Result};

/// What geo-router reads from a topology file.
#[derive(Debug, Clone, Deserialize)]
pub struct Topology {
    /// Apex domain: city hosts are `{slug}.{apex}`; the DNS zone defaults to it.
    pub apex: String,
    /// First port of the stack; the api of region `i` listens on
    /// `port_base + 100 * (i + 1) + 3` (see the comment in the topology file).
    #[serde(default)]
    pub port_base: Option<u16>,
    /// Regions in file order.
    #[serde(default, rename = "region")]
    pub regions: Vec<Region>,
}

/// One region of the topology.
#[derive(Debug, Clone, Deserialize)]
pub struct Region {
    /// DNS label of the region, e.g. `us-east`.
    pub name: String,
    /// Optional: addresses to answer for `origin.{region}.{zone}` when no api
    /// instance of the region passes its health check.
    #[serde(default)]
    pub standby: Vec<IpAddr>,
    /// Shards in file order.
    #[serde(default, rename = "shard")]
    pub shards: Vec<Shard>,
}

/// One shard; geo-router only cares which cities it holds.
#[derive(Debug, Clone, Deserialize)]
pub struct Shard {
    /// Cities whose posts live on this shard.
    #[serde(default)]
    pub cities: Vec<TopologyCity>,
}

/// A served city as the topology declares it.
#[derive(Debug, Clone, Deserialize)]
pub struct TopologyCity {
    /// DNS label, the city's host name.
    pub slug: String,
    /// Display name (optional for geo-router).
    #[serde(default)]
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

impl Topology {
    /// Parses topology TOML text.
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| GeoError::Topology(e.to_string()))
    }

    /// Every served city of every region, in file order.
    pub fn cities(&self) -> impl Iterator<Item = (&Region, &TopologyCity)> {
        self.regions.iter().flat_map(|r| {
            r.shards
                .iter()
                .flat_map(move |s| s.cities.iter().map(move |c| (r, c)))
        })
    }

    /// Port of region `index`'s api, by the topology's port rule.
    pub fn api_port(&self, index: usize) -> Option<u16> {
        let base = u32::from(self.port_base?);
        let port = base + 100 * (u32::try_from(index).ok()? + 1) + 3;
        u16::try_from(port).ok()
    }

    /// Port of the geo DNS by the topology's port rule (`port_base + 1`).
    pub fn dns_port(&self) -> Option<u16> {
        self.port_base?.checked_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_default_topology() {
        let text = include_str!("../../deploy/topology.toml");
        let topology = Topology::parse(text).expect("default topology parses");
        assert!(!topology.apex.is_empty());
        assert!(!topology.regions.is_empty());
        assert!(topology.cities().count() >= topology.regions.len());
        let base = topology.port_base.expect("port_base");
        assert_eq!(topology.api_port(0), Some(base + 103));
        assert_eq!(topology.dns_port(), Some(base + 1));
    }

    #[test]
    fn unknown_keys_are_ignored_and_garbage_is_an_error() {
        let text =
            "apex = \"x.test\"\nfuture = 1\n[[region]]\nname = \"r\"\nstandby = [\"10.0.0.1\"]\n";
        let topology = Topology::parse(text).expect("lenient");
        assert_eq!(topology.regions[0].standby.len(), 1);
        assert!(Topology::parse("apex = ").is_err());
        assert!(Topology::parse("port_base = 1").is_err());
    }
}
