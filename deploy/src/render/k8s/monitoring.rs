//! A region's monitoring for the Prometheus Operator: a `ServiceMonitor`
//! scraping every role's metrics port, and a `PrometheusRule` carrying
//! `deploy/monitoring/alerts.yml` as it is.
//!
//! The rules are the file's own text, embedded at build time and indented
//! under `spec:`, rather than parsed and printed again: they stay the one
//! copy that `deploy/monitoring/check.sh` checks with promtool (every alert
//! with a firing and a quiet case), comments included, and no YAML parser is
//! needed for a file whose `groups:` is already the exact shape of a
//! `PrometheusRule`'s spec.

use serde_json::{Value, json};

use super::{labels, metadata};

/// The alert rules of a region, as `deploy/monitoring/check.sh` checks them.
pub const ALERTS: &str = include_str!("../../../monitoring/alerts.yml");

/// The Prometheus Operator API both objects belong to.
pub const API_VERSION: &str = "monitoring.coreos.com/v1";

/// The roles Prometheus scrapes: the api on its operator listener, the
/// others on their metrics listener (the Services of [`super::roles`]).
const SCRAPED: [&str; 5] = ["api", "writer", "relay", "publisher", "janitor"];

/// How often each role is scraped: the alerts' shortest `for` is 5 minutes
/// and their windows 10, so 30 s gives each window twenty samples.
const INTERVAL: &str = "30s";

/// The ServiceMonitor of region namespace `ns`.
pub fn service_monitor(ns: &str) -> Value {
    let endpoint = |port: &str| json!({"port": port, "path": "/metrics", "interval": INTERVAL, "scheme": "http"});
    json!({
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata("cityboard-roles", ns, "monitoring"),
        "spec": {
            // A Service without one of these ports (the api's public one)
            // simply has no endpoint scraped.
            "endpoints": [endpoint("operator"), endpoint("metrics")],
            "namespaceSelector": {"matchNames": [ns]},
            "selector": {
                "matchLabels": {"app.kubernetes.io/part-of": "cityboard"},
                "matchExpressions": [{
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": SCRAPED,
                }],
            },
        },
    })
}

/// The PrometheusRule of region namespace `ns`, as YAML text (one document):
/// the object's head printed like every other object, then `spec:` with the
/// rules file's `groups:` indented under it.
pub fn prometheus_rule(ns: &str) -> String {
    let head = json!({
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {
            "name": "cityboard-region",
            "namespace": ns,
            "labels": labels("monitoring"),
        },
    });
    let mut text = crate::render::yaml::documents(&[head]);
    text.push_str("spec:\n");
    for line in rules_body().lines() {
        if line.is_empty() {
            text.push('\n');
        } else {
            text.push_str("  ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// The rules file from its `groups:` line on (the header comments speak of
/// the local checks, not of the rendered object).
fn rules_body() -> &'static str {
    let start = ALERTS
        .find("\ngroups:")
        .map(|i| i + 1)
        .or_else(|| ALERTS.starts_with("groups:").then_some(0))
        .expect("deploy/monitoring/alerts.yml has a top-level `groups:`");
    &ALERTS[start..]
}

/// The two objects of region namespace `ns` as one YAML file's text.
pub fn file(ns: &str) -> String {
    let mut text = crate::render::yaml::documents(&[service_monitor(ns)]);
    text.push_str(&prometheus_rule(ns));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_carries_every_alert_of_the_rules_file() {
        let text = prometheus_rule("eu-west");
        let alerts: Vec<&str> = ALERTS
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- alert:"))
            .map(str::trim)
            .collect();
        assert!(!alerts.is_empty());
        for alert in alerts {
            assert!(
                text.contains(&format!("    - alert: {alert}\n")),
                "{alert} is not under spec.groups"
            );
        }
        assert!(text.contains("\nspec:\n  groups:\n"), "{text}");
    }
}
