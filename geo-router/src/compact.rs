//! The compact city database: its record layout and the reader (`Locator`).
//!
//! The compact database is an ordinary MaxMind DB (IPv6 tree, IPv4 under
//! `::/96`) whose every record names a served city, nothing else: which
//! region serves the city comes from the edge's route map, so moving a city
//! between regions needs no new database. Keys are one letter because the
//! record is repeated in every lookup's decode path and the database has to
//! fit in a Worker:
//!
//! | key | type   | meaning                                             |
//! |-----|--------|-----------------------------------------------------|
//! | `c` | string | city slug                                           |
//! | `h` | string | how: `d` direct, `n` nearest                        |
//! | `k` | uint16 | distance in km, rounded to the database's km step   |
//!
//! Networks without a served city within the limit have no record at all.

use std::net::IpAddr;

use maxminddb::Reader;
use serde::{Deserialize, Serialize};

use crate::address::public_address;
use crate::error::{GeoError, Result};
use crate::placement::{How, Placement};

/// `database_type` of a compact database; a reader refuses any other.
pub const DATABASE_TYPE: &str = "cityboard-city-v1";

/// One record of the compact database, as written and as read (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactRecord<'a> {
    /// City slug.
    #[serde(rename = "c", borrow)]
    pub city: &'a str,
    /// How code, see [`How::code`].
    #[serde(rename = "h", borrow)]
    pub how: &'a str,
    /// Distance in km, rounded to the database's km step.
    #[serde(rename = "k", default)]
    pub km: u16,
}

impl<'a> CompactRecord<'a> {
    /// The record for a placement, with its distance rounded to `km_step`
    /// kilometres (a step of 0 stores 0: no distance information).
    pub fn from_placement(placement: &Placement<'a>, km_step: u32) -> Self {
        CompactRecord {
            city: placement.city,
            how: placement.how.code(),
            km: u16::try_from(round_to_step(placement.distance_km, km_step)).unwrap_or(u16::MAX),
        }
    }
}

/// Rounds whole kilometres to the nearest multiple of `step` (0 → 0).
/// Coarser steps let more neighbouring networks share a record, which is
/// what keeps the database small; the city answer does not depend on it.
pub fn round_to_step(km: u32, step: u32) -> u32 {
    match step {
        0 => 0,
        s => km.saturating_add(s / 2) / s * s,
    }
}

/// Answers `locate(ip)` from a compact database held in memory.
///
/// Generic over the byte buffer so that a Worker can hand it a `Vec<u8>` it
/// fetched from KV or a `&'static [u8]` it embedded.
#[derive(Debug)]
pub struct Locator<S: AsRef<[u8]>> {
    reader: Reader<S>,
}

impl<S: AsRef<[u8]>> Locator<S> {
    /// Opens a compact database and verifies it completely (tree, data and
    /// metadata), so that a corrupt or truncated file is refused here with a
    /// clear error instead of answering wrongly later. Verification of a
    /// database of about a megabyte takes milliseconds.
    pub fn from_bytes(buf: S) -> Result<Self> {
        let reader = Reader::from_source(buf)?;
        let meta = reader.metadata();
        if meta.database_type != DATABASE_TYPE {
            return Err(GeoError::Mmdb(format!(
                "database type is {:?}, expected {DATABASE_TYPE:?}; compile one with `geo-router compile`",
                meta.database_type
            )));
        }
        if meta.ip_version != 6 {
            return Err(GeoError::Mmdb(format!(
                "ip_version {} (expected 6)",
                meta.ip_version
            )));
        }
        reader.verify()?;
        Ok(Locator { reader })
    }

    /// The served city of a visitor at `ip`, or `None` when the address is
    /// not public, has no served city within the limit, or the database
    /// cannot answer (a record that does not decode is logged nowhere and
    /// answered as unknown: the city picker is a safe fallback).
    pub fn locate(&self, ip: IpAddr) -> Option<Placement<'_>> {
        self.try_locate(ip).ok().flatten()
    }

    /// Like [`Locator::locate`], but says why a lookup failed: a
    /// [`GeoError::NotPublic`] address or a database error.
    pub fn try_locate(&self, ip: IpAddr) -> Result<Option<Placement<'_>>> {
        let addr = public_address(ip).ok_or(GeoError::NotPublic(ip))?;
        let Some(record) = self.reader.lookup(addr)?.decode::<CompactRecord<'_>>()? else {
            return Ok(None);
        };
        let how = How::from_code(record.how)
            .ok_or_else(|| GeoError::Mmdb(format!("record for {addr} has how {:?}", record.how)))?;
        Ok(Some(Placement {
            city: record.city,
            how,
            distance_km: u32::from(record.km),
        }))
    }

    /// The underlying reader, for the range-table encoder's walk of the
    /// tree (the same tree `locate` answers from).
    #[cfg(feature = "server")]
    pub(crate) fn reader(&self) -> &Reader<S> {
        &self.reader
    }

    /// The database's metadata (build time, node count, description).
    pub fn metadata(&self) -> &maxminddb::Metadata {
        self.reader.metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_to_nearest() {
        assert_eq!(round_to_step(0, 10), 0);
        assert_eq!(round_to_step(4, 10), 0);
        assert_eq!(round_to_step(5, 10), 10);
        assert_eq!(round_to_step(296, 10), 300);
        assert_eq!(round_to_step(123, 1), 123);
        assert_eq!(round_to_step(123, 0), 0);
        assert_eq!(round_to_step(u32::MAX, 10), (u32::MAX / 10) * 10);
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        for bytes in [
            &b""[..],
            b"not an mmdb",
            &[0u8; 64],
            b"\xab\xcd\xefMaxMind.com",
        ] {
            assert!(Locator::from_bytes(bytes).is_err());
        }
    }
}
