//! What each process's Postgres role may do, granted by `setup` after the
//! migrations (the owner's work) so that a table a later migration adds is
//! covered at the next `setup` without anyone remembering to.
//!
//! The roles that serve traffic read and write rows and nothing more: they
//! own no table (so no DDL, no `TRUNCATE`), are never superusers (so no
//! `COPY … PROGRAM`, no reading files, no other database's data) and have
//! no `REPLICATION` (so they cannot stream a shard's WAL). The migration
//! history is theirs to read (every process checks the schema version
//! before it serves) but not to change. Who creates the roles is the
//! platform's business: `cityboard up` locally, the operator's managed
//! roles in production; `setup` grants to those that exist.

use sqlx::PgPool;

/// The login roles of the processes that serve, one per purpose, so that a
/// leaked password is one process's and the logs name who did what.
pub const SERVING_ROLES: [&str; 5] = [
    "cb_api",
    "cb_writer",
    "cb_relay",
    "cb_publisher",
    "cb_janitor",
];

/// The role replication connections use: a shard's streaming replicas, and
/// the subscriptions of a city move.
pub const REPLICATION_ROLE: &str = "cb_replication";

/// Grants each existing serving role row access to every table of the
/// database at `pool` (a catalog or a shard), and the replication role the
/// reads a move's initial copy makes. Idempotent. Returns the roles that
/// were granted to.
pub async fn grant(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let wanted: Vec<String> = SERVING_ROLES
        .iter()
        .chain([&REPLICATION_ROLE])
        .map(|s| s.to_string())
        .collect();
    let present: Vec<String> =
        sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1")
            .bind(&wanted)
            .fetch_all(pool)
            .await?;
    let mut tx = pool.begin().await?;
    for role in &present {
        // Role names are identifiers, which cannot be bound; these come from
        // the constants above, matched against pg_roles.
        let statements: &[&str] = if role == REPLICATION_ROLE {
            &[
                "GRANT USAGE ON SCHEMA public TO {r}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}",
            ]
        } else {
            &[
                "GRANT USAGE ON SCHEMA public TO {r}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {r}",
                "REVOKE INSERT, UPDATE, DELETE ON TABLE _sqlx_migrations FROM {r}",
            ]
        };
        for s in statements {
            sqlx::query(&s.replace("{r}", &format!("\"{role}\"")))
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(present)
}
