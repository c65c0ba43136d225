//! The commands that drive a move: `move`, `resume`, `cutover`,
//! `rollback`, `cleanup`, `cancel`. Each checks what it was asked, takes
//! the job's lock, and hands over to [`crate::mover`].

use std::time::Duration;

use sqlx::PgPool;

use crate::cli::{CutoverArgs, JobArgs, MoveArgs, Target};
use crate::error::{Error, Result};
use crate::mover::copy::{self, CopyOptions};
use crate::mover::job::{self, Job, Progress, Side};
use crate::mover::preflight::{self, Problems};
use crate::mover::switch::{self, SwitchOptions};
use crate::mover::{self, Mover, finish, names};
use crate::regions::{self, Region};
use crate::report::Report;

/// `move CITY --to SHARD`: checks, the job row, the copy's objects, then
/// (unless `--no-wait`) the copy until the target has caught up.
pub async fn move_city(target: &Target, args: &MoveArgs, json: bool) -> Result<()> {
    let report = Report::new(json);
    let (region, catalog, placed) = find_city(target, &args.city).await?;
    let what = format!("the catalog of {}", region.name);
    let shards = regions::shards(&catalog, &region.name).await?;
    if placed.shard == args.to {
        return Err(Error::Refused(format!(
            "{} is on {} already",
            args.city, args.to
        )));
    }
    if !shards.iter().any(|s| s.name == args.to) {
        return Err(Error::Refused(format!(
            "{} has no shard {:?} (its catalog lists: {})",
            region.name,
            args.to,
            shards
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let open: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, phase FROM reshard_jobs WHERE city = $1 AND finished_at IS NULL",
    )
    .bind(&args.city)
    .fetch_optional(&catalog)
    .await
    .map_err(|e| Error::db(&what, e))?;
    if let Some((id, phase)) = open {
        return Err(Error::Refused(format!(
            "{} already has an open move (job {id}, {phase}); finish, cancel or resume it first",
            args.city
        )));
    }
    let source = mover::shard(&region.name, &shards, &placed.shard).await?;
    // A target that cannot be reached, or has no schema, is a target the
    // operator should not have named: refused, like an unknown one.
    let target_shard = mover::shard(&region.name, &shards, &args.to)
        .await
        .map_err(|e| Error::Refused(format!("the target cannot be used: {e}")))?;
    let tables = crate::tables::city_keyed_tables(&source.pool)
        .await
        .map_err(|e| Error::db(&source.what, e))?;
    let names_of: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();

    let mut found = Problems::default();
    let fence: Option<(i64, String)> =
        sqlx::query_as("SELECT epoch, state FROM city_fence WHERE city = $1")
            .bind(&args.city)
            .fetch_optional(&source.pool)
            .await
            .map_err(|e| Error::db(&source.what, e))?;
    if fence != Some((placed.epoch, "active".into())) {
        found.add(format!(
            "{}'s fence on {} ({}) does not say active at the catalog's epoch {}; `shard-tool \
             doctor` looks into it",
            args.city,
            source.name,
            fence.map_or("none".into(), |(e, s)| format!("{s} at epoch {e}")),
            placed.epoch
        ));
    }
    match target_has(&target_shard, &args.city, &names_of).await {
        Ok(problems) => problems.into_iter().for_each(|p| found.add(p)),
        Err(e) => {
            return Err(Error::Refused(format!(
                "the target {} lacks the shard schema: {e}",
                target_shard.name
            )));
        }
    }
    preflight::same_schema(&source, &target_shard, &names_of, &mut found).await?;
    preflight::replicable(&source, &tables, &mut found).await?;
    preflight::replicable(&target_shard, &tables, &mut found).await?;
    let role = args
        .replication_role
        .clone()
        .unwrap_or_else(|| names::connecting_user(&source.url));
    preflight::replication_role(&source, &role, &mut found).await?;
    // The slot, and one for each tablesync worker while the copy runs.
    preflight::room_to_send(&source, 1 + SYNC_WORKERS, &mut found).await?;
    preflight::room_to_receive(&target_shard, 1, &mut found).await?;
    found.verdict("move")?;

    let progress = Progress {
        epoch: Some(placed.epoch),
        owner: Some(Side::Source),
        replication_role: Some(role),
        ..Progress::default()
    };
    let job = Job::create(
        &catalog,
        &region.name,
        &args.city,
        &placed.shard,
        &args.to,
        progress,
    )
    .await?;
    let mut m = Mover::with(&region, catalog, job, report).await?;
    m.report.step(
        m.job.id,
        job::COPYING,
        &format!(
            "moves {} from {} to {} (tables: {})",
            m.job.city,
            placed.shard,
            args.to,
            names_of.join(", ")
        ),
    )?;
    mover::crash_point("created");
    let opts = copy_options(args.slot_wait_seconds, args.max_replica_lag_mb);
    copy::start(&mut m, &opts).await?;
    if args.no_wait {
        return Ok(());
    }
    copy::wait(&mut m, &opts).await
}

/// Tablesync workers per subscription (`max_sync_workers_per_subscription`).
const SYNC_WORKERS: i64 = 2;

/// What the target already holds of the city: nothing, if a move may
/// start.
async fn target_has(
    target: &mover::Shard,
    city: &str,
    tables: &[String],
) -> std::result::Result<Vec<String>, sqlx::Error> {
    let mut problems = Vec::new();
    let fence: Option<(i64, String)> =
        sqlx::query_as("SELECT epoch, state FROM city_fence WHERE city = $1")
            .bind(city)
            .fetch_optional(&target.pool)
            .await?;
    if let Some((e, s)) = fence
        && s != "gone"
    {
        problems.push(format!(
            "{} has a fence for {city} that says {s} at epoch {e}: another move's leftover? \
             (`shard-tool doctor`)",
            target.name
        ));
    }
    let all = crate::tables::city_keyed_tables(&target.pool).await?;
    for t in all.iter().filter(|t| tables.contains(&t.name)) {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE city = $1 LIMIT 1) x",
            t.sql_name
        ))
        .bind(city)
        .fetch_one(&target.pool)
        .await?;
        if n > 0 {
            problems.push(format!(
                "{} already has rows of {city} in {} (left by an earlier move? `shard-tool doctor`)",
                target.name, t.name
            ));
        }
    }
    Ok(problems)
}

/// Where the catalog places a city.
#[derive(Debug, sqlx::FromRow)]
struct Placed {
    shard: String,
    epoch: i64,
}

/// The region whose catalog places `city`, with that catalog.
async fn find_city(target: &Target, city: &str) -> Result<(Region, PgPool, Placed)> {
    let regions = regions::select(target)?;
    for region in &regions {
        let catalog = mover::catalog(region).await?;
        let placed: Option<Placed> =
            sqlx::query_as("SELECT shard, epoch FROM shard_map WHERE city = $1 AND region = $2")
                .bind(city)
                .bind(&region.name)
                .fetch_optional(&catalog)
                .await
                .map_err(|e| Error::db(format!("the catalog of {}", region.name), e))?;
        if let Some(p) = placed {
            return Ok((region.clone(), catalog, p));
        }
    }
    Err(Error::Refused(format!(
        "unknown city {city:?}: no shard map of {} places it",
        regions
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn copy_options(slot_wait_seconds: u64, max_replica_lag_mb: u64) -> CopyOptions {
    CopyOptions {
        slot_wait: Duration::from_secs(slot_wait_seconds),
        max_replica_lag: mb(max_replica_lag_mb),
    }
}

fn mb(n: u64) -> i64 {
    i64::try_from(n.saturating_mul(1 << 20)).unwrap_or(i64::MAX)
}

/// `resume JOB`: goes on from the phase the job row records.
pub async fn resume(target: &Target, args: &JobArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    let id = m.job.id;
    if m.job.finished {
        let phase = m.job.phase.clone();
        return m
            .report
            .step(
                id,
                &phase,
                &format!("job {id} is finished ({phase}); nothing to resume"),
            )
            .map_err(Error::from);
    }
    match m.job.phase.as_str() {
        job::COPYING => {
            let opts = copy_options(args.slot_wait_seconds, args.max_replica_lag_mb);
            copy::start(&mut m, &opts).await?;
            copy::wait(&mut m, &opts).await
        }
        job::FREEZING | job::FLIPPING => switch::resume(&mut m).await,
        job::CLEANING_UP => finish::cleanup(&mut m).await,
        job::CANCELLING => finish::cancel(&mut m).await,
        phase => {
            let next = if phase == job::READY {
                format!(
                    "`shard-tool verify {id}`, `shard-tool cutover {id}` or `shard-tool cancel {id}`"
                )
            } else {
                format!("`shard-tool cleanup {id}` or `shard-tool rollback {id}`")
            };
            let text =
                format!("job {id} is {phase}, where it waits for the operator: next is {next}");
            m.report.step(id, phase, &text).map_err(Error::from)
        }
    }
}

fn switch_options(args: &CutoverArgs) -> SwitchOptions {
    SwitchOptions {
        max_pause: Duration::from_millis(args.max_pause),
        max_lag: mb(args.max_lag_mb),
        max_replica_lag: mb(args.max_replica_lag_mb),
        slot_wait: Duration::from_secs(args.slot_wait_seconds),
    }
}

/// `cutover JOB`.
pub async fn cutover(target: &Target, args: &CutoverArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    switch::run(&mut m, Side::Source, &switch_options(args)).await
}

/// `rollback JOB`.
pub async fn rollback(target: &Target, args: &CutoverArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    switch::run(&mut m, Side::Target, &switch_options(args)).await
}

/// `cleanup JOB`.
pub async fn cleanup(target: &Target, args: &JobArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    finish::cleanup(&mut m).await
}

/// `cancel JOB`.
pub async fn cancel(target: &Target, args: &JobArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    finish::cancel(&mut m).await
}
