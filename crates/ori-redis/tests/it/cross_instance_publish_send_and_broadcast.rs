//! Two app instances on one Redis: a publish, a direct send and a
//! broadcast made on either reach the sockets of both, text as text and
//! binary byte for byte, and the publishing instance's own subscribers get
//! each message exactly once.

use crate::common;

use std::time::Duration;

use common::*;
use ori::testing::Received;
use ori::SocketId;
use ori_redis::testing::RedisServer;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscribers_on_every_instance_once() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut on_a = a.server.connect().await;
    let mut on_b = b.server.connect().await;
    let mut bystander = b.server.connect().await;
    subscribe(&mut on_a, "room").await;
    subscribe(&mut on_b, "room").await;
    subscribe(&mut bystander, "other").await;
    wait_numsub(&mut r, "ws:t:room", 2).await;

    a.socket().publish("room", "héllo ✓").await.unwrap();
    expect(&mut on_a, text("héllo ✓")).await;
    expect(&mut on_b, text("héllo ✓")).await;

    b.socket().publish("room", all_bytes()).await.unwrap();
    expect(&mut on_a, Received::Binary(all_bytes())).await;
    expect(&mut on_b, Received::Binary(all_bytes())).await;

    // Text that looks like bytes stays text; empty payloads survive.
    a.socket().publish("room", "").await.unwrap();
    for ws in [&mut on_a, &mut on_b] {
        expect(ws, text("")).await;
    }
    b.socket().publish("room", Vec::<u8>::new()).await.unwrap();
    for ws in [&mut on_a, &mut on_b] {
        expect(ws, Received::Binary(Vec::new())).await;
    }

    // Exactly once: no echo from Redis on the publishing instance, nothing
    // for the socket on another topic.
    on_a.expect_silence(QUIET).await;
    on_b.expect_silence(QUIET).await;
    bystander.expect_silence(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_order_is_kept_across_instances() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut on_b = b.server.connect().await;
    subscribe(&mut on_b, "seq").await;
    wait_numsub(&mut r, "ws:t:seq", 1).await;
    for i in 0..200 {
        a.socket().publish("seq", format!("{i}")).await.unwrap();
    }
    for i in 0..200 {
        expect(&mut on_b, text(&i.to_string())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_reaches_a_socket_on_another_instance_and_reports_existence() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut on_a = a.server.connect().await;
    let id = whoami(&mut on_a).await;
    let mut other_on_a = a.server.connect().await;
    wait_numsub(&mut r, &a.provider.socket_channel(&id), 1).await;

    assert!(b.socket().send(id, "direct").await.unwrap());
    expect(&mut on_a, text("direct")).await;
    assert!(b.socket().send(id, all_bytes()).await.unwrap());
    expect(&mut on_a, Received::Binary(all_bytes())).await;
    // Local sends stay local.
    assert!(a.socket().send(id, "local").await.unwrap());
    expect(&mut on_a, text("local")).await;
    on_a.expect_silence(QUIET).await;
    other_on_a.expect_silence(Duration::ZERO).await;

    // Nobody anywhere has a fresh id.
    assert!(!b.socket().send(SocketId::new(), "nobody").await.unwrap());
    assert!(!a.socket().send(SocketId::new(), "nobody").await.unwrap());

    // Once the socket is gone, no instance has it.
    on_a.close(1000, "bye").await;
    on_a.expect_close().await;
    wait_numsub(&mut r, &a.provider.socket_channel(&id), 0).await;
    assert!(!b.socket().send(id, "too late").await.unwrap());
    assert!(!a.socket().send(id, "too late").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_from_either_instance_reaches_every_socket_once() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut sockets = vec![
        a.server.connect().await,
        b.server.connect().await,
        b.server.connect().await,
    ];
    wait_numsub(&mut r, "ws:b", 2).await;

    // (Order between two publishers is not defined: one at a time.)
    a.socket().broadcast("to all").await.unwrap();
    for ws in &mut sockets {
        expect(ws, text("to all")).await;
    }
    b.socket().broadcast(all_bytes()).await.unwrap();
    for ws in &mut sockets {
        expect(ws, Received::Binary(all_bytes())).await;
    }
    // The internal broadcast topic is not a way around `broadcast`.
    let refused = b.socket().publish("__broadcast__", "via topic").await;
    assert!(
        matches!(refused, Err(ori::PublishError::InvalidTopic { .. })),
        "{refused:?}"
    );
    for ws in &mut sockets {
        ws.expect_silence(QUIET).await;
    }
}
