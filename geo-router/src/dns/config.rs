//! What the DNS server serves: the zone, its regions, their api instances
//! and standbys, from a topology file and/or flags.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::error::{GeoError, Result};
use crate::host::valid_slug;
use crate::topology::Topology;

/// One api instance of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Region label.
    pub region: String,
    /// Where `/healthz` is checked (HTTP).
    pub check: SocketAddr,
    /// The address put in A/AAAA answers (normally the check address's IP).
    pub answer: IpAddr,
}

impl Instance {
    /// Parses `REGION=IP:PORT` (answer = IP) or `REGION=IP:PORT@ANSWER_IP`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| {
            GeoError::Dns(format!(
                "instance {spec:?}: {why} (expected REGION=IP:PORT[@ANSWER_IP])"
            ))
        };
        let (region, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let region = region.trim().to_ascii_lowercase();
        if !valid_slug(&region) {
            return Err(bad("region is not a DNS label"));
        }
        let (check, answer) = match rest.split_once('@') {
            Some((check, answer)) => (check, Some(answer)),
            None => (rest, None),
        };
        let check: SocketAddr = check.trim().parse().map_err(|_| bad("bad IP:PORT"))?;
        let answer = match answer {
            Some(a) => a.trim().parse().map_err(|_| bad("bad answer IP"))?,
            None => check.ip(),
        };
        Ok(Instance {
            region,
            check,
            answer,
        })
    }
}

/// Everything the DNS server needs to start.
#[derive(Debug, Clone, Default)]
pub struct DnsConfig {
    /// Zone apex, e.g. `cityboard.localhost`.
    pub zone: String,
    /// Region labels (every region gets `origin.{region}.{zone}`).
    pub regions: Vec<String>,
    /// Api instances to health-check.
    pub instances: Vec<Instance>,
    /// Per region: addresses to answer when no instance is healthy.
    pub standby: BTreeMap<String, Vec<IpAddr>>,
}

impl DnsConfig {
    /// The zone, regions, standbys and one api instance per region on
    /// `host`, at the port the topology's port rule gives the region's api.
    pub fn from_topology(topology: &Topology, host: IpAddr) -> Result<Self> {
        let mut config = DnsConfig {
            zone: topology.apex.clone(),
            ..DnsConfig::default()
        };
        for (index, region) in topology.regions.iter().enumerate() {
            let name = region.name.to_ascii_lowercase();
            config.regions.push(name.clone());
            if let Some(port) = topology.api_port(index) {
                config.instances.push(Instance {
                    region: name.clone(),
                    check: SocketAddr::new(host, port),
                    answer: host,
                });
            }
            if !region.standby.is_empty() {
                config.standby.insert(name, region.standby.clone());
            }
        }
        Ok(config)
    }

    /// Adds instances and regions given on the command line; an instance of
    /// a region replaces the topology-derived instances of that region.
    pub fn with_instances(mut self, instances: Vec<Instance>) -> Self {
        let regions: Vec<String> = instances.iter().map(|i| i.region.clone()).collect();
        self.instances.retain(|i| !regions.contains(&i.region));
        for region in regions {
            if !self.regions.contains(&region) {
                self.regions.push(region);
            }
        }
        self.instances.extend(instances);
        self
    }

    /// Checks the configuration is servable.
    pub fn validate(&self) -> Result<()> {
        if self.zone.is_empty() {
            return Err(GeoError::Dns("no zone: pass --zone or --topology".into()));
        }
        if self.regions.is_empty() {
            return Err(GeoError::Dns(
                "no region: pass --instance or --topology".into(),
            ));
        }
        Ok(())
    }
}

/// Loopback, where the local stack runs every api.
pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instances() {
        let i = Instance::parse("US-East=127.0.0.1:17103").expect("valid");
        assert_eq!(
            (i.region.as_str(), i.check.port(), i.answer),
            ("us-east", 17103, LOCALHOST)
        );
        let i = Instance::parse("eu=127.0.0.1:80@192.0.2.7").expect("valid");
        assert_eq!(i.answer.to_string(), "192.0.2.7");
        let i = Instance::parse("eu=[::1]:80").expect("v6");
        assert_eq!(i.answer.to_string(), "::1");
        for bad in [
            "",
            "eu",
            "eu=",
            "eu=1.2.3.4",
            "e u=1.2.3.4:1",
            "eu=1.2.3.4:1@x",
        ] {
            assert!(Instance::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn derives_from_topology() {
        let topology = Topology::parse(
            "apex = \"z.test\"\nport_base = 17000\n[[region]]\nname = \"a\"\n[[region]]\nname = \"b\"\nstandby = [\"10.0.0.9\"]\n",
        )
        .expect("topology");
        let config = DnsConfig::from_topology(&topology, LOCALHOST).expect("config");
        assert_eq!(config.regions, ["a", "b"]);
        assert_eq!(config.instances[1].check.port(), 17203);
        assert_eq!(config.standby["b"].len(), 1);
        let config = config.with_instances(vec![Instance::parse("a=127.0.0.1:9").expect("valid")]);
        assert_eq!(config.instances.len(), 2);
        assert!(config.instances.iter().any(|i| i.check.port() == 9));
        assert!(config.validate().is_ok());
    }
}
