//! Posters for `bench write-pipeline`: users signed up through the api,
//! closed-loop posters (each waits for its answer, then posts again), and
//! the visibility probe that times a post from its answer to its page
//! served by the edge from KV.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cityboard_protocol::sign::Key;
use serde::Serialize;

use super::conn::Conn;
use cityboard_deploy::home::Home;
use cityboard_deploy::topology::Topology;

/// Longest the probe waits for a page before it counts as not visible.
pub const VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the probe asks the edge for a page it has not seen yet.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Posts per second the probe watches at most (every post would be a
/// request storm against the edge at this polling period).
const WATCHED_PER_S: f64 = 50.0;
/// Posters of the visibility run.
const VISIBILITY_POSTERS: usize = 64;

/// One load run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFigures {
    /// Concurrent posters.
    pub posters: usize,
    /// Posts accepted (201 or 202) per second.
    pub posts_per_s: f64,
    /// Share of the answers that were 201 (applied within the apply wait).
    pub share_201: f64,
    /// Answers 201.
    pub created: u64,
    /// Answers 202.
    pub accepted: u64,
    /// Any other answer or a broken connection.
    pub other: u64,
    /// Median answer time, ms.
    pub p50_ms: f64,
    /// 99th-percentile answer time, ms.
    pub p99_ms: f64,
}

impl LoadFigures {
    /// One line for the progress output.
    pub fn line(&self) -> String {
        format!(
            "{:>3} posters: {:>7.0} posts/s   201 {:.1} % ({} / 202 {} / other {})   p50 {:.1} ms   p99 {:.1} ms",
            self.posters,
            self.posts_per_s,
            self.share_201 * 100.0,
            self.created,
            self.accepted,
            self.other,
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// The visibility figures.
#[derive(Debug, Clone, Serialize)]
pub struct Visibility {
    /// Posts offered per second.
    pub rate: f64,
    /// Posts whose page the probe watched.
    pub watched: usize,
    /// Of those, not served from KV within `VISIBLE_TIMEOUT` (counted as
    /// that long in the percentiles).
    pub missed: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The host of the topology's first city and the key the edge signs
/// forwarded requests with: what a load through the first region's api
/// needs.
pub fn first_city_host_and_key(home: &Home, topology: &Topology) -> Result<(String, Key)> {
    let city = topology.regions[0].shards[0]
        .cities
        .first()
        .map(|c| c.slug.clone())
        .context("the topology's first shard has no city")?;
    let key = Key::new(
        cityboard_deploy::secrets::read_secret(
            &home.secrets_dir(),
            cityboard_deploy::edge::FORWARD_KEY_FILE,
        )?
        .into_bytes(),
    );
    Ok((format!("{city}.{}", topology.apex), key))
}

/// Signs up `count` users through the api on `host` and logs each in;
/// returns their `Authorization` header lines.
pub async fn sign_up(port: u16, host: &str, key: &Key, count: usize) -> Result<Vec<String>> {
    let run = rand::random::<u32>();
    let mut conn = Conn::open(port).await?;
    let mut out = Vec::new();
    for i in 0..count {
        let body = serde_json::to_vec(&serde_json::json!({
            "email": format!("bench-{run:08x}-{i}@example.com"),
            "password": "correct horse battery staple",
        }))?;
        let json = ["content-type: application/json", "accept: application/json"];
        let a = conn
            .send("POST", "/signup", host, &json, &body, Some(key))
            .await?;
        if a.status != 201 {
            bail!(
                "sign-up answered {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        let a = conn
            .send("POST", "/login", host, &json, &body, Some(key))
            .await?;
        let session: serde_json::Value = serde_json::from_slice(&a.body)
            .with_context(|| format!("log-in answered {}", a.status))?;
        let token = session["access_token"]
            .as_str()
            .with_context(|| format!("log-in answered {} without a token", a.status))?;
        out.push(format!("authorization: Bearer {token}"));
    }
    Ok(out)
}

pub(crate) fn post_body(poster: usize, n: u64) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "category": "for-sale",
        "title": format!("Bench bike {poster}-{n}"),
        "description": "A sturdy bicycle, barely used, collect in person.",
        "price": 120,
        "location": "downtown",
    }))?)
}

/// What one poster saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    created: u64,
    accepted: u64,
    other: u64,
}

impl Tally {
    fn count(&mut self, status: Option<u16>, took: Duration) {
        self.latencies.push(took);
        match status {
            Some(201) => self.created += 1,
            Some(202) => self.accepted += 1,
            _ => self.other += 1,
        }
    }
}

/// One POST /post; `None` status when the connection broke (it is opened
/// again).
pub(crate) async fn post_once(
    conn: &mut Option<Conn>,
    port: u16,
    host: &str,
    key: &Key,
    auth: &str,
    body: &[u8],
) -> (Option<u16>, Option<String>) {
    if conn.is_none() {
        *conn = Conn::open(port).await.ok();
    }
    let Some(c) = conn.as_mut() else {
        return (None, None);
    };
    let headers = ["content-type: application/json", auth];
    match c
        .send("POST", "/post", host, &headers, body, Some(key))
        .await
    {
        Ok(a) => (Some(a.status), a.location),
        Err(_) => {
            *conn = None;
            (None, None)
        }
    }
}

/// `posters` closed-loop posters against the api on `port` for `secs`.
pub async fn posters(
    port: u16,
    host: &str,
    key: &Key,
    users: &[String],
    posters: usize,
    secs: u64,
) -> Result<LoadFigures> {
    let key = Arc::new(key.clone());
    let started = Instant::now();
    let stop = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for p in 0..posters {
        let (key, host) = (key.clone(), host.to_string());
        let auth = users[p % users.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut tally = Tally::default();
            let mut n = 0;
            while Instant::now() < stop {
                let body = post_body(p, n)?;
                n += 1;
                let t = Instant::now();
                let (status, _) = post_once(&mut conn, port, &host, &key, &auth, &body).await;
                tally.count(status, t.elapsed());
            }
            anyhow::Ok(tally)
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await??;
        all.latencies.extend(t.latencies);
        all.created += t.created;
        all.accepted += t.accepted;
        all.other += t.other;
    }
    let elapsed = started.elapsed().as_secs_f64().max(secs as f64);
    all.latencies.sort();
    let answered = all.created + all.accepted;
    Ok(LoadFigures {
        posters,
        posts_per_s: answered as f64 / elapsed,
        share_201: all.created as f64 / (answered + all.other).max(1) as f64,
        created: all.created,
        accepted: all.accepted,
        other: all.other,
        p50_ms: percentile(&all.latencies, 0.50),
        p99_ms: percentile(&all.latencies, 0.99),
    })
}

/// Time from `answered` until the edge serves `/post/{id}` from KV.
async fn watch(edge: u16, host: String, path: String, answered: Instant) -> Duration {
    let headers = [("host", host.as_str()), ("accept", "text/html")];
    loop {
        if let Ok(r) = cityboard_deploy::http::request(edge, "GET", &path, &headers, b"").await
            && r.status == 200
            && r.header("x-cityboard-edge") == Some("kv-hit")
        {
            return answered.elapsed();
        }
        if answered.elapsed() > VISIBLE_TIMEOUT {
            return VISIBLE_TIMEOUT;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Whether the edge on `edge` serves a new post's page from KV within
/// `VISIBLE_TIMEOUT` at all: a publisher that runs but cannot reach the
/// edge's KV would otherwise make the visibility run one of timeouts.
pub async fn edge_serves_new_posts(
    api: u16,
    edge: u16,
    host: &str,
    key: &Key,
    user: &str,
) -> Result<bool> {
    let mut conn = None;
    let body = post_body(usize::MAX, 0)?;
    let (status, location) = post_once(&mut conn, api, host, key, user, &body).await;
    let Some(path) = location.filter(|_| matches!(status, Some(201 | 202))) else {
        bail!("a probe post answered {status:?}");
    };
    Ok(watch(edge, host.to_string(), path, Instant::now()).await < VISIBLE_TIMEOUT)
}

/// Posts at `rate` per second for `secs` (open loop: post k is due at
/// k / rate) and times a sample of them from the api's answer to the page
/// served by the edge on `edge` from KV.
pub async fn visibility(
    api: u16,
    edge: u16,
    host: &str,
    key: &Key,
    users: &[String],
    rate: f64,
    secs: u64,
) -> Result<Visibility> {
    let rate = rate.max(1.0);
    let every = (rate / WATCHED_PER_S).ceil().max(1.0) as u64;
    let total = (rate * secs as f64) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let key = Arc::new(key.clone());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..VISIBILITY_POSTERS {
        let (key, host, next) = (key.clone(), host.to_string(), next.clone());
        let auth = users[p % users.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut watchers = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let due = started + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let body = post_body(p, k)?;
                let (status, location) = post_once(&mut conn, api, &host, &key, &auth, &body).await;
                let answered = Instant::now();
                if k % every == 0
                    && matches!(status, Some(201 | 202))
                    && let Some(path) = location
                {
                    watchers.push(tokio::spawn(watch(edge, host.clone(), path, answered)));
                }
            }
            let mut seen = Vec::new();
            for w in watchers {
                seen.push(w.await?);
            }
            anyhow::Ok(seen)
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await??);
    }
    times.sort();
    Ok(Visibility {
        rate,
        watched: times.len(),
        missed: times.iter().filter(|t| **t >= VISIBLE_TIMEOUT).count(),
        p50_ms: percentile(&times, 0.50),
        p99_ms: percentile(&times, 0.99),
    })
}
