//! The values file: what production needs beyond the topology (images,
//! storage, backup bucket, KV namespace ids, public origin addresses).
//! The topology says what exists; the values say where and how big.
//!
//! Parsed as strictly as the topology (unknown keys are errors) and with
//! the same error type, so a mistake in either file exits 2 with
//! `file:line: what`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::topology::{Topology, TopologyError, line_of};

/// The checked-in example values, what `render` reads without `--values`.
pub const DEFAULT_VALUES: &str = "deploy/render/values.toml";

/// A parsed values file, with where its parts are for later checks.
#[derive(Debug, Clone)]
pub struct Values {
    /// The file, for error messages.
    pub path: PathBuf,
    text: String,
    raw: RawValues,
}

/// Container images of the fleet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// The region-core image (the `Containerfile`'s `region-core` target).
    pub region_core: String,
    /// The geo-router image (the `Containerfile`'s `geo-router` target).
    pub geo_router: String,
    /// The Postgres operand image CloudNativePG runs.
    pub postgres: String,
    /// The Redis image.
    pub redis: String,
}

/// Postgres clusters (CloudNativePG).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresValues {
    /// Most replicas a shard may have here (the cluster's node count
    /// bounds it: each instance wants a node of its own).
    pub max_replicas: Spanned<usize>,
    /// Volume size of each shard instance, e.g. `20Gi`.
    pub shard_storage: String,
    /// Volume size of each catalog instance.
    pub catalog_storage: String,
    /// Storage class of the volumes; the cluster's default when absent.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Object storage URL backups go under (`s3://bucket/prefix`); each
    /// cluster writes to `<this>/<region>/<cluster>`.
    pub backup_destination: String,
    /// Name of the Secret with `ACCESS_KEY_ID` and `ACCESS_SECRET_KEY` for it.
    pub backup_credentials_secret: String,
    /// Six-field cron schedule of the base backups (CloudNativePG's form).
    pub backup_schedule: String,
    /// How long backups are kept, e.g. `30d`.
    pub backup_retention: String,
}

/// The Kafka cluster (Strimzi, KRaft).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaValues {
    /// Kafka version Strimzi runs.
    pub version: String,
    /// KRaft metadata version matching it.
    pub metadata_version: String,
    /// Nodes of the pool (each controller and broker); topics get
    /// `min(nodes, 3)` replicas.
    pub nodes: Spanned<u32>,
    /// Volume size of each node.
    pub storage: String,
}

/// The api's horizontal autoscaler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiValues {
    /// Fewest api pods (2 keeps the api up through a node drain).
    pub min_replicas: u32,
    /// Most api pods.
    pub max_replicas: u32,
    /// Where `DELETE /old_posts` archives old posts (`s3://bucket/prefix`;
    /// the image is built with region-core's `s3` feature), with the
    /// credentials of the `cityboard-archive-s3` Secret. Optional: without
    /// it the archive goes to the pod's scratch volume and is lost with it.
    #[serde(default)]
    pub archive_url: Option<String>,
}

/// Who may reach what from outside the region's namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkValues {
    /// Namespace of the edge's ingress (e.g. cloudflared's tunnel): the one
    /// place the api's public port is reachable from.
    pub edge_ingress_namespace: String,
    /// Namespace of the CloudNativePG operator (it talks to every instance).
    pub cnpg_namespace: String,
    /// Namespace of the Strimzi operator.
    pub strimzi_namespace: String,
    /// Namespace of Prometheus, allowed to scrape the metrics ports.
    pub monitoring_namespace: String,
}

/// One Worker environment on Cloudflare.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeEnvironment {
    /// Apex of the environment's site, e.g. `cityboard.example`.
    pub apex: String,
    /// Zone the Worker's routes are in.
    pub zone: String,
    /// Id of the `PAGES` KV namespace (`wrangler kv namespace create`).
    #[serde(default)]
    pub kv_namespace_id: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValues {
    images: Images,
    postgres: PostgresValues,
    kafka: KafkaValues,
    api: ApiValues,
    network: NetworkValues,
    /// Public address of each region's origin, what geo DNS answers.
    origins: Spanned<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    wrangler: BTreeMap<String, Spanned<EdgeEnvironment>>,
}

impl Values {
    /// Reads and checks a values file.
    pub fn load(path: &Path) -> Result<Values, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            path: path.to_owned(),
            line: 1,
            message: format!("cannot read the values file: {e}"),
        })?;
        Values::parse(path, &text)
    }

    /// Parses values text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Values, TopologyError> {
        let raw: RawValues = toml::from_str(text).map_err(|e| TopologyError {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        let values = Values {
            path: path.to_owned(),
            text: text.to_owned(),
            raw,
        };
        let nodes = *values.raw.kafka.nodes.get_ref();
        if nodes == 0 {
            return Err(values.error(
                Some(values.raw.kafka.nodes.span()),
                "kafka.nodes must be at least 1".into(),
            ));
        }
        Ok(values)
    }

    /// Checks that `topology` fits these values: each shard's replicas
    /// within `postgres.max_replicas`, each region a usable namespace with
    /// an origin address. Errors name the file and line at fault.
    pub fn check(&self, topology: &Topology, topology_path: &Path) -> Result<(), TopologyError> {
        let max = *self.raw.postgres.max_replicas.get_ref();
        for region in &topology.regions {
            namespace_problem(&region.name).map_or(Ok(()), |m| {
                Err(TopologyError {
                    path: topology_path.to_owned(),
                    line: region.line,
                    message: format!(
                        "region name {:?} cannot be a Kubernetes namespace: {m}",
                        region.name
                    ),
                })
            })?;
            for shard in &region.shards {
                if shard.replicas > max {
                    return Err(TopologyError {
                        path: topology_path.to_owned(),
                        line: shard.line,
                        message: format!(
                            "{}/{} has {} replicas; the values file {} allows at most {max} (postgres.max_replicas, line {})",
                            region.name,
                            shard.name,
                            shard.replicas,
                            self.path.display(),
                            line_of(&self.text, self.raw.postgres.max_replicas.span().start),
                        ),
                    });
                }
            }
            let Some(origin) = self.raw.origins.get_ref().get(&region.name) else {
                return Err(self.error(
                    Some(self.raw.origins.span()),
                    format!("[origins] has no address for region {:?}", region.name),
                ));
            };
            if let Some(problem) = origin_problem(origin.get_ref()) {
                return Err(self.error(
                    Some(origin.span()),
                    format!("origins.{}: {problem}", region.name),
                ));
            }
        }
        Ok(())
    }

    /// Images.
    pub fn images(&self) -> &Images {
        &self.raw.images
    }

    /// Postgres settings.
    pub fn postgres(&self) -> &PostgresValues {
        &self.raw.postgres
    }

    /// Kafka settings.
    pub fn kafka(&self) -> &KafkaValues {
        &self.raw.kafka
    }

    /// Api autoscaling.
    pub fn api(&self) -> &ApiValues {
        &self.raw.api
    }

    /// Network neighbours.
    pub fn network(&self) -> &NetworkValues {
        &self.raw.network
    }

    /// The origin of `region` as geo DNS's `--instance` takes it
    /// (`IP:PORT[@ANSWER_IP]`, checked by [`Values::check`]).
    pub fn origin(&self, region: &str) -> Option<&str> {
        self.raw
            .origins
            .get_ref()
            .get(region)
            .map(|o| o.get_ref().as_str())
    }

    /// The Worker environment `name` with its KV namespace id; an error
    /// naming the line when either is missing.
    pub fn edge_environment(&self, name: &str) -> Result<(&EdgeEnvironment, &str), TopologyError> {
        let Some(env) = self.raw.wrangler.get(name) else {
            return Err(self.error(None, format!("no [wrangler.{name}] table")));
        };
        match &env.get_ref().kv_namespace_id {
            Some(id) if !id.get_ref().trim().is_empty() => Ok((env.get_ref(), id.get_ref())),
            Some(id) => Err(self.error(Some(id.span()), format!("wrangler.{name}.kv_namespace_id is empty"))),
            None => Err(self.error(
                Some(env.span()),
                format!("[wrangler.{name}] has no kv_namespace_id (`wrangler kv namespace create PAGES --env {name}` prints it)"),
            )),
        }
    }

    fn error(&self, span: Option<Range<usize>>, message: String) -> TopologyError {
        TopologyError {
            path: self.path.clone(),
            line: span.map_or(1, |s| line_of(&self.text, s.start)),
            message,
        }
    }
}

/// What is wrong with an `[origins]` value, if anything: geo DNS takes
/// `IP:PORT` to health-check, optionally `@IP` to answer instead.
fn origin_problem(origin: &str) -> Option<String> {
    let (check, answer) = match origin.split_once('@') {
        Some((check, answer)) => (check, Some(answer)),
        None => (origin, None),
    };
    if check.parse::<std::net::SocketAddr>().is_err() {
        return Some(format!(
            "{check:?} is not IP:PORT (the address geo DNS health-checks)"
        ));
    }
    match answer {
        Some(ip) if ip.parse::<std::net::IpAddr>().is_err() => Some(format!(
            "{ip:?} after '@' is not an IP address (the address answered)"
        )),
        _ => None,
    }
}

/// Why `name` cannot be a namespace, if it cannot: beyond the DNS label
/// the topology already checks, Kubernetes reserves `default` and `kube-*`.
fn namespace_problem(name: &str) -> Option<&'static str> {
    if name == "default" || name.starts_with("kube-") {
        Some("`default` and `kube-*` are Kubernetes' own")
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        Some("it must start with a letter")
    } else {
        None
    }
}
