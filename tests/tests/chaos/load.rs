//! The bounded load of the chaos test: a few clients, each its own user,
//! creating, editing and deleting posts in every city of both regions, and
//! the record of every write's outcome as the client saw it.
//!
//! A write is *acknowledged* when the api answered 201/200, or 202 and its
//! status URL then said applied. A connection error or a 5xx is *unknown*:
//! the command may or may not have been produced, so the write may or may
//! not apply, and the checks allow both. A client never edits a post whose
//! creation it did not see acknowledged, and stops touching a post once it
//! sent a delete, whatever its outcome.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::json;

use super::api::Apis;

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Edit,
    Delete,
}

/// What became of a write, as far as its client knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// Applied at `version`; `None` for a 202 whose status URL did not say
    /// applied yet when the client moved on (resolved after the load).
    Acked {
        version: Option<i64>,
        command: Option<String>,
    },
    /// Refused (a 4xx, or rejected at its status URL): never applied.
    Rejected(String),
    /// A connection error or a 5xx: may or may not apply.
    Unknown(String),
}

/// One write and its outcome.
#[derive(Debug, Clone)]
pub struct Write {
    pub client: usize,
    pub kind: Kind,
    pub city: String,
    /// The post (for a create: from its answer, `None` when unknown).
    pub post: Option<u64>,
    /// The content it sets (create, edit).
    pub title: String,
    pub price: i64,
    pub sent: Instant,
    pub outcome: Outcome,
    /// When KV was first seen at (or past) the write's version.
    pub kv_seen: Option<Instant>,
}

impl Write {
    /// The version it was acknowledged at, if known.
    pub fn acked_version(&self) -> Option<i64> {
        match self.outcome {
            Outcome::Acked { version, .. } => version,
            _ => None,
        }
    }

    pub fn is_acked(&self) -> bool {
        matches!(self.outcome, Outcome::Acked { .. })
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown(_))
    }
}

/// Every write of the run, in the order they were sent.
#[derive(Default)]
pub struct Ledger {
    pub writes: Mutex<Vec<Write>>,
}

impl Ledger {
    fn start(&self, write: Write) -> usize {
        let mut w = self.writes.lock().expect("ledger");
        w.push(write);
        w.len() - 1
    }

    fn finish(&self, i: usize, post: Option<u64>, outcome: Outcome) {
        let mut w = self.writes.lock().expect("ledger");
        if post.is_some() {
            w[i].post = post;
        }
        w[i].outcome = outcome;
    }

    pub fn snapshot(&self) -> Vec<Write> {
        self.writes.lock().expect("ledger").clone()
    }

    /// Acknowledged writes in flight at `at`: sent before it, and KV not
    /// yet at their version then (or still not seen there).
    pub fn in_flight_at(&self, at: Instant) -> usize {
        self.writes
            .lock()
            .expect("ledger")
            .iter()
            .filter(|w| w.is_acked() && w.sent <= at && w.kv_seen.is_none_or(|s| s > at))
            .count()
    }

    pub fn set_kv_seen(&self, i: usize, at: Instant) {
        self.writes.lock().expect("ledger")[i]
            .kv_seen
            .get_or_insert(at);
    }
}

/// What the clients share.
pub struct Load {
    pub apis: Apis,
    pub cities: Vec<String>,
    pub ledger: Arc<Ledger>,
    /// Set when the faults are done: clients finish their write and stop.
    pub stop: AtomicBool,
    /// Writes sent so far, all clients; none past `max_writes`.
    pub sent: AtomicUsize,
    pub max_writes: usize,
    /// Pause between two writes of one client.
    pub pace: Duration,
}

impl Load {
    /// A load of writes through `apis` on `cities`, recorded in `ledger`,
    /// at most `max_writes` of them, each client pausing `pace` between
    /// two; not stopped, nothing sent yet.
    pub fn new(
        apis: &Apis,
        cities: &[String],
        ledger: &Arc<Ledger>,
        max_writes: usize,
        pace: Duration,
    ) -> Arc<Load> {
        Arc::new(Load {
            apis: apis.clone(),
            cities: cities.to_vec(),
            ledger: ledger.clone(),
            stop: AtomicBool::new(false),
            sent: AtomicUsize::new(0),
            max_writes,
            pace,
        })
    }
}

/// A post a client may still edit or delete.
struct Open {
    id: u64,
    city: String,
}

/// One client: signs up, then writes until told to stop or the budget is
/// spent.
pub async fn client(load: Arc<Load>, n: usize, token: String) {
    let mut open: Vec<Open> = Vec::new();
    let mut seq = 0;
    while !load.stop.load(Ordering::SeqCst)
        && load.sent.fetch_add(1, Ordering::SeqCst) < load.max_writes
    {
        seq += 1;
        let (kind, target) = {
            let mut rng = rand::thread_rng();
            let roll: f64 = rng.r#gen();
            if open.len() < 2 || roll < 0.4 {
                (Kind::Create, None)
            } else {
                let i = rng.gen_range(0..open.len());
                (
                    if roll < 0.85 {
                        Kind::Edit
                    } else {
                        Kind::Delete
                    },
                    Some(i),
                )
            }
        };
        let city = match target {
            Some(i) => open[i].city.clone(),
            None => load
                .cities
                .choose(&mut rand::thread_rng())
                .expect("cities")
                .clone(),
        };
        let post = target.map(|i| open[i].id);
        let title = format!("chaos c{n} w{seq}");
        let price = rand::thread_rng().gen_range(1..100_000);
        let i = load.ledger.start(Write {
            client: n,
            kind,
            city: city.clone(),
            post,
            title: title.clone(),
            price,
            sent: Instant::now(),
            outcome: Outcome::Pending,
            kv_seen: None,
        });
        let body = json!({"category": "for-sale", "title": title,
            "description": "Written under chaos.", "price": price, "location": "Downtown"})
        .to_string();
        let (method, path, body) = match (kind, post) {
            (Kind::Create, _) => ("POST", "/post".to_string(), body),
            (Kind::Edit, Some(id)) => ("PUT", format!("/post/{id}"), body),
            (Kind::Delete, Some(id)) => ("DELETE", format!("/post/{id}"), String::new()),
            _ => unreachable!("edits and deletes name a post"),
        };
        let (answered_post, outcome) = outcome(
            &load.apis,
            &city,
            &token,
            load.apis
                .send(method, &city, &path, Some(&token), body.as_bytes())
                .await,
        )
        .await;
        load.ledger.finish(i, answered_post, outcome.clone());
        match (kind, &outcome) {
            (Kind::Create, Outcome::Acked { .. }) => {
                if let Some(id) = answered_post {
                    open.push(Open { id, city });
                }
            }
            // Sent, whatever came of it: the post may be gone.
            (Kind::Delete, _) => open.retain(|o| Some(o.id) != post),
            _ => {}
        }
        tokio::time::sleep(load.pace).await;
    }
}

/// What an answer (or its absence) says about a write.
async fn outcome(
    apis: &Apis,
    city: &str,
    token: &str,
    answer: anyhow::Result<cityboard_deploy::http::Response>,
) -> (Option<u64>, Outcome) {
    let r = match answer {
        Ok(r) => r,
        Err(e) => return (None, Outcome::Unknown(format!("{e:#}"))),
    };
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let post = body["post"].as_str().and_then(|p| p.parse().ok());
    let command = body["command"].as_str().map(str::to_string);
    match r.status {
        200 | 201 => (
            post,
            Outcome::Acked {
                version: body["version"].as_i64(),
                command,
            },
        ),
        202 => {
            let command = command.expect("a 202 names its command");
            (post, follow(apis, city, token, &command).await)
        }
        s if s >= 500 => (post, Outcome::Unknown(format!("{s} {}", r.text()))),
        s => (post, Outcome::Rejected(format!("{s} {}", r.text()))),
    }
}

/// How long a client follows a 202 before moving on (the rest is resolved
/// after the load).
const FOLLOW_LIMIT: Duration = Duration::from_secs(30);

/// Follows a 202's status URL until applied or rejected, through api
/// restarts; still pending after [`FOLLOW_LIMIT`] stays acknowledged with
/// its version unknown.
pub async fn follow(apis: &Apis, city: &str, token: &str, command: &str) -> Outcome {
    let deadline = Instant::now() + FOLLOW_LIMIT;
    let path = format!("/commands/{command}");
    while Instant::now() < deadline {
        if let Ok(r) = apis.send("GET", city, &path, Some(token), b"").await
            && r.status == 200
        {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            match v["state"].as_str() {
                Some("applied") => {
                    return Outcome::Acked {
                        version: v["version"].as_i64(),
                        command: Some(command.to_string()),
                    };
                }
                Some("rejected") => {
                    return Outcome::Rejected(format!(
                        "202, then rejected: {}",
                        v["reason"].as_str().unwrap_or("")
                    ));
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Outcome::Acked {
        version: None,
        command: Some(command.to_string()),
    }
}

/// Follows every 202 still pending when its client moved on, with the
/// token of the client that sent it, and records how it ended. All at
/// once: each may wait up to [`FOLLOW_LIMIT`], and one after another they
/// could outlast the test's own time limit.
pub async fn follow_pending(ledger: &Ledger, apis: &Apis, tokens: &[String]) {
    let pending: Vec<(usize, String, usize, String)> = ledger
        .snapshot()
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match &w.outcome {
            Outcome::Acked {
                version: None,
                command: Some(c),
            } => Some((i, w.city.clone(), w.client, c.clone())),
            _ => None,
        })
        .collect();
    let mut following = tokio::task::JoinSet::new();
    for (i, city, n, command) in pending {
        let (apis, token) = (apis.clone(), tokens[n].clone());
        following.spawn(async move { (i, follow(&apis, &city, &token, &command).await) });
    }
    while let Some(done) = following.join_next().await {
        let (i, outcome) = done.expect("a follower");
        ledger.writes.lock().expect("ledger")[i].outcome = outcome;
    }
}
