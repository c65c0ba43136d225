//! The `dns` and `bench dns` subcommands.

use anyhow::Result;

/// Flags of `geo-router dns`.
#[derive(clap::Parser)]
pub struct DnsArgs {}

/// Flags of `geo-router bench dns`.
#[derive(clap::Parser)]
pub struct DnsBenchArgs {}

/// Runs the DNS server until interrupted.
pub fn run(_args: DnsArgs) -> Result<()> {
    anyhow::bail!("not yet")
}

/// Runs the DNS benchmark.
pub fn bench(_args: DnsBenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
