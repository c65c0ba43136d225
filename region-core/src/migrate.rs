//! Schema migrations of the catalog and shard databases, and the version
//! check every process runs before it serves a database.
//!
//! Migrations are embedded at compile time (`sqlx::migrate!`), so a build
//! needs no database and a binary carries exactly the versions it knows.

use sqlx::PgPool;
use sqlx::migrate::Migrator;

static CATALOG: Migrator = sqlx::migrate!("migrations/catalog");
static SHARD: Migrator = sqlx::migrate!("migrations/shard");

/// Why a database was refused or could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "{kind} database has migration {version} applied, which this build does not know; \
         run a build that includes it (or a newer one)"
    )]
    Unknown { kind: &'static str, version: i64 },
    #[error(
        "{kind} database lacks migration {version} ({description}); run the migrations \
         (`cityboard up` does) before starting this process"
    )]
    Missing {
        kind: &'static str,
        version: i64,
        description: String,
    },
    #[error(
        "{kind} database migration {version} differs from this build's (checksum mismatch); \
         a migration was edited after it was applied"
    )]
    Modified { kind: &'static str, version: i64 },
    #[error("{kind} database has a failed migration {version}; repair it by hand")]
    Dirty { kind: &'static str, version: i64 },
    #[error("migrating the {kind} database")]
    Migrate {
        kind: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Shard migrations are DDL, and a move copies a city between shards by
    /// logical replication, which needs both sides' tables identical (and
    /// applies no DDL): migrating a shard mid-move would break the copy or
    /// the cutover's schema check. Finish or cancel the jobs first.
    #[error(
        "shard {shard} has migrations to apply, but the region's catalog has open reshard \
         job(s) {}: no shard migration runs while a move is in progress; finish them \
         (`shard-tool cutover`/`cleanup`) or cancel them (`shard-tool cancel`), then run \
         the migrations again",
        .jobs.iter().map(|(id, city)| format!("{id} (city {city})")).collect::<Vec<_>>().join(", ")
    )]
    MoveInProgress {
        shard: String,
        /// `(job id, city)` of every open job.
        jobs: Vec<(i64, String)>,
    },
    #[error("reading the {kind} database's migration history")]
    Query {
        kind: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// Applies every catalog migration this build knows that is not applied yet.
pub async fn catalog(pool: &PgPool) -> Result<(), SchemaError> {
    run(&CATALOG, "catalog", pool).await
}

/// Applies every shard migration this build knows that is not applied yet.
pub async fn shard(pool: &PgPool) -> Result<(), SchemaError> {
    run(&SHARD, "shard", pool).await
}

/// Applies the shard migrations of shard `name` (at `pool`) as [`shard`]
/// does, unless the region's catalog has a reshard job open
/// ([`SchemaError::MoveInProgress`]). A shard with nothing to apply passes
/// whatever the jobs, so restarting a stack (whose setup runs this at
/// every start) during a move is not refused; and a catalog without the
/// jobs table yet (the very first bring-up) has no job. The catalog is a
/// connection rather than a pool so a caller can ask inside a transaction.
///
/// A job opened between the check and the migration is not seen here;
/// shard-tool's cutover preflight compares both sides' migrations, and
/// refuses such a move before it freezes anything.
pub async fn shard_outside_moves(
    catalog: &mut sqlx::PgConnection,
    name: &str,
    pool: &PgPool,
) -> Result<(), SchemaError> {
    match check(&SHARD, "shard", pool).await {
        Ok(()) => return Ok(()),
        Err(SchemaError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    let jobs = open_jobs(catalog)
        .await
        .map_err(|source| SchemaError::Query {
            kind: "catalog",
            source,
        })?;
    if !jobs.is_empty() {
        return Err(SchemaError::MoveInProgress {
            shard: name.to_string(),
            jobs,
        });
    }
    run(&SHARD, "shard", pool).await
}

/// `(id, city)` of the catalog's unfinished reshard jobs; none when the
/// catalog has no jobs table (not migrated yet).
async fn open_jobs(catalog: &mut sqlx::PgConnection) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('reshard_jobs') IS NOT NULL")
        .fetch_one(&mut *catalog)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    sqlx::query_as("SELECT id, city FROM reshard_jobs WHERE finished_at IS NULL ORDER BY id")
        .fetch_all(&mut *catalog)
        .await
}

/// Refuses a catalog whose applied migrations are not exactly this build's.
pub async fn check_catalog(pool: &PgPool) -> Result<(), SchemaError> {
    check(&CATALOG, "catalog", pool).await
}

/// Refuses a shard whose applied migrations are not exactly this build's.
pub async fn check_shard(pool: &PgPool) -> Result<(), SchemaError> {
    check(&SHARD, "shard", pool).await
}

async fn run(migrator: &Migrator, kind: &'static str, pool: &PgPool) -> Result<(), SchemaError> {
    // A database that carries a version we do not know (the other kind's, or
    // a newer build's) must not be migrated by us either.
    match check(migrator, kind, pool).await {
        Ok(()) | Err(SchemaError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    migrator
        .run(pool)
        .await
        .map_err(|source| SchemaError::Migrate { kind, source })
}

async fn check(migrator: &Migrator, kind: &'static str, pool: &PgPool) -> Result<(), SchemaError> {
    let query = |source| SchemaError::Query { kind, source };
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(query)?;
    let applied: Vec<(i64, bool, Vec<u8>)> = if exists {
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(query)?
    } else {
        Vec::new()
    };
    compare(migrator, kind, &applied)
}

/// The pure part of the check: applied `(version, success, checksum)` rows
/// against the migrations embedded in this build.
fn compare(
    migrator: &Migrator,
    kind: &'static str,
    applied: &[(i64, bool, Vec<u8>)],
) -> Result<(), SchemaError> {
    for (version, success, checksum) in applied {
        let known = migrator.iter().find(|m| m.version == *version);
        match known {
            None => {
                return Err(SchemaError::Unknown {
                    kind,
                    version: *version,
                });
            }
            Some(_) if !success => {
                return Err(SchemaError::Dirty {
                    kind,
                    version: *version,
                });
            }
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(SchemaError::Modified {
                    kind,
                    version: *version,
                });
            }
            Some(_) => {}
        }
    }
    for m in migrator.iter() {
        if !m.migration_type.is_down_migration() && !applied.iter().any(|(v, _, _)| *v == m.version)
        {
            return Err(SchemaError::Missing {
                kind,
                version: m.version,
                description: m.description.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_applied(m: &Migrator) -> Vec<(i64, bool, Vec<u8>)> {
        m.iter()
            .map(|m| (m.version, true, m.checksum.to_vec()))
            .collect()
    }

    #[test]
    fn a_fully_migrated_database_passes() {
        assert!(compare(&SHARD, "shard", &all_applied(&SHARD)).is_ok());
        assert!(compare(&CATALOG, "catalog", &all_applied(&CATALOG)).is_ok());
    }

    #[test]
    fn a_catalog_is_refused_as_a_shard() {
        let err = compare(&SHARD, "shard", &all_applied(&CATALOG)).unwrap_err();
        assert!(
            matches!(err, SchemaError::Unknown { version: 1001, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_newer_version_is_refused() {
        let mut applied = all_applied(&SHARD);
        applied.push((9999, true, vec![]));
        let err = compare(&SHARD, "shard", &applied).unwrap_err();
        assert!(matches!(err, SchemaError::Unknown { version: 9999, .. }));
    }

    #[test]
    fn an_empty_database_is_missing_migrations() {
        let err = compare(&SHARD, "shard", &[]).unwrap_err();
        assert!(matches!(err, SchemaError::Missing { version: 2001, .. }));
    }

    #[test]
    fn a_refusal_during_a_move_names_the_shard_and_the_jobs() {
        let err = SchemaError::MoveInProgress {
            shard: "shard-2".into(),
            jobs: vec![(7, "boston".into()), (9, "austin".into())],
        };
        let text = err.to_string();
        assert!(text.contains("shard shard-2"), "{text}");
        assert!(text.contains("7 (city boston), 9 (city austin)"), "{text}");
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let mut applied = all_applied(&SHARD);
        applied[0].2 = vec![0; 48];
        let err = compare(&SHARD, "shard", &applied).unwrap_err();
        assert!(matches!(err, SchemaError::Modified { .. }));
    }
}
