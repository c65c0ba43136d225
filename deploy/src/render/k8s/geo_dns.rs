//! The origin zone's authoritative DNS in a region: `geo-router dns`
//! behind one UDP and one TCP LoadBalancer Service on port 53.

use serde_json::{Value, json};

use super::{labels, metadata, pdb, restricted_container, selector};
use crate::render::values::Values;
use crate::topology::Topology;

/// The geo DNS's port inside its pod (unprivileged; the Services map 53).
pub const DNS_PORT: u16 = 5353;

/// The origin zone's authoritative DNS (`geo-router dns`), answering
/// `origin.{region}.{apex}` with each region's public origin address while
/// it passes health checks (`[origins]` of the values: `IP:PORT` checked
/// with `GET /healthz`, optionally `@ANSWER_IP`, geo-router's
/// `--instance`); one UDP and one TCP Service, because DNS needs
/// both (answers over 512 bytes, zone checks) and many load balancers
/// cannot mix protocols on one Service.
pub fn objects(topology: &Topology, ns: &str, values: &Values) -> Vec<Value> {
    let mut args = vec![
        "dns".to_string(),
        "--zone".into(),
        topology.apex.clone(),
        "--listen".into(),
        format!("0.0.0.0:{DNS_PORT}"),
    ];
    for region in &topology.regions {
        // Values::check has made sure every region has one.
        let address = values.origin(&region.name).unwrap_or_default();
        args.push("--instance".into());
        args.push(format!("{}={address}", region.name));
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("geo-dns", ns, "geo-dns"),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector("geo-dns")},
            "template": {
                "metadata": {"labels": labels("geo-dns")},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001},
                    "containers": [{
                        "name": "geo-dns",
                        "image": values.images().geo_router,
                        "args": args,
                        "ports": [
                            {"name": "dns-udp", "containerPort": DNS_PORT, "protocol": "UDP"},
                            {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"},
                        ],
                        "readinessProbe": {"tcpSocket": {"port": DNS_PORT}, "periodSeconds": 5},
                        "livenessProbe": {"tcpSocket": {"port": DNS_PORT}, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                        "securityContext": restricted_container(),
                    }],
                },
            },
        },
    });
    let dns_service = |protocol: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(&format!("geo-dns-{}", protocol.to_ascii_lowercase()), ns, "geo-dns"),
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": "Local",
                "selector": selector("geo-dns"),
                "ports": [{"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": protocol}],
            },
        })
    };
    vec![
        deployment,
        dns_service("UDP"),
        dns_service("TCP"),
        pdb(ns, "geo-dns"),
    ]
}
