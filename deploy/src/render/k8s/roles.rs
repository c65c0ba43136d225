//! A region's region-core roles: Deployments, Services, the
//! api's autoscaler, PodDisruptionBudgets, and the stack description the
//! roles read (a ConfigMap; the Redis password is spliced in at start).
//!
//! Replica counts follow which roles may run twice at once. The api is
//! stateless (an HPA scales it). Writers and publishers are consumer
//! groups: two share the partitions. The relay runs once (two would each
//! take other outbox rows, but could then send one city's events out of
//! order) and so does the janitor (its sweeps would double): both use the
//! `Recreate` strategy, so an update never overlaps two of them.
//!
//! Resources from BENCHMARKS.md, origin-read, run of 2026-12-06 evening:
//! one 2-core machine (api, Postgres and the load generator together)
//! served 8 929 views/s and 1 898-2 148 searches/s; the api is given one
//! core and scaled at 70 % of it. The write roles' drain (write-pipeline,
//! same run: 4 872-8 709 commands/s) leaves them far from a core.

use serde_json::{Value, json};

use super::postgres::{primary_url, replica_url};
use super::redis::service as redis_service;
use super::{
    CATALOG_CLUSTER, labels, metadata, pdb, pg_secret, restricted_container, secret_env, selector,
};
use crate::redis_server::RedisRole;
use crate::render::values::Values;
use crate::topology::Topology;

/// The api's public port: the only one the edge's ingress reaches.
pub const API_PORT: u16 = 8080;
/// The api's operator listener (`/metrics`, `DELETE /old_posts`).
pub const OPERATOR_PORT: u16 = 9090;
/// Every other role's `/metrics` and `/healthz`.
pub const METRICS_PORT: u16 = 9100;

/// Where the stack description is written at start (an emptyDir).
const STATE_FILE: &str = "/run/cityboard/state.json";
/// The placeholder of the Redis password in the ConfigMap's copy.
const REDIS_PASSWORD_MARK: &str = "@REDIS_PASSWORD@";

/// One long-running role of a region.
struct Role {
    name: &'static str,
    subcommand: &'static str,
    replicas: u32,
    single_active: bool,
    cpu: &'static str,
    memory: &'static str,
    login: &'static str,
    port: u16,
}

const PIPELINE: [Role; 4] = [
    Role {
        name: "writer",
        subcommand: "writer",
        replicas: 2,
        single_active: false,
        cpu: "500m",
        memory: "512Mi",
        login: "cb_writer",
        port: METRICS_PORT,
    },
    Role {
        name: "relay",
        subcommand: "relay",
        replicas: 1,
        single_active: true,
        cpu: "250m",
        memory: "256Mi",
        login: "cb_relay",
        port: METRICS_PORT,
    },
    Role {
        name: "publisher",
        subcommand: "publisher",
        replicas: 2,
        single_active: false,
        cpu: "500m",
        memory: "512Mi",
        login: "cb_publisher",
        port: METRICS_PORT,
    },
    Role {
        name: "janitor",
        subcommand: "janitor",
        replicas: 1,
        single_active: true,
        cpu: "250m",
        memory: "256Mi",
        login: "cb_janitor",
        port: METRICS_PORT,
    },
];

const API: Role = Role {
    name: "api",
    subcommand: "serve",
    replicas: 2,
    single_active: false,
    cpu: "1",
    memory: "1Gi",
    login: "cb_api",
    port: API_PORT,
};

/// The objects of the region at `index`.
pub fn objects(topology: &Topology, index: usize, values: &Values) -> Vec<Value> {
    let ns = topology.regions[index].name.as_str();
    let mut objects = vec![state_config_map(topology, ns)];
    let mut api = deployment(ns, &API, values);
    // The topology's rate limits, as `cityboard up` gives them.
    api["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array_mut()
        .expect("a list")
        .extend([
            "--limits".into(),
            serde_json::to_string(&topology.limits)
                .expect("JSON")
                .into(),
        ]);
    objects.push(api);
    objects.push(service(ns, "api", "api", &[("http", API_PORT, "TCP")]));
    objects.push(service(
        ns,
        "api-operator",
        "api",
        &[("operator", OPERATOR_PORT, "TCP")],
    ));
    objects.push(hpa(ns, values));
    objects.push(pdb(ns, "api"));
    for role in &PIPELINE {
        objects.push(deployment(ns, role, values));
        objects.push(service(
            ns,
            role.name,
            role.name,
            &[("metrics", METRICS_PORT, "TCP")],
        ));
        if !role.single_active {
            objects.push(pdb(ns, role.name));
        }
    }
    objects.extend(super::geo_dns::objects(topology, ns, values));
    objects
}

/// `state.json` as region-core reads it (`region_core::stack::StackFile`),
/// with in-cluster addresses. Every region is listed, in topology order,
/// because a region's index is its number in ids; only this region's
/// addresses are ever used.
fn state_config_map(topology: &Topology, ns: &str) -> Value {
    let regions: Vec<Value> = topology
        .regions
        .iter()
        .map(|region| {
            let r = region.name.as_str();
            let redis = |role| format!("redis://:{REDIS_PASSWORD_MARK}@{}.{r}.svc:6379/", redis_service(role));
            json!({
                "name": r,
                "catalog_url": primary_url(r, CATALOG_CLUSTER),
                "redis_cache_url": redis(RedisRole::Cache),
                "redis_store_url": redis(RedisRole::Store),
                "api_port": API_PORT,
                "shards": region.shards.iter().map(|shard| json!({
                    "name": shard.name,
                    "primary_url": primary_url(r, &shard.name),
                    "replica_urls": if shard.replicas > 0 { vec![replica_url(r, &shard.name)] } else { vec![] },
                    "cities": shard.cities.iter().map(|c| c.slug.as_str()).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let state = json!({
        "apex": topology.apex,
        "broker": super::strimzi::bootstrap(ns),
        "regions": regions,
    });
    let text = serde_json::to_string_pretty(&state).expect("JSON") + "\n";
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("cityboard-state", ns, "region"),
        "data": {"state.json": text},
    })
}

fn deployment(ns: &str, role: &Role, values: &Values) -> Value {
    let mut args: Vec<String> = vec![
        role.subcommand.into(),
        "--state".into(),
        STATE_FILE.into(),
        "--region".into(),
        ns.into(),
    ];
    let mut env = vec![
        json!({"name": "PGUSER", "value": role.login}),
        secret_env("PGPASSWORD", &pg_secret(role.login), "password"),
    ];
    let cloudflare = || {
        vec![
            secret_env(
                "CLOUDFLARE_ACCOUNT_ID",
                "cityboard-cloudflare",
                "account-id",
            ),
            secret_env("CLOUDFLARE_API_TOKEN", "cityboard-cloudflare", "api-token"),
            secret_env(
                "CITYBOARD_KV_NAMESPACE_ID",
                "cityboard-cloudflare",
                "kv-namespace-id",
            ),
        ]
    };
    let mut ports = vec![json!({"name": "http", "containerPort": role.port})];
    match role.name {
        "api" => {
            args.extend([
                "--listen".into(),
                format!("0.0.0.0:{API_PORT}"),
                "--operator-listen".into(),
                format!("0.0.0.0:{OPERATOR_PORT}"),
                "--secrets-dir".into(),
                "/secrets".into(),
            ]);
            ports.push(json!({"name": "operator", "containerPort": OPERATOR_PORT}));
            if let Some(url) = &values.api().archive_url {
                env.push(json!({"name": "CITYBOARD_ARCHIVE_URL", "value": url}));
            }
        }
        other => {
            args.extend(["--metrics-listen".into(), format!("0.0.0.0:{METRICS_PORT}")]);
            if matches!(other, "publisher" | "janitor") {
                args.extend([
                    "--kv-sink".into(),
                    "cloudflare".into(),
                    "--secrets-dir".into(),
                    "/secrets".into(),
                ]);
                env.extend(cloudflare());
            }
            if other == "janitor" {
                // region-core's janitor reads it from the environment only.
                let mut smtp = secret_env("CITYBOARD_SMTP_URL", "cityboard-smtp", "url");
                smtp["valueFrom"]["secretKeyRef"]["optional"] = true.into();
                env.push(smtp);
            }
        }
    }
    let probe = |delay: u32| {
        json!({
            "httpGet": {"path": "/healthz", "port": role.port},
            "initialDelaySeconds": delay,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    // The archive's object store reads the AWS variables
    // (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) of this Secret.
    let env_from = if role.name == "api" && values.api().archive_url.is_some() {
        json!([{"secretRef": {"name": "cityboard-archive-s3"}}])
    } else {
        json!([])
    };
    let mut init_containers = vec![state_init(values)];
    if role.name == "api" {
        init_containers.push(setup_init(ns, values));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(role.name, ns, role.name),
        "spec": {
            "replicas": role.replicas,
            "strategy": if role.single_active { json!({"type": "Recreate"}) } else { json!({"type": "RollingUpdate"}) },
            "selector": {"matchLabels": selector(role.name)},
            "template": {
                "metadata": {"labels": labels(role.name)},
                "spec": {
                    // fsGroup: the key files (0440) belong to the pod's group,
                    // readable by the roles and by no other user.
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001},
                    "initContainers": init_containers,
                    "containers": [{
                        "name": role.name,
                        "image": values.images().region_core,
                        "args": args,
                        "env": env,
                        "envFrom": env_from,
                        "ports": ports,
                        "readinessProbe": probe(2),
                        "livenessProbe": probe(15),
                        "resources": {
                            "requests": {"cpu": role.cpu, "memory": role.memory},
                            "limits": {"memory": role.memory},
                        },
                        "securityContext": restricted_container(),
                        "volumeMounts": [
                            {"name": "state", "mountPath": "/run/cityboard"},
                            {"name": "keys", "mountPath": "/secrets", "readOnly": true},
                        ],
                    }],
                    "volumes": [
                        {"name": "state", "emptyDir": {}},
                        {"name": "state-template", "configMap": {"name": "cityboard-state"}},
                        {"name": "keys", "secret": {"secretName": "cityboard-keys", "defaultMode": 288}},
                    ],
                },
            },
        },
    })
}

/// Writes the stack description with the Redis password spliced in, so
/// that the password is in no ConfigMap and on no command line.
fn state_init(values: &Values) -> Value {
    json!({
        "name": "state",
        "image": values.images().region_core,
        "command": ["/bin/sh", "-c",
            format!("umask 077 && sed \"s|{REDIS_PASSWORD_MARK}|$REDIS_PASSWORD|g\" /template/state.json > {STATE_FILE}")],
        "env": [secret_env("REDIS_PASSWORD", "cityboard-redis", "password")],
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "state", "mountPath": "/run/cityboard"},
            {"name": "state-template", "mountPath": "/template", "readOnly": true},
        ],
    })
}

/// `region-core setup` before each api start, as `cityboard up` runs it:
/// migrations (as the superuser, serialised by sqlx's advisory lock) and
/// the shard map's seed; idempotent.
fn setup_init(ns: &str, values: &Values) -> Value {
    json!({
        "name": "setup",
        "image": values.images().region_core,
        "args": ["setup", "--state", STATE_FILE, "--region", ns],
        "env": [
            {"name": "PGUSER", "value": crate::postgres::ADMIN},
            secret_env("PGPASSWORD", &pg_secret(crate::postgres::ADMIN), "password"),
        ],
        "securityContext": restricted_container(),
        "volumeMounts": [{"name": "state", "mountPath": "/run/cityboard"}],
    })
}

fn service(ns: &str, name: &str, component: &str, ports: &[(&str, u16, &str)]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, ns, component),
        "spec": {
            "selector": selector(component),
            "ports": ports.iter().map(|(port_name, port, protocol)| json!({
                "name": port_name, "port": port, "targetPort": port, "protocol": protocol,
            })).collect::<Vec<_>>(),
        },
    })
}

fn hpa(ns: &str, values: &Values) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata("api", ns, "api"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "minReplicas": values.api().min_replicas,
            "maxReplicas": values.api().max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70},
            }}],
        },
    })
}
