//! Positions and recovery across instances (PROTOCOL.md section 8): two
//! demo instances with history on one Redis share each topic's offsets and
//! epoch, so a subscriber dropped on one resumes on the other and gets
//! every publication exactly once, in order; when Redis lost the history
//! (`FLUSHALL`, a restart without persistence) or the entries are older
//! than the TTL, a resume is `recovered: false` and nothing is replayed.

use crate::common;

use std::time::Duration;

use common::positions::*;
use ori::testing::{self, TestServer};
use ori_redis::testing::{RedisCluster, RedisServer};
use ori_redis::{RedisConfig, RedisProvider};
use serde_json::json;

async fn instance(redis: &RedisServer, entries: usize) -> TestServer {
    instance_with_ttl(redis, entries, Duration::from_secs(300)).await
}

async fn instance_with_ttl(redis: &RedisServer, entries: usize, ttl: Duration) -> TestServer {
    let provider = RedisProvider::new(
        RedisConfig::url(redis.url())
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200)),
    );
    let config = config(entries, ttl);
    testing::spawn(ori_demo::build_with_provider(config, provider)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_dropped_on_one_instance_resumes_on_the_other() {
    let redis = RedisServer::start();
    let a = instance(&redis, 10_000).await;
    let b = instance(&redis, 10_000).await;
    // Joined on A, published on B, resumed on B.
    dropped_subscriber_resumes(&a.ws_url("/ws"), b.addr(), &b.ws_url("/ws")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_history_is_not_recovered_and_offsets_are_shared() {
    let mut redis = RedisServer::start();
    let a = instance(&redis, 3).await;
    let b = instance(&redis, 3).await;
    let (mut on_a, reply) = join(&a.ws_url("/ws"), "r", json!({"recover": true})).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    // Publications on either instance share one sequence.
    for (i, server) in [&a, &b, &a, &b, &b].iter().enumerate() {
        notify(server.addr(), "r", &i.to_string()).await;
        assert_eq!(
            number(&recv_json(&mut on_a).await, "r"),
            (i as u64 + 1, i.to_string())
        );
    }
    // Further back than the 3 kept: not recovered; within them: recovered.
    let (_ws, reply) = resume(&b.ws_url("/ws"), "r", &epoch, 1).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    let (mut on_b, reply) = resume(&b.ws_url("/ws"), "r", &epoch, 3).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["missed"], 2);
    assert_eq!(number(&recv_json(&mut on_b).await, "r"), (4, "3".into()));
    assert_eq!(number(&recv_json(&mut on_b).await, "r"), (5, "4".into()));

    // FLUSHALL: a new epoch, nothing replayed.
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let (_ws, reply) = resume(&a.ws_url("/ws"), "r", &epoch, 5).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    let flushed_epoch = reply["epoch"].as_str().unwrap().to_owned();
    assert_ne!(flushed_epoch, epoch);
    assert_eq!(reply["offset"], 0);

    // A restart without persistence: the same.
    redis.restart();
    let mut tries = 0;
    let reply = loop {
        tries += 1;
        let mut ws = ori::testing::TestSocket::connect(&b.ws_url("/ws"), &[])
            .await
            .unwrap();
        ws.send_json(&json!({"type": "room.join", "room": "r",
            "since": {"epoch": flushed_epoch, "offset": 0}}))
            .await;
        let reply = recv_json(&mut ws).await;
        if reply["type"] == "room.joined" || tries > 100 {
            break reply;
        }
        // Redis not back yet: the join is refused with an error; retry.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply["type"], "room.joined", "{reply}");
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], flushed_epoch.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_older_than_the_ttl_are_not_recovered() {
    let redis = RedisServer::start();
    let a = instance_with_ttl(&redis, 100, Duration::from_millis(100)).await;
    let (_ws, reply) = join(&a.ws_url("/ws"), "r", json!({"recover": true})).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    notify(a.addr(), "r", "fresh").await;
    let (mut ws, reply) = resume(&a.ws_url("/ws"), "r", &epoch, 0).await;
    assert_eq!(
        (reply["recovered"].clone(), reply["missed"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(number(&recv_json(&mut ws).await, "r"), (1, "fresh".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_ws, reply) = resume(&a.ws_url("/ws"), "r", &epoch, 0).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_each_topic_keeps_its_history_on_its_channels_shard() {
    let cluster = RedisCluster::start(3);
    let start = || async {
        let provider = RedisProvider::new(
            RedisConfig::cluster(cluster.urls())
                .connect_timeout(Duration::from_secs(2))
                .publish_timeout(Duration::from_secs(2))
                .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400)),
        );
        let config = config(100, Duration::from_secs(300));
        testing::spawn(ori_demo::build_with_provider(config, provider)).await
    };
    let a = start().await;
    let b = start().await;
    // Topics on different slots (and so, shards).
    for room in ["alpha", "beta", "gamma", "delta"] {
        let (mut on_a, reply) = join(&a.ws_url("/ws"), room, json!({"recover": true})).await;
        let epoch = reply["epoch"].as_str().unwrap().to_owned();
        for i in 0..3 {
            notify(b.addr(), room, &format!("{room}{i}")).await;
            assert_eq!(
                number(&recv_json(&mut on_a).await, room),
                (i + 1, format!("{room}{i}"))
            );
        }
        let (mut on_b, reply) = resume(&b.ws_url("/ws"), room, &epoch, 1).await;
        assert_eq!(reply["recovered"], true, "{room}: {reply}");
        assert_eq!(
            number(&recv_json(&mut on_b).await, room),
            (2, format!("{room}1"))
        );
        assert_eq!(
            number(&recv_json(&mut on_b).await, room),
            (3, format!("{room}2"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_resume_at_once_on_the_other_instance() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;

    const CLIENTS: usize = 100;
    let redis = RedisServer::start();
    let a = instance(&redis, 10_000).await;
    let b = instance(&redis, 10_000).await;
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop, addr) = (published.clone(), stop.clone(), b.addr());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(SeqCst) && n < 20_000 {
                notify(addr, "storm", &n.to_string()).await;
                n += 1;
                published.store(n, SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let resumed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (a_url, b_url, resumed) = (a.ws_url("/ws"), b.ws_url("/ws"), resumed.clone());
        clients.push(tokio::spawn(async move {
            let (mut ws, reply) = join(&a_url, "storm", json!({"recover": true})).await;
            let epoch = reply["epoch"].as_str().unwrap().to_owned();
            let mut got = Vec::new();
            // Each drops after a different number of notifications.
            while got.len() < 20 + i % 30 {
                got.push(number(&recv_json(&mut ws).await, "storm"));
            }
            drop(ws);
            let last = got
                .last()
                .map_or(reply["offset"].as_u64().unwrap(), |(o, _)| *o);
            let (mut ws, reply) = resume(&b_url, "storm", &epoch, last).await;
            assert_eq!(reply["recovered"], true, "client {i}: {reply}");
            resumed.fetch_add(1, SeqCst);
            loop {
                let (offset, message) = number(&recv_json(&mut ws).await, "storm");
                if message == "end" {
                    break;
                }
                got.push((offset, message));
            }
            got
        }));
    }
    for _ in 0..3000 {
        if resumed.load(SeqCst) == CLIENTS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(resumed.load(SeqCst), CLIENTS as u64, "every client resumed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, SeqCst);
    publisher.await.unwrap();
    notify(b.addr(), "storm", "end").await;
    let total = published.load(SeqCst);
    for (i, c) in clients.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("client finished")
            .expect("client");
        let first = got.first().expect("received").0;
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (first..=total).collect();
        assert_eq!(offsets, expected, "client {i}: every offset once, in order");
        let numbers: Vec<String> = got.iter().map(|(_, m)| m.clone()).collect();
        let expected: Vec<String> = (first - 1..total).map(|n| n.to_string()).collect();
        assert_eq!(numbers, expected, "client {i}");
    }
}
