//! `region-core setup`: migrate a region's catalog and shards, register its
//! topology, optionally add demo posts. Safe to run at every `cityboard up`:
//! each step is idempotent.

pub mod demo;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::stack::{RegionEntry, StackFile};

/// What `setup` did, for the supervisor's log.
#[derive(Debug, Default)]
pub struct SetupReport {
    /// Lines to print.
    pub lines: Vec<String>,
}

async fn connect(url: &str, what: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("connecting to {what} ({})", crate::redact::url(url)))
}

/// Migrates one shard primary, unless a reshard job is open: a migration
/// mid-move would break the copy or the cutover.
async fn migrate_shard(
    catalog: &PgPool,
    region: &str,
    name: &str,
    url: &str,
) -> anyhow::Result<()> {
    let pool = connect(url, &format!("{region}/{name}")).await?;
    let mut conn = catalog
        .acquire()
        .await
        .with_context(|| format!("connecting to the catalog of {region}"))?;
    let result = crate::migrate::shard_outside_moves(&mut conn, name, &pool)
        .await
        .with_context(|| format!("migrating {region}/{name}"));
    drop(conn);
    let result = match result {
        Ok(()) => crate::privileges::grant(&pool)
            .await
            .map(drop)
            .with_context(|| format!("granting the roles of {region}/{name}")),
        Err(e) => Err(e),
    };
    pool.close().await;
    result
}

/// `region-core setup`: sets up `region` of the stack description at
/// `state` and prints what it did.
pub async fn run(state: &Path, region: &str, demo: bool) -> anyhow::Result<()> {
    let stack = StackFile::read(state)?;
    let report = set_up(&stack, region, demo)
        .await
        .with_context(|| format!("setting up region {region}"))?;
    for line in report.lines {
        println!("{line}");
    }
    Ok(())
}

/// Migrates the catalog and every shard primary of `region` (a shard with
/// migrations to apply is refused while a reshard job is open): those of
/// the stack description and those an operator added to the catalog since
/// (a spare to move cities onto), seeds the catalog, and with `demo` adds
/// demo posts to cities that have none.
pub async fn set_up(stack: &StackFile, region: &str, demo: bool) -> anyhow::Result<SetupReport> {
    let (number, entry): (u16, &RegionEntry) = stack.region(region)?;
    let mut report = SetupReport::default();
    let catalog = connect(&entry.catalog_url, &format!("the catalog of {region}")).await?;
    crate::migrate::catalog(&catalog)
        .await
        .with_context(|| format!("migrating the catalog of {region}"))?;
    crate::privileges::grant(&catalog)
        .await
        .with_context(|| format!("granting the roles of the catalog of {region}"))?;
    report.lines.push(format!(
        "{region}: catalog migrated ({})",
        crate::redact::url(&entry.catalog_url)
    ));
    for shard in &entry.shards {
        migrate_shard(&catalog, region, &shard.name, &shard.primary_url).await?;
        report
            .lines
            .push(format!("{region}/{}: shard migrated", shard.name));
    }
    // Shards only the catalog lists: one that cannot be reached is reported
    // and left (the roles leave it out until its schema is theirs), so that
    // a spare being set up never stops the region's `up`.
    let added: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, primary_url FROM shards WHERE region = $1 AND NOT name = ANY($2)
         ORDER BY name",
    )
    .bind(region)
    .bind(
        entry
            .shards
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>(),
    )
    .fetch_all(&catalog)
    .await
    .with_context(|| format!("listing the shards of {region} in its catalog"))?;
    for (name, url) in added {
        let line = match migrate_shard(&catalog, region, &name, &url).await {
            Ok(()) => format!("{region}/{name}: shard migrated (listed only in the catalog)"),
            Err(e) => format!("{region}/{name}: listed only in the catalog, not migrated: {e:#}"),
        };
        report.lines.push(line);
    }
    let seeded = crate::catalog::seed(&catalog, &entry.topology(number))
        .await
        .with_context(|| format!("registering the topology of {region} in its catalog"))?;
    report.lines.push(format!(
        "{region}: {} shard(s) registered (region number {number}); cities added: {}{}",
        seeded.shards,
        if seeded.cities_added.is_empty() {
            "none (already placed)".to_string()
        } else {
            seeded.cities_added.join(", ")
        },
        if seeded.cities_kept_elsewhere.is_empty() {
            String::new()
        } else {
            format!(
                "; placed elsewhere by shard-tool, left there: {}",
                seeded.cities_kept_elsewhere.join(", ")
            )
        }
    ));
    if demo {
        let lines = demo::seed(&catalog, region, number, entry).await?;
        report.lines.extend(lines);
    }
    catalog.close().await;
    Ok(report)
}
