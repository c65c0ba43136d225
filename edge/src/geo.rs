//! Where a visitor is: the `request.cf` object first, the client IP in the
//! embedded IPv4 range table second.
//!
//! workers-rs' `cf` accessors unwrap internally and panic on a partial
//! object, which is the normal case locally (design §7), so the object is
//! read raw with `Reflect` into `Option` fields. On Cloudflare `latitude` and
//! `longitude` are strings; injected test objects may carry numbers: both
//! are accepted.

use std::cell::OnceCell;
use std::net::IpAddr;

use geo_router::{PlacementRule, RangeTable, Visitor};
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use web_sys::Request;

use crate::config::Config;

/// The IPv4 range table (the compact city database reduced to address →
/// city, see geo-router's `range_table`), embedded at build time (see
/// build.rs); empty when the build named none.
static EMBEDDED_RANGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cities.ranges"));

/// The parts of `request.cf` the Worker uses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CfLocation {
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Latitude in degrees.
    pub lat: Option<f64>,
    /// Longitude in degrees.
    pub lon: Option<f64>,
}

/// Reads `request.cf` without the panicking accessors. Absent, partial or
/// odd objects give `None` fields.
pub fn cf_location(req: &Request) -> CfLocation {
    let Ok(cf) = Reflect::get(req.as_ref(), &JsValue::from_str("cf")) else {
        return CfLocation::default();
    };
    if !cf.is_object() {
        return CfLocation::default();
    }
    let field = |name: &str| Reflect::get(&cf, &JsValue::from_str(name)).ok();
    let number = |name: &str| {
        field(name).and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_string().and_then(|s| s.trim().parse::<f64>().ok()))
                .filter(|f| f.is_finite())
        })
    };
    CfLocation {
        country: field("country")
            .and_then(|v| v.as_string())
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())),
        lat: number("latitude"),
        lon: number("longitude"),
    }
}

thread_local! {
    /// The embedded table, decoded and validated on the first IP lookup of
    /// the isolate (milliseconds), then shared by every request it serves
    /// (`None`: empty or unusable).
    static EMBEDDED: OnceCell<Option<RangeTable>> = const { OnceCell::new() };
}

/// How a visitor was located, for the redirect's log line and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From `request.cf`'s coordinates.
    Cf,
    /// From the client IP in the embedded range table.
    Ip,
}

/// The served city of the visitor, if one can be named.
///
/// `cf` with usable coordinates decides alone (a location Cloudflare knows
/// to be far from every served city is not second-guessed by the IP); only
/// without coordinates is the IP looked up.
pub fn locate(config: &Config, cf: &CfLocation, ip: &str) -> Option<(String, Source)> {
    if let (Some(lat), Some(lon)) = (cf.lat, cf.lon) {
        let visitor = Visitor {
            country: cf.country.as_deref(),
            lat,
            lon,
        };
        return PlacementRule::default()
            .place(&config.served, visitor)
            .map(|p| (p.city.to_string(), Source::Cf));
    }
    let ip: IpAddr = ip.parse().ok()?;
    #[cfg(feature = "test-mode")]
    if let Some(table) = &config.test_ranges {
        let city = table.city(ip)?;
        return config.city(city).map(|c| (c.slug.clone(), Source::Ip));
    }
    let city = EMBEDDED.with(|cell| {
        cell.get_or_init(|| {
            if EMBEDDED_RANGES.is_empty() {
                return None;
            }
            RangeTable::from_bytes(EMBEDDED_RANGES)
                .inspect_err(|e| worker::console_error!("embedded range table: {e}"))
                .ok()
        })
        .as_ref()
        .and_then(|t| t.city(ip).map(str::to_string))
    })?;
    // The table names cities, the configuration says which are served:
    // a table older than the configuration must not send anyone to a
    // city that is no longer served.
    config.city(&city).map(|c| (c.slug.clone(), Source::Ip))
}
