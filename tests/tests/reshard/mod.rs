//! What the reshard tests (`serial_reshard*.rs`) share: a stack of their
//! own with one region of two shards, a city seeded by COPY, shard-tool
//! run as an operator runs it, and the checks that a job left nothing
//! behind.

use std::path::Path;
use std::process::{Command, Output};

use cityboard_tests::{OwnStack, StackState, output_text, shard_tool_bin};

use crate::chaos::api::Apis;
use crate::chaos::load::{Outcome, follow};
use serde_json::Value;
use sqlx::PgPool;

/// One region, `solo`: shard-1 holds `newyork` and `boston`, shard-2
/// `philadelphia` (with a streaming replica, whose lag the copy watches).
pub fn topology(port_base: u16) -> String {
    cityboard_deploy::topology::two_shard_topology_text(port_base, 1)
}

/// Starts the stack `name` on `port_base`.
pub fn start(name: &str, port_base: u16) -> OwnStack {
    let stack = OwnStack::prepare(name, port_base);
    std::fs::write(&stack.topology, topology(port_base)).expect("topology");
    let out = stack.up();
    assert!(out.status.success(), "up failed:\n{}", output_text(&out));
    stack
}

/// Seeded posts have ids `1..=n`: far below any Snowflake id the api
/// hands out, so the checks tell them apart.
pub const SEEDED_BELOW: u64 = 1 << 40;

/// COPYs `n` posts of `city` into `shard` (ids 1..=n), as a bench seed
/// does: no command, no event, no KV page.
pub async fn seed(primary: &PgPool, city: &str, n: i64) {
    let mut conn = primary.acquire().await.expect("a connection");
    let mut copy = conn
        .copy_in_raw(
            "COPY posts (city, id, user_id, category, title, description, price, location, \
             status, version, image_count, created_at, updated_at, expires_at) FROM STDIN",
        )
        .await
        .expect("COPY posts");
    let now = chrono::Utc::now();
    let stamp = now.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let expires = (now + chrono::Duration::days(6))
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string();
    let mut buf = String::with_capacity(4 << 20);
    for i in 1..=n {
        let status = if i % 50 == 0 { "deleted" } else { "live" };
        buf.push_str(&format!(
            "{city}\t{i}\t{}\tfor-sale\tseeded bike {i}\tA seeded post with \"quotes\", tabs\\tand a newline\\n.\t{}\t{}\t{status}\t{}\t0\t{stamp}\t{stamp}\t{expires}\n",
            1000 + i % 97,
            if i % 7 == 0 { "\\N".to_string() } else { (i % 5000).to_string() },
            if i % 3 == 0 { "\\N" } else { "Downtown" },
            1 + i % 3,
        ));
        if buf.len() > (4 << 20) - 512 {
            copy.send(buf.as_bytes()).await.expect("COPY data");
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await.expect("COPY data");
    copy.finish().await.expect("COPY end");
}

/// The primary of shard `shard` of the stack.
pub fn primary_url(state: &StackState, shard: &str) -> String {
    state
        .regions
        .iter()
        .flat_map(|r| &r.shards)
        .find(|s| s.name == shard)
        .map(|s| s.primary_url.clone())
        .unwrap_or_else(|| panic!("the stack has no {shard}"))
}

/// Runs shard-tool on the stack in `home` with `args`, and `env`.
pub fn shard_tool(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let state = home.join("state.json");
    let mut cmd = Command::new(shard_tool_bin());
    cmd.arg("--state")
        .arg(&state)
        .args(args)
        .env_remove("CITYBOARD_HOME")
        .env_remove("CITYBOARD_STATE")
        .env_remove("CITYBOARD_CATALOG_URL")
        .env_remove("CITYBOARD_REGION")
        .env_remove("SHARD_TOOL_CRASH_AT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run shard-tool")
}

/// Runs shard-tool and asserts it succeeded; its output.
pub fn ok(home: &Path, args: &[&str]) -> Output {
    let out = shard_tool(home, args, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "shard-tool {args:?}:\n{}",
        output_text(&out)
    );
    out
}

/// The JSON lines of an output.
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The job id `move --json` printed.
pub fn job_id(out: &Output) -> i64 {
    json_lines(out)
        .iter()
        .find_map(|l| l["job"].as_i64())
        .unwrap_or_else(|| panic!("no job in:\n{}", output_text(out)))
}

/// The primaries of the stack's shards, by name.
pub async fn primaries(state: &StackState) -> Vec<(String, PgPool)> {
    let mut out = Vec::new();
    for s in state.regions.iter().flat_map(|r| &r.shards) {
        out.push((s.name.clone(), cityboard_tests::pg(&s.primary_url).await));
    }
    out
}

/// Replication objects of job `job` on any shard: publications,
/// subscriptions and slots named `cb_<job>…`, and tablesync slots.
pub async fn leftovers(state: &StackState, job: i64) -> Vec<String> {
    let mut found = Vec::new();
    let pattern = format!("cb\\_{job}%");
    for (name, db) in primaries(state).await {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'publication', pubname::text FROM pg_publication WHERE pubname LIKE $1
             UNION ALL SELECT 'subscription', subname::text FROM pg_subscription WHERE subname LIKE $1
             UNION ALL SELECT 'slot', slot_name::text FROM pg_replication_slots
                        WHERE slot_name LIKE $1 OR slot_name LIKE 'pg\\_%\\_sync\\_%'",
        )
        .bind(&pattern)
        .fetch_all(&db)
        .await
        .expect("replication objects");
        found.extend(rows.into_iter().map(|(k, n)| format!("{k} {n} on {name}")));
        db.close().await;
    }
    found
}

/// The city's rows per city-keyed table on the shard `shard` of `state`.
pub async fn city_rows(state: &StackState, shard: &str, city: &str) -> i64 {
    let db = cityboard_tests::pg(&primary_url(state, shard)).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE i.indisprimary AND a.attname = 'city' AND c.relname <> 'city_fence'
           AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&db)
    .await
    .expect("city-keyed tables");
    let mut n = 0;
    for t in tables {
        n += sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t} WHERE city = $1"))
            .bind(city)
            .fetch_one(&db)
            .await
            .expect("count");
    }
    db.close().await;
    n
}

/// Where the catalog places `city`: (shard, epoch).
pub async fn placed(state: &StackState, city: &str) -> (String, i64) {
    let db = cityboard_tests::pg(&state.regions[0].catalog_url).await;
    let row = sqlx::query_as("SELECT shard, epoch FROM shard_map WHERE city = $1")
        .bind(city)
        .fetch_one(&db)
        .await
        .expect("shard_map");
    db.close().await;
    row
}

/// The city's posts on shard `shard`.
pub async fn posts_on(state: &StackState, shard: &str, city: &str) -> i64 {
    let db = cityboard_tests::pg(&primary_url(state, shard)).await;
    let n = sqlx::query_scalar("SELECT count(*) FROM posts WHERE city = $1")
        .bind(city)
        .fetch_one(&db)
        .await
        .expect("count");
    db.close().await;
    n
}

/// One post to `city`, followed to its end: it must apply.
pub async fn write_applies(apis: &Apis, city: &str, token: &str, title: &str) {
    let body = serde_json::json!({"category": "for-sale", "title": title,
        "description": "Written during a move.", "price": 5, "location": "Downtown"})
    .to_string();
    let r = apis
        .send("POST", city, "/post", Some(token), body.as_bytes())
        .await
        .expect("POST /post");
    match r.status {
        201 => {}
        202 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            let command = v["command"].as_str().expect("a command").to_string();
            let outcome = follow(apis, city, token, &command).await;
            assert!(
                matches!(
                    outcome,
                    Outcome::Acked {
                        version: Some(_),
                        ..
                    }
                ),
                "{title}: {outcome:?}"
            );
        }
        s => panic!("{title}: {s} {}", r.text()),
    }
}
