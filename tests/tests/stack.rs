//! The shared stack `deploy/test` started: every component the topology
//! asks for is there, real, and does its job. These tests only read and
//! write data, so they run in parallel.

use std::time::Duration;

use cityboard_test_support::eventually;
use cityboard_tests::{Health, Phase, cityboard, output_text, pg, shared_home, state};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[tokio::test]
async fn every_component_is_healthy_and_named_in_status() {
    let home = shared_home();
    let st = state(&home);
    assert_eq!(st.phase, Phase::Running, "{:?}", st.error);
    let out = cityboard(&home, &["status", "--json"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(status["healthy"], true, "{status:#}");
    let components = status["state"]["components"]
        .as_array()
        .expect("components");
    // Per region: catalog, 2 Redis, and per shard a primary and its replicas.
    let expected: usize = 1 + st
        .regions
        .iter()
        .map(|r| {
            3 + r
                .shards
                .iter()
                .map(|s| 1 + s.replica_urls.len())
                .sum::<usize>()
        })
        .sum::<usize>();
    let databases_and_broker = components
        .iter()
        .filter(|c| {
            ["postgres", "postgres-replica", "redis", "broker"]
                .contains(&c["kind"].as_str().unwrap_or(""))
        })
        .count();
    assert_eq!(databases_and_broker, expected, "{status:#}");
    for c in components {
        assert_eq!(c["health"], "healthy", "{c:#}");
        assert!(c["restarts"].is_u64(), "{c:#}");
    }
    // Every replica reports its replay lag in bytes, measured by LSN.
    let replicas: Vec<_> = components
        .iter()
        .filter(|c| c["kind"] == "postgres-replica")
        .collect();
    assert!(!replicas.is_empty());
    let lags = status["replica_lag_bytes"]
        .as_array()
        .expect("replica_lag_bytes");
    for r in replicas {
        let lag = lags
            .iter()
            .find(|pair| pair[0] == r["name"])
            .unwrap_or_else(|| panic!("no lag for {r:#}"));
        assert!(lag[1].is_i64(), "lag of {} not measured: {lag}", r["name"]);
    }
    for c in &st.components {
        assert_eq!(c.health, Health::Healthy, "{}", c.name);
    }
}

#[tokio::test]
async fn a_row_written_on_each_primary_is_read_on_its_replicas() {
    let st = state(&shared_home());
    let marker = format!("m{}", std::process::id());
    for region in &st.regions {
        for shard in &region.shards {
            let primary = pg(&shard.primary_url).await;
            sqlx::query("CREATE TABLE IF NOT EXISTS stack_probe (marker text PRIMARY KEY)")
                .execute(&primary)
                .await
                .expect("create");
            sqlx::query("INSERT INTO stack_probe VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(&marker)
                .execute(&primary)
                .await
                .expect("insert");
            for url in &shard.replica_urls {
                let replica = pg(url).await;
                let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&replica)
                    .await
                    .expect("pg_is_in_recovery");
                assert!(in_recovery, "{url} is not a replica");
                eventually(
                    &format!("{marker} on {url}"),
                    Duration::from_secs(30),
                    || async {
                        sqlx::query_scalar::<_, i64>(
                            "SELECT count(*) FROM stack_probe WHERE marker = $1",
                        )
                        .bind(&marker)
                        .fetch_one(&replica)
                        .await
                        .ok()
                        .filter(|n| *n == 1)
                    },
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn primaries_are_ready_for_logical_decoding() {
    let st = state(&shared_home());
    for shard in st.regions.iter().flat_map(|r| &r.shards) {
        let primary = pg(&shard.primary_url).await;
        let level: String = sqlx::query_scalar("SHOW wal_level")
            .fetch_one(&primary)
            .await
            .expect("wal_level");
        assert_eq!(level, "logical", "{}", shard.primary_url);
    }
}

#[tokio::test]
async fn the_two_redis_instances_have_their_policies() {
    let st = state(&shared_home());
    for region in &st.regions {
        let setting = |url: &str, name: &str| {
            let client = redis::Client::open(url).expect("redis url");
            let mut conn = client.get_connection().expect("redis connection");
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query(&mut conn)
                .expect("CONFIG GET");
            pair.get(1).cloned().unwrap_or_default()
        };
        assert_eq!(
            setting(&region.redis_cache_url, "maxmemory-policy"),
            "allkeys-lru"
        );
        assert_eq!(setting(&region.redis_cache_url, "appendonly"), "no");
        assert_ne!(
            setting(&region.redis_cache_url, "maxmemory"),
            "0",
            "an LRU cache needs a bound"
        );
        assert_eq!(
            setting(&region.redis_store_url, "maxmemory-policy"),
            "noeviction"
        );
        assert_eq!(setting(&region.redis_store_url, "appendonly"), "yes");
    }
}

#[tokio::test]
async fn a_redis_client_without_the_password_is_refused() {
    let st = state(&shared_home());
    for region in &st.regions {
        for url in [&region.redis_cache_url, &region.redis_store_url] {
            // The state file's URL carries the password and is let in.
            let mut conn = redis::Client::open(url.as_str())
                .expect("redis url")
                .get_connection()
                .expect("redis connection");
            let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
            assert_eq!(pong, "PONG");
            // The same address without it: refused, and no key is readable.
            let (_, rest) = url.split_once('@').expect("a URL with credentials");
            let bare = format!("redis://{rest}");
            let mut conn = redis::Client::open(bare.as_str())
                .expect("redis url")
                .get_connection()
                .expect("a TCP connection is still accepted");
            let refused = redis::cmd("GET")
                .arg("any")
                .query::<Option<String>>(&mut conn)
                .expect_err("an unauthenticated GET");
            assert_eq!(refused.code(), Some("NOAUTH"), "{refused}");
            // A wrong password is refused too.
            let wrong = format!("redis://:not-the-password@{rest}");
            assert!(
                redis::Client::open(wrong.as_str())
                    .expect("redis url")
                    .get_connection()
                    .is_err(),
                "a wrong password was let in at {rest}"
            );
        }
    }
}

#[tokio::test]
async fn the_edge_kv_service_refuses_a_client_without_its_key() {
    let st = state(&shared_home());
    let port = st.component("edge-kv").expect("edge-kv").port;
    let list = "/?prefix=route%3A&key_count_limit=1";
    for headers in [vec![], vec![("authorization", "Bearer not-the-key")]] {
        let r = cityboard_deploy::http::request(port, "GET", list, &headers, b"")
            .await
            .expect("edge-kv answers");
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
    }
    // With the stack's key (which the edge's workerd presents): served.
    let home = cityboard_tests::Home::new(&shared_home()).expect("home");
    let kv = cityboard_deploy::edge_kv::Client::of_stack(port, &home.secrets_dir())
        .expect("the stack's edge-kv key");
    let r = kv
        .request("GET", list, &[], b"")
        .await
        .expect("edge-kv answers");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn each_region_has_its_topics_on_the_broker() {
    let st = state(&shared_home());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &st.broker)
        .create()
        .expect("kafka client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let topics: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    for region in &st.regions {
        for suffix in ["commands", "events", "dead-letters"] {
            let name = format!("{}.{suffix}", region.name);
            assert!(
                topics.contains(&name.as_str()),
                "{name} missing from {topics:?}"
            );
        }
    }
}

#[tokio::test]
async fn up_again_duplicates_nothing() {
    let home = shared_home();
    let before = state(&home);
    let topology = home.join("topology.toml");
    let out = cityboard(&home, &["up", "--topology", topology.to_str().unwrap()]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("already runs"),
        "{}",
        output_text(&out)
    );
    let after = state(&home);
    assert_eq!(before.supervisor, after.supervisor);
    for c in &before.components {
        let now = after.component(&c.name).expect("component still listed");
        assert_eq!(
            c.process, now.process,
            "{} was restarted by a second up",
            c.name
        );
    }
}

#[tokio::test]
async fn logs_prints_a_component_log() {
    let home = shared_home();
    let st = state(&home);
    let name = &st.components[0].name;
    let out = cityboard(&home, &["logs", name, "-n", "5"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = cityboard(&home, &["logs", "no-such-component"]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("no-such-component"),
        "{}",
        output_text(&out)
    );
}

/// A `KEY=value` of a process's environment, as the kernel holds it.
fn environment_of(pid: i32, key: &str) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        let text = std::str::from_utf8(entry).ok()?;
        text.strip_prefix(key)?
            .strip_prefix('=')
            .map(str::to_string)
    })
}

#[tokio::test]
async fn serving_processes_use_postgres_roles_that_are_neither_superuser_nor_replication() {
    use cityboard_deploy::postgres;
    let home = shared_home();
    let st = state(&home);
    let secrets = cityboard_tests::Home::new(&home)
        .expect("home")
        .secrets_dir();
    let region = &st.regions[0];
    let shard = &region.shards[0];
    let admin = pg(&shard.primary_url).await;

    // Each serving process connects as its own login, from its environment
    // (the URLs name no user), and no password is on its command line.
    let mut seen = Vec::new();
    for c in &st.components {
        if !["region-api", "writer", "relay", "publisher", "janitor"].contains(&c.kind.as_str()) {
            continue;
        }
        let pid = c.process.as_ref().expect("a running process").pid;
        let user = environment_of(pid, "PGUSER").unwrap_or_else(|| panic!("{}: no PGUSER", c.name));
        assert!(environment_of(pid, "PGPASSWORD").is_none(), "{}", c.name);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        let pw = postgres::password(&secrets, &user).expect("password");
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&pw),
            "{}: the password is on the command line",
            c.name
        );
        let (superuser, replication): (bool, bool) =
            sqlx::query_as("SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = $1")
                .bind(&user)
                .fetch_one(&admin)
                .await
                .unwrap_or_else(|e| panic!("{}: role {user}: {e}", c.name));
        assert!(
            !superuser && !replication,
            "{}: {user} is privileged",
            c.name
        );
        seen.push(user);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "cb_api",
            "cb_janitor",
            "cb_publisher",
            "cb_relay",
            "cb_writer"
        ],
        "one login per purpose"
    );

    // The api's login reads and writes rows, and can change no schema nor
    // the migration history.
    let api_options = |url: &str| {
        url.parse::<sqlx::postgres::PgConnectOptions>()
            .expect("url")
            .username("cb_api")
            .password(&postgres::password(&secrets, "cb_api").expect("password"))
    };
    let api = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(api_options(&shard.primary_url))
        .await
        .expect("cb_api logs in with its password");
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE false")
        .fetch_one(&api)
        .await
        .expect("cb_api reads posts");
    assert_eq!(posts, 0);
    for ddl in [
        "CREATE TABLE cb_api_may_not (x int)",
        "DROP TABLE posts",
        "TRUNCATE posts",
        "DELETE FROM _sqlx_migrations",
        "COPY posts TO PROGRAM 'true'",
    ] {
        let e = sqlx::query(ddl).execute(&api).await.expect_err(ddl);
        assert!(
            e.to_string().contains("permission denied")
                || e.to_string().contains("must be owner")
                || e.to_string().contains("pg_execute_server_program"),
            "{ddl}: {e}"
        );
    }

    // Every instance asks for a password: no trust, not even for the
    // superuser, and a wrong password is refused.
    let mut urls = vec![region.catalog_url.clone(), shard.primary_url.clone()];
    urls.extend(shard.replica_urls.iter().cloned());
    for url in &urls {
        for password in ["", "wrong"] {
            let options = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .expect("url")
                .username("postgres")
                .password(password);
            let e = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await
                .expect_err("a connection without the right password");
            assert!(
                e.to_string().contains("password authentication failed"),
                "{url}: {e}"
            );
        }
    }

    // The replicas stream as the replication login, not as the superuser.
    // (Physical walreceivers only: a move's subscriptions stream too.)
    let replicated = region
        .shards
        .iter()
        .find(|s| !s.replica_urls.is_empty())
        .expect("a replicated shard");
    let streaming: Vec<String> = sqlx::query_scalar(
        "SELECT usename::text FROM pg_stat_replication WHERE application_name = 'walreceiver'",
    )
    .fetch_all(&pg(&replicated.primary_url).await)
    .await
    .expect("pg_stat_replication");
    assert!(
        !streaming.is_empty() && streaming.iter().all(|u| u == "cb_replication"),
        "{streaming:?}"
    );
}

/// `cityboard render wrangler --catalog ...` against the stack's catalogs:
/// every environment's `CITIES` places each city where the catalogs'
/// `shard_map` does (the newest epoch when two catalogs list it, as during
/// a cross-region move), and `ORIGINS` names every region of the stack.
#[tokio::test]
async fn the_rendered_worker_places_each_city_where_the_catalogs_do() {
    let home = shared_home();
    let st = state(&home);
    let mut placed: std::collections::BTreeMap<String, (String, i64)> = Default::default();
    for region in &st.regions {
        let catalog = pg(&region.catalog_url).await;
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT city, region, epoch FROM shard_map")
                .fetch_all(&catalog)
                .await
                .expect("shard_map");
        for (city, region, epoch) in rows {
            if placed.get(&city).is_none_or(|(_, e)| epoch > *e) {
                placed.insert(city, (region, epoch));
            }
        }
    }
    assert!(!placed.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("wrangler.toml");
    let root = cityboard_tests::repo_root();
    let mut args: Vec<String> = vec![
        "render".into(),
        "wrangler".into(),
        "--out".into(),
        out.display().to_string(),
        "--topology".into(),
        root.join("deploy/topology.toml").display().to_string(),
        "--values".into(),
        root.join("deploy/render/values.toml").display().to_string(),
    ];
    for region in &st.regions {
        args.extend(["--catalog".into(), region.catalog_url.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = cityboard(&home, &args);
    assert!(run.status.success(), "{}", output_text(&run));
    let wrangler: toml::Table = std::fs::read_to_string(&out)
        .expect("rendered")
        .parse()
        .expect("TOML");
    for env in ["local", "staging", "production"] {
        let vars = &wrangler["env"][env]["vars"];
        let cities: serde_json::Value =
            serde_json::from_str(vars["CITIES"].as_str().expect("CITIES")).expect("JSON");
        let got: std::collections::BTreeMap<String, String> = cities
            .as_array()
            .expect("a list")
            .iter()
            .map(|c| {
                (
                    c["slug"].as_str().unwrap().into(),
                    c["region"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want: std::collections::BTreeMap<String, String> = placed
            .iter()
            .map(|(city, (region, _))| (city.clone(), region.clone()))
            .collect();
        assert_eq!(got, want, "{env}: CITIES differs from the catalogs");
        let origins: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(vars["ORIGINS"].as_str().expect("ORIGINS")).expect("JSON");
        let regions: Vec<&String> = origins.keys().collect();
        let mut stack: Vec<&String> = st.regions.iter().map(|r| &r.name).collect();
        stack.sort();
        assert_eq!(regions, stack, "{env}: ORIGINS");
    }
}
