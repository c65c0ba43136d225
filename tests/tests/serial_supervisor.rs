//! Destructive tests of the supervisor: kills, restarts, crashes of the
//! supervisor itself. deploy/test runs tests named `serial_` one at a time;
//! those that stop the whole stack bring up a small one of their own.

use std::time::Duration;

use cityboard_test_support::eventually;
use cityboard_tests::{
    Health, OwnStack, Phase, cityboard, component_processes, output_text, pg, shared_home, state,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn sigkill(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL");
}

/// Waits until `name` is healthy again with more restarts than `before`.
async fn restarted(home: &std::path::Path, name: &str, before: u32) -> u32 {
    eventually(
        &format!("{name} restarted"),
        Duration::from_secs(60),
        || async {
            let st = state(home);
            let c = st.component(name)?;
            (c.health == Health::Healthy && c.restarts > before).then_some(c.restarts)
        },
    )
    .await
}

#[tokio::test]
async fn serial_a_killed_replica_is_restarted_counted_and_catches_up() {
    let home = shared_home();
    let st = state(&home);
    let region = &st.regions[0];
    let shard = &region.shards[0];
    let name = format!("{}/{}/replica-1", region.name, shard.name);
    let replica = st.component(&name).expect("replica component").clone();

    sigkill(replica.process.expect("replica runs").pid);
    // Written while the replica is down: it must arrive once it is back.
    let primary = pg(&shard.primary_url).await;
    let marker = format!("while-down-{}", std::process::id());
    sqlx::query("CREATE TABLE IF NOT EXISTS stack_probe (marker text PRIMARY KEY)")
        .execute(&primary)
        .await
        .unwrap();
    sqlx::query("INSERT INTO stack_probe VALUES ($1)")
        .bind(&marker)
        .execute(&primary)
        .await
        .unwrap();

    let restarts = restarted(&home, &name, replica.restarts).await;
    assert_eq!(restarts, replica.restarts + 1);
    let url = shard.replica_urls[0].clone();
    eventually(
        "the row on the restarted replica",
        Duration::from_secs(60),
        || async {
            let replica = sqlx::PgPool::connect(&url).await.ok()?;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM stack_probe WHERE marker = $1")
                .bind(&marker)
                .fetch_one(&replica)
                .await
                .ok()?;
            (n == 1).then_some(())
        },
    )
    .await;
    let out = cityboard(&home, &["status"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("lag"), "{}", output_text(&out));
}

#[tokio::test]
async fn serial_the_broker_keeps_acknowledged_messages_across_a_kill() {
    let home = shared_home();
    let st = state(&home);
    let topic = format!("{}.events", st.regions[0].name);
    let key = format!("probe-{}", std::process::id());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &st.broker)
        .set("acks", "all")
        .create()
        .unwrap();
    producer
        .send(BaseRecord::to(&topic).key(&key).payload("kept"))
        .map_err(|(e, _)| e)
        .expect("send");
    producer
        .flush(Duration::from_secs(30))
        .expect("acknowledged");
    drop(producer);

    let broker = st.component("broker").expect("broker").clone();
    sigkill(broker.process.expect("broker runs").pid);
    restarted(&home, "broker", broker.restarts).await;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &st.broker)
        .set("group.id", format!("probe-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    // The topic holds every event the shared stack's other tests caused:
    // each check reads all that has arrived (not one message per check),
    // so the wait does not grow with the topic.
    eventually(
        "the message after the broker restart",
        Duration::from_secs(60),
        || {
            let mut found = false;
            // Bounded, so a stream of errors cannot keep the check going.
            for _ in 0..100_000 {
                match consumer.poll(Duration::from_millis(200)) {
                    None => break,
                    Some(Ok(m))
                        if m.key() == Some(key.as_bytes())
                            && m.payload() == Some(b"kept".as_slice()) =>
                    {
                        found = true;
                        break;
                    }
                    Some(_) => {}
                }
            }
            async move { found.then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn serial_up_after_a_supervisor_crash_adopts_what_runs() {
    let stack = OwnStack::start("supervisor-crash", 18200);
    let before = stack.state();
    let old_supervisor = before.supervisor.expect("supervisor");
    let processes = component_processes(&before);
    assert!(processes.len() >= 5, "{processes:?}");

    sigkill(old_supervisor.pid);
    eventually("the supervisor gone", Duration::from_secs(10), || async {
        (!old_supervisor.is_alive()).then_some(())
    })
    .await;
    let out = stack.up();
    assert!(out.status.success(), "{}", output_text(&out));

    let after = stack.state();
    assert_eq!(after.phase, Phase::Running);
    assert_ne!(after.supervisor, Some(old_supervisor));
    // The same processes, adopted: none duplicated, none restarted.
    assert_eq!(component_processes(&after), processes);
    for (name, p) in &processes {
        assert!(p.is_alive(), "{name} died");
    }
    let out = cityboard(&stack.home, &["status"]);
    assert!(out.status.success(), "{}", output_text(&out));
}

#[tokio::test]
async fn serial_down_stops_exactly_the_stack_and_keeps_its_data() {
    let stack = OwnStack::start("down-keeps-data", 18400);
    let st = stack.state();
    let primary_url = st.regions[0].shards[0].primary_url.clone();
    let db = pg(&primary_url).await;
    sqlx::query("CREATE TABLE kept (v int)")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES (42)")
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    // A process that is not the stack's must survive `down`.
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();

    let processes = component_processes(&st);
    let supervisor = st.supervisor.expect("supervisor");
    let out = cityboard(&stack.home, &["down"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!supervisor.is_alive());
    for (name, p) in &processes {
        assert!(!p.is_alive(), "{name} still runs after down");
    }
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "down killed a process it did not start"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();

    let out = stack.up();
    assert!(out.status.success(), "{}", output_text(&out));
    let db = pg(&primary_url).await;
    let v: i32 = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(v, 42);
    db.close().await;

    let out = cityboard(&stack.home, &["down", "--purge"]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(!stack.home.join("data").exists(), "--purge kept the data");
}
