//! The janitor end to end against the stack's broker, shards and catalog,
//! with the clock in the test's hands: a reminder mail a day before the end
//! (read back from the mail files), none twice for the same period, a renewal
//! that saves its post from the expiry, an expiry applied by a writer through
//! the commands topic (status and PostGone event), and `DELETE /old_posts`
//! archiving the expired post as JSON lines and removing it from the shard.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, Utc};
use cityboard_test_support::eventually;
use common::api::{Api, Setup};
use common::*;
use pipeline_common::*;
use region_core::bus::watermarks::Watermarks;
use region_core::clock::{Clock, ManualClock};
use region_core::model::{Command, CommandKind, Id, IdGenerator};
use region_core::roles::janitor::metrics::JanitorMetrics;
use region_core::roles::janitor::{HomeCatalogs, Janitor, JanitorConfig, JanitorParts, Mailer};
use region_core::stack::StackFile;

const LIMIT: Duration = Duration::from_secs(60);

fn stack() -> StackFile {
    let home = std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME");
    StackFile::read(&PathBuf::from(home).join("state.json")).unwrap()
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cb-janitor-{what}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A user of region 0 with an e-mail address in its catalog.
async fn user(region: &Region, ids: &IdGenerator, email: &str) -> Id {
    let id = ids.next().await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, 'x', now())",
    )
    .bind(id)
    .bind(email)
    .execute(&pool(&region.catalog_url).await)
    .await
    .unwrap();
    id
}

async fn command(ids: &IdGenerator, city: &str, at: DateTime<Utc>, kind: CommandKind) -> Command {
    Command {
        id: ids.next().await.unwrap(),
        city: city.to_string(),
        created_at: at,
        epoch: 1,
        request_id: None,
        kind,
    }
}

/// (status, expires_at) of a post, if it exists.
async fn post(shard: &Shard, city: &str, id: Id) -> Option<(String, DateTime<Utc>)> {
    sqlx::query_as("SELECT status, expires_at FROM posts WHERE city = $1 AND id = $2")
        .bind(city)
        .bind(id)
        .fetch_optional(&pool(&shard.primary_url).await)
        .await
        .unwrap()
}

/// One reminder as read from its `.eml` file.
#[derive(Debug)]
struct Mail {
    to: String,
    subject: String,
    body: String,
}

/// Every mail file in `dir`, parsed (headers, then the body after the blank
/// line; quoted-printable soft breaks and `=3D` undone should lettre pick
/// that encoding).
fn mails(dir: &Path) -> Vec<Mail> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue; // still being written
        };
        let header = |name: &str| {
            head.split("\r\n")
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .unwrap_or_default()
                .to_string()
        };
        let mut body = body.to_string();
        if header("Content-Transfer-Encoding") == "quoted-printable" {
            body = body.replace("=\r\n", "").replace("=3D", "=");
        }
        out.push(Mail {
            to: header("To"),
            subject: header("Subject"),
            body,
        });
    }
    out
}

#[tokio::test]
async fn reminders_renewal_expiry_and_archive_follow_the_clock() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "jan").await;
    let topics = own_topics("janitor", 1).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let events = Tail::new(&format!("{}.events", region.name)).await;
    let ids = ids(region).await;
    let producer = producer();
    let stack = stack();

    // Two posts by one user at t0.
    let t0 = Utc::now();
    let clock = Arc::new(ManualClock::new(t0));
    let email = format!("{city}@example.com");
    let alice = user(region, &ids, &email).await;
    let mut posts = Vec::new();
    for title in ["kept bike", "left lamp"] {
        let c = command(
            &ids,
            &city,
            t0,
            CommandKind::Create {
                post_id: ids.next().await.unwrap(),
                user_id: alice,
                post: sample_post(title),
            },
        )
        .await;
        send(&producer, &topics.commands, &c).await;
        posts.push(c.kind.post_id().unwrap());
    }
    let (kept, left) = (posts[0], posts[1]);
    eventually("both posts live", LIMIT, || async {
        (post(shard, &city, left).await.is_some() && post(shard, &city, kept).await.is_some())
            .then_some(())
    })
    .await;

    let mail_dir = temp_dir("mail");
    let mut config = JanitorConfig::new(&region.name);
    config.commands_topic = topics.commands.clone();
    config.cities = Some(vec![city.clone()]);
    config.batch = 1; // every batch boundary is crossed
    // Its clock runs days ahead: the stack's revocations are not its own.
    config.prune_revocations = false;
    let janitor = Janitor {
        config,
        parts: JanitorParts {
            router: router(region).await,
            catalog: pool(&region.catalog_url).await,
            ids: ids.clone(),
            producer: producer.clone(),
            watermarks: Watermarks::new(&broker()).unwrap(),
            clock: clock.clone(),
            mailer: Mailer::to_dir(
                &mail_dir,
                "cityboard <no-reply@cityboard.test>",
                &stack.apex,
            )
            .unwrap(),
            homes: HomeCatalogs::of_stack(&stack).unwrap(),
            metrics: Arc::new(JanitorMetrics::default()),
            reconciler: None,
            photos: None,
        },
    };

    // Day 5: nothing is due.
    clock.set(t0 + chrono::Duration::days(5));
    let r = janitor.sweep().await;
    assert_eq!((r.expire_commands, r.reminders_sent, r.failures), (0, 0, 0));

    // Day 6 and an hour: each post's reminder, once.
    clock.set(t0 + chrono::Duration::days(6) + chrono::Duration::hours(1));
    let r = janitor.sweep().await;
    assert_eq!(
        (r.expire_commands, r.reminders_sent, r.failures),
        (0, 2, 0),
        "{r:?}"
    );
    let sent = mails(&mail_dir);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    for (id, title) in [(kept, "kept bike"), (left, "left lamp")] {
        let m = sent
            .iter()
            .find(|m| m.subject.contains(title))
            .unwrap_or_else(|| panic!("no reminder for {title}: {sent:#?}"));
        assert_eq!(m.to, email);
        assert_eq!(m.subject, format!("Your post \"{title}\" expires tomorrow"));
        let link = format!("https://{city}.{}/post/{id}/renew", stack.apex);
        assert!(m.body.contains(&link), "no {link} in {}", m.body);
    }
    let again = janitor.sweep().await;
    assert_eq!(again.reminders_sent, 0, "a second sweep sends none");
    assert_eq!(mails(&mail_dir).len(), 2);

    // The poster renews one post on day 6.
    let renewed_at = clock.now();
    let renew = command(
        &ids,
        &city,
        renewed_at,
        CommandKind::Renew {
            post_id: kept,
            user_id: alice,
        },
    )
    .await;
    send(&producer, &topics.commands, &renew).await;
    let new_end = renewed_at + chrono::Duration::days(7);
    eventually("the renewal applied", LIMIT, || async {
        post(shard, &city, kept)
            .await
            .filter(|(_, end)| end.signed_duration_since(new_end).num_milliseconds().abs() < 1)
            .map(|_| ())
    })
    .await;

    // Day 7 and an hour: the other post is expired through the writer; the
    // renewed one is live and not reminded again for its new period yet.
    clock.set(t0 + chrono::Duration::days(7) + chrono::Duration::hours(1));
    let r = janitor.sweep().await;
    assert_eq!(
        (r.expire_commands, r.reminders_sent, r.failures),
        (1, 0, 0),
        "{r:?}"
    );
    eventually("the un-renewed post expired", LIMIT, || async {
        post(shard, &city, left)
            .await
            .filter(|(status, _)| status == "expired")
            .map(|_| ())
    })
    .await;
    assert_eq!(post(shard, &city, kept).await.unwrap().0, "live");
    // Its PostGone event: still in the outbox, or already sent by the
    // stack's relay to the region's events topic.
    let primary = pool(&shard.primary_url).await;
    let mut seen_event = false;
    for _ in 0..100 {
        let in_outbox: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE city = $1 AND event->>'type' = 'post_gone'
               AND event->>'post_id' = $2 AND event->>'reason' = 'expired'",
        )
        .bind(&city)
        .bind(left.to_string())
        .fetch_one(&primary)
        .await
        .unwrap();
        let on_topic = events
            .poll(Duration::from_millis(200))
            .await
            .iter()
            .any(|m| {
                let e = m.json();
                e["type"] == "post_gone"
                    && e["post_id"] == left.to_string()
                    && e["reason"] == "expired"
            });
        if in_outbox > 0 || on_topic {
            seen_event = true;
            break;
        }
    }
    assert!(seen_event, "no PostGone(expired) event for {left}");
    // Sweeping again produces nothing more (the expired post is not live).
    assert_eq!(janitor.sweep().await.expire_commands, 0);

    // Day 12 and two hours: the renewed post's new period gets its reminder.
    clock.set(renewed_at + chrono::Duration::days(6) + chrono::Duration::hours(1));
    let r = janitor.sweep().await;
    assert_eq!((r.expire_commands, r.reminders_sent), (0, 1), "{r:?}");
    assert_eq!(mails(&mail_dir).len(), 3);

    // An operator archives posts expired more than a day ago.
    let archive_dir = temp_dir("archive");
    let api = Api::start_with(Setup {
        clock: clock.clone(),
        archive_url: Some(archive_dir.to_str().unwrap().to_string()),
        ..Setup::default()
    })
    .await;
    let delete = |token: &str, query: &str| {
        Request::delete(format!("/old_posts?{query}"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let query = format!("city={city}&older_than=1d");
    let r = api
        .send_operator(delete("not the operator token", &query))
        .await;
    assert!(r.problem(401).ends_with("/unauthorized"));
    let operator = String::from_utf8(api::secrets().operator_token).unwrap();
    let r = api
        .send_operator(delete(&operator, "older_than=soon"))
        .await;
    assert!(r.problem(400).ends_with("/bad-request"));
    assert!(
        post(shard, &city, left).await.is_some(),
        "nothing removed by refused calls"
    );

    let r = api.send_operator(delete(&operator, &query)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let done = r.json();
    assert_eq!(done["archived"], 1, "{done}");
    let objects = done["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1);
    let name = objects[0].as_str().unwrap();
    assert!(
        name.starts_with(&format!("old-posts/{}/{city}/", region.name)),
        "{name}"
    );
    let lines = std::fs::read_to_string(archive_dir.join(name)).unwrap();
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], left.to_string());
    assert_eq!(rows[0]["status"], "expired");
    assert_eq!(rows[0]["title"], "left lamp");
    assert!(
        post(shard, &city, left).await.is_none(),
        "archived rows leave the shard"
    );
    assert_eq!(post(shard, &city, kept).await.unwrap().0, "live");
    let ledger = count(
        &primary,
        "SELECT count(*) FROM reminders_sent WHERE city = $1",
        &city,
    )
    .await;
    assert_eq!(ledger, 2, "the archived post's reminder row went with it");

    // A rerun is harmless: nothing more to archive, the object stays.
    let r = api.send_operator(delete(&operator, &query)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["archived"], 0);
    assert!(archive_dir.join(name).exists());

    writer.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&mail_dir);
    let _ = std::fs::remove_dir_all(&archive_dir);
}
