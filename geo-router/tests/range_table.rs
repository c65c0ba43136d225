//! Exactness of the edge's range table on the real DB-IP Lite database.
//!
//! The Worker answers "which city is this IPv4 address in" from the range
//! table instead of the compact database, so the two must agree on every
//! address, not on most. This compiles the IPv4 source files of
//! `CITYBOARD_DBIP_MMDB` (see `common/mod.rs`; unset, the test is skipped,
//! set but missing, it fails) for the default topology with the options
//! `deploy/build-edge.sh` uses, reduces the compact database to a range
//! table, round-trips it through its bytes, and checks
//! `RangeTable::city(ip) == Locator::locate(ip).map(|p| p.city)` for
//!
//! - 100 000 uniformly random IPv4 addresses (reserved ones included: both
//!   must say `None`),
//! - every range's first address, last address, and the addresses just
//!   before and after it (where an off-by-one would show),
//! - the IPv4-mapped IPv6 form of 10 000 of the random addresses,
//!
//! and that IPv6 addresses other than mapped ones are `None`. About ten
//! seconds with geo-router's dev opt-level (the compile is most of it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use geo_router::compile::{CompileOptions, compile};
use geo_router::{Locator, RangeTable, ServedCities, Topology};
use maxminddb::Reader;
use rand::{Rng, SeedableRng, rngs::StdRng};

mod common;
use common::{ENV, source_files};

const RANDOM: usize = 100_000;
const MAPPED: usize = 10_000;

#[test]
fn range_table_answers_every_ipv4_address_like_the_compact_database() {
    let Some(files) = source_files() else {
        eprintln!("{ENV} not set: skipping the range-table check on the real DB-IP database");
        return;
    };
    let started = Instant::now();
    // The Worker's table is IPv4 only, so is what it is made from.
    let readers: Vec<Reader<Vec<u8>>> = files
        .iter()
        .map(|f| Reader::open_readfile(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .filter(|r| r.metadata().ip_version == 4)
        .collect();
    assert!(!readers.is_empty(), "{ENV}: no IPv4 source database");
    let topology_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/topology.toml");
    let text = std::fs::read_to_string(topology_path).expect("default topology");
    let served =
        ServedCities::from_topology(&Topology::parse(&text).expect("topology")).expect("served");
    let (compact, stats) = compile(&readers, &served, &CompileOptions::default()).expect("compile");
    let compiled = started.elapsed();
    let locator = Locator::from_bytes(compact).expect("compact db");

    let table = RangeTable::from_compact(&locator).expect("range table");
    let bytes = table.to_bytes();
    let table = RangeTable::from_bytes(&bytes).expect("the table decodes");
    println!(
        "compact db: {} merged ranges, {} bytes; range table: {} ranges, {} cities, {} bytes",
        stats.output_ranges,
        stats.output_bytes,
        table.len(),
        table.cities().len(),
        bytes.len()
    );
    assert!(table.len() > 100_000, "suspiciously few ranges");

    let mut rng = StdRng::seed_from_u64(2026);
    let mut addresses: Vec<u32> = (0..RANDOM).map(|_| rng.r#gen::<u32>()).collect();
    for (first, last, _) in table.ranges() {
        addresses.extend([first, last]);
        addresses.extend(first.checked_sub(1));
        addresses.extend(last.checked_add(1));
    }
    let (mut mismatches, mut located) = (0usize, 0usize);
    let mut check = |ip: IpAddr| {
        let want = locator.locate(ip).map(|p| p.city);
        let got = table.city(ip);
        located += usize::from(got.is_some());
        if got != want {
            mismatches += 1;
            if mismatches <= 10 {
                eprintln!("{ip}: range table {got:?}, compact db {want:?}");
            }
        }
    };
    for &a in &addresses {
        check(IpAddr::V4(Ipv4Addr::from(a)));
    }
    for &a in &addresses[..MAPPED] {
        check(IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()));
    }
    let checked = addresses.len() + MAPPED;
    println!(
        "{checked} addresses checked ({RANDOM} random, {} at range boundaries, {MAPPED} mapped), {located} with a city, {mismatches} mismatches, in {:.1} s ({:.1} s compiling)",
        addresses.len() - RANDOM,
        started.elapsed().as_secs_f64(),
        compiled.as_secs_f64()
    );
    assert_eq!(
        mismatches, 0,
        "the range table differs from the compact database"
    );

    // IPv6 proper is not the table's: always unknown.
    for _ in 0..1000 {
        let v6 = Ipv6Addr::from(rng.r#gen::<u128>());
        if v6.to_ipv4_mapped().is_none() {
            assert_eq!(table.city(IpAddr::V6(v6)), None, "{v6}");
        }
    }
}
