//! Lifecycle handlers (`open`, `message`, `close`, `ping`, `pong`, `drain`),
//! each an async closure. A handler that fails or panics is logged; the
//! connection and the server carry on.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::BoxFuture;
use bytes::Bytes;
use futures_util::FutureExt;
use ori_core::{CloseCode, Message};

use super::Conn;
use crate::emitter::{Emitter, SocketEmitter};

/// What a handler's `Err` said, by its `Display`: logged for lifecycle and
/// registry handlers, the reply's `error` for socket-router routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: Box<str>,
}

impl HandlerError {
    /// An error saying `message`.
    pub fn new(message: impl Display) -> Self {
        Self {
            message: message.to_string().into(),
        }
    }

    /// What it says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What a handler may return: `()` or a `Result` whose error is displayable
/// (logged, never sent to the client; the `Ok` value is ignored).
pub trait HandlerResult: Send + 'static {
    /// Converts to a loggable outcome.
    fn into_outcome(self) -> Result<(), HandlerError>;
}

impl HandlerResult for () {
    fn into_outcome(self) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl<T: Send + 'static, E: Display + Send + 'static> HandlerResult for Result<T, E> {
    fn into_outcome(self) -> Result<(), HandlerError> {
        self.map(|_| ()).map_err(HandlerError::new)
    }
}

type Outcome = BoxFuture<'static, Result<(), HandlerError>>;
type OpenFn<D> = Arc<dyn Fn(Conn<D>) -> Outcome + Send + Sync>;
type MessageFn<D> = Arc<dyn Fn(Conn<D>, Message) -> Outcome + Send + Sync>;
type CloseFn<D> = Arc<dyn Fn(Conn<D>, CloseCode, String) -> Outcome + Send + Sync>;
type BytesFn<D> = Arc<dyn Fn(Conn<D>, Bytes) -> Outcome + Send + Sync>;

/// The lifecycle handlers of [`Ori::on_websocket`](crate::Ori::on_websocket).
///
/// `D` is the connections' user data, `E` the app's emitter type: the
/// handlers get a [`Conn<D, E>`](Conn), whose [`app`](Conn::app) and
/// [`emitter`](Conn::emitter) reach the services and the emitter's domain
/// methods. Name the handle's type in the closure (`|ws: Conn| ...`, or an
/// alias of the app's such as `type Ws = Conn<User, AppEmitter>;`): the
/// compiler needs it to check the closure's body before it sees where the
/// handlers go.
///
/// ```
/// use ori::{Conn, Handlers, Message};
///
/// let handlers = Handlers::<()>::new()
///     .on_open(|ws: Conn| async move {
///         ws.subscribe("global")?;
///         Ok::<_, ori::SubscribeError>(())
///     })
///     .on_message(|ws: Conn, msg: Message| async move {
///         ws.send(msg); // echo
///     })
///     .on_close(|ws: Conn, code, _reason| async move {
///         println!("{} left with {code}", ws.id());
///     });
/// ```
pub struct Handlers<D = (), E = SocketEmitter> {
    pub(crate) open: Option<OpenFn<D>>,
    pub(crate) message: Option<MessageFn<D>>,
    pub(crate) close: Option<CloseFn<D>>,
    pub(crate) ping: Option<BytesFn<D>>,
    pub(crate) pong: Option<BytesFn<D>>,
    pub(crate) drain: Option<OpenFn<D>>,
    /// The handlers are stored for the server's connection handle and
    /// given the app's.
    emitter: PhantomData<fn() -> E>,
}

impl<D, E> Clone for Handlers<D, E> {
    fn clone(&self) -> Self {
        Self {
            open: self.open.clone(),
            message: self.message.clone(),
            close: self.close.clone(),
            ping: self.ping.clone(),
            pong: self.pong.clone(),
            drain: self.drain.clone(),
            emitter: PhantomData,
        }
    }
}

impl<D, E> Default for Handlers<D, E> {
    fn default() -> Self {
        Self {
            open: None,
            message: None,
            close: None,
            ping: None,
            pong: None,
            drain: None,
            emitter: PhantomData,
        }
    }
}

impl<D, E> Handlers<D, E> {
    /// The same handlers, as the server stores them.
    pub(crate) fn erase(self) -> Handlers<D> {
        Handlers {
            open: self.open,
            message: self.message,
            close: self.close,
            ping: self.ping,
            pong: self.pong,
            drain: self.drain,
            emitter: PhantomData,
        }
    }
}

fn boxed<R: HandlerResult>(fut: impl Future<Output = R> + Send + 'static) -> Outcome {
    Box::pin(fut.map(HandlerResult::into_outcome))
}

impl<D: Send + Sync + 'static, E: Emitter> Handlers<D, E> {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs when a connection is accepted (after it joined `__broadcast__`).
    pub fn on_open<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.open = Some(Arc::new(move |ws: Conn<D>| boxed(f(ws.retype()))));
        self
    }

    /// Runs for every text or binary message no one else took, in arrival
    /// order: not the `2` ping (unless
    /// [`answer_text_ping(false)`](crate::WsOptions::answer_text_ping)),
    /// nor what a socket router or the message registry handled.
    pub fn on_message<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>, Message) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.message = Some(Arc::new(move |ws: Conn<D>, msg| boxed(f(ws.retype(), msg))));
        self
    }

    /// Runs once when the connection has closed, with the close code and
    /// reason (1005: the peer sent no code; 1006: no close frame at all).
    /// The hub has let go of the socket by then, but
    /// [`ws.rooms()`](Conn::rooms) still says which topics it was in, so
    /// the handler can tell them (without the closed socket receiving it).
    pub fn on_close<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>, CloseCode, String) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.close = Some(Arc::new(move |ws: Conn<D>, code, reason| {
            boxed(f(ws.retype(), code, reason))
        }));
        self
    }

    /// Runs for every ping from the client (the pong is sent automatically).
    pub fn on_ping<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.ping = Some(Arc::new(move |ws: Conn<D>, data| {
            boxed(f(ws.retype(), data))
        }));
        self
    }

    /// Runs for every pong from the client.
    pub fn on_pong<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>, Bytes) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.pong = Some(Arc::new(move |ws: Conn<D>, data| {
            boxed(f(ws.retype(), data))
        }));
        self
    }

    /// Runs when the outbound queue has been written out after the socket
    /// pushed back (the kernel buffer was full).
    pub fn on_drain<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Conn<D, E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerResult,
    {
        self.drain = Some(Arc::new(move |ws: Conn<D>| boxed(f(ws.retype()))));
        self
    }
}

/// Runs a handler future, turning errors and panics into log lines.
pub(crate) async fn guarded(what: &'static str, conn_id: ori_core::SocketId, fut: Outcome) {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(socket = %conn_id, handler = what, error = %e, "handler failed")
        }
        Err(panic) => log_panic(what, conn_id, &*panic),
    }
}

/// Logs a handler's panic with its message.
pub(crate) fn log_panic(
    what: &'static str,
    conn_id: ori_core::SocketId,
    panic: &(dyn std::any::Any + Send),
) {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into());
    tracing::error!(socket = %conn_id, handler = what, panic = %msg, "handler panicked");
}
