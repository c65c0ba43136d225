//! `doctor [JOB] [--repair]`: what crashes and operators leave behind,
//! found from the catalogs and the shards themselves (never from memory),
//! and, with `--repair`, fixed — each fix printed before it is made.
//!
//! - A job stopped in the middle of a switch (`freezing`, `flipping`):
//!   repaired by resuming it (forward once the old owner's fence is gone,
//!   else back).
//! - `cb_<job>` publications, subscriptions and slots of a job that is
//!   finished or does not exist: dropped. (Those of open jobs are the
//!   jobs' own.)
//! - A fence `frozen` past its deadline with no switch in progress:
//!   reopened (apply already treats it as active; this makes it say so).
//! - A city the catalog places where no fence is active (or at another
//!   epoch), with no open job: pointed at the shard whose fence is active
//!   at the highest epoch.

use serde::Serialize;

use crate::cli::{DoctorArgs, Target};
use crate::error::{Error, Result};
use crate::mover::job::{self, Job};
use crate::mover::replication;
use crate::mover::{self, Mover, Shard, names, switch};
use crate::regions;
use crate::render;
use crate::report::Report;

/// One finding.
#[derive(Debug, Serialize)]
struct Finding {
    region: String,
    /// `job`, `orphan`, `frozen`, `catalog`.
    what: &'static str,
    /// What is wrong.
    problem: String,
    /// What `--repair` does (or did).
    repair: String,
    /// Whether it was repaired in this run.
    repaired: bool,
}

/// Runs `doctor`.
pub async fn run(target: &Target, args: &DoctorArgs, json: bool) -> Result<()> {
    let regions = regions::select(target)?;
    let mut findings: Vec<Finding> = Vec::new();
    let mut job_seen = false;
    for region in &regions {
        let catalog = mover::catalog(region).await?;
        let what = format!("the catalog of {}", region.name);
        let open: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, phase FROM reshard_jobs WHERE finished_at IS NULL ORDER BY id",
        )
        .fetch_all(&catalog)
        .await
        .map_err(|e| Error::db(&what, e))?;
        let open_ids: Vec<i64> = open.iter().map(|(id, _)| *id).collect();
        if let Some(id) = args.job {
            job_seen |= Job::load(&catalog, &region.name, id).await?.is_some();
        }

        // Jobs stopped in a switch.
        for (id, phase) in &open {
            if args.job.is_some_and(|j| j != *id) {
                continue;
            }
            if !matches!(phase.as_str(), job::FREEZING | job::FLIPPING) {
                continue;
            }
            let mut f = Finding {
                region: region.name.clone(),
                what: "job",
                problem: format!("job {id} stopped in the middle of a switch ({phase})"),
                repair: format!("resume job {id}"),
                repaired: false,
            };
            if args.repair {
                say(json, &f)?;
                let job =
                    Job::load(&catalog, &region.name, *id)
                        .await?
                        .ok_or(Error::UnknownJob {
                            id: *id,
                            regions: region.name.clone(),
                        })?;
                let mut m = Mover::with(region, catalog.clone(), job, Report::new(json)).await?;
                switch::resume(&mut m).await.or_else(|e| match e {
                    Error::Aborted(_) => Ok(()),
                    e => Err(e),
                })?;
                f.repaired = true;
            }
            findings.push(f);
        }

        let shards = regions::shards(&catalog, &region.name).await?;
        let mut connected: Vec<Shard> = Vec::new();
        for row in &shards {
            connected.push(mover::shard(&region.name, &shards, &row.name).await?);
        }
        for shard in &connected {
            orphans(
                shard,
                &connected,
                &open_ids,
                args,
                json,
                &region.name,
                &mut findings,
            )
            .await?;
            expired_freezes(shard, &catalog, args, json, &region.name, &mut findings).await?;
        }
        disagreements(
            &catalog,
            &connected,
            args,
            json,
            &region.name,
            &mut findings,
        )
        .await?;
    }
    if let Some(id) = args.job
        && !job_seen
    {
        return Err(Error::UnknownJob {
            id,
            regions: regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    // A repaired finding was said before its fix; the rest are said now
    // (with --repair: those it could not fix).
    for f in findings.iter().filter(|f| !f.repaired) {
        say(json, f)?;
    }
    let unrepaired = findings.iter().filter(|f| !f.repaired).count();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        #[derive(Serialize)]
        struct Summary {
            findings: usize,
            repaired: usize,
        }
        render::json_line(
            &mut out,
            "summary",
            &Summary {
                findings: findings.len(),
                repaired: findings.len() - unrepaired,
            },
        )?;
    } else {
        use std::io::Write;
        writeln!(
            out,
            "doctor: {} finding(s){}",
            findings.len(),
            if args.repair {
                format!(", {} repaired", findings.len() - unrepaired)
            } else if findings.is_empty() {
                String::new()
            } else {
                "; `--repair` fixes them".to_string()
            }
        )?;
    }
    if unrepaired > 0 && args.repair {
        return Err(Error::Partial(format!("{unrepaired} finding(s)")));
    }
    Ok(())
}

fn say(json: bool, f: &Finding) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        render::json_line(&mut out, "finding", f)?;
    } else {
        use std::io::Write;
        writeln!(out, "{}: {} — {}", f.region, f.problem, f.repair)?;
    }
    Ok(())
}

/// `cb_*` objects on `shard` whose job is not open.
async fn orphans(
    shard: &Shard,
    all: &[Shard],
    open: &[i64],
    args: &DoctorArgs,
    json: bool,
    region: &str,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let db = |e| Error::db(&shard.what, e);
    let subs: Vec<String> = sqlx::query_scalar(
        "SELECT subname::text FROM pg_subscription
          WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND subname LIKE 'cb\\_%'",
    )
    .fetch_all(&shard.pool)
    .await
    .map_err(db)?;
    let pubs: Vec<String> =
        sqlx::query_scalar("SELECT pubname::text FROM pg_publication WHERE pubname LIKE 'cb\\_%'")
            .fetch_all(&shard.pool)
            .await
            .map_err(db)?;
    let slots: Vec<String> = sqlx::query_scalar(
        "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'cb\\_%'",
    )
    .fetch_all(&shard.pool)
    .await
    .map_err(db)?;
    let orphan = |name: &String| {
        names::job_of(name).is_some_and(|j| !open.contains(&j) && args.job.is_none_or(|a| a == j))
    };
    for (kind, list) in [
        ("subscription", &subs),
        ("publication", &pubs),
        ("replication slot", &slots),
    ] {
        for name in list.iter().filter(|n| orphan(n)) {
            let mut f = Finding {
                region: region.to_string(),
                what: "orphan",
                problem: format!("{kind} {name} on {} belongs to no open job", shard.name),
                repair: format!("drop {kind} {name} on {}", shard.name),
                repaired: false,
            };
            if args.repair {
                say(json, &f)?;
                let job = names::job_of(name).unwrap_or_default();
                match kind {
                    "subscription" => {
                        // Its slot is on another shard of the region, named
                        // for this one.
                        for sender in all.iter().filter(|s| s.name != shard.name) {
                            replication::drop_subscription(shard, sender, job).await?;
                        }
                    }
                    "publication" => replication::drop_publication(shard, job).await?,
                    _ => replication::drop_slot(shard, name).await?,
                }
                f.repaired = true;
            }
            findings.push(f);
        }
    }
    Ok(())
}

/// Fences frozen past their deadline.
async fn expired_freezes(
    shard: &Shard,
    catalog: &sqlx::PgPool,
    args: &DoctorArgs,
    json: bool,
    region: &str,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let frozen: Vec<(String, i64)> = sqlx::query_as(
        "SELECT city, epoch FROM city_fence
          WHERE state = 'frozen' AND (frozen_until IS NULL OR frozen_until < clock_timestamp())",
    )
    .fetch_all(&shard.pool)
    .await
    .map_err(|e| Error::db(&shard.what, e))?;
    for (city, epoch) in frozen {
        let switching: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM reshard_jobs WHERE city = $1 AND finished_at IS NULL
                             AND phase IN ('freezing', 'flipping'))",
        )
        .bind(&city)
        .fetch_one(catalog)
        .await
        .map_err(|e| Error::db(format!("the catalog of {region}"), e))?;
        if switching {
            continue; // the job's own finding resumes it
        }
        let mut f = Finding {
            region: region.to_string(),
            what: "frozen",
            problem: format!(
                "{city} is frozen on {} (epoch {epoch}) past its deadline, with no switch in progress",
                shard.name
            ),
            repair: format!("reopen {city}'s fence on {} at epoch {epoch}", shard.name),
            repaired: false,
        };
        if args.repair {
            say(json, &f)?;
            sqlx::query(
                "UPDATE city_fence SET state = 'active', frozen_until = NULL, updated_at = now()
                  WHERE city = $1 AND epoch = $2 AND state = 'frozen'",
            )
            .bind(&city)
            .bind(epoch)
            .execute(&shard.pool)
            .await
            .map_err(|e| Error::db(&shard.what, e))?;
            f.repaired = true;
        }
        findings.push(f);
    }
    Ok(())
}

/// Cities the catalog places where no fence owns them.
async fn disagreements(
    catalog: &sqlx::PgPool,
    shards: &[Shard],
    args: &DoctorArgs,
    json: bool,
    region: &str,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let what = format!("the catalog of {region}");
    let mapped: Vec<(String, String, i64, bool)> = sqlx::query_as(
        "SELECT m.city, m.shard, m.epoch,
                EXISTS (SELECT 1 FROM reshard_jobs j WHERE j.city = m.city AND j.finished_at IS NULL)
           FROM shard_map m WHERE m.region = $1 ORDER BY m.city",
    )
    .bind(region)
    .fetch_all(catalog)
    .await
    .map_err(|e| Error::db(&what, e))?;
    // Every shard's fences, once.
    let mut fences: Vec<(String, String, i64, String)> = Vec::new();
    for s in shards {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT city, epoch, state FROM city_fence")
                .fetch_all(&s.pool)
                .await
                .map_err(|e| Error::db(&s.what, e))?;
        fences.extend(
            rows.into_iter()
                .map(|(c, e, st)| (s.name.clone(), c, e, st)),
        );
    }
    for (city, shard, epoch, open_job) in mapped {
        let owns = fences.iter().any(|(s, c, e, st)| {
            s == &shard && c == &city && *e == epoch && matches!(st.as_str(), "active" | "frozen")
        });
        if owns || open_job {
            continue;
        }
        let best = fences
            .iter()
            .filter(|(_, c, _, st)| c == &city && st == "active")
            .max_by_key(|(_, _, e, _)| *e);
        let mut f = Finding {
            region: region.to_string(),
            what: "catalog",
            problem: format!(
                "the catalog places {city} on {shard} at epoch {epoch}, whose fence does not own it"
            ),
            repair: match best {
                Some((s, _, e, _)) => format!("point the catalog at {s}, epoch {e}"),
                None => "none: no shard's fence owns the city; look at the fences by hand".into(),
            },
            repaired: false,
        };
        if args.repair
            && let Some((s, _, e, _)) = best
        {
            say(json, &f)?;
            sqlx::query(
                "UPDATE shard_map SET shard = $2, epoch = $3, updated_at = now() WHERE city = $1",
            )
            .bind(&city)
            .bind(s)
            .bind(e)
            .execute(catalog)
            .await
            .map_err(|e| Error::db(&what, e))?;
            f.repaired = true;
        }
        findings.push(f);
    }
    Ok(())
}
