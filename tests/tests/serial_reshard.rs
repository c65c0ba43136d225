//! shard-tool moves a city between the shards of its region while people
//! post, edit, delete and read it (issue 26, acceptance 1 and the
//! rollback of 6): a stack of its own, `newyork` seeded with posts by
//! COPY, a load of writes and reads on it and on two other cities (one on
//! each shard), and the whole job: move, verify, cutover, rollback,
//! cutover again, verify, cleanup.
//!
//! The load is held against the stack's own capacity, measured first in
//! the same run: 64 closed-loop posters for a few seconds give the
//! 64-poster rate, and the writes during the job must keep at least a
//! quarter of it.
//!
//! Afterwards, once the pipeline is quiet, the chaos test's checks prove
//! that every acknowledged write is there exactly once at its last
//! version, and KV with it; no client saw a 5xx; the seeded posts are all
//! on the target and none on the source; no shard keeps a slot, a
//! publication or a subscription of the job.

#[allow(dead_code)] // the faults are the chaos test's
mod chaos;
#[allow(dead_code)] // each serial_reshard test uses a part of it
mod reshard;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chaos::api::Apis;
use chaos::load::{Ledger, Load, Outcome, client, follow_pending};
use chaos::observe;

const PORT_BASE: u16 = 19300;
/// Posts seeded by COPY in the moving city (the figure).
const SEEDED: i64 = 200_000;
/// Clients of the load during the job (the first of the posters' users).
const CLIENTS: usize = 24;
/// Closed-loop posters whose rate the load is held against.
const POSTERS: usize = 64;
/// How long the posters post.
const POSTERS_FOR: Duration = Duration::from_secs(4);
const QUIET_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_reshard_moves_a_city_under_load_and_loses_nothing() {
    let started = Instant::now();
    let stack = reshard::start("reshard-load", PORT_BASE);
    let state = stack.state();
    let shard1 = &state.regions[0].shards[0];
    let db = cityboard_tests::pg(&shard1.primary_url).await;
    reshard::seed(&db, "newyork", SEEDED).await;
    db.close().await;

    // The load: writes through the apis, and reads beside them.
    let apis = Apis::new(&stack.home, &state);
    let cities: Vec<String> = ["newyork", "boston", "philadelphia"]
        .map(String::from)
        .to_vec();
    let mut tokens = Vec::new();
    for n in 0..POSTERS {
        tokens.push(
            apis.user(&cities[n % cities.len()], &format!("mover{n}"))
                .await
                .expect("a user"),
        );
    }
    // The 64-poster rate: writes answered per second by closed-loop
    // clients without a pause. Their writes join the ledger, checked with
    // the rest at the end.
    let ledger = Arc::new(Ledger::default());
    let posters = Load::new(&apis, &cities, &ledger, usize::MAX, Duration::ZERO);
    let t0 = Instant::now();
    let running: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| tokio::spawn(client(posters.clone(), n, t.clone())))
        .collect();
    tokio::time::sleep(POSTERS_FOR).await;
    posters.stop.store(true, Ordering::SeqCst);
    for c in running {
        c.await.expect("a poster");
    }
    let rate64 = ledger.snapshot().len() as f64 / t0.elapsed().as_secs_f64();
    let load = Load::new(
        &apis,
        &cities,
        &ledger,
        usize::MAX,
        Duration::from_millis(40),
    );
    let clients: Vec<_> = tokens
        .iter()
        .take(CLIENTS)
        .enumerate()
        .map(|(n, t)| tokio::spawn(client(load.clone(), n, t.clone())))
        .collect();
    let reads = Arc::new(AtomicUsize::new(0));
    let read_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (apis, load, reads, errors, cities) = (
            apis.clone(),
            load.clone(),
            reads.clone(),
            read_errors.clone(),
            cities.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0usize;
            while !load.stop.load(Ordering::SeqCst) {
                let city = &cities[i % cities.len()];
                let path = match i % 3 {
                    0 => "/post".to_string(),
                    1 => "/post?search=bike".to_string(),
                    _ => format!("/post/{}", 1 + (i % 1000)),
                };
                i += 1;
                match apis.send("GET", city, &path, None, b"").await {
                    Ok(r) if r.status >= 500 => errors
                        .lock()
                        .expect("errors")
                        .push(format!("GET {city}{path}: {}", r.status)),
                    Ok(_) => {}
                    Err(e) => errors
                        .lock()
                        .expect("errors")
                        .push(format!("GET {city}{path}: {e:#}")),
                }
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The job, step by step, as an operator runs it.
    // The move, watched through `status` as an operator would: the ETA
    // it shows at half the copy must be within 30 % of the time the copy
    // then took.
    let (job_start, written_before) = (Instant::now(), ledger.snapshot().len());
    let home = stack.home.clone();
    let mover = tokio::task::spawn_blocking(move || {
        reshard::ok(&home, &["--json", "move", "newyork", "--to", "shard-2"])
    });
    let mut at_half: Option<(chrono::DateTime<chrono::Utc>, f64)> = None;
    let mut copy_end: Option<chrono::DateTime<chrono::Utc>> = None;
    while !mover.is_finished() {
        let home = stack.home.clone();
        let out = tokio::task::spawn_blocking(move || {
            reshard::shard_tool(&home, &["--json", "status"], &[])
        })
        .await
        .expect("status");
        let now = chrono::Utc::now();
        if let Some(j) = reshard::json_lines(&out)
            .into_iter()
            .find(|l| l["kind"] == "job" && l["city"] == "newyork" && l["finished_at"].is_null())
        {
            let (copied, total) = (j["rows_copied"].as_i64(), j["rows_total"].as_i64());
            if let (Some(c), Some(t), Some(eta), None) =
                (copied, total, j["eta_seconds"].as_f64(), at_half)
                && t > 0
                && c * 2 >= t
            {
                at_half = Some((now, eta));
            }
            // When the mover saw the last table ready (its clock, this
            // machine's, as `now` above).
            if let Some(end) = j["progress"]["copy_finished_at"].as_str() {
                copy_end = end.parse().ok();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let out = mover.await.expect("move");
    let job = reshard::job_id(&out);
    let (half_at, eta) = at_half.expect("status never showed the copy half done with an ETA");
    if copy_end.is_none() {
        let db = cityboard_tests::pg(&state.regions[0].catalog_url).await;
        let end: Option<String> = sqlx::query_scalar(
            "SELECT progress ->> 'copy_finished_at' FROM reshard_jobs WHERE id = $1",
        )
        .bind(job)
        .fetch_one(&db)
        .await
        .expect("the job");
        db.close().await;
        copy_end = end.and_then(|e| e.parse().ok());
    }
    let copy_end = copy_end.expect("the job never recorded the copy's end");
    let actual = (copy_end - half_at).num_milliseconds() as f64 / 1000.0;
    println!("ETA at half the copy: {eta:.1}s, actual {actual:.1}s");
    assert!(
        (eta - actual).abs() <= 0.3 * actual.max(1.0),
        "the ETA at half the copy said {eta:.1}s; the copy took {actual:.1}s more"
    );
    // Every city-keyed table of the schema is in the job's publication:
    // a table added by a later migration moves too.
    let db = cityboard_tests::pg(&state.regions[0].shards[0].primary_url).await;
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
          WHERE i.indisprimary AND a.attname = 'city' AND c.relname <> 'city_fence'
            AND c.relnamespace = current_schema()::regnamespace
            AND c.relname NOT IN (SELECT tablename FROM pg_publication_tables WHERE pubname = $1)",
    )
    .bind(format!("cb_{job}"))
    .fetch_all(&db)
    .await
    .expect("published tables");
    db.close().await;
    assert!(
        missing.is_empty(),
        "city-keyed tables not in the publication: {missing:?}"
    );
    let j = job.to_string();
    let step = |args: Vec<String>| {
        let home = stack.home.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                reshard::ok(&home, &args)
            })
            .await
            .expect("shard-tool")
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    step(s(&["verify", &j])).await;
    step(s(&["cutover", &j])).await;
    assert_eq!(
        reshard::placed(&state, "newyork").await,
        ("shard-2".into(), 2)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    step(s(&["rollback", &j])).await;
    assert_eq!(
        reshard::placed(&state, "newyork").await,
        ("shard-1".into(), 3)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    step(s(&["cutover", &j])).await;
    assert_eq!(
        reshard::placed(&state, "newyork").await,
        ("shard-2".into(), 4)
    );
    // The writes' rate from the move's start to the last cutover: at least
    // a quarter of the 64-poster rate.
    let job_rate =
        (ledger.snapshot().len() - written_before) as f64 / job_start.elapsed().as_secs_f64();
    println!("load during the job: {job_rate:.0} writes/s; 64-poster rate {rate64:.0} writes/s");
    assert!(
        job_rate >= rate64 / 4.0,
        "the load wrote {job_rate:.0}/s during the job, under a quarter of the 64-poster rate ({rate64:.0}/s)"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The load stops; what it left pending is followed to its end.
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client");
    }
    reader.await.expect("the reader");
    follow_pending(&load.ledger, &apis, &tokens).await;
    step(s(&["verify", &j])).await;
    step(s(&["cleanup", &j])).await;

    // Quiet: every written row's KV entry at its version, outboxes empty.
    let kv_client = cityboard_deploy::edge_kv::Client::of_stack(
        state.component("edge-kv").expect("edge-kv").port,
        &cityboard_tests::Home::new(&stack.home)
            .expect("home")
            .secrets_dir(),
    )
    .expect("the stack's edge-kv key");
    let (rows, kv) = chaos::check::until_quiet(&state, &kv_client, QUIET_LIMIT, |r| {
        r.id >= reshard::SEEDED_BELOW
    })
    .await;
    let kv_ids = observe::kv_post_ids(&kv_client).await;
    let writes = load.ledger.snapshot();
    let mut bad = chaos::check::violations(&writes, &rows, &kv, &kv_ids);
    let unknown: Vec<String> = writes
        .iter()
        .filter_map(|w| match &w.outcome {
            Outcome::Unknown(why) => Some(format!("{:?} {}: {why}", w.kind, w.city)),
            _ => None,
        })
        .collect();
    bad.extend(
        unknown
            .iter()
            .map(|u| format!("a write got no answer or a 5xx: {u}")),
    );
    bad.extend(read_errors.lock().expect("errors").iter().cloned());
    let seeded_on = |shard: &'static str| {
        let state = state.clone();
        async move {
            let url = reshard::primary_url(&state, shard);
            let db = cityboard_tests::pg(&url).await;
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM posts WHERE city = 'newyork' AND id < $1")
                    .bind(reshard::SEEDED_BELOW as i64)
                    .fetch_one(&db)
                    .await
                    .expect("count");
            db.close().await;
            n
        }
    };
    assert_eq!(
        seeded_on("shard-2").await,
        SEEDED,
        "seeded posts on the target"
    );
    assert_eq!(
        reshard::city_rows(&state, "shard-1", "newyork").await,
        0,
        "rows left on the source"
    );
    let left = reshard::leftovers(&state, job).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    let acked = writes.iter().filter(|w| w.is_acked()).count();
    println!(
        "reshard under load: {} writes ({acked} acknowledged), {} reads, violations {}; {:.0}s",
        writes.len(),
        reads.load(Ordering::SeqCst),
        bad.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        acked > 100,
        "the load wrote too little to prove anything: {acked}"
    );
    assert!(
        bad.is_empty(),
        "{} violations:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
