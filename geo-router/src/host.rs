//! City host names: `{slug}.{apex}`, built and parsed.
//!
//! The edge sees whatever a client put in its `Host` header, so parsing is
//! strict about the shape (one DNS label in front of the apex) and lenient
//! about what browsers legitimately send (upper case, a trailing dot, a port).
//! It never panics and never allocates more than the lower-cased label.

use crate::error::{GeoError, Result};

/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;
/// Longest DNS name in presentation form, without the trailing dot.
const MAX_NAME: usize = 253;

/// What a `Host` header names, relative to the apex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteHost {
    /// The apex itself (`cityboard.example`): the visitor has not chosen a city.
    Apex,
    /// A city host; the slug is lower case and a valid DNS label.
    City(String),
}

/// Whether `s` is a lower-case DNS label usable as a city slug: 1–63 of
/// `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub fn valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is a DNS name made of valid labels (any case), e.g. an apex.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.')
            .all(|label| valid_slug(&label.to_ascii_lowercase()))
}

/// Builds the host name of a city: `{slug}.{apex}`, lower case.
pub fn city_host(slug: &str, apex: &str) -> Result<String> {
    let apex = normalize_apex(apex)?;
    if !valid_slug(slug) {
        return Err(GeoError::HostName {
            host: slug.to_string(),
            reason: "slug is not a lower-case DNS label",
        });
    }
    let host = format!("{slug}.{apex}");
    if host.len() > MAX_NAME {
        return Err(GeoError::HostName {
            host,
            reason: "host name longer than 253 characters",
        });
    }
    Ok(host)
}

/// Parses a `Host` header value against the apex.
///
/// Accepts any case, one trailing dot and a `:port` suffix. Anything else that
/// is not exactly the apex or one label in front of it is an error: deeper
/// names (`a.b.apex`), other domains, IP literals, empty labels, bytes outside
/// the DNS alphabet.
pub fn parse_host(host: &str, apex: &str) -> Result<SiteHost> {
    let refuse = |reason: &'static str| GeoError::HostName {
        host: host.chars().take(300).collect(),
        reason,
    };
    let apex = normalize_apex(apex)?;
    let name = strip_port(host).ok_or_else(|| refuse("malformed port"))?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(refuse("empty or over-long host name"));
    }
    if !name.is_ascii() {
        return Err(refuse("non-ASCII host name"));
    }
    if name.eq_ignore_ascii_case(&apex) {
        return Ok(SiteHost::Apex);
    }
    // `name` is ASCII, so byte offsets are char boundaries.
    let split = name
        .len()
        .checked_sub(apex.len() + 1)
        .ok_or_else(|| refuse("not under the apex"))?;
    let (label, rest) = name.split_at(split);
    if !rest.starts_with('.') || !rest[1..].eq_ignore_ascii_case(&apex) {
        return Err(refuse("not under the apex"));
    }
    let slug = label.to_ascii_lowercase();
    if !valid_slug(&slug) {
        return Err(refuse("city label is not a single DNS label"));
    }
    Ok(SiteHost::City(slug))
}

/// Lower-cases and validates an apex, dropping one trailing dot.
fn normalize_apex(apex: &str) -> Result<String> {
    let trimmed = apex.strip_suffix('.').unwrap_or(apex);
    if !trimmed.is_ascii() || !valid_name(trimmed) {
        return Err(GeoError::HostName {
            host: apex.chars().take(300).collect(),
            reason: "apex is not a DNS name",
        });
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Removes a `:port` suffix (1–5 digits, at most 65535). `None` when the
/// suffix is malformed; IPv6 literals (`[...]`) are returned unchanged and
/// then fail the DNS-name checks.
fn strip_port(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return Some(host);
    }
    match host.rsplit_once(':') {
        None => Some(host),
        Some((name, port)) => {
            let ok = !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
            ok.then_some(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APEX: &str = "cityboard.localhost";

    fn city(host: &str) -> Option<String> {
        match parse_host(host, APEX) {
            Ok(SiteHost::City(slug)) => Some(slug),
            _ => None,
        }
    }

    #[test]
    fn builds_hosts() {
        assert_eq!(
            city_host("newyork", APEX).ok().as_deref(),
            Some("newyork.cityboard.localhost")
        );
        assert_eq!(
            city_host("paris", "Cityboard.Example.").ok().as_deref(),
            Some("paris.cityboard.example")
        );
        assert!(city_host("New York", APEX).is_err());
        assert!(city_host("-x", APEX).is_err());
        assert!(city_host("x", "bad..apex").is_err());
        assert!(city_host(&"a".repeat(64), APEX).is_err());
    }

    #[test]
    fn parses_what_browsers_send() {
        assert_eq!(
            city("newyork.cityboard.localhost").as_deref(),
            Some("newyork")
        );
        assert_eq!(
            city("NewYork.CityBoard.LOCALHOST").as_deref(),
            Some("newyork")
        );
        assert_eq!(city("paris.cityboard.localhost.").as_deref(), Some("paris"));
        assert_eq!(
            city("paris.cityboard.localhost:8787").as_deref(),
            Some("paris")
        );
        assert_eq!(
            city("paris.cityboard.localhost.:443").as_deref(),
            Some("paris")
        );
        assert_eq!(
            parse_host("cityboard.localhost:80", APEX).ok(),
            Some(SiteHost::Apex)
        );
        assert_eq!(
            parse_host("CITYBOARD.localhost.", APEX).ok(),
            Some(SiteHost::Apex)
        );
    }

    #[test]
    fn rejects_garbage() {
        for host in [
            "",
            ".",
            ":80",
            "a.b.cityboard.localhost",
            ".cityboard.localhost",
            "evilcityboard.localhost",
            "paris.cityboard.localhost.evil",
            "paris.cityboard.localhost:",
            "paris.cityboard.localhost:99999",
            "paris.cityboard.localhost:8a",
            "paris.cityboard.localhost:80:80",
            "pa_ris.cityboard.localhost",
            "-paris.cityboard.localhost",
            "parïs.cityboard.localhost",
            "[::1]:80",
            "127.0.0.1",
            "paris..cityboard.localhost",
            "paris.cityboard.localhost..",
        ] {
            assert!(city(host).is_none(), "{host:?}");
        }
        let long = format!("{}.{APEX}", "a".repeat(300));
        assert!(parse_host(&long, APEX).is_err());
        assert!(parse_host("x.y", "").is_err());
    }

    #[test]
    fn round_trips() {
        for slug in ["a", "newyork", "saint-louis", "x1", &"z".repeat(63)] {
            let host = city_host(slug, APEX).expect("valid");
            assert_eq!(city(&host).as_deref(), Some(slug));
        }
    }
}
