//! A reconnect storm against the demo (in-process): 1,000 subscribers over
//! 10 rooms drop their connections and reconnect, one every 2 ms, while a
//! publisher keeps publishing numbered notifications over HTTP. Each
//! subscriber must receive, in order, every notification published after
//! its rejoin was acknowledged (the `3` that answers a `2` sent after the
//! `room.join`, PROTOCOL.md section 2).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use ori::testing::{self, Received, TestSocket};
use serde_json::json;

const CLIENTS: usize = 1000;
const ROOMS: usize = 10;
/// Hang guard for any single wait.
const GUARD: Duration = Duration::from_secs(60);

/// Connects, joins `room`, and waits for the `3` acknowledging the join.
async fn join(url: &str, room: &str) -> TestSocket {
    let mut ws = TestSocket::connect(url, &[]).await.expect("connect");
    ws.send_json(&json!({"type": "room.join", "room": room}))
        .await;
    ws.send_text("2").await;
    loop {
        match ws
            .recv_within(GUARD)
            .await
            .expect("join acknowledged in time")
        {
            Received::Text(t) if t == "3" => return ws,
            Received::Text(_) => {} // notifications published before the ack
            other => panic!("unexpected {other:?} while joining"),
        }
    }
}

struct Rooms {
    /// Per room: the next sequence number (publishes started so far).
    started: Vec<AtomicU64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_receives_everything_published_after_its_rejoin() {
    let server = testing::spawn(ori_demo::build(ori_demo::Config::default())).await;
    let url = server.ws_url("/ws");
    let addr = server.addr();
    let rooms = Arc::new(Rooms {
        started: (0..ROOMS).map(|_| AtomicU64::new(0)).collect(),
    });
    let joined = Arc::new(AtomicUsize::new(0));
    let rejoined = Arc::new(AtomicUsize::new(0));
    let storm = Arc::new(tokio::sync::Notify::new());

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (url, rooms, joined, rejoined, storm) = (
            url.clone(),
            rooms.clone(),
            joined.clone(),
            rejoined.clone(),
            storm.clone(),
        );
        let notified = storm.notified_owned();
        clients.push(tokio::spawn(async move {
            let room = format!("storm-{}", i % ROOMS);
            let first = join(&url, &room).await;
            joined.fetch_add(1, SeqCst);
            notified.await;
            tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
            // Disconnect without a close handshake, then rejoin.
            drop(first);
            let mut ws = join(&url, &room).await;
            let from = rooms.started[i % ROOMS].load(SeqCst);
            rejoined.fetch_add(1, SeqCst);
            let mut got = Vec::new();
            loop {
                match ws.recv_within(GUARD).await.expect("the end marker in time") {
                    Received::Text(t) => {
                        let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                        let msg = v["message"].as_str().expect("a notification").to_owned();
                        if msg == "end" {
                            break;
                        }
                        let seq: u64 = msg.parse().expect("a sequence number");
                        if seq >= from {
                            got.push(seq);
                        }
                    }
                    other => panic!("subscriber {i}: unexpected {other:?}"),
                }
            }
            (i % ROOMS, from, got)
        }));
    }
    for _ in 0..6000 {
        if joined.load(SeqCst) == CLIENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(joined.load(SeqCst), CLIENTS, "every client joined");

    // The publisher: rooms in turn, until every client has rejoined and
    // each room got 20 more notifications.
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (rooms, rejoined, publishing) = (rooms.clone(), rejoined.clone(), publishing.clone());
        tokio::spawn(async move {
            let mut after_all = 0;
            let mut n = 0u64;
            while after_all < 20 * ROOMS && n < 100_000 {
                let r = (n as usize) % ROOMS;
                let seq = rooms.started[r].fetch_add(1, SeqCst);
                let resp = testing::http_request(
                    addr,
                    testing::Method::POST,
                    &format!("/api/notify/storm-{r}"),
                    &[("content-type", "application/json")],
                    json!({"message": seq.to_string()}).to_string().into(),
                )
                .await;
                assert_eq!(resp.status, 200, "publish {seq} to room {r}");
                if rejoined.load(SeqCst) == CLIENTS {
                    after_all += 1;
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            publishing.store(false, SeqCst);
        })
    };
    storm.notify_waiters();
    tokio::time::timeout(Duration::from_secs(300), publisher)
        .await
        .expect("publisher finished in time")
        .expect("publisher");
    assert!(!publishing.load(SeqCst));
    for r in 0..ROOMS {
        let resp = server
            .post_json(
                &format!("/api/notify/storm-{r}"),
                &json!({"message": "end"}),
            )
            .await;
        assert_eq!(resp.status, 200);
    }

    let mut total = 0usize;
    for c in clients {
        let (room, from, got) = tokio::time::timeout(GUARD, c)
            .await
            .expect("subscriber finished in time")
            .expect("subscriber");
        let end = rooms.started[room].load(SeqCst);
        let expected: Vec<u64> = (from..end).collect();
        assert_eq!(
            got, expected,
            "a subscriber of room {room} that rejoined at {from}"
        );
        total += got.len();
    }
    assert!(total >= CLIENTS * 20, "{total} deliveries checked");
    server.stop().await;
}
