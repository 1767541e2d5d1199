//! The WebSocket half of the builder, as a type: [`NoWebSocket`] until
//! `websocket()` is called, then [`WithWebSocket`], which alone has the
//! methods that need it (`on_websocket`, `socket_router`,
//! `message_registry`). Calling them in the wrong order, or configuring
//! WebSocket support twice, does not compile.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, MethodRouter};
use ori_core::{Broker, InProcProvider, Provider};

use super::{method_not_allowed, Ori};
use crate::context::AppContext;
use crate::emitter::{Emitter, SocketEmitter};
use crate::error::BuildError;
use crate::messages::MessageRegistry;
use crate::router::{RouterTable, SocketRouter};
use crate::ws::fast::{FastPath, FastUpgrade};
use crate::ws::{upgrade, Handlers, WsOptions, WsRuntime};

/// The builder's state before `websocket()`: an HTTP-only app.
#[derive(Debug, Default)]
pub struct NoWebSocket;

/// The builder's state once WebSocket support is configured, for
/// connections whose user data is `D`.
pub struct WithWebSocket<D = ()> {
    broker: Broker,
    options: WsOptions<D>,
    handlers: Option<Handlers<D>>,
    routers: RouterTable<D>,
    registry: Option<MessageRegistry<D>>,
}

impl<D> std::fmt::Debug for WithWebSocket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithWebSocket")
            .field("path", &self.options.path)
            .finish_non_exhaustive()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoWebSocket {}
    impl<D> Sealed for super::WithWebSocket<D> {}
}

/// What the builder knows of WebSocket support: [`NoWebSocket`] or
/// [`WithWebSocket`]. Sealed; it only lets `listen` work in both states.
pub trait WebSocketState: sealed::Sealed + Send + 'static {
    #[doc(hidden)]
    fn path(&self) -> Option<&str>;
    #[doc(hidden)]
    fn broker(&self) -> Option<&Broker>;
    #[doc(hidden)]
    fn check(&self) -> Result<(), BuildError>;
    #[doc(hidden)]
    fn into_route(self, mount: Mount<'_>) -> Option<Endpoint>;
}

/// The WebSocket endpoint as the app mounts it: its route and, for the
/// app's own accept loop, its upgrade's fast path.
#[doc(hidden)]
pub struct Endpoint {
    pub(super) path: String,
    pub(super) route: MethodRouter,
    pub(super) fast: Option<Arc<dyn FastUpgrade>>,
}

/// What the endpoint's runtime takes from the app.
#[doc(hidden)]
pub struct Mount<'a> {
    pub(super) base: &'a SocketEmitter,
    pub(super) app: crate::ws::AppHandle,
    pub(super) tasks: tokio_util::task::TaskTracker,
    pub(super) shutdown: tokio_util::sync::CancellationToken,
}

impl WebSocketState for NoWebSocket {
    fn path(&self) -> Option<&str> {
        None
    }
    fn broker(&self) -> Option<&Broker> {
        None
    }
    fn check(&self) -> Result<(), BuildError> {
        Ok(())
    }
    fn into_route(self, _: Mount<'_>) -> Option<Endpoint> {
        None
    }
}

impl<D: Send + Sync + 'static> WebSocketState for WithWebSocket<D> {
    fn path(&self) -> Option<&str> {
        Some(&self.options.path)
    }

    fn broker(&self) -> Option<&Broker> {
        Some(&self.broker)
    }

    fn check(&self) -> Result<(), BuildError> {
        if let Some(mistake) = self.options.error {
            return Err(BuildError::Order(mistake));
        }
        if let Some(registry) = &self.registry {
            registry.check()?;
            let mut clashes: Vec<&str> = registry
                .types()
                .filter(|kind| self.routers.routes(kind))
                .collect();
            clashes.sort_unstable();
            if let Some(kind) = clashes.first() {
                return Err(BuildError::DuplicateMessageType((*kind).to_owned()));
            }
        }
        Ok(())
    }

    fn into_route(self, mount: Mount<'_>) -> Option<Endpoint> {
        let Self {
            broker,
            options,
            handlers,
            routers,
            registry,
        } = self;
        options.limits.budget.apply(broker.hub().budget());
        if let Some(c) = options.limits.compression {
            broker.hub().set_compression(c.level, c.threshold);
        }
        let writers = crate::ws::Writers::new(
            crate::ws::tick_period(&options.limits),
            mount.base.metrics().clone(),
            options.limits.writers,
        );
        let rt = Arc::new(WsRuntime {
            broker,
            emitter: mount.base.clone(),
            app: mount.app,
            handlers: handlers.unwrap_or_default(),
            routers,
            registry,
            upgrade: options.upgrade,
            authenticator: options.authenticator,
            authorize_join: options.authorize_join,
            limits: options.limits,
            tasks: mount.tasks,
            shutdown: mount.shutdown,
            writers,
            upgrading: Default::default(),
        });
        let fast = FastPath::new(rt.clone(), &options.path)
            .map(|fast| Arc::new(fast) as Arc<dyn FastUpgrade>);
        let route: MethodRouter = get(move |req: Request<Body>| upgrade::handle(rt.clone(), req))
            .fallback(method_not_allowed);
        Some(Endpoint {
            path: options.path,
            route,
            fast,
        })
    }
}

impl<E: Emitter> Ori<E, NoWebSocket> {
    /// Enables WebSocket support with the in-process provider and default
    /// options (path `/ws`, every upgrade accepted).
    pub fn websocket(self) -> Ori<E, WithWebSocket<()>> {
        self.websocket_with(InProcProvider, WsOptions::new())
    }

    /// Enables WebSocket support with the in-process provider and
    /// `options` (path, upgrade handler, limits...).
    pub fn websocket_options<D: Send + Sync + 'static>(
        self,
        options: WsOptions<D>,
    ) -> Ori<E, WithWebSocket<D>> {
        self.websocket_with(InProcProvider, options)
    }

    /// Enables WebSocket support with a provider (such as Redis, for many
    /// instances) and options.
    pub fn websocket_with<D: Send + Sync + 'static>(
        self,
        provider: impl Provider,
        options: WsOptions<D>,
    ) -> Ori<E, WithWebSocket<D>> {
        let broker = match options.history.clone() {
            Some(history) => Broker::with_history(provider, history),
            None => Broker::new(provider),
        };
        self.base.attach(broker.clone());
        self.with_ws(WithWebSocket {
            broker,
            options,
            handlers: None,
            routers: RouterTable::default(),
            registry: None,
        })
    }
}

impl<E: Emitter, D: Send + Sync + 'static> Ori<E, WithWebSocket<D>> {
    /// Sets the WebSocket lifecycle handlers (`open`, `message`, `close`,
    /// ...). Called twice, `listen` fails: one [`Handlers`] holds them all.
    pub fn on_websocket(mut self, handlers: Handlers<D, E>) -> Self {
        if self.ws.handlers.is_some() {
            self.errors.push(BuildError::Order(
                "on_websocket() was called twice; give all the handlers in one Handlers",
            ));
        }
        self.ws.handlers = Some(handlers.erase());
        self
    }

    /// Adds a socket router. Routers are tried before the message registry
    /// and the raw `message` handler; two handlers for one message type
    /// (in routers or the registry) fail at start-up.
    pub fn socket_router<R: SocketRouter<D, E>>(mut self, router: R) -> Self {
        if let Err(e) = self.ws.routers.add(router, &self.ctx) {
            self.errors.push(e);
        }
        self
    }

    /// Adds a socket router built from the app context, so it receives its
    /// dependencies (services) at construction; a missing one fails at
    /// start-up.
    pub fn socket_router_with<R, F>(mut self, factory: F) -> Self
    where
        R: SocketRouter<D, E>,
        F: FnOnce(&AppContext<E>) -> Result<R, BuildError>,
    {
        match factory(&self.ctx) {
            Ok(router) => self.socket_router(router),
            Err(e) => {
                self.errors.push(e);
                self
            }
        }
    }

    /// Dispatches the flat messages of PROTOCOL.md section 2 to
    /// `registry`'s typed handlers, after the socket routers: a registered
    /// type runs its handler with the validated data; a failure (invalid
    /// data, a refused join, a failing handler) is answered with the error
    /// frame of PROTOCOL.md section 3. A text frame the registry does not
    /// know (not JSON, no `type`, an unregistered type) goes to the raw
    /// `message` handler when there is one, else gets that error frame;
    /// binary frames go to the raw handler, or nowhere. A panicking
    /// handler is logged and answers nothing, like a raw one.
    ///
    /// At start-up, a type whose schema does not compile
    /// ([`BuildError::Schema`]), or that a socket router routes too
    /// ([`BuildError::DuplicateMessageType`]), fails `listen`.
    ///
    /// ```
    /// use ori::messages::{Heartbeat, JoinRoom, LeaveRoom, MessageRegistry};
    /// use ori::{Conn, Ori};
    ///
    /// let app = Ori::create().websocket().message_registry(
    ///     MessageRegistry::new()
    ///         .on(JoinRoom, |ws: Conn, data| async move { ws.subscribe(data.room.topic()) })
    ///         .on(LeaveRoom, |ws: Conn, data| async move { ws.unsubscribe(data.room.topic()) })
    ///         .on(Heartbeat, |ws: Conn, _| async move {
    ///             ws.send(r#"{"type":"heartbeat"}"#);
    ///         }),
    /// );
    /// # drop(app);
    /// ```
    pub fn message_registry(mut self, registry: MessageRegistry<D, E>) -> Self {
        if self.ws.registry.is_some() {
            self.errors.push(BuildError::Order(
                "message_registry() was called twice; register every type in one MessageRegistry",
            ));
        }
        self.ws.registry = Some(registry.erase());
        self
    }
}
