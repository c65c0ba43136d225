//! `verify JOB`: the city's rows on both shards, compared chunk by chunk.
//!
//! Each moved table is walked in chunks of its key (the primary key's
//! column after `city`), read from the shard that owns the city. For each
//! chunk both shards give a count and an md5 over the rows in key order,
//! each row rendered as normalized text: every column but generated ones
//! (the receiver computes its own), `quote_nullable` of its text (NULL
//! stays distinct from the string 'NULL'), timestamps in UTC (every
//! session has TimeZone UTC), jsonb in its canonical text. The last chunk
//! is open-ended, so rows the other shard has past the owner's last key
//! are counted too.
//!
//! Every chunk is one short statement on each side: no long snapshot, no
//! lock held. The place is saved in the job row after each chunk, so a
//! killed verify resumes from there. A chunk that differs while changes
//! flow is not reported at once: a mark is written on the owner, and once
//! it is on the other shard (which then has everything the owner had) the
//! chunk is read again; only a chunk that still differs is reported, row
//! by row.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::cli::{Target, VerifyArgs};
use crate::error::{Error, Result};
use crate::mover::copy::{mark, wait_mark};
use crate::mover::job::{self, Side};
use crate::mover::{Mover, Shard, crash_point};
use crate::render;
use crate::report::Report;
use crate::tables::{self, CityKeyedTable};

/// Where verify is, saved in `progress.verify` after every chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Place {
    /// The table being walked (tables go in name order).
    pub table: Option<String>,
    /// The chunk key's last value done in it (as text), none at its start.
    pub after: Option<String>,
    /// Its last chunk is done (`after` then says nothing).
    #[serde(default)]
    pub table_done: bool,
    /// Chunks compared so far.
    pub chunks: i64,
    /// Rows compared so far (the owner's count).
    pub rows: i64,
    /// What differed and stayed different after a catch-up.
    pub differences: Vec<Difference>,
    /// All tables done.
    pub finished: bool,
}

/// A row that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Its table.
    pub table: String,
    /// The chunk: after this key value (none: from the start) …
    pub chunk_after: Option<String>,
    /// … up to and including this one (none: to the end).
    pub chunk_upto: Option<String>,
    /// The row's key (its primary key after `city`, comma-separated).
    pub key: String,
    /// `changed`, `missing` (on the other shard) or `extra` (there only).
    pub how: String,
}

/// Times a differing chunk is read again after a catch-up.
const RECHECKS: usize = 3;

/// A moved table as verify reads it.
struct Walk {
    table: CityKeyedTable,
    /// The chunk key: the primary key's column after `city`.
    key: String,
    /// Its SQL type, to compare text bounds with it.
    key_type: String,
    /// Columns compared (generated ones left out), in column order.
    columns: Vec<String>,
}

/// Runs `verify`.
pub async fn run(target: &Target, args: &VerifyArgs, json: bool) -> Result<()> {
    let mut m = Mover::open(target, args.job, Report::new(json)).await?;
    let id = m.job.id;
    if m.job.finished || !matches!(m.job.phase.as_str(), job::READY | job::CUT_OVER) {
        return Err(Error::Refused(format!(
            "job {id} is {}: verify compares a city whose copy is done and whose changes flow \
             (phases `ready` and `cut-over`)",
            m.job.phase
        )));
    }
    if args.chunk_rows < 1 {
        return Err(Error::Refused("--chunk-rows must be at least 1".into()));
    }
    let owner = m.job.progress.owner.unwrap_or(Side::Source);
    let (o, other) = (m.shard(owner).clone(), m.shard(owner.other()).clone());
    let mut place: Place = match (&m.job.progress.verify, args.restart) {
        (Some(v), false) => serde_json::from_value(v.clone()).unwrap_or_default(),
        _ => Place::default(),
    };
    if place.finished {
        place = Place::default();
    }
    let walks = walks(&o).await?;
    let started = Instant::now();
    for walk in &walks {
        if place
            .table
            .as_ref()
            .is_some_and(|t| t.as_str() > walk.table.name.as_str())
        {
            continue; // done in an earlier run
        }
        if place.table.as_deref() == Some(walk.table.name.as_str()) && place.table_done {
            continue; // its last chunk was done by a run that was stopped
        }
        if place.table.as_deref() != Some(walk.table.name.as_str()) {
            place.table = Some(walk.table.name.clone());
            place.after = None;
            place.table_done = false;
        }
        loop {
            let upto = next_bound(
                &o,
                walk,
                &m.job.city,
                place.after.as_deref(),
                args.chunk_rows,
            )
            .await?;
            let (after, upto_ref) = (place.after.clone(), upto.as_deref());
            let (rows, differ) = compare(&m, &o, &other, walk, after.as_deref(), upto_ref).await?;
            place.chunks += 1;
            place.rows += rows;
            for d in differ {
                report_difference(&mut m.report, id, &d, &other.name)?;
                place.differences.push(d);
            }
            place.after = upto.clone();
            place.table_done = upto.is_none();
            m.job.progress.verify = serde_json::to_value(&place).ok();
            m.save().await?;
            crash_point("verify-chunk");
            if upto.is_none() {
                break;
            }
        }
    }
    place.finished = true;
    m.job.progress.verify = serde_json::to_value(&place).ok();
    m.save().await?;
    let summary = format!(
        "verified {} rows of {} in {} chunks ({} tables) in {}: {}",
        render::count(place.rows),
        m.job.city,
        place.chunks,
        walks.len(),
        render::duration(started.elapsed().as_secs_f64()),
        if place.differences.is_empty() {
            "no difference".to_string()
        } else {
            format!("{} rows differ", place.differences.len())
        }
    );
    m.report.step(id, &m.job.phase.clone(), &summary)?;
    if place.differences.is_empty() {
        Ok(())
    } else {
        Err(Error::Differs(format!(
            "job {id}: {} rows differ between {} and {} (listed above)",
            place.differences.len(),
            o.name,
            other.name
        )))
    }
}

/// The moved tables of `shard` with their chunk key and compared columns.
async fn walks(shard: &Shard) -> Result<Vec<Walk>> {
    let moved = tables::city_keyed_tables(&shard.pool)
        .await
        .map_err(|e| Error::db(&shard.what, e))?;
    let mut out = Vec::new();
    for t in moved {
        let Some(key) = t.primary_key.get(1).cloned() else {
            continue; // keyed by city alone: no rows to chunk but one
        };
        let cols: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attgenerated::text
               FROM pg_attribute a
              WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
        )
        .bind(&t.sql_name)
        .fetch_all(&shard.pool)
        .await
        .map_err(|e| Error::db(&shard.what, e))?;
        let key_type = cols
            .iter()
            .find(|c| c.0 == key)
            .map(|c| c.1.clone())
            .unwrap_or_else(|| "text".into());
        out.push(Walk {
            key,
            key_type,
            columns: cols
                .into_iter()
                .filter(|c| c.2.is_empty())
                .map(|c| c.0)
                .collect(),
            table: t,
        });
    }
    Ok(out)
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `WHERE` of a chunk: the city, after `$2` and up to `$3` (text, cast to
/// the key's type; NULL for an open end).
fn chunk_filter(w: &Walk) -> String {
    let k = ident(&w.key);
    format!(
        "city = $1 AND ($2::text IS NULL OR {k} > $2::{t}) AND ($3::text IS NULL OR {k} <= $3::{t})",
        t = w.key_type
    )
}

/// A row as normalized text.
fn row_text(w: &Walk) -> String {
    let cols: Vec<String> = w
        .columns
        .iter()
        .map(|c| format!("quote_nullable({}::text)", ident(c)))
        .collect();
    format!("concat_ws(',', {})", cols.join(", "))
}

fn key_order(w: &Walk) -> String {
    w.table
        .primary_key
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The key value ending the chunk that starts after `after`: the
/// `rows`-th key from there, or none when fewer are left (the last chunk,
/// open-ended).
async fn next_bound(
    owner: &Shard,
    w: &Walk,
    city: &str,
    after: Option<&str>,
    rows: i64,
) -> Result<Option<String>> {
    let k = ident(&w.key);
    let sql = format!(
        "SELECT {k}::text FROM {t} WHERE city = $1 AND ($2::text IS NULL OR {k} > $2::{ty})
          ORDER BY {k} OFFSET $3 LIMIT 1",
        t = w.table.sql_name,
        ty = w.key_type
    );
    sqlx::query_scalar(&sql)
        .bind(city)
        .bind(after)
        .bind(rows - 1)
        .fetch_optional(&owner.pool)
        .await
        .map_err(|e| Error::db(&owner.what, e))
}

async fn checksum(
    pool: &PgPool,
    w: &Walk,
    city: &str,
    after: Option<&str>,
    upto: Option<&str>,
) -> std::result::Result<(i64, String), sqlx::Error> {
    let sql = format!(
        "SELECT count(*)::int8, coalesce(md5(string_agg({r}, E'\\n' ORDER BY {o})), '')
           FROM {t} WHERE {f}",
        r = row_text(w),
        o = key_order(w),
        t = w.table.sql_name,
        f = chunk_filter(w)
    );
    sqlx::query_as(&sql)
        .bind(city)
        .bind(after)
        .bind(upto)
        .fetch_one(pool)
        .await
}

/// Compares one chunk. When the checksums differ, the chunk's rows are
/// compared one by one, then again after each of [`RECHECKS`] catch-ups
/// (a mark written on the owner, awaited on the other shard): a row
/// counts as different only if it differs every time. A row that changed
/// on the owner while the chunk was read differs once and then catches
/// up; a row that really differs differs each time. Returns the owner's
/// rows and the rows that differ.
async fn compare(
    m: &Mover,
    o: &Shard,
    other: &Shard,
    w: &Walk,
    after: Option<&str>,
    upto: Option<&str>,
) -> Result<(i64, Vec<Difference>)> {
    let city = &m.job.city;
    let a = checksum(&o.pool, w, city, after, upto)
        .await
        .map_err(|e| Error::db(&o.what, e))?;
    let b = checksum(&other.pool, w, city, after, upto)
        .await
        .map_err(|e| Error::db(&other.what, e))?;
    if a == b {
        return Ok((a.0, Vec::new()));
    }
    let mut suspects = differences(o, other, w, city, after, upto).await?;
    for _ in 0..RECHECKS {
        if suspects.is_empty() {
            break;
        }
        let seq = mark(&o.pool, city, m.job.id, "verify")
            .await
            .map_err(|e| Error::db(&o.what, e))?;
        let until = Instant::now() + CATCH_UP;
        if !wait_mark(other, city, m.job.id, seq, Some(until)).await? {
            return Err(Error::db(
                &other.what,
                anyhow::anyhow!(
                    "has not caught up with {} within {}s; is its subscription running? \
                     (`shard-tool status {}`)",
                    o.name,
                    CATCH_UP.as_secs(),
                    m.job.id
                ),
            ));
        }
        let now = differences(o, other, w, city, after, upto).await?;
        suspects.retain(|d| now.iter().any(|n| n.key == d.key));
    }
    Ok((a.0, suspects))
}

/// How long a recheck waits for the other shard to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The rows of a differing chunk that differ, by key.
async fn differences(
    o: &Shard,
    other: &Shard,
    w: &Walk,
    city: &str,
    after: Option<&str>,
    upto: Option<&str>,
) -> Result<Vec<Difference>> {
    let key_cols: Vec<String> = w.table.primary_key[1..]
        .iter()
        .map(|c| format!("{}::text", ident(c)))
        .collect();
    let sql = format!(
        "SELECT concat_ws(',', {k}), md5({r}) FROM {t} WHERE {f}",
        k = key_cols.join(", "),
        r = row_text(w),
        t = w.table.sql_name,
        f = chunk_filter(w)
    );
    let read = |pool: PgPool| {
        let sql = sql.clone();
        async move {
            sqlx::query_as::<_, (String, String)>(&sql)
                .bind(city)
                .bind(after)
                .bind(upto)
                .fetch_all(&pool)
                .await
                .map(|rows| rows.into_iter().collect::<BTreeMap<String, String>>())
        }
    };
    let a = read(o.pool.clone())
        .await
        .map_err(|e| Error::db(&o.what, e))?;
    let b = read(other.pool.clone())
        .await
        .map_err(|e| Error::db(&other.what, e))?;
    let mut out = Vec::new();
    let mut push = |key: &String, kind: &str| {
        out.push(Difference {
            table: w.table.name.clone(),
            chunk_after: after.map(str::to_string),
            chunk_upto: upto.map(str::to_string),
            key: key.clone(),
            how: kind.into(),
        })
    };
    for (key, hash) in &a {
        match b.get(key) {
            None => push(key, "missing"),
            Some(h) if h != hash => push(key, "changed"),
            Some(_) => {}
        }
    }
    for key in b.keys().filter(|k| !a.contains_key(*k)) {
        push(key, "extra");
    }
    Ok(out)
}

fn report_difference(report: &mut Report, job: i64, d: &Difference, other: &str) -> Result<()> {
    report
        .print(|out, json| {
            if json {
                #[derive(Serialize)]
                struct Line<'a> {
                    job: i64,
                    #[serde(flatten)]
                    d: &'a Difference,
                }
                render::json_line(out, "difference", &Line { job, d })
            } else {
                let kind = match d.how.as_str() {
                    "missing" => format!("missing on {other}"),
                    "extra" => format!("only on {other}"),
                    _ => format!("different on {other}"),
                };
                writeln!(
                    out,
                    "job {job}: {} row ({}) {kind}, in the chunk after {} up to {}",
                    d.table,
                    d.key,
                    d.chunk_after.as_deref().unwrap_or("the start"),
                    d.chunk_upto.as_deref().unwrap_or("the end"),
                )
            }
        })
        .map_err(Error::from)
}
