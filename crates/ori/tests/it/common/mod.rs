//! Helpers shared by the integration tests: a small text command protocol
//! for WebSocket handlers, bounded waits, a raw WebSocket client for cases
//! tungstenite cannot express (a reader that never reads, hand-made frames),
//! and metric parsing.
//!
//! Each test binary compiles this module on its own and uses a subset of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ori::testing::{self, Received, TestServer, TestSocket};
use ori::{Conn, Emitter, Handlers, Message, Ori, SocketId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// A custom emitter with one domain method, for the tests of what reaches
/// the app's emitter.
#[derive(Clone)]
pub struct AccountEmitter(ori::SocketEmitter);

impl Emitter for AccountEmitter {
    fn from_socket_emitter(base: ori::SocketEmitter) -> Self {
        Self(base)
    }
    fn socket_emitter(&self) -> &ori::SocketEmitter {
        &self.0
    }
}

impl AccountEmitter {
    /// Publishes `data` to `account:<account>`.
    pub async fn emit_to_account(
        &self,
        account: &str,
        data: serde_json::Value,
    ) -> Result<(), ori::PublishError> {
        self.publish(format!("account:{account}"), data.to_string())
            .await
    }
}

/// The longest any helper waits for something to happen.
pub const WAIT: Duration = testing::WAIT;

/// Message handlers speaking a tiny text protocol, so tests can drive a
/// connection's server side from the client:
///
/// - `sub:<topic>` subscribes, then replies `subscribed:<topic>` (or
///   `error:<reason>`); the reply proves the subscription is in place.
/// - `unsub:<topic>` unsubscribes, replies `unsubscribed:<topic>` (or `error:`).
/// - `whoami` replies the connection's socket id.
/// - `data` replies the `Debug` form of the upgrade handler's user data.
/// - `panic` panics inside the handler.
/// - `kick` closes the connection with 4001 "kicked".
/// - `close:<code>:<reason>` closes the connection with that code and reason.
/// - `noop` does nothing.
/// - anything else, text or binary, is echoed back unchanged.
pub fn command_handlers<D: std::fmt::Debug + Send + Sync + 'static, E: ori::Emitter>(
) -> Handlers<D, E> {
    Handlers::new().on_message(|ws: Conn<D, E>, msg: Message| async move {
        let Some(text) = msg.as_text() else {
            ws.send(msg);
            return;
        };
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
        } else if text == "data" {
            ws.send(format!("{:?}", ws.data()));
        } else if text == "panic" {
            panic!("handler panicked on purpose");
        } else if text == "kick" {
            ws.close(4001, "kicked");
        } else if let Some((code, reason)) =
            text.strip_prefix("close:").and_then(|r| r.split_once(':'))
        {
            ws.close(code.parse::<u16>().expect("close:<code>:<reason>"), reason);
        } else if text == "noop" {
        } else {
            ws.send(msg);
        }
    })
}

/// An app with WebSocket support and [`command_handlers`].
pub fn command_app() -> Ori {
    Ori::create().websocket().on_websocket(command_handlers())
}

/// A running [`command_app`].
pub async fn command_server() -> TestServer {
    testing::spawn(command_app()).await
}

/// The next text message, panicking on anything else.
pub async fn next_text(ws: &mut TestSocket) -> String {
    match ws.recv().await {
        Received::Text(t) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Sends `command` and waits for the text reply `expected`, skipping other
/// text messages (publishes that arrive meanwhile). Panics on a close, on
/// an `error:` reply, or after [`WAIT`].
pub async fn request_reply(ws: &mut TestSocket, command: &str, expected: &str) {
    ws.send_text(command).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ws.recv_within(left).await {
            Some(Received::Text(t)) if t == expected => return,
            Some(Received::Text(t)) if t.starts_with("error:") => panic!("{command:?} failed: {t}"),
            Some(Received::Text(_)) => {}
            other => panic!("waiting for {expected:?} after {command:?}, got {other:?}"),
        }
    }
}

/// Subscribes the connection to `topic` and waits until it is in effect.
pub async fn subscribe(ws: &mut TestSocket, topic: &str) {
    request_reply(ws, &format!("sub:{topic}"), &format!("subscribed:{topic}")).await;
}

/// Unsubscribes the connection from `topic` and waits until it is in effect.
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
    let text = next_text(ws).await;
    text.parse()
        .unwrap_or_else(|e| panic!("whoami reply {text:?} is not a socket id: {e}"))
}

/// Sends `command` and returns the next text reply.
pub async fn ask(ws: &mut TestSocket, command: &str) -> String {
    ws.send_text(command).await;
    next_text(ws).await
}

/// After the server's close frame was received: lets tungstenite send its
/// close reply and waits for the server to end the stream, so the server
/// side finishes without waiting for its close timeout.
pub async fn finish_close(ws: &mut TestSocket) {
    match ws.recv_within(WAIT).await {
        Some(Received::Close(None)) => {}
        other => panic!("expected the stream to end after the close handshake, got {other:?}"),
    }
}

/// Ends the clients' TCP connections and stops the server, which then has
/// no close handshake to wait for; panics if stopping takes over 2 s.
pub async fn stop_server<E: Emitter>(server: &TestServer<E>, clients: Vec<TestSocket>) {
    drop(clients);
    tokio::time::timeout(Duration::from_secs(2), server.stop())
        .await
        .expect("stop finished promptly");
}

/// Polls `cond` every few milliseconds until it holds; panics naming `what`
/// after [`WAIT`]. Sleeps here only pace the polling.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the app has exactly `n` connections.
pub async fn wait_for_connections<E: Emitter>(app: &ori::App<E>, n: usize) {
    wait_until(&format!("the app has {n} connection(s)"), || {
        app.connection_count() == n
    })
    .await;
}

/// Waits until `topic` has exactly `n` local subscribers.
pub async fn wait_for_subscribers<E: Emitter>(app: &ori::App<E>, topic: &str, n: usize) {
    let topic = ori::Topic::new(topic).expect("valid topic");
    let emitter = app.socket().socket_emitter().clone();
    wait_until(&format!("{topic} has {n} subscriber(s)"), || {
        emitter.subscriber_count(&topic) == n
    })
    .await;
}

/// A metric's value in [`ori::metrics::render`] output.
pub fn metric(emitter: &ori::SocketEmitter, name: &str) -> u64 {
    let text = ori::metrics::render(emitter);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().expect("numeric metric"))
        })
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

/// `n` as a fixed-width decimal, so numbered payloads sort and parse simply.
pub fn seq(n: u64) -> String {
    format!("{n:010}")
}

/// The sequence number at the start of a numbered payload.
pub fn parse_seq(payload: &str) -> u64 {
    payload
        .get(..10)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not a numbered payload: {:?}",
                &payload[..payload.len().min(40)]
            )
        })
}

/// Encodes one masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// One frame read by [`RawWs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// RSV1: compressed (permessage-deflate).
    pub rsv1: bool,
    /// Opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// For a close frame: its code and reason.
    pub fn close(&self) -> Option<(u16, String)> {
        if self.opcode != 8 || self.payload.len() < 2 {
            return None;
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        Some((
            code,
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        ))
    }
}

/// Sends `request` as is on a new connection; returns the status, the head, and the body (read
/// to its `Content-Length`; a response to `HEAD` has none).
pub async fn http_exchange(addr: SocketAddr, request: String) -> (u16, String, String) {
    let head_request = request.starts_with("HEAD ");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head[9..12].parse().expect("status code");
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let len = if head_request { 0 } else { len };
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("body in time")
            .expect("read");
        assert!(n > 0, "closed inside the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    (status, head, body)
}

/// A WebSocket client written by hand on a plain TCP stream: it reads only
/// when told to, and can send frames tungstenite would not.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The client key of RFC 6455's example handshake and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl RawWs {
    /// Performs the opening handshake on `path`. `recv_buffer` sets the
    /// client's kernel receive buffer (small values make a stalled reader
    /// back up sooner).
    pub async fn connect(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> Self {
        Self::connect_with_early_data(addr, path, recv_buffer, &[]).await
    }

    /// Like [`connect`](Self::connect), sending `early` (for example whole
    /// frames) in the same write as the handshake request, before the
    /// server's answer.
    pub async fn connect_with_early_data(
        addr: SocketAddr,
        path: &str,
        recv_buffer: Option<u32>,
        early: &[u8],
    ) -> Self {
        Self::connect_with(addr, path, recv_buffer, early, &[])
            .await
            .0
    }

    /// Like [`connect`](Self::connect) with extra request headers; also
    /// returns the response head (to read `Sec-WebSocket-Extensions`).
    pub async fn connect_with_headers(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Self, String) {
        Self::connect_with(addr, path, None, &[], headers).await
    }

    /// The handshake with all of the above: a receive buffer, early bytes
    /// and extra headers; also returns the response head.
    pub async fn connect_with(
        addr: SocketAddr,
        path: &str,
        recv_buffer: Option<u32>,
        early: &[u8],
        headers: &[(&str, &str)],
    ) -> (Self, String) {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let mut stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        let mut first_write = request.into_bytes();
        first_write.extend_from_slice(early);
        stream
            .write_all(&first_write)
            .await
            .expect("write handshake");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
                .await
                .expect("handshake response timed out")
                .expect("read handshake");
            assert!(n > 0, "connection closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        assert!(head.contains(ACCEPT), "wrong Sec-WebSocket-Accept: {head}");
        buf.drain(..end);
        (Self { stream, buf }, head)
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_bytes(&client_frame(fin, opcode, payload)).await;
    }

    /// Sends raw bytes (for malformed frames).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write frame");
    }

    /// Sends raw bytes; the error if the server has closed the connection.
    pub async fn send_bytes_fallible(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends a text message in one frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, 1, text.as_bytes()).await;
    }

    /// Sends a close frame with `code`.
    pub async fn send_close(&mut self, code: u16) {
        self.send_frame(true, 8, &code.to_be_bytes()).await;
    }

    async fn fill(&mut self, need: usize, deadline: Instant) -> Result<(), String> {
        while self.buf.len() < need {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| format!("timed out with {} of {need} bytes buffered", self.buf.len()))?
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "stream ended with {} of {need} bytes buffered",
                    self.buf.len()
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// Reads the next (unmasked, server) frame. `Err` describes an early end
    /// of stream, a timeout, or a malformed frame.
    pub async fn read_frame(&mut self, timeout: Duration) -> Result<RawFrame, String> {
        let deadline = Instant::now() + timeout;
        self.fill(2, deadline).await?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        // RSV1: a compressed message (permessage-deflate), left to the test.
        if b0 & 0x30 != 0 || b1 & 0x80 != 0 {
            return Err(format!("malformed server frame header {b0:#04x} {b1:#04x}"));
        }
        let (len, header) = match b1 & 0x7F {
            126 => {
                self.fill(4, deadline).await?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10, deadline).await?;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(raw) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let opcode = b0 & 0x0F;
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Err(format!("malformed server frame: opcode {opcode}"));
        }
        self.fill(header + len, deadline).await?;
        let payload = self.buf[header..header + len].to_vec();
        self.buf.drain(..header + len);
        Ok(RawFrame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode,
            payload,
        })
    }

    /// The next text message's payload (panics on anything else).
    pub async fn read_text(&mut self) -> String {
        let frame = self.read_frame(WAIT).await.expect("read frame");
        assert_eq!(frame.opcode, 1, "expected a text frame, got {frame:?}");
        String::from_utf8(frame.payload).expect("UTF-8 text")
    }
}
