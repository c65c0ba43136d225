//! A move under pressure (issue 26, acceptance 6): the city that moves is
//! idle while another city of its shard writes heavily, and a single
//! UPDATE of 1 000 000 rows of that other city (its dedup history, a
//! narrow table, so the test stays cheap; the WAL the walsender must read
//! through is what matters) runs while the move's subscription streams. The publication's row filter leaves all of it
//! out, so the walsender decodes a great deal and sends nothing of it:
//! Postgres must still keep the subscriber informed (keepalives, progress
//! of skipped transactions), or the walsender times out and the move
//! stalls. The stack's `wal_sender_timeout` is lowered to 5 s for the test
//! so that a stall that long shows.
//!
//! Afterwards the idle city's cutover succeeds (its preflight sends a mark
//! through the stream and it must arrive), and the source's log has no
//! replication timeout.

#[allow(dead_code)] // the faults and checks are the chaos test's
mod chaos;
#[allow(dead_code)] // each serial_reshard test uses a part of it
mod reshard;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chaos::api::Apis;
use chaos::load::{Ledger, Load, client};

const PORT_BASE: u16 = 22500;
const BUSY_ROWS: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_reshard_idle_city_moves_while_its_shard_is_busy() {
    let started = Instant::now();
    let stack = reshard::start("reshard-pressure", PORT_BASE);
    let state = stack.state();
    let home = stack.home.clone();
    let s1_url = state.regions[0].shards[0].primary_url.clone();
    let s1 = cityboard_tests::pg(&s1_url).await;
    sqlx::query(
        "INSERT INTO applied_commands (city, command_id, outcome)
         SELECT 'newyork', g, 'applied' FROM generate_series(1, $1) AS g",
    )
    .bind(BUSY_ROWS)
    .execute(&s1)
    .await
    .expect("seed the busy city's history");
    sqlx::query("ALTER SYSTEM SET wal_sender_timeout = '5s'")
        .execute(&s1)
        .await
        .expect("lower wal_sender_timeout");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&s1)
        .await
        .expect("reload");

    // boston is idle: no post, no write. Its move streams from shard-1.
    let out = reshard::ok(&home, &["--json", "move", "boston", "--to", "shard-2"]);
    let job = reshard::job_id(&out).to_string();

    let s2 = cityboard_tests::pg(&state.regions[0].shards[1].primary_url).await;
    let worker = || async {
        sqlx::query_scalar::<_, Option<i32>>(
            "SELECT pid FROM pg_stat_subscription WHERE subname LIKE 'cb\\_%' AND relid IS NULL",
        )
        .fetch_one(&s2)
        .await
        .expect("the move's apply worker")
    };
    let worker_before = worker().await;
    assert!(
        worker_before.is_some(),
        "the move's subscription has no worker"
    );

    // newyork writes heavily through the api...
    let apis = Apis::new(&stack.home, &state);
    let mut tokens = Vec::new();
    for n in 0..4 {
        tokens.push(
            apis.user("newyork", &format!("busy{n}"))
                .await
                .expect("a user"),
        );
    }
    let load = Load::new(
        &apis,
        &["newyork".to_string()],
        &Arc::new(Ledger::default()),
        usize::MAX,
        Duration::from_millis(10),
    );
    let clients: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| tokio::spawn(client(load.clone(), n, t.clone())))
        .collect();
    // ...and one transaction changes every one of its seeded posts.
    let t0 = Instant::now();
    let changed = sqlx::query(
        "UPDATE applied_commands SET outcome = 'applied (rewritten)'
          WHERE city = 'newyork' AND command_id <= $1",
    )
    .bind(BUSY_ROWS)
    .execute(&s1)
    .await
    .expect("the big update")
    .rows_affected();
    let update_took = t0.elapsed();
    assert_eq!(changed, BUSY_ROWS as u64);

    // The idle city cuts over: its preflight's mark must come through, on
    // the same apply worker (a timeout would have restarted it).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        worker().await,
        worker_before,
        "the move's apply worker was restarted"
    );
    let out = reshard::ok(&home, &["cutover", &job]);
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client");
    }
    assert_eq!(
        reshard::placed(&state, "boston").await.0,
        "shard-2",
        "{:?}",
        out
    );
    reshard::ok(&home, &["cleanup", &job]);
    let log = std::fs::read_to_string(stack.home.join("logs/solo.shard-1.primary.log"))
        .expect("the source's log");
    let timeouts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("replication timeout"))
        .collect();
    assert!(
        timeouts.is_empty(),
        "the walsender timed out:\n{}",
        timeouts.join("\n")
    );
    let writes = load.ledger.snapshot();
    let acked = writes.iter().filter(|w| w.is_acked()).count();
    println!(
        "pressure: UPDATE of {BUSY_ROWS} rows took {:.1}s; {} writes ({acked} acknowledged) \
         to the busy city; {:.0}s in all",
        update_took.as_secs_f64(),
        writes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(acked > 50, "the busy city wrote too little: {acked}");
}
