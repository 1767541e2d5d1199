//! Positions and recovery (PROTOCOL.md section 8) against the demo with
//! `--history`, over real sockets: a subscriber dropped without a close
//! frame while a publisher sends numbered notifications resumes with
//! `since` and gets every number exactly once, in order; a resume that
//! cannot be complete (another epoch, further back than the history's size
//! or TTL) is `recovered: false` with nothing replayed; sockets that joined
//! without positions keep getting the exact payload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ori::testing::{self, Received, TestSocket};
use serde_json::{json, Value};

/// Hang guard for any single wait.
const GUARD: Duration = Duration::from_secs(30);

fn config(entries: usize, ttl: Duration) -> ori_demo::Config {
    ori_demo::Config {
        history: Some((entries, ttl)),
        ..Default::default()
    }
}

async fn recv_json(ws: &mut TestSocket) -> Value {
    match ws.recv_within(GUARD).await.expect("a frame in time") {
        Received::Text(t) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Joins `room` with `join` extra fields and returns the `room.joined`
/// reply.
async fn join(url: &str, room: &str, extra: Value) -> (TestSocket, Value) {
    let mut ws = TestSocket::connect(url, &[]).await.expect("connect");
    let mut msg = json!({"type": "room.join", "room": room});
    for (k, v) in extra.as_object().unwrap() {
        msg[k] = v.clone();
    }
    ws.send_json(&msg).await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["type"], "room.joined", "{reply}");
    assert_eq!(reply["room"], room);
    (ws, reply)
}

/// One `room.message`: its offset and the notification's `message`.
fn number(env: &Value, room: &str) -> (u64, String) {
    assert_eq!(env["type"], "room.message", "{env}");
    assert_eq!(env["room"], room);
    let offset = env["offset"].as_u64().expect("an offset");
    let message = env["data"]["message"].as_str().expect("a notification");
    (offset, message.to_owned())
}

async fn notify(addr: std::net::SocketAddr, room: &str, message: &str) {
    let resp = testing::http_request(
        addr,
        testing::Method::POST,
        &format!("/api/notify/{room}"),
        &[("content-type", "application/json")],
        json!({ "message": message }).to_string().into(),
    )
    .await;
    assert_eq!(resp.status, 200, "publish {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscriber_resumes_and_gets_every_number_exactly_once_in_order() {
    let server = testing::spawn(ori_demo::build(config(10_000, Duration::from_secs(300)))).await;
    let url = server.ws_url("/ws");
    let addr = server.addr();

    let (mut ws, reply) = join(&url, "feed", json!({"recover": true})).await;
    let epoch = reply["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(reply["offset"], 0);
    assert!(reply.get("recovered").is_none(), "{reply}");

    // ~1,000 numbered notifications a second for 2.5 s.
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, done) = (published.clone(), done.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut n = 0u64;
            while started.elapsed() < Duration::from_millis(2500) && n < 10_000 {
                notify(addr, "feed", &n.to_string()).await;
                n += 1;
                published.store(n, SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            done.store(true, SeqCst);
        })
    };

    // Receive for a while, then vanish without a close frame.
    let mut got: Vec<(u64, String)> = Vec::new();
    while published.load(SeqCst) < 300 {
        got.push(number(&recv_json(&mut ws).await, "feed"));
    }
    drop(ws);
    let last = got.last().expect("received some").0;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let missed_at_least = published.load(SeqCst) - got.len() as u64;
    assert!(missed_at_least > 100, "the publisher kept going meanwhile");

    // Resume: the reply, the replay, then the live stream.
    let (mut ws, reply) = join(
        &url,
        "feed",
        json!({"since": {"epoch": epoch, "offset": last}}),
    )
    .await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    let missed = reply["missed"].as_u64().expect("missed");
    assert_eq!(reply["offset"].as_u64(), Some(last + missed));
    assert!(missed >= missed_at_least, "{missed} < {missed_at_least}");
    publisher.await.unwrap();
    assert!(done.load(SeqCst));
    notify(addr, "feed", "end").await;
    loop {
        let (offset, message) = number(&recv_json(&mut ws).await, "feed");
        if message == "end" {
            break;
        }
        got.push((offset, message));
    }

    let total = published.load(SeqCst);
    let numbers: Vec<String> = got.iter().map(|(_, m)| m.clone()).collect();
    let expected: Vec<String> = (0..total).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected, "every number exactly once, in order");
    let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    let consecutive: Vec<u64> = (1..=total).collect();
    assert_eq!(offsets, consecutive);
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
    let (mut ws, reply) = join(
        &old.ws_url("/ws"),
        "r",
        json!({"since": {"epoch": old_epoch, "offset": 2}}),
    )
    .await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], 10);
    assert!(reply.get("missed").is_none());
    notify(old.addr(), "r", "next").await;
    assert_eq!(number(&recv_json(&mut ws).await, "r"), (11, "next".into()));
    // Within them: the last three, then live.
    let (mut ws, reply) = join(
        &old.ws_url("/ws"),
        "r",
        json!({"since": {"epoch": old_epoch, "offset": 8}}),
    )
    .await;
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
    let (_ws, reply) = join(
        &old.ws_url("/ws"),
        "r",
        json!({"since": {"epoch": old_epoch, "offset": 99}}),
    )
    .await;
    assert_eq!(reply["recovered"], false);
    old.stop().await;

    let new = testing::spawn(ori_demo::build(config(100, Duration::from_secs(300)))).await;
    notify(new.addr(), "r", "after restart").await;
    let (mut ws, reply) = join(
        &new.ws_url("/ws"),
        "r",
        json!({"since": {"epoch": old_epoch, "offset": 1}}),
    )
    .await;
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
    let (_ws, reply) = join(
        &short.ws_url("/ws"),
        "r",
        json!({"since": {"epoch": epoch, "offset": 0}}),
    )
    .await;
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
