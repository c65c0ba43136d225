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
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Request;
use worker::Env;

use crate::config::Config;

/// The IPv4 range table (the compact city database reduced to address →
/// city, see geo-router's `range_table`), embedded at build time (see
/// build.rs); empty when the build named none.
static EMBEDDED_RANGES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cities.ranges"));

/// Test mode only: a `data` binding of this name (a range table) replaces
/// the embedded one, so that the runtime tests pin which address is in
/// which city without a build of their own.
pub const TEST_RANGES_BINDING: &str = "TEST_GEO_RANGES";

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
    /// Test mode: the table from the test binding.
    static FROM_BINDING: OnceCell<Option<RangeTable>> = const { OnceCell::new() };
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
pub fn locate(config: &Config, env: &Env, cf: &CfLocation, ip: &str) -> Option<(String, Source)> {
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
    let city = if config.test_mode && has_binding(env) {
        FROM_BINDING.with(|cell| {
            cell.get_or_init(|| binding_bytes(env).and_then(|b| RangeTable::from_bytes(&b).ok()))
                .as_ref()
                .and_then(|t| t.city(ip).map(str::to_string))
        })
    } else {
        EMBEDDED.with(|cell| {
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
        })
    }?;
    // The table names cities, the configuration says which are served:
    // a table older than the configuration must not send anyone to a
    // city that is no longer served.
    config.city(&city).map(|c| (c.slug.clone(), Source::Ip))
}

fn has_binding(env: &Env) -> bool {
    Reflect::get(env.as_ref(), &JsValue::from_str(TEST_RANGES_BINDING))
        .is_ok_and(|v| v.is_instance_of::<ArrayBuffer>())
}

fn binding_bytes(env: &Env) -> Option<Vec<u8>> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(TEST_RANGES_BINDING)).ok()?;
    let buffer = value.dyn_into::<ArrayBuffer>().ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}
