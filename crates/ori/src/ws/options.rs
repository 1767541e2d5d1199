//! WebSocket options: path, upgrade (authentication) handler and limits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::auth::{auth_fn, join_fn, AuthFn, AuthRequest, Authenticated, IntoUpgrade, JoinFn};
use super::limits::{InboundRate, Limits};
use super::{Conn, Upgrade};
use crate::BoxFuture;
use axum::http::{HeaderMap, Method, Uri};
use ori_core::Topic;

pub(crate) type UpgradeFn<D> =
    Arc<dyn Fn(UpgradeRequest) -> BoxFuture<'static, Upgrade<D>> + Send + Sync>;

/// What the upgrade handler sees of the HTTP upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The request method (always GET for a valid upgrade).
    pub method: Method,
    /// The request URI, query included.
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The peer's address, when known.
    pub remote_addr: Option<SocketAddr>,
}

impl UpgradeRequest {
    /// A copy of `req` that owns its bytes, for a socket that keeps it while
    /// pending: the parsed request's URI and header values share the HTTP
    /// connection's whole read buffer, which must not live as long as the
    /// socket; the copy also holds no spare header capacity.
    pub(crate) fn detached<B>(
        req: &axum::http::Request<B>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        let mut headers = HeaderMap::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            if let Ok(copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), copy);
            }
        }
        Self {
            method: req.method().clone(),
            uri: req
                .uri()
                .to_string()
                .parse()
                .unwrap_or_else(|_| req.uri().clone()),
            headers,
            remote_addr,
        }
    }

    /// A header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::http::query_param(self.uri.query()?, name)
    }
}

/// Options of [`Ori::websocket_options`](crate::Ori::websocket_options) and
/// [`Ori::websocket_with`](crate::Ori::websocket_with).
///
/// `D` is the type of per-connection user data the upgrade handler returns.
///
/// ```
/// use ori::WsOptions;
///
/// #[derive(Clone)]
/// struct User { id: String }
///
/// let options = WsOptions::new()
///     .path("/socket")
///     .upgrade(|req| async move {
///         let token = req.bearer_token()?;
///         (token == "secret").then(|| User { id: "u1".into() })
///     });
/// ```
pub struct WsOptions<D = ()> {
    pub(crate) path: String,
    pub(crate) upgrade: Option<UpgradeFn<D>>,
    pub(crate) authenticator: Option<AuthFn<D>>,
    pub(crate) authorize_join: Option<JoinFn<D>>,
    pub(crate) limits: Limits,
    pub(crate) history: Option<ori_core::HistoryConfig>,
    /// A set-up mistake, reported by `listen` as a build error.
    pub(crate) error: Option<&'static str>,
}

/// Carries a handler over a change of the user data type: kept when the
/// type is the same, else dropped and the mistake recorded.
fn retype<A: 'static, B: 'static>(
    value: Option<A>,
    error: &mut Option<&'static str>,
    mistake: &'static str,
) -> Option<B> {
    let value = value?;
    match (Box::new(value) as Box<dyn std::any::Any>).downcast::<B>() {
        Ok(b) => Some(*b),
        Err(_) => {
            error.get_or_insert(mistake);
            None
        }
    }
}

const DATA_MISMATCH: &str = "WsOptions: the upgrade handler and the authenticator must return the same user data type, and authorize_join() comes after both";

impl WsOptions<()> {
    /// Defaults: path `/ws`, every upgrade accepted with `()` as user data.
    pub fn new() -> Self {
        Self {
            path: "/ws".into(),
            upgrade: None,
            authenticator: None,
            authorize_join: None,
            limits: Limits::default(),
            history: None,
            error: None,
        }
    }
}

impl Default for WsOptions<()> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Send + Sync + 'static> WsOptions<D> {
    /// The endpoint path (default `/ws`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The upgrade handler: runs before the upgrade and decides (see
    /// [`IntoUpgrade`]): `Some(data)` accepts with the connection's user
    /// data, `None` rejects with HTTP 401; an [`Upgrade`] can also accept
    /// with an expiring credential or leave the socket pending in-band
    /// authentication. A handler slower than the upgrade timeout also
    /// gives 401 (and is logged).
    pub fn upgrade<F, Fut>(self, handler: F) -> WsOptions<<Fut::Output as IntoUpgrade>::Data>
    where
        F: Fn(UpgradeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoUpgrade,
    {
        let mut error = self.error;
        WsOptions {
            path: self.path,
            upgrade: Some(Arc::new(move |req| {
                Box::pin(futures_util::FutureExt::map(
                    handler(req),
                    IntoUpgrade::into_upgrade,
                ))
            })),
            authenticator: retype(self.authenticator, &mut error, DATA_MISMATCH),
            authorize_join: retype(self.authorize_join, &mut error, DATA_MISMATCH),
            limits: self.limits,
            history: self.history,
            error,
        }
    }

    /// In-band authentication (PROTOCOL.md section 9): the authenticator a
    /// socket answers to with `{"type":"auth.authenticate", ...credentials}`.
    ///
    /// Without an upgrade handler every upgrade is accepted *pending*; with
    /// one, those it answers [`Upgrade::Pending`]. A pending socket is in no
    /// topic, gets no broadcast, is not counted as a connection and has
    /// every other message answered `{"type":"error","message":"Not
    /// authenticated"}` (the `2` ping is answered `3`). When the
    /// authenticator accepts, the socket gets the `auth.authenticated`
    /// envelope, then its connection guards and `open` run as for a socket
    /// authenticated at the upgrade. A refusal (`None`) closes with 1008
    /// "Authentication failed"; no message within the
    /// [`auth_timeout`](Self::auth_timeout) closes with 1008
    /// "Authentication timeout".
    ///
    /// A live socket may send `auth.authenticate` again at any time: a
    /// refresh of an expiring credential (see [`Authenticated::expires_in`];
    /// the user data stays that of the first authentication). While an
    /// authenticator is set, messages of this type never reach routers or
    /// the message handler.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ori::{Authenticated, WsOptions};
    ///
    /// #[derive(Clone)]
    /// struct User { id: String }
    ///
    /// let options = WsOptions::new().authenticate(|req| async move {
    ///     let user = match req.token()? {
    ///         "token-of-u1" => User { id: "u1".into() },
    ///         _ => return None,
    ///     };
    ///     Some(Authenticated::new(user).expires_in(Duration::from_secs(900)))
    /// });
    /// ```
    pub fn authenticate<D2, F, Fut>(self, authenticator: F) -> WsOptions<D2>
    where
        D2: Send + Sync + 'static,
        F: Fn(AuthRequest<D2>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Authenticated<D2>>> + Send + 'static,
    {
        let mut error = self.error;
        WsOptions {
            path: self.path,
            upgrade: retype(self.upgrade, &mut error, DATA_MISMATCH),
            authenticator: Some(auth_fn(authenticator)),
            authorize_join: retype(self.authorize_join, &mut error, DATA_MISMATCH),
            limits: self.limits,
            history: self.history,
            error,
        }
    }

    /// How long a pending socket may take to authenticate in band, and an
    /// authenticator to answer (default 5 s).
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.limits.auth_timeout = timeout;
        self
    }

    /// Offers permessage-deflate (RFC 7692) to clients that ask for it
    /// (browsers always do); off by default. See [`Compression`](super::Compression).
    pub fn compression(mut self, compression: super::Compression) -> Self {
        self.limits.compression = Some(compression);
        self
    }

    /// Largest message a socket pending in-band authentication may send
    /// (default 64 KiB, at most [`max_message_size`](Self::max_message_size);
    /// larger closes with 1009): an unauthenticated peer cannot make the
    /// server buffer and parse large messages. Once authenticated the
    /// usual limits apply.
    pub fn auth_message_limit(mut self, bytes: usize) -> Self {
        self.limits.auth_message_limit = bytes;
        self
    }

    /// The join authorization: consulted for every join a client asks for
    /// (a registry's [`JoinRoom`](crate::messages::JoinRoom) and any
    /// definition that names a topic to join, a router's
    /// `ctx.subscribe`), with the connection (its user data) and the topic.
    /// `false` refuses: nothing is joined and the client is told
    /// `Forbidden: <topic>` (the registry's error reply, the router's
    /// `error`). Joins made by the server itself
    /// ([`Conn::subscribe`](crate::Conn::subscribe),
    /// [`Conn::join`](crate::Conn::join)) are not affected.
    ///
    /// The check's connection is typed with the base emitter (the options
    /// are written before the app's emitter type is known): `ws.app()`
    /// gives the app's services all the same.
    ///
    /// ```
    /// use ori::{Conn, WsOptions};
    ///
    /// let options = WsOptions::new()
    ///     .upgrade(|req| async move { req.query_param("user") })
    ///     .authorize_join(|ws: Conn<String>, topic| async move {
    ///         match topic.as_str().strip_prefix("user:") {
    ///             Some(owner) => owner == ws.data().as_str(),
    ///             None => true,
    ///         }
    ///     });
    /// ```
    pub fn authorize_join<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn(Conn<D>, Topic) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.authorize_join = Some(join_fn(check));
        self
    }

    /// How long the upgrade handler may take (default 5 s).
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.limits.upgrade_timeout = timeout;
        self
    }

    /// Largest frame payload accepted, in bytes (default 16 MiB; exactly the
    /// maximum is allowed). Larger frames close the connection with 1009.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Largest message accepted after joining fragments (default 16 MiB).
    /// Larger messages close the connection with 1009.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// Largest number of fragments of one message (default 131072).
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.limits.max_fragments = count;
        self
    }

    /// Bytes that may wait in one connection's outbound queue (default
    /// 4 MiB). A reader that falls further behind is closed with 1013.
    pub fn outbound_queue_limit(mut self, bytes: usize) -> Self {
        self.limits.outbound_queue_limit = bytes;
        self
    }

    /// Bytes that may wait in the outbound queues of all connections of
    /// this instance together (default 8 MiB): the bound on how far
    /// delivery may fall behind publishing.
    ///
    /// A publish (`publish`, `send`, `broadcast`, typed `emit`) first waits
    /// while more than this is queued, then queues one shared frame per
    /// subscriber and returns; so under overload the publishers (HTTP
    /// handlers, services, the Redis provider's reader) slow down to the
    /// pace of delivery instead of the queues growing, and a fast reader's
    /// message waits about `budget / write rate` at most. A publish that
    /// waits longer than [`publish_timeout`](Self::publish_timeout) fails
    /// with [`PublishError::Overloaded`](crate::PublishError::Overloaded)
    /// (HTTP 503 from a controller). Bytes are counted per subscriber: a
    /// 100-byte message queued to 1,000 connections counts 100,000, though
    /// it is stored once. The bound is exceeded by at most one fan-out per
    /// publisher admitted while there was room.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ori::WsOptions;
    /// let options = WsOptions::new()
    ///     .outbound_budget(8 << 20)
    ///     .publish_timeout(Duration::from_secs(2))
    ///     .shed_slowest_after(Duration::from_millis(100));
    /// ```
    pub fn outbound_budget(mut self, bytes: usize) -> Self {
        self.limits.budget.bytes = bytes;
        self
    }

    /// Keeps history for the topics `history` selects, so that sockets can
    /// join with positions and resume after a reconnect without losing
    /// anything ([`Conn::join`](crate::Conn::join); PROTOCOL.md section 8).
    /// Off by default: without it every join is raw and nothing is kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ori::core::HistoryConfig;
    /// use ori::WsOptions;
    ///
    /// let options = WsOptions::new()
    ///     .history(HistoryConfig::new(100).ttl(Duration::from_secs(300)));
    /// ```
    pub fn history(mut self, history: ori_core::HistoryConfig) -> Self {
        self.history = Some(history);
        self
    }

    /// How long a publish waits for room in the outbound budget before it
    /// fails with [`PublishError::Overloaded`](crate::PublishError::Overloaded)
    /// (default 5 s).
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.limits.budget.publish_timeout = timeout;
        self
    }

    /// How old a connection's backlog may get while the outbound budget is
    /// spent and a publisher waits (default 250 ms). Every this often the
    /// waiters scan the queues; a connection that did not even drain what
    /// it held at the previous scan (its reader stopped, or trickles) is
    /// closed with 1013, largest queue first, until the budget has room.
    /// So a few readers that stopped cannot stall every publisher, and a
    /// reader that keeps up is never closed, however much is queued to it.
    pub fn shed_slowest_after(mut self, after: Duration) -> Self {
        self.limits.budget.shed_after = after;
        self
    }

    /// Most simultaneous connections on this instance; later upgrades get
    /// HTTP 503 (default 1,048,576).
    pub fn max_connections(mut self, count: usize) -> Self {
        self.limits.max_connections = count;
        self
    }

    /// Most topics one connection may join (default 1024).
    pub fn max_topics_per_connection(mut self, count: usize) -> Self {
        self.limits.max_topics_per_connection = count;
        self
    }

    /// Interval of server pings to quiet connections (default 30 s; `None`
    /// disables them).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.limits.ping_interval = interval;
        self
    }

    /// A connection from which nothing (not even a pong) arrives for this
    /// long is closed with 1001 (default 75 s). What counts is a completed
    /// message, or a control frame outside a fragmented message: a frame
    /// or a fragmented message that is still arriving after this long is
    /// closed the same way, however many bytes (or fragments, or pings)
    /// trickle in meanwhile. Silence is counted in whole periods of the
    /// connection's timer (the smaller of the ping interval and this), so
    /// the close comes at most two periods late, never early.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// Whether the server answers the text message `2` (the clients'
    /// application-level ping, PROTOCOL.md section 2) with `3` itself,
    /// before routers, the registry or the raw handler see it (default
    /// `true`). Turn it off to handle `2` in your own `message` handler
    /// (without one, a registry answers it as an invalid message). A
    /// socket still pending in-band authentication is answered `3`
    /// whatever the setting (PROTOCOL.md section 9).
    pub fn answer_text_ping(mut self, answer: bool) -> Self {
        self.limits.answer_text_ping = answer;
        self
    }

    /// How long to wait for the peer's close frame after sending ours
    /// (default 3 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.limits.close_timeout = timeout;
        self
    }

    /// Limits every connection to `per_second` inbound data messages per
    /// second, with bursts of up to `burst` (default: no limit).
    ///
    /// The limit applies to every text and binary message before it is
    /// dispatched, to routers and the raw message handler alike; control
    /// frames (ping, pong, close) are not counted. Each connection has its
    /// own token bucket, so one client's flood never slows another.
    ///
    /// - A message over the limit is **dropped** (no router or handler sees
    ///   it) and the client gets the error reply
    ///   `{"type":"error","message":"Rate limit exceeded"}`, like the other
    ///   message errors of the protocol.
    /// - A client that keeps sending while limited, `burst` refused messages
    ///   in a row (at least 1), is closed with **1008** `Rate limit exceeded`.
    ///
    /// A connection that slows down below the rate is never closed. Off by
    /// default; when off, the check costs one branch per message.
    /// `per_second` must be positive and finite, or the limit stays off.
    ///
    /// ```
    /// use ori::WsOptions;
    /// // 20 messages per second, bursts of 40.
    /// let options = WsOptions::new().inbound_rate_limit(20.0, 40);
    /// ```
    pub fn inbound_rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.limits.inbound_rate =
            (per_second.is_finite() && per_second > 0.0).then(|| InboundRate {
                per_second,
                burst: burst.max(1),
            });
        self
    }

    /// How many writer tasks put the queued frames on the sockets: `count`,
    /// at least 1 and at most 64, whatever the number of cores. By
    /// default one per two worker threads of the runtime that serves the
    /// first connection (rounded up: one for one or two threads), the
    /// threads counted at most one per core this process may run on.
    ///
    /// Each writer writes its connections in turn, once per pass, and a
    /// write carries every frame queued meanwhile: the fewer the writers,
    /// the more frames per write, the less CPU per delivery and the more
    /// queueing delay; more writers can write on more cores at once, while
    /// the other threads read, handle requests and fan out (not measurable
    /// on the two cores the project's benchmarks run on). On two cores
    /// shared with a load generator, two worker threads with one writer
    /// delivered as much as with two writers, at 0.54x the p99 and 0.86x
    /// the CPU per delivery (BENCHMARKS.md, nineteenth sitting).
    ///
    /// Set it when one app is served by several runtimes (its
    /// [`into_router`](crate::Ori::into_router) on one single-threaded
    /// runtime per core, say): the default counts the threads of one of
    /// them only.
    ///
    /// ```
    /// use ori::WsOptions;
    /// let options = WsOptions::new().writers(1);
    /// ```
    pub fn writers(mut self, count: usize) -> Self {
        self.limits.writers = Some(count.clamp(1, crate::ws::writer::MAX_WRITERS));
        self
    }

    /// Accept upgrades only from these `Origin`s (others get 403). Requests
    /// without an `Origin` header (non-browser clients) are accepted.
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.limits.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_asked_for_are_kept_between_one_and_the_maximum() {
        assert_eq!(WsOptions::new().limits.writers, None, "the default");
        assert_eq!(WsOptions::new().writers(3).limits.writers, Some(3));
        assert_eq!(WsOptions::new().writers(0).limits.writers, Some(1));
        assert_eq!(
            WsOptions::new().writers(1000).limits.writers,
            Some(crate::ws::writer::MAX_WRITERS)
        );
    }
}
