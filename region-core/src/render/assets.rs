//! The stylesheet and the script, served under names that carry a hash of
//! their bytes (`/static/site.3f2a9c1b.css`), so that they can be cached
//! for a year (`immutable`): a change makes a new name, and every page
//! links the new one.

use std::sync::LazyLock;

/// One static file: its fingerprinted name, bytes and media type.
#[derive(Debug)]
pub struct Asset {
    /// `site.<hash>.css`: the name under `/static/`.
    pub name: String,
    /// What is served.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

const CSS: &[u8] = include_bytes!("../../static/site.css");
const JS: &[u8] = include_bytes!("../../static/site.js");

/// FNV-1a (32 bits) over `parts`, in order: small, `const`, and stable
/// across builds and platforms (a fingerprint, not a defence).
pub const fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u32;
            h = h.wrapping_mul(0x0100_0193);
            i += 1;
        }
        p += 1;
    }
    h
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        Asset {
            name: format!("site.{:08x}.css", fnv1a(&[CSS])),
            bytes: CSS,
            content_type: "text/css; charset=utf-8",
        },
        Asset {
            name: format!("site.{:08x}.js", fnv1a(&[JS])),
            bytes: JS,
            content_type: "text/javascript; charset=utf-8",
        },
    ]
});

/// The asset named `name` (a fingerprinted name only: a stale or made-up
/// one is not found).
pub fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// Every asset's name (for the OpenAPI document's `/static/{name}`).
pub fn names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name.as_str())
}

/// The stylesheet's URL path.
pub fn css_url() -> String {
    format!("/static/{}", ASSETS[0].name)
}

/// The script's URL path.
pub fn js_url() -> String {
    format!("/static/{}", ASSETS[1].name)
}

/// The bytes of the stylesheet and the script (for the template version).
pub(crate) const SOURCES: [&[u8]; 2] = [CSS, JS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_found_by_fingerprinted_name_only() {
        let css = css_url();
        let name = css.strip_prefix("/static/").unwrap();
        assert!(name.starts_with("site.") && name.ends_with(".css") && name.len() == 17);
        assert_eq!(get(name).unwrap().bytes, CSS);
        assert!(get("site.css").is_none());
        assert!(get("site.00000000.css").is_none() || fnv1a(&[CSS]) == 0);
        assert!(get(js_url().strip_prefix("/static/").unwrap()).is_some());
    }
}
