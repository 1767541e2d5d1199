//! Guard traits and what route handlers may return.

use std::fmt::Display;
use std::future::Future;

use serde::Serialize;
use serde_json::Value;

use super::context::{GuardContext, MessageGuardContext};
use crate::emitter::{Emitter, SocketEmitter};
use crate::ws::HandlerError;

/// Any error a guard may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs once per connection, after the upgrade and before the `open`
/// handler. `Ok(false)` closes the connection with 1008 "Connection
/// rejected by guard"; an error closes it with 1011.
///
/// Implemented for async closures `|ctx: GuardContext<S, D>| async move { .. }`
/// and for your own types:
///
/// A guard of your own type for an app with any emitter (a custom one
/// too) is generic over it:
///
/// ```
/// use ori::router::{BoxError, ConnectionGuard, GuardContext};
/// use ori::Emitter;
///
/// #[derive(Default)]
/// struct AuthState { user: String }
///
/// struct TokenGuard;
///
/// impl<E: Emitter> ConnectionGuard<AuthState, String, E> for TokenGuard {
///     async fn can_activate(
///         &self,
///         ctx: GuardContext<AuthState, String, E>,
///     ) -> Result<bool, BoxError> {
///         // the upgrade handler stored the token as user data
///         let token = ctx.user_data().clone();
///         if token.is_empty() {
///             return Ok(false);
///         }
///         ctx.set(AuthState { user: token });
///         Ok(true)
///     }
/// }
/// ```
pub trait ConnectionGuard<S, D = (), E = SocketEmitter>: Send + Sync + 'static {
    /// Decides whether the connection may proceed.
    fn can_activate(
        &self,
        ctx: GuardContext<S, D, E>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

impl<S, D, E, F, Fut> ConnectionGuard<S, D, E> for F
where
    F: Fn(GuardContext<S, D, E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, BoxError>> + Send,
{
    fn can_activate(
        &self,
        ctx: GuardContext<S, D, E>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        self(ctx)
    }
}

/// Runs before every message routed to its router. `Ok(false)` answers
/// `Forbidden`; an error answers with the error's message. The handler does
/// not run in either case.
pub trait MessageGuard<S, D = (), E = SocketEmitter>: Send + Sync + 'static {
    /// Decides whether the message may proceed.
    fn can_activate(
        &self,
        ctx: MessageGuardContext<S, D, E>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send;
}

impl<S, D, E, F, Fut> MessageGuard<S, D, E> for F
where
    S: Send + Sync + 'static,
    D: Send + Sync + 'static,
    E: Emitter,
    F: Fn(MessageGuardContext<S, D, E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, BoxError>> + Send,
{
    fn can_activate(
        &self,
        ctx: MessageGuardContext<S, D, E>,
    ) -> impl Future<Output = Result<bool, BoxError>> + Send {
        self(ctx)
    }
}

/// What a route handler may return: `Result<T, E>` where `T` serializes to
/// the reply's `data` and `E`'s message becomes the reply's `error`.
pub trait RouteResult: Send + 'static {
    /// Converts to the reply's `data` or `error`.
    fn into_reply(self) -> Result<Value, HandlerError>;
}

impl<T: Serialize + Send + 'static, E: Display + Send + 'static> RouteResult for Result<T, E> {
    fn into_reply(self) -> Result<Value, HandlerError> {
        match self {
            Ok(v) => serde_json::to_value(v)
                .map_err(|e| HandlerError::new(format_args!("cannot serialize the result: {e}"))),
            Err(e) => Err(HandlerError::new(e)),
        }
    }
}
