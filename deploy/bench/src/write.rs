//! `cityboard bench write-pipeline`: the write path of design §4, in one
//! run against the stack of the first region.
//!
//! 1. The writer's drain rate: N create commands preloaded into a topic of
//!    the bench's own, then a writer of our own (`region-core writer
//!    --commands-topic … --group …`) applies them to the first shard;
//!    posts/s from the first to the last batch (`applied_commands.
//!    applied_at`). Baseline: COPY of the same rows (posts,
//!    applied_commands, outbox) into the same shard. The stack's relay of
//!    the region is held (SIGSTOP) while the writer drains, and the
//!    drained events are removed from the outbox before it resumes: the
//!    baseline ships nothing either, and 200 000 benchmark pages pushed
//!    through the publisher and the edge would load the 2 cores for
//!    minutes, during the drain and the runs after it.
//! 2. Posts/s through the stack's api at 64 and 512 concurrent posters
//!    (default apply wait), with the share answered 201, beside an api of
//!    our own with `--write-path direct` (one transaction per post on the
//!    primary) at the same concurrency (`write_load`).
//! 3. Visibility: POST's answer to the page served from edge KV, at 80 %
//!    of the highest rate of step 2 (`write_load`): design §4 asks for it
//!    below saturation, not only at half.
//! 4. The rate limiter's cost (see `limiter_cost`).
//! 5. The publisher draining a backlog: post_changed events of M of the
//!    drain's posts preloaded into a topic of the bench's own, then a
//!    publisher of our own (`region-core publisher --events-topic …
//!    --group …`) writes their pages to the edge's KV; pages/s from its
//!    first write to its last, beside the highest posting rate of step 2
//!    (target: at least 1.2 times it, or visibility grows without bound
//!    under sustained load).
//!
//! Sizes: `CITYBOARD_BENCH_POSTS` (default 200 000) commands for the drain,
//! `CITYBOARD_BENCH_PAGES` (default 20 000) pages for the publisher's,
//! `CITYBOARD_BENCH_SECS` (default 10) seconds per load run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::role::Role;
use super::write_load::{self, LoadFigures, Visibility};
use super::{env_size, place_city};
use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// The drain's city (its own: the stack's cities keep their data).
const DRAIN_CITY: &str = "benchdrain";
/// The COPY baseline's city.
const COPY_CITY: &str = "benchcopy";
/// Concurrent posters of the load runs.
const POSTERS: [usize; 2] = [64, 512];
/// The Snowflake epoch (2025-01-01 UTC), for ids of the bench's rows.
const ID_EPOCH_MS: i64 = 1_735_689_600_000;

/// Everything the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct WritePipeline {
    /// Commands preloaded and drained.
    pub drain_posts: usize,
    /// The writer's drain, posts/s.
    pub drain_posts_per_s: f64,
    /// Writer start to its first batch, s (consumer group join and so on;
    /// not in the rate).
    pub drain_startup_s: f64,
    /// COPY of the same rows, posts/s.
    pub copy_posts_per_s: f64,
    /// The api through the pipeline, per concurrency.
    pub pipeline: Vec<LoadFigures>,
    /// The api writing straight to the primary, per concurrency.
    pub direct: Vec<LoadFigures>,
    /// POST answered to page served from edge KV; none: no publisher.
    pub visibility: Option<Visibility>,
    /// 64 posters through an api with the stack's limits, in run order.
    pub limits_on: Vec<LoadFigures>,
    /// The same with the limiter disabled, alternated with `limits_on`.
    pub limits_off: Vec<LoadFigures>,
    /// Pages the publisher drained from a backlog.
    pub publisher_pages: usize,
    /// Its rate, pages/s.
    pub publisher_pages_per_s: f64,
    /// The highest posting rate of the load runs, posts/s.
    pub best_posts_per_s: f64,
}

/// What the bench needs from state.json about region 0, shard 0.
struct Target {
    region: String,
    catalog_url: String,
    shard: String,
    primary_url: String,
}

fn target(home: &Home) -> Result<Target> {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.state_file()).context("reading the stack's state.json (is it up?)")?,
    )?;
    let region = &state["regions"][0];
    let shard = &region["shards"][0];
    let text = |v: &serde_json::Value, what: &str| {
        v.as_str()
            .map(str::to_string)
            .with_context(|| format!("state.json: {what}"))
    };
    Ok(Target {
        region: text(&region["name"], "region name")?,
        catalog_url: text(&region["catalog_url"], "catalog_url")?,
        shard: text(&shard["name"], "shard name")?,
        primary_url: text(&shard["primary_url"], "primary_url")?,
    })
}

/// Runs the scenario against the stack in `home`.
pub async fn run(home: &Home, topology: &Topology, json: bool) -> Result<()> {
    let t = target(home)?;
    let posts = env_size("CITYBOARD_BENCH_POSTS", 200_000) as usize;
    let secs = env_size("CITYBOARD_BENCH_SECS", 10);
    println!(
        "write-pipeline: {} / {}, {posts} commands for the drain, {secs} s per load run",
        t.region, t.shard
    );
    place(&t, DRAIN_CITY).await?;

    let (drain_rate, startup) = drain(home, topology, &t, posts).await?;
    println!("  writer drain: {drain_rate:.0} posts/s (first batch {startup:.1} s after start)");
    let copy_rate = copy_baseline(&t.primary_url, posts).await?;
    println!("  COPY of the same rows: {copy_rate:.0} posts/s");
    wait_outbox_empty(&t.primary_url).await?;

    let publisher = topology.region_ports(0).publisher;
    let (host, key) = write_load::first_city_host_and_key(home, topology)?;
    let stack_api = topology.region_ports(0).api;
    let users = write_load::sign_up(stack_api, &host, &key, 16).await?;
    let (_direct_api, direct_api) = Role::api(
        home,
        &t.region,
        &["--write-path", "direct"],
        "bench-write-direct-api.log",
    )
    .await?;
    let mut pipeline = Vec::new();
    let mut direct = Vec::new();
    for posters in POSTERS {
        for (label, port, out) in [
            ("pipeline", stack_api, &mut pipeline),
            ("direct", direct_api.public, &mut direct),
        ] {
            let f = write_load::posters(port, &host, &key, &users, posters, secs).await?;
            println!("  [{label}] {}", f.line());
            out.push(f);
            wait_outbox_empty(&t.primary_url).await?;
        }
    }

    let edge = topology.edge_port();
    let visibility = if cityboard_deploy::http::http_get_status(publisher, "/healthz")
        .await
        .ok()
        != Some(200)
    {
        println!("  visibility: not measured: no publisher");
        None
    } else if !write_load::edge_serves_new_posts(stack_api, edge, &host, &key, &users[0]).await? {
        println!(
            "  visibility: not measured: the edge did not serve a new post from KV within {} s",
            write_load::VISIBLE_TIMEOUT.as_secs()
        );
        None
    } else {
        let best = pipeline.iter().map(|f| f.posts_per_s).fold(0.0, f64::max);
        // The load runs' pages first: a publisher still writing them
        // would time its backlog, not the path.
        wait_publisher_idle(publisher).await?;
        Some(write_load::visibility(stack_api, edge, &host, &key, &users, best * 0.8, secs).await?)
    };
    let (limits_on, limits_off) =
        limiter_cost(home, topology, &t, (&host, &key), &users, secs).await?;
    let pages = env_size("CITYBOARD_BENCH_PAGES", 20_000).min(posts as u64) as usize;
    let publisher_pages_per_s = publisher_drain(home, topology, &t, pages).await?;
    println!("  publisher drain: {publisher_pages_per_s:.0} pages/s ({pages} pages)");
    let best_posts_per_s = pipeline.iter().map(|f| f.posts_per_s).fold(0.0, f64::max);
    let figures = WritePipeline {
        drain_posts: posts,
        drain_posts_per_s: drain_rate,
        drain_startup_s: startup,
        copy_posts_per_s: copy_rate,
        pipeline,
        direct,
        visibility,
        limits_on,
        limits_off,
        publisher_pages: pages,
        publisher_pages_per_s,
        best_posts_per_s,
    };
    print(&figures);
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(())
}

/// Step 4: the same load through an api with the stack's limits and one
/// without, alternated (on, off, on, off).
async fn limiter_cost(
    home: &Home,
    topology: &Topology,
    t: &Target,
    (host, key): (&str, &cityboard_protocol::sign::Key),
    users: &[String],
    secs: u64,
) -> Result<(Vec<LoadFigures>, Vec<LoadFigures>)> {
    let on_limits = topology.limits.clone();
    let off_limits = region_core::limits::Limits {
        enabled: false,
        ..on_limits.clone()
    };
    let (_on, on) = Role::api_with_limits(
        home,
        &t.region,
        &on_limits,
        &[],
        "bench-write-limits-on.log",
    )
    .await?;
    let (_off, off) = Role::api_with_limits(
        home,
        &t.region,
        &off_limits,
        &[],
        "bench-write-limits-off.log",
    )
    .await?;
    // A short run through each first, not counted: the first load on a
    // fresh api (its pools, the publisher still busy with the pages of the
    // runs before) measured 10 % below the rest.
    for port in [on.public, off.public] {
        write_load::posters(port, host, key, users, 64, secs.div_ceil(3)).await?;
        wait_outbox_empty(&t.primary_url).await?;
    }
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..4 {
        let (label, port, out) = if round % 2 == 0 {
            ("limits on", on.public, &mut with)
        } else {
            ("limits off", off.public, &mut without)
        };
        let f = write_load::posters(port, host, key, users, 64, secs).await?;
        println!("  [{label}] {}", f.line());
        out.push(f);
        wait_outbox_empty(&t.primary_url).await?;
    }
    Ok((with, without))
}

fn mean_rate(runs: &[LoadFigures]) -> f64 {
    if runs.is_empty() {
        return 0.0;
    }
    runs.iter().map(|f| f.posts_per_s).sum::<f64>() / runs.len() as f64
}

fn ratio(ours: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.0} %", ours / base * 100.0)
    } else {
        "-".into()
    }
}

fn print(f: &WritePipeline) {
    println!("  figure                          ours              baseline          ratio");
    println!(
        "  writer drain ({} cmds)     {:>9.0} posts/s   COPY {:>9.0} posts/s   {} (target >= 50 %)",
        f.drain_posts,
        f.drain_posts_per_s,
        f.copy_posts_per_s,
        ratio(f.drain_posts_per_s, f.copy_posts_per_s)
    );
    for (p, d) in f.pipeline.iter().zip(&f.direct) {
        println!(
            "  api, {:>3} posters            {:>9.0} posts/s   direct {:>7.0} posts/s {}   201: {:.1} % (direct {:.1} %)",
            p.posters,
            p.posts_per_s,
            d.posts_per_s,
            ratio(p.posts_per_s, d.posts_per_s),
            p.share_201 * 100.0,
            d.share_201 * 100.0
        );
    }
    match &f.visibility {
        Some(v) => println!(
            "  visibility at {:.0} posts/s      p50 {:.0} ms   p99 {:.0} ms   ({} posts watched, {} not visible in {} s; target p99 < 1 s)",
            v.rate,
            v.p50_ms,
            v.p99_ms,
            v.watched,
            v.missed,
            write_load::VISIBLE_TIMEOUT.as_secs()
        ),
        None => println!("  visibility: not measured (see above)"),
    }
    println!(
        "  publisher drain ({} pages)  {:>9.0} pages/s   posting {:>6.0} posts/s  {:.2} x (target >= 1.2 x)",
        f.publisher_pages,
        f.publisher_pages_per_s,
        f.best_posts_per_s,
        if f.best_posts_per_s > 0.0 {
            f.publisher_pages_per_s / f.best_posts_per_s
        } else {
            0.0
        }
    );
    let (on, off) = (mean_rate(&f.limits_on), mean_rate(&f.limits_off));
    println!(
        "  64 posters, limits on/off        {on:>9.0} posts/s   off {off:>9.0} posts/s   {} (target >= 95 %)",
        ratio(on, off)
    );
}

/// Places `city` on the target shard (catalog shard map, the shard's fence).
async fn place(t: &Target, city: &str) -> Result<()> {
    place_city(&t.catalog_url, &t.primary_url, &t.region, &t.shard, city).await?;
    Ok(())
}

/// Ids for the bench's rows: Snowflake-shaped, this millisecond, `i` in
/// the low bits (unique per city, which is all the keys need).
fn id_base() -> i64 {
    (chrono::Utc::now().timestamp_millis() - ID_EPOCH_MS) << 22
}

/// One post's fields as the commands and the COPY rows carry them.
struct Row {
    title: String,
    price: i64,
    user: i64,
}

const DESCRIPTION: &str = "A sturdy bicycle, barely used, collect in person.";

fn row(i: usize) -> Row {
    Row {
        title: format!("Bench bike number {i}"),
        price: (i % 5000) as i64,
        user: 1 + (i % 1000) as i64,
    }
}

/// Preloads `n` create commands, starts a writer on them and waits until
/// all are applied. Returns posts/s and the writer's start-up time.
async fn drain(home: &Home, topology: &Topology, t: &Target, n: usize) -> Result<(f64, f64)> {
    let mut db = PgConnection::connect(&t.primary_url).await?;
    for table in ["posts", "applied_commands", "outbox"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE city = $1"))
            .bind(DRAIN_CITY)
            .execute(&mut db)
            .await?;
    }
    let run = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let topic = format!("bench-{run}.commands");
    let group = format!("bench-{run}.writer");
    cityboard_deploy::broker::ensure_topics(
        topology.broker_port(),
        std::slice::from_ref(&topic),
        topology.partitions,
    )
    .await?;
    let base = id_base();
    let now = chrono::Utc::now();
    let commands: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let r = row(i);
            serde_json::to_vec(&serde_json::json!({
                "id": (base + 2 * i as i64).to_string(),
                "city": DRAIN_CITY,
                "created_at": now,
                "epoch": 1,
                "type": "create",
                "post_id": (base + 2 * i as i64 + 1).to_string(),
                "user_id": r.user.to_string(),
                "post": {
                    "category": "for-sale",
                    "title": r.title,
                    "description": DESCRIPTION,
                    "price": r.price,
                    "location": "downtown",
                    "image_count": 0,
                },
            }))
            .context("command JSON")
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let port = topology.broker_port();
    let produced_topic = topic.clone();
    tokio::task::spawn_blocking(move || {
        super::preload::preload(port, &produced_topic, DRAIN_CITY, &commands)
    })
    .await??;
    println!(
        "  preloaded {n} commands into {topic} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let relay = HeldProcess::hold(home, &format!("{}/relay", t.region))?;
    let started_at = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
    let writer = Role::start(
        home,
        "writer",
        &t.region,
        &["--commands-topic", &topic, "--group", &group],
        "bench-write-writer.log",
    )?;
    let mut last = (0i64, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM applied_commands WHERE city = $1")
            .bind(DRAIN_CITY)
            .fetch_one(&mut db)
            .await?;
        if done as usize >= n {
            break;
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!(
                "the bench writer applied {done} of {n} commands and nothing more for 60 s (log bench-write-writer.log in {})",
                home.logs_dir().display()
            );
        }
    }
    drop(writer);
    sqlx::query("DELETE FROM outbox WHERE city = $1")
        .bind(DRAIN_CITY)
        .execute(&mut db)
        .await?;
    drop(relay);
    // The database's own clock: first batch's transaction to the last's
    // (applied_at is each batch's transaction start); the first batch's
    // rows are not counted, since its time is not in the span.
    let (first, last, first_rows): (f64, f64, i64) = sqlx::query_as(
        "WITH a AS (SELECT applied_at FROM applied_commands WHERE city = $1)
         SELECT extract(epoch FROM min(applied_at))::float8, extract(epoch FROM max(applied_at))::float8,
                (SELECT count(*) FROM a WHERE applied_at = (SELECT min(applied_at) FROM a))
         FROM a",
    )
    .bind(DRAIN_CITY)
    .fetch_one(&mut db)
    .await?;
    let span = (last - first).max(1e-3);
    // Same machine, same clock as the database's.
    let startup = (first - started_at).max(0.0);
    Ok(((n as f64 - first_rows as f64) / span, startup))
}

/// Step 5: preloads `post_changed` events of `n` of the drain's posts (as
/// the shard holds them) into a topic of the bench's own, starts a
/// publisher on it and times its KV writes. Returns pages/s.
async fn publisher_drain(home: &Home, topology: &Topology, t: &Target, n: usize) -> Result<f64> {
    let mut db = PgConnection::connect(&t.primary_url).await?;
    let posts: Vec<region_core::model::Post> =
        sqlx::query_as("SELECT * FROM posts WHERE city = $1 ORDER BY id LIMIT $2")
            .bind(DRAIN_CITY)
            .bind(n as i64)
            .fetch_all(&mut db)
            .await?;
    if posts.len() < n {
        bail!("the drain left {} posts, {n} wanted", posts.len());
    }
    let base = id_base();
    let events: Vec<Vec<u8>> = posts
        .into_iter()
        .enumerate()
        .map(|(i, post)| {
            serde_json::to_vec(&region_core::model::Event::PostChanged {
                command_id: region_core::model::Id(base + i as i64),
                request_id: None,
                post: Box::new(post),
            })
            .context("event JSON")
        })
        .collect::<Result<_>>()?;
    let run = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let topic = format!("bench-{run}.events");
    let group = format!("bench-{run}.publisher");
    cityboard_deploy::broker::ensure_topics(
        topology.broker_port(),
        std::slice::from_ref(&topic),
        topology.partitions,
    )
    .await?;
    let port = topology.broker_port();
    let produced_topic = topic.clone();
    tokio::task::spawn_blocking(move || {
        super::preload::preload(port, &produced_topic, DRAIN_CITY, &events)
    })
    .await??;
    let metrics_port = super::role::free_port()?;
    let listen = format!("127.0.0.1:{metrics_port}");
    let secrets = home.secrets_dir();
    let secrets = secrets
        .to_str()
        .context("a secrets path that is not UTF-8")?;
    let publisher = Role::start(
        home,
        "publisher",
        &t.region,
        &[
            "--events-topic",
            &topic,
            "--group",
            &group,
            "--secrets-dir",
            secrets,
            "--metrics-listen",
            &listen,
        ],
        "bench-write-publisher.log",
    )?;
    super::role::wait_listening(metrics_port, "the bench publisher").await?;
    let written = || async {
        let text = cityboard_deploy::http::request(metrics_port, "GET", "/metrics", &[], b"")
            .await?
            .text();
        anyhow::Ok(
            super::metric(
                &text,
                "cityboard_publisher_kv_writes_total{result=\"written\"}",
            )
            .unwrap_or(0.0) as usize,
        )
    };
    let mut first: Option<(usize, Instant)> = None;
    let mut last = (0usize, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let done = written().await?;
        if done > 0 && first.is_none() {
            first = Some((done, Instant::now()));
        }
        if done >= n {
            last = (done, Instant::now());
            break;
        }
        if done > last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bail!(
                "the bench publisher wrote {done} of {n} pages and nothing more for 60 s (log bench-write-publisher.log in {})",
                home.logs_dir().display()
            );
        }
    }
    drop(publisher);
    let (at_first, started) = first.context("no page written")?;
    let span = last.1.duration_since(started).as_secs_f64().max(1e-3);
    Ok((last.0 - at_first) as f64 / span)
}

/// COPY of the rows `n` posts make (posts, applied_commands, outbox, the
/// event as the writer writes it) into the same shard, in one transaction
/// rolled back after the COPYs: the stack's relay must not ship benchmark
/// events, and the commit's one WAL flush is not worth measuring.
async fn copy_baseline(primary_url: &str, n: usize) -> Result<f64> {
    let base = id_base();
    let now = chrono::Utc::now();
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    let (created, expires) = (ts(now), ts(now + chrono::Duration::days(7)));
    let mut posts = String::with_capacity(n * 160);
    let mut applied = String::with_capacity(n * 40);
    let mut outbox = String::with_capacity(n * 420);
    for i in 0..n {
        let r = row(i);
        let (command, post, seq) = (
            base + 2 * i as i64,
            base + 2 * i as i64 + 1,
            base + i as i64,
        );
        posts.push_str(&format!(
            "{COPY_CITY}\t{post}\t{}\tfor-sale\t{}\t{DESCRIPTION}\t{}\tdowntown\tlive\t1\t0\t{created}\t{created}\t{expires}\n",
            r.user, r.title, r.price
        ));
        applied.push_str(&format!("{COPY_CITY}\t{command}\tapplied\n"));
        let event = serde_json::json!({
            "type": "post_changed",
            "command_id": command.to_string(),
            "post": {
                "city": COPY_CITY, "id": post.to_string(), "user_id": r.user.to_string(),
                "category": "for-sale", "title": r.title, "description": DESCRIPTION,
                "price": r.price, "location": "downtown", "image_count": 0,
                "status": "live", "version": 1,
                "created_at": now, "updated_at": now, "expires_at": now + chrono::Duration::days(7),
            },
        });
        outbox.push_str(&format!("{COPY_CITY}\t{seq}\t{event}\n"));
    }
    let mut db = PgConnection::connect(primary_url).await?;
    let mut tx = db.begin().await?;
    let started = Instant::now();
    for (sql, data) in [
        (
            "COPY posts (city, id, user_id, category, title, description, price, location, \
             status, version, image_count, created_at, updated_at, expires_at) FROM STDIN",
            &posts,
        ),
        (
            "COPY applied_commands (city, command_id, outcome) FROM STDIN",
            &applied,
        ),
        ("COPY outbox (city, seq, event) FROM STDIN", &outbox),
    ] {
        let mut copy = tx.copy_in_raw(sql).await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    tx.rollback().await?;
    Ok(n as f64 / elapsed)
}

/// A stack process stopped with SIGSTOP until this is dropped (SIGCONT),
/// whatever way the bench leaves the scope.
struct HeldProcess(cityboard_deploy::process::ProcessId);

impl HeldProcess {
    fn hold(home: &Home, component: &str) -> Result<HeldProcess> {
        let process = cityboard_deploy::process::ProcessId::read(&home.pid_file(component))
            .filter(|p| p.is_alive())
            .with_context(|| format!("{component} is not running: is the stack up?"))?;
        println!(
            "  holding {component} (pid {}) while the writer drains",
            process.pid
        );
        process.signal(nix::sys::signal::Signal::SIGSTOP);
        Ok(HeldProcess(process))
    }
}

impl Drop for HeldProcess {
    fn drop(&mut self) {
        self.0.signal(nix::sys::signal::Signal::SIGCONT);
    }
}

/// Waits (up to 5 minutes) until the publisher on `port` has read nothing
/// new for 2 s and has no write pending.
async fn wait_publisher_idle(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = None;
    let mut quiet_since = Instant::now();
    loop {
        let metrics = cityboard_deploy::http::request(port, "GET", "/metrics", &[], b"")
            .await?
            .text();
        let consumed = super::metric(
            &metrics,
            "cityboard_publisher_events_total{result=\"consumed\"}",
        );
        let pending = super::metric(&metrics, "cityboard_publisher_pending_keys").unwrap_or(0.0);
        if consumed != last || pending > 0.0 {
            last = consumed;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(2) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the publisher on port {port} was still busy after 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (up to 5 minutes) until the relay has shipped every outbox row of
/// the shard, so one phase's events do not load the next.
async fn wait_outbox_empty(primary_url: &str) -> Result<()> {
    let mut db = PgConnection::connect(primary_url).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&mut db)
            .await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the outbox still holds {left} rows after 5 minutes: is the relay running?");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
