//! The outbox relay: moves each shard's `outbox` rows, oldest first, to
//! `<region>.events` (keyed by city, headers post id and version), and
//! deletes them once the broker acknowledged them.
//!
//! A round is one transaction: lock a batch of rows (`FOR UPDATE SKIP
//! LOCKED`, so a second relay takes other rows rather than the same ones),
//! produce them, delete them, commit. A crash anywhere before the commit
//! leaves the rows in place and the next round sends them again: events may
//! be duplicated, never lost, and consumers are idempotent by `(post id,
//! version)`. One task per shard, so a shard that is down delays only its
//! own events.
//!
//! Only the rows of cities the shard owns are sent: those whose `city_fence`
//! is `active` or `frozen` (the owner during a cutover's freeze). A move
//! replicates a city's outbox rows to the target (`moving`) and, after the
//! cutover, the reverse replication brings the target's back to the source
//! (`gone`): both copies stay put until their shard owns the city, so each
//! event is sent by its owner, and a rollback finds them still there.

pub mod metrics;
mod start;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::backoff::doubling;
use crate::bus::failpoint::{self, RELAY_AFTER_PRODUCE};
use crate::bus::{EVENT_TYPE_HEADER, POST_ID_HEADER, Producer, VERSION_HEADER};
use crate::model::Event;
use crate::roles::common::add;
use crate::trail;
use metrics::RelayMetrics;
pub use start::{RelayArgs, run};

/// The NOTIFY channel `apply` signals after writing outbox rows.
pub const OUTBOX_CHANNEL: &str = "outbox";

/// Wait after a first failed round; doubles with each failure that
/// follows, up to `retry_max` (the waits were 100 ms × 2^failures).
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// What the relay is told.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The events topic.
    pub topic: String,
    /// Rows per round (one transaction, produced concurrently).
    pub batch: i64,
    /// How often a shard is polled when no NOTIFY came (a missed
    /// notification, a listener reconnecting).
    pub poll: Duration,
    /// Longest wait after failed rounds.
    pub retry_max: Duration,
    /// Relay only these cities' rows. For tests, which run a relay of their
    /// own beside the stack's; `None` (every row) otherwise.
    pub cities: Option<Vec<String>>,
}

impl RelayConfig {
    /// Defaults for the events topic `topic`.
    pub fn new(topic: &str) -> Self {
        RelayConfig {
            topic: topic.to_string(),
            batch: 500,
            poll: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            cities: None,
        }
    }
}

/// One shard the relay drains.
#[derive(Debug, Clone)]
pub struct RelayShard {
    pub name: String,
    pub primary: PgPool,
}

/// Why a round failed; the rows stay and the round is tried again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("shard {shard}: {source}")]
    Db {
        shard: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Produce(#[from] crate::bus::ProduceError),
    #[error(transparent)]
    Crashed(#[from] failpoint::Crashed),
    /// A drain task panicked (a bug): the role exits so its supervisor
    /// restarts it, rather than leave a shard undrained.
    #[error("relay task ended: {0}")]
    Task(String),
}

/// An outbox row's event, if this build can read it.
fn decode(event: &serde_json::Value) -> Option<Event> {
    serde_json::from_value(event.clone()).ok()
}

/// The post id, version and type of an event, for its headers.
fn event_headers(event: &Event) -> (String, String, &'static str) {
    match event {
        Event::PostChanged { post, .. } => (
            post.id.to_string(),
            post.version.to_string(),
            "post_changed",
        ),
        Event::PostGone {
            post_id, version, ..
        } => (post_id.to_string(), version.to_string(), "post_gone"),
    }
}

/// One round on one shard: returns how many rows it moved.
pub async fn round(
    shard: &RelayShard,
    config: &RelayConfig,
    producer: &Producer,
    metrics: &RelayMetrics,
) -> Result<usize, RelayError> {
    let db = |source| RelayError::Db {
        shard: shard.name.clone(),
        source,
    };
    let mut tx = shard.primary.begin().await.map_err(db)?;
    // The fence in a subquery, not a join: FOR UPDATE would lock (and
    // SKIP LOCKED skip) the fence rows too, which every apply holds FOR
    // SHARE. Not locked, so a cutover never waits for a relay round: rows
    // read just before a flip are still sent (and deleted) by the old
    // owner, and the target may send its copies again (at least once;
    // consumers compare versions).
    let rows: Vec<(String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT city, seq, event FROM outbox o
         WHERE ($2::text[] IS NULL OR city = ANY($2))
           AND EXISTS (SELECT 1 FROM city_fence f
                       WHERE f.city = o.city AND f.state IN ('active', 'frozen'))
         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(config.batch)
    .bind(config.cities.as_ref())
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Sent concurrently, in seq order: the idempotent producer keeps the
    // order within a partition, so a city's events arrive in order unless a
    // producer rebuild re-sends some (consumers compare versions anyway).
    // An outbox row this build cannot read is still sent (never dropped),
    // headerless; the publisher dead-letters it.
    let sends = rows.iter().map(|(city, _, event)| async move {
        let payload = serde_json::to_vec(event).unwrap_or_default();
        let decoded = decode(event);
        let headers = decoded.as_ref().map(event_headers);
        let mut h: Vec<(&str, &[u8])> = Vec::new();
        if let Some((post, version, kind)) = &headers {
            h.push((POST_ID_HEADER, post.as_bytes()));
            h.push((VERSION_HEADER, version.as_bytes()));
            h.push((EVENT_TYPE_HEADER, kind.as_bytes()));
        }
        producer.produce(&config.topic, city, &payload, &h).await?;
        if let Some(e) = &decoded {
            trail::relayed(e, &shard.name);
        }
        Ok::<_, RelayError>(())
    });
    try_join_all(sends).await?;
    add(&metrics.relayed, rows.len());
    failpoint::crash_point(RELAY_AFTER_PRODUCE)?;
    let (cities, seqs): (Vec<String>, Vec<i64>) = rows.into_iter().map(|(c, s, _)| (c, s)).unzip();
    let deleted = sqlx::query(
        "DELETE FROM outbox o USING unnest($1::text[], $2::bigint[]) AS t(c, s)
         WHERE o.city = t.c AND o.seq = t.s",
    )
    .bind(&cities)
    .bind(&seqs)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    tx.commit().await.map_err(db)?;
    add(&metrics.outbox_deleted, deleted as usize);
    Ok(seqs.len())
}

/// Drains one shard until aborted: full rounds back to back, then waits for
/// a NOTIFY on `outbox` or the poll period.
pub async fn drain_shard(
    shard: RelayShard,
    config: Arc<RelayConfig>,
    producer: Producer,
    metrics: Arc<RelayMetrics>,
) -> Result<(), RelayError> {
    let mut listener: Option<PgListener> = None;
    let retry_waits = || doubling(FIRST_RETRY, config.retry_max);
    let mut waits = retry_waits();
    loop {
        if listener.is_none() {
            match PgListener::connect_with(&shard.primary).await {
                Ok(mut l) => match l.listen(OUTBOX_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(shard = %shard.name, error = %e, "LISTEN outbox"),
                },
                Err(e) => {
                    tracing::debug!(shard = %shard.name, error = %e, "outbox listener cannot connect")
                }
            }
        }
        match round(&shard, &config, &producer, &metrics).await {
            Ok(n) if n as i64 >= config.batch => {
                waits = retry_waits();
                continue;
            }
            Ok(_) => waits = retry_waits(),
            Err(RelayError::Crashed(c)) => return Err(RelayError::Crashed(c)),
            Err(e) => {
                add(&metrics.relay_failures, 1);
                let wait = waits.next().unwrap_or(config.retry_max);
                tracing::warn!(shard = %shard.name, error = %e, ?wait, "relay round failed; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        match listener.as_mut() {
            Some(l) => {
                tokio::select! {
                    n = l.recv() => if let Err(e) = n {
                        tracing::warn!(shard = %shard.name, error = %e, "outbox listener lost");
                        listener = None;
                    },
                    _ = tokio::time::sleep(config.poll) => {}
                }
            }
            None => tokio::time::sleep(config.poll).await,
        }
    }
}

/// Runs one drain task per shard of `shards` until `shutdown` resolves, or
/// until a crash point configured to fail is reached in any of them. When
/// `shards` changes (a shard added to the region, or its primary moved),
/// every task is stopped and one started per shard of the new list; a
/// round stopped mid-way leaves its rows, which the next round sends. A
/// closed channel means the list stays as it is.
pub async fn drain_outboxes(
    mut shards: watch::Receiver<Vec<RelayShard>>,
    config: RelayConfig,
    producer: Producer,
    metrics: Arc<RelayMetrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RelayError> {
    let config = Arc::new(config);
    let mut tasks = tokio::task::JoinSet::new();
    let start = |tasks: &mut tokio::task::JoinSet<_>, list: Vec<RelayShard>| {
        for shard in list {
            tracing::info!(shard = %shard.name, topic = %config.topic, "relay draining");
            tasks.spawn(drain_shard(
                shard,
                config.clone(),
                producer.clone(),
                metrics.clone(),
            ));
        }
    };
    start(&mut tasks, shards.borrow_and_update().clone());
    let mut following = true;
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            changed = shards.changed(), if following => {
                if changed.is_err() {
                    following = false;
                    continue;
                }
                tasks.abort_all();
                let mut failed = None;
                while let Some(ended) = tasks.join_next().await {
                    if let Ok(Err(e)) = ended {
                        failed = Some(e);
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                start(&mut tasks, shards.borrow_and_update().clone());
            }
            Some(ended) = tasks.join_next() => break match ended {
                Ok(r) => r,
                Err(e) => Err(RelayError::Task(e.to_string())),
            },
        }
    };
    // Aborting a round mid-way drops its transaction: the rows stay.
    tasks.abort_all();
    producer.flush(Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_from_the_event() {
        let gone = serde_json::json!({"type": "post_gone", "command_id": "1", "city": "boston",
            "post_id": "42", "version": 3, "reason": "deleted"});
        assert_eq!(
            decode(&gone).as_ref().map(event_headers),
            Some(("42".into(), "3".into(), "post_gone"))
        );
        assert!(decode(&serde_json::json!({"type": "other"})).is_none());
    }
}
