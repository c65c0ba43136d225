//! `cityboard psql REGION SHARD [--replica N]`: a psql session on one
//! instance of the stack.

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::arrangement::Arrangement;
use crate::home::Home;
use crate::postgres::DATABASE;
use crate::topology::Topology;

/// The port of `region`'s `shard` (`shard-2`, `2` or `catalog`): its
/// primary now (after a failover, whichever member `arrangement` says), or
/// with `replica`, the member named `replica-K`, whatever its role now.
pub fn port(
    topology: &Topology,
    arrangement: &Arrangement,
    region: &str,
    shard: &str,
    replica: Option<usize>,
) -> Result<u16> {
    let (r, found) = topology.region(region).with_context(|| {
        let names: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
        format!("no region {region:?}; regions: {}", names.join(", "))
    })?;
    if shard == "catalog" {
        if replica.is_some() {
            bail!("the catalog has no replicas");
        }
        return Ok(topology.region_ports(r).catalog);
    }
    let number: usize = shard
        .strip_prefix("shard-")
        .unwrap_or(shard)
        .parse()
        .ok()
        .filter(|n| (1..=found.shards.len()).contains(n))
        .with_context(|| {
            format!(
                "no shard {shard:?} in {region}: shard-1 .. shard-{} or catalog",
                found.shards.len()
            )
        })?;
    let replicas = found.shards[number - 1].replicas;
    let member = match replica {
        None => arrangement.primary(region, &found.shards[number - 1].name),
        Some(k) if (1..=replicas).contains(&k) => k,
        Some(k) => bail!("{region}/shard-{number} has no replica {k} (it has {replicas})"),
    };
    Ok(topology.shard_port(r, number - 1, member))
}

/// Replaces this process with psql connected to the instance.
pub fn run(home: &Home, region: &str, shard: &str, replica: Option<usize>) -> Result<()> {
    let topology =
        Topology::load(&home.topology_file()).context("no stack here: run `cityboard up` first")?;
    let arrangement = Arrangement::load(&home.arrangement_file())?;
    let port = port(&topology, &arrangement, region, shard, replica)?;
    // As the superuser, with its password from the stack's secrets.
    let err = Command::new("psql")
        .envs(crate::postgres::client_env(
            &home.secrets_dir(),
            crate::postgres::ADMIN,
        )?)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            DATABASE,
        ])
        .exec();
    Err(err).context("starting psql")
}
