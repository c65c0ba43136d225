//! `geo-router`: compile the compact city database (and the edge's range
//! table from it), serve the origin zone's
//! DNS, and measure both.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use geo_router::compile::{CompileOptions, compile};
use geo_router::{Locator, PlacementRule, RangeTable, ServedCities, Topology};
use maxminddb::Reader;

mod cli_dns;

#[derive(Parser)]
#[command(
    name = "geo-router",
    about = "Served-city GeoIP database compiler and origin-zone DNS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a full GeoIP city database into the compact served-city database.
    Compile(CompileArgs),
    /// Serve the origin zone: `origin.{region}.{zone}` → healthy api instances.
    Dns(cli_dns::DnsArgs),
    /// Look addresses up in a compact database (operator check).
    Locate {
        /// Compact database (from `compile`).
        #[arg(long)]
        compact: PathBuf,
        /// Addresses to look up.
        #[arg(required = true)]
        ips: Vec<std::net::IpAddr>,
    },
    /// Reduce a compact database to the IPv4 range table the edge Worker embeds.
    RangeTable {
        /// Compact database (from `compile`).
        #[arg(long)]
        db: PathBuf,
        /// Where to write the range table.
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks (one core).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Parser)]
struct CompileArgs {
    /// Source database(s): DB-IP Lite city (IPv4 and IPv6 files) or GeoLite2-City.
    #[arg(long = "source", required = true)]
    sources: Vec<PathBuf>,
    /// Topology whose cities are served.
    #[arg(long)]
    topology: PathBuf,
    /// Maximum distance between a visitor and their city, km.
    #[arg(long, default_value_t = geo_router::placement::DEFAULT_MAX_KM)]
    max_km: f64,
    /// Distance resolution stored in records, km (0: none). Coarser is smaller.
    #[arg(long, default_value_t = 50)]
    km_step: u32,
    /// Where to write the compact database.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// `locate` on the compact database vs the maxminddb reader on the source.
    Lookup {
        /// Compact database (from `compile`).
        #[arg(long)]
        compact: PathBuf,
        /// Full source database (the IPv4 DB-IP file).
        #[arg(long)]
        source: PathBuf,
        /// Addresses in the sample.
        #[arg(long, default_value_t = 100_000)]
        addresses: usize,
        /// Measuring time per side, seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decode time and `RangeTable::city` rate vs `locate` on the compact database.
    Ranges {
        /// Range table (from `range-table`).
        #[arg(long)]
        ranges: PathBuf,
        /// The compact database it was made from.
        #[arg(long)]
        compact: PathBuf,
        /// Addresses in the sample.
        #[arg(long, default_value_t = 100_000)]
        addresses: usize,
        /// Measuring time per side, seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Queries/s and p99 of the DNS server (started in-process on loopback).
    Dns(cli_dns::DnsBenchArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Compile(args) => run_compile(args),
        Command::Dns(args) => cli_dns::run(args),
        Command::Locate { compact, ips } => {
            let bytes = std::fs::read(&compact).with_context(|| compact.display().to_string())?;
            let locator = Locator::from_bytes(bytes)?;
            for ip in ips {
                match locator.try_locate(ip) {
                    Ok(Some(p)) => println!("{ip}\t{}\t{:?}\t{} km", p.city, p.how, p.distance_km),
                    Ok(None) => println!("{ip}\tunknown"),
                    Err(e) => println!("{ip}\tunknown ({e})"),
                }
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Lookup {
            compact,
            source,
            addresses,
            seconds,
            json,
        }) => run_bench_lookup(compact, source, addresses, seconds, json),
        Command::RangeTable { db, out } => run_range_table(db, out),
        Command::Bench(BenchCommand::Ranges {
            ranges,
            compact,
            addresses,
            seconds,
        }) => run_bench_ranges(ranges, compact, addresses, seconds),
        Command::Bench(BenchCommand::Dns(args)) => cli_dns::bench(args),
    }
}

fn run_compile(args: CompileArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.topology)
        .with_context(|| format!("reading topology {}", args.topology.display()))?;
    let topology = Topology::parse(&text).with_context(|| args.topology.display().to_string())?;
    let served = ServedCities::from_topology(&topology)?;
    let mut readers = Vec::new();
    for path in &args.sources {
        let reader = Reader::open_readfile(path)
            .with_context(|| format!("opening source database {}", path.display()))?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!(
            "source {}: {} bytes, {} nodes, IPv{} ({})",
            path.display(),
            bytes,
            reader.metadata().node_count,
            reader.metadata().ip_version,
            reader.metadata().database_type
        );
        readers.push(reader);
    }
    let options = CompileOptions {
        rule: PlacementRule::with_max_km(args.max_km),
        km_step: args.km_step,
    };
    let started = std::time::Instant::now();
    let (bytes, stats) = compile(&readers, &served, &options)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    // Re-open what was written: a compile that produces an unreadable file fails here.
    Locator::from_bytes(&bytes[..]).context("verifying the compact database")?;
    println!(
        "served cities: {} (max {} km, km step {})",
        served.len(),
        args.max_km,
        args.km_step
    );
    println!(
        "networks: {} read, {} skipped (reserved / IPv4 space of IPv6 source), {} placed in a city, {} distinct source records",
        stats.source_networks,
        stats.skipped_networks,
        stats.placed_networks,
        stats.distinct_records
    );
    println!(
        "output {}: {} bytes, {} merged ranges, in {:.1} s",
        args.out.display(),
        stats.output_bytes,
        stats.output_ranges,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_bench_lookup(
    compact: PathBuf,
    source: PathBuf,
    n: usize,
    seconds: f64,
    json: bool,
) -> Result<()> {
    let bytes = std::fs::read(&compact).with_context(|| compact.display().to_string())?;
    let locator = Locator::from_bytes(bytes)?;
    let source_db = Reader::open_readfile(&source).with_context(|| source.display().to_string())?;
    let addresses = geo_router::bench::sample_addresses(n, 4);
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    let f = geo_router::bench::lookup(&locator, &source_db, &addresses, duration);
    // The sizes are half the point: the compact database has to ship in a Worker.
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (compact_bytes, source_bytes) = (size(&compact), size(&source));
    if json {
        let mut value = serde_json::to_value(&f)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("compact_bytes".into(), compact_bytes.into());
            object.insert("source_bytes".into(), source_bytes.into());
        }
        println!("{value}");
    } else {
        println!(
            "geo-lookup, one core, {} random public IPv4 addresses",
            f.addresses
        );
        println!("  compact database:           {compact_bytes:>12} bytes");
        println!("  source database:            {source_bytes:>12} bytes");
        println!(
            "  locate (compact db):        {:>12.0} lookups/s",
            f.locate_per_sec
        );
        println!(
            "  maxminddb lookup (source):  {:>12.0} lookups/s",
            f.source_per_sec
        );
        println!("  ratio:                      {:>12.2}x", f.ratio);
        println!(
            "  answered with a city:       {:>11.1} %",
            f.located_share * 100.0
        );
    }
    Ok(())
}

fn run_range_table(db: PathBuf, out: PathBuf) -> Result<()> {
    let started = std::time::Instant::now();
    let bytes = std::fs::read(&db).with_context(|| db.display().to_string())?;
    let locator = Locator::from_bytes(&bytes[..]).with_context(|| db.display().to_string())?;
    let table = RangeTable::from_compact(&locator)
        .with_context(|| format!("reducing {} to a range table", db.display()))?;
    let encoded = table.to_bytes();
    // Read back what is written: a table the Worker would refuse fails here.
    if RangeTable::from_bytes(&encoded)? != table {
        anyhow::bail!("the encoded range table does not decode to itself");
    }
    std::fs::write(&out, &encoded).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "range table {}: {} ranges, {} cities, {} bytes raw, {} (from {}, {} bytes), in {:.1} s",
        out.display(),
        table.len(),
        table.cities().len(),
        encoded.len(),
        gzip_size(&encoded),
        db.display(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `gzip -9` size of `bytes`, as text ("? bytes" without a gzip on PATH):
/// the size the Worker's upload limit counts. The system gzip rather than a
/// compression crate, because this is only a figure for the operator.
fn gzip_size(bytes: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let run = || -> std::io::Result<usize> {
        let mut child = Command::new("gzip")
            .arg("-9c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
        let data = bytes.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data));
        let output = child.wait_with_output()?;
        writer.join().map_err(|_| std::io::ErrorKind::Other)??;
        Ok(output.stdout.len())
    };
    match run() {
        Ok(n) => format!("{n} bytes gzip -9"),
        Err(_) => "? bytes gzip (no gzip on PATH)".into(),
    }
}

fn run_bench_ranges(ranges: PathBuf, compact: PathBuf, n: usize, seconds: f64) -> Result<()> {
    let bytes = std::fs::read(&ranges).with_context(|| ranges.display().to_string())?;
    let compact_bytes = std::fs::read(&compact).with_context(|| compact.display().to_string())?;
    // What the Worker paid on its first IP lookup before the range table.
    let opened = std::time::Instant::now();
    let locator = Locator::from_bytes(compact_bytes)?;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let addresses = geo_router::bench::sample_addresses(n, 4);
    let duration = Duration::from_secs_f64(seconds.max(0.1));
    let f = geo_router::bench::ranges(&bytes, &locator, &addresses, duration)?;
    println!(
        "range table, one core, {} random public IPv4 addresses",
        f.addresses
    );
    println!("  range table:                {:>12} bytes", bytes.len());
    println!("  ranges:                     {:>12}", f.ranges);
    println!("  decode (from_bytes):        {:>12.2} ms", f.decode_ms);
    println!("  open compact db (verified): {open_ms:>12.2} ms");
    println!(
        "  RangeTable::city:           {:>12.0} lookups/s",
        f.city_per_sec
    );
    println!(
        "  locate (compact db):        {:>12.0} lookups/s",
        f.locate_per_sec
    );
    println!("  mismatches vs locate:       {:>12}", f.mismatches);
    Ok(())
}
