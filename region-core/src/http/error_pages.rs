//! Errors for browsers: a request that asks for HTML (and not JSON) gets
//! an HTML page with the same status, whatever produced the error (an
//! `ApiError`, a write's stored answer, axum's own rejections), instead of
//! the problem document every other client gets.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::AppState;
use crate::http::chrome::{PageCtx, neutral_chrome};
use crate::render::{self, Link, Viewer};

/// Whether the client is a browser: it lists `text/html` in Accept, and
/// not `application/json` (scripts, and clients that state no preference,
/// get problem documents).
pub fn wants_html(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("text/html") && !accept.contains("application/json")
}

/// The city a request names, if this region serves it: the signed city or
/// host behind the edge, else `Host`. (This layer runs outside the
/// signature check, so an unsigned claim only picks the layout of an error
/// page, shown to whoever sent it.)
fn city_of(st: &AppState, headers: &HeaderMap) -> Option<String> {
    let named = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let from_host = |host: String| {
        let host = host
            .rsplit_once(':')
            .map_or(host.clone(), |(h, _)| h.to_string());
        host.strip_suffix(&st.apex)
            .and_then(|s| s.strip_suffix('.'))
            .map(str::to_string)
    };
    let candidates = [
        named(cityboard_protocol::sign::CITY_HEADER),
        named(cityboard_protocol::sign::FORWARDED_HOST_HEADER).and_then(from_host),
        named(header::HOST.as_str()).and_then(from_host),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|c| !c.is_empty() && st.router.route(c).is_ok())
}

/// Middleware: turns a problem answer to a browser into an HTML page.
pub async fn html_errors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !wants_html(req.headers()) {
        return next.run(req).await;
    }
    // Kept for the layout of an error page; looked at only if there is
    // one (most answers are not errors).
    let mut asked = HeaderMap::new();
    for name in [
        cityboard_protocol::sign::CITY_HEADER,
        cityboard_protocol::sign::FORWARDED_HOST_HEADER,
        header::HOST.as_str(),
    ] {
        if let Some(v) = req.headers().get(name) {
            asked.insert(name, v.clone());
        }
    }
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !is_problem {
        return res;
    }
    let host = asked
        .get(cityboard_protocol::sign::FORWARDED_HOST_HEADER)
        .or_else(|| asked.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let ctx = city_of(&st, &asked).map(|c| PageCtx::of(&st, &c, &host));
    let (mut parts, body) = res.into_parts();
    let problem: serde_json::Value = axum::body::to_bytes(body, crate::http::BODY_LIMIT)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let status = parts.status;
    let title = problem["title"]
        .as_str()
        .or(status.canonical_reason())
        .unwrap_or("Error");
    let message = match problem["detail"].as_str() {
        Some(d) if !d.is_empty() => sentence(d),
        _ => "Something went wrong on our side. Please try again in a moment.".to_string(),
    };
    let message = match problem["errors"].as_array() {
        Some(errors) if !errors.is_empty() => {
            let listed: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["field"].as_str().unwrap_or("field"),
                        e["problem"].as_str().unwrap_or("invalid")
                    )
                })
                .collect();
            format!("{message} ({})", listed.join("; "))
        }
        _ => message,
    };
    let link = match status.as_u16() {
        401 => Link {
            href: "/login".into(),
            label: "Log in".into(),
        },
        _ => Link {
            href: "/".into(),
            label: "Back to the city home".into(),
        },
    };
    let chrome = match &ctx {
        Some(ctx) => ctx.chrome(&path, Viewer::Shared),
        None => neutral_chrome(&st, &path, Viewer::Shared),
    };
    let message = local_instants(&message, &chrome.locale);
    let heading = format!("{} {title}", status.as_u16());
    let html = render::error_page(chrome, &heading, &message, Some(link));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Response::from_parts(parts, axum::body::Body::from(html))
}

/// `text` with every RFC 3339 instant in it (a renewal refused until
/// then) written as the city writes a date and time, in its zone.
fn local_instants(text: &str, locale: &crate::locale::CityLocale) -> String {
    text.split(' ')
        .map(|word| {
            let bare = word.trim_end_matches(['.', ',', ';', ')']);
            match chrono::DateTime::parse_from_rfc3339(bare) {
                Ok(at) => {
                    let local = locale.date_time(at.with_timezone(&chrono::Utc));
                    format!("{local} ({} time){}", locale.name, &word[bare.len()..])
                }
                Err(_) => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A problem's detail as a sentence: capitalised, with a full stop.
fn sentence(detail: &str) -> String {
    let mut s: String = detail
        .chars()
        .take(1)
        .flat_map(char::to_uppercase)
        .chain(detail.chars().skip(1))
        .collect();
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_are_told_from_scripts_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_html(&h), "no preference: problem JSON");
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        assert!(wants_html(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/html"),
        );
        assert!(!wants_html(&h));
    }

    #[test]
    fn instants_read_in_the_citys_zone() {
        let paris = crate::locale::city_locale("paris");
        let text = local_instants("renewal is allowed from 2026-12-08T11:50:30Z.", &paris);
        assert!(text.contains("8 Dec 2026, 12:50"), "{text}");
        assert!(text.ends_with("time)."), "{text}");
    }

    #[test]
    fn details_read_as_sentences() {
        assert_eq!(sentence("not found"), "Not found.");
        assert_eq!(sentence("Done."), "Done.");
    }
}
