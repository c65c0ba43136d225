//! The Worker's configuration: its text bindings, parsed once per isolate.
//!
//! Bindings cannot change while an isolate lives (a new deployment or a
//! runtime restart makes a new one), so the parsed form is kept in a
//! thread-local and every request after the first pays nothing for it. A
//! malformed binding is an error answered with a 500 and logged, never a
//! panic; it is parsed again on the next request, so a fixed configuration
//! needs no restart of an instance that started with a broken one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use cityboard_protocol::bindings::CityBinding;
use cityboard_protocol::sign::Key;
use geo_router::{ServedCities, ServedCity};
use wasm_bindgen::JsValue;
use worker::Env;

use crate::error::EdgeError;

/// Default of `ORIGIN_TIMEOUT_MS`.
pub const DEFAULT_ORIGIN_TIMEOUT_MS: u32 = 5000;

/// Everything the bindings say, parsed.
#[derive(Debug)]
pub struct Config {
    /// Apex domain, lower case, e.g. `cityboard.localhost`.
    pub apex: String,
    /// Served cities in binding order (the picker groups them by region).
    pub cities: Vec<CityBinding>,
    /// The same cities indexed for the placement rule.
    pub served: ServedCities,
    /// Region → origin base URL, the fallback when KV has no route.
    pub origins: HashMap<String, String>,
    /// Key that signs forwarded requests.
    pub forward_key: Key,
    /// Key that opens read-your-writes cookies, derived from the
    /// forwarding key's secret as the origin derives the one it seals with.
    pub ryw_key: [u8; 32],
    /// Key of the internal bulk KV route; `None` turns the route off.
    pub kv_route_key: Option<Key>,
    /// `TEST_MODE=1`: the `X-Forwarded-For` override and the test routes.
    pub test_mode: bool,
    /// Longest wait for an origin's response headers.
    pub origin_timeout_ms: u32,
    /// `PAGE_CACHE_MS`: how long KV's answer for a post page is kept in the
    /// isolate ([`crate::hot`]); 0 reads KV on every request.
    pub page_cache_ms: u32,
    /// `TEMPLATE_VERSION`: the post page template the origin renders
    /// (region-core's `render::TEMPLATE_VERSION`). A KV page rendered with
    /// another one is not served ([`crate::post`]); absent, any is.
    pub template_version: Option<u32>,
}

impl Config {
    /// The served city with this slug.
    pub fn city(&self, slug: &str) -> Option<&CityBinding> {
        self.cities.iter().find(|c| c.slug == slug)
    }
}

thread_local! {
    static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

/// The configuration of this isolate, parsed on first use.
pub fn get(env: &Env) -> Result<Rc<Config>, EdgeError> {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return Ok(config);
    }
    let config = Rc::new(parse(env)?);
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    Ok(config)
}

/// A text binding (var or secret), `None` when absent or not a string.
pub fn text(env: &Env, name: &str) -> Option<String> {
    js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .ok()
        .and_then(|v| v.as_string())
}

fn required(env: &Env, name: &str) -> Result<String, EdgeError> {
    text(env, name)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| EdgeError::Config(format!("binding {name} is missing or empty")))
}

/// A binding of milliseconds: `default` when absent, an error saying it is
/// not `rule` when it is no number or `accept` refuses it.
fn millis(
    env: &Env,
    name: &str,
    default: u32,
    accept: impl Fn(u32) -> bool,
    rule: &str,
) -> Result<u32, EdgeError> {
    let Some(s) = text(env, name) else {
        return Ok(default);
    };
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|ms| accept(*ms))
        .ok_or_else(|| EdgeError::Config(format!("{name}={s:?} is not {rule}")))
}

fn parse(env: &Env) -> Result<Config, EdgeError> {
    let apex = required(env, "APEX")?
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let cities: Vec<CityBinding> = serde_json::from_str(&required(env, "CITIES")?)
        .map_err(|e| EdgeError::Config(format!("CITIES is not a JSON list of cities: {e}")))?;
    let served = ServedCities::new(
        cities
            .iter()
            .map(|c| ServedCity::new(&c.slug, &c.country, c.lat, c.lon))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EdgeError::Config(format!("CITIES: {e}")))?,
    )
    .map_err(|e| EdgeError::Config(format!("CITIES: {e}")))?;
    let origins: HashMap<String, String> = serde_json::from_str(&required(env, "ORIGINS")?)
        .map_err(|e| EdgeError::Config(format!("ORIGINS is not a JSON object: {e}")))?;
    if let Some(city) = cities.iter().find(|c| !origins.contains_key(&c.region)) {
        return Err(EdgeError::Config(format!(
            "ORIGINS has no origin for region {:?} of city {:?}",
            city.region, city.slug
        )));
    }
    let origins = origins
        .into_iter()
        .map(|(region, url)| (region, url.trim_end_matches('/').to_string()))
        .collect();
    // Secret files are read as trimmed text; the key is those bytes as-is.
    let forward_secret = required(env, "FORWARD_KEY")?.trim().as_bytes().to_vec();
    let ryw_key = cityboard_protocol::ryw::cookie_key(&forward_secret);
    let forward_key = Key::strong("FORWARD_KEY", forward_secret).map_err(EdgeError::Config)?;
    let kv_route_key = text(env, "KV_ROUTE_KEY")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|s| Key::strong("KV_ROUTE_KEY", s.into_bytes()))
        .transpose()
        .map_err(EdgeError::Config)?;
    let test_mode = text(env, "TEST_MODE").is_some_and(|s| s.trim() == "1");
    let origin_timeout_ms = millis(
        env,
        "ORIGIN_TIMEOUT_MS",
        DEFAULT_ORIGIN_TIMEOUT_MS,
        |ms| ms > 0,
        "a positive number",
    )?;
    let page_cache_ms = millis(
        env,
        "PAGE_CACHE_MS",
        crate::hot::DEFAULT_PAGE_CACHE_MS,
        |ms| ms <= crate::hot::MAX_PAGE_CACHE_MS,
        &format!(
            "a number of milliseconds from 0 to {}",
            crate::hot::MAX_PAGE_CACHE_MS
        ),
    )?;
    let template_version =
        match text(env, "TEMPLATE_VERSION") {
            None => None,
            Some(s) if s.trim().is_empty() => None,
            Some(s) => Some(s.trim().parse::<u32>().map_err(|_| {
                EdgeError::Config(format!("TEMPLATE_VERSION={s:?} is not a number"))
            })?),
        };
    Ok(Config {
        apex,
        cities,
        served,
        origins,
        forward_key,
        ryw_key,
        kv_route_key,
        test_mode,
        origin_timeout_ms,
        page_cache_ms,
        template_version,
    })
}
