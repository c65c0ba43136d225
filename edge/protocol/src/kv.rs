//! Edge KV formats (design §3): what the publisher writes and the Worker
//! reads. Only the publisher writes pages, so "never an older version over
//! a newer one" is decided here once, by `replaces`, and applied by both the
//! Worker's bulk route and any other sink.

use serde::{Deserialize, Serialize};

/// Path of the Worker's internal bulk write route (local runs; production
/// uses the Cloudflare KV REST bulk API with the same body shape).
pub const BULK_PATH: &str = "/__cityboard/kv/bulk";
/// Most writes one bulk call may carry (the Cloudflare bulk API's limit).
pub const BULK_MAX_WRITES: usize = 10_000;
/// How long a tombstone stays: longer than any replay or late write of the
/// post could arrive, so that none can bring it back.
pub const TOMBSTONE_TTL_SECS: u64 = 30 * 24 * 3600;

/// The KV key of a post's page.
pub fn post_key(id: u64) -> String {
    format!("post:{id}")
}

/// The KV key of a city's route (which region origin serves it).
pub fn route_key(city: &str) -> String {
    format!("route:{city}")
}

/// The post id of a `post:{id}` key.
pub fn post_id_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("post:")?.parse().ok()
}

/// Metadata of a `post:{id}` entry: a page (`city`, `expires_at` set) or a
/// tombstone (`gone`, empty value). It must fit KV's 1024-byte metadata
/// limit, which a city slug (a DNS label, ≤ 63 bytes) always does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMeta {
    /// The post's version: each change bumps it.
    pub version: i64,
    /// The city whose host serves the page (absent on tombstones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// Unix seconds when the post expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// A deleted, hidden or expired post.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
    /// Version of the template the page was rendered with (region-core's
    /// `render::TEMPLATE_VERSION`). The Worker serves a page only when it
    /// names the current one, so a template change shows at once (the
    /// origin renders the page meanwhile) and the publisher re-renders the
    /// pages. Absent on tombstones and on pages written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u32>,
    /// The id of the request whose write made this version
    /// (`trace`), so that a page or tombstone in KV names the request to
    /// grep for in the roles' logs. Absent when no request made it (the
    /// janitor's expiry, the demo data) and on entries written before it
    /// existed. At most 64 bytes, so the metadata stays far below KV's
    /// 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl PostMeta {
    /// Metadata of a live page.
    pub fn page(city: &str, version: i64, expires_at: i64) -> PostMeta {
        PostMeta {
            version,
            city: Some(city.to_string()),
            expires_at: Some(expires_at),
            gone: false,
            template: None,
            request: None,
        }
    }

    /// The same metadata, naming the template version the page was
    /// rendered with.
    pub fn with_template(mut self, template: u32) -> PostMeta {
        self.template = Some(template);
        self
    }

    /// The same metadata, naming the request whose write made it.
    pub fn with_request(mut self, request: Option<&str>) -> PostMeta {
        self.request = request.map(str::to_string);
        self
    }

    /// Metadata of a tombstone.
    pub fn tombstone(version: i64) -> PostMeta {
        PostMeta {
            version,
            city: None,
            expires_at: None,
            gone: true,
            template: None,
            request: None,
        }
    }
}

/// The strong ETag of a post page: id and version name its bytes, since a
/// page is rendered once per version.
pub fn etag(post_id: u64, meta: &PostMeta) -> String {
    format!("\"p{post_id}v{}\"", meta.version)
}

/// Whether a write of `new` may replace what KV holds: never an older
/// version over a newer one; at the same version a tombstone over a page
/// (a hide or expiry that shares the version of the last edit), or a page
/// rendered with another template over a page (a template change
/// re-publishes), so a replayed write is a no-op and nothing brings a
/// tombstone back but a newer version.
pub fn replaces(existing: Option<&PostMeta>, new: &PostMeta) -> bool {
    match existing {
        None => true,
        Some(old) if new.version > old.version => true,
        Some(old) if new.version == old.version => {
            !old.gone && (new.gone || new.template != old.template)
        }
        Some(_) => false,
    }
}

/// Value of `route:{city}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The region that serves the city.
    pub region: String,
    /// Base URL of that region's origin, e.g. `https://origin.us-east.example`.
    pub origin: String,
}

/// One write of a bulk call (the Cloudflare bulk API's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BulkWrite {
    /// The KV key.
    pub key: String,
    /// The value (a page's HTML; empty for a tombstone).
    pub value: String,
    /// The metadata: a `PostMeta` for `post:` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Seconds until KV drops the entry (tombstones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_ttl: Option<u64>,
}

/// The answer to a bulk call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkResult {
    /// Entries written.
    pub written: u32,
    /// Entries skipped because KV holds the same or a newer version.
    pub skipped_older: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_older_over_newer_and_tombstones_win_ties() {
        let page = |v| PostMeta::page("boston", v, 0);
        assert!(replaces(None, &page(1)));
        assert!(replaces(Some(&page(1)), &page(2)));
        assert!(!replaces(Some(&page(2)), &page(1)));
        assert!(!replaces(Some(&page(2)), &page(2)));
        assert!(replaces(Some(&page(2)), &PostMeta::tombstone(2)));
        assert!(!replaces(Some(&PostMeta::tombstone(2)), &page(2)));
        assert!(!replaces(Some(&PostMeta::tombstone(3)), &page(2)));
        assert!(replaces(Some(&PostMeta::tombstone(3)), &page(4)));
    }

    #[test]
    fn a_page_of_another_template_replaces_one_of_the_same_version() {
        let page = |v, t: Option<u32>| PostMeta {
            template: t,
            ..PostMeta::page("boston", v, 0)
        };
        assert!(replaces(Some(&page(2, None)), &page(2, Some(7))));
        assert!(replaces(Some(&page(2, Some(6))), &page(2, Some(7))));
        assert!(!replaces(Some(&page(2, Some(7))), &page(2, Some(7))));
        assert!(!replaces(Some(&page(3, Some(6))), &page(2, Some(7))));
        assert!(!replaces(Some(&PostMeta::tombstone(2)), &page(2, Some(7))));
        assert!(!replaces(Some(&PostMeta::tombstone(3)), &page(2, Some(7))));
        assert!(replaces(Some(&page(2, Some(7))), &PostMeta::tombstone(2)));
    }

    #[test]
    fn the_template_is_optional_in_metadata() {
        let old: PostMeta =
            serde_json::from_str(r#"{"version":2,"city":"boston","expires_at":5}"#).unwrap();
        assert_eq!(old.template, None);
        let new = PostMeta::page("boston", 2, 5).with_template(9);
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(
            json,
            r#"{"version":2,"city":"boston","expires_at":5,"template":9}"#
        );
        assert_eq!(serde_json::from_str::<PostMeta>(&json).unwrap(), new);
    }

    #[test]
    fn metadata_is_compact_json() {
        let t = serde_json::to_string(&PostMeta::tombstone(3)).unwrap();
        assert_eq!(t, r#"{"version":3,"gone":true}"#);
        let p: PostMeta =
            serde_json::from_str(r#"{"version":2,"city":"boston","expires_at":5}"#).unwrap();
        assert_eq!(p, PostMeta::page("boston", 2, 5));
        assert_eq!(etag(7, &p), "\"p7v2\"");
        assert_eq!(post_key(7), "post:7");
        assert_eq!(post_id_of_key("post:7"), Some(7));
        assert_eq!(post_id_of_key("route:boston"), None);
    }
}
