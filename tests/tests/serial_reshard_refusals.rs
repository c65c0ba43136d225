//! What shard-tool refuses, and what it does when the world gets in the
//! way (issue 26: bad input that needs a broken or loaded shard, and
//! acceptance 4 and 5), on a stack of its own:
//!
//! - `move` onto a shard that is down, a shard without the schema, with no
//!   free replication slot, or with a role that lacks REPLICATION: exit 2,
//!   no job, no replication object;
//! - `cutover` with the live direction behind, every slot of the target in
//!   use, or a column added on the source: exit 2 and zero freeze time (the
//!   fence never froze);
//! - a target table locked during the cutover: the cutover aborts at its
//!   deadline, the epoch unchanged, the write held during the freeze
//!   applied once on the source, the pause no longer than the deadline;
//! - a copy pauses while the target's replica lags and goes on after;
//! - two cities of one shard cut over within seconds of each other both
//!   take writes right after their flips;
//! - `doctor` finds an orphan publication and slot and a freeze past its
//!   deadline, and repairs them;
//! - a shard added to the catalog while the roles run (migrated by
//!   `region-core setup`) takes a city, whose reads, writes and events the
//!   running api, writer and relay serve without a restart.

#[allow(dead_code)] // the faults and checks are the chaos test's
mod chaos;
#[allow(dead_code)] // each serial_reshard test uses a part of it
mod reshard;

use std::path::Path;
use std::time::Duration;

use chaos::api::Apis;
use cityboard_tests::output_text;
use sqlx::PgPool;

const PORT_BASE: u16 = 21500;

/// Runs shard-tool; asserts exit 2 with `expected` in its message.
fn refused(home: &Path, args: &[&str], expected: &str) {
    let out = reshard::shard_tool(home, args, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}:\n{}",
        output_text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(expected),
        "{args:?}: want {expected:?} in\n{}",
        output_text(&out)
    );
}

async fn count(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

/// Fills `db`'s free replication slots but `leave`; returns their names.
async fn fill_slots(db: &PgPool, leave: i64) -> Vec<String> {
    let free = count(
        db,
        "SELECT current_setting('max_replication_slots')::int8 - count(*) FROM pg_replication_slots",
    )
    .await;
    let mut names = Vec::new();
    for i in 0..(free - leave).max(0) {
        let name = format!("filler_{i}");
        sqlx::query("SELECT pg_create_physical_replication_slot($1)")
            .bind(&name)
            .execute(db)
            .await
            .expect("a filler slot");
        names.push(name);
    }
    names
}

async fn drop_slots(db: &PgPool, names: &[String]) {
    for n in names {
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(n)
            .execute(db)
            .await
            .expect("drop a filler slot");
    }
}

/// The city's fence on `db`: (state, epoch, last change as text).
async fn fence(db: &PgPool, city: &str) -> (String, i64, String) {
    sqlx::query_as("SELECT state, epoch, updated_at::text FROM city_fence WHERE city = $1")
        .bind(city)
        .fetch_one(db)
        .await
        .expect("the fence")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_reshard_refusals_aborts_and_repairs() {
    let stack = reshard::start("reshard-refusals", PORT_BASE);
    let state = stack.state();
    let home = stack.home.clone();
    let url = |name: &str| reshard::primary_url(&state, name);
    let (s1, s2) = (
        cityboard_tests::pg(&url("shard-1")).await,
        cityboard_tests::pg(&url("shard-2")).await,
    );
    let catalog = cityboard_tests::pg(&state.regions[0].catalog_url).await;
    reshard::seed(&s1, "boston", 5_000).await;
    let jobs = || count(&catalog, "SELECT count(*) FROM reshard_jobs");
    let nothing_made = || async {
        assert_eq!(jobs().await, 0, "a refused move made a job");
        assert!(reshard::leftovers(&state, 0).await.is_empty());
        for db in [&s1, &s2] {
            assert_eq!(
                count(
                    db,
                    "SELECT count(*) FROM pg_publication WHERE pubname LIKE 'cb\\_%'"
                )
                .await,
                0
            );
        }
    };

    // A target that is down, and one without the schema: shards the
    // catalog lists, as an operator may have added them.
    let down = url("shard-2").replace(&format!(":{}", PORT_BASE + 120), ":1");
    let bare = url("shard-2").replace("/cityboard", "/postgres");
    for (name, primary) in [("shard-8", &down), ("shard-9", &bare)] {
        sqlx::query("INSERT INTO shards (region, name, primary_url) VALUES ('solo', $1, $2)")
            .bind(name)
            .bind(primary)
            .execute(&catalog)
            .await
            .expect("a shard row");
    }
    refused(
        &home,
        &["move", "boston", "--to", "shard-8"],
        "the target cannot be used",
    );
    refused(
        &home,
        &["move", "boston", "--to", "shard-9"],
        "lacks the shard schema",
    );
    sqlx::query("DELETE FROM shards WHERE name IN ('shard-8', 'shard-9')")
        .execute(&catalog)
        .await
        .expect("delete the shard rows");
    // No free slot on the source (a move needs its own and the copy's).
    let fillers = fill_slots(&s1, 1).await;
    refused(
        &home,
        &["move", "boston", "--to", "shard-2"],
        "free replication slot",
    );
    drop_slots(&s1, &fillers).await;
    // A role without REPLICATION.
    sqlx::query("CREATE ROLE cb_plain LOGIN")
        .execute(&s1)
        .await
        .expect("a role");
    refused(
        &home,
        &[
            "move",
            "boston",
            "--to",
            "shard-2",
            "--replication-role",
            "cb_plain",
        ],
        "lacks REPLICATION",
    );
    nothing_made().await;

    // A move, then cutovers the preflight refuses with zero freeze time.
    let out = reshard::ok(&home, &["--json", "move", "boston", "--to", "shard-2"]);
    let job = reshard::job_id(&out);
    let j = job.to_string();
    let before = fence(&s1, "boston").await;
    // The live direction behind: its subscription stopped, a change made.
    let sub = format!("cb_{job}");
    sqlx::raw_sql(&format!("ALTER SUBSCRIPTION {sub} DISABLE"))
        .execute(&s2)
        .await
        .expect("disable");
    sqlx::query("UPDATE posts SET title = title || '!' WHERE city = 'boston' AND id <= 100")
        .execute(&s1)
        .await
        .expect("a change");
    refused(
        &home,
        &["cutover", &j, "--max-lag-mb", "0"],
        "cutover refused, nothing was changed",
    );
    sqlx::raw_sql(&format!("ALTER SUBSCRIPTION {sub} ENABLE"))
        .execute(&s2)
        .await
        .expect("enable");
    // Every slot of the target in use: the reverse slot cannot be made.
    let fillers = fill_slots(&s2, 0).await;
    refused(&home, &["cutover", &j], "free replication slot");
    drop_slots(&s2, &fillers).await;
    // A column added on the source only.
    sqlx::query("ALTER TABLE posts ADD COLUMN extra int")
        .execute(&s1)
        .await
        .expect("add a column");
    refused(&home, &["cutover", &j], "column posts.extra");
    sqlx::query("ALTER TABLE posts DROP COLUMN extra")
        .execute(&s1)
        .await
        .expect("drop the column");
    assert_eq!(
        fence(&s1, "boston").await,
        before,
        "a refused cutover touched the fence"
    );
    let pauses = count(
        &catalog,
        &format!("SELECT jsonb_array_length(coalesce(progress -> 'pauses', '[]'))::int8 FROM reshard_jobs WHERE id = {job}"),
    )
    .await;
    assert_eq!(pauses, 0, "a refused cutover froze the city");

    // A target table locked while the cutover runs (after its preflight):
    // the freeze's mark cannot land, the cutover aborts at its deadline.
    let apis = Apis::new(&stack.home, &state);
    let token = apis.user("boston", "locker").await.expect("a user");
    let cutover = {
        let home = home.clone();
        let j = j.clone();
        tokio::task::spawn_blocking(move || {
            reshard::shard_tool(
                &home,
                &["cutover", &j, "--max-pause", "1000"],
                &[("SHARD_TOOL_PAUSE_AT", "reverse-prepared=3000")],
            )
        })
    };
    // The preflight is over well within a second; the pause that follows
    // is when the lock comes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut locker = s2.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .expect("lock posts");
    // A write the source applies now; its copy to the target waits for
    // the lock, and the freeze's mark behind it.
    reshard::write_applies(&apis, "boston", &token, "before the freeze").await;
    // A write during the freeze: held, then applied once on the source.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    reshard::write_applies(&apis, "boston", &token, "during the freeze").await;
    let out = cutover.await.expect("cutover");
    locker.rollback().await.expect("unlock");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the cutover did not abort:\n{}",
        output_text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aborted"),
        "{}",
        output_text(&out)
    );
    assert_eq!(
        reshard::placed(&state, "boston").await,
        ("shard-1".into(), 1)
    );
    let (state1, epoch1, _) = fence(&s1, "boston").await;
    assert_eq!((state1.as_str(), epoch1), ("active", 1));
    let held = count(
        &s1,
        "SELECT count(*) FROM posts WHERE city = 'boston' AND title = 'during the freeze'",
    )
    .await;
    assert_eq!(held, 1, "the held write is not on the source exactly once");
    let pause: f64 = sqlx::query_scalar(&format!(
        "SELECT (progress -> 'pauses' -> -1 ->> 'ms')::float8 FROM reshard_jobs WHERE id = {job}"
    ))
    .fetch_one(&catalog)
    .await
    .expect("the pause");
    assert!(
        pause <= 1100.0,
        "the aborted freeze lasted {pause} ms for a 1000 ms deadline"
    );
    assert_eq!(
        count(
            &catalog,
            &format!("SELECT count(*) FROM reshard_jobs WHERE id = {job} AND phase = 'ready'")
        )
        .await,
        1
    );

    // Two cities of one shard cut over seconds apart: both take writes
    // right after their flips. (boston is ready; newyork joins it.)
    // (newyork's copy is throttled: the target's replica stops replaying,
    // the copy pauses past 1 MiB of replica lag and goes on once the
    // replica catches up.)
    reshard::seed(&s1, "newyork", 20_000).await;
    let replica = cityboard_tests::pg(&state.regions[0].shards[1].replica_urls[0]).await;
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica)
        .await
        .expect("pause the replica");
    let mover = {
        let home = home.clone();
        tokio::task::spawn_blocking(move || {
            reshard::shard_tool(
                &home,
                &[
                    "--json",
                    "move",
                    "newyork",
                    "--to",
                    "shard-2",
                    "--max-replica-lag-mb",
                    "1",
                ],
                &[],
            )
        })
    };
    let throttled = "SELECT count(*) FROM reshard_jobs
                      WHERE city = 'newyork' AND progress ->> 'throttled' = 'true'";
    let mut seen = false;
    for _ in 0..120 {
        if count(&catalog, throttled).await == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica)
        .await
        .expect("resume the replica");
    let out = mover.await.expect("move");
    assert_eq!(out.status.code(), Some(0), "move:\n{}", output_text(&out));
    assert!(
        seen,
        "the copy never paused for the lagging replica:\n{}",
        output_text(&out)
    );
    let job2 = reshard::job_id(&out).to_string();
    let paused: f64 = sqlx::query_scalar(&format!(
        "SELECT (progress ->> 'throttled_seconds')::float8 FROM reshard_jobs WHERE id = {job2}"
    ))
    .fetch_one(&catalog)
    .await
    .expect("throttled seconds");
    assert!(paused > 0.0, "no pause recorded");
    reshard::ok(&home, &["cutover", &j]);
    reshard::write_applies(&apis, "boston", &token, "right after boston's flip").await;
    reshard::ok(&home, &["cutover", &job2]);
    reshard::write_applies(&apis, "newyork", &token, "right after newyork's flip").await;
    reshard::write_applies(&apis, "boston", &token, "boston still writes").await;
    assert_eq!(reshard::placed(&state, "boston").await.0, "shard-2");
    assert_eq!(reshard::placed(&state, "newyork").await.0, "shard-2");
    reshard::ok(&home, &["cleanup", &j]);
    reshard::ok(&home, &["cleanup", &job2]);

    // doctor: an orphan publication and slot, a freeze past its deadline.
    sqlx::raw_sql("CREATE PUBLICATION cb_4242 FOR TABLE posts WHERE (city = 'nowhere')")
        .execute(&s2)
        .await
        .expect("an orphan publication");
    sqlx::query("SELECT pg_create_logical_replication_slot('cb_4242_to_shard_1', 'pgoutput')")
        .execute(&s2)
        .await
        .expect("an orphan slot");
    sqlx::query(
        "UPDATE city_fence SET state = 'frozen', frozen_until = now() - interval '1 minute'
          WHERE city = 'philadelphia'",
    )
    .execute(&s2)
    .await
    .expect("an expired freeze");
    let out = reshard::ok(&home, &["--json", "doctor"]);
    let found = reshard::json_lines(&out);
    let findings = found.iter().filter(|l| l["kind"] == "finding").count();
    assert_eq!(findings, 3, "doctor:\n{}", output_text(&out));
    let out = reshard::ok(&home, &["--json", "doctor", "--repair"]);
    let summary = reshard::json_lines(&out)
        .into_iter()
        .find(|l| l["kind"] == "summary")
        .expect("a summary");
    assert_eq!(
        summary["repaired"],
        3,
        "doctor --repair:\n{}",
        output_text(&out)
    );
    let out = reshard::ok(&home, &["--json", "doctor"]);
    let summary = reshard::json_lines(&out)
        .into_iter()
        .find(|l| l["kind"] == "summary")
        .expect("a summary");
    assert_eq!(
        summary["findings"],
        0,
        "doctor after repair:\n{}",
        output_text(&out)
    );
    assert_eq!(fence(&s2, "philadelphia").await.0, "active");

    // A shard added while the roles run: a database beside shard-2's (its
    // replica streams it too), registered in the catalog as an operator
    // does, migrated by `region-core setup`. philadelphia moves onto it;
    // the api, writer and relay started before it existed serve it.
    sqlx::raw_sql("CREATE DATABASE spare")
        .execute(&s2)
        .await
        .expect("create the spare database");
    let spare_url = url("shard-2").replace("/cityboard", "/spare");
    let spare_replica = state.regions[0].shards[1].replica_urls[0].replace("/cityboard", "/spare");
    sqlx::query(
        "INSERT INTO shards (region, name, primary_url, replica_urls)
         VALUES ('solo', 'shard-3', $1, ARRAY[$2])",
    )
    .bind(&spare_url)
    .bind(&spare_replica)
    .execute(&catalog)
    .await
    .expect("register shard-3");
    let out = std::process::Command::new(cityboard_tests::region_core_bin())
        .args(["setup", "--state"])
        .arg(home.join("state.json"))
        .args(["--region", "solo"])
        .output()
        .expect("region-core setup");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("solo/shard-3: shard migrated"),
        "setup:\n{}",
        output_text(&out)
    );
    let out = reshard::ok(
        &home,
        &["--json", "move", "philadelphia", "--to", "shard-3"],
    );
    let job3 = reshard::job_id(&out).to_string();
    reshard::ok(&home, &["cutover", &job3]);
    assert_eq!(reshard::placed(&state, "philadelphia").await.0, "shard-3");
    let token = apis.user("philadelphia", "spare").await.expect("a user");
    reshard::write_applies(&apis, "philadelphia", &token, "on the new shard").await;
    let spare = cityboard_tests::pg(&spare_url).await;
    assert_eq!(
        count(
            &spare,
            "SELECT count(*) FROM posts WHERE city = 'philadelphia' AND title = 'on the new shard'"
        )
        .await,
        1,
        "the writer did not apply on the new shard"
    );
    // (A replica may be up to a second behind.)
    let mut read = String::new();
    for _ in 0..50 {
        let r = apis
            .send(
                "GET",
                "philadelphia",
                "/post?search=shard",
                Some(&token),
                b"",
            )
            .await
            .expect("GET /post");
        read = format!("{} {}", r.status, r.text());
        if r.status == 200 && read.contains("on the new shard") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        read.starts_with("200") && read.contains("on the new shard"),
        "the api does not read the new shard: {read}"
    );
    // The relay drains the new shard's outbox.
    let mut pending = -1;
    for _ in 0..100 {
        pending = count(
            &spare,
            "SELECT count(*) FROM outbox WHERE city = 'philadelphia'",
        )
        .await;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pending, 0,
        "the relay does not drain the new shard's outbox"
    );
    reshard::ok(&home, &["cleanup", &job3]);
    spare.close().await;
}
