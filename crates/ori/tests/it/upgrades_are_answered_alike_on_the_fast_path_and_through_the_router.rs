//! The app's accept loop answers an upgrade request that arrives whole in
//! its first read itself (the fast path), and leaves any other to hyper and
//! the router. Either way the same request gets the same answer, the
//! upgrade handler sees the same request, and the socket works the same,
//! early frames included. A head longer than the first read always takes
//! the router's path; the fast path's answers carry no `date` header,
//! hyper's do, which tells the paths apart here.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{client_frame, command_handlers, http_exchange, RawWs, WAIT};
use ori::testing::{self, TestServer};
use ori::{InProcProvider, Ori, WsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What the upgrade handler was given: the URI and the headers but the
/// padding.
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// An app accepting `?token=ok`, recording every request its upgrade
/// handler sees, with one allowed origin.
async fn server(seen: Seen) -> TestServer {
    let options = WsOptions::new()
        .allowed_origins(["https://ok.example"])
        .upgrade(move |req| {
            let headers = req
                .headers
                .iter()
                .filter(|(name, _)| name.as_str() != "x-pad")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            seen.lock().unwrap().push((req.uri.to_string(), headers));
            let ok = req.query_param("token").as_deref() == Some("ok");
            std::future::ready(ok.then(|| "user".to_owned()))
        });
    testing::spawn(
        Ori::create()
            .websocket_with(InProcProvider::new(), options)
            .on_websocket(command_handlers()),
    )
    .await
}

/// Padding that makes a head longer than the accept loop's first read.
fn pad() -> String {
    "p".repeat(6000)
}

/// Sends `request` (padded when `slow`); returns the status, the response
/// head (lower case), and the body.
async fn exchange(addr: SocketAddr, request: &str, slow: bool) -> (u16, String, String) {
    let request = match slow {
        true => request.replacen("\r\n", &format!("\r\nX-Pad: {}\r\n", pad()), 1),
        false => request.to_owned(),
    };
    let (status, head, body) = http_exchange(addr, request).await;
    (status, head.to_ascii_lowercase(), body)
}

fn request(target: &str, headers: &[&str]) -> String {
    let mut r = format!("GET {target} HTTP/1.1\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r + "\r\n"
}

fn dated(head: &str) -> bool {
    head.lines().any(|l| l.starts_with("date:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_same_on_both_paths() {
    let seen = Seen::default();
    let server = server(seen.clone()).await;
    let addr = server.addr();
    let host = format!("Host: {addr}");
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let valid = vec![
        host.as_str(),
        "Upgrade: websocket",
        "Connection: Upgrade",
        key.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    let with = |extra: &'static str| {
        let mut h = valid.clone();
        h.push(extra);
        h
    };
    let without = |name: &str| -> Vec<&str> {
        valid
            .iter()
            .copied()
            .filter(|h| !h.starts_with(name))
            .collect()
    };
    let version_8: Vec<&str> = without("Sec-WebSocket-Version")
        .into_iter()
        .chain(["Sec-WebSocket-Version: 8"])
        .collect();
    let cases: Vec<(&str, String, u16)> = vec![
        ("no token", request("/ws", &valid), 401),
        ("wrong token", request("/ws?token=no", &valid), 401),
        (
            "foreign origin",
            request("/ws?token=ok", &with("Origin: https://evil.example")),
            403,
        ),
        ("version 8", request("/ws?token=ok", &version_8), 426),
        (
            "no key",
            request("/ws?token=ok", &without("Sec-WebSocket-Key")),
            400,
        ),
        ("no host", request("/ws?token=ok", &without("Host")), 400),
        (
            "not an upgrade",
            request("/ws?token=ok", &without("Upgrade")),
            400,
        ),
    ];
    for (what, req, status) in cases {
        let (fast_status, fast_head, fast_body) = exchange(addr, &req, false).await;
        let (slow_status, slow_head, slow_body) = exchange(addr, &req, true).await;
        assert!(!dated(&fast_head), "{what}: not the fast path: {fast_head}");
        assert!(dated(&slow_head), "{what}: not the router: {slow_head}");
        assert_eq!(fast_status, status, "{what}: {fast_head}");
        assert_eq!(slow_status, status, "{what}: {slow_head}");
        assert_eq!(fast_body, slow_body, "{what}");
        assert!(fast_body.starts_with("{\"error\":"), "{what}: {fast_body}");
        for head in [&fast_head, &slow_head] {
            assert_eq!(
                head.contains("sec-websocket-version: 13"),
                status == 426,
                "{what}: {head}"
            );
        }
    }
    assert_eq!(server.app().connection_count(), 0);
    // The handler saw the requests it was asked about, alike.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0], seen[1], "no token: fast and router alike");
    assert_eq!(seen[2], seen[3], "wrong token: fast and router alike");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_works_the_same_on_both_paths_early_frames_included() {
    let seen = Seen::default();
    let server = server(seen.clone()).await;
    let addr = server.addr();
    let early = [
        client_frame(true, 1, b"data"),
        client_frame(true, 1, b"hello"),
    ]
    .concat();
    let pad = pad();
    for slow in [false, true] {
        let mut headers = vec![("X-Trace", "abc")];
        if slow {
            headers.push(("X-Pad", pad.as_str()));
        }
        let (mut ws, head) =
            RawWs::connect_with(addr, "/ws?token=ok", None, &early, &headers).await;
        let head = head.to_ascii_lowercase();
        assert_eq!(dated(&head), slow, "path taken: {head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        assert!(head.contains("connection: upgrade"), "{head}");
        // The frames sent with the request are read, in order, as the
        // first messages, with the handler's user data.
        assert_eq!(ws.read_text().await, "\"user\"");
        assert_eq!(ws.read_text().await, "hello");
        ws.send_text("again").await;
        assert_eq!(ws.read_text().await, "again");
        ws.send_close(1000).await;
        let close = ws.read_frame(WAIT).await.expect("close echoed");
        assert_eq!(close.close().map(|(code, _)| code), Some(1000));
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the handler saw the same request");
    assert_eq!(seen[0].0, "/ws?token=ok");
    assert!(seen[0].1.contains(&("x-trace".into(), "abc".into())));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_fast_path_declines_hyper_answers_with_the_bytes_read() {
    let server = server(Seen::default()).await;
    let addr = server.addr();
    // Two requests in the first read, the second asking to close: both
    // answered, in order, on the one connection.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /ws/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("both answered in time")
        .expect("read");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 404 ").count(), 2, "{out}");
    // A target the `http` types refuse is hyper's 400 on either path, never
    // an upgrade.
    let host = format!("Host: {addr}");
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let headers = [
        host.as_str(),
        "Upgrade: websocket",
        "Connection: Upgrade",
        key.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    for slow in [false, true] {
        let (status, head, _) = exchange(addr, &request("/ws?token=ok&a<b", &headers), slow).await;
        assert_eq!(status, 400, "{head}");
    }
    assert_eq!(server.app().connection_count(), 0);
    server.stop().await;
    // Also where no upgrade handler needs the request built.
    let plain = common::command_server().await;
    let host = format!("Host: {}", plain.addr());
    let headers: Vec<&str> = [host.as_str()]
        .into_iter()
        .chain(headers[1..].iter().copied())
        .collect();
    for slow in [false, true] {
        let (status, head, _) = exchange(plain.addr(), &request("/ws?a<b", &headers), slow).await;
        assert_eq!(status, 400, "{head}");
    }
    assert_eq!(plain.app().connection_count(), 0);
    plain.stop().await;
}
