//! The api's `/metrics`: prometheus-client families, encoded by the library
//! in the OpenMetrics text format (so no exposition text is written here).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::hot::CacheCounts;
use crate::cache::pages::PageCacheCounts;
use crate::db::Node;
use crate::http::AppState;
use crate::http::search_terms::SearchTerms;
use crate::roles::common::{openmetrics_response, openmetrics_text};

/// Upper bounds of the latency histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A series of `cityboard_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// A series of `cityboard_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The lookups the caches count themselves (plain atomics in the core,
/// which knows nothing of metrics), read at each scrape.
#[derive(Debug, Default, Clone)]
pub struct CacheLookups {
    /// The Redis page cache.
    pub page_cache: Arc<PageCacheCounts>,
    /// The in-process cache of post views.
    pub post: Arc<CacheCounts>,
    /// The in-process cache of listing pages.
    pub page: Arc<CacheCounts>,
}

impl Collector for CacheLookups {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let get = |n: &AtomicU64| ConstCounter::new(n.load(Ordering::Relaxed));
        {
            let mut family = encoder.encode_descriptor(
                "cityboard_page_cache",
                "Listing page cache lookups by result.",
                None,
                MetricType::Counter,
            )?;
            let c = &self.page_cache;
            for (result, n) in [("hit", &c.hits), ("miss", &c.misses), ("error", &c.errors)] {
                get(n).encode(family.encode_family(&[("result", result)])?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "cityboard_local_cache",
            "In-process cache lookups by cache and result.",
            None,
            MetricType::Counter,
        )?;
        for (cache, counts) in [("post", &self.post), ("page", &self.page)] {
            for (result, n) in [("hit", &counts.hits), ("miss", &counts.misses)] {
                get(n).encode(family.encode_family(&[("cache", cache), ("result", result)])?)?;
            }
        }
        Ok(())
    }
}

/// A family whose `HELP` and `TYPE` lines are served before its first
/// series, as scrapers have always seen them (the library leaves an empty
/// family out).
#[derive(Debug)]
struct Listed<M>(M);

impl<M: EncodeMetric> EncodeMetric for Listed<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Why an upload was refused: the `reason` label of
/// `cityboard_upload_refusals_total`, a fixed set so that every series is
/// listed (at zero) from start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadRefusal {
    /// No valid upload token (forged, expired, for another post).
    Token,
    /// Not a multipart body, or one that broke off.
    Malformed,
    /// A photo or the body over its size limit.
    TooLarge,
    /// The bytes are not a JPEG, PNG or WebP.
    Type,
    /// Empty, truncated or damaged.
    Corrupt,
    /// Over the pixel or decoding-memory limit (a decompression bomb).
    Pixels,
    /// More photos than the post has room for.
    TooMany,
    /// No photo in the form.
    Empty,
    /// Over the uploader's write limits.
    RateLimited,
    /// The writer rejected the command (the post is gone, not the
    /// uploader's).
    Rejected,
}

impl UploadRefusal {
    /// Every reason, in the order of their series.
    pub const ALL: [UploadRefusal; 10] = [
        UploadRefusal::Token,
        UploadRefusal::Malformed,
        UploadRefusal::TooLarge,
        UploadRefusal::Type,
        UploadRefusal::Corrupt,
        UploadRefusal::Pixels,
        UploadRefusal::TooMany,
        UploadRefusal::Empty,
        UploadRefusal::RateLimited,
        UploadRefusal::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadRefusal::Token => "token",
            UploadRefusal::Malformed => "malformed",
            UploadRefusal::TooLarge => "too_large",
            UploadRefusal::Type => "type",
            UploadRefusal::Corrupt => "corrupt",
            UploadRefusal::Pixels => "pixels",
            UploadRefusal::TooMany => "too_many",
            UploadRefusal::Empty => "empty",
            UploadRefusal::RateLimited => "rate_limited",
            UploadRefusal::Rejected => "rejected",
        }
    }
}

/// A series of `cityboard_reports_total`: the city's name comes from the
/// `City` extractor, which admits only the cities served, so the series
/// are bounded by the region's cities.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CityLabels {
    city: String,
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// (route, method, status) → requests; a series from its first request.
    requests: Family<RequestLabels, Counter>,
    /// route → latency; a series from its first request.
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Reads answered by a replica.
    reads_replica: Counter,
    /// Reads answered by a primary (token, pending write, no fresh replica,
    /// recovery conflict).
    reads_primary: Counter,
    /// city → reports accepted (produced as commands).
    reports: Family<CityLabels, Counter>,
    /// Refused uploads, in the order of [`UploadRefusal::ALL`].
    upload_refusals: [Counter; UploadRefusal::ALL.len()],
    /// Each city's most searched terms.
    search_terms: SearchTerms,
}

impl Metrics {
    /// The api's families, with the caches' lookups read from `caches`.
    pub fn new(caches: CacheLookups) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cityboard_http_requests",
            "HTTP requests by route, method and status",
            Listed(requests.clone()),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "cityboard_http_request_duration_seconds",
            "Time to answer, by route",
            Listed(latency.clone()),
        );
        let reads = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let reads_replica = reads.get_or_create(&[("node", "replica")]).clone();
        let reads_primary = reads.get_or_create(&[("node", "primary")]).clone();
        registry.register(
            "cityboard_reads",
            "Shard reads by the kind of node that answered",
            reads,
        );
        registry.register_collector(Box::new(caches));
        let reports = Family::<CityLabels, Counter>::default();
        registry.register(
            "cityboard_reports",
            "Reports of posts the api accepted, by city",
            Listed(reports.clone()),
        );
        let refusals = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let upload_refusals =
            UploadRefusal::ALL.map(|r| refusals.get_or_create(&[("reason", r.as_str())]).clone());
        registry.register(
            "cityboard_upload_refusals",
            "Photo uploads refused, by reason",
            refusals,
        );
        let search_terms = SearchTerms::default();
        registry.register_collector(Box::new(search_terms.clone()));
        Metrics {
            registry,
            requests,
            latency,
            reads_replica,
            reads_primary,
            reports,
            upload_refusals,
            search_terms,
        }
    }

    /// Counts one read by the node that answered it.
    pub fn read_by(&self, node: &Node) {
        match node {
            Node::Primary => self.reads_primary.inc(),
            Node::Replica(_) => self.reads_replica.inc(),
        };
    }

    /// Counts one accepted report of a post of `city`.
    pub fn reported(&self, city: &str) {
        self.reports
            .get_or_create(&CityLabels {
                city: city.to_string(),
            })
            .inc();
    }

    /// Counts one refused upload.
    pub fn upload_refused(&self, reason: UploadRefusal) {
        if let Some(i) = UploadRefusal::ALL.iter().position(|r| *r == reason) {
            self.upload_refusals[i].inc();
        }
    }

    /// Counts one search of `city` for `terms` as typed (normalized and
    /// kept among the city's top terms by [`SearchTerms`]).
    pub fn searched(&self, city: &str, terms: &str) {
        self.search_terms.count(city, terms);
    }

    /// One answered request: a read lock and a hash lookup per family (a
    /// write lock only for a new series), no allocation beyond the labels.
    fn observe(&self, route: String, method: String, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route,
            method,
            status,
        };
        self.requests.get_or_create(&labels).inc();
        let route = RouteLabels {
            route: labels.route,
        };
        self.latency.get_or_create(&route).observe(seconds);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        openmetrics_text(&self.registry)
    }
}

/// The method as a label: the standard ones by name, any other (a
/// stranger may send any token as a method) as `OTHER`, so that what a
/// client sends cannot grow the series without bound.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware: counts and times every request by its route template (never
/// the raw path, which would make one series per post id; a path no route
/// matches is `unmatched`) and method (see `method_label`).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = method_label(req.method()).to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    st.metrics.observe(
        route,
        method,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}

/// GET /metrics
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition format", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    openmetrics_response(st.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let caches = CacheLookups::default();
        let m = Metrics::new(caches.clone());
        m.observe("/post/{id}".into(), "GET".into(), 200, 0.003);
        m.observe("/post/{id}".into(), "GET".into(), 404, 0.2);
        m.read_by(&Node::Primary);
        caches.page_cache.hits.fetch_add(2, Ordering::Relaxed);
        caches.page.misses.fetch_add(1, Ordering::Relaxed);
        let text = m.render();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_http_requests_total{route=\"/post/{id}\",method=\"GET\",status=\"404\"} 1");
        // The library writes `le` before the family's labels, and bounds
        // as `1.0` (no reader of this page parses buckets).
        has("cityboard_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/post/{id}\"} 1");
        has("cityboard_http_request_duration_seconds_bucket{le=\"0.25\",route=\"/post/{id}\"} 2");
        has("cityboard_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/post/{id}\"} 2");
        has("cityboard_http_request_duration_seconds_bucket{le=\"1.0\",route=\"/post/{id}\"} 2");
        has("cityboard_http_request_duration_seconds_sum{route=\"/post/{id}\"} 0.203");
        has("cityboard_http_request_duration_seconds_count{route=\"/post/{id}\"} 2");
        has("cityboard_reads_total{node=\"primary\"} 1");
        has("cityboard_reads_total{node=\"replica\"} 0");
        has("cityboard_page_cache_total{result=\"hit\"} 2");
        has("cityboard_page_cache_total{result=\"error\"} 0");
        has("cityboard_local_cache_total{cache=\"page\",result=\"miss\"} 1");
        has("cityboard_local_cache_total{cache=\"post\",result=\"hit\"} 0");
        has("# HELP cityboard_local_cache In-process cache lookups by cache and result.");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counts_reports_refused_uploads_and_search_terms() {
        let m = Metrics::new(CacheLookups::default());
        let text = m.render();
        for r in UploadRefusal::ALL {
            let zero = format!(
                "cityboard_upload_refusals_total{{reason=\"{}\"}} 0",
                r.as_str()
            );
            assert!(text.lines().any(|l| l == zero), "no {zero:?} in:\n{text}");
        }
        m.reported("boston");
        m.reported("boston");
        m.upload_refused(UploadRefusal::Pixels);
        m.searched("boston", "Red bike");
        let text = m.render();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        };
        has("cityboard_reports_total{city=\"boston\"} 2");
        has("cityboard_upload_refusals_total{reason=\"pixels\"} 1");
        has("cityboard_upload_refusals_total{reason=\"token\"} 0");
        has("cityboard_search_terms_total{city=\"boston\",term=\"red bike\"} 1");
    }

    #[test]
    fn a_strangers_method_folds_into_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for odd in ["PROPFIND", "BREW", "X1", "get"] {
            let m = Method::from_bytes(odd.as_bytes()).expect("a token");
            assert_eq!(method_label(&m), "OTHER", "{odd}");
        }
    }

    #[test]
    fn lists_every_family_before_any_request() {
        let text = Metrics::new(CacheLookups::default()).render();
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            types,
            [
                "cityboard_http_requests counter",
                "cityboard_http_request_duration_seconds histogram",
                "cityboard_reads counter",
                "cityboard_reports counter",
                "cityboard_upload_refusals counter",
                "cityboard_page_cache counter",
                "cityboard_local_cache counter",
                "cityboard_search_terms counter",
            ]
        );
        assert!(text.contains(
            "# HELP cityboard_http_requests HTTP requests by route, method and status.\n"
        ));
        assert_eq!(
            crate::roles::common::served_families(&text),
            crate::roles::common::recorded_families("api")
        );
    }
}
