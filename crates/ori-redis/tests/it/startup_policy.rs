//! What start-up does when Redis is not there: fail fast with a clear
//! error (the default), retry for a while, or start at once and connect in
//! the background.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use ori::core::ErrorKind;
use ori::{Broker, Ori, WsOptions};
use ori_redis::testing::RedisServer;
use ori_redis::{RedisConfig, RedisProvider, StartupPolicy};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_fails_start_up_with_the_address_and_cause() {
    init_logs();
    let port = closed_port();
    let config = RedisConfig::url(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = match Ori::create()
        .websocket_with(RedisProvider::new(config), WsOptions::new())
        .listen("127.0.0.1:0")
        .await
    {
        Ok(_) => panic!("started without Redis"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err).map_or(String::new(), |s| s.to_string())
    );
    assert!(
        text.contains(&format!(
            "cannot connect to Redis at redis://127.0.0.1:{port}"
        )),
        "{text}"
    );

    // A broker on its own says the same, as a retryable "unavailable".
    let broker = Broker::new(RedisProvider::new(RedisConfig::url(format!(
        "redis://127.0.0.1:{port}"
    ))));
    let e = broker.start().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e:?}");
    assert!(e.is_retryable());
    assert!(!broker.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_url_is_a_configuration_error() {
    let broker = Broker::new(RedisProvider::new(RedisConfig::url("http://nope")));
    let e = broker.start().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
    assert!(!e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_policy_waits_for_redis_to_come_up() {
    let mut redis = RedisServer::start();
    redis.kill();
    let retrying = config(&redis).startup(StartupPolicy::Retry(Duration::from_secs(20)));
    let start = tokio::spawn(instance_with(retrying));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!start.is_finished(), "started without Redis");
    redis.restart();
    let a = start.await.unwrap();
    assert!(a.provider.stats().connected);
    a.socket().publish("x", "ok").await.unwrap();

    // Retrying gives up after its limit with the same clear error.
    redis.kill();
    let limited = config(&redis).startup(StartupPolicy::Retry(Duration::from_millis(300)));
    let started = Instant::now();
    let e = Broker::new(RedisProvider::new(limited))
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert!(format!("{:?}", e).contains("retrying"), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_policy_starts_at_once_and_connects_later() {
    let mut redis = RedisServer::start();
    redis.kill();
    let a = instance_with(config(&redis).startup(StartupPolicy::Background)).await;
    let mut ws = a.server.connect().await;
    subscribe(&mut ws, "room").await;
    // Local delivery works before Redis exists; the publish reports that
    // other instances were not reached.
    let err = a.socket().publish("room", "local").await.unwrap_err();
    assert!(err.to_string().contains("Redis is unavailable"), "{err}");
    assert_eq!(
        ws.recv().await,
        ori::testing::Received::Text("local".into())
    );

    redis.restart();
    let mut r = redis_conn(&redis).await;
    wait_numsub(&mut r, "ws:t:room", 1).await;
    assert!(a.provider.stats().connected);
    let b = instance(&redis).await;
    b.socket().publish("room", "remote").await.unwrap();
    assert_eq!(
        ws.recv().await,
        ori::testing::Received::Text("remote".into())
    );
    assert_eq!(a.provider.stats().disconnects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start_again_resubscribes_what_is_still_there() {
    use ori::core::Outbox;
    use ori::{SocketId, Target, Topic};
    init_logs();
    let redis = RedisServer::start();
    let mut r = redis_conn(&redis).await;
    let redis_provider = RedisProvider::new(config(&redis));
    let provider = Broker::new(redis_provider.clone());
    provider.start().await.unwrap();
    let outbox = std::sync::Arc::new(Outbox::new(SocketId::new(), 1 << 20));
    let id = *outbox.id();
    provider.register(outbox, 8);
    provider
        .subscribe(&id, &Topic::new("kept").unwrap())
        .unwrap();
    let socket_channel = redis_provider.socket_channel(&id);
    wait_numsub(&mut r, "ws:t:kept", 1).await;
    wait_numsub(&mut r, &socket_channel, 1).await;

    provider.stop().await;
    assert!(!provider.is_ready());
    wait_numsub(&mut r, "ws:t:kept", 0).await;
    wait_numsub(&mut r, &socket_channel, 0).await;
    assert!(provider
        .publish(Target::Topic(Topic::new("kept").unwrap()), "x".into())
        .await
        .is_err());

    provider.start().await.unwrap();
    wait_numsub(&mut r, "ws:t:kept", 1).await;
    wait_numsub(&mut r, &socket_channel, 1).await;
    wait_numsub(&mut r, "ws:b", 1).await;
    provider.stop().await;
}
