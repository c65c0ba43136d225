//! `cityboard bench origin-read`: the region api's read path under load.
//!
//! One city of the first region's first shard gets 1 000 000 posts (COPY,
//! once; a later run reuses them). Two api processes of our own are started
//! beside the stack's, one with every cache off and one with the Redis page
//! cache and the in-process cache on, and 16 keep-alive clients hit each with `GET /post/{id}` over uniformly
//! random ids and with searches from a fixed mix. The baseline is `pgbench
//! -S` (one primary-key lookup per transaction, 16 clients, 1M rows) on the
//! same primary, measured in the same run (`bench pg-baseline`), and beside
//! it the floor of a view's work done by C servers alone (`floor`): nginx
//! answering the view's bytes to the same clients, and `redis-benchmark`
//! sending the api's nonce claim.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use region_core::model::post::CATEGORIES;
use serde::Serialize;
use sqlx::{Connection, PgConnection};

use super::conn::Conn;
use super::floor::{self, Floor};
use super::place_city;
use super::role::Role;
use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// The benchmark's city: its own, so the stack's cities keep their data.
const CITY: &str = "benchtown";
/// Posts in the city.
const POSTS: i64 = 1_000_000;
/// Concurrent clients.
const CLIENTS: usize = 16;
/// Seconds each query class runs.
const SECONDS: u64 = 8;
/// How far ahead of the seed its posts expire. Beyond the janitor's
/// reminder lead (a day): a seed that all falls due at once sets the stack's
/// janitor sending a million renewal reminders on the shard during the
/// measurement (seen 2026-12-02: Postgres at 47 % of the machine's CPU in
/// the view class). A real shard sends about a seventh of its posts'
/// reminders per day, spread over it. A seed is reused while its posts
/// expire more than 2 days ahead and are all within the 7-day listing window.
const SEED_EXPIRES_IN: chrono::Duration = chrono::Duration::days(6);
/// First id of the benchmark's posts (above any real Snowflake id of
/// 2025-2026 would be wrong; below them is safe and easy to recognise).
const FIRST_ID: i64 = 1_000_000_000;

/// Words in about one title in eight each.
const COMMON: &[&str] = &[
    "bike", "sofa", "table", "phone", "lamp", "desk", "chair", "camera",
];
/// Words in about one title in ten thousand each.
const RARE: &[&str] = &[
    "theremin",
    "sextant",
    "zither",
    "astrolabe",
    "harpsichord",
    "gramophone",
];
/// Filler that makes titles differ.
const FILLER: &[&str] = &[
    "vintage", "used", "new", "great", "small", "large", "wooden", "metal", "red", "blue", "cheap",
    "quality", "classic", "modern", "portable", "heavy",
];

/// One query class's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ClassFigures {
    /// What was asked.
    pub class: String,
    /// Requests answered per second.
    pub rps: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Answers other than 200.
    pub errors: u64,
}

/// Everything the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct OriginRead {
    /// Caches off.
    pub uncached: Vec<ClassFigures>,
    /// Redis page cache (5 s TTL) and in-process cache (1 s TTL) on.
    pub cached: Vec<ClassFigures>,
    /// Redis page-cache hit rate of the cached run (lookups that missed the
    /// in-process cache).
    pub cache_hit_rate: f64,
    /// In-process post cache hit rate of the cached run (views).
    pub local_post_hit_rate: f64,
    /// In-process page cache hit rate of the cached run (searches).
    pub local_page_hit_rate: f64,
    /// pgbench -S on the same primary.
    pub pgbench_tps: f64,
    /// pgbench -S p99, ms.
    pub pgbench_p99_ms: f64,
    /// The view's work done by C servers alone (`floor`).
    pub floor: Floor,
}

/// Runs the scenario against the stack in `home`.
pub async fn run(home: &Home, topology: &Topology, json: bool) -> Result<()> {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.state_file()).context("reading the stack's state.json (is it up?)")?,
    )?;
    let region = &state["regions"][0];
    let region_name = region["name"].as_str().context("state.json: region name")?;
    let shard = &region["shards"][0];
    let shard_name = shard["name"].as_str().context("state.json: shard name")?;
    let primary_url = shard["primary_url"]
        .as_str()
        .context("state.json: primary_url")?;
    let catalog_url = region["catalog_url"]
        .as_str()
        .context("state.json: catalog_url")?;
    println!(
        "origin-read: {POSTS} posts in {CITY} on {region_name}/{shard_name}, {CLIENTS} clients, {SECONDS} s per class"
    );

    let ids = seed(catalog_url, primary_url, region_name, shard_name).await?;
    wait_for_replicas(primary_url, shard).await?;

    let uncached = measure_api(home, region_name, &topology.apex, false, ids).await?;
    let cached = measure_api(home, region_name, &topology.apex, true, ids).await?;

    let port = topology.shard_port(0, 0, 0);
    println!("  pgbench -S baseline on port {port} (this takes a minute)");
    let baseline = super::pg::baseline(port).await?;

    println!("  floor: a view's HTTP exchange (nginx) and nonce claim (redis-benchmark) alone");
    let (_nginx, nginx_port) = floor::nginx_serving(home, &uncached.view_body).await?;
    let host = format!("{CITY}.{}", topology.apex);
    let http = load(nginx_port, &host, &forward_key(home)?, "view", ids).await?;
    let redis_password = cityboard_deploy::secrets::read_secret(
        &home.secrets_dir(),
        cityboard_deploy::redis_server::PASSWORD_FILE,
    )?;
    let nonce_rps = floor::nonce_claims(
        topology.region_ports(0).redis_store,
        &redis_password,
        CLIENTS,
    )?;
    let floor = Floor {
        http_rps: http.rps,
        nonce_rps,
    };

    let figures = OriginRead {
        uncached: uncached.classes,
        cached: cached.classes,
        cache_hit_rate: cached.hits.page,
        local_post_hit_rate: cached.hits.local_post,
        local_page_hit_rate: cached.hits.local_page,
        pgbench_tps: baseline.lookup_tps,
        pgbench_p99_ms: baseline.lookup_p99_ms,
        floor,
    };
    print(&figures);
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(())
}

fn print(f: &OriginRead) {
    for (name, rows) in [
        ("caches off", &f.uncached),
        ("caches on (Redis 5 s, in-process 1 s)", &f.cached),
    ] {
        println!("  {name}:");
        for c in rows.iter() {
            println!(
                "    {:<24} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
                c.class, c.rps, c.p50_ms, c.p99_ms, c.errors
            );
        }
    }
    println!(
        "  hit rates (cached run): in-process posts {:.1} %, in-process pages {:.1} %, Redis pages {:.1} % (of in-process misses)",
        f.local_post_hit_rate * 100.0,
        f.local_page_hit_rate * 100.0,
        f.cache_hit_rate * 100.0
    );
    let view = f
        .uncached
        .iter()
        .find(|c| c.class == "view")
        .map_or(0.0, |c| c.rps);
    println!(
        "  pgbench -S ({CLIENTS} clients, 1M rows): {:.0} TPS, p99 {:.2} ms; view/pgbench = {:.0} %",
        f.pgbench_tps,
        f.pgbench_p99_ms,
        if f.pgbench_tps > 0.0 {
            view / f.pgbench_tps * 100.0
        } else {
            0.0
        }
    );
    let bound = f.floor.bound(f.pgbench_tps);
    println!(
        "  floor: HTTP exchange (nginx, same clients and bytes) {:.0} req/s, nonce claim (redis-benchmark SET NX EX) {:.0}/s, point read (pgbench -S) {:.0}/s",
        f.floor.http_rps, f.floor.nonce_rps, f.pgbench_tps
    );
    println!(
        "  at most {bound:.0} views/s with an api that cost nothing (= {:.0} % of pgbench); this api reached {:.0} % of that bound",
        if f.pgbench_tps > 0.0 {
            bound / f.pgbench_tps * 100.0
        } else {
            0.0
        },
        if bound > 0.0 {
            view / bound * 100.0
        } else {
            0.0
        }
    );
}

/// Places the city (catalog shard map and the shard's fence) and COPYs the
/// posts, unless a previous run did. Returns the id range.
async fn seed(
    catalog_url: &str,
    primary_url: &str,
    region: &str,
    shard: &str,
) -> Result<(i64, i64)> {
    let mut db = place_city(catalog_url, primary_url, region, shard, CITY).await?;
    let have: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM posts WHERE city = $1 AND status = 'live'
           AND expires_at > now() + interval '2 days' AND created_at > now() - interval '7 days'",
    )
    .bind(CITY)
    .fetch_one(&mut db)
    .await?;
    // Ids are time-ordered (Snowflake) and `created_at` is set when the id
    // is, so in real data id order, creation order and insertion (heap)
    // order agree. An earlier seed drew `created_at` at random for
    // sequential ids, which scattered every newest-first walk over the whole
    // heap; such a seed is replaced.
    let ordered: bool = sqlx::query_scalar(
        "SELECT coalesce(bool_and(a.created_at <= b.created_at), false)
         FROM generate_series(0, 9) AS g(i)
         JOIN posts a ON a.city = $1 AND a.id = $2 + g.i * 1000
         JOIN posts b ON b.city = $1 AND b.id = $2 + g.i * 1000 + 999",
    )
    .bind(CITY)
    .bind(FIRST_ID)
    .fetch_one(&mut db)
    .await?;
    if have == POSTS && ordered {
        println!("  {POSTS} posts already seeded");
        return Ok((FIRST_ID, FIRST_ID + POSTS));
    }
    sqlx::query("DELETE FROM posts WHERE city = $1")
        .bind(CITY)
        .execute(&mut db)
        .await?;
    let started = Instant::now();
    let mut copy = db
        .copy_in_raw(
            "COPY posts (city, id, user_id, category, title, description, price, location, \
             status, version, image_count, created_at, updated_at, expires_at) FROM STDIN",
        )
        .await?;
    let now = chrono::Utc::now();
    let mut rng = StdRng::from_entropy();
    let mut buf = String::with_capacity(8 << 20);
    // Spread evenly over the last six days (all in the 7-day window), oldest
    // first, as ids are.
    let span_us: i64 = 6 * 86_400 * 1_000_000;
    let first = now - chrono::Duration::microseconds(span_us);
    for i in 0..POSTS {
        let mut words: Vec<&str> = vec![FILLER[rng.gen_range(0..FILLER.len())]];
        if rng.gen_ratio(1, 8) {
            words.push(COMMON[rng.gen_range(0..COMMON.len())]);
        }
        if rng.gen_ratio(1, 10_000) {
            words.push(RARE[rng.gen_range(0..RARE.len())]);
        }
        words.push(FILLER[rng.gen_range(0..FILLER.len())]);
        let title = words.join(" ");
        let created = first + chrono::Duration::microseconds(span_us / POSTS * i);
        let created = created.format("%Y-%m-%d %H:%M:%S%.6f+00");
        let expires = (now + SEED_EXPIRES_IN).format("%Y-%m-%d %H:%M:%S%.6f+00");
        let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
        let price: i64 = rng.gen_range(0..5_000);
        let images: i16 = if rng.gen_ratio(1, 3) {
            rng.gen_range(1..=5)
        } else {
            0
        };
        buf.push_str(&format!(
            "{CITY}\t{}\t{}\t{category}\t{title}\t{title}, pick up downtown.\t{price}\tdowntown\tlive\t1\t{images}\t{created}\t{created}\t{expires}\n",
            FIRST_ID + i,
            1 + i % 5000,
        ));
        if buf.len() > (4 << 20) {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    let rows = copy.finish().await?;
    println!(
        "  COPY {rows} posts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The DELETE of an earlier seed left dead rows; vacuum sets the
    // visibility map too, as a settled table would have it.
    sqlx::query("VACUUM ANALYZE posts").execute(&mut db).await?;
    Ok((FIRST_ID, FIRST_ID + POSTS))
}

/// Waits until every replica replayed the seed (reads go to replicas).
async fn wait_for_replicas(primary_url: &str, shard: &serde_json::Value) -> Result<()> {
    let mut db = PgConnection::connect(primary_url).await?;
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut db)
        .await?;
    for url in shard["replica_urls"].as_array().into_iter().flatten() {
        let Some(url) = url.as_str() else { continue };
        let mut r = PgConnection::connect(url).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let done: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(&target)
                .fetch_one(&mut r)
                .await?;
            if done {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "replica {} did not catch up with the seed in 10 minutes",
                    region_core::redact::url(url)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The edge's forwarding key, which the bench signs its requests with: the
/// origin's check of signature and nonce is part of what a view costs.
fn forward_key(home: &Home) -> Result<std::sync::Arc<cityboard_protocol::sign::Key>> {
    Ok(std::sync::Arc::new(cityboard_protocol::sign::Key::new(
        cityboard_deploy::secrets::read_secret(
            &home.secrets_dir(),
            cityboard_deploy::edge::FORWARD_KEY_FILE,
        )?
        .into_bytes(),
    )))
}

/// What one api's run measured.
struct ApiRun {
    /// Figures of every query class.
    classes: Vec<ClassFigures>,
    /// Cache hit rates over the run.
    hits: HitRates,
    /// The body of one view, as the api answered it (the floor's nginx
    /// serves these bytes).
    view_body: Vec<u8>,
}

/// Starts an api of our own with the given page-cache TTL and runs every
/// query class against it.
async fn measure_api(
    home: &Home,
    region: &str,
    apex: &str,
    caches: bool,
    ids: (i64, i64),
) -> Result<ApiRun> {
    let (cache_ttl, local_ttl) = if caches { ("5s", "1s") } else { ("0s", "0s") };
    let (_api, ports) = Role::api(
        home,
        region,
        &[
            "--page-cache-ttl",
            cache_ttl,
            "--local-cache-ttl",
            local_ttl,
        ],
        &format!("bench-origin-api-{cache_ttl}.log"),
    )
    .await?;
    let port = ports.public;
    let host = format!("{CITY}.{apex}");
    let key = forward_key(home)?;
    let (status, view_body) = Conn::open(port)
        .await?
        .get(&format!("/post/{}", ids.0), &host, Some(&key))
        .await?;
    if status != 200 {
        bail!("bench api answered {status} to a view of post {}", ids.0);
    }
    let label = if caches { "caches on" } else { "caches off" };
    let before = cache_counts(ports.operator, &host)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for class in [
        "view",
        "search: common term",
        "search: rare term",
        "search: two terms",
        "filters only",
    ] {
        let f = load(port, &host, &key, class, ids).await?;
        println!(
            "  [{label}] {:<22} {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}",
            f.class, f.rps, f.p50_ms, f.p99_ms, f.errors
        );
        out.push(f);
    }
    let after = cache_counts(ports.operator, &host)
        .await
        .unwrap_or_default();
    let rate = |i: usize| {
        let hits = after[i].saturating_sub(before[i]) as f64;
        let misses = after[i + 1].saturating_sub(before[i + 1]) as f64;
        if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        }
    };
    Ok(ApiRun {
        classes: out,
        hits: HitRates {
            page: rate(0),
            local_post: rate(2),
            local_page: rate(4),
        },
        view_body,
    })
}

/// Hit rates of one api's caches over a run.
#[derive(Debug, Default)]
struct HitRates {
    page: f64,
    local_post: f64,
    local_page: f64,
}

/// Hits and misses of the Redis page cache, the in-process post cache and
/// the in-process page cache, from the api's /metrics (its operator
/// listener).
async fn cache_counts(port: u16, host: &str) -> Result<[u64; 6]> {
    let mut conn = Conn::open(port).await?;
    let (_, body) = conn.get("/metrics", host, None).await?;
    let text = String::from_utf8_lossy(&body);
    let value = |series: &str| super::metric(&text, series).map_or(0, |v| v as u64);
    Ok([
        value("cityboard_page_cache_total{result=\"hit\"}"),
        value("cityboard_page_cache_total{result=\"miss\"}"),
        value("cityboard_local_cache_total{cache=\"post\",result=\"hit\"}"),
        value("cityboard_local_cache_total{cache=\"post\",result=\"miss\"}"),
        value("cityboard_local_cache_total{cache=\"page\",result=\"hit\"}"),
        value("cityboard_local_cache_total{cache=\"page\",result=\"miss\"}"),
    ])
}

/// The path of one request of `class`.
fn request(class: &str, ids: (i64, i64), rng: &mut impl Rng) -> String {
    match class {
        "view" => format!("/post/{}", rng.gen_range(ids.0..ids.1)),
        "search: common term" => format!("/post?search={}", COMMON[rng.gen_range(0..COMMON.len())]),
        "search: rare term" => format!("/post?search={}", RARE[rng.gen_range(0..RARE.len())]),
        "search: two terms" => format!(
            "/post?search={}%20{}",
            FILLER[rng.gen_range(0..FILLER.len())],
            COMMON[rng.gen_range(0..COMMON.len())]
        ),
        _ => {
            let lo = rng.gen_range(0..4_000);
            format!(
                "/post?category={}&min_price={lo}&max_price={}&has_image=true",
                CATEGORIES[rng.gen_range(0..CATEGORIES.len())],
                lo + 500
            )
        }
    }
}

/// `CLIENTS` keep-alive clients asking `class` for `SECONDS`.
async fn load(
    port: u16,
    host: &str,
    key: &std::sync::Arc<cityboard_protocol::sign::Key>,
    class: &str,
    ids: (i64, i64),
) -> Result<ClassFigures> {
    let stop = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let key = key.clone();
        let host = host.to_string();
        let class = class.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(port).await?;
            let mut rng = StdRng::from_entropy();
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < stop {
                let path = request(&class, ids, &mut rng);
                let t = Instant::now();
                let (status, _) = conn.get(&path, &host, Some(&key)).await?;
                lat.push(t.elapsed());
                if status != 200 {
                    errors += 1;
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(SECONDS as f64);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(ClassFigures {
        class: class.to_string(),
        rps: all.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    })
}
