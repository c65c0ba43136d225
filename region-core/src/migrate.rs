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
    fn an_edited_migration_is_refused() {
        let mut applied = all_applied(&SHARD);
        applied[0].2 = vec![0; 48];
        let err = compare(&SHARD, "shard", &applied).unwrap_err();
        assert!(matches!(err, SchemaError::Modified { .. }));
    }
}
