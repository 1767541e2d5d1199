//! What the client reports: its state, the frames it received, its events and errors.

use std::fmt;
use std::sync::Arc;

use ori_protocol::CloseCode;
use std::time::Duration;

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first connection attempt is under way.
    Connecting,
    /// The socket is open.
    Connected,
    /// Waiting for (or making) a reconnect attempt.
    Reconnecting,
    /// Not connected and not trying: closed, refused, or gave up.
    Disconnected,
}

/// A data frame received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(bytes::Bytes),
}

/// What happens to the connection, and every message received.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The socket opened; rooms were re-joined and the buffer flushed.
    Connected {
        /// True when this is not the client's first connection.
        reconnected: bool,
    },
    /// An open connection closed.
    Disconnected {
        /// The close code (1005 when the server sent none, 1006 when the
        /// connection dropped without a close frame, 4000 after a heartbeat
        /// timeout).
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// The server accepted the in-band authentication
    /// ([`ClientBuilder::auth_token`](crate::ClientBuilder::auth_token)):
    /// once per connection before [`Event::Connected`], then at every
    /// refresh.
    Authenticated {
        /// The socket's id on the server.
        socket_id: String,
        /// Seconds the credential holds (`None`: it does not expire).
        expires_in: Option<u64>,
        /// True for a refresh of a live connection.
        refreshed: bool,
    },
    /// A reconnect attempt is scheduled after `delay`.
    ReconnectAttempt {
        /// 1 for the first attempt after a disconnect.
        attempt: u32,
        /// The back-off delay before the attempt.
        delay: Duration,
    },
    /// A data frame from the server (everything but the `3` pong). The
    /// payload of a `room.message` envelope comes as its own `Message` too,
    /// right after the envelope.
    Message(Message),
    /// The server's `room.joined`: a room joined with positions, or resumed
    /// (PROTOCOL.md section 8).
    Joined {
        /// The room.
        room: String,
        /// The history's epoch (`None`: the room keeps no history).
        epoch: Option<String>,
        /// The room's latest offset when joined.
        offset: Option<u64>,
        /// For a resume: whether everything missed was replayed (`None` for
        /// a first join with positions).
        recovered: Option<bool>,
        /// How many publications the resume replays.
        missed: Option<u64>,
    },
    /// Once per connection, after every room joined with positions
    /// answered: which were recovered. The application re-fetches the
    /// state of a room that was not.
    Recovered {
        /// True when this is not the client's first connection.
        reconnected: bool,
        /// Each room joined with positions, and whether it was recovered
        /// (a first join counts as recovered: nothing was missed; a rejoin
        /// of a room without history does not).
        rooms: Vec<(String, bool)>,
    },
    /// A publication of a room joined with positions (its payload follows
    /// as [`Event::Message`] and reaches the typed handlers).
    RoomMessage {
        /// The room.
        room: String,
        /// Its offset in the room's history.
        offset: u64,
    },
    /// Something went wrong; the client carries on unless it says so.
    Error(ClientError),
}

/// Errors of the client (also reported as [`Event::Error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The URL or a header is not valid.
    #[error("invalid configuration: {what}")]
    Config {
        /// What is invalid (`url "..."`, `header "..."`).
        what: String,
        /// Why.
        #[source]
        cause: Cause,
    },
    /// A room name is not a topic a client may join.
    #[error("invalid room {room:?}: {reason}")]
    InvalidRoom {
        /// The room.
        room: String,
        /// Why.
        reason: String,
    },
    /// Data could not be serialized to JSON.
    #[error("cannot encode the message")]
    Encode(#[source] Cause),
    /// The client is closed (closed, refused with 1008/1011, or gave up).
    #[error("the client is closed")]
    Closed,
    /// A connection attempt failed.
    #[error("connection failed")]
    Connect(#[source] Cause),
    /// A connection attempt took longer than the connection timeout.
    #[error("connection timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// No pong (or any message) within the pong timeout; reconnecting.
    #[error("no pong within {0:?}; reconnecting")]
    HeartbeatTimeout(Duration),
    /// The server closed with a final code (1008, 1011); not reconnecting.
    #[error("connection closed by the server ({code} {reason}); not reconnecting")]
    Refused {
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
    },
    /// Reconnect attempts exhausted.
    #[error("gave up reconnecting after {0} attempts")]
    GaveUp(u32),
    /// The send buffer was full; the oldest message was dropped.
    #[error("send buffer full ({0}); dropped the oldest message")]
    BufferFull(usize),
    /// The token source failed, or gave no token within the connection
    /// timeout; reconnecting.
    #[error("no token for the in-band authentication")]
    TokenUnavailable(#[source] Cause),
    /// The server did not answer `auth.authenticate` within the connection
    /// timeout; reconnecting.
    #[error("no reply to auth.authenticate within {0:?}")]
    AuthTimeout(Duration),
    /// The server sent `{"type":"error","message":...}`.
    #[error("server error: {0}")]
    Server(String),
}

/// Why a [`Client::request`](crate::Client::request) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The server replied with an `error` (`Forbidden`, `Validation failed: ...`, ...).
    #[error("{message}")]
    Server {
        /// The request's message type.
        ty: String,
        /// The reply's `error`.
        message: String,
    },
    /// No reply in time.
    #[error("request {ty} timed out after {timeout:?}")]
    Timeout {
        /// The request's message type.
        ty: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection closed after the request went out, or the client is closed.
    #[error("connection closed before the reply to {ty}")]
    Closed {
        /// The request's message type.
        ty: String,
    },
    /// The data could not be serialized.
    #[error("cannot encode the request")]
    Encode(#[source] Cause),
}

/// The cause of a [`ClientError`]: shared, because every
/// [`Client::events`](crate::Client::events) stream gets its own copy of
/// an event, and compared by what it says.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(Arc::from(e.into()))
    }

    /// The error itself (downcast it to the library's type when needed).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}
