//! `ori-client`: a Rust WebSocket client for Ori servers, the Rust
//! counterpart of the TypeScript client in `clients/ts` (see
//! `docs/PROTOCOL.md`).
//!
//! - rooms joined with [`Client::join_room`] are re-joined after every
//!   reconnect; rooms joined with [`Client::join_room_resumable`] are
//!   resumed where the last connection left off, so what was published
//!   meanwhile is replayed when the server keeps history
//!   ([`Event::Recovered`] says per room whether it was);
//! - typed messages with the same definitions the server uses
//!   ([`Definition`], [`ServerMessage`], [`JoinRoom`], ... from the light
//!   `ori-protocol` crate, re-exported here and as [`protocol`]; the client
//!   does not depend on the server framework): [`Client::emit`]
//!   sends them flat (`{"type", ...data}`), [`Client::on`] receives envelopes
//!   `{"name","data","timestamp"}` and flat `{"type",...}` messages;
//! - [`Client::request`] calls a socket-router route and matches the reply by
//!   correlation id;
//! - reconnect with full-jitter exponential back-off ([`Backoff`]), no
//!   reconnect after close 1008 or 1011 (but see [`ClientBuilder::auth_token`]), a connection timeout, a `2`/`3`
//!   heartbeat whose missing pong forces a reconnect;
//! - messages sent while disconnected are buffered (bounded) and flushed on
//!   connect;
//! - [`Client::events`]: a stream of [`Event`]s.
//!
//! The client does not offer permessage-deflate (tungstenite, its WebSocket
//! library, has no support for it): servers that compress send it plain
//! frames.
//!
//! ```no_run
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use ori_client::{Client, ServerMessage};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, schemars::JsonSchema)]
//! struct Notification { message: String }
//! static NOTIFICATION: ServerMessage<Notification> = ServerMessage::define("notification");
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("ws://127.0.0.1:3000/ws")
//!     .header("authorization", "Bearer secret")
//!     .build()?;
//! let mut notifications = client.on(&NOTIFICATION);
//! client.join_room("lobby")?;
//! let reply = client
//!     .request("publish", &serde_json::json!({"topic": "lobby", "message": "hi"}), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(reply, serde_json::json!({"published": true}));
//! let n = notifications.next().await.unwrap();
//! assert_eq!(n.message, "hi");
//! # Ok(()) }
//! ```
//!
//! The client runs as a background tokio task owning the socket; [`Client`]
//! is a cheap handle to it. The task ends when [`Client::close`] is called,
//! when every handle is dropped, after a close 1008/1011, or when the
//! reconnect attempts are exhausted.

mod actor;
mod auth;
mod backoff;
mod builder;
mod events;

pub use backoff::Backoff;
pub use builder::ClientBuilder;
pub(crate) use builder::Config;
pub use events::{Cause, ClientError, ConnectionState, Event, Message, RequestError};

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use ori_protocol::messages::{
    ClientTopic, Definition, Heartbeat, HeartbeatData, JoinData, JoinRoom, LeaveRoom, RoomData,
    ServerMessage, Since,
};

pub use ori_protocol::{self as protocol, CloseCode};

pub(crate) struct Pending {
    ty: String,
    reply: oneshot::Sender<Result<Value, RequestError>>,
    /// The connection the request went out on.
    sent_on: Option<u64>,
}

pub(crate) struct State {
    conn: ConnectionState,
    rooms: BTreeSet<String>,
    /// The latest position of each room joined with positions.
    positions: HashMap<String, (String, u64)>,
    handlers: HashMap<String, Vec<mpsc::UnboundedSender<Value>>>,
    events: Vec<mpsc::UnboundedSender<Event>>,
    first_events: Option<mpsc::UnboundedReceiver<Event>>,
    /// Feeds `first_events` until `events()` takes it (with a count, bounded
    /// by [`PRELUDE_MAX`]).
    prelude: Option<(mpsc::UnboundedSender<Event>, usize)>,
    pending: HashMap<String, Pending>,
    buffered: usize,
}

pub(crate) struct Shared {
    config: Config,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn event(&self, event: Event) {
        let mut st = self.lock();
        st.events.retain(|tx| tx.send(event.clone()).is_ok());
        if let Some((tx, count)) = &mut st.prelude {
            if *count < PRELUDE_MAX && tx.send(event).is_ok() {
                *count += 1;
            } else {
                // Nobody asked for events: stop keeping them.
                st.prelude = None;
                st.first_events = None;
            }
        }
    }
}

/// How many events the client keeps for a first [`Client::events`] call.
const PRELUDE_MAX: usize = 256;

/// What the handle asks the background task to do.
pub(crate) enum Command {
    Send {
        text: String,
        correlation: Option<String>,
    },
    /// A room, and whether it is joined with positions.
    Join(String, bool),
    Leave(String),
    Close,
}

/// A handle to the connection (cheap to clone; every clone drives the same
/// socket).
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shared.config.url)
            .field("state", &self.state())
            .finish()
    }
}

impl Client {
    /// Starts building a client for `url` (`ws://host:port/ws`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url.into())
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.shared.lock().conn
    }

    /// The rooms this client is in (re-joined after every reconnect).
    pub fn rooms(&self) -> Vec<String> {
        self.shared.lock().rooms.iter().cloned().collect()
    }

    /// Messages waiting for a connection.
    pub fn buffered(&self) -> usize {
        self.shared.lock().buffered
    }

    fn command(&self, cmd: Command) -> Result<(), ClientError> {
        self.tx.send(cmd).map_err(|_| ClientError::Closed)
    }

    /// Joins `room` now (or on the next connect), and again after every
    /// reconnect. Joining a room twice does nothing.
    pub fn join_room(&self, room: &str) -> Result<(), ClientError> {
        self.join(room, false)
    }

    /// Joins `room` with positions (PROTOCOL.md section 8): the client
    /// tracks the room's latest offset and after every reconnect resumes
    /// with `since`, so what was published meanwhile is replayed first
    /// when the server still has it. [`Event::Joined`] and
    /// [`Event::Recovered`] tell whether it was; [`Client::position`]
    /// is what the next resume sends.
    pub fn join_room_resumable(&self, room: &str) -> Result<(), ClientError> {
        self.join(room, true)
    }

    fn join(&self, room: &str, positions: bool) -> Result<(), ClientError> {
        ClientTopic::new(room).map_err(|e| ClientError::InvalidRoom {
            room: room.to_owned(),
            reason: e.to_string(),
        })?;
        self.command(Command::Join(room.to_owned(), positions))?;
        self.shared.lock().rooms.insert(room.to_owned());
        Ok(())
    }

    /// The latest position (epoch, offset) seen in a room joined with
    /// positions.
    pub fn position(&self, room: &str) -> Option<(String, u64)> {
        self.shared.lock().positions.get(room).cloned()
    }

    /// Leaves `room` (nothing is buffered: a new connection starts in no room).
    pub fn leave_room(&self, room: &str) -> Result<(), ClientError> {
        self.command(Command::Leave(room.to_owned()))?;
        self.shared.lock().rooms.remove(room);
        Ok(())
    }

    /// Sends `{"type": def.name(), ...data}` (flat, as the original browser
    /// client does); data that is not an object goes as `{"type", "data"}`,
    /// `null` as `{"type"}`. Buffered while disconnected.
    pub fn emit<D: Definition>(&self, def: &D, data: &D::Data) -> Result<(), ClientError> {
        let text = flat(def.name(), data)?;
        self.send_raw(text)
    }

    /// Sends `value` as JSON (buffered while disconnected).
    pub fn send_json(&self, value: &Value) -> Result<(), ClientError> {
        self.send_raw(value.to_string())
    }

    /// Sends a text frame as is (buffered while disconnected).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.command(Command::Send {
            text: text.into(),
            correlation: None,
        })
    }

    /// Receives the data of `def`'s messages: envelopes
    /// `{"name","data","timestamp"}` named `def.name()` give their `data`,
    /// flat messages `{"type",...}` with that `type` the whole object.
    /// Messages that do not deserialize into `D::Data` are skipped. Dropping
    /// the stream unsubscribes.
    pub fn on<D: Definition>(&self, def: &D) -> Subscription<D::Data> {
        Subscription {
            rx: self.on_name(def.name()),
            data: PhantomData,
        }
    }

    /// Like [`on`](Self::on), untyped: the raw JSON of messages named `name`.
    pub fn on_name(&self, name: &str) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .lock()
            .handlers
            .entry(name.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    /// A stream of [`Event`]s. The first call gets the events since
    /// [`build`](ClientBuilder::build) (so the first `Connected` is never
    /// missed; up to 256 are kept until then); later calls get the events
    /// from then on. The stream ends when the client's task ends.
    pub fn events(&self) -> EventStream {
        let mut st = self.shared.lock();
        if let Some(rx) = st.first_events.take() {
            if let Some((tx, _)) = st.prelude.take() {
                st.events.push(tx);
            }
            return EventStream { rx };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Once the task has ended, the stream ends right away.
        if !self.tx.is_closed() {
            st.events.push(tx);
        }
        EventStream { rx }
    }

    /// Calls the socket-router route `ty`: sends
    /// `{"type","data","correlationId"}` (buffered while disconnected) and
    /// returns the reply's `data`; fails with the reply's `error`, after
    /// `timeout`, or when the connection closes after the request went out.
    pub async fn request(
        &self,
        ty: &str,
        data: &impl Serialize,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let data = serde_json::to_value(data).map_err(|e| RequestError::Encode(Cause::new(e)))?;
        let id = uuid::Uuid::new_v4().to_string();
        let text = serde_json::json!({"type": ty, "data": data, "correlationId": id}).to_string();
        let (reply, rx) = oneshot::channel();
        self.shared.lock().pending.insert(
            id.clone(),
            Pending {
                ty: ty.to_owned(),
                reply,
                sent_on: None,
            },
        );
        if self
            .command(Command::Send {
                text,
                correlation: Some(id.clone()),
            })
            .is_err()
        {
            self.shared.lock().pending.remove(&id);
            return Err(RequestError::Closed { ty: ty.to_owned() });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::Closed { ty: ty.to_owned() }),
            Err(_) => {
                // Also keeps a still buffered request from being sent later.
                self.shared.lock().pending.remove(&id);
                Err(RequestError::Timeout {
                    ty: ty.to_owned(),
                    timeout,
                })
            }
        }
    }

    /// Closes the connection (1000) and ends the background task; pending
    /// requests fail with [`RequestError::Closed`]. Later sends fail with
    /// [`ClientError::Closed`].
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close);
    }

    /// True once the background task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// `{"type": name, ...data}`.
fn flat(name: &str, data: &impl Serialize) -> Result<String, ClientError> {
    ori_protocol::wire::flat(name, data).map_err(|e| ClientError::Encode(Cause::new(e)))
}

/// The typed messages of one definition, from [`Client::on`].
#[derive(Debug)]
pub struct Subscription<T> {
    rx: mpsc::UnboundedReceiver<Value>,
    data: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next message (`None` once the client's task has ended).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_next_item(cx)).await
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(v)) => {
                    if let Ok(t) = serde_json::from_value(v) {
                        return Poll::Ready(Some(t));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().poll_next_item(cx)
    }
}

/// The client's [`Event`]s, from [`Client::events`].
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event (`None` once the client's task has ended).
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for EventStream {
    type Item = Event;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_within_the_exponential_ceiling() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            max_attempts: None,
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_millis(1000));
        assert_eq!(b.ceiling(1000), Duration::from_millis(1000));
        assert_eq!(b.delay(2, 0.0), Duration::ZERO);
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(200));
    }

    #[test]
    fn emit_is_flat() {
        assert_eq!(
            flat("room.join", &serde_json::json!({"room": "r"})).unwrap(),
            r#"{"type":"room.join","room":"r"}"#
        );
        assert_eq!(
            flat("heartbeat", &HeartbeatData {}).unwrap(),
            r#"{"type":"heartbeat"}"#
        );
        assert_eq!(flat("x", &()).unwrap(), r#"{"type":"x"}"#);
        assert_eq!(flat("x", &[1]).unwrap(), r#"{"type":"x","data":[1]}"#);
    }

    #[test]
    fn errors_carry_their_cause_as_source_and_compare_by_it() {
        use std::error::Error as _;
        let Err(e) = Client::builder("no scheme here").build() else {
            panic!("an invalid url is refused");
        };
        let ClientError::Config { what, cause } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(what, "url \"no scheme here\"");
        assert_eq!(
            e.to_string(),
            "invalid configuration: url \"no scheme here\""
        );
        assert_eq!(e.source().map(|s| s.to_string()), Some(cause.to_string()));
        assert_eq!(
            e.clone(),
            e,
            "a clone (another events() stream's copy) is equal"
        );
        let a = ClientError::Encode(Cause::new("x"));
        assert_eq!(a, ClientError::Encode(Cause::new("x")));
        assert_ne!(a, ClientError::Encode(Cause::new("y")));
    }
}
