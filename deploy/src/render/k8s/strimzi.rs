//! A region's broker as a Strimzi `Kafka` in KRaft mode (no ZooKeeper)
//! with one `KafkaNodePool` whose nodes are both controllers and brokers,
//! and the region's three topics as `KafkaTopic`s (`kafka.strimzi.io/v1beta2`).
//!
//! Partitions come from the topology (messages are keyed by city, so they
//! bound how many writers and publishers share the work); retention is the
//! one `cityboard up` creates topics with (`region_core::bus::retention`):
//! commands outlive the 24 h idempotency window that the dedup history must
//! cover, so the janitor's pruning by earliest offset stays safe.

use serde_json::{Value, json};

use super::metadata;
use crate::render::values::Values;
use crate::topology::Topology;

/// Name of the `Kafka` resource; its bootstrap service is
/// `<this>-kafka-bootstrap`.
pub const KAFKA_CLUSTER: &str = "broker";

/// `host:port` the roles reach the brokers at (plain listener, inside
/// the namespace only: the NetworkPolicies keep it there).
pub fn bootstrap(ns: &str) -> String {
    format!("{KAFKA_CLUSTER}-kafka-bootstrap.{ns}.svc:9092")
}

/// The `KafkaNodePool`, the `Kafka` and the region's `KafkaTopic`s.
pub fn objects(topology: &Topology, ns: &str, values: &Values) -> Vec<Value> {
    let kafka = values.kafka();
    let nodes = *kafka.nodes.get_ref();
    // Three copies when there are three nodes; a smaller pool holds fewer.
    let copies = nodes.min(3);
    let min_isr = if copies >= 3 { 2 } else { 1 };
    let with_cluster = |name: &str| {
        let mut meta = metadata(name, ns, "kafka");
        meta["labels"]["strimzi.io/cluster"] = KAFKA_CLUSTER.into();
        meta
    };
    let mut objects = vec![
        json!({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaNodePool",
            "metadata": with_cluster("dual-role"),
            "spec": {
                "replicas": nodes,
                "roles": ["controller", "broker"],
                "storage": {"type": "jbod", "volumes": [{
                    "id": 0,
                    "type": "persistent-claim",
                    "size": kafka.storage,
                    "deleteClaim": false,
                    "kraftMetadata": "shared",
                }]},
            },
        }),
        json!({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "Kafka",
            "metadata": {
                "name": KAFKA_CLUSTER,
                "namespace": ns,
                "labels": super::labels("kafka"),
                "annotations": {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"},
            },
            "spec": {
                "kafka": {
                    "version": kafka.version,
                    "metadataVersion": kafka.metadata_version,
                    "listeners": [{"name": "plain", "port": 9092, "type": "internal", "tls": false}],
                    "config": {
                        "offsets.topic.replication.factor": copies,
                        "transaction.state.log.replication.factor": copies,
                        "transaction.state.log.min.isr": min_isr,
                        "default.replication.factor": copies,
                        "min.insync.replicas": min_isr,
                        // Topics are declared below, never made by a typo.
                        "auto.create.topics.enable": false,
                    },
                },
                "entityOperator": {"topicOperator": {}},
            },
        }),
    ];
    for topic in crate::broker::region_topics(ns) {
        let kind = topic.rsplit('.').next().unwrap_or(&topic).to_string();
        let config: serde_json::Map<String, Value> =
            region_core::bus::retention::topic_config(&topic)
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
        objects.push(json!({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": with_cluster(&kind),
            "spec": {
                "topicName": topic,
                "partitions": topology.partitions,
                "replicas": copies,
                "config": config,
            },
        }));
    }
    objects
}
