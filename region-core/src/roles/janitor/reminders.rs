//! Renewal reminders: one e-mail per post and lifetime period, a day (the
//! lead) before the post expires.
//!
//! The posts are read in batches, their posters' addresses fetched per batch
//! from each poster's home catalog, and each reminder is claimed in the
//! shard's `reminders_sent` ledger and sent in one transaction: the row is
//! committed only after the send succeeded, so a send that failed is retried
//! at the next sweep, a crash between send and commit sends that one mail
//! again, and a rerun sends none. A concurrent janitor claiming the same row
//! waits on its primary key and then finds it taken.
//!
//! A claim is made only while the shard's fence says the city is `active`
//! here, read FOR SHARE in the claim's transaction: `reminders_sent` moves
//! with the city, and a shard-tool move copies it to a target (`moving`)
//! and back to a source it left (`gone`), where a claim would send the mail
//! twice. A cutover's freeze waits for a claim in progress (its send
//! included) before it starts, and no claim is made while the city is
//! frozen, so the flip never waits on a mail server.

use chrono::{DateTime, Utc};

use crate::db::ShardPools;
use crate::model::Id;
use crate::roles::janitor::Janitor;
use crate::roles::janitor::mail::Reminder;

/// What one shard's reminder pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reminded {
    pub sent: usize,
    pub without_address: usize,
    /// Sends that failed (not recorded: retried next sweep).
    pub failures: usize,
}

/// Sends the reminders due on `shard` at `now`: live posts expiring in
/// `(now, now + lead]` without a ledger row for their current `expires_at`.
pub async fn sweep_shard(
    j: &Janitor,
    shard: &ShardPools,
    now: DateTime<Utc>,
) -> anyhow::Result<Reminded> {
    let mut done = Reminded::default();
    let until = now + j.config.reminder_lead;
    let mut after: (DateTime<Utc>, String, i64) = (now, String::new(), 0);
    loop {
        let rows: Vec<(String, i64, i64, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT p.city, p.id, p.user_id, p.title, p.expires_at FROM posts p
             WHERE p.status = 'live' AND p.expires_at > $1 AND p.expires_at <= $2
               AND (p.expires_at, p.city, p.id) > ($3, $4, $5)
               AND ($6::text[] IS NULL OR p.city = ANY($6))
               AND NOT EXISTS (SELECT 1 FROM reminders_sent r
                               WHERE r.city = p.city AND r.post_id = p.id
                                 AND r.expires_at = p.expires_at)
             ORDER BY p.expires_at, p.city, p.id
             LIMIT $7",
        )
        .bind(now)
        .bind(until)
        .bind(after.0)
        .bind(&after.1)
        .bind(after.2)
        .bind(j.config.cities.as_deref())
        .bind(j.config.batch)
        .fetch_all(&shard.primary)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(done);
        };
        after = (last.4, last.0.clone(), last.1);
        let full = rows.len() as i64 == j.config.batch;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| j.owns(&r.0, &shard.name).is_some())
            .collect();
        let users: Vec<Id> = rows.iter().map(|r| Id(r.2)).collect();
        let emails = j.parts.homes.emails(&users).await?;
        for (city, post_id, user_id, title, expires_at) in rows {
            let address = emails.get(&Id(user_id));
            let outcome = if address.is_some() {
                "sent"
            } else {
                "no address"
            };
            let mut tx = shard.primary.begin().await?;
            let fence: Option<String> =
                sqlx::query_scalar("SELECT state FROM city_fence WHERE city = $1 FOR SHARE")
                    .bind(&city)
                    .fetch_optional(&mut *tx)
                    .await?;
            if fence.as_deref() != Some("active") {
                // Not ours (now): its owner sends it, or this shard again
                // after the freeze is over.
                continue;
            }
            let claimed = sqlx::query(
                "INSERT INTO reminders_sent (city, post_id, expires_at, outcome, sent_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (city, post_id, expires_at) DO NOTHING",
            )
            .bind(&city)
            .bind(post_id)
            .bind(expires_at)
            .bind(outcome)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                continue;
            }
            if let Some(to) = address {
                let reminder = Reminder {
                    to: to.clone(),
                    city: city.clone(),
                    post_id: Id(post_id),
                    title,
                    expires_at,
                };
                if let Err(e) = j.parts.mailer.send(&reminder).await {
                    // Dropping `tx` rolls the claim back: retried next sweep.
                    tracing::warn!(%city, post_id, error = format!("{e:#}"), "reminder not sent");
                    done.failures += 1;
                    continue;
                }
                done.sent += 1;
            } else {
                done.without_address += 1;
            }
            tx.commit().await?;
        }
        if !full {
            return Ok(done);
        }
    }
}
