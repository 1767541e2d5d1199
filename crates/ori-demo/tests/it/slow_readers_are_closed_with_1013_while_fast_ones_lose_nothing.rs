//! Slow consumers against the demo (in-process, outbound queue limit
//! 256 KiB): 20 clients join a room and never read (4 KiB receive buffer),
//! 100 clients join it and read everything, and a publisher publishes
//! numbered 16 KiB notifications until the server has closed the slow ones.
//! The readers must receive every notification in order and stay open; each
//! slow client, when it finally reads its backlog, finds close code 1013,
//! and `/metrics` counts exactly the 20 slow ones.

use std::time::Duration;

use ori::testing::{self, Received, TestSocket};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SLOW: usize = 20;
const FAST: usize = 100;
/// Hang guard for any single wait.
const GUARD: Duration = Duration::from_secs(60);

/// Upgrades over a socket with a small receive buffer, joins `room`, and
/// returns the stream, from which nothing more is read until the end.
async fn slow_client(addr: std::net::SocketAddr, room: &str) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut s = sock.connect(addr).await.expect("connect");
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write upgrade");
    // The response head, byte by byte: nothing after it is read.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "response head too long");
        assert_eq!(s.read(&mut b).await.expect("read head"), 1, "EOF in head");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    // A masked text frame (mask 0, so the payload is as written).
    let text = format!(r#"{{"type":"room.join","room":"{room}"}}"#);
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    s.write_all(&frame).await.expect("write join");
    s
}

/// Reads a slow client's backlog, frame by frame, to the first close frame;
/// its code, or `None` if the stream ended without one.
async fn close_code_in_backlog(mut s: TcpStream) -> Option<u16> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    // At most 64 MiB are read (the backlog is a few MiB).
    for _ in 0..1024 {
        // Drop complete data frames; stop at a close frame.
        loop {
            if buf.len() < 2 {
                break;
            }
            let (hdr, len) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (4, u16::from_be_bytes([buf[2], buf[3]]) as usize),
                127 if buf.len() >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&buf[2..10]);
                    (10, u64::from_be_bytes(l) as usize)
                }
                126 | 127 => break,
                n => (2, n as usize),
            };
            if buf.len() < hdr + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[hdr], buf[hdr + 1]]));
            }
            buf.drain(..hdr + len);
        }
        let n = tokio::time::timeout(GUARD, s.read(&mut chunk))
            .await
            .expect("the backlog ends in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("backlog larger than 64 MiB");
}

/// Joins `room` and waits for the `3` acknowledging the join.
async fn fast_client(url: &str, room: &str) -> TestSocket {
    let mut ws = TestSocket::connect(url, &[]).await.expect("connect");
    ws.send_json(&json!({"type": "room.join", "room": room}))
        .await;
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    ws
}

fn slow_closes(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ori_slow_consumer_closes_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the slow-consumer counter in /metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_get_1013_and_fast_readers_lose_nothing() {
    let config = ori_demo::Config {
        outbound_queue_limit: 256 << 10,
        ..Default::default()
    };
    let server = testing::spawn(ori_demo::build(config)).await;
    let room = "slow-test";
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(slow_client(server.addr(), room).await);
    }
    let url = server.ws_url("/ws");
    let mut fast = Vec::new();
    for i in 0..FAST {
        let mut ws = fast_client(&url, room).await;
        fast.push(tokio::spawn(async move {
            let mut next = 0u64;
            loop {
                match ws.recv_within(GUARD).await.expect("the end marker in time") {
                    Received::Text(t) => {
                        let v: serde_json::Value = serde_json::from_str(&t).expect("JSON");
                        let msg = v["message"].as_str().expect("a notification");
                        let seq = msg.split(':').next().expect("seq");
                        if seq == "end" {
                            return next;
                        }
                        assert_eq!(seq.parse::<u64>().ok(), Some(next), "fast reader {i}");
                        next += 1;
                    }
                    other => panic!("fast reader {i}: unexpected {other:?}"),
                }
            }
        }));
    }
    // The slow clients' joins took effect: a fast client's `2`/`3` after
    // them proves nothing about other connections, so ask the server.
    let mut subscribers = None;
    for _ in 0..500 {
        subscribers =
            server.get(&format!("/api/topics/{room}")).await.json()["subscribers"].as_u64();
        if subscribers == Some((SLOW + FAST) as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        subscribers,
        Some((SLOW + FAST) as u64),
        "every client joined"
    );
    let before = slow_closes(&server.get("/metrics").await.text());

    // Publish until the server closed all slow clients (bounded).
    let padding = "x".repeat(16 << 10);
    let mut published = 0u64;
    while published < 5000 {
        let resp = server
            .post_json(
                &format!("/api/notify/{room}"),
                &json!({"message": format!("{published}:{padding}")}),
            )
            .await;
        assert_eq!(resp.status, 200);
        published += 1;
        if published % 20 == 0 {
            let closes = slow_closes(&server.get("/metrics").await.text()) - before;
            if closes >= SLOW as u64 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = server
        .post_json(&format!("/api/notify/{room}"), &json!({"message": "end"}))
        .await;
    assert_eq!(resp.status, 200);

    for f in fast {
        let got = tokio::time::timeout(GUARD, f)
            .await
            .expect("fast reader finished in time")
            .expect("fast reader");
        assert_eq!(got, published, "a fast reader received every notification");
    }
    let closes = slow_closes(&server.get("/metrics").await.text()) - before;
    assert_eq!(
        closes, SLOW as u64,
        "exactly the slow clients were closed for being slow"
    );
    for (i, s) in slow.into_iter().enumerate() {
        assert_eq!(
            close_code_in_backlog(s).await,
            Some(1013),
            "slow client {i}"
        );
    }
    server.stop().await;
}
