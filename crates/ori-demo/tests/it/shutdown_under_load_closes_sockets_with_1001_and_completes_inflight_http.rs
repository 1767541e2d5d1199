//! Graceful shutdown of the `ori-demo` binary under load: 500 sockets in a
//! room, a publisher publishing, and an HTTP request in flight (headers and
//! half of its body sent) when SIGTERM arrives. Every socket gets close
//! 1001, the in-flight request completes with its 2xx once the rest of its
//! body arrives, and the process exits 0. A request held open past the
//! grace period does not keep the process alive: it exits (status 0) once
//! `--shutdown-timeout` has passed, and the held connection is dropped
//! without a response.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::DemoProcess;
use ori::testing::{Received, TestSocket};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SOCKETS: usize = 500;
/// Hang guard for any single wait.
const GUARD: Duration = Duration::from_secs(30);

/// A POST /api/notify request whose body is sent in two parts: the head
/// and the first half now, the rest on [`finish`](Self::finish). The head
/// carries `Expect: 100-continue`, and `begin` returns once the server
/// answered `100 Continue`: the handler is then reading the body, so the
/// request is in flight for sure.
struct SlowPost {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl SlowPost {
    async fn begin(addr: SocketAddr, topic: &str) -> Self {
        let body = json!({"message": "sent across the shutdown"}).to_string();
        let head = format!(
            "POST /api/notify/{topic} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let half = body.len() / 2;
        stream.write_all(head.as_bytes()).await.expect("write head");
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") && interim.len() < 1024 {
            let n = tokio::time::timeout(GUARD, stream.read(&mut byte))
                .await
                .expect("100 Continue in time")
                .expect("read");
            assert_eq!(n, 1, "connection closed before 100 Continue: {interim:?}");
            interim.push(byte[0]);
        }
        assert!(
            interim.starts_with(b"HTTP/1.1 100"),
            "{:?}",
            String::from_utf8_lossy(&interim)
        );
        stream
            .write_all(&body.as_bytes()[..half])
            .await
            .expect("write half the body");
        Self {
            stream,
            rest: body.as_bytes()[half..].to_vec(),
        }
    }

    /// Sends the rest of the body; the response's status line and body.
    async fn finish(mut self) -> String {
        self.stream
            .write_all(&self.rest)
            .await
            .expect("write the rest");
        self.read_response().await
    }

    /// Everything the server sends until it closes the connection.
    async fn read_response(mut self) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(GUARD, self.stream.read_to_end(&mut out))
            .await
            .expect("the server ends the connection in time");
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// One POST over a fresh connection; the status, or `None` if the server
/// refused or dropped it (expected once shutdown began).
async fn publish(addr: SocketAddr, topic: &str, n: u64) -> Option<u16> {
    let body = json!({"message": n.to_string()}).to_string();
    let req = format!(
        "POST /api/notify/{topic} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    std::str::from_utf8(out.get(9..12)?).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_closes_every_socket_with_1001_and_completes_the_inflight_request() {
    let t0 = std::time::Instant::now();
    let mut demo = DemoProcess::start(&["--shutdown-timeout", "20"]).await;
    let addr = demo.socket_addr();
    let url = format!("ws://{addr}/ws");
    let room = "load";
    // Joined concurrently, so that 500 joins take little time.
    let joins: Vec<_> = (0..SOCKETS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut ws = TestSocket::connect(&url, &[]).await.expect("connect");
                ws.send_json(&json!({"type": "room.join", "room": room}))
                    .await;
                ws.send_text("2").await;
                assert_eq!(ws.recv_text().await, "3");
                ws
            })
        })
        .collect();
    let mut sockets = Vec::new();
    for j in joins {
        sockets.push(j.await.expect("join"));
    }
    // Every socket reads until its close frame.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut notifications = 0u64;
                loop {
                    match ws
                        .recv_within(GUARD)
                        .await
                        .expect("the close frame in time")
                    {
                        Received::Text(_) => notifications += 1,
                        Received::Close(c) => return (c, notifications),
                        Received::Binary(_) => panic!("unexpected binary message"),
                    }
                }
            })
        })
        .collect();
    // The publisher keeps publishing until the server stops answering.
    let published = Arc::new(AtomicU64::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (published, running) = (published.clone(), running.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(SeqCst) && n < 1_000_000 {
                match publish(addr, room, n).await {
                    Some(200) => {
                        published.fetch_add(1, SeqCst);
                    }
                    Some(status) => panic!("publish answered {status}"),
                    None => break,
                }
                n += 1;
            }
        })
    };
    for _ in 0..1000 {
        if published.load(SeqCst) >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(published.load(SeqCst) >= 20, "the publisher is publishing");

    eprintln!("{:?}: {SOCKETS} sockets joined, publishing", t0.elapsed());
    let inflight = SlowPost::begin(addr, room).await;
    demo.sigterm();

    for r in readers {
        let (close, _) = tokio::time::timeout(GUARD, r)
            .await
            .expect("socket closed in time")
            .expect("reader");
        assert_eq!(close, Some((1001, "Server shutting down".to_owned())));
    }
    eprintln!("{:?}: every socket got 1001", t0.elapsed());
    let response = inflight.finish().await;
    eprintln!("{:?}: the in-flight request completed", t0.elapsed());
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the in-flight request completes: {response:?}"
    );
    assert!(response.contains(r#"{"sent":true}"#), "{response:?}");
    running.store(false, SeqCst);
    let _ = tokio::time::timeout(GUARD, publisher).await;

    let status = tokio::time::timeout(GUARD, demo.child.wait())
        .await
        .expect("exits within the grace period (hang guard)")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    eprintln!("{:?}: exited", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_past_the_grace_period_does_not_keep_the_process_alive() {
    let mut demo = DemoProcess::start(&["--shutdown-timeout", "1"]).await;
    let addr = demo.socket_addr();
    let mut ws = TestSocket::connect(&format!("ws://{addr}/ws"), &[])
        .await
        .expect("connect");
    ws.send_text("2").await;
    assert_eq!(ws.recv_text().await, "3");
    let held = SlowPost::begin(addr, "held").await;
    demo.sigterm();
    assert_eq!(
        ws.expect_close().await,
        Some((1001, "Server shutting down".to_owned()))
    );
    // The rest of the body never comes: the process exits anyway once the
    // grace period is over, and exits 0 (the shutdown itself succeeded; the
    // timeout is logged as a warning).
    let status = tokio::time::timeout(GUARD, demo.child.wait())
        .await
        .expect("exits after the grace period (hang guard)")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // The held connection was dropped without a response.
    assert_eq!(held.read_response().await, "");
}
