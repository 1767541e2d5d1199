//! Garbage published straight into the provider's channels (as
//! `redis-cli PUBLISH` would) is dropped and counted: no client sees it,
//! nothing crashes, and the same channels keep delivering valid envelopes.

use crate::common;

use std::time::Duration;

use common::*;
use ori::testing::Received;
use ori::{Message, SocketId, Topic};
use ori_redis::envelope;
use ori_redis::testing::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_are_dropped_and_the_channels_keep_working() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut ws = a.server.connect().await;
    subscribe(&mut ws, "room").await;
    let id = whoami(&mut ws).await;
    let socket_channel = a.provider.socket_channel(&id);
    wait_numsub(&mut r, "ws:t:room", 1).await;
    wait_numsub(&mut r, &socket_channel, 1).await;

    let stranger = [9u8; 16];
    let room = Topic::new("room").unwrap();
    let valid = envelope::encode(&stranger, &room, &"valid".into());
    let mut bad_version = valid.clone();
    bad_version[0] = 2;
    let mut bad_flags = valid.clone();
    bad_flags[1] = 0x40;
    let mut long_topic = valid.clone();
    long_topic[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut bad_utf8 = envelope::encode(&stranger, &room, &Message::from(""));
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    let other_topic = envelope::encode(&stranger, Topic::new("elsewhere").unwrap(), &"x".into());
    let other_socket =
        envelope::encode(&stranger, Topic::for_socket(&SocketId::new()), &"x".into());
    let topic_on_broadcast = envelope::encode(&stranger, &room, &"x".into());

    let injections: Vec<(&str, Vec<u8>)> = vec![
        ("ws:t:room", b"".to_vec()),
        ("ws:t:room", b"hello from redis-cli".to_vec()),
        ("ws:t:room", valid[..10].to_vec()),
        ("ws:t:room", bad_version),
        ("ws:t:room", bad_flags),
        ("ws:t:room", long_topic),
        ("ws:t:room", bad_utf8),
        ("ws:t:room", other_topic),
        ("ws:b", topic_on_broadcast),
        ("ws:b", vec![0xff; 64]),
        (socket_channel.as_str(), other_socket),
        (socket_channel.as_str(), b"\x01\x00".to_vec()),
    ];
    for (channel, payload) in &injections {
        assert!(
            raw_publish(&mut r, channel, payload).await >= 1,
            "{channel}"
        );
    }
    let count = injections.len() as u64;
    eventually("every malformed envelope is counted", || {
        let n = a.provider.stats().malformed;
        async move { n == count }
    })
    .await;
    ws.expect_silence(Duration::from_millis(300)).await;

    // The subscriber connection is fine: a well-formed envelope from an
    // unknown instance is delivered, and so are real publishes and sends.
    raw_publish(&mut r, "ws:t:room", &valid).await;
    assert_eq!(ws.recv().await, Received::Text("valid".into()));
    b.socket().publish("room", vec![0u8, 255]).await.unwrap();
    assert_eq!(ws.recv().await, Received::Binary(vec![0, 255]));
    assert!(b.socket().send(id, "direct").await.unwrap());
    assert_eq!(ws.recv().await, Received::Text("direct".into()));
    b.socket().broadcast("all").await.unwrap();
    assert_eq!(ws.recv().await, Received::Text("all".into()));
    let stats = a.provider.stats();
    assert!(stats.connected);
    assert_eq!(stats.disconnects, 0);
    assert_eq!(stats.malformed, count);
}
