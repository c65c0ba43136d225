//! A region's NetworkPolicies: nothing reaches a pod unless a policy here
//! lets it. Inside the namespace the roles, Postgres, Redis and Kafka talk
//! freely (the operator listener stays inside); from outside, only the
//! edge's ingress reaches the api's public port, the operators reach their
//! clusters, Prometheus scrapes the metrics ports, and anyone may ask the
//! geo DNS.

use serde_json::{Value, json};

use super::geo_dns::DNS_PORT;
use super::metadata;
use super::roles::{API_PORT, METRICS_PORT, OPERATOR_PORT};
use crate::render::values::Values;

/// The policies of namespace `ns`.
pub fn objects(ns: &str, values: &Values) -> Vec<Value> {
    let net = values.network();
    let from_namespace = |name: &str| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}});
    let component = |name: &str| json!({"matchLabels": {"app.kubernetes.io/component": name}});
    let tcp = |port: u16| json!({"protocol": "TCP", "port": port});
    let policy = |name: &str, pod_selector: Value, ingress: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(name, ns, "network"),
            "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": ingress},
        })
    };
    vec![
        policy("default-deny", json!({}), json!([])),
        policy(
            "same-namespace",
            json!({}),
            json!([{"from": [{"podSelector": {}}]}]),
        ),
        policy(
            "api-from-edge",
            component("api"),
            json!([{"from": [from_namespace(&net.edge_ingress_namespace)], "ports": [tcp(API_PORT)]}]),
        ),
        policy(
            "postgres-from-operator",
            json!({"matchLabels": {"cnpg.io/podRole": "instance"}}),
            json!([{"from": [from_namespace(&net.cnpg_namespace)], "ports": [tcp(5432), tcp(8000)]}]),
        ),
        policy(
            "kafka-from-operator",
            json!({"matchExpressions": [{"key": "strimzi.io/cluster", "operator": "Exists"}]}),
            json!([{"from": [from_namespace(&net.strimzi_namespace)]}]),
        ),
        policy(
            "metrics-from-monitoring",
            json!({"matchLabels": {"app.kubernetes.io/part-of": "cityboard"}}),
            json!([{"from": [from_namespace(&net.monitoring_namespace)],
                    "ports": [tcp(OPERATOR_PORT), tcp(METRICS_PORT)]}]),
        ),
        policy(
            "dns-from-anywhere",
            component("geo-dns"),
            json!([{"ports": [{"protocol": "UDP", "port": DNS_PORT}, tcp(DNS_PORT)]}]),
        ),
    ]
}
