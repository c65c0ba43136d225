//! The writer and the relay, in process, against the stack's broker, shards
//! and Redis, each test on topics and cities of its own.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::time::Duration;

use cityboard_test_support::eventually;
use common::*;
use pipeline_common::*;
use region_core::apply::{ApplyConfig, CityBatch, apply};
use region_core::bus::failpoint::{DEAD_LETTER_SEND, RELAY_AFTER_PRODUCE, WRITER_AFTER_COMMIT};
use region_core::bus::notify::{CommandState, Notifier};
use region_core::bus::{POST_ID_HEADER, REASON_HEADER, Topics, VERSION_HEADER};
use region_core::model::{Command, CommandKind, Id, IdGenerator};
use region_core::roles::writer::metrics::WriterMetrics;

const LIMIT: Duration = Duration::from_secs(60);

async fn update(ids: &IdGenerator, create: &Command, title: &str) -> Command {
    Command {
        id: ids.next().await.unwrap(),
        kind: CommandKind::Update {
            post_id: create.kind.post_id().unwrap(),
            user_id: Id(42),
            post: sample_post(title),
        },
        ..create.clone()
    }
}

/// (version, title) of a post, if it exists.
async fn post(shard: &Shard, city: &str, id: Id) -> Option<(i64, String)> {
    sqlx::query_as("SELECT version, title FROM posts WHERE city = $1 AND id = $2")
        .bind(city)
        .bind(id)
        .fetch_optional(&pool(&shard.primary_url).await)
        .await
        .unwrap()
}

async fn set_fence(shard: &Shard, city: &str, state: &str) {
    sqlx::query("UPDATE city_fence SET state = $2 WHERE city = $1")
        .bind(city)
        .bind(state)
        .execute(&pool(&shard.primary_url).await)
        .await
        .unwrap();
}

/// Waits until the writer has counted `applied` fresh commands (the last
/// one the test's marker): a row is visible at its commit, and the writer
/// counts its batch a moment later, once the apply task has returned.
async fn marker_counted(metrics: &WriterMetrics, applied: u64) {
    eventually("the writer counted the marker's batch", LIMIT, || async {
        (metrics.applied.get() >= applied).then_some(())
    })
    .await;
}

#[tokio::test]
async fn commands_on_the_topic_are_applied_once_each_on_their_shards() {
    let state = prepared().await;
    let region = state.region();
    let (s1, s2) = (&region.shards[0], &region.shards[1]);
    let a = new_city(region, s1, "wr-a").await;
    let b = new_city(region, s2, "wr-b").await;
    let topics = own_topics("applied", 2).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let producer = producer();
    let mut sent = Vec::new();
    for i in 0..10 {
        for city in [&a, &b] {
            let c = create_command(&ids, city, Id(42), &format!("bike {i}")).await;
            send(&producer, &topics.commands, &c).await;
            sent.push(c);
        }
    }
    eventually("20 posts on their shards", LIMIT, || async {
        (posts_in(s1, &a).await == 10 && posts_in(s2, &b).await == 10).then_some(())
    })
    .await;
    // The apply notification names the shard, epoch and version.
    let notifier = Notifier::new(&store_url());
    let last = sent.last().unwrap();
    let status = eventually("the last command's status", LIMIT, || async {
        notifier.status(last.id).await.unwrap()
    })
    .await;
    assert_eq!(status.state, CommandState::Applied);
    assert_eq!(status.post, last.kind.post_id());
    let at = status.applied.unwrap();
    assert_eq!(
        (at.shard.as_str(), at.epoch, at.version),
        (s2.name.as_str(), 1, 1)
    );
    writer.stop().await.unwrap();
    assert_eq!(posts_in(s1, &a).await + posts_in(s2, &b).await, 20);
}

#[tokio::test]
async fn a_duplicated_command_changes_nothing() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-dup").await;
    let topics = own_topics("dup", 1).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let producer = producer();
    let create = create_command(&ids, &city, Id(42), "lamp").await;
    let edit = update(&ids, &create, "red lamp").await;
    for c in [&create, &edit, &create, &edit] {
        send(&producer, &topics.commands, c).await;
    }
    let marker = create_command(&ids, &city, Id(42), "marker").await;
    send(&producer, &topics.commands, &marker).await;
    eventually("the marker applied", LIMIT, || async {
        post(shard, &city, marker.kind.post_id().unwrap()).await
    })
    .await;
    let id = create.kind.post_id().unwrap();
    assert_eq!(post(shard, &city, id).await, Some((2, "red lamp".into())));
    let applied = count(
        &pool(&shard.primary_url).await,
        "SELECT count(*) FROM applied_commands WHERE city = $1",
        &city,
    )
    .await;
    assert_eq!(applied, 3);
    // The row is visible at commit; the writer counts the batch a moment
    // later, once its apply task has returned.
    marker_counted(&writer.metrics, 3).await;
    assert_eq!(writer.metrics.replayed.get(), 2);
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn a_writer_that_crashes_after_commit_replays_its_batch_harmlessly() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-crash").await;
    let topics = own_topics("crash", 1).await;
    let ids = ids(region).await;
    let producer = producer();
    let create = create_command(&ids, &city, Id(42), "desk").await;
    let edit = update(&ids, &create, "oak desk").await;
    send(&producer, &topics.commands, &create).await;
    send(&producer, &topics.commands, &edit).await;

    // The first batch commits, then the writer "dies" before its offsets.
    fail::cfg(WRITER_AFTER_COMMIT, "1*return(error)").unwrap();
    let writer = RunningWriter::start(region, &topics, "w", |c| {
        c.queue.batch_window = Duration::from_millis(300);
    })
    .await;
    let err = writer.ended().await.unwrap_err();
    assert!(err.to_string().contains(WRITER_AFTER_COMMIT), "{err:#}");
    let id = create.kind.post_id().unwrap();
    assert_eq!(post(shard, &city, id).await, Some((2, "oak desk".into())));

    // Its successor in the same group reads the batch again.
    let again = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let marker = create_command(&ids, &city, Id(42), "marker").await;
    send(&producer, &topics.commands, &marker).await;
    eventually("the marker applied", LIMIT, || async {
        post(shard, &city, marker.kind.post_id().unwrap()).await
    })
    .await;
    assert_eq!(post(shard, &city, id).await, Some((2, "oak desk".into())));
    marker_counted(&again.metrics, 1).await;
    assert_eq!(again.metrics.replayed.get(), 2);
    assert_eq!(again.metrics.applied.get(), 1);
    again.stop().await.unwrap();
}

#[tokio::test]
async fn poison_and_rejected_commands_land_in_the_dead_letter_topic_and_the_writer_goes_on() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-poison").await;
    let topics = own_topics("poison", 1).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let producer = producer();
    producer
        .produce(&topics.commands, &city, b"{this is not json", &[])
        .await
        .unwrap();
    let unknown = ids.next().await.unwrap();
    let teleport = serde_json::json!({"id": unknown.to_string(), "city": city,
        "created_at": "2026-01-01T00:00:00Z", "epoch": 1, "type": "teleport"});
    producer
        .produce(
            &topics.commands,
            &city,
            teleport.to_string().as_bytes(),
            &[],
        )
        .await
        .unwrap();
    let create = create_command(&ids, &city, Id(42), "chair").await;
    let not_yours = Command {
        id: ids.next().await.unwrap(),
        kind: CommandKind::Delete {
            post_id: create.kind.post_id().unwrap(),
            user_id: Id(43),
        },
        ..create.clone()
    };
    send(&producer, &topics.commands, &create).await;
    send(&producer, &topics.commands, &not_yours).await;

    let letters = read_until(&topics.dead_letters, LIMIT, |m| m.len() >= 3).await;
    let reasons: Vec<&str> = letters
        .iter()
        .filter_map(|m| m.header(REASON_HEADER))
        .collect();
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert!(
        reasons[1].contains("teleport") || reasons[1].starts_with("not a command"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2], "not the poster's post");
    assert_eq!(letters[0].payload, b"{this is not json");
    assert_eq!(letters[2].json()["id"], not_yours.id.to_string());
    // The writer went on: the good command is applied, the post untouched.
    assert_eq!(
        post(shard, &city, create.kind.post_id().unwrap()).await,
        Some((1, "chair".into()))
    );
    let notifier = Notifier::new(&store_url());
    for id in [unknown, not_yours.id] {
        let s = eventually("a rejected status", LIMIT, || async {
            notifier.status(id).await.unwrap()
        })
        .await;
        assert_eq!(s.state, CommandState::Rejected, "{s:?}");
        assert!(s.reason.is_some());
    }
    assert_eq!(writer.metrics.dead_lettered.get(), 3);
    writer.stop().await.unwrap();
}

/// A consumer group no other test joins: a rebalance another test causes
/// would make the writer read its poison again, and these tests time it.
fn own_group(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A writer on `topics` in `group` whose dead-letter sends give up after
/// `deadline`, once its consumer reads: a command of `city` applied.
async fn dead_letter_writer(
    region: &Region,
    shard: &Shard,
    city: &str,
    topics: &Topics,
    group: &str,
    deadline: Duration,
) -> RunningWriter {
    let writer = RunningWriter::start(region, topics, group, |c| {
        c.dead_letter_deadline = deadline;
    })
    .await;
    let ids = ids(region).await;
    let ready = create_command(&ids, city, Id(42), "ready").await;
    send(&producer(), &topics.commands, &ready).await;
    eventually("the writer reading", LIMIT, || async {
        post(shard, city, ready.kind.post_id().unwrap()).await
    })
    .await;
    writer
}

/// Produces a message that is not a command and waits until the writer has
/// given up sending its dead letter (the dead-letter topic cannot be
/// written): within the deadline of its tries, counted, and shown stuck.
async fn poison_gets_stuck(
    writer: &RunningWriter,
    topics: &Topics,
    city: &str,
    deadline: Duration,
) {
    let sent = std::time::Instant::now();
    producer()
        .produce(&topics.commands, city, b"{stuck", &[])
        .await
        .unwrap();
    eventually("the dead letter given up", LIMIT, || async {
        (writer.metrics.dead_letter_stuck.get() == 1).then_some(())
    })
    .await;
    // The deadline, and a little for the read and the test's polling.
    let took = sent.elapsed();
    assert!(
        took < deadline + Duration::from_secs(3),
        "gave up after {took:?}"
    );
    assert!(
        writer.metrics.dead_letter_send_failures.get() >= 2,
        "tried again within the deadline: {}",
        writer.metrics.dead_letter_send_failures.get()
    );
    assert_eq!(writer.metrics.dead_lettered.get(), 0);
    eventually("its partition paused", LIMIT, || async {
        (writer.metrics.paused_partitions.get() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stuck_dead_letter_holds_its_command_until_the_broker_takes_it() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-dlq").await;
    let topics = own_topics("dlq", 1).await;
    let group = own_group("w-dlq");
    let deadline = Duration::from_secs(2);
    let writer = dead_letter_writer(region, shard, &city, &topics, &group, deadline).await;
    fail::cfg(DEAD_LETTER_SEND, "return").unwrap();
    poison_gets_stuck(&writer, &topics, &city, deadline).await;
    // A command behind it waits: its partition is paused.
    let ids = ids(region).await;
    let behind = create_command(&ids, &city, Id(42), "behind").await;
    send(&producer(), &topics.commands, &behind).await;

    // The broker takes letters again: the background send lands it, the
    // command finishes and the partition goes on.
    fail::remove(DEAD_LETTER_SEND);
    let letters = read_until(&topics.dead_letters, LIMIT, |m| !m.is_empty()).await;
    assert_eq!(letters[0].payload, b"{stuck");
    assert!(
        letters[0]
            .header(REASON_HEADER)
            .unwrap()
            .starts_with("not JSON")
    );
    eventually("the partition resumed", LIMIT, || async {
        post(shard, &city, behind.kind.post_id().unwrap()).await
    })
    .await;
    assert_eq!(writer.metrics.dead_letter_stuck.get(), 0);
    assert_eq!(writer.metrics.dead_lettered.get(), 1);
    writer.stop().await.unwrap();

    // Its offset was committed: a writer of the same group reads nothing
    // of it again.
    let again = RunningWriter::start(region, &topics, &group, |_| {}).await;
    let marker = create_command(&ids, &city, Id(42), "marker").await;
    send(&producer(), &topics.commands, &marker).await;
    eventually("the marker applied", LIMIT, || async {
        post(shard, &city, marker.kind.post_id().unwrap()).await
    })
    .await;
    marker_counted(&again.metrics, 1).await;
    assert_eq!(
        again.metrics.rejected.get(),
        0,
        "the poison was not read again"
    );
    again.stop().await.unwrap();
}

#[tokio::test]
async fn a_writer_stopped_with_a_stuck_dead_letter_rejects_its_command_again_after_restart() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-dlq-stop").await;
    let topics = own_topics("dlq-stop", 1).await;
    let group = own_group("w-dlq-stop");
    let deadline = Duration::from_secs(1);
    let writer = dead_letter_writer(region, shard, &city, &topics, &group, deadline).await;
    fail::cfg(DEAD_LETTER_SEND, "return").unwrap();
    poison_gets_stuck(&writer, &topics, &city, deadline).await;
    // A clean stop commits what is finished, and the poison is not.
    writer.stop().await.unwrap();

    fail::remove(DEAD_LETTER_SEND);
    let again = RunningWriter::start(region, &topics, &group, |_| {}).await;
    let letters = read_until(&topics.dead_letters, LIMIT, |m| !m.is_empty()).await;
    assert_eq!(letters[0].payload, b"{stuck");
    eventually(
        "the poison dead-lettered on the second run",
        LIMIT,
        || async { (again.metrics.dead_lettered.get() == 1).then_some(()) },
    )
    .await;
    assert_eq!(again.metrics.rejected.get(), 1);
    assert_eq!(
        again.metrics.replayed.get(),
        0,
        "the commit stopped just before the poison"
    );
    again.stop().await.unwrap();
}

/// librdkafka keeps a pause through a rebalance: the writer, which forgets
/// a revoked partition's pause, must resume it, or a partition paused for a
/// stuck letter and assigned to it again would stay paused for good.
#[tokio::test]
async fn a_partition_paused_for_a_stuck_dead_letter_is_read_again_after_a_rebalance() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-dlq-rebalance").await;
    let topics = own_topics("dlq-rebalance", 1).await;
    let group = own_group("w-dlq-rebalance");
    let deadline = Duration::from_secs(1);
    let writer = dead_letter_writer(region, shard, &city, &topics, &group, deadline).await;
    fail::cfg(DEAD_LETTER_SEND, "return").unwrap();
    poison_gets_stuck(&writer, &topics, &city, deadline).await;
    assert_eq!(writer.metrics.rejected.get(), 1);

    // Another member joins the group (on topics of its own): every
    // partition is revoked and assigned again, this one to the same writer,
    // which reads it again from the last commit, the poison first.
    let other_topics = own_topics("dlq-rebalance-other", 1).await;
    let other = RunningWriter::start(region, &other_topics, &group, |_| {}).await;
    eventually(
        "the poison read again after the rebalance",
        LIMIT,
        || async { (writer.metrics.rejected.get() >= 2).then_some(()) },
    )
    .await;

    fail::remove(DEAD_LETTER_SEND);
    let ids = ids(region).await;
    let behind = create_command(&ids, &city, Id(42), "behind").await;
    send(&producer(), &topics.commands, &behind).await;
    eventually("the partition read on", LIMIT, || async {
        post(shard, &city, behind.kind.post_id().unwrap()).await
    })
    .await;
    let letters = read_until(&topics.dead_letters, LIMIT, |m| !m.is_empty()).await;
    assert_eq!(letters[0].payload, b"{stuck");
    other.stop().await.unwrap();
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn a_frozen_citys_commands_are_held_while_another_city_applies_then_apply_in_order() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let frozen = new_city(region, shard, "wr-frozen").await;
    let other = new_city(region, shard, "wr-other").await;
    set_fence(shard, &frozen, "frozen").await;
    let topics = own_topics("frozen", 1).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let producer = producer();
    let create = create_command(&ids, &frozen, Id(42), "sofa").await;
    let edit = update(&ids, &create, "green sofa").await;
    let edit2 = update(&ids, &create, "blue sofa").await;
    let elsewhere = create_command(&ids, &other, Id(42), "rug").await;
    for c in [&create, &edit, &edit2, &elsewhere] {
        send(&producer, &topics.commands, c).await;
    }
    eventually("the other city's post", LIMIT, || async {
        post(shard, &other, elsewhere.kind.post_id().unwrap()).await
    })
    .await;
    eventually("the frozen city held", LIMIT, || async {
        (writer.metrics.held.get() >= 3).then_some(())
    })
    .await;
    let id = create.kind.post_id().unwrap();
    assert_eq!(post(shard, &frozen, id).await, None);

    set_fence(shard, &frozen, "active").await;
    let applied = eventually("the frozen city's commands", LIMIT, || async {
        post(shard, &frozen, id).await.filter(|(v, _)| *v == 3)
    })
    .await;
    assert_eq!(applied.1, "blue sofa", "applied in log order");
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn blocked_commands_past_the_bound_pause_their_partitions_until_drained() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "wr-pause").await;
    set_fence(shard, &city, "frozen").await;
    let topics = own_topics("pause", 2).await;
    let writer = RunningWriter::start(region, &topics, "w", |c| c.max_blocked = 2).await;
    let ids = ids(region).await;
    let producer = producer();
    for i in 0..5 {
        let c = create_command(&ids, &city, Id(42), &format!("box {i}")).await;
        send(&producer, &topics.commands, &c).await;
    }
    eventually("a paused partition", LIMIT, || async {
        (writer.metrics.paused_partitions.get() == 1).then_some(())
    })
    .await;
    set_fence(shard, &city, "active").await;
    eventually("drained and resumed", LIMIT, || async {
        (posts_in(shard, &city).await == 5 && writer.metrics.paused_partitions.get() == 0)
            .then_some(())
    })
    .await;
    assert!(writer.metrics.pauses.get() >= 1);
    writer.stop().await.unwrap();
}

/// Two commands applied straight on the shard: their events wait in the
/// outbox.
async fn outbox_rows(region: &Region, shard: &Shard, prefix: &str) -> (String, Vec<(Id, i64)>) {
    let city = new_city(region, shard, prefix).await;
    let ids = ids(region).await;
    let create = create_command(&ids, &city, Id(42), "kettle").await;
    let edit = update(&ids, &create, "steel kettle").await;
    let applied = apply(
        &target(shard, pool(&shard.primary_url).await),
        &[CityBatch {
            city: city.clone(),
            epoch: 1,
            commands: vec![create.clone(), edit],
        }],
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(applied.events.len(), 2);
    let id = create.kind.post_id().unwrap();
    (city, vec![(id, 1), (id, 2)])
}

fn versions_of(events: &[Read], city: &str) -> Vec<(Id, i64)> {
    events
        .iter()
        .filter(|m| m.key == city)
        .map(|m| {
            (
                m.header(POST_ID_HEADER).unwrap().parse().unwrap(),
                m.header(VERSION_HEADER).unwrap().parse().unwrap(),
            )
        })
        .collect()
}

const OUTBOX: &str = "SELECT count(*) FROM outbox WHERE city = $1";

/// `city`'s events as read from `tails` (topic, message), until `done`.
/// The relay tests read the stack's events topic too: when the stack runs a
/// relay of its own, it may take a test city's rows before the test's relay
/// does (both are right; neither may lose one).
async fn events_of(
    city: &str,
    tails: &[&Tail],
    done: impl Fn(&[(String, Read)]) -> bool,
) -> Vec<(String, Read)> {
    let deadline = std::time::Instant::now() + LIMIT;
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out reading {city}'s events: {got:#?}"
        );
        for t in tails {
            for m in t.poll(Duration::from_millis(200)).await {
                if m.key == city {
                    got.push((t.topic.clone(), m));
                }
            }
        }
    }
    got
}

fn versions_in(events: &[(String, Read)]) -> Vec<(Id, i64)> {
    let reads: Vec<Read> = events.iter().map(|(_, m)| m.clone()).collect();
    versions_of(
        &reads,
        &reads.first().map(|m| m.key.clone()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn the_relay_moves_outbox_rows_to_the_events_topic_and_deletes_them() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[1];
    let topics = own_topics("relay", 1).await;
    let mine = Tail::new(&topics.events).await;
    let stacks = Tail::new(&Topics::of_region(&region.name).events).await;
    let (city, expected) = outbox_rows(region, shard, "relay").await;
    let relay = RunningRelay::start(region, &topics.events, std::slice::from_ref(&city)).await;
    let primary = pool(&shard.primary_url).await;
    eventually("the rows deleted", LIMIT, || async {
        (count(&primary, OUTBOX, &city).await == 0).then_some(())
    })
    .await;
    let events = events_of(&city, &[&mine, &stacks], |e| e.len() >= 2).await;
    let got = versions_in(&events);
    if events.iter().all(|(t, _)| *t == topics.events) {
        assert_eq!(got, expected, "in order, with headers");
    } else {
        for e in &expected {
            assert!(got.contains(e), "{e:?} lost: {got:?}");
        }
    }
    assert_eq!(events[1].1.json()["post"]["title"], "steel kettle");
    relay.stop().await;
}

#[tokio::test]
async fn a_relay_that_crashes_after_producing_sends_the_rows_again() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let topics = own_topics("relay-crash", 1).await;
    let mine = Tail::new(&topics.events).await;
    let stacks = Tail::new(&Topics::of_region(&region.name).events).await;
    let primary = pool(&shard.primary_url).await;
    fail::cfg(RELAY_AFTER_PRODUCE, "1*return(error)").unwrap();
    let (city, expected) = outbox_rows(region, shard, "relay-crash").await;
    let relay = RunningRelay::start(region, &topics.events, std::slice::from_ref(&city)).await;
    eventually("the relay crashed, or the rows gone", LIMIT, || async {
        (relay.is_finished() || count(&primary, OUTBOX, &city).await == 0).then_some(())
    })
    .await;
    let crashed = if relay.is_finished() {
        relay.ended().await
    } else {
        relay.stop().await;
        Ok(())
    };
    let again = RunningRelay::start(region, &topics.events, std::slice::from_ref(&city)).await;
    eventually("the rows deleted", LIMIT, || async {
        (count(&primary, OUTBOX, &city).await == 0).then_some(())
    })
    .await;
    // Each event was sent once before the crash, or the stack's relay took
    // the rows first and the crash point never fired: then once.
    let copies = if crashed.is_err() { 4 } else { 2 };
    if let Err(err) = &crashed {
        assert!(err.to_string().contains(RELAY_AFTER_PRODUCE), "{err}");
    }
    let events = events_of(&city, &[&mine, &stacks], |e| e.len() >= copies).await;
    let got = versions_in(&events);
    assert_eq!(got.len(), copies, "{got:?}");
    for e in &expected {
        assert!(got.contains(e), "{e:?} lost: {got:?}");
    }
    again.stop().await;
}

#[tokio::test]
async fn the_producer_rebuilds_itself_after_a_fatal_error_and_delivers() {
    let topics = own_topics("fatal", 1).await;
    let producer = producer();
    producer
        .produce(&topics.events, "k", b"before", &[])
        .await
        .unwrap();
    producer.inject_fatal_error_for_test();
    producer
        .produce(&topics.events, "k", b"after", &[])
        .await
        .unwrap();
    assert_eq!(producer.rebuilds(), 1);
    let read = read_until(&topics.events, LIMIT, |m| m.len() >= 2).await;
    assert_eq!(read[1].payload, b"after");
    // The failed instance's delivery thread ends with it: one is left.
    eventually(
        "the failed instance's delivery thread ended",
        LIMIT,
        || async { (delivery_threads() == 1).then_some(()) },
    )
    .await;
}

/// Threads of this process serving a producer's delivery reports.
fn delivery_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|n| n.trim_end() == region_core::bus::producer::DELIVERY_THREAD)
        })
        .count()
}

/// Makes the primary of `shard` refuse new connections and drops the ones
/// open (as a shard primary that is down looks to the writer), or lets it
/// accept them again. Serial: every user of the shard sees it.
async fn refuse_connections(shard: &Shard, refuse: bool) {
    let admin_url = shard.primary_url.replace("/cityboard", "/postgres");
    let admin = pool(&admin_url).await;
    sqlx::query(&format!(
        "ALTER DATABASE cityboard ALLOW_CONNECTIONS {}",
        !refuse
    ))
    .execute(&admin)
    .await
    .unwrap();
    if refuse {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = 'cityboard' AND pid <> pg_backend_pid()",
        )
        .execute(&admin)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn serial_a_shard_that_is_down_delays_only_its_own_cities_which_then_apply_in_order() {
    let state = prepared().await;
    let region = state.region();
    let (up, down) = (region.shards[0].clone(), region.shards[1].clone());
    let a = new_city(region, &up, "wr-up").await;
    let b = new_city(region, &down, "wr-down").await;
    let topics = own_topics("down", 1).await;
    let writer = RunningWriter::start(region, &topics, "w", |_| {}).await;
    let ids = ids(region).await;
    let producer = producer();
    // Both shards seen up first, so the writer holds connections to both.
    let warm = create_command(&ids, &b, Id(42), "warm").await;
    send(&producer, &topics.commands, &warm).await;
    eventually("the warm-up post", LIMIT, || async {
        post(&down, &b, warm.kind.post_id().unwrap()).await
    })
    .await;

    refuse_connections(&down, true).await;
    let body = {
        let (up, down, a, b) = (up.clone(), down.clone(), a.clone(), b.clone());
        async move {
            let create = create_command(&ids, &b, Id(42), "bench").await;
            let edit = update(&ids, &create, "long bench").await;
            let elsewhere = create_command(&ids, &a, Id(42), "stool").await;
            for c in [&create, &edit, &elsewhere] {
                send(&producer, &topics.commands, c).await;
            }
            eventually("the other shard's city applied", LIMIT, || async {
                post(&up, &a, elsewhere.kind.post_id().unwrap()).await
            })
            .await;
            eventually("failed applies on the stopped shard", LIMIT, || async {
                (writer.metrics.apply_failures.get() >= 2).then_some(())
            })
            .await;
            assert_eq!(writer.metrics.rejected.get(), 0);

            refuse_connections(&down, false).await;
            let id = create.kind.post_id().unwrap();
            let applied = eventually("the stopped shard's commands", LIMIT, || async {
                post(&down, &b, id).await.filter(|(v, _)| *v == 2)
            })
            .await;
            assert_eq!(applied.1, "long bench", "in order");
            writer.stop().await.unwrap();
        }
    };
    with_cleanup(body, refuse_connections(&down, false)).await;
}

/// A shard sends only the outbox rows of cities it owns: a move copies a
/// city's rows to its target (`moving`) and back to the source it left
/// (`gone`), and neither may send them. No broker needed: rows it would not
/// send are never produced.
#[tokio::test]
async fn the_relay_leaves_the_outbox_rows_of_cities_its_shard_does_not_own() {
    use region_core::bus::{Producer, ProducerConfig};
    use region_core::roles::relay::metrics::RelayMetrics;
    use region_core::roles::relay::{RelayConfig, RelayShard, round};

    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;
    // Nothing is produced, so the broker is never reached.
    let producer = Producer::new(ProducerConfig::new("127.0.0.1:9")).unwrap();
    let metrics = RelayMetrics::default();
    for fence in ["moving", "gone"] {
        let city = new_city(region, shard, "not-owned").await;
        // Before the row exists, so the stack's relay never owns it either.
        sqlx::query("UPDATE city_fence SET state = $2 WHERE city = $1")
            .bind(&city)
            .bind(fence)
            .execute(&primary)
            .await
            .unwrap();
        sqlx::query("INSERT INTO outbox (city, seq, event) VALUES ($1, $2, '{}')")
            .bind(&city)
            .bind(ids.next().await.unwrap().0)
            .execute(&primary)
            .await
            .unwrap();
        let relay_shard = RelayShard {
            name: shard.name.clone(),
            primary: primary.clone(),
        };
        let mut config = RelayConfig::new("unused.events");
        config.cities = Some(vec![city.clone()]);
        let sent = round(&relay_shard, &config, &producer, &metrics)
            .await
            .unwrap();
        assert_eq!(sent, 0, "fence {fence}");
        assert_eq!(count(&primary, OUTBOX, &city).await, 1, "fence {fence}");
    }
}
