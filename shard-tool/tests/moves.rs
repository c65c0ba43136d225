//! The move commands' bad input against the shared stack `deploy/test`
//! starts: each is refused with a clear message and exit code 2, and
//! changes nothing (no job row, no replication object). Moves themselves
//! run on stacks of their own (`tests/tests/serial_reshard*.rs`).
//!
//! The module is named `shard_moves` so that `deploy/test shard` selects
//! these tests by name.

#[allow(dead_code)] // each test file uses a part of it
mod common;

mod shard_moves {
    use crate::common::{json_lines, on_stack as shard_tool, stack, text};

    /// Exit 2, `expected` in the message, nothing on stdout.
    fn refused(args: &[&str], expected: &str) {
        let out = shard_tool(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: want {expected:?} in {}",
            text(&out)
        );
        assert!(!stderr.contains("panicked"), "{}", text(&out));
    }

    async fn catalog(region: usize) -> sqlx::PgPool {
        let url = &stack().regions[region].catalog_url;
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .expect("the catalog")
    }

    async fn jobs(region: usize) -> i64 {
        let db = catalog(region).await;
        let n = sqlx::query_scalar("SELECT count(*) FROM reshard_jobs")
            .fetch_one(&db)
            .await
            .expect("jobs");
        db.close().await;
        n
    }

    /// Publications, subscriptions and slots of moves on every shard.
    async fn replication_objects() -> Vec<String> {
        let mut found = Vec::new();
        for shard in stack().regions.iter().flat_map(|r| r.shards.clone()) {
            let db = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&shard.primary_url)
                .await
                .expect("a shard");
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT pubname::text FROM pg_publication WHERE pubname LIKE 'cb\\_%'
                 UNION ALL SELECT subname::text FROM pg_subscription WHERE subname LIKE 'cb\\_%'
                 UNION ALL SELECT slot_name::text FROM pg_replication_slots
                            WHERE slot_name LIKE 'cb\\_%'",
            )
            .fetch_all(&db)
            .await
            .expect("objects");
            found.extend(names.into_iter().map(|n| format!("{n} on {}", shard.name)));
            db.close().await;
        }
        found
    }

    #[tokio::test]
    async fn a_move_of_what_does_not_exist_or_cannot_be_is_refused_and_changes_nothing() {
        let s = stack();
        let region = &s.regions[0];
        let (home, other) = (&region.shards[0], &region.shards[1]);
        let city = home.cities[0].clone();
        let before = (jobs(0).await, replication_objects().await);
        refused(
            &["move", "atlantis", "--to", &other.name],
            "unknown city \"atlantis\"",
        );
        refused(
            &["move", &city, "--to", "shard-99"],
            "has no shard \"shard-99\"",
        );
        refused(
            &["move", &city, "--to", &home.name],
            &format!("{city} is on {} already", home.name),
        );
        refused(&["move", &city], "--to");
        refused(
            &["--region", "mars", "move", &city, "--to", &other.name],
            "unknown region",
        );
        for cmd in [
            "verify", "cutover", "rollback", "cleanup", "cancel", "resume", "doctor",
        ] {
            refused(&[cmd, "987654"], "no reshard job 987654");
        }
        refused(&["cutover", "not-a-number"], "invalid value");
        assert_eq!((jobs(0).await, replication_objects().await), before);
    }

    #[tokio::test]
    async fn a_second_job_for_a_city_is_refused() {
        let s = stack();
        let region = &s.regions[1];
        let (home, other) = (&region.shards[0], &region.shards[1]);
        let city = home.cities[1].clone();
        let db = catalog(1).await;
        // An open job of the city, as another operator's move leaves it.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO reshard_jobs (id, city, from_region, from_shard, to_region, to_shard, phase)
             SELECT coalesce(max(id), 0) + 1000, $1, $2, $3, $2, $4, 'copying' FROM reshard_jobs
             RETURNING id",
        )
        .bind(&city)
        .bind(&region.name)
        .bind(&home.name)
        .bind(&other.name)
        .fetch_one(&db)
        .await
        .expect("a job");
        let out = shard_tool(&["move", &city, "--to", &other.name]);
        sqlx::query("DELETE FROM reshard_jobs WHERE id = $1")
            .bind(id)
            .execute(&db)
            .await
            .expect("delete the job");
        db.close().await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("already has an open move (job {id}")),
            "{}",
            text(&out)
        );
    }

    /// Other tests on the shared stack make cities of their own with odd
    /// fences on purpose (apply's fence tests): doctor may report those.
    /// The topology's cities, and move objects, it must find healthy.
    #[test]
    fn doctor_finds_the_topologys_cities_healthy() {
        let out = shard_tool(&["--json", "doctor"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let lines = json_lines(&out);
        let last = lines.last().expect("a summary");
        assert_eq!(last["kind"], "summary", "{}", text(&out));
        let cities: Vec<String> = stack()
            .regions
            .iter()
            .flat_map(|r| r.shards.iter().flat_map(|s| s.cities.clone()))
            .collect();
        for f in lines.iter().filter(|l| l["kind"] == "finding") {
            let problem = f["problem"].as_str().unwrap_or("");
            assert!(
                !cities.iter().any(|c| problem.starts_with(&format!("{c} "))
                    || problem.contains(&format!(" {c} "))),
                "a city of the topology is not healthy: {f}"
            );
            assert_ne!(f["what"], "orphan", "{f}");
        }
    }
}
