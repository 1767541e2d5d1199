//! Many rapid join/leave cycles on a few topics, from many tasks at once:
//! the hooks interleave with subscriptions in flight, and the channel set
//! in Redis still converges to exactly the topics that have subscribers.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use ori::core::Outbox;
use ori::{Broker, SocketId, Topic};
use ori_redis::testing::RedisServer;
use ori_redis::RedisProvider;

const TASKS: usize = 8;
const CYCLES: usize = 400;
const TOPICS: usize = 6;

fn topic(i: usize) -> Topic {
    Topic::new(&format!("t{i}")).unwrap()
}

async fn converged(r: &redis::aio::MultiplexedConnection, want: &BTreeSet<String>) {
    let want = want.clone();
    eventually(&format!("PUBSUB CHANNELS ws:t:* == {want:?}"), || {
        let mut r = r.clone();
        let want = want.clone();
        async move { channels(&mut r, "ws:t:*").await == want }
    })
    .await;
    // ...and stays there: nothing is still in flight.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut r = r.clone();
    assert_eq!(channels(&mut r, "ws:t:*").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_joins_and_leaves_converge_to_the_topics_with_subscribers() {
    init_logs();
    let redis = RedisServer::start();
    let redis_provider = RedisProvider::new(config(&redis));
    let provider = Broker::new(redis_provider.clone());
    provider.start().await.unwrap();
    let r = redis_conn(&redis).await;

    let sockets: Vec<SocketId> = (0..TASKS)
        .map(|_| {
            let outbox = Arc::new(Outbox::new(SocketId::new(), 1 << 20));
            let id = *outbox.id();
            provider.register(outbox, 64);
            id
        })
        .collect();

    // Every task churns every topic, yielding at random points so hooks of
    // different tasks interleave with the reconciling task's round trips.
    let mut tasks = Vec::new();
    for (n, id) in sockets.iter().copied().enumerate() {
        let p = provider.clone();
        tasks.push(tokio::spawn(async move {
            for c in 0..CYCLES {
                let t = topic((n + c) % TOPICS);
                p.subscribe(&id, &t).unwrap();
                if c % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                p.unsubscribe(&id, &t).unwrap();
                if c % 7 == n % 7 {
                    tokio::task::yield_now().await;
                }
            }
            // Leave a known final state: task n stays in topic n % 3.
            p.subscribe(&id, &topic(n % 3)).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want: BTreeSet<String> = (0..3).map(|i| format!("ws:t:t{i}")).collect();
    converged(&r, &want).await;
    for i in 0..TOPICS {
        let expected = (0..TASKS).filter(|n| i < 3 && n % 3 == i).count();
        assert_eq!(provider.subscriber_count(&topic(i)), expected);
    }

    // Second round from plain threads (no async yields at all), ending with
    // every topic empty; then every socket gone.
    let threads: Vec<_> = sockets
        .iter()
        .copied()
        .enumerate()
        .map(|(n, id)| {
            let p = provider.clone();
            std::thread::spawn(move || {
                for c in 0..CYCLES {
                    let t = topic((n * 5 + c) % TOPICS);
                    p.subscribe(&id, &t).unwrap();
                    p.unsubscribe(&id, &t).unwrap();
                }
                p.unsubscribe(&id, &topic(n % 3)).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    converged(&r, &BTreeSet::new()).await;

    let socket_channels: BTreeSet<String> = sockets
        .iter()
        .map(|s| redis_provider.socket_channel(s))
        .collect();
    let mut rr = r.clone();
    eventually("every socket channel", || {
        let mut rr = rr.clone();
        let want = socket_channels.clone();
        async move { channels(&mut rr, "ws:s:*").await == want }
    })
    .await;
    for s in &sockets {
        provider.disconnect(s);
    }
    eventually("no socket channel", || {
        let mut rr = rr.clone();
        async move { channels(&mut rr, "ws:s:*").await.is_empty() }
    })
    .await;
    assert_eq!(numsub(&mut rr, "ws:b").await, 1);
    provider.stop().await;
    wait_numsub(&mut rr, "ws:b", 0).await;
}
