//! `geo-router compile`: full GeoIP city database → compact city database.
//!
//! Every network of the source is placed with the rule (cached per distinct
//! source record, since millions of networks share a few hundred thousand
//! locations), networks without a city are dropped, neighbouring networks
//! with the same answer are merged into one range, and the ranges are written
//! with `mmdb-writer`, which decomposes them into the fewest CIDR blocks.
//! IPv4 goes under `::/96` of an IPv6 tree; IPv4-mapped lookups are unmapped
//! by the [`Locator`](crate::Locator) itself, so no alias subtrees are written
//! and the IPv6 source's own answers for 6to4 and Teredo space are kept.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maxminddb::{Reader, WithinOptions};
use mmdb_writer::{IpVersion, Ipv4Aliasing, Value, Writer};

use crate::address::special_block;
use crate::compact::{CompactRecord, DATABASE_TYPE};
use crate::error::{GeoError, Result};
use crate::placement::PlacementRule;
use crate::served::ServedCities;
use crate::source::decode_location;

/// How to compile.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions {
    /// The placement rule (limit and direct radius).
    pub rule: PlacementRule,
    /// Distance resolution stored in records, km (0: none).
    pub km_step: u32,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            rule: PlacementRule::default(),
            km_step: 50,
        }
    }
}

/// What a compile did, for the operator and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Networks read from the sources.
    pub source_networks: u64,
    /// Distinct source records placed (cache size).
    pub distinct_records: u64,
    /// Networks that got a city.
    pub placed_networks: u64,
    /// Networks skipped because they are reserved space or IPv4 space of an IPv6 source.
    pub skipped_networks: u64,
    /// Merged ranges written.
    pub output_ranges: u64,
    /// Size of the compact database in bytes.
    pub output_bytes: u64,
}

/// A compact answer, owned by index into the served set so it hashes cheaply.
type Answer = (usize, &'static str, u16);

/// A merged range in one family's integer space.
struct Range {
    start: u128,
    end: u128,
    answer: Answer,
}

/// Compiles sources (any mix of IPv4 and IPv6 databases) into compact bytes.
pub fn compile<S: AsRef<[u8]>>(
    sources: &[Reader<S>],
    served: &ServedCities,
    options: &CompileOptions,
) -> Result<(Vec<u8>, CompileStats)> {
    let mut stats = CompileStats::default();
    let mut v4: Vec<Range> = Vec::new();
    let mut v6: Vec<Range> = Vec::new();
    let slugs: HashMap<&str, usize> = served
        .cities()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.slug.as_str(), i))
        .collect();
    for reader in sources {
        let mut cache: HashMap<usize, Option<Answer>> = HashMap::new();
        for item in reader.networks(WithinOptions::default())? {
            let result = item?;
            stats.source_networks += 1;
            let network = result.network()?;
            let (first, last) = (network.network(), network.broadcast());
            if skip(first, last) {
                stats.skipped_networks += 1;
                continue;
            }
            let Some(offset) = result.offset() else {
                continue;
            };
            let answer = match cache.get(&offset) {
                Some(answer) => *answer,
                None => {
                    let answer = decode_location(&result)?.and_then(|loc| {
                        let placement = options.rule.place(served, loc.visitor())?;
                        let record = CompactRecord::from_placement(&placement, options.km_step);
                        Some((*slugs.get(placement.city)?, placement.how.code(), record.km))
                    });
                    cache.insert(offset, answer);
                    answer
                }
            };
            let Some(answer) = answer else { continue };
            stats.placed_networks += 1;
            let (list, start, end) = match (first, last) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    (&mut v4, u128::from(u32::from(a)), u128::from(u32::from(b)))
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => (&mut v6, u128::from(a), u128::from(b)),
                _ => continue,
            };
            list.push(Range { start, end, answer });
        }
        stats.distinct_records += cache.len() as u64;
    }
    let mut writer = Writer::builder(DATABASE_TYPE)
        .ip_version(IpVersion::V6)
        .ipv4_aliasing(Ipv4Aliasing::Disabled)
        .description(&[(
            "en",
            "cityboard compact city database: IP network to served city",
        )])
        .build();
    let values: Vec<Value> = served
        .cities()
        .iter()
        .map(|c| Value::from(c.slug.as_str()))
        .collect();
    for (list, is_v4) in [(v4, true), (v6, false)] {
        for range in merge(list) {
            stats.output_ranges += 1;
            let (city, how, km) = range.answer;
            let value = Value::map([
                ("c", values[city].clone()),
                ("h", Value::from(how)),
                ("k", Value::from(km)),
            ]);
            let (start, end) = if is_v4 {
                (v4_addr(range.start), v4_addr(range.end))
            } else {
                (
                    IpAddr::V6(Ipv6Addr::from(range.start)),
                    IpAddr::V6(Ipv6Addr::from(range.end)),
                )
            };
            writer
                .insert_range(start, end, &value)
                .map_err(|e| GeoError::Mmdb(format!("writing {start}-{end}: {e}")))?;
        }
    }
    let bytes = writer
        .to_bytes()
        .map_err(|e| GeoError::Mmdb(format!("serializing: {e}")))?;
    stats.output_bytes = bytes.len() as u64;
    Ok((bytes, stats))
}

/// Sorts ranges and merges neighbours (no gap between them) with the same answer.
fn merge(mut list: Vec<Range>) -> Vec<Range> {
    list.sort_by_key(|r| r.start);
    let mut out: Vec<Range> = Vec::with_capacity(list.len() / 4);
    for range in list {
        match out.last_mut() {
            Some(prev)
                if prev.answer == range.answer && prev.end.checked_add(1) == Some(range.start) =>
            {
                prev.end = range.end;
            }
            _ => out.push(range),
        }
    }
    out
}

fn v4_addr(x: u128) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::try_from(x).unwrap_or(u32::MAX)))
}

/// Networks the compact database never needs: wholly inside one reserved
/// block (the locator answers those as unknown before looking), or IPv6
/// networks in the IPv4 part of the tree (`::/96`, `::ffff:0:0/96`), which
/// belong to the IPv4 source.
fn skip(first: IpAddr, last: IpAddr) -> bool {
    if let (IpAddr::V6(a), IpAddr::V6(b)) = (first, last) {
        let (a, b) = (u128::from(a), u128::from(b));
        // ::/80 holds both ::/96 and ::ffff:0:0/96.
        if a >> 48 == 0 || b >> 48 == 0 {
            return true;
        }
    }
    matches!(special_block(first), Some((_, block_last)) if last <= block_last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::Locator;
    use crate::placement::How;
    use crate::served::ServedCity;

    /// A tiny DB-IP-shaped source database.
    fn source(ip_version: IpVersion, rows: &[(&str, &str, f64, f64)]) -> Vec<u8> {
        let mut writer = Writer::builder("dbip-city-test")
            .ip_version(ip_version)
            .ipv4_aliasing(Ipv4Aliasing::Disabled)
            .description(&[("en", "test")])
            .build();
        for (net, country, lat, lon) in rows {
            let value = Value::map([
                ("country_code", Value::from(*country)),
                ("latitude", Value::from(*lat as f32)),
                ("longitude", Value::from(*lon as f32)),
                ("city", Value::from("x")),
            ]);
            writer
                .insert_value(
                    net.parse::<mmdb_writer::ipnet::IpNet>().expect("net"),
                    value,
                )
                .expect("insert");
        }
        writer.to_bytes().expect("bytes")
    }

    fn served() -> ServedCities {
        ServedCities::new([
            ServedCity::new("paris", "FR", 48.85341, 2.3488).expect("valid"),
            ServedCity::new("newyork", "US", 40.71427, -74.00597).expect("valid"),
        ])
        .expect("valid")
    }

    #[test]
    fn compiles_merges_and_answers() {
        let v4 = source(
            IpVersion::V4,
            &[
                ("81.0.1.0/24", "FR", 48.86, 2.35), // Paris
                ("81.0.2.0/24", "FR", 48.86, 2.35), // Paris again, not a sibling: merged by us
                ("81.0.4.0/23", "FR", 49.9, 2.3),   // Amiens, 116 km: nearest
                ("81.0.6.0/24", "JP", 35.7, 139.7), // Tokyo: no city
                ("10.0.0.0/8", "FR", 48.86, 2.35),  // private: skipped
                ("8.8.8.0/24", "US", 40.7, -74.0),  // New York
            ],
        );
        let v6 = source(
            IpVersion::V6,
            &[
                ("2a01:e00::/26", "FR", 48.86, 2.35),
                ("::ffff:1.2.3.0/120", "FR", 48.86, 2.35),
            ],
        );
        let readers = [
            Reader::from_source(v4).expect("v4"),
            Reader::from_source(v6).expect("v6"),
        ];
        let (bytes, stats) =
            compile(&readers, &served(), &CompileOptions::default()).expect("compiles");
        assert_eq!(stats.source_networks, 8);
        assert_eq!(stats.skipped_networks, 2);
        assert_eq!(stats.placed_networks, 5);
        assert_eq!(stats.output_ranges, 4, "two Paris /24s merge");
        let locator = Locator::from_bytes(bytes).expect("valid compact db");
        let at = |s: &str| {
            locator
                .locate(s.parse().expect("ip"))
                .map(|p| (p.city.to_string(), p.how, p.distance_km))
        };
        assert_eq!(at("81.0.1.1"), Some(("paris".into(), How::Direct, 0)));
        assert_eq!(at("81.0.2.255"), Some(("paris".into(), How::Direct, 0)));
        assert_eq!(at("81.0.5.9"), Some(("paris".into(), How::Nearest, 100)));
        assert_eq!(
            at("::ffff:81.0.1.7"),
            Some(("paris".into(), How::Direct, 0))
        );
        assert_eq!(at("81.0.0.1"), None);
        assert_eq!(at("81.0.3.1"), None);
        assert_eq!(at("81.0.6.1"), None);
        assert_eq!(at("10.1.1.1"), None);
        assert_eq!(at("8.8.8.8").map(|p| p.0), Some("newyork".into()));
        assert_eq!(at("2a01:e00::1").map(|p| p.0), Some("paris".into()));
        assert_eq!(at("2a02::1"), None);
    }

    #[test]
    fn truncated_compact_db_is_an_error() {
        let v4 = source(IpVersion::V4, &[("81.0.0.0/24", "FR", 48.86, 2.35)]);
        let readers = [Reader::from_source(v4).expect("v4")];
        let (bytes, _) =
            compile(&readers, &served(), &CompileOptions::default()).expect("compiles");
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Locator::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        for b in flipped.iter_mut().take(64) {
            *b ^= 0xff;
        }
        // Either refused or answers without panicking.
        if let Ok(locator) = Locator::from_bytes(&flipped[..]) {
            let _ = locator.locate("81.0.0.1".parse().expect("ip"));
        }
    }
}
