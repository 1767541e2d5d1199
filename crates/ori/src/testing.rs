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
//! // Returns once `on_open` has run: the socket is subscribed.
//! let mut client = server.connect().await;
//! server.app().socket().publish("test", "hello").await.unwrap();
//! assert_eq!(client.recv_text().await, "hello");
//! // The client answers the server's close while it is alive: no wait.
//! server.stop().await;
//! # }
//! ```
//!
//! The helpers that panic (a connection refused, nothing received in time,
//! a message of the wrong kind) report the line of the test's `.await`,
//! not a line of this module.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use crate::{App, Emitter, Ori, SocketEmitter, WebSocketState};

mod http;
mod recorder;
mod socket;

pub use self::http::{http_request, Method, TestResponse};
pub use self::recorder::{
    recording_context, recording_emitter, Recorded, Recorder, RecordingProvider,
};
pub use self::socket::{ConnectError, Received, TestSocket, READ_AHEAD, SYNC_PING};

/// How long the helpers wait for something to arrive before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running app on `127.0.0.1:<free port>`.
pub struct TestServer<E: Emitter = SocketEmitter> {
    app: App<E>,
    addr: SocketAddr,
}

/// Starts `ori` on a free loopback port. Panics if it fails to start.
pub fn spawn<E: Emitter, W: WebSocketState>(
    ori: Ori<E, W>,
) -> impl Future<Output = TestServer<E>> + Send {
    checked(async move {
        let app = ori
            .listen("127.0.0.1:0")
            .await
            .map_err(|e| format!("app failed to start: {e}"))?;
        let addr = app.local_addr().ok_or("listening app has no address")?;
        Ok(TestServer { app, addr })
    })
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

    /// Connects a WebSocket client to `/ws` and waits until the connection
    /// is open (see [`TestSocket::connect`]). Panics on failure.
    pub fn connect(&self) -> impl Future<Output = TestSocket> + Send + '_ {
        checked(async move {
            self.connect_to("/ws", &[])
                .await
                .map_err(|e| format!("WebSocket connect failed: {e}"))
        })
    }

    /// Connects to `path` with extra request headers (see
    /// [`TestSocket::connect`]); the error carries the HTTP status of a
    /// refused upgrade.
    pub async fn connect_to(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestSocket, ConnectError> {
        TestSocket::connect(&self.ws_url(path), headers).await
    }

    /// Connects to `path` with extra request headers and returns once the
    /// WebSocket handshake is done, without waiting for the open (see
    /// [`TestSocket::handshake`]).
    pub async fn handshake(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestSocket, ConnectError> {
        TestSocket::handshake(&self.ws_url(path), headers).await
    }

    /// Sends an HTTP request and reads the whole response. Panics if there
    /// is no response within [`WAIT`].
    pub fn request<'a>(
        &'a self,
        method: Method,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: impl Into<Bytes>,
    ) -> impl Future<Output = TestResponse> + Send + 'a {
        let body = body.into();
        checked(self::http::exchange(self.addr, method, path, headers, body))
    }

    /// `GET path`.
    pub fn get<'a>(&'a self, path: &'a str) -> impl Future<Output = TestResponse> + Send + 'a {
        self.request(Method::GET, path, &[], Bytes::new())
    }

    /// `POST path` with a JSON body.
    pub fn post_json<'a>(
        &'a self,
        path: &'a str,
        body: &serde_json::Value,
    ) -> impl Future<Output = TestResponse> + Send + 'a {
        self.request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
    }

    /// Stops the app gracefully. A live [`TestSocket`] answers the server's
    /// close at once, read or not, unless [`READ_AHEAD`] bytes of messages
    /// wait for the test in it.
    pub async fn stop(&self) {
        self.app.stop().await
    }
}

/// A helper's future: what it failed with becomes a panic at the `.await`
/// that polls it (`poll` tracks its caller, which is the awaiting code).
struct Checked<'a, T> {
    inner: Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>,
}

fn checked<'a, T>(inner: impl Future<Output = Result<T, String>> + Send + 'a) -> Checked<'a, T> {
    Checked {
        inner: Box::pin(inner),
    }
}

impl<T> Future for Checked<'_, T> {
    type Output = T;

    #[track_caller]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(Ok(value)) => Poll::Ready(value),
            Poll::Ready(Err(failure)) => panic!("{failure}"),
            Poll::Pending => Poll::Pending,
        }
    }
}
