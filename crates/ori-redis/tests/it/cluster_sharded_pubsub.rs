//! Redis Cluster mode (feature `cluster`): against a local 3-primary
//! cluster, each topic's channel is `SSUBSCRIBE`d on the one shard that
//! owns its slot (so the channels spread over the shards and no other node
//! sees their messages), and publish, send and broadcast cross instances
//! exactly as with one server.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use ori::testing::Received;
use ori::SocketId;
use ori_redis::testing::RedisCluster;
use ori_redis::RedisConfig;
use redis::aio::MultiplexedConnection;

const TOPICS: usize = 9;

fn cluster_config(cluster: &RedisCluster) -> RedisConfig {
    RedisConfig::cluster(cluster.urls())
        .connect_timeout(Duration::from_secs(2))
        .publish_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .health_check_interval(Duration::from_millis(500))
}

/// `PUBSUB SHARDNUMSUB channel` on one node.
async fn shardnumsub(conn: &mut MultiplexedConnection, channel: &str) -> usize {
    let answer: Vec<(String, usize)> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    answer[0].1
}

/// For each channel, the subscriber count on every node.
async fn counts(
    nodes: &mut [MultiplexedConnection],
    channels: &[String],
) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for channel in channels {
        let mut per_node = Vec::new();
        for node in nodes.iter_mut() {
            per_node.push(shardnumsub(node, channel).await);
        }
        out.insert(channel.clone(), per_node);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_channels_spread_over_the_shards_and_deliver_across_instances() {
    let cluster = RedisCluster::start(3);
    let a = instance_with(cluster_config(&cluster)).await;
    let b = instance_with(cluster_config(&cluster)).await;
    let mut nodes = Vec::new();
    for node in cluster.nodes() {
        nodes.push(redis_conn(node).await);
    }
    let topics: Vec<String> = (0..TOPICS).map(|i| format!("room-{i}")).collect();
    let channels: Vec<String> = topics.iter().map(|t| format!("ws:t:{t}")).collect();

    let mut on_a = a.server.connect().await;
    let mut on_b = b.server.connect().await;
    for t in &topics {
        subscribe(&mut on_a, t).await;
        subscribe(&mut on_b, t).await;
    }
    let a_id = whoami(&mut on_a).await;

    // Each channel has both instances' subscriptions, all on one node: the
    // shard that owns it. Together the channels use more than one shard.
    let mut owners = BTreeSet::new();
    eventually(
        "every topic channel subscribed twice on its own shard",
        || {
            let mut nodes = nodes.clone();
            let channels = channels.clone();
            async move {
                counts(&mut nodes, &channels)
                    .await
                    .values()
                    .all(|per_node| per_node.iter().sum::<usize>() == 2 && per_node.contains(&2))
            }
        },
    )
    .await;
    for per_node in counts(&mut nodes, &channels).await.values() {
        owners.insert(per_node.iter().position(|n| *n == 2).unwrap());
    }
    assert!(owners.len() >= 2, "all channels on one shard: {owners:?}");
    let socket_channel = a.provider.socket_channel(&a_id);
    eventually("the socket's channel on its shard", || {
        let mut nodes = nodes.clone();
        let channel = socket_channel.clone();
        async move {
            counts(&mut nodes, &[channel])
                .await
                .values()
                .all(|c| c.iter().sum::<usize>() == 1)
        }
    })
    .await;

    // Publishes cross instances on every shard, text and binary.
    for t in &topics {
        a.socket()
            .publish(t.as_str(), format!("from a on {t}"))
            .await
            .unwrap();
        expect(&mut on_a, text(&format!("from a on {t}"))).await;
        expect(&mut on_b, text(&format!("from a on {t}"))).await;
        b.socket().publish(t.as_str(), all_bytes()).await.unwrap();
        expect(&mut on_a, Received::Binary(all_bytes())).await;
        expect(&mut on_b, Received::Binary(all_bytes())).await;
    }
    // Direct sends and broadcasts too.
    assert!(b.socket().send(a_id, "direct").await.unwrap());
    expect(&mut on_a, text("direct")).await;
    assert!(!b.socket().send(SocketId::new(), "nobody").await.unwrap());
    b.socket().broadcast("everyone").await.unwrap();
    expect(&mut on_a, text("everyone")).await;
    expect(&mut on_b, text("everyone")).await;
    on_a.expect_silence(Duration::from_millis(300)).await;
    on_b.expect_silence(Duration::ZERO).await;

    // Leaving unsubscribes on the shard.
    for t in &topics {
        unsubscribe(&mut on_a, t).await;
        unsubscribe(&mut on_b, t).await;
    }
    eventually("no topic channel left on any shard", || {
        let mut nodes = nodes.clone();
        let channels = channels.clone();
        async move {
            counts(&mut nodes, &channels)
                .await
                .values()
                .all(|per_node| per_node.iter().all(|n| *n == 0))
        }
    })
    .await;
    assert!(a.provider.stats().connected && b.provider.stats().connected);
}
