//! shard-tool killed at every state transition of a move (issue 26,
//! acceptance 3): for each crash point in turn, a move of `boston` to the
//! other shard runs with shard-tool aborting there (the process dies as a
//! SIGKILL would leave it: no cleanup, the job row as last written), then
//! `resume` and the remaining steps run without it. Every move must end
//! fully on one side: the catalog and the fences agree, every row of the
//! city is on its new shard and none on the old, no replication object
//! of the job is left, and the city takes writes.
//!
//! And the freeze's deadline: a shard-tool killed while the city is
//! frozen, and not resumed, costs the city's writers no more than the
//! pause it allowed — the city takes writes on its shard again.

#[allow(dead_code)] // the faults and checks are the chaos test's
mod chaos;
#[allow(dead_code)] // each serial_reshard test uses a part of it
mod reshard;

use std::path::Path;
use std::time::{Duration, Instant};

use chaos::api::Apis;
use cityboard_tests::output_text;

const PORT_BASE: u16 = 21000;
const SEEDED: i64 = 20_000;
const CITY: &str = "boston";

/// The crash points of a move, in the order a move reaches them.
const CRASH_POINTS: &[&str] = &[
    // move
    "created",
    "target-fence",
    "publication",
    "slot",
    "subscription",
    "copied",
    "ready",
    // cutover
    "reverse-prepared",
    "freezing",
    "frozen",
    "flipped-fence",
    "flipping",
    "noted-position",
    "target-active",
    "catalog",
    "forward-dropped",
    "reverse-enabled",
    "cut-over",
    // cleanup
    "cleaning-up",
    "replication-dropped",
    "rows-deleted",
    "done",
];

/// The job's phase, from the catalog.
async fn phase(catalog: &sqlx::PgPool, job: i64) -> String {
    sqlx::query_scalar("SELECT phase FROM reshard_jobs WHERE id = $1")
        .bind(job)
        .fetch_one(catalog)
        .await
        .expect("the job")
}

/// Runs one shard-tool command; `crash` arms a crash point. Returns
/// whether it crashed there (and asserts it succeeded otherwise).
fn run(home: &Path, args: &[&str], crash: Option<&str>) -> bool {
    let env: Vec<(&str, &str)> = crash
        .map(|c| ("SHARD_TOOL_CRASH_AT", c))
        .into_iter()
        .collect();
    let out = reshard::shard_tool(home, args, &env);
    if out.status.code().is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("crash point {}", crash.unwrap_or("?"))),
            "shard-tool {args:?} died but not at its crash point:\n{}",
            output_text(&out)
        );
        return true;
    }
    assert_eq!(
        out.status.code(),
        Some(0),
        "shard-tool {args:?}:\n{}",
        output_text(&out)
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_reshard_killed_at_every_step_ends_on_one_side() {
    let started = Instant::now();
    let stack = reshard::start("reshard-kills", PORT_BASE);
    let state = stack.state();
    let home = stack.home.clone();
    let primary = |name: &str| reshard::primary_url(&state, name);
    let db = cityboard_tests::pg(&primary("shard-1")).await;
    reshard::seed(&db, CITY, SEEDED).await;
    db.close().await;
    let catalog = cityboard_tests::pg(&state.regions[0].catalog_url).await;
    let apis = Apis::new(&stack.home, &state);
    let token = apis.user(CITY, "killer").await.expect("a user");
    let mut posts = reshard::posts_on(&state, "shard-1", CITY).await;

    for (n, point) in CRASH_POINTS.iter().enumerate() {
        let (from, epoch) = reshard::placed(&state, CITY).await;
        let to = if from == "shard-1" {
            "shard-2"
        } else {
            "shard-1"
        };
        let mut crash = Some(*point);
        let out = reshard::shard_tool(
            &home,
            &["--json", "move", CITY, "--to", to],
            &crash
                .map(|c| ("SHARD_TOOL_CRASH_AT", c))
                .into_iter()
                .collect::<Vec<_>>(),
        );
        if out.status.code().is_none() {
            crash = None;
        } else {
            assert_eq!(out.status.code(), Some(0), "move:\n{}", output_text(&out));
        }
        let job: i64 = sqlx::query_scalar(
            "SELECT id FROM reshard_jobs WHERE city = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(CITY)
        .fetch_one(&catalog)
        .await
        .expect("the job");
        let j = job.to_string();
        // Drive the job to its end, whatever phase each crash left.
        for _ in 0..12 {
            let p = phase(&catalog, job).await;
            let args: Vec<&str> = match p.as_str() {
                "done" => break,
                "ready" => vec!["cutover", &j],
                "cut-over" => vec!["cleanup", &j],
                _ => vec!["resume", &j],
            };
            if run(&home, &args, crash) {
                crash = None;
            }
        }
        assert_eq!(phase(&catalog, job).await, "done", "crash point {point}");
        assert!(crash.is_none(), "crash point {point} was never reached");
        reshard::write_applies(&apis, CITY, &token, &format!("after crash point {point}")).await;
        posts += 1;
        let (now_on, now_epoch) = reshard::placed(&state, CITY).await;
        assert_eq!(
            now_on, to,
            "crash point {point}: the city is not on its target"
        );
        assert!(
            now_epoch > epoch,
            "crash point {point}: epoch {now_epoch} after {epoch}"
        );
        assert_eq!(
            reshard::city_rows(&state, &from, CITY).await,
            0,
            "crash point {point}: rows left on {from}"
        );
        let there = reshard::posts_on(&state, to, CITY).await;
        assert_eq!(there, posts, "crash point {point}: posts on {to}");
        let left = reshard::leftovers(&state, job).await;
        assert!(left.is_empty(), "crash point {point}: left behind {left:?}");
        println!(
            "crash point {n:>2} {point:<22} ok ({:.0}s)",
            started.elapsed().as_secs_f64()
        );
    }

    // Killed while frozen, never resumed: the city writes again at the
    // deadline.
    let (from, epoch) = reshard::placed(&state, CITY).await;
    let to = if from == "shard-1" {
        "shard-2"
    } else {
        "shard-1"
    };
    let out = reshard::ok(&home, &["--json", "move", CITY, "--to", to]);
    let job = reshard::job_id(&out);
    let j = job.to_string();
    assert!(run(
        &home,
        &["cutover", &j, "--max-pause", "1500"],
        Some("frozen")
    ));
    let t0 = Instant::now();
    reshard::write_applies(&apis, CITY, &token, "while frozen and abandoned").await;
    let waited = t0.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the write waited {waited:?} for a freeze of 1.5 s"
    );
    assert_eq!(reshard::placed(&state, CITY).await, (from.clone(), epoch));
    // resume finds the freeze over and returns the job to `ready`.
    assert!(!run(&home, &["resume", &j], None));
    assert_eq!(phase(&catalog, job).await, "ready");

    // verify can fail (acceptance 2): a changed value, a missing row and
    // an extra row, injected on the target, are each reported with their
    // chunk; a killed verify resumes from its last chunk.
    let target = cityboard_tests::pg(&primary(to)).await;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM posts WHERE city = $1 ORDER BY id LIMIT 2 OFFSET 7000")
            .bind(CITY)
            .fetch_all(&target)
            .await
            .expect("two posts");
    sqlx::query("UPDATE posts SET title = title || ' (tampered)' WHERE city = $1 AND id = $2")
        .bind(CITY)
        .bind(ids[0])
        .execute(&target)
        .await
        .expect("change a row");
    sqlx::query("DELETE FROM posts WHERE city = $1 AND id = $2")
        .bind(CITY)
        .bind(ids[1])
        .execute(&target)
        .await
        .expect("delete a row");
    let extra = SEEDED * 10;
    sqlx::query(
        "INSERT INTO posts (city, id, user_id, category, title, description, status, version,
                            created_at, updated_at, expires_at)
         VALUES ($1, $2, 1, 'for-sale', 'extra', 'only on the target', 'live', 1, now(), now(),
                 now() + interval '1 day')",
    )
    .bind(CITY)
    .bind(extra)
    .execute(&target)
    .await
    .expect("add a row");
    target.close().await;
    let verified_chunks = || async {
        let doc: serde_json::Value =
            sqlx::query_scalar("SELECT progress -> 'verify' FROM reshard_jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&catalog)
                .await
                .expect("progress");
        doc["chunks"].as_i64().unwrap_or(-1)
    };
    let out = reshard::shard_tool(
        &home,
        &["--json", "verify", &j, "--chunk-rows", "5000"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "verify:\n{}", output_text(&out));
    let lines = reshard::json_lines(&out);
    for (key, how) in [(ids[0], "changed"), (ids[1], "missing"), (extra, "extra")] {
        let line = lines
            .iter()
            .find(|l| l["kind"] == "difference" && l["key"] == key.to_string().as_str())
            .unwrap_or_else(|| panic!("{key} not reported:\n{}", output_text(&out)));
        assert_eq!(line["how"], how, "{line}");
        assert_eq!(line["table"], "posts", "{line}");
        assert!(
            line.get("chunk_after").is_some() && line.get("chunk_upto").is_some(),
            "{line}"
        );
    }
    let reported = lines.iter().filter(|l| l["kind"] == "difference").count();
    assert_eq!(
        reported,
        3,
        "only the injected rows differ:\n{}",
        output_text(&out)
    );
    let full = verified_chunks().await;
    assert!(full > 2, "verify walked {full} chunks");
    let killed = reshard::shard_tool(
        &home,
        &["verify", &j, "--chunk-rows", "5000", "--restart"],
        &[("SHARD_TOOL_CRASH_AT", "verify-chunk")],
    );
    assert!(
        killed.status.code().is_none(),
        "verify was not killed:\n{}",
        output_text(&killed)
    );
    assert_eq!(
        verified_chunks().await,
        1,
        "the killed verify saved its first chunk"
    );
    let out = reshard::shard_tool(&home, &["verify", &j, "--chunk-rows", "5000"], &[]);
    assert_eq!(out.status.code(), Some(1), "verify:\n{}", output_text(&out));
    assert_eq!(
        verified_chunks().await,
        full,
        "the resumed verify walked the rest only"
    );

    assert!(!run(&home, &["cancel", &j], None));
    assert!(reshard::leftovers(&state, job).await.is_empty());
    assert_eq!(reshard::city_rows(&state, to, CITY).await, 0);
    println!("reshard kills: {:.0}s", started.elapsed().as_secs_f64());
}
