//! What the stack is made of: one [`Component`] per process, derived from
//! the topology, with how to prepare, start, probe and stop it.
//!
//! Adding a process to the stack is a new [`Launch`] variant (or a
//! [`Launch::Program`]) and a line in [`plan`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::arrangement::{Arrangement, member_name, slot_name};
use crate::home::Home;
use crate::redis_server::RedisRole;
use crate::secrets::read_secret;
use crate::state::{RegionState, ShardState};
use crate::topology::Topology;
use crate::{broker, edge, edge_kv, geo_dns, postgres, redis_server, region_api};

/// One supervised process.
#[derive(Debug, Clone)]
pub struct Component {
    /// Unique name, e.g. `us-east/shard-1/replica-1`.
    pub name: String,
    /// The port it listens on (checked free before a fresh start).
    pub port: u16,
    /// How to run it.
    pub launch: Launch,
}

/// How a component is prepared, run and probed.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A Postgres primary (a region catalog or a shard primary).
    PgPrimary {
        /// Cluster directory.
        data: PathBuf,
        /// Where the stack's secrets are (its logins' passwords).
        secrets_dir: PathBuf,
    },
    /// A streaming replica of the primary on `primary_port`.
    PgReplica {
        /// Cluster directory.
        data: PathBuf,
        /// The primary's port.
        primary_port: u16,
        /// Physical replication slot on the primary.
        slot: String,
        /// Where the stack's secrets are (the replication login's password).
        secrets_dir: PathBuf,
    },
    /// One of a region's two Redis instances.
    Redis {
        /// Its role (cache or store).
        role: RedisRole,
        /// Directory of its append-only file.
        data: PathBuf,
        /// Where the stack's secrets are (its password).
        secrets_dir: PathBuf,
    },
    /// The Kafka-protocol broker.
    Broker {
        /// Directory of its SQLite database.
        data: PathBuf,
    },
    /// The origin zone's DNS (`geo-router dns`).
    GeoDns {
        /// The home's topology file (zone, regions, api ports).
        topology_file: PathBuf,
        /// Apex of the zone, for the readiness query.
        apex: String,
    },
    /// The KV namespace behind the edge (`cityboard edge-kv`).
    EdgeKv {
        /// Directory of the namespace, one file per key.
        data: PathBuf,
        /// Where the stack's secrets are (its key).
        secrets_dir: PathBuf,
    },
    /// The edge Worker under workerd.
    Edge {
        /// The home's topology file (bindings are generated from it).
        topology_file: PathBuf,
        /// Where the generated workerd config goes (`run/edge.capnp`).
        config: PathBuf,
        /// Where the stack's secrets are.
        secrets_dir: PathBuf,
    },
    /// One of a region's pipeline roles (`region-core writer|relay`); the
    /// component's port is its `/metrics` and `/healthz` listener.
    RegionRole {
        /// Region name.
        region: String,
        /// The role.
        role: region_api::PipelineRole,
        /// The stack description it reads its addresses from.
        state_file: PathBuf,
        /// Where the stack's secrets are (the publisher signs the edge's
        /// bulk KV route with one).
        secrets_dir: PathBuf,
    },
    /// A region's api (`region-core serve`); `setup` runs before each start.
    RegionApi {
        /// Region name.
        region: String,
        /// The stack description it reads its addresses from.
        state_file: PathBuf,
        /// Where the stack's secrets are.
        secrets_dir: PathBuf,
        /// The topology's rate limits.
        limits: region_core::limits::Limits,
        /// Port of its operator listener.
        operator_port: u16,
    },
}

impl Component {
    /// Short kind name for `status`.
    pub fn kind(&self) -> &'static str {
        match self.launch {
            Launch::PgPrimary { .. } => "postgres",
            Launch::PgReplica { .. } => "postgres-replica",
            Launch::Redis { .. } => "redis",
            Launch::Broker { .. } => "broker",
            Launch::RegionApi { .. } => "region-api",
            Launch::RegionRole { role, .. } => role.kind(),
            Launch::GeoDns { .. } => "geo-dns",
            Launch::EdgeKv { .. } => "edge-kv",
            Launch::Edge { .. } => "edge",
        }
    }

    /// One-time preparation before the first start (initdb, basebackup);
    /// does nothing when it was done before.
    pub async fn prepare(&self, home: &Home) -> Result<()> {
        let log = home.log_file(&self.name);
        match &self.launch {
            Launch::PgPrimary { data, secrets_dir } => {
                postgres::init_primary(data, &log, secrets_dir)
            }
            Launch::PgReplica {
                data,
                primary_port,
                slot,
                secrets_dir,
            } => postgres::init_replica(data, *primary_port, slot, &log, secrets_dir).await,
            Launch::RegionApi {
                region,
                state_file,
                secrets_dir,
                ..
            } => region_api::setup(state_file, secrets_dir, region, &log),
            Launch::Edge {
                topology_file,
                config,
                secrets_dir,
                ..
            } => edge::prepare(&Topology::load(topology_file)?, config, secrets_dir),
            Launch::Redis { .. }
            | Launch::Broker { .. }
            | Launch::GeoDns { .. }
            | Launch::EdgeKv { .. }
            | Launch::RegionRole { .. } => Ok(()),
        }
    }

    /// The command that runs it in the foreground.
    pub fn command(&self) -> Result<Command> {
        match &self.launch {
            Launch::PgPrimary { data, .. } | Launch::PgReplica { data, .. } => {
                postgres::command(data, self.port)
            }
            Launch::Redis {
                role,
                data,
                secrets_dir,
            } => redis_server::command(
                *role,
                data,
                self.port,
                &read_secret(secrets_dir, redis_server::PASSWORD_FILE)?,
            ),
            Launch::Broker { data } => broker::command(data, self.port),
            Launch::RegionApi {
                region,
                state_file,
                secrets_dir,
                limits,
                operator_port,
            } => region_api::command(
                state_file,
                secrets_dir,
                region,
                (self.port, *operator_port),
                limits,
            ),
            Launch::RegionRole {
                region,
                role,
                state_file,
                secrets_dir,
            } => region_api::role_command(*role, state_file, secrets_dir, region, self.port),
            Launch::GeoDns { topology_file, .. } => geo_dns::command(topology_file, self.port),
            Launch::EdgeKv { data, secrets_dir } => {
                edge_kv::command(data, self.port, Some(&secrets_dir.join(edge_kv::KEY_FILE)))
            }
            Launch::Edge {
                config,
                secrets_dir,
                ..
            } => edge::command(config, secrets_dir),
        }
    }

    /// Succeeds once the component serves requests.
    pub async fn probe(&self) -> Result<()> {
        match &self.launch {
            Launch::PgPrimary { secrets_dir, .. } => {
                postgres::probe(self.port, false, secrets_dir).await
            }
            Launch::PgReplica { secrets_dir, .. } => {
                postgres::probe(self.port, true, secrets_dir).await
            }
            Launch::Redis { secrets_dir, .. } => {
                redis_server::probe(
                    self.port,
                    &read_secret(secrets_dir, redis_server::PASSWORD_FILE)?,
                )
                .await
            }
            Launch::Broker { .. } => broker::probe(self.port).await,
            Launch::RegionApi { .. } | Launch::RegionRole { .. } => {
                region_api::probe(self.port).await
            }
            Launch::GeoDns { apex, .. } => geo_dns::probe(self.port, apex).await,
            Launch::EdgeKv { secrets_dir, .. } => {
                edge_kv::probe(&edge_kv::Client::of_stack(self.port, secrets_dir)?).await
            }
            Launch::Edge { .. } => edge::probe(self.port).await,
        }
    }

    /// Work to do each time it becomes ready (idempotent).
    pub async fn after_ready(&self) -> Result<()> {
        match &self.launch {
            Launch::PgPrimary { secrets_dir, .. } => {
                postgres::ensure_roles(self.port, secrets_dir).await?;
                postgres::ensure_database(self.port, secrets_dir).await
            }
            _ => Ok(()),
        }
    }

    /// Work to do once when the supervisor brings the stack up (not after
    /// a restart): the KV service gets every city's route, so the Worker
    /// learns routes from KV as it does in production, where a move
    /// rewrites one key.
    pub async fn after_start(&self, topology: &Topology) -> Result<()> {
        match &self.launch {
            Launch::EdgeKv { secrets_dir, .. } => {
                let kv = edge_kv::Client::of_stack(self.port, secrets_dir)?;
                edge::write_routes(topology, &kv).await
            }
            _ => Ok(()),
        }
    }

    /// The signal that asks it to stop quickly but cleanly. Postgres'
    /// SIGTERM waits for clients to leave; SIGINT is its fast shutdown.
    pub fn stop_signal(&self) -> Signal {
        match self.launch {
            Launch::PgPrimary { .. } | Launch::PgReplica { .. } => Signal::SIGINT,
            _ => Signal::SIGTERM,
        }
    }

    /// True if it also needs its UDP port free.
    pub fn uses_udp(&self) -> bool {
        matches!(self.launch, Launch::GeoDns { .. })
    }
}

/// Every component of the topology, in start order (a replica after its
/// primary; `down` stops them in reverse), each shard's members in the
/// roles `arrangement` gives them.
pub fn plan(topology: &Topology, home: &Home, arrangement: &Arrangement) -> Vec<Component> {
    let mut out = Vec::new();
    let broker = "broker".to_string();
    out.push(Component {
        launch: Launch::Broker {
            data: home.component_data(&broker),
        },
        name: broker,
        port: topology.broker_port(),
    });
    for (r, region) in topology.regions.iter().enumerate() {
        let ports = topology.region_ports(r);
        let catalog = format!("{}/catalog", region.name);
        out.push(Component {
            launch: Launch::PgPrimary {
                data: home.component_data(&catalog),
                secrets_dir: home.secrets_dir(),
            },
            name: catalog,
            port: ports.catalog,
        });
        for (role, port, suffix) in [
            (RedisRole::Cache, ports.redis_cache, "redis-cache"),
            (RedisRole::Store, ports.redis_store, "redis-store"),
        ] {
            let name = format!("{}/{suffix}", region.name);
            out.push(Component {
                launch: Launch::Redis {
                    role,
                    data: home.component_data(&name),
                    secrets_dir: home.secrets_dir(),
                },
                name,
                port,
            });
        }
        for (s, shard) in region.shards.iter().enumerate() {
            // The shard's current primary first: a replica made fresh
            // (pg_basebackup) needs it up.
            let primary = arrangement.primary(&region.name, &shard.name);
            let primary_port = topology.shard_port(r, s, primary);
            let members =
                std::iter::once(primary).chain((0..=shard.replicas).filter(|&m| m != primary));
            for member in members {
                let name = member_name(&region.name, &shard.name, member);
                let launch = if member == primary {
                    Launch::PgPrimary {
                        data: home.component_data(&name),
                        secrets_dir: home.secrets_dir(),
                    }
                } else {
                    Launch::PgReplica {
                        data: home.component_data(&name),
                        primary_port,
                        slot: slot_name(member),
                        secrets_dir: home.secrets_dir(),
                    }
                };
                out.push(Component {
                    launch,
                    name,
                    port: topology.shard_port(r, s, member),
                });
            }
        }
    }
    // After every database: setup migrates them all, and an api serves only
    // once its region's shards are there.
    for (r, region) in topology.regions.iter().enumerate() {
        out.push(Component {
            name: format!("{}/api", region.name),
            port: topology.region_ports(r).api,
            launch: Launch::RegionApi {
                region: region.name.clone(),
                state_file: home.state_file(),
                secrets_dir: home.secrets_dir(),
                limits: topology.limits.clone(),
                operator_port: topology.region_ports(r).api_operator,
            },
        });
    }
    // The write path's back half, after the apis (whose setup migrated
    // the databases the roles check): the writer applies commands, the
    // relay sends the outbox to the events topic, the janitor expires
    // posts (through the commands topic) and sends renewal reminders.
    for (r, region) in topology.regions.iter().enumerate() {
        let ports = topology.region_ports(r);
        for (role, port) in [
            (region_api::PipelineRole::Writer, ports.writer),
            (region_api::PipelineRole::Relay, ports.relay),
            (region_api::PipelineRole::Janitor, ports.janitor),
        ] {
            out.push(Component {
                name: format!("{}/{}", region.name, role.kind()),
                port,
                launch: Launch::RegionRole {
                    region: region.name.clone(),
                    role,
                    state_file: home.state_file(),
                    secrets_dir: home.secrets_dir(),
                },
            });
        }
    }
    // After the regions' apis: its health checks find them up from the start.
    out.push(Component {
        name: "geo-dns".into(),
        port: topology.dns_port(),
        launch: Launch::GeoDns {
            topology_file: home.topology_file(),
            apex: topology.apex.clone(),
        },
    });
    // The edge's KV before the edge, after the apis (the routes it holds
    // name them).
    let kv = "edge-kv".to_string();
    out.push(Component {
        launch: Launch::EdgeKv {
            data: home.component_data(&kv),
            secrets_dir: home.secrets_dir(),
        },
        name: kv,
        port: topology.edge_kv_port(),
    });
    out.push(Component {
        name: "edge".into(),
        port: topology.edge_port(),
        launch: Launch::Edge {
            topology_file: home.topology_file(),
            config: home.run_dir().join("edge.capnp"),
            secrets_dir: home.secrets_dir(),
        },
    });
    // The publisher writes KV through the edge's bulk route, so it starts
    // after the edge (and retries, never skips, while the edge is away).
    for (r, region) in topology.regions.iter().enumerate() {
        let role = region_api::PipelineRole::Publisher;
        out.push(Component {
            name: format!("{}/{}", region.name, role.kind()),
            port: topology.region_ports(r).publisher,
            launch: Launch::RegionRole {
                region: region.name.clone(),
                role,
                state_file: home.state_file(),
                secrets_dir: home.secrets_dir(),
            },
        });
    }
    out
}

/// The addresses of each region, as the state file publishes them (and
/// `region-core setup` writes them into the catalogs' `shards` rows): each
/// shard's primary where `arrangement` says, its replicas the other
/// members that are not held stopped.
pub fn region_states(
    topology: &Topology,
    secrets_dir: &Path,
    arrangement: &Arrangement,
) -> Result<Vec<RegionState>> {
    let redis_password = read_secret(secrets_dir, redis_server::PASSWORD_FILE)?;
    Ok(topology
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| {
            let ports = topology.region_ports(r);
            RegionState {
                name: region.name.clone(),
                catalog_url: postgres::url(ports.catalog, postgres::DATABASE),
                redis_cache_url: redis_server::url(ports.redis_cache, &redis_password),
                redis_store_url: redis_server::url(ports.redis_store, &redis_password),
                api_port: ports.api,
                operator_port: ports.api_operator,
                shards: region
                    .shards
                    .iter()
                    .enumerate()
                    .map(|(s, shard)| {
                        let primary = arrangement.primary(&region.name, &shard.name);
                        let url =
                            |m| postgres::url(topology.shard_port(r, s, m), postgres::DATABASE);
                        ShardState {
                            name: shard.name.clone(),
                            primary_url: url(primary),
                            replica_urls: (0..=shard.replicas)
                                .filter(|&m| {
                                    m != primary
                                        && !arrangement.is_held(&member_name(
                                            &region.name,
                                            &shard.name,
                                            m,
                                        ))
                                })
                                .map(url)
                                .collect(),
                            cities: shard.cities.iter().map(|c| c.slug.clone()).collect(),
                        }
                    })
                    .collect(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{SmallRegion, small_topology_text};

    /// After a failover to replica-1 with the old primary held: replica-1
    /// is planned first as the primary, the others follow its port through
    /// their own slots, and the state file names it and leaves the held
    /// member out of the replicas.
    #[test]
    fn the_plan_and_the_addresses_follow_the_arrangement() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path()).expect("home");
        let region = SmallRegion {
            name: "solo",
            replicas: 2,
            cities: &[("boston", "Boston", "US", 42.36, -71.06)],
        };
        let text = small_topology_text(17000, 1, &[region]);
        let topology = Topology::parse(Path::new("t.toml"), &text).expect("topology");
        let mut arrangement = Arrangement::default();
        arrangement.set_primary("solo", "shard-1", 1);
        arrangement.hold("solo/shard-1/primary", true);

        let plan = plan(&topology, &home, &arrangement);
        let members: Vec<&Component> = plan
            .iter()
            .filter(|c| c.name.starts_with("solo/shard-1/"))
            .collect();
        let names: Vec<&str> = members.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "solo/shard-1/replica-1",
                "solo/shard-1/primary",
                "solo/shard-1/replica-2"
            ]
        );
        assert!(matches!(members[0].launch, Launch::PgPrimary { .. }));
        let new_port = topology.shard_port(0, 0, 1);
        assert_eq!(members[0].port, new_port);
        for (c, want) in [(members[1], "member_primary"), (members[2], "replica_2")] {
            match &c.launch {
                Launch::PgReplica {
                    primary_port, slot, ..
                } => assert_eq!((*primary_port, slot.as_str()), (new_port, want)),
                other => panic!("{} is planned as {other:?}", c.name),
            }
        }

        std::fs::create_dir_all(home.secrets_dir()).expect("secrets dir");
        std::fs::write(
            home.secrets_dir().join(redis_server::PASSWORD_FILE),
            "r3dis",
        )
        .expect("redis password");
        let states = region_states(&topology, &home.secrets_dir(), &arrangement).expect("states");
        let shard = &states[0].shards[0];
        assert_eq!(
            shard.primary_url,
            postgres::url(new_port, postgres::DATABASE)
        );
        assert_eq!(
            shard.replica_urls,
            [postgres::url(
                topology.shard_port(0, 0, 2),
                postgres::DATABASE
            )]
        );
    }
}
