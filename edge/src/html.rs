//! The few pages the Worker renders itself: the city picker, the "gone" page
//! and the error pages. Every interpolated value is escaped, including the
//! configuration's own (a city name is data, not markup).

use std::fmt::Write;

use crate::config::Config;

/// The GeoIP data's required credit (DB-IP Lite is CC-BY-4.0).
pub const GEOIP_CREDIT: &str = "<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>";

/// The one escaping function of both sides of the edge.
pub use cityboard_protocol::html::escape;

/// The layout of the Worker's own pages: the content in `<main>` (every
/// page has one landmark for its content, as axe-core asks), the credit in
/// the footer.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · cityboard</title></head><body>\n<main>\n{body}\n</main>\n\
         <footer><p>{GEOIP_CREDIT}</p></footer>\n</body></html>\n",
        escape(title)
    )
}

/// The city picker: served cities grouped by region, each a link to
/// `{apex_base}/choose?city=…` (`apex_base` = scheme, apex and port of the
/// request), which sets the `cb_city` cookie. `note` says why the visitor
/// sees it (an unknown host, say); `None` for a visitor that simply could not
/// be placed.
pub fn picker(config: &Config, apex_base: &str, note: Option<&str>) -> String {
    let mut regions: Vec<&str> = Vec::new();
    for city in &config.cities {
        if !regions.contains(&city.region.as_str()) {
            regions.push(&city.region);
        }
    }
    let mut body = String::from("<h1>Choose your city</h1>\n");
    if let Some(note) = note {
        let _ = writeln!(body, "<p>{}</p>", escape(note));
    }
    for region in regions {
        let _ = writeln!(body, "<section><h2>{}</h2><ul>", escape(region));
        for city in config.cities.iter().filter(|c| c.region == region) {
            let _ = writeln!(
                body,
                "<li><a href=\"{base}/choose?city={slug}\">{name}</a></li>",
                base = escape(apex_base),
                slug = escape(&city.slug),
                name = escape(&city.name),
            );
        }
        body.push_str("</ul></section>\n");
    }
    page("Choose your city", &body)
}

/// A page with a heading and one paragraph (errors, 410, 503).
pub fn message_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>", escape(title), escape(message)),
    )
}

/// The page of a post that was deleted, hidden or expired (a KV tombstone).
pub fn gone_page() -> String {
    message_page(
        "Gone",
        "This post was removed or has expired; it is no longer available.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">Tom & Jerry's</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
        let page = message_page("<b>", "x");
        assert!(page.contains("&lt;b&gt;") && page.contains(GEOIP_CREDIT));
    }
}
