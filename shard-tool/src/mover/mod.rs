//! Moving a city between two shards of one region: the job row and its
//! phases ([`job`]), the objects' names ([`names`]), the checks that
//! refuse a step before it changes anything ([`preflight`]), logical
//! replication's objects ([`replication`]), the copy ([`copy`]), the
//! cutover and rollback ([`switch`]) and what ends a job ([`finish`]).
//!
//! One process drives a job at a time: [`Mover::open`] takes a
//! session-level advisory lock on the catalog, keyed by the job id, and
//! holds it until the process ends (a killed process's session ends with
//! it, so `resume` can take over at once).

pub mod copy;
pub mod finish;
pub mod job;
pub mod names;
pub mod preflight;
pub mod replication;
pub mod switch;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};

use crate::cli::Target;
use crate::error::{Error, Result};
use crate::regions::{self, Region, ShardRow};
use crate::report::Report;
use job::{Job, Side};

/// A shard a job writes to: its catalog row and a read-write pool. Its
/// `Debug` masks the URL's password (`region_core::redact::url`).
#[derive(Clone)]
pub struct Shard {
    /// `shard-N`.
    pub name: String,
    /// The primary's URL (the subscription on the other shard connects to
    /// it).
    pub url: String,
    /// The primary, read-write.
    pub pool: PgPool,
    /// `region/shard-N primary`, for messages.
    pub what: String,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("name", &self.name)
            .field("url", &region_core::redact::url(&self.url))
            .field("pool", &self.pool)
            .field("what", &self.what)
            .finish()
    }
}

/// A job being driven: its row, its catalog and both shards, and the lock
/// that makes this process its only driver.
pub struct Mover {
    /// The job row as last written.
    pub job: Job,
    /// The region's catalog, read-write.
    pub catalog: PgPool,
    /// The shard the city started on.
    pub source: Shard,
    /// The shard it moves to.
    pub target: Shard,
    /// Progress and steps, for people or scripts.
    pub report: Report,
    /// Holds the job's advisory lock for as long as the process runs.
    _lock: PgConnection,
}

impl Mover {
    /// The shard of `side`.
    pub fn shard(&self, side: Side) -> &Shard {
        match side {
            Side::Source => &self.source,
            Side::Target => &self.target,
        }
    }

    /// Finds job `id` in the selected regions, connects to its shards and
    /// takes its lock. An unknown job is [`Error::UnknownJob`]; a job
    /// another process drives is [`Error::Busy`].
    pub async fn open(target: &Target, id: i64, report: Report) -> Result<Mover> {
        let regions = regions::select(target)?;
        for region in &regions {
            let catalog = catalog(region).await?;
            if let Some(job) = Job::load(&catalog, &region.name, id).await? {
                return Mover::with(region, catalog, job, report).await;
            }
        }
        Err(Error::UnknownJob {
            id,
            regions: regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Connects to the shards of a job already read, and takes its lock.
    pub async fn with(region: &Region, catalog: PgPool, job: Job, report: Report) -> Result<Mover> {
        let lock = lock_job(region, job.id).await?;
        let shards = regions::shards(&catalog, &region.name).await?;
        let source = shard(&region.name, &shards, &job.from_shard).await?;
        let target = shard(&region.name, &shards, &job.to_shard).await?;
        Ok(Mover {
            job,
            catalog,
            source,
            target,
            report,
            _lock: lock,
        })
    }

    /// Saves the job's progress.
    pub async fn save(&self) -> Result<()> {
        self.job.save(&self.catalog).await
    }

    /// Records a new phase, then stops here if a crash point names it.
    pub async fn phase(&mut self, phase: &str) -> Result<()> {
        self.job.set_phase(&self.catalog, phase).await?;
        self.report
            .step(self.job.id, phase, &format!("phase {phase}"))?;
        crash_point(phase);
        Ok(())
    }
}

/// The region's catalog, read-write, refused when its schema is not the
/// one this build knows.
pub async fn catalog(region: &Region) -> Result<PgPool> {
    let what = format!("the catalog of {}", region.name);
    let pool = connect(&region.catalog_url, &what, 4).await?;
    region_core::migrate::check_catalog(&pool)
        .await
        .map_err(|e| Error::db(&what, e))?;
    Ok(pool)
}

/// The shard `name` of `shards`, connected read-write.
pub async fn shard(region: &str, shards: &[ShardRow], name: &str) -> Result<Shard> {
    let row = shards.iter().find(|s| s.name == name).ok_or_else(|| {
        Error::Refused(format!(
            "{region} has no shard {name:?} (its catalog lists: {})",
            shards
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let what = format!("{region}/{name} primary");
    let pool = connect(&row.primary_url, &what, 4).await?;
    Ok(Shard {
        name: name.to_string(),
        url: row.primary_url.clone(),
        pool,
        what,
    })
}

/// Connection options of every read-write session: `application_name`
/// `shard-tool` (pg_stat_activity tells its backends apart), times in UTC
/// (verify compares timestamps as text), and a 2 s `lock_timeout` (DDL
/// queued behind a long transaction would hold every later reader of the
/// table in the lock queue behind it).
pub fn options(url: &str, what: &str) -> Result<PgConnectOptions> {
    Ok(regions::parse(url, what)?
        .application_name("shard-tool")
        .options([("lock_timeout", "2s"), ("TimeZone", "UTC")]))
}

/// A read-write pool of `max` connections to `url`, failing fast (with
/// the server's or the network's own words) when it cannot connect.
pub async fn connect(url: &str, what: &str, max: u32) -> Result<PgPool> {
    regions::pool(options(url, what)?, what, max).await
}

/// The advisory lock's first key: "cb" (jobs share the catalog's lock
/// space with nothing else, but a pair keeps them apart from any
/// single-key lock).
const LOCK_CLASS: i32 = 0x6362;

/// Takes job `id`'s advisory lock on a connection of its own, or says who
/// holds it.
async fn lock_job(region: &Region, id: i64) -> Result<PgConnection> {
    let what = format!("the catalog of {}", region.name);
    let options = options(&region.catalog_url, &what)?;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| Error::db(&what, e))?;
    let key = i32::try_from(id).map_err(|_| Error::Refused(format!("job id {id} is too large")))?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(key)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| Error::db(&what, e))?;
    if got {
        return Ok(conn);
    }
    let holder: Option<(i32, Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as(
            "SELECT a.pid, a.client_addr::text, a.backend_start
               FROM pg_locks l JOIN pg_stat_activity a USING (pid)
              WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = $2::oid
                AND l.granted
              LIMIT 1",
        )
        .bind(LOCK_CLASS)
        .bind(key)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| Error::db(&what, e))?;
    Err(Error::Busy(match holder {
        Some((pid, addr, since)) => format!(
            "job {id} is being driven by another shard-tool (catalog backend pid {pid}, client {}, \
             connected since {}); wait for it, or stop it and run `shard-tool resume {id}`",
            addr.unwrap_or_else(|| "local".into()),
            since.map_or("?".to_string(), |t| t.to_rfc3339())
        ),
        None => format!("job {id} is being driven by another shard-tool"),
    }))
}

/// The variable naming crash points (tests only: a comma-separated list
/// of step names; the process aborts right after reaching one, as a
/// SIGKILL there would leave it).
pub const CRASH_ENV: &str = "SHARD_TOOL_CRASH_AT";

/// The variable naming pause points (tests only: `step=ms,…`; the
/// process sleeps that long after reaching the step, so a test can change
/// the world in between, as a slow network or an operator would).
pub const PAUSE_ENV: &str = "SHARD_TOOL_PAUSE_AT";

/// Aborts the process if `CRASH_ENV` names `step`; sleeps if
/// `PAUSE_ENV` does.
pub fn crash_point(step: &str) {
    if let Ok(list) = std::env::var(CRASH_ENV)
        && list.split(',').any(|s| s.trim() == step)
    {
        eprintln!("shard-tool: crash point {step}");
        std::process::abort();
    }
    if let Ok(list) = std::env::var(PAUSE_ENV) {
        for item in list.split(',') {
            if let Some((name, ms)) = item.split_once('=')
                && name.trim() == step
                && let Ok(ms) = ms.trim().parse::<u64>()
            {
                eprintln!("shard-tool: pause point {step}: {ms} ms");
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
    }
}
