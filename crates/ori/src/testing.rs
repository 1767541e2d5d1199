//! Test helpers (feature `testing`): start an app on a free loopback port
//! and talk to it with a real WebSocket client and HTTP client, or unit-test
//! services against a recording emitter.
//!
//! ```no_run
//! use ori::{testing, Conn, Handlers, Ori};
//!
//! # async fn t() {
//! let server = testing::spawn(
//!     Ori::create()
//!         .websocket()
//!         .on_websocket(Handlers::new().on_open(|ws: Conn| async move {
//!             let _ = ws.subscribe("test");
//!         })),
//! )
//! .await;
//! let mut client = server.connect().await;
//! server.app().socket().publish("test", "hello").await.unwrap();
//! assert_eq!(client.recv_text().await, "hello");
//! server.stop().await;
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use ori_core::{
    Broker, Inbound, Message, Outgoing, Provider, ProviderError, Sent, SocketId, Target, Topic,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{App, AppContext, Emitter, Ori, SocketEmitter, WebSocketState};

pub use axum::http::Method;

/// How long the helpers wait for something to arrive before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running app on `127.0.0.1:<free port>`.
pub struct TestServer<E: Emitter = SocketEmitter> {
    app: App<E>,
    addr: SocketAddr,
}

/// Starts `ori` on a free loopback port. Panics if it fails to start.
pub async fn spawn<E: Emitter, W: WebSocketState>(ori: Ori<E, W>) -> TestServer<E> {
    let app = ori
        .listen("127.0.0.1:0")
        .await
        .expect("app failed to start");
    let addr = app.local_addr().expect("listening app has an address");
    TestServer { app, addr }
}

impl<E: Emitter> TestServer<E> {
    /// The running app.
    pub fn app(&self) -> &App<E> {
        &self.app
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Connects a WebSocket client to `/ws`. Panics on failure.
    pub async fn connect(&self) -> TestSocket {
        self.connect_to("/ws", &[])
            .await
            .expect("WebSocket connect failed")
    }

    /// Connects to `path` with extra request headers; the error carries the
    /// HTTP status of a refused upgrade.
    pub async fn connect_to(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestSocket, ConnectError> {
        TestSocket::connect(&self.ws_url(path), headers).await
    }

    /// Sends an HTTP request and reads the whole response.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> TestResponse {
        http_request(self.addr, method, path, headers, body.into()).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// Stops the app gracefully.
    pub async fn stop(&self) {
        self.app.stop().await
    }
}

/// A response read by [`TestServer::request`].
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON. Panics if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request over a fresh connection to `addr`.
pub async fn http_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> TestResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).expect("valid request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("HTTP response timed out")
        .expect("HTTP request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Why a test client could not connect.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status.
    Status(StatusCode),
    /// Anything else.
    Other(String),
}

/// What a test client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame (code, reason), or `None` when the stream ended without one.
    Close(Option<(u16, String)>),
}

/// A WebSocket client (tokio-tungstenite) for tests.
pub struct TestSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl TestSocket {
    /// Connects to `url` with extra request headers.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, ConnectError> {
        let mut req = url
            .into_client_request()
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        for (k, v) in headers {
            req.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| ConnectError::Other(e.to_string()))?,
                v.parse()
                    .map_err(|_| ConnectError::Other("bad header value".into()))?,
            );
        }
        match tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        {
            Err(_) => Err(ConnectError::Other("connect timed out".into())),
            Ok(Ok((ws, _))) => Ok(Self { ws }),
            Ok(Err(tungstenite::Error::Http(resp))) => Err(ConnectError::Status(resp.status())),
            Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
        }
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(tungstenite::Message::text(text.into()))
            .await
            .expect("send text");
    }

    /// Sends a JSON value as a text message.
    pub async fn send_json(&mut self, value: &serde_json::Value) {
        self.send_text(value.to_string()).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: impl Into<Vec<u8>>) {
        self.ws
            .send(tungstenite::Message::binary(data.into()))
            .await
            .expect("send binary");
    }

    /// Sends a close frame.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .ws
            .send(tungstenite::Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: reason.to_owned().into(),
            })))
            .await;
    }

    /// The next message or close within `timeout`; `None` on timeout.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            return Some(match next {
                None => Received::Close(None),
                Some(Err(_)) => Received::Close(None),
                Some(Ok(tungstenite::Message::Text(t))) => Received::Text(t.to_string()),
                Some(Ok(tungstenite::Message::Binary(b))) => Received::Binary(b.to_vec()),
                Some(Ok(tungstenite::Message::Close(c))) => {
                    Received::Close(c.map(|c| (u16::from(c.code), c.reason.to_string())))
                }
                Some(Ok(_)) => continue, // ping / pong / raw frames
            });
        }
    }

    /// The next message or close. Panics after [`WAIT`].
    pub async fn recv(&mut self) -> Received {
        self.recv_within(WAIT)
            .await
            .expect("nothing received in time")
    }

    /// The next message, which must be text.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Received::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message, which must be JSON text.
    pub async fn recv_json(&mut self) -> serde_json::Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Waits for the close frame, skipping messages; returns its code and
    /// reason (`None` if the stream ended without one).
    pub async fn expect_close(&mut self) -> Option<(u16, String)> {
        loop {
            if let Received::Close(c) = self.recv().await {
                return c;
            }
        }
    }

    /// Asserts that nothing arrives within `window`.
    pub async fn expect_silence(&mut self, window: Duration) {
        if let Some(got) = self.recv_within(window).await {
            panic!("expected no message, got {got:?}");
        }
    }

    /// The underlying tungstenite stream, for anything else.
    pub fn inner(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}

/// One operation a [`Recorder`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// `publish(topic, message)`.
    Publish(Topic, Message),
    /// `send(socket, message)`.
    Send(SocketId, Message),
    /// `broadcast(message)`.
    Broadcast(Message),
}

/// What a recording emitter was asked to do, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Every call so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The publishes so far, as (topic, text or lossy text of binary).
    pub fn published(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Recorded::Publish(t, m) => Some((
                    t.to_string(),
                    String::from_utf8_lossy(m.as_bytes()).into_owned(),
                )),
                _ => None,
            })
            .collect()
    }

    fn push(&self, call: Recorded) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }
}

/// A provider that carries nothing and records every publication handed
/// to it (each counted as reaching one receiver).
#[derive(Debug, Default)]
pub struct RecordingProvider {
    recorder: Recorder,
}

impl RecordingProvider {
    /// A new recording provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Its recorder.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }
}

impl Provider for RecordingProvider {
    async fn start(&self, _inbound: Inbound) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn stop(&self) {}
    async fn publish(&self, out: Outgoing<'_>) -> Result<Sent, ProviderError> {
        let message = out.message.clone();
        self.recorder.push(match out.target {
            Target::Topic(topic) => Recorded::Publish(topic.clone(), message),
            Target::Socket(id) => Recorded::Send(*id, message),
            Target::All => Recorded::Broadcast(message),
        });
        Ok(Sent::counted(1))
    }
    fn watch(&self, _target: &Target) {}
    fn unwatch(&self, _target: &Target) {}
}

/// An emitter of type `E` that records instead of delivering, for unit tests
/// of services (the app's custom emitter type works too).
///
/// ```
/// use ori::testing;
/// # futures_util::future::FutureExt::now_or_never(async {
/// let (emitter, recorder) = testing::recording_emitter::<ori::SocketEmitter>();
/// emitter.publish("alerts", "critical").await.unwrap();
/// assert_eq!(recorder.published(), vec![("alerts".into(), "critical".into())]);
/// # }).unwrap();
/// ```
pub fn recording_emitter<E: Emitter>() -> (E, Recorder) {
    let provider = RecordingProvider::new();
    let recorder = provider.recorder();
    let broker = Broker::new(provider);
    // The recording provider starts at once.
    let started = futures_util::FutureExt::now_or_never(broker.start());
    debug_assert!(matches!(started, Some(Ok(()))));
    (E::from_socket_emitter(SocketEmitter::new(broker)), recorder)
}

/// An [`AppContext`] around a recording emitter.
pub fn recording_context<E: Emitter>() -> (AppContext<E>, Recorder) {
    let (emitter, recorder) = recording_emitter::<E>();
    (AppContext::new(emitter), recorder)
}
