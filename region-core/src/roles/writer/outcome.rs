//! What the writer does with an apply's result: finish the applied and
//! rejected commands (dead letters, notifications, offsets), hold or
//! reroute the refused cities, back off from a failed shard.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::apply::fold::Outcome;
use crate::apply::{Applied, ApplyError, FenceAction};
use crate::backoff::doubling;
use crate::bus::dead_letter::DeadLetter;
use crate::bus::failpoint::{self, WRITER_AFTER_COMMIT};
use crate::bus::notify::{AppliedAt, CommandState, CommandStatus, Notification};
use crate::model::event::GoneReason;
use crate::model::{Event, Id};
use crate::roles::common::add;

use super::queue::{Dispatch, Failure, Queued};
use super::{Done, Failed, Writer};

/// Inserts the rejection into `applied_commands` if the shard's fence says
/// the city is `active`; returns whether it did (false: not owned here).
/// The row names where `q` was read from `topic`, as `apply`'s do.
async fn record_rejected_if_owned(
    primary: &sqlx::PgPool,
    topic: &str,
    q: &Queued,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = primary.begin().await?;
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM city_fence WHERE city = $1 FOR SHARE")
            .bind(&q.command.city)
            .fetch_optional(&mut *tx)
            .await?;
    if state.as_deref() != Some("active") {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO applied_commands
             (city, command_id, outcome, source_topic, source_partition, source_offset)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (city, command_id) DO NOTHING",
    )
    .bind(&q.command.city)
    .bind(q.command.id)
    .bind(format!("rejected: {reason}"))
    .bind(topic)
    .bind(q.partition)
    .bind(q.offset)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Single-command applies that fail with a non-transient error before the
/// command is given up as rejected.
const STRIKES: u32 = 3;

/// Whether another try can cure the error by itself. Only errors a command's
/// data can cause (a data exception, a constraint violation, a value that
/// does not decode, a panic) are suspect; everything else — the shard down,
/// refusing connections, misconfigured, a conflict — is retried with backoff
/// for as long as it lasts, since no command should be rejected because of
/// the infrastructure.
fn classify(e: &Failed) -> Failure {
    let source = match e {
        Failed::Panic(_) => return Failure::Suspect,
        Failed::Apply(ApplyError::Db { source, .. }) => source,
        Failed::Apply(_) => return Failure::Transient,
    };
    let data_error = match source {
        sqlx::Error::Database(d) => d
            .code()
            .as_deref()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => true,
        _ => false,
    };
    if data_error {
        Failure::Suspect
    } else {
        Failure::Transient
    }
}

impl Writer {
    pub(super) async fn finish_apply(
        &mut self,
        joined: Result<Done, tokio::task::JoinError>,
    ) -> anyhow::Result<()> {
        let (dispatch, result) = match joined {
            Ok(done) => done,
            // Panics are caught inside the task; this is a cancellation,
            // which only happens when the runtime shuts down.
            Err(e) => anyhow::bail!("apply task ended: {e}"),
        };
        let now = Instant::now();
        match result {
            Ok(applied) => self.applied(dispatch, applied, now).await,
            Err(e) => {
                let kind = classify(&e);
                tracing::warn!(shard = %dispatch.shard, error = %e, ?kind, "apply failed; retrying");
                add(&self.parts.metrics.apply_failures, 1);
                let single = dispatch.cities.len() == 1 && dispatch.cities[0].2.len() == 1;
                let isolating = self.queue.isolating(&dispatch.shard);
                for (city, _, _) in &dispatch.cities {
                    if kind == Failure::Suspect && single && isolating {
                        if self.queue.strike(city) >= STRIKES {
                            let reason = format!("apply keeps failing on this command: {e}");
                            for q in self.queue.finish(city, 1) {
                                self.record_rejected(&dispatch.shard, &q, &reason).await;
                                self.reject_queued(&q, &reason).await;
                            }
                        }
                    } else {
                        self.queue.retry(city, false, now);
                    }
                }
                self.queue.shard_done(&dispatch.shard, Some(kind), now);
                Ok(())
            }
        }
    }

    async fn applied(
        &mut self,
        dispatch: Dispatch,
        applied: Applied,
        now: Instant,
    ) -> anyhow::Result<()> {
        let m = self.parts.metrics.clone();
        add(&m.batches, 1);
        // A replayed batch writes no events, so a hide is counted once.
        let hides = applied.events.iter().filter(|e| {
            matches!(
                e,
                Event::PostGone {
                    reason: GoneReason::Hidden,
                    ..
                }
            )
        });
        add(&m.hides, hides.count());
        self.queue.shard_done(&dispatch.shard, None, now);

        let mut refused = HashMap::new();
        let mut reload = false;
        for f in &applied.refused {
            refused.insert(f.city.clone(), f.action);
            match f.action {
                FenceAction::Hold => add(&m.held, f.commands.len()),
                FenceAction::Reroute => {
                    add(&m.rerouted, f.commands.len());
                    reload = true;
                }
            }
            tracing::info!(refusal = %f, "fence refused a city");
        }
        let map_changed = if reload {
            self.parts.router.map.refresh().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reloading the shard map");
                false
            })
        } else {
            false
        };

        let results: HashMap<Id, &crate::apply::CommandResult> =
            applied.results.iter().map(|r| (r.command_id, r)).collect();
        let replays = self.replay_outcomes(&dispatch, &applied).await;

        let mut finished: Vec<Queued> = Vec::new();
        let mut notes = Vec::new();
        let mut letters = Vec::new();
        // A command read twice into one batch (a producer retry, a replay
        // overlapping new reads) has one result: its second copy is a replay.
        let mut seen = std::collections::HashSet::new();
        for (city, epoch, commands) in &dispatch.cities {
            match refused.get(city) {
                Some(FenceAction::Hold) => {
                    self.queue.retry(city, true, now);
                    continue;
                }
                // Sent again at once to the shard the reloaded map names;
                // after a backoff if the map did not change (the fence and
                // the map disagree until the cutover finishes).
                Some(FenceAction::Reroute) => {
                    self.queue.retry(city, !map_changed, now);
                    continue;
                }
                None => {}
            }
            for q in self.queue.finish(city, commands.len()) {
                let Some(r) = results.get(&q.command.id) else {
                    // apply returns a result for every admitted command;
                    // a missing one would be a bug: do not finish it.
                    tracing::error!(command = %q.command.id, "no result for an applied command");
                    continue;
                };
                if !seen.insert(q.command.id) {
                    add(&m.replayed, 1);
                    finished.push(q);
                    continue;
                }
                let outcome = if r.fresh {
                    r.outcome.clone()
                } else {
                    replays
                        .get(&q.command.id)
                        .cloned()
                        .unwrap_or(Outcome::Applied { version: None })
                };
                crate::trail::applied(&q.command, &applied.shard, &outcome, r.fresh);
                let status = match &outcome {
                    Outcome::Applied { version } => {
                        add(if r.fresh { &m.applied } else { &m.replayed }, 1);
                        CommandStatus {
                            command: q.command.id,
                            city: Some(city.clone()),
                            state: CommandState::Applied,
                            reason: None,
                            post: q.command.kind.post_id(),
                            applied: Some(AppliedAt {
                                shard: applied.shard.clone(),
                                epoch: *epoch,
                                lsn: applied.lsn,
                                version: version.unwrap_or(0),
                            }),
                        }
                    }
                    Outcome::Rejected(reason) => {
                        add(&m.rejected, 1);
                        letters.push((
                            letter(&self.config.topics.commands, &q, reason),
                            q.partition,
                            q.offset,
                        ));
                        rejected_status(&q, reason)
                    }
                };
                notes.push(Notification {
                    status,
                    overwrite: r.fresh,
                });
                finished.push(q);
            }
        }
        // The queue is settled for this batch: the shard's next batch goes
        // out now, so its transaction overlaps the round trips below
        // instead of waiting for them.
        self.dispatch().await?;
        // A command whose dead letter waits is finished when it is sent.
        let mut waiting = std::collections::HashSet::new();
        for (l, partition, offset) in letters {
            if !self.send_dead_letter(l, partition, offset).await {
                waiting.insert((partition, offset));
            }
        }
        self.notify(&notes).await;
        failpoint::crash_point(WRITER_AFTER_COMMIT)?;
        for q in finished {
            if !waiting.contains(&(q.partition, q.offset)) {
                self.offsets.finished(q.partition, q.offset);
            }
        }
        Ok(())
    }

    /// The recorded outcome of commands a batch found applied already: a
    /// replay must report (and dead-letter) a rejection again, since the
    /// crash that caused the replay may have come before either.
    async fn replay_outcomes(
        &self,
        dispatch: &Dispatch,
        applied: &Applied,
    ) -> HashMap<Id, Outcome> {
        let replayed: Vec<(String, i64)> = applied
            .results
            .iter()
            .filter(|r| !r.fresh)
            .map(|r| (r.city.clone(), r.command_id.0))
            .collect();
        if replayed.is_empty() {
            return HashMap::new();
        }
        let Some(pools) = self.parts.router.shard(&dispatch.shard) else {
            return HashMap::new();
        };
        let (cities, ids): (Vec<String>, Vec<i64>) = replayed.into_iter().unzip();
        let rows: Result<Vec<(i64, String)>, sqlx::Error> = sqlx::query_as(
            "SELECT a.command_id, a.outcome FROM applied_commands a
             JOIN unnest($1::text[], $2::bigint[]) AS t(c, id)
               ON a.city = t.c AND a.command_id = t.id",
        )
        .bind(&cities)
        .bind(&ids)
        .fetch_all(&pools.primary)
        .await;
        match rows {
            Ok(rows) => rows
                .into_iter()
                .map(|(id, text)| {
                    let outcome = match text.strip_prefix("rejected: ") {
                        Some(why) => Outcome::Rejected(why.to_string()),
                        None => Outcome::Applied { version: None },
                    };
                    (Id(id), outcome)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(shard = %dispatch.shard, error = %e, "reading replayed outcomes");
                HashMap::new()
            }
        }
    }

    /// A command that failed alone, again and again, is recorded as
    /// rejected in its shard (so a replay skips it, and the status URL can
    /// read it there) — best effort: the dead letter is the durable record.
    ///
    /// Only on a shard that owns the city: `applied_commands` moves with the
    /// city, so a row written on a shard it is moving to (or has left)
    /// would be overwritten by the move's copy or stranded there. The fence
    /// is read FOR SHARE in the same transaction, as `apply` does, so a
    /// cutover cannot freeze or flip the city between the check and the
    /// insert.
    async fn record_rejected(&self, shard: &str, q: &Queued, reason: &str) {
        let Some(pools) = self.parts.router.shard(shard) else {
            return;
        };
        match record_rejected_if_owned(&pools.primary, &self.config.topics.commands, q, reason)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                command = %q.command.id, city = %q.command.city, %shard,
                "not recording a rejected command: the shard's fence does not say the city is active here"
            ),
            Err(e) => {
                tracing::warn!(command = %q.command.id, error = %e, "recording a rejected command")
            }
        }
    }

    /// A queued command rejected before any shard applied it (or given up
    /// after its strikes): dead letter and status; finished once the dead
    /// letter is sent.
    pub(super) async fn reject_queued(&mut self, q: &Queued, reason: &str) {
        add(&self.parts.metrics.rejected, 1);
        let l = letter(&self.config.topics.commands, q, reason);
        if self.send_dead_letter(l, q.partition, q.offset).await {
            self.offsets.finished(q.partition, q.offset);
        }
        self.notify(&[Notification {
            status: rejected_status(q, reason),
            overwrite: true,
        }])
        .await;
    }

    /// A message that is not a routable command, read at `partition` and
    /// `offset`: its dead letter, and a status when it had a readable id;
    /// finished once the dead letter is sent.
    pub(super) async fn reject_unapplied(
        &mut self,
        letter: DeadLetter,
        city: Option<String>,
        partition: i32,
        offset: i64,
    ) {
        add(&self.parts.metrics.rejected, 1);
        let (command, reason) = (letter.command, letter.reason.clone());
        if self.send_dead_letter(letter, partition, offset).await {
            self.offsets.finished(partition, offset);
        }
        if let Some(id) = command {
            self.notify(&[Notification {
                status: CommandStatus {
                    command: id,
                    city,
                    state: CommandState::Rejected,
                    reason: Some(reason),
                    post: None,
                    applied: None,
                },
                overwrite: true,
            }])
            .await;
        }
    }

    /// Sends the dead letter of the command read at `partition` and
    /// `offset`; whether the broker acknowledged it, so that the caller may
    /// finish the command (`bus::letters::DeadLetters::send`: bounded by
    /// `WriterConfig::dead_letter_deadline`, then sent again in the
    /// background while the command stays unfinished and its partition
    /// paused). Nothing is applied twice on the way: a rejected command
    /// changed nothing, and a replayed one is found in `applied_commands`.
    async fn send_dead_letter(&mut self, letter: DeadLetter, partition: i32, offset: i64) -> bool {
        self.backlog.send(letter, partition, offset).await
    }

    /// A few tries; then the api's wait ends in a 202 and the status URL
    /// falls back to the shard. Not worth stopping the writer for.
    async fn notify(&self, notes: &[Notification]) {
        let waits = doubling(Duration::from_millis(50), Duration::from_millis(200));
        for (attempt, wait) in waits.take(3).enumerate() {
            match self.parts.notifier.publish(notes).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "storing apply notifications");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        add(&self.parts.metrics.notify_failures, notes.len());
    }
}

/// The dead letter of a decoded command: the command as the writer
/// understood it (re-encoded: the same JSON, so it can be produced again).
fn letter(topic: &str, q: &Queued, reason: &str) -> DeadLetter {
    DeadLetter {
        payload: serde_json::to_vec(&q.command).unwrap_or_default(),
        key: q.command.city.clone(),
        reason: reason.to_string(),
        command: Some(q.command.id),
        source: format!("{topic}/{}/{}", q.partition, q.offset),
    }
}

fn rejected_status(q: &Queued, reason: &str) -> CommandStatus {
    CommandStatus {
        command: q.command.id,
        city: Some(q.command.city.clone()),
        state: CommandState::Rejected,
        reason: Some(reason.to_string()),
        post: q.command.kind.post_id(),
        applied: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with just a SQLSTATE, as Postgres would send it.
    #[derive(Debug)]
    struct State(&'static str);

    impl std::fmt::Display for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for State {}

    impl sqlx::error::DatabaseError for State {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn db(e: sqlx::Error) -> Failed {
        Failed::Apply(ApplyError::Db {
            shard: "shard-1".into(),
            source: e,
        })
    }

    #[test]
    fn only_data_errors_can_get_a_command_rejected() {
        let suspect = [
            db(sqlx::Error::Database(Box::new(State("22001")))), // value too long
            db(sqlx::Error::Database(Box::new(State("23514")))), // check violation
            Failed::Panic("bug".into()),
        ];
        for e in &suspect {
            assert_eq!(classify(e), Failure::Suspect, "{e}");
        }
        let transient = [
            db(sqlx::Error::Database(Box::new(State("55000")))), // not accepting connections
            db(sqlx::Error::Database(Box::new(State("28P01")))), // bad password
            db(sqlx::Error::Database(Box::new(State("40001")))), // serialization
            db(sqlx::Error::Database(Box::new(State("57P01")))), // admin shutdown
            db(sqlx::Error::PoolTimedOut),
            Failed::Apply(ApplyError::Conflict {
                shard: "shard-1".into(),
            }),
        ];
        for e in &transient {
            assert_eq!(classify(e), Failure::Transient, "{e}");
        }
    }
}
