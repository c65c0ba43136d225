//! `apply`: one transaction per batch per shard (design §4).
//!
//! In order: lock and check each city's fence, claim the commands in
//! `applied_commands` (a replayed one is skipped), lock and read the rows the
//! commands touch, fold the commands over them (`fold`), write the result
//! with guarded multi-row upserts, write the events to the outbox, commit.
//! Everything or nothing: a crash before the commit leaves no trace, and the
//! replay after it is applied once.

pub mod fold;
mod images;

use std::collections::{HashMap, HashSet};

use sqlx::{PgPool, Postgres, Transaction};

use crate::lsn::{self, Lsn};
use crate::model::post::POST_COLUMNS;
use crate::model::{Command, Event, Id, IdGenerator, Post};
use crate::token::WriteToken;
use fold::{Current, Outcome};

/// The commands of one city, with the epoch the caller routed them with
/// (from its shard map, not the one inside each command).
#[derive(Debug, Clone)]
pub struct CityBatch {
    pub city: String,
    pub epoch: i64,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, Copy)]
pub struct ApplyConfig {
    /// Distinct reporters that hide a post.
    pub hide_after_reports: usize,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            hide_after_reports: 3,
        }
    }
}

/// What the caller must do with a city the shard's fence refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceAction {
    /// The city moved (epoch changed, or it is gone from this shard):
    /// reload the shard map and send the commands to the city's new shard.
    Reroute,
    /// The city is frozen for a cutover and its freeze's deadline has not
    /// passed: hold its commands and retry soon (past the deadline `apply`
    /// treats the city as active).
    Hold,
}

/// The shard's fence refused a city's commands; none of them was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "shard {shard} refused city {city} routed with epoch {routed_epoch}: \
     the shard's fence says {fence}; {}",
    match .action {
        FenceAction::Reroute => "reload the shard map and re-route its commands",
        FenceAction::Hold => "hold its commands and retry after the cutover",
    }
)]
pub struct FenceError {
    pub shard: String,
    pub city: String,
    pub routed_epoch: i64,
    /// `epoch N state S`, or `no fence row`.
    pub fence: String,
    pub action: FenceAction,
    pub commands: Vec<Id>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("shard {shard}: {source}")]
    Db {
        shard: String,
        #[source]
        source: sqlx::Error,
    },
    /// A guarded upsert found a newer row than the one it read: another
    /// writer changed it concurrently. Rolled back; safe to retry the batch.
    #[error("shard {shard}: concurrent change to posts of this batch; retry it")]
    Conflict { shard: String },
    #[error("shard {shard}: no id for an outbox row: {source}")]
    Ids {
        shard: String,
        #[source]
        source: crate::model::idgen::IdError,
    },
}

/// One command's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub command_id: Id,
    pub city: String,
    /// The post the command is about, if any (a delete-user has none).
    pub post_id: Option<Id>,
    pub outcome: Outcome,
    /// False when this command had been applied before (a replay): nothing
    /// was written for it this time.
    pub fresh: bool,
}

#[derive(Debug, Clone)]
pub struct Applied {
    pub shard: String,
    /// A WAL position at or after this batch's commit on the shard primary.
    pub lsn: Lsn,
    pub results: Vec<CommandResult>,
    /// The events written to the outbox (empty for a replayed batch).
    pub events: Vec<Event>,
    pub refused: Vec<FenceError>,
    epochs: HashMap<String, i64>,
}

impl Applied {
    /// The read-your-writes token for one command of the batch.
    pub fn token(&self, command_id: Id) -> Option<WriteToken> {
        let r = self.results.iter().find(|r| r.command_id == command_id)?;
        // A command that produced no version (rejected, a replay, a repeated
        // report) names no post: the edge has no page to compare it with.
        let (post, version) = match (r.outcome.clone(), r.post_id) {
            (Outcome::Applied { version: Some(v) }, Some(post)) => (post, v),
            _ => (Id(0), 0),
        };
        Some(WriteToken {
            epoch: *self.epochs.get(&r.city)?,
            shard: self.shard.clone(),
            lsn: self.lsn,
            post,
            version,
        })
    }
}

/// The shard a batch goes to.
#[derive(Debug, Clone)]
pub struct ShardTarget {
    pub name: String,
    pub primary: PgPool,
}

/// Where a batch's commands were read: a topic, and per command id its
/// `(partition, offset)` (the latest, when one was read twice). The dedup
/// rows keep it, so that the janitor deletes a row only once no copy of its
/// command can be read again (migration 2019).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAt {
    pub topic: String,
    pub at: HashMap<Id, (i32, i64)>,
}

impl ReadAt {
    /// Records that `command` was read at `(partition, offset)`; a later
    /// offset wins.
    pub fn add(&mut self, command: Id, partition: i32, offset: i64) {
        let e = self.at.entry(command).or_insert((partition, offset));
        if offset > e.1 {
            *e = (partition, offset);
        }
    }
}

/// [`apply_read`] for commands that were not read from a topic (tests,
/// tools): their dedup rows name no source, and the janitor keeps them.
pub async fn apply(
    shard: &ShardTarget,
    batch: &[CityBatch],
    ids: &IdGenerator,
    config: ApplyConfig,
) -> Result<Applied, ApplyError> {
    apply_read(shard, batch, &ReadAt::default(), ids, config).await
}

/// Applies `batch` (read from the commands topic at `read`) to `shard`.
pub async fn apply_read(
    shard: &ShardTarget,
    batch: &[CityBatch],
    read: &ReadAt,
    ids: &IdGenerator,
    config: ApplyConfig,
) -> Result<Applied, ApplyError> {
    let db = |source| ApplyError::Db {
        shard: shard.name.clone(),
        source,
    };
    let mut tx = shard.primary.begin().await.map_err(db)?;

    // 1. Fences. FOR SHARE: a cutover's UPDATE of the row waits for this
    //    transaction, and this read waits for a cutover in progress and then
    //    sees its result, so a write routed with the old epoch cannot slip in
    //    while the city is being switched.
    //
    //    A freeze ends at its deadline (`frozen_until`) even when nobody
    //    comes back to lift it (shard-tool killed mid-cutover): a `frozen`
    //    fence past it reads as `active` here and its commands apply; one
    //    before it, or with no deadline, holds them. The deadline is judged
    //    by this shard's own clock, the one the flip's `UPDATE ... AND
    //    frozen_until > clock_timestamp()` uses, so the two never disagree
    //    by a skew between machines; and by `clock_timestamp()`, not
    //    `now()`, which is the start of our transaction and could lag the
    //    moment we actually hold the row by however long we waited for it.
    //
    //    Race-free against the flip: the CASE is part of the locking query,
    //    so when a flip holds the row, FOR SHARE waits for it and then
    //    re-evaluates the query on the row version the flip committed (the
    //    city is `gone`: reroute), never on the version we first read. When
    //    we hold the row first, the flip's UPDATE waits for our commit, so
    //    our commands are on the source before the fence says `gone`. For
    //    that second case to be safe too, the flip must judge its deadline
    //    after it holds the row (the flip must lock the fence row FOR
    //    UPDATE before its guarded UPDATE, so its clock_timestamp() is read
    //    after ours and sees the deadline passed whenever we did): an UPDATE that
    //    judged its WHERE first and only then queued behind our lock would
    //    not re-check it, as our lock changed no column.
    let cities: Vec<String> = batch.iter().map(|b| b.city.clone()).collect();
    let fences: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT city, epoch,
                CASE WHEN state = 'frozen' AND frozen_until <= clock_timestamp()
                     THEN 'active' ELSE state END
         FROM city_fence WHERE city = ANY($1)
         ORDER BY city FOR SHARE",
    )
    .bind(&cities)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut refused = Vec::new();
    let mut admitted: Vec<&CityBatch> = Vec::new();
    for b in batch {
        let fence = fences.iter().find(|(c, _, _)| *c == b.city);
        let verdict = match fence {
            Some((_, epoch, state)) if *epoch == b.epoch && state == "active" => None,
            Some((_, epoch, state)) if *epoch == b.epoch && state == "frozen" => {
                Some((format!("epoch {epoch} state {state}"), FenceAction::Hold))
            }
            Some((_, epoch, state)) => {
                Some((format!("epoch {epoch} state {state}"), FenceAction::Reroute))
            }
            None => Some(("no fence row".to_string(), FenceAction::Reroute)),
        };
        // A command filed under another city's batch is a caller bug; refuse
        // the batch's commands rather than apply them under the wrong fence.
        let verdict = match b.commands.iter().find(|c| c.city != b.city) {
            Some(c) => Some((
                format!("nothing: command {} is for city {}", c.id, c.city),
                FenceAction::Reroute,
            )),
            None => verdict,
        };
        match verdict {
            None => admitted.push(b),
            Some((fence, action)) => refused.push(FenceError {
                shard: shard.name.clone(),
                city: b.city.clone(),
                routed_epoch: b.epoch,
                fence,
                action,
                commands: b.commands.iter().map(|c| c.id).collect(),
            }),
        }
    }
    let epochs: HashMap<String, i64> = admitted.iter().map(|b| (b.city.clone(), b.epoch)).collect();

    // 2. Claim. Commands already in applied_commands come back missing from
    //    RETURNING and are skipped; a concurrent writer claiming the same
    //    command waits on the primary key and then skips it.
    //    Each row records where its command was read (migration 2019).
    let all: Vec<&Command> = admitted.iter().flat_map(|b| b.commands.iter()).collect();
    let (claim_cities, claim_ids): (Vec<String>, Vec<i64>) =
        all.iter().map(|c| (c.city.clone(), c.id.0)).unzip();
    let (partitions, offsets): (Vec<Option<i32>>, Vec<Option<i64>>) = all
        .iter()
        .map(|c| read.at.get(&c.id).map(|&(p, o)| (p, o)).unzip())
        .unzip();
    let topic = (!read.at.is_empty()).then_some(read.topic.as_str());
    let claimed: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO applied_commands
             (city, command_id, outcome, source_topic, source_partition, source_offset)
         SELECT DISTINCT ON (c, id) c, id, 'applied', $3, p, o
         FROM unnest($1::text[], $2::bigint[], $4::int[], $5::bigint[]) AS t(c, id, p, o)
         ORDER BY c, id, o DESC NULLS LAST
         ON CONFLICT (city, command_id) DO NOTHING
         RETURNING city, command_id",
    )
    .bind(&claim_cities)
    .bind(&claim_ids)
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let claimed: HashSet<(String, i64)> = claimed.into_iter().collect();
    move_replayed_sources(&mut tx, &all, &claimed, read)
        .await
        .map_err(db)?;
    let mut seen = HashSet::new();
    let fresh: Vec<Command> = all
        .iter()
        .filter(|c| {
            claimed.contains(&(c.city.clone(), c.id.0)) && seen.insert((c.city.clone(), c.id))
        })
        .map(|c| (*c).clone())
        .collect();

    // 3. Read and lock what the fresh commands touch.
    let current = load_current(&mut tx, &fresh).await.map_err(db)?;

    // 4. Fold.
    let folded = fold::fold(&fresh, current, config.hide_after_reports);

    // 5. Write.
    write_posts(&mut tx, &shard.name, folded.changed.values()).await?;
    write_reports(&mut tx, &folded.reports).await.map_err(db)?;
    images::write_images(&mut tx, &folded.images, &folded.cleared_images)
        .await
        .map_err(db)?;
    let rejected: Vec<(String, i64, String)> = folded
        .outcomes
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Rejected(_)))
        .map(|(id, city, o)| (city.clone(), id.0, o.as_db_text()))
        .collect();
    if !rejected.is_empty() {
        let (c, rest): (Vec<String>, Vec<(i64, String)>) =
            rejected.into_iter().map(|(c, i, o)| (c, (i, o))).unzip();
        let (i, o): (Vec<i64>, Vec<String>) = rest.into_iter().unzip();
        sqlx::query(
            "UPDATE applied_commands a SET outcome = t.o
             FROM unnest($1::text[], $2::bigint[], $3::text[]) AS t(c, id, o)
             WHERE a.city = t.c AND a.command_id = t.id",
        )
        .bind(&c)
        .bind(&i)
        .bind(&o)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    write_outbox(&mut tx, &shard.name, &folded.events, ids).await?;

    tx.commit().await.map_err(db)?;

    // 6. The token's LSN: the insert position after our commit is at or past
    //    the commit record, so a replica that replayed it sees this batch.
    let lsn = lsn::fetch("SELECT pg_current_wal_insert_lsn()::text", &shard.primary)
        .await
        .map_err(db)?
        .unwrap_or_default();

    let fresh_ids: HashSet<(String, Id)> = fresh.iter().map(|c| (c.city.clone(), c.id)).collect();
    let posts: HashMap<Id, Id> = all
        .iter()
        .filter_map(|c| Some((c.id, c.kind.post_id()?)))
        .collect();
    let mut results: Vec<CommandResult> = folded
        .outcomes
        .into_iter()
        .map(|(id, city, outcome)| CommandResult {
            command_id: id,
            city,
            post_id: posts.get(&id).copied(),
            outcome,
            fresh: true,
        })
        .collect();
    for c in all {
        if !fresh_ids.contains(&(c.city.clone(), c.id)) {
            results.push(CommandResult {
                command_id: c.id,
                city: c.city.clone(),
                post_id: c.kind.post_id(),
                outcome: Outcome::Applied { version: None },
                fresh: false,
            });
        }
    }
    Ok(Applied {
        shard: shard.name.clone(),
        lsn,
        results,
        events: folded.events,
        refused,
        epochs,
    })
}

/// Commands read again that were applied before (not in `claimed`): their
/// rows move to the later copy, so that the janitor keeps each row as long
/// as any copy of its command can still be read (a retry that produced the
/// command anew sits at a later offset than the first). A replay of the
/// same or an older copy changes nothing.
async fn move_replayed_sources(
    tx: &mut Transaction<'_, Postgres>,
    all: &[&Command],
    claimed: &HashSet<(String, i64)>,
    read: &ReadAt,
) -> Result<(), sqlx::Error> {
    let mut seen = HashSet::new();
    let mut rows: (Vec<String>, Vec<i64>, Vec<i32>, Vec<i64>) = Default::default();
    for c in all {
        if claimed.contains(&(c.city.clone(), c.id.0)) || !seen.insert((&c.city, c.id)) {
            continue;
        }
        if let Some(&(p, o)) = read.at.get(&c.id) {
            rows.0.push(c.city.clone());
            rows.1.push(c.id.0);
            rows.2.push(p);
            rows.3.push(o);
        }
    }
    if rows.0.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE applied_commands a
         SET source_topic = $3, source_partition = t.p, source_offset = t.o
         FROM unnest($1::text[], $2::bigint[], $4::int[], $5::bigint[]) AS t(c, id, p, o)
         WHERE a.city = t.c AND a.command_id = t.id
           AND (a.source_offset IS NULL OR a.source_topic <> $3
                OR a.source_partition <> t.p OR a.source_offset < t.o)",
    )
    .bind(&rows.0)
    .bind(&rows.1)
    .bind(&read.topic)
    .bind(&rows.2)
    .bind(&rows.3)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn load_current(
    tx: &mut Transaction<'_, Postgres>,
    commands: &[Command],
) -> Result<Current, sqlx::Error> {
    use crate::model::CommandKind;
    let mut post_keys: (Vec<String>, Vec<i64>) = Default::default();
    let mut user_keys: (Vec<String>, Vec<i64>) = Default::default();
    let mut report_keys: (Vec<String>, Vec<i64>) = Default::default();
    for c in commands {
        if let Some(p) = c.kind.post_id() {
            post_keys.0.push(c.city.clone());
            post_keys.1.push(p.0);
        }
        if let CommandKind::Report { post_id, .. } = &c.kind {
            report_keys.0.push(c.city.clone());
            report_keys.1.push(post_id.0);
        }
        if let CommandKind::DeleteUser { user_id } = &c.kind {
            user_keys.0.push(c.city.clone());
            user_keys.1.push(user_id.0);
        }
    }
    let mut current = Current::default();
    if commands.is_empty() {
        return Ok(current);
    }
    // By id, and (for a delete-user) by user: two queries, each a join on
    // its own index (primary key; posts_city_user). One query with `OR`
    // between the two key lists could use neither index and scanned every
    // post of the shard in each batch.
    let mut posts = lock_posts(tx, "id", &post_keys).await?;
    posts.extend(lock_posts(tx, "user_id", &user_keys).await?);
    for p in posts {
        current.posts.insert((p.city.clone(), p.id), p);
    }
    images::load_photos(tx, &mut current.posts).await?;
    if !report_keys.0.is_empty() {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT city, post_id, reporter_id FROM reports
             WHERE (city, post_id) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))",
        )
        .bind(&report_keys.0)
        .bind(&report_keys.1)
        .fetch_all(&mut **tx)
        .await?;
        for (city, post, reporter) in rows {
            current
                .reporters
                .entry((city, Id(post)))
                .or_default()
                .insert(Id(reporter));
        }
    }
    Ok(current)
}

/// The posts whose `(city, column)` is one of `keys`, locked FOR UPDATE:
/// they stay as read until commit, so the fold's versions are the ones the
/// guarded upsert compares against. `column` is `id` or `user_id`, never
/// input.
async fn lock_posts(
    tx: &mut Transaction<'_, Postgres>,
    column: &str,
    keys: &(Vec<String>, Vec<i64>),
) -> Result<Vec<Post>, sqlx::Error> {
    if keys.0.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts
         JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::bigint[])) AS k(k_city, k_value)
           ON city = k_city AND {column} = k_value
         ORDER BY city, id FOR UPDATE OF posts"
    );
    sqlx::query_as(&sql)
        .bind(&keys.0)
        .bind(&keys.1)
        .fetch_all(&mut **tx)
        .await
}

/// One multi-row upsert for every changed post. The WHERE never lets a row
/// go back to a lower (or equal) version; since the rows were read FOR
/// UPDATE, a row it skips means something is badly wrong, and the whole
/// batch rolls back rather than half-apply.
async fn write_posts<'a>(
    tx: &mut Transaction<'_, Postgres>,
    shard: &str,
    posts: impl Iterator<Item = &'a Post>,
) -> Result<(), ApplyError> {
    let posts: Vec<&Post> = posts.collect();
    if posts.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Post) -> String| posts.iter().map(|p| f(p)).collect::<Vec<String>>();
    let status: Vec<String> = posts
        .iter()
        .map(|p| {
            serde_json::to_value(p.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    let affected = sqlx::query(
        "INSERT INTO posts (city, id, user_id, category, title, description, price, location,
                            image_count, status, version, created_at, updated_at, expires_at,
                            listed_at)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                              $6::text[], $7::bigint[], $8::text[], $9::smallint[], $10::text[],
                              $11::bigint[], $12::timestamptz[], $13::timestamptz[],
                              $14::timestamptz[], $15::timestamptz[])
         ON CONFLICT (city, id) DO UPDATE SET
            user_id = excluded.user_id, category = excluded.category, title = excluded.title,
            description = excluded.description, price = excluded.price,
            location = excluded.location, image_count = excluded.image_count,
            status = excluded.status, version = excluded.version,
            updated_at = excluded.updated_at, expires_at = excluded.expires_at,
            listed_at = excluded.listed_at
         WHERE posts.version < excluded.version",
    )
    .bind(col(|p| p.city.clone()))
    .bind(posts.iter().map(|p| p.id.0).collect::<Vec<_>>())
    .bind(posts.iter().map(|p| p.user_id.0).collect::<Vec<_>>())
    .bind(col(|p| p.fields.category.clone()))
    .bind(col(|p| p.fields.title.clone()))
    .bind(col(|p| p.fields.description.clone()))
    .bind(posts.iter().map(|p| p.fields.price).collect::<Vec<_>>())
    .bind(
        posts
            .iter()
            .map(|p| p.fields.location.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        posts
            .iter()
            .map(|p| p.fields.image_count)
            .collect::<Vec<_>>(),
    )
    .bind(status)
    .bind(posts.iter().map(|p| p.version).collect::<Vec<_>>())
    .bind(posts.iter().map(|p| p.created_at).collect::<Vec<_>>())
    .bind(posts.iter().map(|p| p.updated_at).collect::<Vec<_>>())
    .bind(posts.iter().map(|p| p.expires_at).collect::<Vec<_>>())
    .bind(posts.iter().map(|p| p.listed_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(|source| ApplyError::Db {
        shard: shard.to_string(),
        source,
    })?
    .rows_affected();
    if affected != posts.len() as u64 {
        return Err(ApplyError::Conflict {
            shard: shard.to_string(),
        });
    }
    Ok(())
}

async fn write_reports(
    tx: &mut Transaction<'_, Postgres>,
    reports: &[fold::NewReport],
) -> Result<(), sqlx::Error> {
    if reports.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO reports (city, post_id, reporter_id, reason, created_at)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                              $5::timestamptz[])
         ON CONFLICT DO NOTHING",
    )
    .bind(reports.iter().map(|r| r.city.clone()).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.post_id.0).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.reporter_id.0).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.reason.clone()).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_outbox(
    tx: &mut Transaction<'_, Postgres>,
    shard: &str,
    events: &[Event],
    ids: &IdGenerator,
) -> Result<(), ApplyError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(events.len());
    for _ in events {
        let id = ids.next().await.map_err(|source| ApplyError::Ids {
            shard: shard.to_string(),
            source,
        })?;
        seqs.push(id.0);
    }
    let bodies: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(serde_json::Value::Null))
        .collect();
    sqlx::query(
        "INSERT INTO outbox (city, seq, event)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::jsonb[])",
    )
    .bind(
        events
            .iter()
            .map(|e| e.city().to_string())
            .collect::<Vec<_>>(),
    )
    .bind(&seqs)
    .bind(&bodies)
    .execute(&mut **tx)
    .await
    .map_err(|source| ApplyError::Db {
        shard: shard.to_string(),
        source,
    })?;
    // Wakes the relay (roles::relay LISTENs on `outbox`) at commit, so
    // new events go out without waiting for its poll; delivered only if the
    // transaction commits, and folded into one per transaction.
    sqlx::query("SELECT pg_notify('outbox', '')")
        .execute(&mut **tx)
        .await
        .map_err(|source| ApplyError::Db {
            shard: shard.to_string(),
            source,
        })?;
    Ok(())
}
