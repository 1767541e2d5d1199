//! While an instance is behind, the others' publishers are not stopped
//! and restarted all at once: it grants each instance one publish per
//! envelope of theirs it took from Redis, and their publishes go on one at
//! a time, in order, as it takes them. Nothing is refused or lost, and the
//! busy instance's queues stay within its budget (the budget's own tests
//! cover that; the unit tests of `pressure` cover the order and the one
//! publish per grant).

use crate::common;

use std::time::Duration;

use common::{config, instance_with, instance_with_options, redis_conn, subscribe, wait_numsub};
use ori::testing::Received;
use ori::{Topic, WsOptions};
use ori_redis::testing::RedisServer;

/// Sixteen of the messages below: the busy instance is behind as soon as
/// its reader pauses.
const BUDGET: usize = 64 << 10;
const PUBLISHERS: u64 = 8;
const PER_PUBLISHER: u64 = 250;
/// The reader pauses this long after every this many messages.
const PAUSE: Duration = Duration::from_millis(50);
const READ_BETWEEN_PAUSES: u64 = 100;

fn payload(publisher: u64, n: u64) -> String {
    format!("{publisher:02}:{n:06}:{}", "x".repeat(4086))
}

fn parse(text: &str) -> (u64, u64) {
    (
        text[..2].parse().expect("a publisher"),
        text[3..9].parse().expect("a number"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_go_at_a_busy_instances_pace_by_its_grants() {
    let redis = RedisServer::start();
    let options = WsOptions::new()
        .outbound_budget(BUDGET)
        .outbound_queue_limit(64 << 20)
        .shed_slowest_after(Duration::from_secs(600));
    // Publishes wait for A's reader's pauses: the timeout is far above
    // them, so that a loaded machine does not turn a wait into a refusal.
    let patient = || config(&redis).publish_timeout(Duration::from_secs(20));
    let a = instance_with_options(patient(), options).await;
    let b = instance_with(patient()).await;
    let mut reader = a.server.connect().await;
    subscribe(&mut reader, "t").await;
    let channel = a.provider.topic_channel(&Topic::new("t").unwrap());
    wait_numsub(&mut redis_conn(&redis).await, &channel, 1).await;

    // A reader that keeps up, but in bursts.
    let total = PUBLISHERS * PER_PUBLISHER;
    let read = tokio::spawn(async move {
        let mut next = [0u64; PUBLISHERS as usize];
        let mut got = 0;
        let mut seen = 0u64;
        while got < total {
            seen += 1;
            if seen % READ_BETWEEN_PAUSES == 0 {
                tokio::time::sleep(PAUSE).await;
            }
            match reader.recv_within(Duration::from_secs(20)).await {
                Some(Received::Text(t)) if t == "steady" => {}
                Some(Received::Text(t)) => {
                    got += 1;
                    let (p, n) = parse(&t);
                    assert_eq!(n, next[p as usize], "gap or reordering from publisher {p}");
                    next[p as usize] += 1;
                }
                other => panic!("reader got {other:?} after {got}"),
            }
        }
        reader
    });
    // One more publisher on B, of unnumbered messages, from the start until
    // the end of the test.
    let emitter = b.socket().clone();
    let steady = tokio::spawn(async move {
        for _ in 0..1_000_000 {
            emitter.publish("t", "steady").await.unwrap();
        }
    });
    // Publishers on B as fast as they go; every publish is accepted.
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let emitter = b.socket().clone();
            tokio::spawn(async move {
                for n in 0..PER_PUBLISHER {
                    if let Err(e) = emitter.publish("t", payload(p, n)).await {
                        panic!("publisher {p} refused at {n}: {e:?}");
                    }
                }
            })
        })
        .collect();
    for p in publishing {
        p.await.unwrap();
    }
    let mut reader = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the reader got everything B published")
        .unwrap();

    // A fell behind and granted; B's publishes waited for grants.
    let (a_stats, b_stats) = (a.provider.stats(), b.provider.stats());
    assert!(b_stats.pressure_waits >= 1, "{b_stats:?}");
    assert!(b_stats.pressure_grants >= 1, "A never granted: {b_stats:?}");
    assert_eq!(a_stats.disconnects, 0, "Redis dropped A");

    // Once A's reader keeps up, A says it caught up even though B's
    // envelopes keep coming (what they would earn in grants must not keep
    // B waiting for A).
    let keep_reading = tokio::spawn(async move {
        while let Some(Received::Text(_)) = reader.recv_within(Duration::from_secs(5)).await {}
    });
    common::eventually("B sees that A caught up", || {
        let behind = b.provider.stats().instances_behind;
        async move { behind == 0 }
    })
    .await;
    assert!(
        !steady.is_finished(),
        "B stopped publishing before A caught up"
    );
    steady.abort();
    keep_reading.abort();
    a.server.stop().await;
    b.server.stop().await;
}
