//! HTTP connections that have not become WebSockets are bounded: a body
//! must arrive within the request timeout (408, connection closed), a
//! request head within the header-read timeout, and at most
//! `max_http_connections` are open at once (one over it is closed at once,
//! counted).

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{metric, WAIT};
use ori::{Controller, HttpError, Json, Ori, RequestContext, RouteBuilder};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Echo;

impl Controller for Echo {
    fn configure(&self, r: &mut RouteBuilder<Self>) {
        r.post("/echo", Self::echo);
    }
}

impl Echo {
    async fn echo(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
        let body: Value = ctx.json().await?;
        Ok(Json(body))
    }
}

fn app() -> Ori {
    Ori::create()
        .websocket()
        .controller("/api", Echo)
        .request_timeout(Duration::from_millis(300))
        .header_read_timeout(Duration::from_millis(300))
        .max_http_connections(4)
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(s: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_is_answered_408_and_its_connection_closed() {
    let server = ori::testing::spawn(app()).await;
    let (mut reader, mut s) = TcpStream::connect(server.addr())
        .await
        .unwrap()
        .into_split();
    s.write_all(
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"a\":",
    )
    .await
    .unwrap();
    // A byte every 50 ms: the body would take 5 s.
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if s.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let (response, ()) = tokio::join!(read_to_close(&mut reader), trickle);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains(r#"{"error":"Request body not received in time"}"#),
        "{response}"
    );
    assert_eq!(
        metric(server.app().socket(), "ori_http_request_timeouts_total"),
        1
    );
    // A body that arrives in time is answered.
    let ok = server.post_json("/api/echo", &json!({"a": 1})).await;
    assert_eq!((ok.status.as_u16(), ok.json()), (200, json!({"a": 1})));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_closed_at_the_header_read_timeout() {
    let server = ori::testing::spawn(app()).await;
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(b"GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    read_to_close(&mut s).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let server = ori::testing::spawn(app().header_read_timeout(Duration::from_secs(60))).await;
    // Four silent connections: each sent part of a request head.
    let mut silent = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        silent.push(s);
    }
    let emitter = server.app().socket().clone();
    common::wait_until("the four to be open", || {
        metric(&emitter, "ori_http_connections") == 4
    })
    .await;
    assert_eq!(metric(&emitter, "ori_http_connections_refused_total"), 0);
    // The fifth is closed without an answer, and counted. (It sends
    // nothing: bytes unread at the close would turn the FIN into a reset.)
    let mut fifth = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(read_to_close(&mut fifth).await, "");
    assert!(metric(server.app().socket(), "ori_http_connections_refused_total") >= 1);
    // Once they go, requests are served again.
    drop(silent);
    common::wait_until("the silent ones to be gone", || {
        metric(&emitter, "ori_http_connections") == 0
    })
    .await;
    let r = server.post_json("/api/echo", &json!({"b": 2})).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"b": 2})));
    server.stop().await;
}
