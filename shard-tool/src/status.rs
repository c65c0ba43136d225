//! `shard-tool status [JOB]`: where every city is and what it costs, and
//! where every move stands. Reads only (every session is read-only).
//!
//! Rows are exact `count(*)` per city over the city-keyed tables (the ones
//! a move copies, see [`crate::tables`]): on shards of this project's size
//! that takes a second or so per million rows, and an operator choosing a
//! city to move wants the figure the copy will see. `--estimate` reads the
//! planner's statistics instead, for shards too big to scan, and labels
//! each figure (see [`crate::counts`]). Bytes are each city's share, by
//! rows, of those tables' size on disk.

use std::io::Write;

use serde::Serialize;

use crate::cli::{StatusArgs, Target};
use crate::counts::Counting;
use crate::error::{Error, Result};
use crate::jobs::{self, JobStatus};
use crate::regions::{self, Region};
use crate::render::{self, Align, Table, or_dash};
use crate::shard::{self, ShardStatus};

/// The last JSON line: totals, and how rows were counted.
#[derive(Debug, Serialize)]
struct Summary {
    regions: Vec<String>,
    shards: usize,
    cities: usize,
    jobs: usize,
    rows_counted: &'static str,
}

/// Runs `status`. A shard that cannot be read (down, or a lock held past
/// 2 s) is shown as such and makes the exit code 1 once everything else
/// has been printed: one shard down must not hide the others.
pub async fn run(target: &Target, args: &StatusArgs, json: bool) -> Result<()> {
    let regions = regions::select(target)?;
    let mut catalogs = Vec::new();
    for region in &regions {
        catalogs.push((region, regions::catalog(region).await?));
    }
    // The job first: an unknown id prints nothing but the error.
    let job = match args.job {
        None => None,
        Some(id) => Some(find_job(&catalogs, id).await?),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut not_read = Vec::new();
    let how = if args.estimate {
        Counting::Estimate
    } else {
        Counting::Exact
    };
    let mut summary = Summary {
        regions: regions.iter().map(|r| r.name.clone()).collect(),
        shards: 0,
        cities: 0,
        jobs: 0,
        rows_counted: how.label(),
    };
    for (region, catalog) in &catalogs {
        let what = format!("the catalog of {}", region.name);
        let shards = regions::shards(catalog, &region.name).await?;
        let mapped = shard::mapped_cities(catalog, &region.name)
            .await
            .map_err(|e| Error::db(&what, e))?;
        if !json {
            print(&mut out, &format!("{} ({})", region.name, redact(region)))?;
        }
        for name in shard::unlisted_shards(&mapped, &shards) {
            eprintln!(
                "shard-tool: the shard map of {} places cities on {name}, which its catalog's \
                 shards table does not list",
                region.name
            );
        }
        for row in &shards {
            if let Some((_, j)) = &job
                && !involves(j, &region.name, &row.name)
            {
                continue;
            }
            let cities = mapped.get(&row.name).map(Vec::as_slice).unwrap_or(&[]);
            let status = shard::inspect(&region.name, row, cities, how).await;
            if let Some(e) = &status.error {
                not_read.push(format!("{}/{}", region.name, row.name));
                eprintln!("shard-tool: {e}");
            }
            summary.shards += 1;
            summary.cities += status.cities.len();
            if json {
                render::json_line(&mut out, "shard", &status)?;
            } else {
                for line in shard_lines(&status, how) {
                    print(&mut out, &line)?;
                }
            }
        }
        let region_jobs = match &job {
            Some((r, j)) if r == &region.name => vec![j.clone()],
            Some(_) => Vec::new(),
            None => jobs::recent(catalog)
                .await
                .map_err(|e| Error::db(&what, e))?,
        };
        summary.jobs += region_jobs.len();
        if json {
            for j in &region_jobs {
                #[derive(Serialize)]
                struct InRegion<'a> {
                    region: &'a str,
                    #[serde(flatten)]
                    job: &'a JobStatus,
                }
                let line = InRegion {
                    region: &region.name,
                    job: j,
                };
                render::json_line(&mut out, "job", &line)?;
            }
        } else if job.is_none() || !region_jobs.is_empty() {
            for line in job_lines(&region_jobs) {
                print(&mut out, &line)?;
            }
        }
    }
    if json {
        render::json_line(&mut out, "summary", &summary)?;
    }
    out.flush()?;
    if not_read.is_empty() {
        Ok(())
    } else {
        Err(Error::Partial(not_read.join(", ")))
    }
}

/// The job `id` and its catalog's region, from whichever selected catalog
/// has it; exit 2 naming it when none does.
async fn find_job(catalogs: &[(&Region, sqlx::PgPool)], id: i64) -> Result<(String, JobStatus)> {
    for (region, catalog) in catalogs {
        let found = jobs::one(catalog, id)
            .await
            .map_err(|e| Error::db(format!("the catalog of {}", region.name), e))?;
        if let Some(j) = found {
            return Ok((region.name.clone(), j));
        }
    }
    Err(Error::UnknownJob {
        id,
        regions: catalogs
            .iter()
            .map(|(r, _)| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The job moves from or to this shard.
fn involves(job: &JobStatus, region: &str, shard: &str) -> bool {
    let here = format!("{region}/{shard}");
    job.from == here || job.to == here
}

fn redact(region: &Region) -> String {
    format!("catalog {}", region_core::redact::url(&region.catalog_url))
}

fn print(out: &mut impl Write, line: &str) -> Result<()> {
    Ok(writeln!(out, "{line}")?)
}

/// A shard as people read it: a title line, then replicas, slots and
/// cities, each an aligned table.
fn shard_lines(s: &ShardStatus, how: Counting) -> Vec<String> {
    let mut lines = vec![format!(
        "  {}  primary {}  wal {}",
        s.shard,
        s.primary,
        or_dash(s.wal_lsn, |l| l.to_string())
    )];
    if let Some(e) = &s.error {
        lines.push(format!("    NOT READ: {e}"));
    }
    if !s.replicas.is_empty() {
        let mut t = Table::new(
            4,
            &[
                ("replica", Align::Left),
                ("replayed", Align::Left),
                ("lag", Align::Right),
                ("lag s", Align::Right),
                ("slot", Align::Left),
            ],
        );
        for r in &s.replicas {
            let (replayed, lag, secs) = match &r.error {
                Some(e) => (format!("DOWN: {e}"), String::new(), String::new()),
                None => (
                    or_dash(r.replay_lsn, |l| l.to_string()),
                    or_dash(r.lag_bytes, render::bytes),
                    match (r.lag_seconds, r.lag_seconds_over_bound) {
                        (Some(s), true) => format!("> {s:.1}"),
                        (Some(s), false) => format!("{s:.1}"),
                        (None, _) => "—".to_string(),
                    },
                ),
            };
            t.row(vec![
                r.url.clone(),
                replayed,
                lag,
                secs,
                r.slot.clone().unwrap_or_default(),
            ]);
        }
        lines.extend(t.lines());
    }
    if s.error.is_none() {
        if s.slots.is_empty() {
            lines.push("    no replication slots".to_string());
        } else {
            let mut t = Table::new(
                4,
                &[
                    ("slot", Align::Left),
                    ("kind", Align::Left),
                    ("active", Align::Left),
                    ("retains WAL", Align::Right),
                    ("wal status", Align::Left),
                ],
            );
            for slot in &s.slots {
                t.row(vec![
                    slot.name.clone(),
                    slot.kind.clone(),
                    if slot.active { "yes" } else { "NO" }.to_string(),
                    or_dash(slot.retained_bytes, |b| {
                        render::bytes(u64::try_from(b).unwrap_or(0))
                    }),
                    slot.wal_status.clone().unwrap_or_default(),
                ]);
            }
            lines.extend(t.lines());
        }
        let mut t = Table::new(
            4,
            &[
                ("city", Align::Left),
                ("fence", Align::Left),
                ("rows", Align::Right),
                ("bytes", Align::Right),
                ("", Align::Left),
            ],
        );
        for c in &s.cities {
            let fence = match (&c.fence, c.epoch) {
                (Some(state), Some(epoch)) => format!("{state} @{epoch}"),
                _ => "no fence".to_string(),
            };
            let note = if c.mapped {
                ""
            } else {
                "not placed here by the shard map"
            };
            // `~`: an estimate, from statistics.
            let tilde = if c.counted == Counting::Exact.label() {
                ""
            } else {
                "~"
            };
            t.row(vec![
                c.city.clone(),
                fence,
                format!("{tilde}{}", render::count(c.rows)),
                render::bytes(c.bytes),
                note.to_string(),
            ]);
        }
        lines.extend(t.lines());
        let rows = match how {
            Counting::Exact => "exact count(*)",
            Counting::Estimate => "~ planner statistics (else exact count(*))",
        };
        lines.push(format!(
            "    rows: {rows} over {}; bytes: each city's share of their size on disk",
            s.tables.join(", ")
        ));
    }
    lines
}

/// The jobs as people read them, or `no jobs`.
fn job_lines(jobs: &[JobStatus]) -> Vec<String> {
    if jobs.is_empty() {
        return vec!["  jobs: no jobs".to_string()];
    }
    let mut t = Table::new(
        2,
        &[
            ("job", Align::Right),
            ("city", Align::Left),
            ("from", Align::Left),
            ("to", Align::Left),
            ("phase", Align::Left),
            ("in phase", Align::Right),
            ("copied", Align::Right),
            ("rate", Align::Right),
            ("ETA", Align::Right),
            ("", Align::Left),
        ],
    );
    for j in jobs {
        let copied = match (j.rows_copied, j.rows_total) {
            (Some(c), Some(t)) => format!("{} / {}", render::count(c), render::count(t)),
            (Some(c), None) => render::count(c),
            _ => "—".to_string(),
        };
        let mut note = String::new();
        if j.finished_at.is_some() {
            note.push_str("finished");
        }
        if let Some(e) = &j.error {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str("error: ");
            note.push_str(e);
        }
        t.row(vec![
            j.id.to_string(),
            j.city.clone(),
            j.from.clone(),
            j.to.clone(),
            j.phase.clone(),
            render::duration(j.seconds_in_phase),
            copied,
            or_dash(j.rows_per_second, |r| {
                format!("{}/s", render::count(r.round() as i64))
            }),
            or_dash(j.eta_seconds, render::duration),
            note,
        ]);
    }
    t.lines()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::ReplicaStatus;

    fn job(progress: serde_json::Value, rows: Option<(i64, i64)>) -> JobStatus {
        JobStatus {
            id: 17,
            city: "boston".into(),
            from: "us-east/shard-1".into(),
            to: "us-east/shard-2".into(),
            phase: "copy".into(),
            seconds_in_phase: 80.0,
            finished_at: None,
            error: None,
            rows_copied: rows.map(|r| r.0),
            rows_total: rows.map(|r| r.1),
            rows_per_second: rows.map(|_| 1840.0),
            eta_seconds: rows.map(|_| 159.0),
            progress,
        }
    }

    #[test]
    fn jobs_show_their_copy_or_a_dash_and_none_say_so() {
        assert_eq!(job_lines(&[]), ["  jobs: no jobs"]);
        let lines = job_lines(&[
            job(serde_json::json!({}), Some((120_000, 412_318))),
            job(serde_json::json!({}), None),
        ]);
        assert!(lines[1].contains("120 000 / 412 318"), "{lines:?}");
        assert!(lines[1].contains("1 840/s"), "{lines:?}");
        assert!(lines[1].contains("2m 39s"), "{lines:?}");
        assert!(lines[2].ends_with('—'), "{lines:?}");
    }

    #[test]
    fn a_shard_not_read_and_a_stalled_replica_are_shown_as_such() {
        let status = ShardStatus {
            region: "us-east".into(),
            shard: "shard-3".into(),
            primary: "postgres://127.0.0.1:1/x".into(),
            wal_lsn: None,
            error: Some("connection refused".into()),
            replicas: vec![ReplicaStatus {
                url: "postgres://127.0.0.1:2/x".into(),
                up: true,
                replay_lsn: Some(region_core::lsn::Lsn(0x100)),
                lag_bytes: Some(4096),
                lag_seconds: Some(2.01),
                lag_seconds_over_bound: true,
                slot: Some("replica_1".into()),
                error: None,
            }],
            slots: Vec::new(),
            tables: Vec::new(),
            cities: Vec::new(),
        };
        let lines = shard_lines(&status, Counting::Exact);
        assert!(
            lines[0].contains("shard-3") && lines[0].ends_with("wal —"),
            "{lines:?}"
        );
        assert_eq!(lines[1], "    NOT READ: connection refused");
        assert!(lines[3].contains("4.1 kB  > 2.0  replica_1"), "{lines:?}");
        // Nothing of the primary is shown as if it were known.
        assert_eq!(lines.len(), 4, "{lines:?}");
    }
}
