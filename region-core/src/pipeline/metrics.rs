//! Counters of the writer and relay roles, and the small HTTP listener that
//! serves them as `/metrics` (Prometheus text) beside a `/healthz` for the
//! supervisor. Counters are kept by hand, as in `http::metrics`: a metrics
//! framework would be more code than what it replaces.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// Everything the writer and the relay count. One struct for both roles:
/// a role leaves the other's counters at zero, and a test that runs both in
/// one process reads one page.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    /// Commands applied for the first time.
    pub applied: AtomicU64,
    /// Commands found in `applied_commands` already (a replay): nothing
    /// written again.
    pub replayed: AtomicU64,
    /// Commands rejected: by `apply` (e.g. editing someone else's post) or
    /// before it (poison: not JSON, unknown type, city not served).
    pub rejected: AtomicU64,
    /// Messages copied to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Commands a frozen city's fence refused and the writer held.
    pub held: AtomicU64,
    /// Commands sent again after the map moved their city.
    pub rerouted: AtomicU64,
    /// `apply` calls (one transaction each).
    pub batches: AtomicU64,
    /// `apply` calls that failed (shard down, conflict): retried.
    pub apply_failures: AtomicU64,
    /// Apply notifications that could not be stored in Redis.
    pub notify_failures: AtomicU64,
    /// Gauge: commands in memory, not applied yet.
    pub queued: AtomicU64,
    /// Gauge: of those, commands waiting on a frozen city or a shard down.
    pub blocked: AtomicU64,
    /// Gauge: partitions paused because blocked commands passed the bound
    /// (which also delays the other cities sharing them).
    pub paused_partitions: AtomicU64,
    /// Times a partition was paused.
    pub pauses: AtomicU64,
    /// Outbox rows produced to the events topic.
    pub relayed: AtomicU64,
    /// Outbox rows deleted after their delivery was acknowledged.
    pub outbox_deleted: AtomicU64,
    /// Relay rounds that failed (shard down, broker down): retried.
    pub relay_failures: AtomicU64,
    /// The publisher's counters (events, KV writes, coalescing, errors).
    pub publisher: crate::pipeline::publisher::metrics::PublisherMetrics,
    /// The janitor's counters (sweeps, expiries, reminders).
    pub janitor: crate::janitor::metrics::JanitorMetrics,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

/// Sets a gauge.
pub fn set(gauge: &AtomicU64, n: usize) {
    gauge.store(n as u64, Ordering::Relaxed);
}

/// Name, type, help and (labels, value) series of one metric family.
type Family<'a> = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'a AtomicU64)>,
);

impl PipelineMetrics {
    /// The exposition text.
    pub fn render(&self) -> String {
        let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let families: [Family<'_>; 8] = [
            (
                "cityboard_writer_commands_total",
                "counter",
                "Commands the writer finished, by result.",
                vec![
                    ("result=\"applied\"", &self.applied),
                    ("result=\"replayed\"", &self.replayed),
                    ("result=\"rejected\"", &self.rejected),
                ],
            ),
            (
                "cityboard_writer_dead_letters_total",
                "counter",
                "Messages copied to the dead-letter topic.",
                vec![("", &self.dead_lettered)],
            ),
            (
                "cityboard_writer_refused_total",
                "counter",
                "Commands a shard's fence refused, by what the writer did.",
                vec![
                    ("action=\"held\"", &self.held),
                    ("action=\"rerouted\"", &self.rerouted),
                ],
            ),
            (
                "cityboard_writer_batches_total",
                "counter",
                "Apply transactions, by result.",
                vec![
                    ("result=\"ok\"", &self.batches),
                    ("result=\"failed\"", &self.apply_failures),
                ],
            ),
            (
                "cityboard_writer_notify_failures_total",
                "counter",
                "Apply notifications Redis did not take.",
                vec![("", &self.notify_failures)],
            ),
            (
                "cityboard_writer_pending_commands",
                "gauge",
                "Commands in memory not applied yet, by state.",
                vec![
                    ("state=\"queued\"", &self.queued),
                    ("state=\"blocked\"", &self.blocked),
                ],
            ),
            (
                "cityboard_writer_paused_partitions",
                "gauge",
                "Command partitions paused because blocked commands passed the bound; \
                 pauses_total counts each pause.",
                vec![("", &self.paused_partitions)],
            ),
            (
                "cityboard_relay_events_total",
                "counter",
                "Outbox rows the relay handled, by step.",
                vec![
                    ("step=\"produced\"", &self.relayed),
                    ("step=\"deleted\"", &self.outbox_deleted),
                ],
            ),
        ];
        for (family, kind, help, series) in families {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for (labels, value) in series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{family} {}", counter(value));
                } else {
                    let _ = writeln!(out, "{family}{{{labels}}} {}", counter(value));
                }
            }
        }
        for (family, help, value) in [
            (
                "cityboard_writer_pauses_total",
                "Times a command partition was paused.",
                &self.pauses,
            ),
            (
                "cityboard_relay_failures_total",
                "Relay rounds that failed and were retried.",
                &self.relay_failures,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {family} {help}\n# TYPE {family} counter\n{family} {}",
                counter(value)
            );
        }
        self.publisher.render_into(&mut out);
        self.janitor.render_into(&mut out);
        out
    }
}

async fn metrics(State(m): State<Arc<PipelineMetrics>>) -> Response {
    let mut res = m.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Serves `/metrics` and `/healthz` on `addr` until the task is aborted.
/// Binds before returning, so a port already taken fails the role at start.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<PipelineMetrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(self::metrics))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics listener on {addr}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = PipelineMetrics::default();
        add(&m.applied, 3);
        add(&m.dead_lettered, 1);
        set(&m.paused_partitions, 2);
        let text = m.render();
        assert!(text.contains("cityboard_writer_commands_total{result=\"applied\"} 3"));
        assert!(text.contains("cityboard_writer_dead_letters_total 1"));
        assert!(text.contains("# TYPE cityboard_writer_paused_partitions gauge"));
        assert!(text.contains("cityboard_writer_paused_partitions 2"));
        assert!(text.contains("cityboard_relay_failures_total 0"));
    }
}
