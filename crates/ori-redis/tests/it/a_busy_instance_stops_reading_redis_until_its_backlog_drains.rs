//! An instance whose readers fall behind stops reading its Redis
//! subscription instead of queueing what arrives, and says so: the other
//! instances' publishes wait for it (then fail with `Overloaded`), and
//! nothing they accepted is lost. With that waiting turned off, its
//! outbound queues still stay within its budget while another instance
//! publishes as fast as it can: the backlog waits in Redis (which drops the
//! subscriber past its `client-output-buffer-limit pubsub`), and the
//! instance reconnects, counts the outage and delivers again once its
//! readers catch up.

use crate::common;

use std::time::Duration;

use common::{
    config, eventually, instance, instance_with, instance_with_options, numsub, redis_conn,
    subscribe, wait_numsub,
};
use ori::testing::Received;
use ori::{PublishError, Topic, WsOptions};
use ori_redis::testing::RedisServer;

const BUDGET: usize = 64 << 10;
/// Published at most: about 40 MiB, far more than the socket buffers
/// between Redis and the instance, and the instance and its reader, hold.
const MAX_MESSAGES: u64 = 40_000;

fn payload(n: u64) -> String {
    format!("{n:08}:{}", "x".repeat(1015))
}

fn seq_of(text: &str) -> u64 {
    text[..8].parse().expect("a numbered message")
}

fn busy_options() -> WsOptions {
    WsOptions::new()
        .outbound_budget(BUDGET)
        .outbound_queue_limit(64 << 20)
        .shed_slowest_after(Duration::from_secs(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_wait_for_a_busy_instance_and_nothing_they_accepted_is_lost() {
    let redis = RedisServer::start();
    let a = instance_with_options(config(&redis), busy_options()).await;
    let b = instance(&redis).await;
    let mut reader = a.server.connect().await;
    subscribe(&mut reader, "t").await;
    let channel = a.provider.topic_channel(&Topic::new("t").unwrap());
    let mut inspect = redis_conn(&redis).await;
    wait_numsub(&mut inspect, &channel, 1).await;
    // From here on the reader reads nothing until B gives up.

    let mut published = 0;
    let refused = loop {
        assert!(published < MAX_MESSAGES, "B was never held back");
        match b.socket().publish("t", payload(published)).await {
            Ok(()) => published += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refused, PublishError::Overloaded { .. }),
        "{refused:?}"
    );
    assert!(a.provider.stats().disconnects == 0, "Redis dropped A");
    assert!(b.provider.stats().pressure_waits >= 1);

    // Everything B accepted arrives, in order, with no gap; once A caught
    // up, B publishes again.
    let drain = tokio::spawn(async move {
        for next in 0..published {
            match reader.recv_within(Duration::from_secs(20)).await {
                Some(Received::Text(t)) => assert_eq!(seq_of(&t), next, "gap or reordering"),
                other => panic!("reader got {other:?} at {next}"),
            }
        }
        reader
    });
    b.socket().publish("t", "after").await.unwrap();
    let mut reader = tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("the reader got everything B accepted")
        .unwrap();
    assert_eq!(
        reader.recv_within(Duration::from_secs(10)).await,
        Some(Received::Text("after".into()))
    );
    assert_eq!(a.provider.stats().disconnects, 0);
    drop(reader);
    a.server.stop().await;
    b.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_stops_reading_redis_until_its_backlog_drains() {
    let redis = RedisServer::start_with(&["--client-output-buffer-limit", "pubsub 8mb 0 0"]);
    let a = instance_with_options(config(&redis), busy_options()).await;
    // B does not wait for A.
    let b = instance_with(config(&redis).cross_instance_backpressure(false)).await;
    let mut reader = a.server.connect().await;
    subscribe(&mut reader, "t").await;
    let channel = a.provider.topic_channel(&Topic::new("t").unwrap());
    let mut inspect = redis_conn(&redis).await;
    wait_numsub(&mut inspect, &channel, 1).await;
    // From here on the reader reads nothing until the flood is over.

    let budget = a
        .server
        .app()
        .socket()
        .broker()
        .unwrap()
        .hub()
        .budget()
        .clone();
    let one_fan_out = payload(0).len() + 4;
    let mut published = 0;
    let mut dropped_by_redis = false;
    while published < MAX_MESSAGES {
        b.socket().publish("t", payload(published)).await.unwrap();
        published += 1;
        assert!(
            budget.used() <= BUDGET + one_fan_out,
            "A queued {} bytes, past its budget",
            budget.used()
        );
        if published % 500 == 0 && numsub(&mut inspect, &channel).await == 0 {
            dropped_by_redis = true;
            break;
        }
    }
    assert!(
        dropped_by_redis,
        "Redis never dropped A's subscriber after {published} messages: A kept reading"
    );
    assert!(budget.waits() >= 1, "A's reader never waited for room");

    // The reader catches up: what it gets is in order (the messages Redis
    // dropped with the subscriber are missing), A notices the outage,
    // reconnects and resubscribes, and new messages arrive again.
    let drain = tokio::spawn(async move {
        let mut last = None;
        loop {
            match reader.recv_within(Duration::from_secs(20)).await {
                Some(Received::Text(t)) if t == "after" => return (reader, last),
                Some(Received::Text(t)) => {
                    let n = seq_of(&t);
                    assert!(last.is_none_or(|l| n > l), "reordered: {n} after {last:?}");
                    last = Some(n);
                }
                other => panic!("reader got {other:?} after {last:?}"),
            }
        }
    });
    eventually("A reconnected after Redis dropped it", || {
        let stats = a.provider.stats();
        async move { stats.disconnects >= 1 && stats.connected }
    })
    .await;
    wait_numsub(&mut inspect, &channel, 1).await;
    b.socket().publish("t", "after").await.unwrap();
    let (reader, last) = tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .expect("the reader drained and got the message published after the outage")
        .unwrap();
    assert!(last.is_some(), "the reader got none of the flood");
    eventually("A's queues drained", || {
        let used = budget.used();
        async move { used == 0 }
    })
    .await;
    drop(reader);
    a.server.stop().await;
    b.server.stop().await;
}
