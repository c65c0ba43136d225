//! The regions a command looks at and their catalogs: from the stack
//! description (as the roles read it, `region_core::stack`) or from a
//! catalog URL given explicitly.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use region_core::redact;
use region_core::stack::StackFile;

use crate::cli::Target;
use crate::error::{Error, Result};

/// One region to inspect: its name and its catalog's address. Its `Debug`
/// masks the URL's password (`region_core::redact::url`).
#[derive(Clone)]
pub struct Region {
    /// e.g. `us-east`.
    pub name: String,
    /// The catalog database, which lists the region's shards.
    pub catalog_url: String,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("catalog_url", &redact::url(&self.catalog_url))
            .finish()
    }
}

/// The regions `target` selects, in the stack description's order.
pub fn select(target: &Target) -> Result<Vec<Region>> {
    if let (Some(url), Some(region)) = (&target.catalog_url, &target.region) {
        return Ok(vec![Region {
            name: region.clone(),
            catalog_url: url.clone(),
        }]);
    }
    let path = target.state_path();
    let stack = StackFile::read(&path).map_err(Error::StateFile)?;
    let all: Vec<Region> = stack
        .regions
        .iter()
        .map(|r| Region {
            name: r.name.clone(),
            catalog_url: r.catalog_url.clone(),
        })
        .collect();
    match &target.region {
        None => Ok(all),
        Some(name) => match all.iter().find(|r| &r.name == name) {
            Some(r) => Ok(vec![r.clone()]),
            None => Err(Error::UnknownRegion {
                region: name.clone(),
                known: all
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

/// Connects to `url` read-only: every session of a reading command has
/// `default_transaction_read_only`, so a bug in it cannot write to a
/// stack other tests or people are using. `application_name` is
/// `shard-tool`, so `pg_stat_activity` tells its backends apart. A
/// `lock_timeout` of 2 s: a count queued behind a migration's exclusive
/// lock would otherwise hold every later reader of the table in the lock
/// queue behind it; status reports the shard as unreadable instead.
pub async fn connect_read_only(url: &str, what: &str) -> Result<PgPool> {
    let options = parse(url, what)?.application_name("shard-tool").options([
        ("default_transaction_read_only", "on"),
        ("lock_timeout", "2s"),
    ]);
    pool(options, what, 2).await
}

/// `url` as connection options, or [`Error::BadUrl`] naming `what`.
pub fn parse(url: &str, what: &str) -> Result<PgConnectOptions> {
    url.parse().map_err(|e: sqlx::Error| Error::BadUrl {
        what: what.to_string(),
        url: redact::url(url),
        reason: e.to_string(),
    })
}

/// A pool of `max` connections with `options`, failing fast when the
/// database cannot be reached.
pub async fn pool(options: PgConnectOptions, what: &str, max: u32) -> Result<PgPool> {
    // One plain connection first: a pool retries a refused connection
    // until its timeout and then says only "timed out", while this says
    // "connection refused" or "password authentication failed".
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(probe)) => {
            let _ = probe.close().await;
        }
        Ok(Err(e)) => return Err(Error::db(what, e)),
        Err(_) => {
            return Err(Error::db(
                what,
                anyhow::anyhow!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ));
        }
    }
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| Error::db(what, e))
}

/// How long a database may take to accept a connection before it counts
/// as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The region's catalog, read-only, refused (exit 1) when its schema is not
/// the one this build knows, as every role refuses it.
pub async fn catalog(region: &Region) -> Result<PgPool> {
    let what = format!("the catalog of {}", region.name);
    let pool = connect_read_only(&region.catalog_url, &what).await?;
    region_core::migrate::check_catalog(&pool)
        .await
        .map_err(|e| Error::db(&what, e))?;
    Ok(pool)
}

/// A shard as the catalog's `shards` table lists it. Its `Debug` masks
/// the passwords of its URLs.
#[derive(Clone, sqlx::FromRow)]
pub struct ShardRow {
    /// `shard-N`.
    pub name: String,
    /// Its primary.
    pub primary_url: String,
    /// Its streaming replicas.
    pub replica_urls: Vec<String>,
}

impl std::fmt::Debug for ShardRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRow")
            .field("name", &self.name)
            .field("primary_url", &redact::url(&self.primary_url))
            .field("replica_urls", &redact::urls(&self.replica_urls))
            .finish()
    }
}

/// The region's shards, from its catalog (the truth about topology: a
/// shard added later is there, whatever the state file says).
pub async fn shards(catalog: &PgPool, region: &str) -> Result<Vec<ShardRow>> {
    sqlx::query_as(
        "SELECT name, primary_url, replica_urls FROM shards WHERE region = $1
         ORDER BY length(name), name",
    )
    .bind(region)
    .fetch_all(catalog)
    .await
    .map_err(|e| Error::db(format!("the catalog of {region}"), e))
}
