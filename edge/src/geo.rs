//! Where a visitor is: the `request.cf` object first, the client IP in the
//! embedded compact city database second.
//!
//! workers-rs' `cf` accessors unwrap internally and panic on a partial
//! object, which is the normal case locally (design §7), so the object is
//! read raw with `Reflect` into `Option` fields. On Cloudflare `latitude` and
//! `longitude` are strings; injected test objects may carry numbers: both
//! are accepted.

use std::cell::OnceCell;
use std::net::IpAddr;

use geo_router::{Locator, PlacementRule, Visitor};
use js_sys::{ArrayBuffer, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Request;
use worker::Env;

use crate::config::Config;

/// The compact city database, embedded at build time (see build.rs); empty
/// when the build named none.
static EMBEDDED_MMDB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cities.mmdb"));

/// Test mode only: a `data` binding of this name replaces the embedded
/// database, so that the runtime tests pin which address is in which city
/// without a build of their own.
pub const TEST_MMDB_BINDING: &str = "TEST_GEO_MMDB";

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
    /// The embedded database, verified once per isolate (`None`: empty or unusable).
    static EMBEDDED: OnceCell<Option<Locator<&'static [u8]>>> = const { OnceCell::new() };
    /// Test mode: the database from the test binding.
    static FROM_BINDING: OnceCell<Option<Locator<Vec<u8>>>> = const { OnceCell::new() };
}

/// How a visitor was located, for the redirect's log line and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// From `request.cf`'s coordinates.
    Cf,
    /// From the client IP in the compact database.
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
            cell.get_or_init(|| binding_bytes(env).and_then(|b| Locator::from_bytes(b).ok()))
                .as_ref()
                .and_then(|l| l.locate(ip).map(|p| p.city.to_string()))
        })
    } else {
        EMBEDDED.with(|cell| {
            cell.get_or_init(|| {
                if EMBEDDED_MMDB.is_empty() {
                    return None;
                }
                Locator::from_bytes(EMBEDDED_MMDB)
                    .inspect_err(|e| worker::console_error!("embedded city database: {e}"))
                    .ok()
            })
            .as_ref()
            .and_then(|l| l.locate(ip).map(|p| p.city.to_string()))
        })
    }?;
    // The database names cities, the configuration says which are served:
    // a database older than the configuration must not send anyone to a
    // city that is no longer served.
    config.city(&city).map(|c| (c.slug.clone(), Source::Ip))
}

fn has_binding(env: &Env) -> bool {
    Reflect::get(env.as_ref(), &JsValue::from_str(TEST_MMDB_BINDING))
        .is_ok_and(|v| v.is_instance_of::<ArrayBuffer>())
}

fn binding_bytes(env: &Env) -> Option<Vec<u8>> {
    let value = Reflect::get(env.as_ref(), &JsValue::from_str(TEST_MMDB_BINDING)).ok()?;
    let buffer = value.dyn_into::<ArrayBuffer>().ok()?;
    Some(Uint8Array::new(&buffer).to_vec())
}
