//! Helpers shared by the Redis provider's integration tests: apps on a
//! Redis provider with a small text command protocol, a raw Redis client
//! for `PUBSUB` queries, and bounded polling.
//!
//! Each test binary compiles this module on its own and uses a subset of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{Conn, Handlers, Message, Ori, SocketId, WsOptions};
use ori_redis::testing::RedisServer;
use ori_redis::{RedisConfig, RedisProvider};
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

/// The longest any helper waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Logs to the test's captured output (shown when a test fails).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ori_redis=debug")),
        )
        .try_init();
}

/// The publish timeout of [`config`].
pub const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

/// A config for `redis` with quick timeouts and back-off, so fault tests
/// run in seconds.
pub fn config(redis: &RedisServer) -> RedisConfig {
    RedisConfig::url(redis.url())
        .connect_timeout(Duration::from_millis(500))
        .publish_timeout(PUBLISH_TIMEOUT)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .health_check_interval(Duration::from_millis(500))
}

/// One app instance on the Redis provider, and a handle to its provider.
pub struct Instance {
    pub server: TestServer,
    pub provider: RedisProvider,
}

impl Instance {
    pub fn socket(&self) -> &ori::SocketEmitter {
        self.server.app().socket()
    }
}

/// Starts an app with [`command_handlers`] on a provider for `config`.
pub async fn instance_with(config: RedisConfig) -> Instance {
    instance_with_options(config, WsOptions::new()).await
}

/// Like [`instance_with`], with WebSocket `options`.
pub async fn instance_with_options(config: RedisConfig, options: WsOptions) -> Instance {
    init_logs();
    let provider = RedisProvider::new(config);
    let server = testing::spawn(
        Ori::create()
            .websocket_with(provider.clone(), options)
            .on_websocket(command_handlers()),
    )
    .await;
    Instance { server, provider }
}

/// Starts an app on `redis` with [`config`].
pub async fn instance(redis: &RedisServer) -> Instance {
    instance_with(config(redis)).await
}

/// `sub:<t>` / `unsub:<t>` (reply `subscribed:<t>` / `unsubscribed:<t>`),
/// `whoami` (reply: the socket id); anything else is ignored.
pub fn command_handlers() -> Handlers<()> {
    Handlers::new().on_message(|ws: Conn, msg: Message| async move {
        let Some(text) = msg.as_text() else { return };
        if let Some(topic) = text.strip_prefix("sub:") {
            match ws.subscribe(topic) {
                Ok(_) => ws.send(format!("subscribed:{topic}")),
                Err(e) => ws.send(format!("error:{e}")),
            };
        } else if let Some(topic) = text.strip_prefix("unsub:") {
            match ws.unsubscribe(topic) {
                Ok(_) => ws.send(format!("unsubscribed:{topic}")),
                Err(e) => ws.send(format!("error:{e}")),
            };
        } else if text == "whoami" {
            ws.send(ws.id().to_string());
        }
    })
}

/// Sends `command` and waits for exactly the reply `expected`.
pub async fn request_reply(ws: &mut TestSocket, command: &str, expected: &str) {
    ws.send_text(command).await;
    match ws.recv_within(WAIT).await {
        Some(Received::Text(t)) if t == expected => {}
        other => panic!("waiting for {expected:?} after {command:?}, got {other:?}"),
    }
}

/// Subscribes the connection to `topic` (locally in effect on return).
pub async fn subscribe(ws: &mut TestSocket, topic: &str) {
    request_reply(ws, &format!("sub:{topic}"), &format!("subscribed:{topic}")).await;
}

/// Unsubscribes the connection from `topic` (locally in effect on return).
pub async fn unsubscribe(ws: &mut TestSocket, topic: &str) {
    request_reply(
        ws,
        &format!("unsub:{topic}"),
        &format!("unsubscribed:{topic}"),
    )
    .await;
}

/// The server-side id of this connection.
pub async fn whoami(ws: &mut TestSocket) -> SocketId {
    ws.send_text("whoami").await;
    match ws.recv_within(WAIT).await {
        Some(Received::Text(t)) => t.parse().expect("a socket id"),
        other => panic!("whoami: got {other:?}"),
    }
}

/// A plain client connection to `redis`, for inspection and injection.
pub async fn redis_conn(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("valid URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test Redis")
}

/// `PUBSUB NUMSUB channel`.
pub async fn numsub(conn: &mut MultiplexedConnection, channel: &str) -> usize {
    let (_, n): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async::<Vec<(String, usize)>>(conn)
        .await
        .expect("PUBSUB NUMSUB")
        .into_iter()
        .next()
        .expect("one answer");
    n
}

/// `PUBSUB CHANNELS pattern`, sorted.
pub async fn channels(conn: &mut MultiplexedConnection, pattern: &str) -> BTreeSet<String> {
    redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(pattern)
        .query_async::<Vec<String>>(conn)
        .await
        .expect("PUBSUB CHANNELS")
        .into_iter()
        .collect()
}

/// Raw `PUBLISH channel payload`; the receiver count.
pub async fn raw_publish(conn: &mut MultiplexedConnection, channel: &str, payload: &[u8]) -> usize {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async::<usize>(conn)
        .await
        .expect("PUBLISH")
}

/// Polls `check` every 20 ms until it returns true; panics after [`WAIT`]
/// naming `what`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `PUBSUB NUMSUB channel` is `n`.
pub async fn wait_numsub(conn: &mut MultiplexedConnection, channel: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let last = numsub(conn, channel).await;
        if last == n {
            return;
        }
        if Instant::now() > deadline {
            panic!("PUBSUB NUMSUB {channel} stayed {last}, expected {n}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message; panics on anything but the expected one.
pub async fn expect(ws: &mut TestSocket, expected: Received) {
    assert_eq!(ws.recv_within(WAIT).await, Some(expected));
}

/// Text, as [`Received`].
pub fn text(s: &str) -> Received {
    Received::Text(s.to_owned())
}

/// Every byte value, so any re-encoding would show.
pub fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}
