//! Socket routers: message handlers organised like HTTP controllers, with
//! connection guards (run once, after the upgrade, before `open`), message
//! guards (run before every routed message), typed per-connection state
//! written by the guards, and request/response replies carrying the
//! correlation id (PROTOCOL.md section 4).
//!
//! Routers are tried first; a text frame whose `type` no router routes falls
//! through to the message registry, then the raw `message` handler.

mod context;
mod guard;
mod rate_limit;
mod table;

pub use context::{GuardContext, MessageGuardContext, SocketContext};
pub use guard::{BoxError, ConnectionGuard, MessageGuard, RouteResult};
pub use rate_limit::RateLimit;
pub use table::SocketRouteBuilder;

pub use table::correlation_id;
pub(crate) use table::{Admission, RouterTable, State};

use crate::emitter::{Emitter, SocketEmitter};

/// A socket router: declares its guards and message handlers.
///
/// ```
/// use std::sync::Arc;
/// use ori::router::{GuardContext, SocketContext, SocketRouteBuilder, SocketRouter};
///
/// #[derive(Default)]
/// struct AuthState { user: Option<String> }
///
/// struct PresenceRouter;
///
/// impl SocketRouter for PresenceRouter {
///     type State = AuthState;
///
///     fn configure(&self, r: &mut SocketRouteBuilder<Self>) {
///         r.connection_guard(|ctx: GuardContext<AuthState>| async move {
///             ctx.set(AuthState { user: Some("ann".into()) });
///             Ok(true)
///         });
///         r.on("heartbeat", Self::heartbeat);
///     }
/// }
///
/// impl PresenceRouter {
///     async fn heartbeat(self: Arc<Self>, ctx: SocketContext<AuthState>) -> Result<serde_json::Value, String> {
///         let user = ctx.state().user.clone();
///         Ok(serde_json::json!({ "success": true, "user": user }))
///     }
/// }
/// ```
pub trait SocketRouter<D = (), E: Emitter = SocketEmitter>: Send + Sync + Sized + 'static {
    /// Per-connection state written by connection guards
    /// ([`GuardContext::set`]) and read by handlers ([`SocketContext::state`]).
    /// A state without data and without drop glue (`()`, a marker type) is
    /// one value, made when the router is added, shared by every
    /// connection (the same `Arc` from [`Conn::state`](crate::Conn::state)).
    type State: Default + Send + Sync + 'static;

    /// Declares guards and handlers.
    fn configure(&self, r: &mut SocketRouteBuilder<Self, D, E>);
}
