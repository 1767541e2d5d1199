//! The WebSocket client of the test helpers: tokio-tungstenite, its stream
//! read by a task of its own so that the socket answers the server's pings
//! and close at once, whether the test reads it or not.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, protocol::CloseFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{checked, WAIT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// What the reader task read: a message or the error that ended the stream.
type Item = Result<tungstenite::Message, tungstenite::Error>;

/// The payload of the ping with which [`TestSocket::connect`] and
/// [`TestSocket::sync`] wait for the server; an `on_ping` handler sees it.
pub const SYNC_PING: &[u8] = b"ori-testing sync";

/// How many bytes of messages a [`TestSocket`] reads ahead of the test;
/// past them it stops reading until the test takes some.
pub const READ_AHEAD: usize = 1 << 20;

/// Why a test client could not connect.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered the upgrade with this HTTP status.
    Status(StatusCode),
    /// Anything else.
    Other(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "upgrade refused with {status}"),
            Self::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConnectError {}

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
///
/// Its stream is read in the background from the moment it connects, up to
/// [`READ_AHEAD`] bytes of messages ahead of the test: within that, pings
/// and the server's close are answered at once (so [`TestServer::stop`]
/// does not wait for a socket the test never reads), and what arrives is
/// kept, in order, until the test asks for it. Past it, the socket stops
/// reading until the test takes messages, as a slow client does (and
/// answers nothing meanwhile): a socket the test leaves unread while the
/// server floods it is a slow consumer.
/// Dropping the socket ends its TCP connection without a close frame.
///
/// [`TestServer::stop`]: super::TestServer::stop
pub struct TestSocket {
    sink: SplitSink<Ws, tungstenite::Message>,
    /// What the reader task read and the test has not taken yet.
    incoming: Inbox,
    /// Read while waiting for a [`SYNC_PING`]'s pong: taken before `incoming`.
    kept: VecDeque<Item>,
    reader: JoinHandle<()>,
    local_addr: SocketAddr,
}

impl Drop for TestSocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl TestSocket {
    /// Connects to `url` with extra request headers, then waits until the
    /// connection is open, as [`sync`](Self::sync) does: the server runs the
    /// connection guards and `on_open` before it reads any frame, so the
    /// pong comes after them. Once this returns, the socket is in the topics
    /// `on_open` joined, and what `on_open` sent is there for
    /// [`recv`](Self::recv). A connection refused after the upgrade (a
    /// connection guard's 1008) is returned too: its close is the first
    /// thing `recv` and [`expect_close`](Self::expect_close) see.
    ///
    /// A socket pending in-band authentication (`WsOptions::authenticate`)
    /// answers pings before it is open: then this only guarantees that the
    /// server reads its frames; after its `auth.authenticate`, a `sync`
    /// returns once the connection is open (or closed).
    ///
    /// The server counts the pong among the frames it wrote
    /// (`ori_messages_out_total`), and an `on_ping` handler sees the ping.
    /// [`handshake`](Self::handshake) connects without it.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, ConnectError> {
        let mut socket = Self::handshake(url, headers).await?;
        socket.settle().await.map_err(ConnectError::Other)?;
        Ok(socket)
    }

    /// Connects to `url` with extra request headers and returns once the
    /// WebSocket handshake is done, without waiting for the open: the
    /// server may still be running the connection guards and `on_open`
    /// ([`sync`](Self::sync) waits for them).
    pub async fn handshake(url: &str, headers: &[(&str, &str)]) -> Result<Self, ConnectError> {
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
        let ws = match tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async_with_config(req, None, true),
        )
        .await
        {
            Err(_) => return Err(ConnectError::Other("connect timed out".into())),
            Ok(Ok((ws, _))) => ws,
            Ok(Err(tungstenite::Error::Http(resp))) => {
                return Err(ConnectError::Status(resp.status()))
            }
            Ok(Err(e)) => return Err(ConnectError::Other(e.to_string())),
        };
        let local_addr = match ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.local_addr(),
            _ => return Err(ConnectError::Other("only plain TCP is supported".into())),
        }
        .map_err(|e| ConnectError::Other(e.to_string()))?;
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(READ_AHEAD));
        let incoming = Inbox {
            rx,
            room: room.clone(),
        };
        let reader = tokio::spawn(async move {
            // Reading is what answers pings and the server's close.
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                // Past the read-ahead, the stream waits for the test.
                if let Ok(permit) = room.acquire_many(weight(&item)).await {
                    permit.forget();
                }
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Self {
            sink,
            incoming,
            kept: VecDeque::new(),
            reader,
            local_addr,
        })
    }

    /// The client's own address (the peer address the server sees).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has handled every frame sent before: sends a
    /// ping ([`SYNC_PING`]) and waits for its pong, which the server sends
    /// only after that. What arrives before the pong is kept for
    /// [`recv`](Self::recv). Returns early if the connection closes (the
    /// close is kept too). Panics if there is no pong within [`WAIT`].
    pub fn sync(&mut self) -> impl Future<Output = ()> + Send + '_ {
        checked(self.settle())
    }

    /// [`sync`](Self::sync), its failure as a message.
    async fn settle(&mut self) -> Result<(), String> {
        let ended = |item: &Item| matches!(item, Err(_) | Ok(tungstenite::Message::Close(_)));
        if self.kept.iter().any(ended) {
            return Ok(());
        }
        let ping = tungstenite::Message::Ping(SYNC_PING.into());
        if self.sink.send(ping).await.is_err() {
            // Closing or closed: what the reader read says how.
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let item = match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Err(_) => return Err(format!("the server did not answer a ping within {WAIT:?}")),
                Ok(None) => return Ok(()),
                Ok(Some(item)) => item,
            };
            match item {
                Ok(tungstenite::Message::Pong(payload)) if payload == SYNC_PING => return Ok(()),
                item => {
                    let end = ended(&item);
                    self.kept.push_back(item);
                    if end {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Sends a text message. Once the connection is closing or closed (the
    /// server may close it at any time) the message is dropped, as a
    /// browser drops what it sends then; any other failure panics.
    pub fn send_text(&mut self, text: impl Into<String>) -> impl Future<Output = ()> + Send + '_ {
        let message = tungstenite::Message::text(text.into());
        checked(async move { sent(self.sink.send(message).await, "text") })
    }

    /// Sends a JSON value as a text message (dropped once the connection
    /// is closing, like [`send_text`](Self::send_text)).
    pub fn send_json(&mut self, value: &serde_json::Value) -> impl Future<Output = ()> + Send + '_ {
        self.send_text(value.to_string())
    }

    /// Sends a binary message (dropped once the connection is closing,
    /// like [`send_text`](Self::send_text)).
    pub fn send_binary(
        &mut self,
        data: impl Into<Vec<u8>>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let message = tungstenite::Message::binary(data.into());
        checked(async move { sent(self.sink.send(message).await, "binary") })
    }

    /// Sends a close frame (errors are ignored: the connection may be gone).
    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = self
            .sink
            .send(tungstenite::Message::Close(Some(CloseFrame {
                code: code.into(),
                reason: reason.to_owned().into(),
            })))
            .await;
    }

    /// Sends any tungstenite message: a ping, a close without a code, ...
    pub async fn send_message(&mut self, message: tungstenite::Message) -> tungstenite::Result<()> {
        self.sink.send(message).await
    }

    /// The next thing read, of any kind (pings and pongs included, which
    /// the `recv` helpers skip); `None` once the stream ended. Waits as long
    /// as it takes.
    pub async fn next_message(
        &mut self,
    ) -> Option<Result<tungstenite::Message, tungstenite::Error>> {
        match self.kept.pop_front() {
            Some(item) => Some(item),
            None => self.incoming.recv().await,
        }
    }

    /// The next message or close within `timeout`; `None` on timeout.
    pub async fn recv_within(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let item = match self.kept.pop_front() {
                Some(item) => Some(item),
                None => tokio::time::timeout_at(deadline, self.incoming.recv())
                    .await
                    .ok()?,
            };
            return Some(match item {
                None | Some(Err(_)) => Received::Close(None),
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
    pub fn recv(&mut self) -> impl Future<Output = Received> + Send + '_ {
        checked(self.next_received())
    }

    /// The next message, which must be text. Panics otherwise, or after [`WAIT`].
    pub fn recv_text(&mut self) -> impl Future<Output = String> + Send + '_ {
        checked(self.next_text())
    }

    /// The next message, which must be JSON text. Panics otherwise, or
    /// after [`WAIT`].
    pub fn recv_json(&mut self) -> impl Future<Output = serde_json::Value> + Send + '_ {
        checked(async move {
            let text = self.next_text().await?;
            serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
        })
    }

    /// Waits for the close frame, skipping messages; returns its code and
    /// reason (`None` if the stream ended without one). Panics after [`WAIT`]
    /// without a close.
    pub fn expect_close(&mut self) -> impl Future<Output = Option<(u16, String)>> + Send + '_ {
        checked(async move {
            loop {
                if let Received::Close(c) = self.next_received().await? {
                    return Ok(c);
                }
            }
        })
    }

    /// Asserts that nothing arrives within `window`.
    pub fn expect_silence(&mut self, window: Duration) -> impl Future<Output = ()> + Send + '_ {
        checked(async move {
            match self.recv_within(window).await {
                Some(got) => Err(format!("expected no message, got {got:?}")),
                None => Ok(()),
            }
        })
    }

    async fn next_received(&mut self) -> Result<Received, String> {
        self.recv_within(WAIT)
            .await
            .ok_or_else(|| format!("nothing received within {WAIT:?}"))
    }

    async fn next_text(&mut self) -> Result<String, String> {
        match self.next_received().await? {
            Received::Text(t) => Ok(t),
            other => Err(format!("expected a text message, got {other:?}")),
        }
    }
}

/// What the reader task read, and the room it has left to read ahead.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Item>,
    room: Arc<Semaphore>,
}

impl Inbox {
    /// The next item read; taking it gives its room back to the reader.
    async fn recv(&mut self) -> Option<Item> {
        let item = self.rx.recv().await?;
        self.room.add_permits(weight(&item) as usize);
        Some(item)
    }
}

/// The read-ahead room an item takes: its payload, at most all of it.
fn weight(item: &Item) -> u32 {
    let len = match item {
        Ok(message) => message.len(),
        Err(_) => 0,
    };
    len.min(READ_AHEAD) as u32
}

/// A send's outcome: fine, or dropped because the connection is closing
/// or closed; any other failure is the test's.
fn sent(result: tungstenite::Result<()>, kind: &str) -> Result<(), String> {
    use tungstenite::error::{Error, ProtocolError};
    match result {
        Ok(())
        | Err(Error::ConnectionClosed)
        | Err(Error::AlreadyClosed)
        | Err(Error::Protocol(ProtocolError::SendAfterClosing)) => Ok(()),
        Err(e) => Err(format!("sending a {kind} message failed: {e}")),
    }
}
