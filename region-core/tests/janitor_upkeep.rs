//! The janitor's upkeep against the stack's broker, shards, catalog, edge KV
//! and publisher: the broker enforcing a topic's retention (its earliest
//! offset moves), dedup rows pruned only below their partition's earliest
//! offset, revocations pruned past their expiry in bounded batches, and the
//! reconciler repairing KV entries that differ from the shard.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cityboard_protocol::kv::{PostMeta, post_key};
use cityboard_test_support::eventually;
use common::*;
use pipeline_common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use region_core::bus::watermarks::Watermarks;
use region_core::bus::{Topics, retention};
use region_core::clock::ManualClock;
use region_core::model::{Command, CommandKind, Id, IdGenerator};
use region_core::roles::common::component_url_from_state;
use region_core::roles::janitor::kv::{Held, KvReader};
use region_core::roles::janitor::metrics::JanitorMetrics;
use region_core::roles::janitor::reconcile::{Reconciled, Reconciler};
use region_core::roles::janitor::{HomeCatalogs, Janitor, JanitorConfig, JanitorParts, Mailer};
use region_core::stack::StackFile;

const LIMIT: Duration = Duration::from_secs(60);
/// The stack's broker enforces retention at each maintenance sweep, every
/// minute (deploy's broker flags): two sweeps and some slack.
const RETENTION_LIMIT: Duration = Duration::from_secs(200);
const HOUR_MS: i64 = 3_600_000;

fn state_file() -> PathBuf {
    PathBuf::from(std::env::var_os("CITYBOARD_HOME").expect("CITYBOARD_HOME")).join("state.json")
}

/// A topic of one partition that keeps its records for an hour.
async fn hour_topic(prefix: &str) -> String {
    let topic = format!("test-{prefix}-{:08x}.commands", rand::random::<u32>());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    let hour = HOUR_MS.to_string();
    let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", &hour);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.create_topics([&new], &options).await.unwrap() {
        r.unwrap();
    }
    topic
}

/// Produces `payload` keyed by `key` with the record timestamp `at_ms` (unix
/// milliseconds): what retention judges a record's age by. Returns its
/// offset.
async fn produce_at(topic: &str, key: &str, payload: &[u8], at_ms: i64) -> i64 {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .timestamp(at_ms),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap()
        .offset
}

/// The earliest offset of partition 0 of `topic`, as the janitor asks it.
async fn earliest(topic: &str) -> i64 {
    let marks = Watermarks::new(&broker())
        .unwrap()
        .earliest(topic)
        .await
        .unwrap();
    marks[0].1
}

/// A janitor of the first region for `config`, on `clock`.
async fn janitor(
    region: &Region,
    config: JanitorConfig,
    clock: Arc<ManualClock>,
    reconciler: Option<Reconciler>,
) -> Janitor {
    let stack = StackFile::read(&state_file()).unwrap();
    let mail = std::env::temp_dir().join(format!("cb-upkeep-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&mail).unwrap();
    Janitor {
        config,
        parts: JanitorParts {
            router: router(region).await,
            catalog: pool(&region.catalog_url).await,
            ids: ids(region).await,
            producer: producer(),
            watermarks: Watermarks::new(&broker()).unwrap(),
            clock,
            mailer: Mailer::to_dir(&mail, "cityboard <no-reply@cityboard.test>", &stack.apex)
                .unwrap(),
            homes: HomeCatalogs::of_stack(&stack).unwrap(),
            metrics: Arc::new(JanitorMetrics::default()),
            reconciler,
            photos: None,
        },
    }
}

/// `(command id, source topic, partition, offset)` of `city`'s dedup rows.
async fn dedup_rows(
    shard: &Shard,
    city: &str,
) -> Vec<(i64, Option<String>, Option<i32>, Option<i64>)> {
    sqlx::query_as(
        "SELECT command_id, source_topic, source_partition, source_offset
         FROM applied_commands WHERE city = $1 ORDER BY source_offset, command_id",
    )
    .bind(city)
    .fetch_all(&pool(&shard.primary_url).await)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_broker_drops_a_topics_records_past_its_retention() {
    let state = prepared().await;
    // The stack's topics were created with their explicit retention.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .create()
        .unwrap();
    let topics = Topics::of_region(&state.region().name);
    let expected = [
        (&topics.commands, retention::COMMANDS),
        (&topics.events, retention::EVENTS),
        (&topics.dead_letters, retention::DEAD_LETTERS),
    ];
    let specs: Vec<ResourceSpecifier> = expected
        .iter()
        .map(|(t, _)| ResourceSpecifier::Topic(t))
        .collect();
    let described = admin
        .describe_configs(&specs, &AdminOptions::new())
        .await
        .unwrap();
    for ((topic, keep), config) in expected.iter().zip(described) {
        let config = config.unwrap();
        let value = config.get("retention.ms").and_then(|e| e.value.clone());
        assert_eq!(
            value,
            Some(keep.as_millis().to_string()),
            "retention.ms of {topic}"
        );
    }

    // A topic keeping records an hour: three records two hours old, two new.
    let topic = hour_topic("retention").await;
    let now = Utc::now().timestamp_millis();
    for i in 0..3 {
        produce_at(
            &topic,
            "k",
            format!("old {i}").as_bytes(),
            now - 2 * HOUR_MS,
        )
        .await;
    }
    for i in 0..2 {
        produce_at(&topic, "k", format!("new {i}").as_bytes(), now).await;
    }
    assert_eq!(
        earliest(&topic).await,
        0,
        "nothing dropped before a sweep ran"
    );
    eventually(
        "the broker's retention to drop the old records",
        RETENTION_LIMIT,
        || async { (earliest(&topic).await == 3).then_some(()) },
    )
    .await;
    let read = read_until(&topic, LIMIT, |seen| seen.len() >= 2).await;
    let payloads: Vec<String> = read
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    assert_eq!(
        payloads,
        ["new 0", "new 1"],
        "only the new records are readable"
    );
}

#[tokio::test]
async fn dedup_rows_go_only_below_their_partitions_earliest_offset() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "prune").await;
    let mut topics = own_topics("prune", 1).await;
    topics.commands = hour_topic("prune").await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let user = ids.next().await.unwrap();

    // Three commands two hours old (past the topic's retention), then two
    // new ones; the writer applies each and records where it read it.
    let now = Utc::now().timestamp_millis();
    let mut commands = Vec::new();
    for i in 0..5 {
        let c = create_command(&ids, &city, user, &format!("post {i}")).await;
        let at = if i < 3 { now - 2 * HOUR_MS } else { now };
        let offset = produce_at(
            &topics.commands,
            &city,
            &serde_json::to_vec(&c).unwrap(),
            at,
        )
        .await;
        assert_eq!(offset, i);
        commands.push(c);
    }
    let rows = eventually("the five commands applied", LIMIT, || async {
        let rows = dedup_rows(shard, &city).await;
        (rows.len() == 5).then_some(rows)
    })
    .await;
    for (i, (command, topic, partition, offset)) in rows.iter().enumerate() {
        assert_eq!(*command, commands[i].id.0);
        assert_eq!(
            (topic.as_deref(), *partition, *offset),
            (Some(topics.commands.as_str()), Some(0), Some(i as i64)),
            "the dedup row names where its command was read"
        );
    }

    // The first command is produced again (a retry after an unknown
    // outcome): the writer skips it and moves its row to the new copy.
    let again = produce_at(
        &topics.commands,
        &city,
        &serde_json::to_vec(&commands[0]).unwrap(),
        now,
    )
    .await;
    assert_eq!(again, 5);
    eventually(
        "the replayed command's row moved to its new copy",
        LIMIT,
        || async {
            dedup_rows(shard, &city)
                .await
                .iter()
                .any(|r| r.0 == commands[0].id.0 && r.3 == Some(5))
                .then_some(())
        },
    )
    .await;
    assert_eq!(dedup_rows(shard, &city).await.len(), 5, "applied once");

    eventually(
        "the broker's retention to drop the old commands",
        RETENTION_LIMIT,
        || async { (earliest(&topics.commands).await == 3).then_some(()) },
    )
    .await;

    let mut config = JanitorConfig::new(&region.name);
    config.commands_topic = topics.commands.clone();
    config.cities = Some(vec![city.clone()]);
    config.batch = 1; // every row its own batch
    config.prune_revocations = false;
    let j = janitor(region, config, Arc::new(ManualClock::new(Utc::now())), None).await;
    let r = j.sweep().await;
    assert_eq!(r.failures, 0, "{r:?}");
    assert_eq!(r.pruned.applied_commands, 2, "{r:?}");
    assert_eq!(r.pruned.largest_batch, 1, "batches are bounded: {r:?}");
    assert!(r.pruned.batches >= 2, "{r:?}");
    assert_eq!(j.parts.metrics.pruned_applied_commands.get(), 2);
    let left: Vec<i64> = dedup_rows(shard, &city).await.iter().map(|r| r.0).collect();
    let mut expected = vec![commands[3].id.0, commands[4].id.0, commands[0].id.0];
    assert_eq!(left, expected, "rows at or past the earliest offset stay");

    // Every command a replay could still read has its row.
    let readable = read_until(&topics.commands, LIMIT, |seen| seen.len() >= 3).await;
    let mut replayable: Vec<i64> = readable
        .iter()
        .map(|m| serde_json::from_slice::<Command>(&m.payload).unwrap().id.0)
        .collect();
    replayable.sort_unstable();
    expected.sort_unstable();
    assert_eq!(replayable, expected);

    assert_eq!(j.sweep().await.pruned.applied_commands, 0, "nothing more");
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn revocations_go_past_their_expiry_in_bounded_batches() {
    let state = prepared().await;
    let region = state.region();
    let catalog = pool(&region.catalog_url).await;
    // The janitor's clock is in 1991: only rows that expired before it
    // (this test's) are its to prune, none of the stack's.
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(1991, 1, 1, 0, 0, 0).unwrap(),
    ));
    let long_ago: DateTime<Utc> = Utc.with_ymd_and_hms(1990, 6, 1, 0, 0, 0).unwrap();
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    let tag = format!("{:08x}", rand::random::<u32>());
    let base = 9_100_000_000_000 + i64::from(rand::random::<u32>()) * 16;
    let session = |i: usize| format!("test-prune-{tag}-{i}");
    for (i, expires) in [
        long_ago, long_ago, long_ago, long_ago, long_ago, tomorrow, tomorrow,
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query("INSERT INTO revoked_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(session(i))
            .bind(base)
            .bind(expires)
            .execute(&catalog)
            .await
            .unwrap();
    }
    for (i, expires) in [long_ago, long_ago, long_ago, tomorrow]
        .into_iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO revoked_users (user_id, revoked_at, expires_at) VALUES ($1, now(), $2)",
        )
        .bind(base + i as i64)
        .bind(expires)
        .execute(&catalog)
        .await
        .unwrap();
    }
    let sessions_left = || async {
        let jtis: Vec<String> =
            sqlx::query_scalar("SELECT jti FROM revoked_sessions WHERE jti LIKE $1 ORDER BY jti")
                .bind(format!("test-prune-{tag}-%"))
                .fetch_all(&catalog)
                .await
                .unwrap();
        jtis
    };
    let users_left = || async {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT user_id FROM revoked_users WHERE user_id BETWEEN $1 AND $1 + 15 ORDER BY 1",
        )
        .bind(base)
        .fetch_all(&catalog)
        .await
        .unwrap();
        ids
    };

    let mut config = JanitorConfig::new(&region.name);
    config.commands_topic = own_topics("revoked", 1).await.commands;
    config.cities = Some(vec![unique_city("revoked")]);
    config.batch = 2;
    config.prune_batches = 2;
    let j = janitor(region, config, clock, None).await;

    // One sweep: at most two batches of two rows per table.
    let r = j.sweep().await;
    assert_eq!(r.failures, 0, "{r:?}");
    assert!(r.pruned.largest_batch <= 2, "{r:?}");
    assert!(r.pruned.revoked_sessions <= 4, "bounded: {r:?}");
    assert!(r.pruned.revoked_users <= 4, "bounded: {r:?}");
    assert!(
        sessions_left().await.len() >= 3,
        "a sweep prunes at most two batches of sessions"
    );
    // The next sweeps finish the work.
    for _ in 0..3 {
        j.sweep().await;
    }
    assert_eq!(
        sessions_left().await,
        [session(5), session(6)],
        "unexpired stay"
    );
    assert_eq!(users_left().await, [base + 3], "unexpired stay");
    assert!(j.parts.metrics.pruned_revoked_sessions.get() <= 5);
    assert!(j.parts.metrics.prune_batches.get() >= 3);
}

/// The stack's KV service, as a test writes to it behind the publisher's
/// back (to break what the reconciler must repair).
struct EdgeKv {
    base: String,
    client: reqwest::Client,
}

impl EdgeKv {
    fn of_stack() -> EdgeKv {
        EdgeKv {
            base: component_url_from_state(&state_file(), "edge-kv").unwrap(),
            client: region_core::roles::common::http_client(Duration::from_secs(10)).unwrap(),
        }
    }

    fn reader(&self) -> KvReader {
        KvReader::edge_kv(&self.base, &kv_key()).unwrap()
    }

    async fn delete(&self, key: &str) {
        let res = self
            .client
            .delete(format!("{}/{key}?urlencoded=true", self.base))
            .bearer_auth(kv_key())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn put_page(&self, key: &str, meta: &PostMeta) {
        let res = self
            .client
            .put(format!("{}/{key}?urlencoded=true", self.base))
            .bearer_auth(kv_key())
            .header("cf-kv-metadata", serde_json::to_string(meta).unwrap())
            .body("<html>a page over a tombstone</html>")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn held(&self, key: &str) -> Held {
        let mut held = self.reader().held(&[key.to_string()]).await.unwrap();
        held.remove(key).unwrap()
    }
}

async fn command(ids: &IdGenerator, city: &str, kind: CommandKind) -> Command {
    Command {
        id: ids.next().await.unwrap(),
        city: city.to_string(),
        created_at: Utc::now(),
        epoch: 1,
        request_id: None,
        kind,
    }
}

#[tokio::test]
async fn the_reconciler_repairs_kv_entries_that_differ_from_the_shard() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "recon").await;
    let ids = ids(region).await;
    let producer = producer();
    let topics = Topics::of_region(&region.name);
    let kv = EdgeKv::of_stack();
    let user = ids.next().await.unwrap();

    // Through the stack's pipeline: a live post, and a deleted one.
    let live = create_command(&ids, &city, user, "kept lamp").await;
    let doomed = create_command(&ids, &city, user, "sold sofa").await;
    let (live_id, doomed_id) = (live.kind.post_id().unwrap(), doomed.kind.post_id().unwrap());
    send(&producer, &topics.commands, &live).await;
    send(&producer, &topics.commands, &doomed).await;
    let delete = command(
        &ids,
        &city,
        CommandKind::Delete {
            post_id: doomed_id,
            user_id: user,
        },
    )
    .await;
    send(&producer, &topics.commands, &delete).await;
    let (live_key, doomed_key) = (post_key(live_id.0 as u64), post_key(doomed_id.0 as u64));
    let primary = pool(&shard.primary_url).await;
    eventually("the page and the tombstone in KV", LIMIT, || async {
        let page = matches!(kv.held(&live_key).await, Held::Entry(m) if !m.gone);
        let tomb = matches!(kv.held(&doomed_key).await, Held::Entry(m) if m.gone);
        (page && tomb).then_some(())
    })
    .await;
    let live_v = post_version(&primary, &city, live_id).await;
    let doomed_v = post_version(&primary, &city, doomed_id).await;

    // Behind the publisher's back: the live post's entry is lost, and the
    // deleted one's tombstone is overwritten with its old page.
    kv.delete(&live_key).await;
    let old_page = PostMeta::page(
        &city,
        doomed_v - 1,
        (Utc::now() + chrono::Duration::days(7)).timestamp(),
    );
    kv.put_page(&doomed_key, &old_page).await;
    assert_eq!(kv.held(&live_key).await, Held::Nothing);

    let mut config = JanitorConfig::new(&region.name);
    config.cities = Some(vec![city.clone()]);
    config.prune_revocations = false;
    config.reconcile_settle = chrono::Duration::zero();
    let j = janitor(
        region,
        config,
        Arc::new(ManualClock::new(Utc::now())),
        Some(Reconciler::new(kv.reader())),
    )
    .await;
    let r = j.sweep().await;
    assert_eq!(r.failures, 0, "{r:?}");
    assert_eq!(
        r.reconciled,
        Reconciled {
            checked: 2,
            pages: 1,
            tombstones: 1
        }
    );
    assert_eq!(j.parts.metrics.reconciled_pages.get(), 1);
    assert_eq!(j.parts.metrics.reconciled_tombstones.get(), 1);

    // The publisher wrote both again, from the shard's state.
    eventually("the repaired entries in KV", LIMIT, || async {
        let page = matches!(kv.held(&live_key).await,
            Held::Entry(m) if !m.gone && m.version == live_v);
        let tomb = matches!(kv.held(&doomed_key).await,
            Held::Entry(m) if m.gone && m.version == doomed_v);
        (page && tomb).then_some(())
    })
    .await;
    let r = j.sweep().await;
    assert_eq!(
        (r.reconciled.pages, r.reconciled.tombstones),
        (0, 0),
        "KV agrees now: {r:?}"
    );
    assert_eq!(j.parts.metrics.reconciled_pages.get(), 1);
}

/// The version the shard holds for `id`.
async fn post_version(primary: &sqlx::PgPool, city: &str, id: Id) -> i64 {
    sqlx::query_scalar("SELECT version FROM posts WHERE city = $1 AND id = $2")
        .bind(city)
        .bind(id)
        .fetch_one(primary)
        .await
        .unwrap()
}
