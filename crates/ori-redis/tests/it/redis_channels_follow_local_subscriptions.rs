//! The Redis channels an instance holds follow its hub: a topic's channel
//! is subscribed with its first local subscriber and unsubscribed with its
//! last (by leaving or by disconnecting), each socket has its own channel
//! while connected, and the broadcast channel is always held.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use ori_redis::testing::RedisServer;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_channels_follow_the_first_and_last_local_subscriber() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    assert_eq!(numsub(&mut r, "ws:b").await, 2, "broadcast held from start");
    assert_eq!(numsub(&mut r, "ws:t:room").await, 0);

    let mut a1 = a.server.connect().await;
    let mut a2 = a.server.connect().await;
    let mut b1 = b.server.connect().await;
    subscribe(&mut a1, "room").await;
    wait_numsub(&mut r, "ws:t:room", 1).await;
    subscribe(&mut a2, "room").await; // second local subscriber: no new channel
    subscribe(&mut b1, "room").await; // another instance: its own subscription
    wait_numsub(&mut r, "ws:t:room", 2).await;
    subscribe(&mut a1, "lobby").await;
    eventually("channels ws:t:*", || {
        let mut r = r.clone();
        async move { channels(&mut r, "ws:t:*").await == set(&["ws:t:lobby", "ws:t:room"]) }
    })
    .await;
    // Counted once A has read Redis's confirmations, a moment after Redis
    // shows the channels: broadcast and pressure, 2 topics, 2 sockets.
    eventually("A counts its channels", || {
        let channels = a.provider.stats().channels;
        async move { channels == 2 + 2 + 2 }
    })
    .await;

    unsubscribe(&mut a1, "room").await; // a2 still there
    wait_numsub(&mut r, "ws:t:lobby", 1).await;
    assert_eq!(numsub(&mut r, "ws:t:room").await, 2);
    unsubscribe(&mut a2, "room").await; // A's last
    wait_numsub(&mut r, "ws:t:room", 1).await;
    b1.close(1000, "").await; // B's last, by disconnecting
    b1.expect_close().await;
    wait_numsub(&mut r, "ws:t:room", 0).await;
    a1.close(1000, "").await;
    a1.expect_close().await;
    wait_numsub(&mut r, "ws:t:lobby", 0).await;
    assert!(channels(&mut r, "ws:t:*").await.is_empty());
    assert_eq!(numsub(&mut r, "ws:b").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connected_socket_has_its_own_channel() {
    let redis = RedisServer::start();
    let a = instance(&redis).await;
    let mut r = redis_conn(&redis).await;
    let mut s1 = a.server.connect().await;
    let mut s2 = a.server.connect().await;
    let (id1, id2) = (whoami(&mut s1).await, whoami(&mut s2).await);
    let (c1, c2) = (
        a.provider.socket_channel(&id1),
        a.provider.socket_channel(&id2),
    );
    assert_eq!(c1, format!("ws:s:{id1}"));
    eventually("both socket channels", || {
        let mut r = r.clone();
        let want = set(&[&c1, &c2]);
        async move { channels(&mut r, "ws:s:*").await == want }
    })
    .await;
    s1.close(1000, "").await;
    s1.expect_close().await;
    wait_numsub(&mut r, &c1, 0).await;
    assert_eq!(numsub(&mut r, &c2).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_prefix_separates_apps_on_one_redis() {
    let redis = RedisServer::start();
    let chat = instance_with(config(&redis).prefix("chat")).await;
    let other = instance(&redis).await;
    let mut r = redis_conn(&redis).await;
    let mut on_chat = chat.server.connect().await;
    let mut on_other = other.server.connect().await;
    subscribe(&mut on_chat, "room").await;
    subscribe(&mut on_other, "room").await;
    wait_numsub(&mut r, "chat:t:room", 1).await;
    wait_numsub(&mut r, "ws:t:room", 1).await;
    assert_eq!(numsub(&mut r, "chat:b").await, 1);

    other.socket().publish("room", "ws only").await.unwrap();
    expect(&mut on_other, text("ws only")).await;
    on_chat
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
}
