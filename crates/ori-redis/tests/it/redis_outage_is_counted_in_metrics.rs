//! A Redis outage shows on the instance's `/metrics`: one disconnect, the
//! subscriptions the lost connection held counted as dropped, and one
//! reconnect once Redis is back (with every channel resubscribed).

use crate::common;

use std::time::Duration;

use common::*;
use ori::{Ori, WsOptions};
use ori_redis::testing::RedisServer;
use ori_redis::RedisProvider;

/// The value of the sample `name` (no labels) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_counts_one_disconnect_dropped_subscriptions_and_one_reconnect() {
    init_logs();
    let mut redis = RedisServer::start();
    let provider = RedisProvider::new(
        config(&redis).reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let server = ori::testing::spawn(
        Ori::create()
            .websocket_with(provider.clone(), WsOptions::new())
            .on_websocket(command_handlers())
            .metrics_route("/metrics"),
    )
    .await;
    let scrape = || async {
        let resp = server.get("/metrics").await;
        assert_eq!(resp.status, 200);
        resp.text()
    };
    let text = scrape().await;
    for name in [
        "ori_redis_reconnects_total",
        "ori_redis_disconnects_total",
        "ori_redis_dropped_subscriptions_total",
    ] {
        assert_eq!(sample(&text, name), Some(0), "{name} starts at 0:\n{text}");
    }
    assert_eq!(sample(&text, "ori_redis_connected"), Some(1));

    // One socket in one topic: its topic channel and its socket channel.
    let mut ws = server.connect().await;
    subscribe(&mut ws, "feed").await;
    let id = whoami(&mut ws).await;
    let mut r = redis_conn(&redis).await;
    wait_numsub(&mut r, "ws:t:feed", 1).await;
    wait_numsub(&mut r, &provider.socket_channel(&id), 1).await;
    drop(r);

    redis.kill();
    eventually("the provider notices the outage", || {
        let down = !provider.stats().connected;
        async move { down }
    })
    .await;
    redis.restart();
    eventually("the provider reconnects", || {
        let up = provider.stats().reconnects == 1;
        async move { up }
    })
    .await;
    let mut r = redis_conn(&redis).await;
    wait_numsub(&mut r, "ws:t:feed", 1).await;
    wait_numsub(&mut r, &provider.socket_channel(&id), 1).await;

    let text = scrape().await;
    assert_eq!(
        sample(&text, "ori_redis_reconnects_total"),
        Some(1),
        "{text}"
    );
    assert_eq!(sample(&text, "ori_redis_disconnects_total"), Some(1));
    assert_eq!(
        sample(&text, "ori_redis_dropped_subscriptions_total"),
        Some(2),
        "the topic and the socket channel"
    );
    assert_eq!(sample(&text, "ori_redis_connected"), Some(1));
    assert!(text.contains("# TYPE ori_redis_reconnects_total counter"));
    server.stop().await;
}
