//! The local rehearsal of the runbook's shard steps (issue 31): `cityboard
//! failover` promotes a replica while people post, and the roles follow
//! through the catalog without a restart; `cityboard backup` and `restore`
//! put a shard back to what it held. Each on a stack of its own.

#[allow(dead_code)] // the faults and most of the checks are the chaos test's
mod chaos;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cityboard_test_support::eventually;
use cityboard_tests::{OwnStack, StackState, cityboard, output_text, pg};
use serde_json::Value;

use chaos::api::Apis;
use chaos::load::{Ledger, Load, Outcome, client, follow, follow_pending};

const FAILOVER_PORT_BASE: u16 = 23100;
const RESTORE_PORT_BASE: u16 = 23600;
/// The roles of a region: none of them may restart for a failover.
const ROLES: [&str; 5] = ["api", "writer", "relay", "janitor", "publisher"];
const QUIET_LIMIT: Duration = Duration::from_secs(120);

/// `cityboard ARGS` on the stack in `home`, off the test's runtime.
async fn cityboard_async(home: &Path, args: &[&str]) -> Output {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cityboard(&home, &args)
    })
    .await
    .expect("cityboard")
}

/// The JSON lines `--json` printed.
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Restart counts of the region's roles.
fn role_restarts(state: &StackState) -> Vec<(String, u32)> {
    let region = &state.regions[0].name;
    ROLES
        .iter()
        .map(|role| {
            let name = format!("{region}/{role}");
            let c = state.component(&name).expect("a role component");
            (name, c.restarts)
        })
        .collect()
}

/// The port of a postgres:// URL of the state file.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Creates a post in `city` and waits until it is applied; its id.
async fn create(apis: &Apis, city: &str, token: &str, title: &str) -> Option<u64> {
    let body = serde_json::json!({"category": "for-sale", "title": title,
        "description": "Kept or not by a restore.", "price": 10, "location": "Downtown"})
    .to_string();
    let r = apis
        .send("POST", city, "/post", Some(token), body.as_bytes())
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let post = v["post"].as_str().and_then(|p| p.parse().ok());
    match r.status {
        200 | 201 => post,
        202 => match follow(apis, city, token, v["command"].as_str()?).await {
            Outcome::Acked {
                version: Some(_), ..
            } => post,
            _ => None,
        },
        _ => None,
    }
}

/// Streaming replicas the primary at `url` sends to.
async fn streaming_replicas(url: &str) -> i64 {
    let db = pg(url).await;
    let n =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .fetch_one(&db)
            .await
            .expect("pg_stat_replication");
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_failover_promotes_a_replica_under_load_and_loses_nothing() {
    let started = Instant::now();
    // shard-1 (newyork, boston) has no replica; shard-2 (philadelphia) two.
    let stack = OwnStack::prepare("failover", FAILOVER_PORT_BASE);
    std::fs::write(
        &stack.topology,
        cityboard_deploy::topology::two_shard_topology_text(FAILOVER_PORT_BASE, 2),
    )
    .expect("topology");
    let out = stack.up();
    assert!(out.status.success(), "up failed:\n{}", output_text(&out));
    let state = stack.state();

    // Bad input: exit code 2, a message, nothing changed.
    let nowhere = stack.home.with_file_name("no-stack-here");
    for (home, args, says) in [
        (
            &stack.home,
            ["failover", "atlantis", "shard-2"],
            "no region",
        ),
        (&stack.home, ["failover", "solo", "shard-7"], "no shard"),
        (&stack.home, ["failover", "solo", "shard-1"], "no replica"),
        (
            &nowhere,
            ["failover", "solo", "shard-2"],
            "no stack is running",
        ),
    ] {
        let out = cityboard_async(home, &args).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}:\n{}",
            output_text(&out)
        );
        assert!(
            output_text(&out).contains(says),
            "{args:?}:\n{}",
            output_text(&out)
        );
    }
    assert_eq!(
        stack.state().arrangement,
        0,
        "a refused failover changed nothing"
    );

    // The load: writes on the shard that fails over and on the other one.
    let apis = Apis::new(&stack.home, &state);
    let cities: Vec<String> = ["philadelphia", "newyork"].map(String::from).to_vec();
    let mut tokens = Vec::new();
    for n in 0..6 {
        tokens.push(
            apis.user(&cities[n % cities.len()], &format!("failover{n}"))
                .await
                .expect("a user"),
        );
    }
    let ledger = Arc::new(Ledger::default());
    let load = Load::new(
        &apis,
        &cities,
        &ledger,
        usize::MAX,
        Duration::from_millis(30),
    );
    let clients: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| tokio::spawn(client(load.clone(), n, t.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let restarts = role_restarts(&stack.state());
    let t0 = Instant::now();
    let out = cityboard_async(&stack.home, &["failover", "solo", "shard-2", "--json"]).await;
    assert!(out.status.success(), "failover:\n{}", output_text(&out));
    let failed_over = Instant::now();
    let steps = json_lines(&out);
    let named: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(
        named,
        [
            "plan", "fence", "promote", "catalog", "repoint", "rebuild", "done"
        ],
        "{}",
        output_text(&out)
    );
    let promoted = steps[2]["member"].as_str().expect("the promoted member");
    assert_eq!(steps[1]["member"], "solo/shard-2/primary");
    assert!(promoted.starts_with("solo/shard-2/replica-"), "{promoted}");
    // The other replica followed by a reload, not a fresh copy.
    assert_eq!(steps[4]["rebuilt"], Value::Null, "{}", steps[4]);
    println!("failover took {:.1}s", t0.elapsed().as_secs_f64());

    // Writes go on after it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("a client");
    }
    follow_pending(&ledger, &apis, &tokens).await;

    let after = stack.state();
    assert_eq!(role_restarts(&after), restarts, "a role was restarted");
    let shard = &after.regions[0].shards[1];
    let new_primary = after.component(promoted).expect("the promoted member");
    assert_eq!(port_of(&shard.primary_url), new_primary.port);
    assert_eq!(new_primary.kind, "postgres");
    let old = after
        .component("solo/shard-2/primary")
        .expect("the old primary");
    assert_eq!(old.kind, "postgres-replica");
    assert_eq!(shard.replica_urls.len(), 2, "{shard:?}");

    // Every acknowledged write is on the shard's primary now (and KV agrees).
    let kv = cityboard_deploy::edge_kv::Client::of_stack(
        after.component("edge-kv").expect("edge-kv").port,
        &cityboard_tests::Home::new(&stack.home)
            .expect("home")
            .secrets_dir(),
    )
    .expect("the stack's edge-kv key");
    let (rows, entries) = chaos::check::until_quiet(&after, &kv, QUIET_LIMIT, |_| true).await;
    let kv_ids = chaos::observe::kv_post_ids(&kv).await;
    let writes = ledger.snapshot();
    let bad = chaos::check::violations(&writes, &rows, &entries, &kv_ids);
    assert!(bad.is_empty(), "{} violations: {bad:#?}", bad.len());
    let acked_after = writes
        .iter()
        .filter(|w| w.city == "philadelphia" && w.sent > failed_over && w.is_acked())
        .count();
    assert!(
        acked_after > 0,
        "no write on the shard succeeded after the failover"
    );

    // The old primary streams from the new one; the catalog names the new one.
    assert_eq!(streaming_replicas(&shard.primary_url).await, 2);
    let catalog = pg(&after.regions[0].catalog_url).await;
    let in_catalog: String = sqlx::query_scalar(
        "SELECT primary_url FROM shards WHERE region = 'solo' AND name = 'shard-2'",
    )
    .fetch_one(&catalog)
    .await
    .expect("the shards row");
    catalog.close().await;
    assert_eq!(in_catalog, shard.primary_url);

    // down + up keeps the arrangement, and the api writes to the shard.
    let out = cityboard_async(&stack.home, &["down"]).await;
    assert!(out.status.success(), "down:\n{}", output_text(&out));
    let out = stack.up();
    assert!(out.status.success(), "up again:\n{}", output_text(&out));
    let again = stack.state();
    assert_eq!(again.regions[0].shards[1].primary_url, shard.primary_url);
    assert_eq!(again.component(promoted).expect("member").kind, "postgres");
    let url = shard.primary_url.clone();
    eventually(
        "both replicas streaming after up",
        Duration::from_secs(60),
        || async { (streaming_replicas(&url).await == 2).then_some(()) },
    )
    .await;
    let apis = Apis::new(&stack.home, &again);
    let token = apis.user("philadelphia", "after-up").await.expect("a user");
    let post = create(&apis, "philadelphia", &token, "after down and up").await;
    assert!(post.is_some(), "a write after down and up was not applied");
    println!(
        "failover under load: {} writes ({} acknowledged, {acked_after} after the failover); {:.0}s",
        writes.len(),
        writes.iter().filter(|w| w.is_acked()).count(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_backup_restore_puts_a_shard_back_to_the_backup() {
    let stack = OwnStack::start("backup-restore", RESTORE_PORT_BASE);
    let state = stack.state();
    let apis = Apis::new(&stack.home, &state);
    let token = apis.user("newyork", "keeper").await.expect("a user");
    let mut kept = Vec::new();
    for n in 0..5 {
        kept.push(
            create(&apis, "newyork", &token, &format!("kept {n}"))
                .await
                .expect("a post before the backup"),
        );
    }
    let dir = stack.home.with_file_name("backup");
    let out = cityboard_async(
        &stack.home,
        &[
            "backup",
            "solo",
            "shard-1",
            "--out",
            dir.to_str().expect("utf-8"),
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "backup:\n{}", output_text(&out));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(dir.join("cityboard-backup.json")).expect("the manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["shard"], "shard-1");
    assert!(manifest["end_lsn"].as_str().is_some(), "{manifest}");
    let mut lost = Vec::new();
    for n in 0..5 {
        lost.push(
            create(&apis, "newyork", &token, &format!("lost {n}"))
                .await
                .expect("a post after the backup"),
        );
    }
    let restarts = role_restarts(&stack.state());

    let out = cityboard_async(
        &stack.home,
        &[
            "restore",
            "solo",
            "shard-1",
            "--from",
            dir.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert!(out.status.success(), "restore:\n{}", output_text(&out));
    // A backup of another shard is refused, exit 2.
    let out = cityboard_async(
        &stack.home,
        &[
            "restore",
            "solo",
            "2",
            "--from",
            dir.to_str().expect("utf-8"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    let after = stack.state();
    let db = pg(&after.regions[0].shards[0].primary_url).await;
    let count = |ids: Vec<u64>| {
        let db = db.clone();
        async move {
            let ids: Vec<i64> = ids.into_iter().map(|i| i as i64).collect();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE id = ANY($1)")
                .bind(ids)
                .fetch_one(&db)
                .await
                .expect("count");
            n
        }
    };
    assert_eq!(count(kept.clone()).await, 5, "posts of the backup");
    assert_eq!(count(lost).await, 0, "posts written after the backup");
    db.close().await;
    assert_eq!(role_restarts(&after), restarts, "a role was restarted");
    assert_eq!(
        streaming_replicas(&after.regions[0].shards[0].primary_url).await,
        1
    );

    // The api serves the shard again: reads and writes.
    let path = format!("/post/{}", kept[0]);
    eventually("a kept post served", Duration::from_secs(60), || async {
        let r = apis.send("GET", "newyork", &path, None, b"").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    eventually(
        "a write after the restore",
        Duration::from_secs(60),
        || async { create(&apis, "newyork", &token, "after the restore").await },
    )
    .await;
    // The stack's home is purged when it drops; the backup beside it too.
    let _ = std::fs::remove_dir_all(&dir);
}
