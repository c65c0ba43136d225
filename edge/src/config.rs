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
use crate::incoming::Incoming;

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
    /// `TEST_MODE=1` in a build with the `test-mode` feature: the
    /// `X-Forwarded-For` override, the test routes, the test range table
    /// and the `x-cityboard-located-by` header. The production build has
    /// no such field, and none of what it turns on.
    #[cfg(feature = "test-mode")]
    pub test_mode: bool,
    /// Test mode's range table: the `TEST_GEO_RANGES` data binding, which
    /// replaces the embedded one so that the runtime tests pin which
    /// address is in which city without a build of their own.
    #[cfg(feature = "test-mode")]
    pub test_ranges: Option<geo_router::RangeTable>,
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

    /// The visitor's address: [`Incoming::client_ip`] (`CF-Connecting-IP`),
    /// which in test mode the first `X-Forwarded-For` entry overrides,
    /// since locally nothing sets the former. Never in the production
    /// build, where a client's `X-Forwarded-For` is only dropped.
    pub fn client_ip(&self, req: &Incoming) -> String {
        #[cfg(feature = "test-mode")]
        if self.test_mode
            && let Some(first) = req
                .header("x-forwarded-for")
                .and_then(|v| v.split(',').next().map(|s| s.trim().to_string()))
                .filter(|s| !s.is_empty())
        {
            return first;
        }
        req.client_ip()
    }

    /// The header an apex redirect carries to say how the visitor was
    /// placed (`how`: cookie, cf, ip), for the tests: in test mode only.
    #[cfg(feature = "test-mode")]
    pub fn located_by<'a>(&self, how: &'a str) -> Option<(&'static str, &'a str)> {
        self.test_mode.then_some(("x-cityboard-located-by", how))
    }

    /// The header an apex redirect carries to say how the visitor was
    /// placed: none in the production build, where the redirect is the
    /// hottest path and carries nothing it does not need.
    #[cfg(not(feature = "test-mode"))]
    pub fn located_by<'a>(&self, _how: &'a str) -> Option<(&'static str, &'a str)> {
        None
    }
}

/// What a `TEST_MODE` binding does in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestMode {
    /// Unset, or anything but `1`.
    Off,
    /// `1`, in a build with the `test-mode` feature.
    On,
    /// `1`, in a build without it (production): nothing but a warning in
    /// the log, so that a binding left over from a test setup cannot open
    /// the client-IP override or the test routes.
    Ignored,
}

impl TestMode {
    /// The mode a `TEST_MODE` binding's value gives in this build.
    pub fn of(binding: Option<&str>) -> TestMode {
        if binding.is_none_or(|s| s.trim() != "1") {
            TestMode::Off
        } else if cfg!(feature = "test-mode") {
            TestMode::On
        } else {
            TestMode::Ignored
        }
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

/// The `TEST_GEO_RANGES` data binding as a range table; `None` when there
/// is none (the embedded table is used then) or it does not parse.
#[cfg(feature = "test-mode")]
fn test_ranges(env: &Env) -> Option<geo_router::RangeTable> {
    use wasm_bindgen::JsCast;
    let value = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(TEST_RANGES_BINDING)).ok()?;
    let buffer = value.dyn_into::<js_sys::ArrayBuffer>().ok()?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    geo_router::RangeTable::from_bytes(&bytes)
        .inspect_err(|e| worker::console_error!("{TEST_RANGES_BINDING}: {e}"))
        .ok()
}

/// Test mode's `data` binding of a range table ([`Config::test_ranges`]).
#[cfg(feature = "test-mode")]
pub const TEST_RANGES_BINDING: &str = "TEST_GEO_RANGES";

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
    let test_mode = TestMode::of(text(env, "TEST_MODE").as_deref());
    if test_mode == TestMode::Ignored {
        worker::console_warn!(
            "TEST_MODE=1 is ignored: this Worker was built without the test-mode feature"
        );
    }
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
        #[cfg(feature = "test-mode")]
        test_mode: test_mode == TestMode::On,
        #[cfg(feature = "test-mode")]
        test_ranges: (test_mode == TestMode::On)
            .then(|| test_ranges(env))
            .flatten(),
        origin_timeout_ms,
        page_cache_ms,
        template_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mode_needs_the_binding_set_to_1() {
        for off in [None, Some(""), Some("0"), Some("true"), Some("yes")] {
            assert_eq!(TestMode::of(off), TestMode::Off, "{off:?}");
        }
    }

    /// The production Worker (built without the feature, as deploy/test's
    /// `cargo test -p cityboard-edge --lib` builds it) ignores
    /// `TEST_MODE=1`, and its configuration has no test mode to turn on.
    #[cfg(not(feature = "test-mode"))]
    #[test]
    fn the_production_build_ignores_test_mode() {
        assert_eq!(TestMode::of(Some("1")), TestMode::Ignored);
        assert_eq!(TestMode::of(Some(" 1\n")), TestMode::Ignored);
    }

    /// The runtime tests' build turns it on.
    #[cfg(feature = "test-mode")]
    #[test]
    fn the_test_build_turns_test_mode_on() {
        assert_eq!(TestMode::of(Some("1")), TestMode::On);
        assert_eq!(TestMode::of(Some(" 1\n")), TestMode::On);
    }
}
