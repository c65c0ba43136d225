//! An idle consumer dozes (its fetches paused, `bus::doze`) and still reads
//! every message: a producer's wake brings it back, and when the wake is
//! lost, the next probe does. The writer runs in process against the
//! stack's broker, shards and Redis, on topics and cities of its own.

mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::time::Duration;

use cityboard_test_support::eventually;
use common::*;
use pipeline_common::*;
use region_core::bus::doze::DozeConfig;
use region_core::bus::{Producer, ProducerConfig};
use region_core::model::Id;
use region_core::roles::writer::metrics::WriterMetrics;

const LIMIT: Duration = Duration::from_secs(30);

async fn dozing(metrics: &WriterMetrics) {
    eventually("the idle writer dozes", LIMIT, || async {
        (metrics.dozing.get() == 1).then_some(())
    })
    .await;
}

/// The roles' doze settings but for `probe_every`, which picks what may
/// wake it besides a wake.
fn doze(wake: Option<String>, probe_every: Duration) -> DozeConfig {
    DozeConfig {
        probe_every,
        ..DozeConfig::new(wake.as_deref())
    }
}

#[tokio::test]
async fn a_dozing_writer_is_woken_by_the_producer_and_dozes_again() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "doze-wake").await;
    let topics = own_topics("doze-wake", 2).await;
    // No probe within the test: only the wake can bring the command in.
    let writer = RunningWriter::start(region, &topics, "w", |c| {
        c.doze = Some(doze(Some(store_url()), Duration::from_secs(3600)));
    })
    .await;
    let producer =
        Producer::new(ProducerConfig::new(&broker()).waking(&store_url())).expect("a producer");
    let ids = ids(region).await;
    // Each wake below finds the writer asleep and brings in its command.
    // (The first command of a partition that never had one makes
    // librdkafka look up its starting offset after the resume, which took
    // about a second here: still within the stay awake a wake buys.)
    for n in 1..=3 {
        dozing(&writer.metrics).await;
        let c = create_command(&ids, &city, Id(42), &format!("woken {n}")).await;
        send(&producer, &topics.commands, &c).await;
        eventually("the post of the woken writer", LIMIT, || async {
            (posts_in(shard, &city).await == n).then_some(())
        })
        .await;
    }
    writer.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_wake_costs_a_probe_not_a_message() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "doze-probe").await;
    let topics = own_topics("doze-probe", 2).await;
    // No wake channel at all: the probe alone must find the command.
    let writer = RunningWriter::start(region, &topics, "w", |c| {
        c.doze = Some(doze(None, Duration::from_millis(500)));
    })
    .await;
    dozing(&writer.metrics).await;
    let ids = ids(region).await;
    // The tests' producer announces nothing.
    let c = create_command(&ids, &city, Id(42), "probed").await;
    send(&producer(), &topics.commands, &c).await;
    eventually("the post a probe found", LIMIT, || async {
        (posts_in(shard, &city).await == 1).then_some(())
    })
    .await;
    writer.stop().await.unwrap();
}
