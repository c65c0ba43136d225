mod common;
#[path = "common/pipeline.rs"]
mod pipeline_common;

use std::time::Duration;

use common::*;
use region_core::apply::fold::Outcome;
use region_core::apply::{ApplyConfig, CityBatch, FenceAction, apply};
use region_core::model::{CommandKind, Id};

#[tokio::test]
async fn a_replayed_batch_changes_nothing_and_adds_no_outbox_row() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "replay").await;
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;
    let create = create_command(&ids, &city, Id(42), "bike").await;
    let post_id = create.kind.post_id().unwrap();
    let update = region_core::model::Command {
        id: ids.next().await.unwrap(),
        kind: CommandKind::Update {
            post_id,
            user_id: Id(42),
            post: sample_post("red bike"),
        },
        ..create.clone()
    };
    let batch = [CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![create.clone(), update.clone()],
    }];
    let target = target(shard, primary.clone());
    // The stack's relay empties the outbox within moments, so what the
    // outbox received is counted where it ends up: the region's events.
    let events = pipeline_common::Tail::new(&format!("{}.events", region.name)).await;

    let first = apply(&target, &batch, &ids, ApplyConfig::default())
        .await
        .unwrap();
    assert!(first.refused.is_empty());
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.token(update.id).unwrap().version, 2);

    let again = apply(&target, &batch, &ids, ApplyConfig::default())
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert!(again.results.iter().all(|r| !r.fresh));

    // A marker after the replay: the relay sends a shard's outbox in
    // order, so once the marker's event is out, anything the replay had
    // added would be out too.
    let marker = create_command(&ids, &city, Id(42), "marker").await;
    let marker_post = marker.kind.post_id().unwrap().to_string();
    let batch = [CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![marker],
    }];
    apply(&target, &batch, &ids, ApplyConfig::default())
        .await
        .unwrap();
    let mut of_city = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !of_city
        .iter()
        .any(|e: &pipeline_common::Read| e.header("cityboard-post-id") == Some(&marker_post))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the marker's event never reached {}: {of_city:#?}",
            events.topic
        );
        of_city.extend(
            events
                .poll(Duration::from_millis(500))
                .await
                .into_iter()
                .filter(|e| e.key == city),
        );
    }
    let post = post_id.to_string();
    let versions: Vec<_> = of_city
        .iter()
        .filter(|e| e.header("cityboard-post-id") == Some(&post))
        .map(|e| e.header("cityboard-version").unwrap_or("?").to_string())
        .collect();
    assert_eq!(versions, ["1", "2"], "the replay added outbox rows");
    let (version, title): (i64, String) =
        sqlx::query_as("SELECT version, title FROM posts WHERE city = $1 AND id = $2")
            .bind(&city)
            .bind(post_id)
            .fetch_one(&primary)
            .await
            .unwrap();
    assert_eq!((version, title.as_str()), (2, "red bike"));
}

#[tokio::test]
async fn someone_elses_edit_is_recorded_as_rejected() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "reject").await;
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;
    let create = create_command(&ids, &city, Id(42), "lamp").await;
    let delete = region_core::model::Command {
        id: ids.next().await.unwrap(),
        kind: CommandKind::Delete {
            post_id: create.kind.post_id().unwrap(),
            user_id: Id(43),
        },
        ..create.clone()
    };
    let batch = [CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![create, delete.clone()],
    }];
    let applied = apply(
        &target(shard, primary.clone()),
        &batch,
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    let r = applied
        .results
        .iter()
        .find(|r| r.command_id == delete.id)
        .unwrap();
    assert!(matches!(r.outcome, Outcome::Rejected(_)));
    let outcome: String = sqlx::query_scalar(
        "SELECT outcome FROM applied_commands WHERE city = $1 AND command_id = $2",
    )
    .bind(&city)
    .bind(delete.id)
    .fetch_one(&primary)
    .await
    .unwrap();
    assert!(outcome.starts_with("rejected"), "{outcome}");
}

#[tokio::test]
async fn a_write_routed_with_the_old_epoch_is_refused_even_while_in_flight() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "fence").await;
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;

    // A cutover in progress: it holds the fence row while it switches the city.
    let mut cutover = primary.begin().await.unwrap();
    sqlx::query("UPDATE city_fence SET epoch = 2, state = 'gone' WHERE city = $1")
        .bind(&city)
        .execute(&mut *cutover)
        .await
        .unwrap();

    // A writer whose map still says epoch 1 starts its batch meanwhile.
    let create = create_command(&ids, &city, Id(42), "sofa").await;
    let batch = vec![CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![create.clone()],
    }];
    let writer = {
        let target = target(shard, primary.clone());
        let ids = ids.clone();
        tokio::spawn(async move { apply(&target, &batch, &ids, ApplyConfig::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the writer must wait for the fence row"
    );
    cutover.commit().await.unwrap();

    let applied = writer.await.unwrap().unwrap();
    assert_eq!(applied.refused.len(), 1);
    let refusal = &applied.refused[0];
    assert_eq!(refusal.action, FenceAction::Reroute);
    assert!(refusal.to_string().contains("re-route"), "{refusal}");
    assert_eq!(refusal.commands, vec![create.id]);
    assert!(applied.results.is_empty());
    for table in ["posts", "outbox", "applied_commands"] {
        let sql = format!("SELECT count(*) FROM {table} WHERE city = $1");
        assert_eq!(count(&primary, &sql, &city).await, 0, "{table}");
    }
}

#[tokio::test]
async fn a_frozen_city_is_held_not_rerouted() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "frozen").await;
    let primary = pool(&shard.primary_url).await;
    sqlx::query("UPDATE city_fence SET state = 'frozen' WHERE city = $1")
        .bind(&city)
        .execute(&primary)
        .await
        .unwrap();
    let ids = ids(region).await;
    let batch = [CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![create_command(&ids, &city, Id(1), "desk").await],
    }];
    let applied = apply(
        &target(shard, primary),
        &batch,
        &ids,
        ApplyConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(applied.refused[0].action, FenceAction::Hold);
}

/// The freeze's deadline, judged by the shard's clock: past it the city
/// takes writes again (a cutover that never came back must not hold a city
/// for ever); before it, the commands are held.
#[tokio::test]
async fn a_frozen_city_past_its_deadline_is_applied_before_it_held() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;
    for (deadline, held) in [("-1 second", false), ("1 hour", true)] {
        let city = new_city(region, shard, "deadline").await;
        sqlx::query(
            "UPDATE city_fence SET state = 'frozen',
                    frozen_until = clock_timestamp() + $2::interval
             WHERE city = $1",
        )
        .bind(&city)
        .bind(deadline)
        .execute(&primary)
        .await
        .unwrap();
        let create = create_command(&ids, &city, Id(1), "lamp").await;
        let batch = [CityBatch {
            city: city.clone(),
            epoch: 1,
            commands: vec![create.clone()],
        }];
        let applied = apply(
            &target(shard, primary.clone()),
            &batch,
            &ids,
            ApplyConfig::default(),
        )
        .await
        .unwrap();
        let posts = count(
            &primary,
            "SELECT count(*) FROM posts WHERE city = $1",
            &city,
        )
        .await;
        if held {
            assert_eq!(applied.refused.len(), 1, "deadline {deadline}");
            assert_eq!(applied.refused[0].action, FenceAction::Hold);
            assert!(applied.results.is_empty());
            assert_eq!(posts, 0, "deadline {deadline}");
        } else {
            assert!(
                applied.refused.is_empty(),
                "deadline {deadline}: {applied:?}"
            );
            assert_eq!(applied.results.len(), 1);
            assert_eq!(applied.results[0].command_id, create.id);
            assert!(matches!(
                applied.results[0].outcome,
                Outcome::Applied { version: Some(1) }
            ));
            assert_eq!(posts, 1, "deadline {deadline}");
        }
    }
}

/// The deadline is judged on the fence row version apply ends up holding: a
/// flip that took the row before the deadline and commits after it, while
/// apply waits for the row, sends the commands away (the city is gone
/// here), though by then the deadline has passed.
#[tokio::test]
async fn a_flip_holding_the_fence_wins_over_a_deadline_passing_meanwhile() {
    let state = prepared().await;
    let region = state.region();
    let shard = &region.shards[0];
    let city = new_city(region, shard, "flipwins").await;
    let primary = pool(&shard.primary_url).await;
    let ids = ids(region).await;
    sqlx::query(
        "UPDATE city_fence SET state = 'frozen',
                frozen_until = clock_timestamp() + interval '1 second'
         WHERE city = $1",
    )
    .bind(&city)
    .execute(&primary)
    .await
    .unwrap();

    // The flip as shard-tool makes it: the row locked first, then the
    // guarded UPDATE, before the deadline.
    let mut flip = primary.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM city_fence WHERE city = $1 FOR UPDATE")
        .bind(&city)
        .execute(&mut *flip)
        .await
        .unwrap();
    let flipped = sqlx::query(
        "UPDATE city_fence SET epoch = epoch + 1, state = 'gone'
         WHERE city = $1 AND state = 'frozen' AND frozen_until > clock_timestamp()",
    )
    .bind(&city)
    .execute(&mut *flip)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(flipped, 1, "the flip came before the deadline");

    let create = create_command(&ids, &city, Id(42), "rug").await;
    let batch = vec![CityBatch {
        city: city.clone(),
        epoch: 1,
        commands: vec![create.clone()],
    }];
    let writer = {
        let target = target(shard, primary.clone());
        let ids = ids.clone();
        tokio::spawn(async move { apply(&target, &batch, &ids, ApplyConfig::default()).await })
    };
    // The deadline passes while the writer waits for the row.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!writer.is_finished(), "the writer waits for the fence row");
    flip.commit().await.unwrap();

    let applied = writer.await.unwrap().unwrap();
    assert_eq!(applied.refused.len(), 1, "{applied:?}");
    assert_eq!(applied.refused[0].action, FenceAction::Reroute);
    assert!(applied.results.is_empty());
    assert_eq!(
        count(
            &primary,
            "SELECT count(*) FROM posts WHERE city = $1",
            &city
        )
        .await,
        0
    );
}
