//! `cityboard bench SCENARIO`: each scenario prints our figure beside a
//! baseline measured in the same run, and the ratio. Figures go into
//! BENCHMARKS.md by hand, with the command and the date.
//!
//! A crate of its own (binary `cityboard-bench`, which `cityboard bench`
//! runs) so that the orchestrator is the supervisor and its commands: the
//! scenarios, their fixtures and their measuring client live here, and use
//! the orchestrator's library (topology, home, components) as any client
//! of the stack does.

pub mod conn;
pub mod edge;
pub mod edge_fixtures;
pub mod floor;
pub mod geo;
pub mod idle;
pub mod nginx;
pub mod origin;
pub mod own_stack;
pub mod pg;
pub mod preload;
pub mod reshard;
pub mod role;
pub mod write;
pub mod write_load;
pub mod wrk;

use anyhow::{Context, Result};

use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// The value of one series (name and labels exactly as exposed) in a
/// Prometheus text page, as the scenarios read the roles' `/metrics`.
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Places `city` on `shard` of `region` for a scenario: its row in the
/// catalog's shard map and the shard's fence, both active at epoch 1 (left
/// as they are when a previous run placed it). Returns the connection to
/// the shard's primary.
pub(crate) async fn place_city(
    catalog_url: &str,
    primary_url: &str,
    region: &str,
    shard: &str,
    city: &str,
) -> Result<sqlx::PgConnection> {
    use sqlx::Connection;
    let mut catalog = sqlx::PgConnection::connect(catalog_url)
        .await
        .context("catalog")?;
    sqlx::query(
        "INSERT INTO shard_map (city, region, shard, state, epoch) VALUES ($1, $2, $3, 'active', 1)
         ON CONFLICT (city) DO NOTHING",
    )
    .bind(city)
    .bind(region)
    .bind(shard)
    .execute(&mut catalog)
    .await?;
    let mut db = sqlx::PgConnection::connect(primary_url)
        .await
        .context("shard primary")?;
    sqlx::query(
        "INSERT INTO city_fence (city, epoch, state) VALUES ($1, 1, 'active') ON CONFLICT DO NOTHING",
    )
    .bind(city)
    .execute(&mut db)
    .await?;
    Ok(db)
}

/// A scenario name `bench` does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown benchmark scenario {0:?}; scenarios: {list}", list = SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
pub struct UnknownScenario(pub String);

/// Every scenario with what it measures.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "pg-baseline",
        "raw Postgres on a shard primary: COPY rows/s, 100-row INSERT rows/s, pgbench -S TPS and p99 on 1M rows",
    ),
    (
        "geo-lookup",
        "geo-router locate on the compact city db vs maxminddb on the full DB-IP db: lookups/s, one core",
    ),
    (
        "dns-qps",
        "geo-router dns (one core) vs a bare UDP echo server: queries/s and p99",
    ),
    (
        "edge-kv",
        "edge Worker serving a 20 KB KV page at 8 and 64 connections vs nginx static and a minimal JS Worker: req/s, p99",
    ),
    (
        "edge-geo",
        "edge Worker's apex GeoIP 302 at 8 and 64 connections vs an nginx 302 and a JS Worker's 302: req/s, p99",
    ),
    (
        "origin-read",
        "region-core api on 1M posts: GET /post/{id} and four search classes at 16 clients, caches off and on, vs pgbench -S",
    ),
    (
        "write-pipeline",
        "writer drain vs COPY of the same rows; POST /post at 64 and 512 posters vs the api writing straight to the primary; POST to edge KV page p50/p99",
    ),
    (
        "idle",
        "CPU of every process of an idle stack over 60 s, consumers dozing vs fetching all the time (alternated, own stack); sparse writes' visibility in both",
    ),
    (
        "reshard",
        "shard-tool moving a 1M-post city under load (own stack): copy rows/s vs COPY TO | COPY FROM; cutover/rollback pause p50/p99/max; POST p99 in switch windows vs without",
    ),
];

/// Sizes given on the command line (`--posts`, `--switches`), ahead of
/// their `CITYBOARD_BENCH_*` variables: a quick run is one flag away, and
/// the command that made a figure shows its sizes. Only `reshard` reads
/// them today.
#[derive(Debug, Clone, Copy, Default)]
pub struct Knobs {
    /// Posts to seed (`CITYBOARD_BENCH_POSTS`).
    pub posts: Option<u64>,
    /// Cutovers plus rollbacks (`CITYBOARD_BENCH_SWITCHES`).
    pub switches: Option<u64>,
}

/// Runs one scenario against the stack in `home`.
pub async fn run(home: &Home, scenario: &str, json: bool, knobs: Knobs) -> Result<()> {
    if scenario == "list" {
        for (name, what) in SCENARIOS {
            println!("{name:<16} {what}");
        }
        return Ok(());
    }
    if scenario == "idle" {
        // A stack of its own, with the running stack's topology.
        return idle::run(home, json).await;
    }
    if scenario == "reshard" {
        // Starts a stack of its own: a move must not touch the running one.
        return reshard::run(json, knobs).await;
    }
    let topology = Topology::load(&home.topology_file())
        .context("benchmarks run against a running stack: run `cityboard up` first")?;
    match scenario {
        "pg-baseline" => {
            let port = topology.shard_port(0, 0, 0);
            println!(
                "pg-baseline: on {}/{} primary (port {port}), database {}",
                topology.regions[0].name,
                topology.regions[0].shards[0].name,
                pg::BENCH_DATABASE
            );
            let figures = pg::baseline(port).await?;
            figures.print();
            if json {
                println!("{}", serde_json::to_string_pretty(&figures)?);
            }
            Ok(())
        }
        "geo-lookup" | "dns-qps" => geo::run(home, &topology, scenario, json).await,
        "origin-read" => origin::run(home, &topology, json).await,
        "write-pipeline" => write::run(home, &topology, json).await,
        "edge-kv" | "edge-geo" => edge::run(home, &topology, scenario, json).await,
        other => Err(UnknownScenario(other.to_string()).into()),
    }
}

/// A number from the environment variable `name`, `default` when it is
/// unset or not a number: the knobs of a scenario (`CITYBOARD_BENCH_*`).
pub fn env_size(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
