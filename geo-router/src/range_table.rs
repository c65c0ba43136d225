//! The IPv4 range table: the compact database reduced to what the edge
//! Worker asks of it, the served city of an IPv4 address.
//!
//! The compact MaxMind DB also carries how a visitor was placed and the
//! distance, and its search tree spends most of its bytes on CIDR
//! decomposition (a range that does not fall on a power-of-two boundary
//! becomes dozens of tree nodes). The Worker only needs the city, and its
//! upload limit counts every byte, so this table keeps exactly that: sorted,
//! disjoint IPv4 ranges, neighbours with the same city merged, each naming
//! one city. Stored column-wise as varints it is an eighth of the compact
//! database once gzipped (0.56 MB instead of 4.66 MB for the default
//! topology's IPv4 half), and answers every IPv4 address exactly as
//! [`Locator::locate`](crate::Locator::locate) does on the database it was
//! made from (`tests/range_table.rs` checks that on the real data).
//!
//! # Format (version 1)
//!
//! All integers are unsigned LEB128 varints (7 bits a byte, low group first,
//! high bit set on every byte but the last), at most 5 bytes and at most
//! `u32::MAX`; an overlong encoding (a last byte of 0 after the first) is
//! refused, so every table has exactly one encoding.
//!
//! | field        | encoding                                                   |
//! |--------------|------------------------------------------------------------|
//! | magic        | the 4 bytes `CBRT`                                         |
//! | version      | 1 byte, `1`                                                |
//! | city count   | varint `C`, 1 ≤ `C` ≤ 65 536 (0 only when there are no ranges) |
//! | cities       | `C` times: varint length, then the slug (a valid city slug, unique) |
//! | range count  | varint `R`                                                 |
//! | gaps         | `R` varints: start − (previous end + 1), the first from 0  |
//! | lengths      | `R` varints: end − start (addresses in the range − 1)      |
//! | city indexes | `R` varints, each < `C`                                    |
//!
//! and nothing after. Columns rather than rows because each column on its
//! own is more regular (for the default topology 38 % of the gaps are 0 and
//! 68 % of the lengths are a power of two minus one; city indexes are one
//! of a few bytes), which is what gzip on the upload exploits: 560 KB
//! instead of 614 KB row by row. Starts and ends are thereby monotonic and
//! disjoint by construction; the decoder still checks that no range runs
//! past 255.255.255.255.
//!
//! Reserved and private addresses are answered `None` before the table is
//! consulted, with the same [`public_address`] the locator uses, so what the
//! table holds for them does not matter.

use std::net::IpAddr;

use crate::address::public_address;
use crate::error::{GeoError, Result};
use crate::host::valid_slug;

/// First bytes of every range table.
pub const MAGIC: [u8; 4] = *b"CBRT";
/// The format version this module reads and writes.
pub const VERSION: u8 = 1;
/// Most cities a table can name (city indexes are held as `u16`).
pub const MAX_CITIES: usize = 1 << 16;

/// IPv4 address → served city, decoded into sorted arrays for binary search.
///
/// Decoded once (a few milliseconds for the default topology's ~365 000
/// ranges) into about 10 bytes a range, because a Worker isolate answers many
/// requests from one decode and a lookup must not re-read varints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeTable {
    cities: Vec<String>,
    starts: Vec<u32>,
    ends: Vec<u32>,
    city: Vec<u16>,
    /// `lead[p]`: how many ranges start below `p << 16`, for `p` in
    /// 0..=65536 (empty for an empty table). Narrows the binary search to
    /// one /16's ranges, a handful instead of 365 000 spread over 1.5 MB,
    /// for 256 KB.
    lead: Vec<u32>,
}

/// One range as handed to [`RangeTable::from_ranges`]: first and last
/// address (inclusive) and the city slug.
pub type Range<'a> = (u32, u32, &'a str);

impl RangeTable {
    /// Decodes and validates a table (see the [module docs](self) for the
    /// format). Every malformed input, truncated or otherwise, is an error,
    /// never a panic, and nothing is allocated beyond what the input's
    /// length can justify, so a corrupt binding cannot exhaust an isolate.
    pub fn from_bytes(bytes: &[u8]) -> Result<RangeTable> {
        let mut r = Cursor { bytes, pos: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad(0, "not a range table (magic is not CBRT)"));
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(bad(
                4,
                format!("version {version}, this reader knows {VERSION}"),
            ));
        }
        let city_count = r.count(1, "city count")?;
        if city_count > MAX_CITIES {
            return Err(bad(
                r.pos,
                format!("{city_count} cities, at most {MAX_CITIES}"),
            ));
        }
        let mut cities: Vec<String> = Vec::with_capacity(city_count);
        for _ in 0..city_count {
            let at = r.pos;
            let len = r.count(1, "slug length")?;
            let slug =
                std::str::from_utf8(r.take(len)?).map_err(|_| bad(at, "city slug is not UTF-8"))?;
            if !valid_slug(slug) {
                return Err(bad(at, format!("{slug:?} is not a city slug")));
            }
            if cities.iter().any(|c| c == slug) {
                return Err(bad(at, format!("city {slug:?} listed twice")));
            }
            cities.push(slug.to_string());
        }
        // Each range takes at least three bytes, one per column.
        let range_count = r.count(3, "range count")?;
        if range_count > 0 && cities.is_empty() {
            return Err(bad(r.pos, "ranges but no cities"));
        }
        // Where each column starts (a varint ends at each byte below 0x80),
        // then all three read side by side in one pass: this runs on an
        // isolate's first IP lookup, and one pass without temporaries is
        // about twice as fast as three.
        let gaps_at = r.pos;
        let lengths_at = column_end(bytes, gaps_at, range_count)?;
        let cities_at = column_end(bytes, lengths_at, range_count)?;
        let end_at = column_end(bytes, cities_at, range_count)?;
        if end_at != bytes.len() {
            return Err(bad(
                end_at,
                format!("{} bytes after the last column", bytes.len() - end_at),
            ));
        }
        let mut starts = Vec::with_capacity(range_count);
        let mut ends = Vec::with_capacity(range_count);
        let mut city = Vec::with_capacity(range_count);
        let (mut g, mut l, mut c) = (gaps_at, lengths_at, cities_at);
        let mut next = 0u64; // first address the next range may start at
        for _ in 0..range_count {
            let (gap, g2) = varint_at(bytes, g).ok_or_else(|| varint_error(bytes, g))?;
            let (len, l2) = varint_at(bytes, l).ok_or_else(|| varint_error(bytes, l))?;
            let (index, c2) = varint_at(bytes, c).ok_or_else(|| varint_error(bytes, c))?;
            let first = next + u64::from(gap);
            let last = first + u64::from(len);
            if last > u64::from(u32::MAX) {
                return Err(bad(l, "the range runs past 255.255.255.255"));
            }
            match u16::try_from(index) {
                Ok(i) if usize::from(i) < cities.len() => city.push(i),
                _ => {
                    return Err(bad(
                        c,
                        format!("city index {index} of {} cities", cities.len()),
                    ));
                }
            }
            // Both fit in u32: first <= last <= u32::MAX.
            starts.push(first as u32);
            ends.push(last as u32);
            next = last + 1;
            (g, l, c) = (g2, l2, c2);
        }
        Ok(RangeTable {
            cities,
            lead: lead(&starts),
            starts,
            ends,
            city,
        })
    }

    /// Builds a table from ranges sorted by start, disjoint, each with
    /// `first <= last`; neighbours (no address between them) with the same
    /// city are merged. Cities are numbered in slug order, so the same
    /// ranges always give the same bytes.
    pub fn from_ranges<'a>(ranges: impl IntoIterator<Item = Range<'a>>) -> Result<RangeTable> {
        let mut merged: Vec<Range<'a>> = Vec::new();
        for (first, last, slug) in ranges {
            if first > last {
                return Err(GeoError::RangeTable(format!(
                    "range {first}-{last} ends before it starts"
                )));
            }
            if !valid_slug(slug) {
                return Err(GeoError::RangeTable(format!("{slug:?} is not a city slug")));
            }
            match merged.last_mut() {
                Some(prev) if prev.1 >= first => {
                    return Err(GeoError::RangeTable(format!(
                        "range starting at {first} overlaps or precedes the one ending at {}",
                        prev.1
                    )));
                }
                Some(prev) if prev.2 == slug && prev.1.checked_add(1) == Some(first) => {
                    prev.1 = last;
                }
                _ => merged.push((first, last, slug)),
            }
        }
        let mut cities: Vec<&str> = merged.iter().map(|r| r.2).collect();
        cities.sort_unstable();
        cities.dedup();
        if cities.len() > MAX_CITIES {
            return Err(GeoError::RangeTable(format!(
                "{} cities, at most {MAX_CITIES}",
                cities.len()
            )));
        }
        let mut table = RangeTable {
            cities: cities.iter().map(|c| c.to_string()).collect(),
            starts: Vec::with_capacity(merged.len()),
            ends: Vec::with_capacity(merged.len()),
            city: Vec::with_capacity(merged.len()),
            lead: Vec::new(),
        };
        for (first, last, slug) in merged {
            // Present by construction; the fallback keeps this panic-free.
            let index = cities.binary_search(&slug).unwrap_or(0);
            table.starts.push(first);
            table.ends.push(last);
            table.city.push(u16::try_from(index).unwrap_or(u16::MAX));
        }
        table.lead = lead(&table.starts);
        Ok(table)
    }

    /// The table's bytes; [`RangeTable::from_bytes`] of them is `self`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.starts.len() * 5);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        put_varint(&mut out, self.cities.len() as u32);
        for slug in &self.cities {
            put_varint(&mut out, slug.len() as u32);
            out.extend_from_slice(slug.as_bytes());
        }
        put_varint(&mut out, self.starts.len() as u32);
        let mut next = 0u32;
        for (&first, &last) in self.starts.iter().zip(&self.ends) {
            put_varint(&mut out, first - next);
            next = last.wrapping_add(1);
        }
        for (&first, &last) in self.starts.iter().zip(&self.ends) {
            put_varint(&mut out, last - first);
        }
        for &index in &self.city {
            put_varint(&mut out, u32::from(index));
        }
        out
    }

    /// The served city of a visitor at `ip`: IPv4, or IPv4-mapped IPv6
    /// (`::ffff:a.b.c.d`). `None` for addresses that are not public (exactly
    /// as [`Locator::locate`](crate::Locator::locate) refuses them), for
    /// addresses in no range, and for any other IPv6 address, which the
    /// table does not cover.
    pub fn city(&self, ip: IpAddr) -> Option<&str> {
        let IpAddr::V4(v4) = public_address(ip)? else {
            return None;
        };
        let a = u32::from(v4);
        let p = (a >> 16) as usize;
        let (lo, hi) = (*self.lead.get(p)? as usize, *self.lead.get(p + 1)? as usize);
        // Ranges before `lo` start below this /16, those from `hi` above it.
        let i = (lo + self.starts.get(lo..hi)?.partition_point(|&s| s <= a)).checked_sub(1)?;
        if a > *self.ends.get(i)? {
            return None;
        }
        let index = *self.city.get(i)?;
        self.cities.get(usize::from(index)).map(String::as_str)
    }

    /// Number of (merged) ranges.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the table has no range at all (every lookup is `None`).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The city slugs the table names, in index order.
    pub fn cities(&self) -> &[String] {
        &self.cities
    }

    /// The ranges in address order, as (first, last, city).
    pub fn ranges(&self) -> impl Iterator<Item = Range<'_>> + '_ {
        self.starts
            .iter()
            .zip(&self.ends)
            .zip(&self.city)
            .map(|((&first, &last), &index)| {
                let slug = self
                    .cities
                    .get(usize::from(index))
                    .map_or("", String::as_str);
                (first, last, slug)
            })
    }
}

#[cfg(feature = "server")]
impl RangeTable {
    /// The table of a compact database's IPv4 half: every IPv4 network of
    /// its tree (the `::/96` subtree) with the city its record names. A
    /// record that does not decode, or whose how-code the locator would
    /// refuse, fails the conversion instead of being dropped: the locator
    /// would answer unknown there, and an operator should hear of a database
    /// like that at build time rather than ship it.
    pub fn from_compact<S: AsRef<[u8]>>(locator: &crate::Locator<S>) -> Result<RangeTable> {
        use crate::compact::CompactRecord;
        use crate::placement::How;
        use maxminddb::WithinOptions;

        let reader = locator.reader();
        let Ok(all) = "0.0.0.0/0".parse() else {
            return Err(GeoError::RangeTable("cannot parse 0.0.0.0/0".into()));
        };
        let mut ranges: Vec<(u32, u32, &str)> = Vec::new();
        let mut cache: std::collections::HashMap<usize, &str> = std::collections::HashMap::new();
        for item in reader.within(all, WithinOptions::default())? {
            let result = item?;
            let network = result.network()?;
            let (IpAddr::V4(first), IpAddr::V4(last)) = (network.network(), network.broadcast())
            else {
                return Err(GeoError::RangeTable(format!(
                    "IPv4 walk of the compact database yielded {network}"
                )));
            };
            let Some(offset) = result.offset() else {
                continue;
            };
            // Networks share a few thousand records: decode each once.
            let city = match cache.get(&offset) {
                Some(city) => *city,
                None => {
                    let Some(record) = result.decode::<CompactRecord<'_>>()? else {
                        continue;
                    };
                    if How::from_code(record.how).is_none() {
                        return Err(GeoError::Mmdb(format!(
                            "record for {network} has how {:?}",
                            record.how
                        )));
                    }
                    cache.insert(offset, record.city);
                    record.city
                }
            };
            ranges.push((u32::from(first), u32::from(last), city));
        }
        ranges.sort_unstable_by_key(|r| r.0);
        RangeTable::from_ranges(ranges)
    }
}

/// The `/16` index of sorted range starts (see [`RangeTable`]'s `lead`).
fn lead(starts: &[u32]) -> Vec<u32> {
    if starts.is_empty() {
        return Vec::new();
    }
    let mut lead = Vec::with_capacity((1 << 16) + 1);
    let mut i = 0usize;
    for p in 0..=(1u64 << 16) {
        while i < starts.len() && u64::from(starts[i]) < p << 16 {
            i += 1;
        }
        lead.push(i as u32);
    }
    lead
}

/// A decode error at byte `offset`.
fn bad(offset: usize, reason: impl std::fmt::Display) -> GeoError {
    GeoError::RangeTable(format!("byte {offset}: {reason}"))
}

fn put_varint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The canonical varint at `pos` and the position after it, or `None` if
/// there is none (truncated, overlong, over `u32::MAX`).
#[inline]
fn varint_at(bytes: &[u8], pos: usize) -> Option<(u32, usize)> {
    let b = *bytes.get(pos)?;
    if b < 0x80 {
        return Some((u32::from(b), pos + 1));
    }
    let mut value = u64::from(b & 0x7f);
    for i in 1..5 {
        let b = *bytes.get(pos + i)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (b != 0 && value <= u64::from(u32::MAX)).then_some((value as u32, pos + i + 1));
        }
    }
    None
}

/// The position after the `n` varints from `pos` (each ends at a byte
/// below 0x80); whether each is valid is [`varint_at`]'s to say.
fn column_end(bytes: &[u8], pos: usize, n: usize) -> Result<usize> {
    if n == 0 {
        return Ok(pos);
    }
    let rest = bytes.get(pos..).unwrap_or_default();
    let mut seen = 0usize;
    for (i, &b) in rest.iter().enumerate() {
        seen += usize::from(b < 0x80);
        if seen == n {
            return Ok(pos + i + 1);
        }
    }
    Err(bad(
        pos,
        format!("truncated: a column of {n} varints holds {seen}"),
    ))
}

/// Why there is no valid varint at `pos` (see [`varint_at`]).
#[cold]
fn varint_error(bytes: &[u8], pos: usize) -> GeoError {
    let rest = bytes.get(pos..).unwrap_or_default();
    let reason = match rest.iter().position(|b| b & 0x80 == 0) {
        None if rest.len() < 5 => "truncated varint",
        Some(end) if end < 5 && end > 0 && rest[end] == 0 => "overlong varint",
        Some(end) if end < 5 => "varint over u32::MAX",
        _ => "varint longer than 5 bytes",
    };
    bad(pos, reason)
}

/// Bounds-checked reading of the input.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| bad(self.pos, format!("truncated: {n} more bytes expected")))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// One varint. The fast path returns an `Option` (two registers, no
    /// error value built); only a failure goes back over the bytes to say
    /// what is wrong, because decoding runs on an isolate's first lookup.
    #[inline]
    fn varint(&mut self) -> Result<u32> {
        match varint_at(self.bytes, self.pos) {
            Some((value, next)) => {
                self.pos = next;
                Ok(value)
            }
            None => Err(varint_error(self.bytes, self.pos)),
        }
    }

    /// A count of items that take at least `min_bytes` each: refused when
    /// the rest of the input could not hold them, so that no allocation is
    /// sized by a corrupt count.
    fn count(&mut self, min_bytes: usize, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = self.varint()? as usize;
        let left = self.bytes.len() - self.pos;
        if n.saturating_mul(min_bytes) > left {
            return Err(bad(
                at,
                format!("{what} {n} does not fit in the {left} bytes left"),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn v4(s: &str) -> u32 {
        match ip(s) {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => panic!("{s} is not IPv4"),
        }
    }

    fn sample() -> RangeTable {
        RangeTable::from_ranges([
            (v4("8.8.8.0"), v4("8.8.8.255"), "newyork"),
            (v4("8.8.9.0"), v4("8.8.9.255"), "newyork"), // merged with the previous
            (v4("81.0.0.0"), v4("81.0.3.255"), "paris"),
            (v4("81.0.4.0"), v4("81.0.4.0"), "london"), // a single address
            (v4("172.16.0.0"), v4("172.16.0.255"), "paris"), // private: never answered
            (v4("223.255.255.0"), v4("223.255.255.255"), "paris"),
        ])
        .expect("valid ranges")
    }

    #[test]
    fn answers_like_the_locator_would() {
        let t = sample();
        assert_eq!(t.len(), 5, "the two New York /24s merge");
        assert_eq!(t.cities(), ["london", "newyork", "paris"]);
        let at = |s: &str| t.city(ip(s));
        assert_eq!(at("8.8.7.255"), None);
        assert_eq!(at("8.8.8.0"), Some("newyork"));
        assert_eq!(at("8.8.9.255"), Some("newyork"));
        assert_eq!(at("8.8.10.0"), None);
        assert_eq!(at("81.0.2.7"), Some("paris"));
        assert_eq!(at("81.0.4.0"), Some("london"));
        assert_eq!(at("81.0.4.1"), None);
        assert_eq!(at("172.16.0.1"), None, "private, whatever the table says");
        assert_eq!(at("223.255.255.255"), Some("paris"));
        assert_eq!(at("0.0.0.0"), None);
        assert_eq!(at("255.255.255.255"), None);
        assert_eq!(at("::ffff:81.0.4.0"), Some("london"));
        assert_eq!(at("2a01:e00::1"), None, "IPv6 is not covered");
        assert_eq!(at("::5100:0400"), None, "IPv4-compatible is not mapped");
    }

    #[test]
    fn bytes_round_trip() {
        let t = sample();
        let bytes = t.to_bytes();
        assert_eq!(&bytes[..5], b"CBRT\x01");
        let back = RangeTable::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, t);
        assert_eq!(back.to_bytes(), bytes);
        let empty = RangeTable::from_ranges([]).expect("empty");
        assert!(empty.is_empty());
        assert_eq!(
            RangeTable::from_bytes(&empty.to_bytes()).expect("decodes"),
            empty
        );
        // The whole address space in one range.
        let all = RangeTable::from_ranges([(0, u32::MAX, "paris")]).expect("valid");
        let back = RangeTable::from_bytes(&all.to_bytes()).expect("decodes");
        assert_eq!(back.city(ip("8.8.8.8")), Some("paris"));
        assert_eq!(back.ranges().collect::<Vec<_>>(), [(0, u32::MAX, "paris")]);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(RangeTable::from_ranges([(5, 4, "paris")]).is_err());
        assert!(RangeTable::from_ranges([(0, 9, "paris"), (9, 12, "london")]).is_err());
        assert!(RangeTable::from_ranges([(10, 19, "paris"), (0, 5, "london")]).is_err());
        assert!(RangeTable::from_ranges([(0, 9, "Not A Slug")]).is_err());
    }

    /// A hand-written table: header, `cities`, then the columns as given.
    fn raw(cities: &[&str], gaps: &[u32], lens: &[u32], idx: &[u32]) -> Vec<u8> {
        let mut b = b"CBRT\x01".to_vec();
        put_varint(&mut b, cities.len() as u32);
        for c in cities {
            put_varint(&mut b, c.len() as u32);
            b.extend_from_slice(c.as_bytes());
        }
        put_varint(&mut b, gaps.len() as u32);
        for col in [gaps, lens, idx] {
            for &v in col {
                put_varint(&mut b, v);
            }
        }
        b
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let good = raw(&["paris"], &[10, 0], &[5, 7], &[0, 0]);
        assert!(RangeTable::from_bytes(&good).is_ok());
        for cut in 0..good.len() {
            assert!(
                RangeTable::from_bytes(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("trailing byte", trailing),
            ("bad magic", b"CBRX\x01\x00\x00".to_vec()),
            ("version 2", b"CBRT\x02\x00\x00".to_vec()),
            ("index out of range", raw(&["paris"], &[0], &[0], &[1])),
            ("ranges without cities", raw(&[], &[0], &[0], &[0])),
            (
                "past the end of IPv4",
                raw(&["paris"], &[u32::MAX], &[1], &[0]),
            ),
            (
                "next range after 255.255.255.255",
                raw(&["paris"], &[0, 0], &[u32::MAX, 0], &[0, 0]),
            ),
            ("duplicate city", raw(&["paris", "paris"], &[], &[], &[])),
            ("bad slug", raw(&["Paris!"], &[], &[], &[])),
            ("empty slug", raw(&[""], &[], &[], &[])),
            ("overlong varint", b"CBRT\x01\x80\x00\x00".to_vec()),
            ("varint over u32", b"CBRT\x01\xff\xff\xff\xff\x7f".to_vec()),
            (
                "six-byte varint",
                b"CBRT\x01\xff\xff\xff\xff\xff\x01".to_vec(),
            ),
            (
                "huge range count",
                b"CBRT\x01\x01\x05paris\xff\xff\xff\xff\x0f".to_vec(),
            ),
            ("huge city count", b"CBRT\x01\xff\xff\xff\xff\x0f".to_vec()),
        ];
        for (what, bytes) in cases {
            assert!(RangeTable::from_bytes(&bytes).is_err(), "{what}");
        }
        // The largest valid single range and a last range ending at the top.
        let top = raw(&["paris"], &[0, 0], &[9, u32::MAX - 10], &[0, 0]);
        let t = RangeTable::from_bytes(&top).expect("valid");
        assert_eq!(t.city(ip("223.1.2.3")), Some("paris"));
    }

    #[cfg(feature = "server")]
    #[test]
    fn from_compact_equals_locate() {
        use mmdb_writer::{IpVersion, Ipv4Aliasing, Value, Writer};
        let mut writer = Writer::builder(crate::compact::DATABASE_TYPE)
            .ip_version(IpVersion::V6)
            .ipv4_aliasing(Ipv4Aliasing::Disabled)
            .description(&[("en", "test")])
            .build();
        let rows = [
            ("8.8.8.0/24", "newyork"),
            ("8.8.9.0/24", "newyork"),
            ("81.0.0.0/22", "paris"),
            ("81.0.4.0/32", "london"),
            ("10.0.0.0/8", "paris"),
            ("2a01:e00::/26", "paris"),
        ];
        for (net, city) in rows {
            let value = Value::map([
                ("c", Value::from(city)),
                ("h", Value::from("d")),
                ("k", Value::from(0u16)),
            ]);
            let net: mmdb_writer::ipnet::IpNet = net.parse().expect("net");
            writer.insert_value(net, value).expect("insert");
        }
        let locator = crate::Locator::from_bytes(writer.to_bytes().expect("bytes")).expect("db");
        let table = RangeTable::from_compact(&locator).expect("table");
        assert_eq!(table.len(), 4, "{:?}", table.ranges().collect::<Vec<_>>());
        for s in [
            "8.8.8.8",
            "8.8.9.255",
            "8.8.10.0",
            "81.0.0.0",
            "81.0.3.255",
            "81.0.4.0",
            "81.0.4.1",
            "10.1.1.1",
            "1.1.1.1",
            "::ffff:8.8.8.8",
            "2a01:e00::1",
        ] {
            let expected = if ip(s).is_ipv6() && s.starts_with("2a01") {
                None // IPv6 is the locator's, not the table's
            } else {
                locator.locate(ip(s)).map(|p| p.city)
            };
            assert_eq!(table.city(ip(s)), expected, "{s}");
        }
    }
}
