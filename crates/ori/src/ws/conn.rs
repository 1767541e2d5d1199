//! The connection handle given to handlers.

use std::any::Any;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use once_cell::race::OnceBox;

use ori_core::codec::close_code;
use ori_core::{Broker, CloseCode, Message, Outbox, Push, SocketId, SubscribeError, Topic};

use super::state::ConnState;
use super::WsRuntime;
use crate::context::AppContext;
use crate::emitter::{Emitter, IntoTopic, SocketEmitter};
use crate::router::State;

/// The lifecycle state of a connection (the WebSocket API's `readyState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReadyState {
    /// Accepted, not yet open (connection guards running).
    Connecting = 0,
    /// Open.
    Open = 1,
    /// A close frame was sent or received.
    Closing = 2,
    /// Closed.
    Closed = 3,
}

pub(crate) struct ConnInner<D> {
    pub(crate) id: SocketId,
    /// Set once authenticated: at the upgrade, or by the in-band
    /// authenticator before any handler sees the connection.
    pub(crate) data: OnceLock<D>,
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) outbox: Arc<Outbox>,
    /// What every connection of the endpoint shares.
    pub(crate) rt: Arc<WsRuntime<D>>,
    /// The phase, the write events and the admission, in one byte.
    pub(crate) state: ConnState,
    /// What few connections need, allocated when one does (an idle
    /// connection without socket routers pays one pointer for it).
    extras: OnceBox<Extras>,
}

/// The rarer parts of a connection.
#[derive(Default)]
struct Extras {
    /// What the socket routers' connection guards stored, one state per
    /// router; set when the connection opens, unless every router's state
    /// is shared (`RouterTable::shared_states`).
    guards: Box<[State]>,
    /// The topics the connection was in when it closed, for the `close`
    /// handler (the hub forgets them first, so that nothing published
    /// from it reaches the closed socket).
    left: OnceLock<Box<[Topic]>>,
}

impl<D> ConnInner<D> {
    /// A connection accepted, not yet open.
    pub(crate) fn new(
        id: SocketId,
        data: OnceLock<D>,
        remote_addr: Option<SocketAddr>,
        outbox: Arc<Outbox>,
        rt: Arc<WsRuntime<D>>,
    ) -> Self {
        Self {
            id,
            data,
            remote_addr,
            outbox,
            rt,
            state: ConnState::new(),
            extras: OnceBox::new(),
        }
    }

    /// Keeps what the connection guards stored (once, at the opening):
    /// nothing when every router's state is shared by all connections.
    pub(crate) fn set_guards(&self, guards: Vec<State>) {
        if !guards.is_empty() {
            let _ = self.extras.set(Box::new(Extras {
                guards: guards.into_boxed_slice(),
                left: OnceLock::new(),
            }));
        }
        self.state.admit();
    }

    /// What the connection guards stored, one state per router (none
    /// before they passed).
    pub(crate) fn guards(&self) -> &[State] {
        match self.extras.get() {
            Some(e) if !e.guards.is_empty() => &e.guards,
            _ if self.state.admitted() => self.rt.routers.shared_states(),
            _ => &[],
        }
    }

    /// Keeps the topics the connection was in as it closes.
    pub(crate) fn set_left(&self, topics: Vec<Topic>) {
        let extras = self.extras.get_or_init(Box::default);
        let _ = extras.left.set(topics.into_boxed_slice());
    }

    fn left(&self) -> Option<&[Topic]> {
        self.extras.get()?.left.get().map(|t| &t[..])
    }
}

/// The application as connections reach it: its context with the app's
/// emitter, and the same services with the base emitter.
pub(crate) struct AppHandle {
    base: AppContext<SocketEmitter>,
    /// The `AppContext<E>` of the app's emitter type.
    app: Box<dyn Any + Send + Sync>,
}

impl AppHandle {
    pub(crate) fn new<E: Emitter>(app: &AppContext<E>) -> Self {
        Self {
            base: app.with_emitter(app.socket().socket_emitter().clone()),
            app: Box::new(app.clone()),
        }
    }

    /// The context of `E`: the app's emitter type or the base one (the
    /// only two a connection handle is ever typed with).
    fn get<E: Emitter>(&self) -> &AppContext<E> {
        self.app
            .downcast_ref()
            .or_else(|| (&self.base as &dyn Any).downcast_ref())
            .expect("a connection is typed with the app's emitter or the base one")
    }
}

impl Default for AppHandle {
    fn default() -> Self {
        Self::new(&AppContext::new(SocketEmitter::unconfigured()))
    }
}

/// One WebSocket connection, as handlers see it. Cheap to clone; clones
/// may be kept and used from other tasks (a send on a closed connection
/// returns `false`).
///
/// `D` is the user data the upgrade handler (or the in-band authenticator)
/// returned for it; `E` the app's emitter type
/// ([`Ori::with_emitter`](crate::Ori::with_emitter)), which
/// [`emitter`](Self::emitter) and [`app`](Self::app) give with its domain
/// methods. With a custom emitter, name the app's types once:
///
/// ```
/// # #[derive(Clone)] struct AppEmitter(ori::SocketEmitter);
/// # impl ori::Emitter for AppEmitter {
/// #     fn from_socket_emitter(base: ori::SocketEmitter) -> Self { Self(base) }
/// #     fn socket_emitter(&self) -> &ori::SocketEmitter { &self.0 }
/// # }
/// struct User { name: String }
/// type Ws = ori::Conn<User, AppEmitter>;
///
/// async fn on_open(ws: Ws) {
///     println!("{} joined", ws.data().name);
/// }
/// ```
pub struct Conn<D = (), E = SocketEmitter> {
    pub(crate) inner: Arc<ConnInner<D>>,
    emitter: PhantomData<fn() -> E>,
}

impl<D, E> Clone for Conn<D, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            emitter: PhantomData,
        }
    }
}

impl<D> Conn<D> {
    /// The handle of a connection.
    pub(crate) fn from_inner(inner: Arc<ConnInner<D>>) -> Self {
        Self {
            inner,
            emitter: PhantomData,
        }
    }
}

impl<D, E> Conn<D, E> {
    /// The same connection, typed with another emitter: the app's (for
    /// the application's handlers) or the base one (inside the server).
    pub(crate) fn retype<E2>(self) -> Conn<D, E2> {
        Conn {
            inner: self.inner,
            emitter: PhantomData,
        }
    }
}

impl<D: Send + Sync + 'static, E: Emitter> Conn<D, E> {
    /// The connection's id (a random UUID v4).
    pub fn id(&self) -> SocketId {
        self.inner.id
    }

    /// The user data from the upgrade handler or the authenticator.
    pub fn data(&self) -> &D {
        // Handlers, guards and clones only ever see authenticated
        // connections: the connection task sets the data first.
        self.inner
            .data
            .get()
            .expect("a connection is authenticated before anyone sees it")
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.inner.rt.broker
    }

    /// The peer's address, when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// The lifecycle state.
    pub fn ready_state(&self) -> ReadyState {
        self.inner.state.ready_state()
    }

    pub(crate) fn set_state(&self, state: ReadyState) {
        self.inner.state.set(state);
    }

    /// Every topic this connection is in, the internal `__broadcast__` and
    /// `__socket__:<id>` first. Once closed (in the `close` handler): the
    /// topics it was in when it closed, though the hub no longer counts it
    /// in them.
    pub fn topics(&self) -> Vec<Topic> {
        if let Some(left) = self.inner.left() {
            return left.to_vec();
        }
        self.broker()
            .hub()
            .topics_of(&self.inner.id)
            .unwrap_or_default()
    }

    /// The topics this connection is in (or, in the `close` handler, was in
    /// when it closed): [`topics`](Self::topics) without the internal
    /// ones, whoever joined them, the client or the server (`on_open`'s
    /// `ws.subscribe`). What a close handler tells the others about:
    ///
    /// ```
    /// use ori::{Conn, Emitter};
    ///
    /// async fn on_close(ws: Conn) {
    ///     for room in ws.rooms() {
    ///         let _ = ws.emitter().publish(room, format!("{} left", ws.id())).await;
    ///     }
    /// }
    /// ```
    pub fn rooms(&self) -> Vec<Topic> {
        let mut topics = self.topics();
        topics.retain(|t| !t.is_reserved());
        topics
    }

    /// The state the connection guards of the socket router whose
    /// [`State`](crate::router::SocketRouter::State) is `S` stored (the
    /// first such router), once the connection is open; `None` before, or
    /// when no router has that state type.
    ///
    /// ```
    /// #[derive(Default)]
    /// struct Auth { user: String }
    ///
    /// async fn on_open(ws: ori::Conn) {
    ///     if let Some(auth) = ws.state::<Auth>() {
    ///         println!("{} is {}", ws.id(), auth.user);
    ///     }
    /// }
    /// ```
    pub fn state<S: Send + Sync + 'static>(&self) -> Option<Arc<S>> {
        self.inner
            .guards()
            .iter()
            .find_map(|state| state.clone().downcast().ok())
    }

    /// The application: its services and its emitter.
    pub fn app(&self) -> &AppContext<E> {
        self.inner.rt.app.get()
    }

    /// Joins `topic`. `Ok(false)`: already joined. Reserved (`__`) topics
    /// are refused.
    pub fn subscribe(&self, topic: impl IntoTopic) -> Result<bool, SubscribeError> {
        let topic = topic
            .into_topic()
            .map_err(|(topic, reason)| SubscribeError::InvalidTopic { topic, reason })?;
        self.broker().subscribe(&self.inner.id, &topic)
    }

    /// Joins `topic` with positions, or resumes it after `since` (PROTOCOL.md
    /// section 8): queues the `room.joined` reply, then for a recovered
    /// resume every publication the socket missed, then the live ones, all
    /// as `room.message` envelopes with their offsets. On a topic without
    /// history ([`WsOptions::history`](crate::WsOptions::history)) it joins
    /// raw and the reply says `recovered: false`.
    ///
    /// ```no_run
    /// # async fn f(ws: ori::Conn) -> Result<(), ori::SubscribeError> {
    /// use ori::core::Recovery;
    /// let since = Recovery::Since { epoch: "e1".into(), offset: 41 };
    /// if !ws.join("news", &since).await?.recovered() {
    ///     // the client re-fetches its state
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn join(
        &self,
        topic: impl IntoTopic,
        recovery: &ori_core::Recovery,
    ) -> Result<ori_core::Joined, SubscribeError> {
        let topic = topic
            .into_topic()
            .map_err(|(topic, reason)| SubscribeError::InvalidTopic { topic, reason })?;
        if topic.is_reserved() {
            return Err(SubscribeError::InvalidTopic {
                topic: topic.to_string(),
                reason: ori_core::TopicError::Reserved,
            });
        }
        self.broker().join(&self.inner.id, &topic, recovery).await
    }

    /// Leaves `topic`. `Ok(false)`: was not joined.
    pub fn unsubscribe(&self, topic: impl IntoTopic) -> Result<bool, SubscribeError> {
        let topic = topic
            .into_topic()
            .map_err(|(topic, reason)| SubscribeError::InvalidTopic { topic, reason })?;
        self.broker().unsubscribe(&self.inner.id, &topic)
    }

    /// Queues a message to this connection. Returns `false` if the
    /// connection is closing or its outbound queue overflowed (it is then
    /// closed with 1013).
    pub fn send(&self, message: impl Into<Message>) -> bool {
        let frame = self
            .broker()
            .hub()
            .frame_for(&self.inner.outbox, &message.into());
        self.push_frame(frame)
    }

    /// Queues an encoded frame (a message, or a ping, pong or reply of the
    /// server's own). An overflow closes the connection with 1013 and is
    /// counted as a slow consumer, whatever the frame was.
    pub(super) fn push_frame(&self, frame: impl Into<ori_core::Frame>) -> bool {
        self.broker().hub().push(&self.inner.outbox, frame) == Push::Queued
    }

    /// Closes the connection with `code` (a [`CloseCode`] or its `u16`)
    /// and `reason` after the messages already queued. Codes outside those
    /// valid on the wire become 1000.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) {
        let code = code.into();
        let code = if code.is_valid_on_wire() {
            code.as_u16()
        } else {
            close_code::NORMAL
        };
        if self.inner.outbox.close(code, reason) {
            self.set_state(ReadyState::Closing);
        }
    }

    /// The app's emitter (its own type, with its domain methods), to
    /// publish from a handler.
    pub fn emitter(&self) -> &E {
        self.app().socket()
    }

    /// Whether the app's join authorization
    /// ([`WsOptions::authorize_join`](crate::WsOptions::authorize_join))
    /// lets this connection join `topic` (`true` without one). Call it
    /// before joining a topic a client named, in handlers of your own.
    pub async fn may_join(&self, topic: &Topic) -> bool {
        match &self.inner.rt.authorize_join {
            None => true,
            Some(check) => {
                super::auth::run_join_check(check, self.clone().retype(), topic.clone()).await
            }
        }
    }

    /// Joins `topic` on the client's behalf: [`may_join`](Self::may_join)
    /// first ([`SubscribeError::Forbidden`] when refused), then
    /// [`subscribe`](Self::subscribe).
    pub async fn subscribe_as_client(&self, topic: impl IntoTopic) -> Result<bool, SubscribeError> {
        let topic = topic
            .into_topic()
            .map_err(|(topic, reason)| SubscribeError::InvalidTopic { topic, reason })?;
        if !self.may_join(&topic).await {
            return Err(SubscribeError::Forbidden {
                topic: topic.to_string(),
            });
        }
        self.broker().subscribe(&self.inner.id, &topic)
    }
}

impl<D, E> std::fmt::Debug for Conn<D, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.inner.id)
            .field("remote_addr", &self.inner.remote_addr)
            .finish_non_exhaustive()
    }
}
