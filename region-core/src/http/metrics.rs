//! `/metrics` in the Prometheus text format, from a handful of counters kept
//! by hand (a metrics framework would be more code than what it replaces).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::cache::pages::PageCacheCounts;
use crate::db::Node;
use crate::http::AppState;

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route → latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Reads answered by a replica.
    pub reads_replica: AtomicU64,
    /// Reads answered by a primary (token, pending write, no fresh replica,
    /// recovery conflict).
    pub reads_primary: AtomicU64,
}

impl Metrics {
    /// Counts one read by the node that answered it.
    pub fn read_by(&self, node: &Node) {
        match node {
            Node::Primary => self.reads_primary.fetch_add(1, Ordering::Relaxed),
            Node::Replica(_) => self.reads_replica.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = latency.entry(route.to_string()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The exposition text, with the page cache's lookups (counted by the
    /// cache itself).
    pub fn render(&self, page_cache: &PageCacheCounts) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP cityboard_http_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE cityboard_http_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cityboard_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                label(route),
                label(method)
            );
        }
        out.push_str("# HELP cityboard_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE cityboard_http_request_duration_seconds histogram\n");
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let route = label(route);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cityboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "cityboard_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "cityboard_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "cityboard_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let counters = [
            (
                "cityboard_reads_total{node=\"replica\"}",
                &self.reads_replica,
                "cityboard_reads_total",
                "Shard reads by the kind of node that answered.",
            ),
            (
                "cityboard_reads_total{node=\"primary\"}",
                &self.reads_primary,
                "",
                "",
            ),
            (
                "cityboard_page_cache_total{result=\"hit\"}",
                &page_cache.hits,
                "cityboard_page_cache_total",
                "Listing page cache lookups by result.",
            ),
            (
                "cityboard_page_cache_total{result=\"miss\"}",
                &page_cache.misses,
                "",
                "",
            ),
            (
                "cityboard_page_cache_total{result=\"error\"}",
                &page_cache.errors,
                "",
                "",
            ),
        ];
        for (series, value, family, help) in counters {
            if !family.is_empty() {
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} counter");
            }
            let _ = writeln!(out, "{series} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, which would make one series per post id).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    st.metrics.observe(
        &route,
        &method,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// GET /metrics
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut text = st.metrics.render(st.cache.counts());
    text.push_str(
        "# HELP cityboard_local_cache_total In-process cache lookups by cache and result.\n\
         # TYPE cityboard_local_cache_total counter\n",
    );
    for (cache, counts) in [("post", &st.views.counts), ("page", &st.pages.counts)] {
        for (result, n) in [("hit", &counts.hits), ("miss", &counts.misses)] {
            let _ = writeln!(
                text,
                "cityboard_local_cache_total{{cache=\"{cache}\",result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe("/post/{id}", "GET", 200, 0.003);
        m.observe("/post/{id}", "GET", 404, 0.2);
        m.read_by(&Node::Primary);
        let text = m.render(&PageCacheCounts::default());
        assert!(text.contains(
            "cityboard_http_requests_total{route=\"/post/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains(
            "cityboard_http_request_duration_seconds_bucket{route=\"/post/{id}\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains("cityboard_http_request_duration_seconds_count{route=\"/post/{id}\"} 2")
        );
        assert!(text.contains("cityboard_reads_total{node=\"primary\"} 1"));
    }
}
