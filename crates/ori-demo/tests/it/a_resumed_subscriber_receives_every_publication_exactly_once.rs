//! Positions and recovery (PROTOCOL.md section 8) against the demo with
//! `--history`, over real sockets: a subscriber dropped without a close
//! frame while a publisher sends numbered notifications resumes with
//! `since` and gets every number exactly once, in order; a resume that
//! cannot be complete (another epoch, further back than the history's size
//! or TTL) is `recovered: false` with nothing replayed; sockets that joined
//! without positions keep getting the exact payload.

use crate::common;

use std::time::Duration;

use common::positions::*;
use ori::testing::{self, Received, TestSocket};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscriber_resumes_and_gets_every_number_exactly_once_in_order() {
    let server = testing::spawn(ori_demo::build(config(10_000, Duration::from_secs(300)))).await;
    let url = server.ws_url("/ws");
    dropped_subscriber_resumes(&url, server.addr(), &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_that_cannot_be_complete_is_not_recovered_and_replays_nothing() {
    // A restart (a new process's history) has another epoch.
    let old = testing::spawn(ori_demo::build(config(3, Duration::from_secs(300)))).await;
    let (_ws, reply) = join(&old.ws_url("/ws"), "r", json!({"recover": true})).await;
    let old_epoch = reply["epoch"].as_str().unwrap().to_owned();
    for i in 0..10 {
        notify(old.addr(), "r", &i.to_string()).await;
    }
    // Further back than the 3 entries kept.
    let (mut ws, reply) = resume(&old.ws_url("/ws"), "r", &old_epoch, 2).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], 10);
    assert!(reply.get("missed").is_none());
    notify(old.addr(), "r", "next").await;
    assert_eq!(number(&recv_json(&mut ws).await, "r"), (11, "next".into()));
    // Within them: the last three, then live.
    let (mut ws, reply) = resume(&old.ws_url("/ws"), "r", &old_epoch, 8).await;
    assert_eq!(
        (reply["recovered"].clone(), reply["missed"].clone()),
        (json!(true), json!(3))
    );
    for (offset, message) in [(9, "8"), (10, "9"), (11, "next")] {
        assert_eq!(
            number(&recv_json(&mut ws).await, "r"),
            (offset, message.into())
        );
    }
    // Ahead of the history.
    let (_ws, reply) = resume(&old.ws_url("/ws"), "r", &old_epoch, 99).await;
    assert_eq!(reply["recovered"], false);
    old.stop().await;

    let new = testing::spawn(ori_demo::build(config(100, Duration::from_secs(300)))).await;
    notify(new.addr(), "r", "after restart").await;
    let (mut ws, reply) = resume(&new.ws_url("/ws"), "r", &old_epoch, 1).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_ne!(reply["epoch"], old_epoch.as_str());
    assert_eq!(reply["offset"], 1);
    notify(new.addr(), "r", "live").await;
    assert_eq!(number(&recv_json(&mut ws).await, "r"), (2, "live".into()));

    // Older than the TTL.
    let short = testing::spawn(ori_demo::build(config(100, Duration::from_millis(100)))).await;
    let (_ws, reply) = join(&short.ws_url("/ws"), "r", json!({"recover": true})).await;
    let epoch = reply["epoch"].as_str().unwrap().to_owned();
    notify(short.addr(), "r", "expiring").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_ws, reply) = resume(&short.ws_url("/ws"), "r", &epoch, 0).await;
    assert_eq!(reply["recovered"], false, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_without_positions_keep_the_exact_payload() {
    let server = testing::spawn(ori_demo::build(config(10, Duration::from_secs(300)))).await;
    let url = server.ws_url("/ws");
    let (mut positioned, _) = join(&url, "mixed", json!({"recover": true})).await;
    let mut raw = TestSocket::connect(&url, &[]).await.expect("connect");
    raw.send_json(&json!({"type": "room.join", "room": "mixed"}))
        .await;
    raw.send_text("2").await;
    assert_eq!(
        raw.recv_within(GUARD).await.unwrap(),
        Received::Text("3".into())
    );

    notify(server.addr(), "mixed", "hello").await;
    let Received::Text(payload) = raw.recv_within(GUARD).await.unwrap() else {
        panic!("text");
    };
    assert_eq!(
        serde_json::from_str::<Value>(&payload).unwrap()["message"],
        "hello"
    );
    let Received::Text(envelope) = positioned.recv_within(GUARD).await.unwrap() else {
        panic!("text");
    };
    assert_eq!(
        envelope,
        format!(r#"{{"type":"room.message","room":"mixed","offset":1,"data":{payload}}}"#)
    );
    // The history's memory is visible, and counts the entry kept.
    let metrics = server.get("/metrics").await.text();
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(value("ori_history_topics "), 1);
    assert!(value("ori_history_bytes ") > payload.len() as u64);

    // Without history configured, a join with positions still joins, raw.
    let plain = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let (mut ws, reply) = join(&plain.ws_url("/ws"), "r", json!({"recover": true})).await;
    assert_eq!(
        reply,
        json!({"type": "room.joined", "room": "r", "recovered": false})
    );
    notify(plain.addr(), "r", "raw").await;
    assert_eq!(recv_json(&mut ws).await["message"], "raw");
}
