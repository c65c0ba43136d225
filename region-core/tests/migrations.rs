mod common;

use common::{State, pool};

#[tokio::test]
async fn every_catalog_and_shard_is_migrated_and_accepted() {
    let state = State::load();
    for region in &state.regions {
        let catalog = pool(&region.catalog_url).await;
        region_core::migrate::catalog(&catalog).await.unwrap();
        region_core::migrate::check_catalog(&catalog).await.unwrap();
        // A catalog is not a shard: its versions are unknown to the shard check.
        assert!(region_core::migrate::check_shard(&catalog).await.is_err());
        for shard in &region.shards {
            let primary = pool(&shard.primary_url).await;
            region_core::migrate::shard(&primary).await.unwrap();
            region_core::migrate::check_shard(&primary).await.unwrap();
            assert!(region_core::migrate::catalog(&primary).await.is_err());
        }
    }
}

/// A shard with migrations to apply is refused while the catalog has an open
/// reshard job, naming the job; an up-to-date shard is not (a stack restarted
/// mid-move runs setup again).
#[tokio::test]
async fn no_shard_migration_runs_while_a_move_is_open() {
    let state = State::load();
    let region = state.region();
    let catalog = pool(&region.catalog_url).await;
    region_core::migrate::catalog(&catalog).await.unwrap();
    let shard = &region.shards[0];
    let primary = pool(&shard.primary_url).await;
    region_core::migrate::shard(&primary).await.unwrap();

    // The job exists only in this transaction, rolled back at the end: no
    // other test, and no shard-tool, ever sees it.
    let mut tx = catalog.begin().await.unwrap();
    let job = (1_i64 << 40) + i64::from(rand::random::<u32>());
    let city = common::unique_city("migrating");
    sqlx::query(
        "INSERT INTO reshard_jobs (id, city, from_region, from_shard, to_region, to_shard, phase)
         VALUES ($1, $2, $3, $4, $3, $4, 'copy')",
    )
    .bind(job)
    .bind(&city)
    .bind(&region.name)
    .bind(&shard.name)
    .execute(&mut *tx)
    .await
    .unwrap();

    region_core::migrate::shard_outside_moves(&mut tx, &shard.name, &primary)
        .await
        .unwrap();

    // A shard with everything to apply: an empty schema of its own, alone
    // on the search path, where the migration history is not found.
    let schema = format!("unmigrated_{:08x}", rand::random::<u32>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&primary)
        .await
        .unwrap();
    let options = (*primary.connect_options())
        .clone()
        .options([("search_path", schema.as_str())]);
    let unmigrated = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let refused =
        region_core::migrate::shard_outside_moves(&mut tx, &shard.name, &unmigrated).await;
    unmigrated.close().await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = $1")
        .bind(&schema)
        .fetch_one(&primary)
        .await
        .unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&primary)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let err = refused.unwrap_err();
    assert!(
        matches!(&err, region_core::migrate::SchemaError::MoveInProgress { jobs, .. }
            if jobs.contains(&(job, city.clone()))),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("{job} (city {city})")),
        "{err}"
    );
    assert_eq!(tables, 0, "nothing was migrated");
}
