//! The apex host: send each visitor to their city.
//!
//! A `cb_city` cookie (the visitor's own choice, from the picker) wins over
//! any location; otherwise `request.cf`, then the client IP; a visitor none
//! of them places gets the picker. `/cities` is the picker for everyone
//! (each page's "change city" link). Every answer depends on the visitor, so
//! none may be cached (`private, no-store`).

use web_sys::Response;

use crate::config::Config;
use crate::error::EdgeError;
use crate::geo;
use crate::html;
use crate::incoming::Incoming;
use crate::respond;

/// The picker's own path on the apex: always the picker, even for a
/// visitor whose `cb_city` cookie would send them to their city.
pub const CITIES_PATH: &str = "/cities";
/// Cookie naming the city the visitor chose.
pub const CITY_COOKIE: &str = "cb_city";
/// How long the choice is kept: a year.
const CITY_COOKIE_MAX_AGE: u32 = 365 * 24 * 3600;

/// Answers a request to the apex.
pub fn handle(req: &Incoming, config: &Config) -> Result<Response, EdgeError> {
    if !req.is_read() {
        return Err(EdgeError::MethodNotAllowed);
    }
    if req.path == "/choose" {
        return choose(req, config);
    }
    // "Change city" links here: the picker whatever the cookie says.
    if req.path == CITIES_PATH {
        return picker(req, config);
    }
    if let Some(city) = req.cookie(CITY_COOKIE).and_then(|slug| config.city(slug)) {
        return to_city(req, config, &city.slug, "cookie");
    }
    let cf = geo::cf_location(&req.raw);
    let ip = config.client_ip(req);
    match geo::locate(config, &cf, &ip) {
        Some((city, source)) => {
            let how = match source {
                geo::Source::Cf => "cf",
                geo::Source::Ip => "ip",
            };
            to_city(req, config, &city, how)
        }
        None => picker(req, config),
    }
}

/// The city picker (with the GeoIP credit, as every page of the apex).
fn picker(req: &Incoming, config: &Config) -> Result<Response, EdgeError> {
    respond::html(
        200,
        &[("cache-control", "private, no-store")],
        &html::picker(config, &req.base_of(&config.apex), None),
    )
}

/// `GET /choose?city=x`: remembers the choice and sends the visitor there.
fn choose(req: &Incoming, config: &Config) -> Result<Response, EdgeError> {
    // Slugs need no percent-decoding: an encoded one names no served city.
    let slug = req
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("city="))
        .map(str::to_string);
    let Some(city) = slug.as_deref().and_then(|s| config.city(s)) else {
        return Err(EdgeError::CityNotServed(slug.unwrap_or_default()));
    };
    let secure = if req.scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{CITY_COOKIE}={}; Path=/; Max-Age={CITY_COOKIE_MAX_AGE}; SameSite=Lax{secure}",
        city.slug
    );
    let location = format!("{}/", req.base_of(&city_host(&city.slug, config)));
    respond::redirect(302, &location, &[("set-cookie", &cookie)])
}

fn to_city(req: &Incoming, config: &Config, city: &str, how: &str) -> Result<Response, EdgeError> {
    let location = format!("{}/", req.base_of(&city_host(city, config)));
    respond::redirect(302, &location, config.located_by(how).as_slice())
}

/// `{city}.{apex}`; the slugs of served cities are valid labels (checked
/// when the configuration was parsed).
pub fn city_host(city: &str, config: &Config) -> String {
    format!("{city}.{}", config.apex)
}
