//! The page budget of issue 24 (acceptance 4), measured in Chromium itself:
//! the network throttled by DevTools to 1.6 Mbit/s down, 750 kbit/s up and
//! 150 ms round trips (a slow mobile link), the cache off so every byte
//! counts, then the paint and layout-shift entries the page buffered and
//! the bytes of its HTML, CSS and JS as Resource Timing reports them.

use serde_json::{Value, json};

use super::Browser;

/// Down-link of the throttled network, bits per second.
pub const DOWN_BITS_PER_S: f64 = 1_600_000.0;
/// Up-link, bits per second.
pub const UP_BITS_PER_S: f64 = 750_000.0;
/// Added round-trip latency, ms.
pub const LATENCY_MS: f64 = 150.0;

/// What one throttled page load measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The page (path and query).
    pub page: String,
    /// Largest Contentful Paint, ms after navigation start.
    pub lcp_ms: f64,
    /// The element LCP chose (tag name), for the report.
    pub lcp_element: String,
    /// Cumulative Layout Shift: every shift without recent input, summed
    /// (at least the session-window CLS browsers report).
    pub cls: f64,
    /// Bytes over the wire (headers and encoded bodies) of the document.
    pub html_bytes: u64,
    /// ... of its stylesheets.
    pub css_bytes: u64,
    /// ... of its scripts.
    pub js_bytes: u64,
    /// Requests the page made besides the document.
    pub subresources: usize,
}

impl Figures {
    /// HTML + CSS + JS.
    pub fn total_bytes(&self) -> u64 {
        self.html_bytes + self.css_bytes + self.js_bytes
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: LCP {:.0} ms ({}), CLS {:.3}, HTML {} B + CSS {} B + JS {} B = {:.1} KB ({} subresources)",
            self.page,
            self.lcp_ms,
            self.lcp_element,
            self.cls,
            self.html_bytes,
            self.css_bytes,
            self.js_bytes,
            self.total_bytes() as f64 / 1024.0,
            self.subresources
        )
    }
}

/// Collects the page's entries once it has loaded: LCP and layout shifts
/// exist only for `PerformanceObserver`s (`buffered: true` hands over those
/// recorded before it was created); the short wait lets them arrive, and a
/// last paint after `load` be reported.
const COLLECT: &str = r#"
const done = arguments[0];
const paints = [], shifts = [];
new PerformanceObserver(l => paints.push(...l.getEntries()))
  .observe({type: 'largest-contentful-paint', buffered: true});
new PerformanceObserver(l => shifts.push(...l.getEntries()))
  .observe({type: 'layout-shift', buffered: true});
setTimeout(() => {
  let lcp = 0, element = '', cls = 0;
  for (const e of paints) {
    lcp = e.renderTime || e.loadTime || e.startTime;
    element = e.element ? e.element.tagName.toLowerCase() : (e.url || '?');
  }
  for (const e of shifts) {
    if (!e.hadRecentInput) cls += e.value;
  }
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource').map(r => ({
    name: r.name, type: r.initiatorType, bytes: r.transferSize || r.encodedBodySize
  }));
  done({lcp, element, cls, html: nav ? (nav.transferSize || nav.encodedBodySize) : 0, resources});
}, 500);
"#;

impl Browser {
    /// Throttles this session's network (and turns its cache off) for the
    /// budget measurements.
    pub async fn throttle(&self) {
        self.cdp("Network.setCacheDisabled", json!({"cacheDisabled": true}))
            .await;
        self.cdp(
            "Network.emulateNetworkConditions",
            json!({
                "offline": false,
                "latency": LATENCY_MS,
                "downloadThroughput": DOWN_BITS_PER_S / 8.0,
                "uploadThroughput": UP_BITS_PER_S / 8.0,
            }),
        )
        .await;
    }

    /// Loads `url` (on a throttled session) and measures it.
    pub async fn measure(&self, url: &str) -> Figures {
        self.goto(url).await;
        let v = self
            .client
            .execute_async(COLLECT, vec![])
            .await
            .unwrap_or_else(|e| panic!("[{}] measuring {url}: {e}", self.label));
        let mut css = 0;
        let mut js = 0;
        let resources = v["resources"].as_array().cloned().unwrap_or_default();
        for r in &resources {
            let name = r["name"].as_str().unwrap_or_default();
            let path = name.split('?').next().unwrap_or_default();
            let bytes = r["bytes"].as_f64().unwrap_or(0.0) as u64;
            if path.ends_with(".css") {
                css += bytes;
            } else if path.ends_with(".js") || r["type"] == "script" {
                js += bytes;
            }
        }
        Figures {
            page: self.path().await,
            lcp_ms: num(&v["lcp"]),
            lcp_element: v["element"].as_str().unwrap_or_default().to_string(),
            cls: num(&v["cls"]),
            html_bytes: num(&v["html"]) as u64,
            css_bytes: css,
            js_bytes: js,
            subresources: resources.len(),
        }
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}
