//! Node numbers for id generators, leased from the catalog's `node_leases`.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::clock::SharedClock;
use crate::model::IdGenerator;
use crate::model::id::MAX_NODE;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("every node number (0..={MAX_NODE}) is leased; wait for one to expire")]
    Exhausted,
    #[error("node lease {0} was lost (expired and taken); stop issuing ids")]
    Lost(u16),
    #[error("catalog query for node leases")]
    Db(#[from] sqlx::Error),
}

/// A held lease. Renew it well before `ttl` passes; `valid_until` is the
/// local instant past which it must be treated as gone, measured from
/// before the query that granted it.
#[derive(Debug, Clone)]
pub struct NodeLease {
    pub node: u16,
    pub holder: String,
    pub ttl: Duration,
    pub valid_until: Instant,
}

impl NodeLease {
    /// What every long-running role does for its ids: lease a node number
    /// (held by `<role>/<region>/<pid>/<random>`, so two processes of one
    /// role never share one), build the generator on it, and keep the
    /// lease renewed in the background (the returned task). The lease is
    /// returned too, for `release` on a clean shutdown.
    pub async fn ids_for(
        catalog: &PgPool,
        role: &str,
        region: &str,
        region_number: u16,
        clock: SharedClock,
    ) -> Result<(NodeLease, IdGenerator, tokio::task::JoinHandle<()>), LeaseError> {
        let holder = format!(
            "{role}/{region}/{}/{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let lease = NodeLease::acquire(catalog, &holder, Duration::from_secs(60)).await?;
        let ids = IdGenerator::new(clock, region_number, lease.node, lease.valid_until);
        let renew = lease.clone().keep_renewed(catalog.clone(), ids.clone());
        Ok((lease, ids, renew))
    }

    /// Takes the lowest node number that is free or whose lease expired.
    pub async fn acquire(
        catalog: &PgPool,
        holder: &str,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        // Two processes may pick the same free number at once: the upsert's
        // WHERE lets only one of them take it, and the other retries.
        for _ in 0..8 {
            let started = Instant::now();
            let node: Option<i16> = sqlx::query_scalar(
                "WITH candidate AS (
                    SELECT n::smallint AS n FROM generate_series(0, $1::int) AS n
                    WHERE NOT EXISTS (
                        SELECT 1 FROM node_leases l WHERE l.node = n AND l.expires_at > now())
                    ORDER BY n LIMIT 1)
                 INSERT INTO node_leases (node, holder, acquired_at, expires_at)
                 SELECT n, $2, now(), now() + make_interval(secs => $3) FROM candidate
                 ON CONFLICT (node) DO UPDATE
                    SET holder = excluded.holder, acquired_at = excluded.acquired_at,
                        expires_at = excluded.expires_at
                    WHERE node_leases.expires_at <= now()
                 RETURNING node",
            )
            .bind(i32::from(MAX_NODE))
            .bind(holder)
            .bind(ttl.as_secs_f64())
            .fetch_optional(catalog)
            .await?;
            let free_left: bool = sqlx::query_scalar(
                "SELECT count(*) <= $1 FROM node_leases WHERE expires_at > now()",
            )
            .bind(i64::from(MAX_NODE))
            .fetch_one(catalog)
            .await?;
            match node {
                Some(n) => {
                    return Ok(NodeLease {
                        node: u16::try_from(n).unwrap_or(0),
                        holder: holder.to_string(),
                        ttl,
                        valid_until: started + ttl,
                    });
                }
                None if !free_left => return Err(LeaseError::Exhausted),
                None => continue,
            }
        }
        Err(LeaseError::Exhausted)
    }

    /// Extends the lease; fails with `Lost` if it expired and someone else
    /// took the number meanwhile.
    pub async fn renew(&mut self, catalog: &PgPool) -> Result<(), LeaseError> {
        let started = Instant::now();
        let renewed = sqlx::query(
            "UPDATE node_leases SET expires_at = now() + make_interval(secs => $3)
             WHERE node = $1 AND holder = $2",
        )
        .bind(i16::try_from(self.node).unwrap_or(i16::MAX))
        .bind(&self.holder)
        .bind(self.ttl.as_secs_f64())
        .execute(catalog)
        .await?
        .rows_affected();
        if renewed == 1 {
            self.valid_until = started + self.ttl;
            Ok(())
        } else {
            Err(LeaseError::Lost(self.node))
        }
    }

    /// Gives the number back (on clean shutdown).
    pub async fn release(self, catalog: &PgPool) -> Result<(), LeaseError> {
        sqlx::query("DELETE FROM node_leases WHERE node = $1 AND holder = $2")
            .bind(i16::try_from(self.node).unwrap_or(i16::MAX))
            .bind(&self.holder)
            .execute(catalog)
            .await?;
        Ok(())
    }

    /// Renews every third of the ttl and moves the generator's validity
    /// forward; when renewal keeps failing the generator stops by itself
    /// once the lease runs out.
    pub fn keep_renewed(
        mut self,
        catalog: PgPool,
        ids: IdGenerator,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(self.ttl / 3).await;
                match self.renew(&catalog).await {
                    Ok(()) => ids.extend_lease(self.valid_until),
                    Err(LeaseError::Lost(node)) => {
                        tracing::error!(node, "node lease lost; id generator stopped");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, node = self.node, "node lease renewal failed")
                    }
                }
            }
        })
    }
}
