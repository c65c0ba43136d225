//! `cityboard render k8s`: each region of the topology as the objects of
//! one namespace, for operators that already run CloudNativePG (Postgres),
//! Strimzi (Kafka) and the Prometheus Operator. One module per engine; this one names
//! the shared conventions (labels, services, secret names) and lays the
//! files out: `<region>/<part>.yaml`.
//!
//! Nothing secret is ever rendered: every key and password is a Secret the
//! operator creates under a name listed in [`SECRETS`] (deploy/README.md),
//! and objects refer to it by that name.

pub mod geo_dns;
pub mod monitoring;
pub mod network;
pub mod postgres;
pub mod redis;
pub mod roles;
pub mod strimzi;

use std::path::PathBuf;

use serde_json::{Value, json};

use super::RenderedFile;
use super::values::Values;
use crate::topology::Topology;

/// The Secrets a region's namespace must hold before the objects are
/// applied, with what each carries. Objects name them; none is rendered.
pub const SECRETS: &[(&str, &str)] = &[
    (
        "cityboard-keys",
        "files session.key, kv-route.key, edge-forward.key, operator.token (as the local stack's secrets/; optionally edge-forward.previous.key and .expires during a rotation)",
    ),
    (
        "cityboard-redis",
        "key `password`: both Redis instances' requirepass (URL-safe characters)",
    ),
    (
        "cityboard-pg-postgres",
        "basic-auth: the Postgres superuser (migrations, shard-tool)",
    ),
    ("cityboard-pg-cb-api", "basic-auth: login cb_api"),
    ("cityboard-pg-cb-writer", "basic-auth: login cb_writer"),
    ("cityboard-pg-cb-relay", "basic-auth: login cb_relay"),
    (
        "cityboard-pg-cb-publisher",
        "basic-auth: login cb_publisher",
    ),
    ("cityboard-pg-cb-janitor", "basic-auth: login cb_janitor"),
    (
        "cityboard-pg-cb-replication",
        "basic-auth: login cb_replication (REPLICATION, city moves)",
    ),
    (
        "cityboard-cloudflare",
        "keys `account-id`, `api-token`, `kv-namespace-id`: the publisher's and janitor's KV access",
    ),
    (
        "cityboard-smtp",
        "key `url`, optional: the janitor's CITYBOARD_SMTP_URL",
    ),
    (
        "cityboard-archive-s3",
        "keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION: the archive's bucket (with api.archive_url)",
    ),
];

/// Every file of the rendering, in a stable order.
pub fn render(topology: &Topology, values: &Values) -> Vec<RenderedFile> {
    let mut files = Vec::new();
    for (index, region) in topology.regions.iter().enumerate() {
        let ns = region.name.as_str();
        let parts: [(&str, Vec<Value>); 6] = [
            ("namespace", vec![namespace(ns)]),
            ("postgres", postgres::objects(region, values)),
            ("kafka", strimzi::objects(topology, ns, values)),
            ("redis", redis::objects(ns, values)),
            ("roles", roles::objects(topology, index, values)),
            ("network", network::objects(ns, values)),
        ];
        for (part, objects) in parts {
            files.push(RenderedFile {
                path: PathBuf::from(ns).join(format!("{part}.yaml")),
                text: super::yaml::documents(&objects),
            });
        }
        files.push(RenderedFile {
            path: PathBuf::from(ns).join("monitoring.yaml"),
            text: monitoring::file(ns),
        });
    }
    files
}

/// The labels every object carries: `app.kubernetes.io/*` with the
/// component, which selectors and NetworkPolicies match on.
pub fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "cityboard-render",
        "app.kubernetes.io/part-of": "cityboard",
    })
}

/// The labels a component's pods are selected by (a subset of [`labels`],
/// stable across renderer versions: selectors are immutable).
pub fn selector(component: &str) -> Value {
    json!({
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "cityboard",
    })
}

/// `metadata` of an object named `name` in namespace `ns`.
pub fn metadata(name: &str, ns: &str, component: &str) -> Value {
    json!({"name": name, "namespace": ns, "labels": labels(component)})
}

/// The CloudNativePG cluster of a region's catalog.
pub const CATALOG_CLUSTER: &str = "catalog";

/// A Secret's key as an environment variable's value.
pub fn secret_env(name: &str, secret: &str, key: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

/// The Secret holding a Postgres login's basic-auth pair (Kubernetes
/// names take no `_`).
pub fn pg_secret(login: &str) -> String {
    format!("cityboard-pg-{}", login.replace('_', "-"))
}

fn namespace(ns: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels("region")},
    })
}

/// A container's security context under the `restricted` Pod Security
/// Standard: no privilege escalation, no capabilities, read-only root.
pub fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// At most one pod of the component down at a time for a drain.
pub fn pdb(ns: &str, component: &str) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(component, ns, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(component)}},
    })
}
