//! A region's Postgres as CloudNativePG `Cluster`s (`postgresql.cnpg.io/v1`):
//! one per shard (instances = 1 + the shard's replicas) and the catalog,
//! each with a `ScheduledBackup` to object storage.
//!
//! The settings are the local stack's ([`crate::postgres::SETTINGS`]), so
//! that moves rehearsed on a laptop behave the same in production: logical
//! WAL for shard-tool's publications, slots and senders sized for moves
//! beside the replicas, `max_slot_wal_keep_size` so that a stuck move
//! cannot fill the disk, and `hot_standby_feedback` so that vacuum rarely
//! cancels replica reads. What CloudNativePG owns itself (listen
//! addresses, sockets, `hot_standby`, logging) is left to it.

use serde_json::{Value, json};

use super::{CATALOG_CLUSTER, metadata, pg_secret};
use crate::render::values::Values;
use crate::topology::Region;

/// Settings of the local stack that CloudNativePG sets itself or that
/// only make sense on a laptop.
const LOCAL_ONLY: &[&str] = &[
    "listen_addresses",
    "unix_socket_directories",
    "hot_standby",
    "shared_buffers",
    "log_min_messages",
    "log_line_prefix",
];

/// The database every cluster holds.
const DATABASE: &str = crate::postgres::DATABASE;

/// The `Cluster`s and `ScheduledBackup`s of `region`: catalog first, then
/// its shards in order.
pub fn objects(region: &Region, values: &Values) -> Vec<Value> {
    let mut objects = Vec::new();
    let catalog_storage = &values.postgres().catalog_storage;
    // The catalog gets one replica: it is small and read at every start.
    objects.push(cluster(
        &region.name,
        CATALOG_CLUSTER,
        2,
        catalog_storage,
        values,
    ));
    objects.push(scheduled_backup(&region.name, CATALOG_CLUSTER, values));
    for shard in &region.shards {
        objects.push(cluster(
            &region.name,
            &shard.name,
            1 + shard.replicas,
            &values.postgres().shard_storage,
            values,
        ));
        objects.push(scheduled_backup(&region.name, &shard.name, values));
    }
    objects
}

/// `postgresql.parameters`: the local stack's settings but those
/// CloudNativePG owns, plus `hot_standby_feedback` (which `cityboard up`
/// writes into postgresql.conf rather than the command line).
pub fn parameters() -> serde_json::Map<String, Value> {
    let mut map: serde_json::Map<String, Value> = crate::postgres::SETTINGS
        .iter()
        .filter(|(name, _)| !LOCAL_ONLY.contains(name))
        .map(|(name, value)| (name.to_string(), Value::String(value.to_string())))
        .collect();
    map.insert("hot_standby_feedback".into(), "on".into());
    map
}

/// The managed roles: one login per purpose, as in the local stack
/// ([`crate::postgres::LOGINS`]), each with its password from its own Secret.
fn managed_roles() -> Vec<Value> {
    crate::postgres::LOGINS
        .iter()
        .map(|(login, attributes)| {
            json!({
                "name": login,
                "ensure": "present",
                "login": true,
                "superuser": false,
                "createdb": false,
                "createrole": false,
                "replication": attributes.contains("REPLICATION"),
                "passwordSecret": {"name": pg_secret(login)},
            })
        })
        .collect()
}

fn cluster(ns: &str, name: &str, instances: usize, size: &str, values: &Values) -> Value {
    let pg = values.postgres();
    let mut storage = json!({"size": size});
    if let Some(class) = &pg.storage_class {
        storage["storageClass"] = class.as_str().into();
    }
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": metadata(name, ns, "postgres"),
        "spec": {
            "instances": instances,
            "imageName": values.images().postgres,
            "primaryUpdateStrategy": "unsupervised",
            // `region-core setup` migrates as the superuser, as locally;
            // the database's owner login (CloudNativePG's `<cluster>-app`
            // Secret) is unused, the serving roles are granted rows.
            "enableSuperuserAccess": true,
            "superuserSecret": {"name": pg_secret(crate::postgres::ADMIN)},
            "bootstrap": {"initdb": {
                "database": DATABASE,
                "owner": DATABASE,
                "encoding": "UTF8",
                "localeCollate": "C.UTF-8",
                "localeCType": "C.UTF-8",
            }},
            "postgresql": {"parameters": parameters()},
            "managed": {"roles": managed_roles()},
            "storage": storage,
            // One instance per node: a node lost takes one copy at most.
            "affinity": {"enablePodAntiAffinity": true, "podAntiAffinityType": "required"},
            "monitoring": {"enablePodMonitor": false},
            "backup": {
                "retentionPolicy": pg.backup_retention,
                "barmanObjectStore": {
                    "destinationPath": format!("{}/{ns}/{name}", pg.backup_destination.trim_end_matches('/')),
                    "s3Credentials": {
                        "accessKeyId": {"name": pg.backup_credentials_secret, "key": "ACCESS_KEY_ID"},
                        "secretAccessKey": {"name": pg.backup_credentials_secret, "key": "ACCESS_SECRET_KEY"},
                    },
                    "wal": {"compression": "gzip"},
                    "data": {"compression": "gzip"},
                },
            },
        },
    })
}

fn scheduled_backup(ns: &str, cluster: &str, values: &Values) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": metadata(&format!("{cluster}-daily"), ns, "postgres"),
        "spec": {
            "schedule": values.postgres().backup_schedule,
            "backupOwnerReference": "self",
            "method": "barmanObjectStore",
            "immediate": true,
            "cluster": {"name": cluster},
        },
    })
}

/// The URL of a cluster's read-write service (its primary), as the roles'
/// stack description names it. No user nor password: those come from
/// `PGUSER`/`PGPASSWORD`, as locally from `PGUSER`/`PGPASSFILE`.
pub fn primary_url(ns: &str, cluster: &str) -> String {
    format!("postgres://{cluster}-rw.{ns}.svc:5432/{DATABASE}")
}

/// The URL of a cluster's read-only service (its replicas, balanced by
/// the service).
pub fn replica_url(ns: &str, cluster: &str) -> String {
    format!("postgres://{cluster}-ro.{ns}.svc:5432/{DATABASE}")
}
