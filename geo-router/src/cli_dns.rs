//! The `dns` and `bench dns` subcommands.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use geo_router::Topology;
use geo_router::dns::config::LOCALHOST;
use geo_router::dns::health::{Checker, HealthPolicy};
use geo_router::dns::server::{Sockets, serve};
use geo_router::dns::{DnsConfig, Instance, Zone};

/// Flags of `geo-router dns`.
#[derive(clap::Parser)]
pub struct DnsArgs {
    /// Topology: zone = its apex, one api instance per region at the port rule's api port.
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Zone apex (default: the topology's apex).
    #[arg(long)]
    zone: Option<String>,
    /// UDP and TCP address to listen on (default: 127.0.0.1, port_base + 1 of the topology).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Api instance `REGION=IP:PORT[@ANSWER_IP]`; repeatable; replaces the
    /// topology's instances of that region.
    #[arg(long = "instance")]
    instances: Vec<String>,
    /// Standby `REGION=IP` answered when no instance of the region is healthy; repeatable.
    #[arg(long = "standby")]
    standby: Vec<String>,
    /// Host of the topology-derived api instances.
    #[arg(long, default_value_t = LOCALHOST)]
    api_host: IpAddr,
    /// Seconds between health-check rounds.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Consecutive failures that take an instance out.
    #[arg(long, default_value_t = 3)]
    fall: u32,
    /// Consecutive passes that bring it back.
    #[arg(long, default_value_t = 2)]
    rise: u32,
}

/// Flags of `geo-router bench dns`.
#[derive(clap::Parser)]
pub struct DnsBenchArgs {
    /// Client threads (one query in flight each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the DNS server until interrupted.
pub fn run(args: DnsArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut config = DnsConfig::default();
    let mut default_port = None;
    if let Some(path) = &args.topology {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let topology = Topology::parse(&text).with_context(|| path.display().to_string())?;
        default_port = topology.dns_port();
        config = DnsConfig::from_topology(&topology, args.api_host)?;
    }
    if let Some(zone) = args.zone {
        config.zone = zone;
    }
    let instances = args
        .instances
        .iter()
        .map(|s| Instance::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    config = config.with_instances(instances);
    for spec in &args.standby {
        let (region, ip) = spec
            .split_once('=')
            .with_context(|| format!("standby {spec:?}: expected REGION=IP"))?;
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("standby {spec:?}: bad IP"))?;
        config
            .standby
            .entry(region.to_ascii_lowercase())
            .or_default()
            .push(ip);
    }
    config.validate()?;
    let listen = args
        .listen
        .or_else(|| default_port.map(|p| SocketAddr::new(LOCALHOST, p)))
        .context("no listen address: pass --listen or a --topology with port_base")?;
    let policy = HealthPolicy {
        interval: Duration::from_secs_f64(args.interval.max(0.05)),
        fall: args.fall.max(1),
        rise: args.rise.max(1),
        ..HealthPolicy::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let ns_addrs = if listen.ip().is_unspecified() { vec![] } else { vec![listen.ip()] };
        let zone = Arc::new(Zone::new(&config.zone, &config.regions, ns_addrs)?);
        let checker = Checker::new(zone.clone(), &config, policy);
        let sockets = Sockets::bind(listen).await?;
        tracing::info!(%listen, zone = %config.zone, regions = ?config.regions, instances = config.instances.len(), "serving the origin zone");
        tokio::spawn(checker.run());
        tokio::select! {
            _ = serve(zone, sockets) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        }
        Ok(())
    })
}

/// Runs the DNS benchmark.
pub fn bench(args: DnsBenchArgs) -> Result<()> {
    let f =
        geo_router::dns::bench::run(args.clients, Duration::from_secs_f64(args.seconds.max(0.1)))?;
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!(
            "dns-qps, server on one core (current-thread runtime), {} UDP clients",
            f.clients
        );
        println!(
            "  geo-router dns:   {:>10.0} queries/s  p99 {:>6.0} µs",
            f.qps, f.p99_us
        );
        println!(
            "  UDP echo (base):  {:>10.0} queries/s  p99 {:>6.0} µs",
            f.echo_qps, f.echo_p99_us
        );
        println!("  ratio:            {:>10.2}", f.ratio);
    }
    Ok(())
}
