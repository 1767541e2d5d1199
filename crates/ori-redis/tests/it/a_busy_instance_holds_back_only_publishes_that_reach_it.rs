//! A busy instance holds back only the publishes that would reach it: its
//! "behind" comes with a filter of the channels it holds, and the others'
//! publishes to any other topic go on at once, whatever the busy one's
//! backlog. Those to its topics (and broadcasts) still wait for it.

use crate::common;

use std::time::Duration;

use common::{config, eventually, expect, instance, instance_with_options, redis_conn, subscribe};
use common::{text, wait_numsub};
use ori::{PublishError, Topic, WsOptions};
use ori_redis::testing::RedisServer;

/// Attempts at a publish elsewhere that did not wait (the filter comes
/// a moment after "behind").
const ATTEMPTS: usize = 50;
const ELSEWHERE: usize = 20;
/// Published to A's topic at most: about 160 MiB, far more than the
/// socket buffers between Redis, A and its reader hold.
const MAX_MESSAGES: usize = 40_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_instance_holds_back_only_publishes_that_reach_it() {
    let redis = RedisServer::start();
    let busy = WsOptions::new()
        .outbound_budget(64 << 10)
        .outbound_queue_limit(64 << 20)
        .shed_slowest_after(Duration::from_secs(600));
    let a = instance_with_options(config(&redis), busy).await;
    let b = instance(&redis).await;
    // A's reader of "busy" reads nothing from here on; B's reader of
    // "elsewhere" keeps up.
    let mut stalled = a.server.connect().await;
    subscribe(&mut stalled, "busy").await;
    let mut reader = b.server.connect().await;
    subscribe(&mut reader, "elsewhere").await;
    let mut inspect = redis_conn(&redis).await;
    for (instance, topic) in [(&a, "busy"), (&b, "elsewhere")] {
        let channel = instance.provider.topic_channel(&Topic::new(topic).unwrap());
        wait_numsub(&mut inspect, &channel, 1).await;
    }

    // B floods "busy" until A is behind (its publishes then wait, and
    // fail, since A takes nothing and so grants nothing).
    let emitter = b.socket().clone();
    let flood = tokio::spawn(async move {
        let big = "x".repeat(4096);
        for _ in 0..1_000_000 {
            let _ = emitter.publish("busy", big.as_str()).await;
        }
    });
    eventually("B sees A behind", || {
        let behind = b.provider.stats().instances_behind;
        async move { behind == 1 }
    })
    .await;
    flood.abort();
    let _ = flood.await;

    // Publishes to "elsewhere" go on without waiting once A's filter is
    // in (the attempts before it may wait for it).
    let waits = || b.provider.stats().pressure_waits;
    let mut delivered = 0;
    let mut clear = false;
    for _ in 0..ATTEMPTS {
        let before = waits();
        let sent = b.socket().publish("elsewhere", "probe").await;
        if sent.is_ok() {
            expect(&mut reader, text("probe")).await;
            delivered += 1;
        }
        if sent.is_ok() && waits() == before {
            clear = true;
            break;
        }
    }
    assert!(
        clear,
        "every publish to a topic A does not hold waited for A: {:?}",
        b.provider.stats()
    );
    assert!(delivered >= 1);
    let before = waits();
    for n in 0..ELSEWHERE {
        b.socket()
            .publish("elsewhere", format!("m{n}"))
            .await
            .unwrap_or_else(|e| panic!("publish {n} elsewhere: {e:?}"));
    }
    for n in 0..ELSEWHERE {
        expect(&mut reader, text(&format!("m{n}"))).await;
    }
    assert_eq!(waits(), before, "a publish elsewhere waited for A");
    assert_eq!(
        b.provider.stats().instances_behind,
        1,
        "A caught up meanwhile"
    );

    // Publishes to A's topic, and broadcasts, still wait for A, and give up
    // at the publish timeout once A takes nothing more (until the socket
    // buffers between A and its reader are full, A still takes, and grants,
    // some; and B may hold grants for flood publishes cut short).
    let big = "x".repeat(4096);
    let mut accepted = 0;
    let refused = loop {
        assert!(accepted < MAX_MESSAGES, "B publishes to A's topic freely");
        match b.socket().publish("busy", big.as_str()).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refused, PublishError::Overloaded { .. }),
        "{refused:?}"
    );
    let refused = b.socket().broadcast("held").await;
    assert!(
        matches!(refused, Err(PublishError::Overloaded { .. })),
        "broadcast: {refused:?}"
    );
    assert!(waits() >= before + 2);
    drop(stalled);
    a.server.stop().await;
    b.server.stop().await;
}
