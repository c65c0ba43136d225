//! Measurements behind `cityboard bench geo-lookup` (and the DNS one in
//! [`crate::dns::bench`]): single-threaded, same inputs for both sides, our
//! figure next to the baseline's and their ratio.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use maxminddb::Reader;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::address::public_address;
use crate::compact::Locator;
use crate::range_table::RangeTable;
use crate::source;

/// Result of the lookup benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LookupFigures {
    /// Addresses in the sample (each looked up repeatedly).
    pub addresses: usize,
    /// `Locator::locate` on the compact database, lookups per second.
    pub locate_per_sec: f64,
    /// `maxminddb::Reader::lookup` + decode of country and coordinates on the
    /// full source database, lookups per second.
    pub source_per_sec: f64,
    /// `locate_per_sec / source_per_sec`.
    pub ratio: f64,
    /// Share of the sample that `locate` answered with a city.
    pub located_share: f64,
}

/// `n` random public IPv4 addresses (deterministic for a seed). Uniform over
/// the address space, which is what a stream of visitors looks like to the
/// tree: most lookups walk deep into it.
pub fn sample_addresses(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let ip = IpAddr::V4(Ipv4Addr::from(rng.r#gen::<u32>()));
        if public_address(ip).is_some() {
            out.push(ip);
        }
    }
    out
}

/// Runs `f` over the addresses repeatedly for at least `duration`; lookups/s.
fn rate(addresses: &[IpAddr], duration: Duration, mut f: impl FnMut(IpAddr) -> bool) -> f64 {
    // Warm-up pass (page in the database, train the branch predictor).
    for &ip in addresses {
        black_box(f(ip));
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        for &ip in addresses {
            black_box(f(black_box(ip)));
        }
        done += addresses.len() as u64;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Measures `locate` on the compact database against the raw reader on the
/// source, same addresses, same thread.
pub fn lookup<S: AsRef<[u8]>, T: AsRef<[u8]>>(
    compact: &Locator<S>,
    source_db: &Reader<T>,
    addresses: &[IpAddr],
    duration: Duration,
) -> LookupFigures {
    let located = addresses
        .iter()
        .filter(|&&ip| compact.locate(ip).is_some())
        .count();
    let locate_per_sec = rate(addresses, duration, |ip| compact.locate(ip).is_some());
    let source_per_sec = rate(addresses, duration, |ip| {
        source::lookup(source_db, ip).ok().flatten().is_some()
    });
    LookupFigures {
        addresses: addresses.len(),
        locate_per_sec,
        source_per_sec,
        ratio: locate_per_sec / source_per_sec,
        located_share: located as f64 / addresses.len().max(1) as f64,
    }
}

/// Result of the range-table benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RangeFigures {
    /// Addresses in the sample.
    pub addresses: usize,
    /// Ranges in the table.
    pub ranges: usize,
    /// `RangeTable::from_bytes`, best of five, milliseconds: what the first
    /// IP lookup of a Worker isolate pays (wasm is slower than this host).
    pub decode_ms: f64,
    /// `RangeTable::city`, lookups per second.
    pub city_per_sec: f64,
    /// `Locator::locate` on the compact database, lookups per second.
    pub locate_per_sec: f64,
    /// Sample addresses where the two disagree (must be 0).
    pub mismatches: usize,
}

/// Measures decoding a range table and looking addresses up in it, next to
/// `locate` on the compact database it was made from.
pub fn ranges<S: AsRef<[u8]>>(
    table_bytes: &[u8],
    compact: &Locator<S>,
    addresses: &[IpAddr],
    duration: Duration,
) -> crate::Result<RangeFigures> {
    let mut decode = f64::INFINITY;
    let mut table = RangeTable::default();
    for _ in 0..5 {
        let start = Instant::now();
        table = black_box(RangeTable::from_bytes(black_box(table_bytes))?);
        decode = decode.min(start.elapsed().as_secs_f64());
    }
    let mismatches = addresses
        .iter()
        .filter(|&&ip| table.city(ip) != compact.locate(ip).map(|p| p.city))
        .count();
    let city_per_sec = rate(addresses, duration, |ip| table.city(ip).is_some());
    let locate_per_sec = rate(addresses, duration, |ip| compact.locate(ip).is_some());
    Ok(RangeFigures {
        addresses: addresses.len(),
        ranges: table.len(),
        decode_ms: decode * 1e3,
        city_per_sec,
        locate_per_sec,
        mismatches,
    })
}
