//! Positions and recovery (PROTOCOL.md section 8) as a client speaks
//! them to the demo: joins with positions, resumes, and the scenario of a
//! subscriber dropped while a publisher keeps sending.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ori::testing::{self, Received, TestSocket};
use serde_json::{json, Value};

/// Hang guard for any single wait.
pub const GUARD: Duration = Duration::from_secs(30);

pub fn config(entries: usize, ttl: Duration) -> ori_demo::Config {
    ori_demo::Config {
        history: Some((entries, ttl)),
        ..Default::default()
    }
}

pub async fn recv_json(ws: &mut TestSocket) -> Value {
    match ws.recv_within(GUARD).await.expect("a frame in time") {
        Received::Text(t) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("unexpected {other:?}"),
    }
}

/// Joins `room` with `join` extra fields and returns the `room.joined`
/// reply.
pub async fn join(url: &str, room: &str, extra: Value) -> (TestSocket, Value) {
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

/// Resumes `room` after `offset` of `epoch`; the socket and the reply.
pub async fn resume(url: &str, room: &str, epoch: &str, offset: u64) -> (TestSocket, Value) {
    join(
        url,
        room,
        json!({"since": {"epoch": epoch, "offset": offset}}),
    )
    .await
}

/// One `room.message`: its offset and the notification's `message`.
pub fn number(env: &Value, room: &str) -> (u64, String) {
    assert_eq!(env["type"], "room.message", "{env}");
    assert_eq!(env["room"], room);
    let offset = env["offset"].as_u64().expect("an offset");
    let message = env["data"]["message"].as_str().expect("a notification");
    (offset, message.to_owned())
}

pub async fn notify(addr: SocketAddr, room: &str, message: &str) {
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

/// A subscriber joins with positions on `first`, receives part of ~1,000
/// numbered notifications a second published on `publisher`, drops
/// without a close frame, and once 150 more were published resumes on
/// `second`: it must get
/// every number exactly once, in order, with consecutive offsets.
pub async fn dropped_subscriber_resumes(first: &str, publisher: SocketAddr, second: &str) {
    let addr = publisher;
    let (mut ws, reply) = join(first, "feed", json!({"recover": true})).await;
    let epoch = reply["epoch"].as_str().expect("an epoch").to_owned();
    assert_eq!(reply["offset"], 0);
    assert!(reply.get("recovered").is_none(), "{reply}");

    // ~1,000 numbered notifications a second for 2.5 s.
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // The count at the subscriber's drop: the publisher goes on past the
    // 2.5 s until 150 more went out meanwhile, however slow the machine
    // (at most 15 s, 10,000 notifications).
    let dropped_at = Arc::new(AtomicU64::new(u64::MAX));
    let publisher = {
        let (published, done) = (published.clone(), done.clone());
        let dropped_at = dropped_at.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut n = 0u64;
            let more = |n: u64| n < dropped_at.load(SeqCst).saturating_add(150);
            while n < 10_000
                && started.elapsed() < Duration::from_secs(15)
                && (started.elapsed() < Duration::from_millis(2500) || more(n))
            {
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
    let at_drop = published.load(SeqCst);
    dropped_at.store(at_drop, SeqCst);
    // Away while the publisher goes on: until 150 more went out (bounded
    // by the publisher's own limits).
    while published.load(SeqCst) < at_drop + 150 && !done.load(SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let missed_at_least = published.load(SeqCst) - got.len() as u64;
    assert!(missed_at_least > 100, "the publisher kept going meanwhile");

    // Resume: the reply, the replay, then the live stream.
    let (mut ws, reply) = resume(second, "feed", &epoch, last).await;
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
