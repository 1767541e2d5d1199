//! The application builder ([`Ori`]) and the running application ([`App`]).
//!
//! `Ori::create()` collects services, controllers and WebSocket set-up;
//! `listen` validates it all (a missing dependency or duplicate route fails
//! here, not at run time), starts the provider and serves HTTP/1.1 with
//! WebSocket upgrades. `App::stop` shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, MethodRouter};
use axum::Router;
use ori_core::{Broker, InProcProvider, Provider};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::AppContext;
use crate::emitter::{Emitter, SocketEmitter};
use crate::error::{BuildError, Error};
use crate::http::{error_response, Controller, HttpRoutes};
use crate::router::{RouterTable, SocketRouter};
use crate::server::{accept_loop, bind, HttpLimits, Serving};
use crate::ws::{upgrade, Handlers, WsOptions, WsRuntime};

mod listen_addr;
mod running;

pub use listen_addr::ListenAddr;
pub use running::App;
use running::Shared;

struct WsSetup<D> {
    broker: Broker,
    options: WsOptions<D>,
}

/// Builds an Ori application.
///
/// ```no_run
/// use ori::{Conn, Handlers, Message, Ori};
///
/// # async fn run() -> Result<(), ori::Error> {
/// let app = Ori::create()
///     .websocket()
///     .on_websocket(
///         Handlers::new()
///             .on_open(|ws: Conn| async move {
///                 let _ = ws.subscribe("global");
///             })
///             .on_message(|ws: Conn, msg: Message| async move {
///                 ws.send(msg);
///             }),
///     )
///     .listen(3000)
///     .await?;
/// println!("WebSocket server running at ws://localhost:{}/ws", app.port());
/// # Ok(()) }
/// ```
///
/// `E` is the app's emitter type ([`Ori::with_emitter`]); `D` the user data
/// of each connection, set by the upgrade handler in [`WsOptions::upgrade`].
pub struct Ori<E: Emitter = SocketEmitter, D = ()> {
    ctx: AppContext<E>,
    base: SocketEmitter,
    ws: Option<WsSetup<D>>,
    handlers: Option<Handlers<D>>,
    routers: RouterTable<D>,
    routes: HttpRoutes<E>,
    extra: Option<Router>,
    errors: Vec<BuildError>,
    body_limit: usize,
    request_timeout: Duration,
    http: HttpLimits,
    shutdown_timeout: Duration,
    /// Where [`metrics_route`](Ori::metrics_route) serves the metrics.
    metrics_path: Option<String>,
}

impl Ori {
    /// A new application with the base [`SocketEmitter`].
    pub fn create() -> Self {
        Self::with_emitter()
    }

    /// A new application whose emitter is the custom type `E`; services and
    /// handlers reach it as `ctx.socket()` with its domain methods.
    pub fn with_emitter<E: Emitter>() -> Ori<E, ()> {
        let base = SocketEmitter::unconfigured();
        Ori {
            ctx: AppContext::new(E::from_socket_emitter(base.clone())),
            base,
            ws: None,
            handlers: None,
            routers: RouterTable::default(),
            routes: HttpRoutes::default(),
            extra: None,
            errors: Vec::new(),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            http: HttpLimits::default(),
            shutdown_timeout: Duration::from_secs(10),
            metrics_path: None,
        }
    }
}

impl<E: Emitter, D: Send + Sync + 'static> Ori<E, D> {
    /// Enables WebSocket support with the in-process provider and default
    /// options (path `/ws`, every upgrade accepted).
    pub fn websocket(self) -> Ori<E, ()> {
        self.websocket_with(InProcProvider, WsOptions::new())
    }

    /// Enables WebSocket support with a provider and options.
    pub fn websocket_with<D2: Send + Sync + 'static>(
        mut self,
        provider: impl Provider,
        options: WsOptions<D2>,
    ) -> Ori<E, D2> {
        if self.handlers.is_some() {
            self.errors.push(BuildError::Order(
                "on_websocket() was called before websocket(); call websocket() first",
            ));
        }
        if self.ws.is_some() {
            self.errors
                .push(BuildError::Order("websocket() was called twice"));
        }
        if !self.routers.is_empty() {
            self.errors.push(BuildError::Order(
                "socket_router() was called before websocket(); call websocket() first",
            ));
        }
        if let Some(mistake) = options.error {
            self.errors.push(BuildError::Order(mistake));
        }
        let broker = match options.history.clone() {
            Some(history) => Broker::with_history(provider, history),
            None => Broker::new(provider),
        };
        self.base.attach(broker.clone());
        Ori {
            ctx: self.ctx,
            base: self.base,
            ws: Some(WsSetup::<D2> { broker, options }),
            handlers: None,
            routers: RouterTable::default(),
            routes: self.routes,
            extra: self.extra,
            errors: self.errors,
            body_limit: self.body_limit,
            request_timeout: self.request_timeout,
            http: self.http,
            shutdown_timeout: self.shutdown_timeout,
            metrics_path: self.metrics_path,
        }
    }

    /// Sets the WebSocket lifecycle handlers.
    pub fn on_websocket(mut self, handlers: Handlers<D>) -> Self {
        if self.ws.is_none() {
            self.errors.push(BuildError::Order(
                "on_websocket() needs websocket() first: WebSocket not configured. Call .websocket() when creating the application.",
            ));
        }
        self.handlers = Some(handlers);
        self
    }

    /// Adds a socket router. Routers are tried before the raw `message`
    /// handler; two handlers for one message type fail at start-up.
    pub fn socket_router<R: SocketRouter<D, E>>(mut self, router: R) -> Self {
        if self.ws.is_none() {
            self.errors.push(BuildError::Order(
                "socket_router() needs websocket() first: WebSocket not configured. Call .websocket() when creating the application.",
            ));
        }
        if let Err(e) = self.routers.add(router, &self.ctx) {
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

    /// Checks the [`MessageRegistry`](crate::messages::MessageRegistry)
    /// that the raw `message` handler runs: a message type whose schema
    /// does not compile fails `listen` with [`BuildError::Schema`] instead
    /// of refusing every message of that type at run time.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ori::messages::{JoinRoom, MessageRegistry};
    /// use ori::{Conn, Handlers, Message, Ori};
    ///
    /// let registry = Arc::new(
    ///     MessageRegistry::new()
    ///         .on(JoinRoom, |ws: Conn, data| async move { ws.subscribe(data.room.topic()) }),
    /// );
    /// let handler = registry.clone();
    /// let app = Ori::create()
    ///     .websocket()
    ///     .message_registry(&registry)
    ///     .on_websocket(Handlers::new().on_message(move |ws: Conn, msg: Message| {
    ///         let registry = handler.clone();
    ///         async move {
    ///             if let Some(text) = msg.as_text() {
    ///                 if let Err(e) = registry.handle_text(&ws, text).await {
    ///                     ws.send(e.to_reply());
    ///                 }
    ///             }
    ///         }
    ///     }));
    /// # drop(app);
    /// ```
    pub fn message_registry<D2: Send + Sync + 'static>(
        mut self,
        registry: &crate::messages::MessageRegistry<D2>,
    ) -> Self {
        if let Err(e) = registry.check() {
            self.errors.push(e);
        }
        self
    }

    /// Registers a service, reachable as `ctx.service::<T>()`.
    pub fn service<T: Send + Sync + 'static>(self, service: T) -> Self {
        self.ctx.insert(service);
        self
    }

    /// Registers a service built from the app context (which holds the
    /// emitter and the services registered before it).
    pub fn service_with<T, F>(mut self, factory: F) -> Self
    where
        T: Send + Sync + 'static,
        F: FnOnce(&AppContext<E>) -> Result<T, BuildError>,
    {
        match factory(&self.ctx) {
            Ok(service) => {
                self.ctx.insert(service);
            }
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Mounts a controller's routes under `prefix`.
    pub fn controller<C: Controller<E>>(mut self, prefix: &str, controller: C) -> Self {
        if let Err(e) = self.routes.add_controller(prefix, controller) {
            self.errors.push(e);
        }
        self
    }

    /// Mounts a controller built from the app context, so it receives its
    /// dependencies at construction; a missing one fails at start-up.
    pub fn controller_with<C, F>(self, prefix: &str, factory: F) -> Self
    where
        C: Controller<E>,
        F: FnOnce(&AppContext<E>) -> Result<C, BuildError>,
    {
        match factory(&self.ctx) {
            Ok(c) => self.controller(prefix, c),
            Err(e) => {
                let mut this = self;
                this.errors.push(e);
                this
            }
        }
    }

    /// Merges plain axum routes (static pages, health checks, any tower
    /// service) into the app. The router's own fallback, if it has one,
    /// answers every path no route matches (else Ori's JSON 404 does).
    pub fn merge(mut self, router: Router) -> Self {
        self.extra = Some(match self.extra.take() {
            Some(r) => r.merge(router),
            None => router,
        });
        self
    }

    /// The most bytes a controller reads from a request body (default
    /// 1 MiB; exactly the limit is allowed, more is 413).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long a request body may take to arrive once the request head is
    /// in (default 30 s). A body still incomplete then (a client that sends
    /// a byte every few seconds, or stops) is answered 408 and its
    /// connection closed.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a request head (the request line and headers) may take to
    /// arrive on an open connection (default 30 s); then the connection is
    /// closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.http.header_read_timeout = timeout;
        self
    }

    /// The most HTTP connections open at once that have not become
    /// WebSockets (default 10,000). A connection accepted over it is closed
    /// at once and counted in `ori_http_connections_refused_total`, so
    /// silent or trickling clients cannot use up the descriptors that
    /// upgrades and requests need.
    pub fn max_http_connections(mut self, n: usize) -> Self {
        self.http.max_connections = n;
        self
    }

    /// Serves the instance's metrics at `GET path` (usually `/metrics`) in
    /// the Prometheus text format, version 0.0.4 (`Content-Type:
    /// text/plain; version=0.0.4; charset=utf-8`), as
    /// [`metrics::render`](crate::metrics::render) renders them. A path
    /// that another route has fails at start-up.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ori::Error> {
    /// let app = ori::Ori::create()
    ///     .websocket()
    ///     .metrics_route("/metrics")
    ///     .listen(3000)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn metrics_route(mut self, path: &str) -> Self {
        if !path.starts_with('/') {
            self.errors.push(BuildError::InvalidPath(path.to_owned()));
        }
        self.metrics_path = Some(path.to_owned());
        self
    }

    /// How long [`App::stop`] waits for connections and in-flight requests
    /// (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The app context (services and emitter), available before the app
    /// starts, for handlers and services that need it.
    pub fn context(&self) -> &AppContext<E> {
        &self.ctx
    }

    fn assemble(mut self) -> Result<(Router, Arc<Shared<E>>), BuildError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        let shared = Arc::new(Shared {
            ctx: self.ctx.clone(),
            broker: self.ws.as_ref().map(|w| w.broker.clone()),
            ws_tasks: TaskTracker::new(),
            http_conns: TaskTracker::new(),
            listener: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            timeout: self.shutdown_timeout,
            stopped: tokio::sync::Mutex::new(false),
        });
        let ws_path = self.ws.as_ref().map(|w| w.options.path.clone());
        let taken = |path: &String| {
            self.routes.has_path(path)
                || (ws_path.as_ref() == Some(path) && self.metrics_path.as_ref() == Some(path))
        };
        for path in ws_path.iter().chain(&self.metrics_path) {
            if taken(path) {
                return Err(BuildError::DuplicateRoute {
                    method: "GET".into(),
                    path: path.clone(),
                });
            }
        }
        let mut router = std::mem::take(&mut self.routes).into_router(
            self.ctx.clone(),
            self.body_limit,
            self.request_timeout,
        );
        if let Some(path) = &self.metrics_path {
            let emitter = self.base.clone();
            let route: MethodRouter = get(move || {
                let text = crate::metrics::render(&emitter);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            crate::metrics::CONTENT_TYPE,
                        )],
                        text,
                    )
                }
            })
            .fallback(method_not_allowed);
            router = router.route(path, route);
        }
        if let Some(ws) = self.ws {
            ws.options.limits.budget.apply(ws.broker.hub().budget());
            if let Some(c) = ws.options.limits.compression {
                ws.broker.hub().set_compression(c.level, c.threshold);
            }
            let writers = crate::ws::Writers::new(
                crate::ws::tick_period(&ws.options.limits),
                self.base.metrics().clone(),
            );
            let rt = Arc::new(WsRuntime {
                broker: ws.broker,
                emitter: self.base.clone(),
                handlers: self.handlers.unwrap_or_default(),
                routers: self.routers,
                upgrade: ws.options.upgrade,
                authenticator: ws.options.authenticator,
                authorize_join: ws.options.authorize_join,
                limits: ws.options.limits,
                tasks: shared.ws_tasks.clone(),
                shutdown: shared.shutdown.clone(),
                writers,
                upgrading: Default::default(),
            });
            let route: MethodRouter =
                get(move |req: Request<Body>| upgrade::handle(rt.clone(), req))
                    .fallback(method_not_allowed);
            router = router.route(&ws.options.path, route);
        }
        if let Some(extra) = self.extra {
            router = router.merge(extra);
        }
        // No fallback of Ori's own: a merged router's fallback stays, and
        // the router can be merged or nested into another. Where none is
        // set, an unknown path's empty 404 gets Ori's JSON body.
        let router = router
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn(crate::http::json_not_found));
        Ok((router, shared))
    }

    /// Validates the set-up, starts the provider and listens on `addr`: a
    /// port (all interfaces; `0` picks a free one), a `SocketAddr`, or
    /// `"host:port"`. The listen backlog is 4096 (the kernel may cap it, on
    /// Linux at `net.core.somaxconn`), so a reconnect storm queues instead
    /// of having its connection attempts dropped and retried a second later.
    pub async fn listen(self, addr: impl Into<ListenAddr>) -> Result<App<E>, Error> {
        let addr = match addr.into() {
            ListenAddr::Addr(a) => a,
            ListenAddr::Text(t) => tokio::net::lookup_host(&t).await?.next().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("cannot resolve {t}"),
                )
            })?,
        };
        self.serve(bind(addr)?).await
    }

    /// Like [`listen`](Self::listen), on a listener you bound yourself.
    pub async fn serve(self, listener: TcpListener) -> Result<App<E>, Error> {
        let limits = self.http;
        let emitter = self.base.clone();
        let (router, shared) = self.assemble()?;
        if let Some(p) = &shared.broker {
            p.start().await?;
        }
        let local_addr = listener.local_addr()?;
        shared.listener.spawn(accept_loop(
            listener,
            Serving {
                router,
                conns: shared.http_conns.clone(),
                shutdown: shared.shutdown.clone(),
                limits,
                emitter,
            },
        ));
        Ok(App {
            shared,
            local_addr: Some(local_addr),
        })
    }

    /// Validates the set-up and starts the provider, returning the app as an
    /// axum [`Router`] to mount in your own server stack, and the [`App`]
    /// handle to stop it. The router has no fallback of its own, so
    /// `existing.merge(router)` and `existing.nest("/rt", router)` keep the
    /// existing app's fallback; served alone, an unknown path answers Ori's
    /// JSON 404. Serve it with connect info so upgrade handlers see the peer
    /// address:
    /// `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ori::Error> {
    /// use axum::routing::get;
    ///
    /// let existing = axum::Router::new()
    ///     .route("/", get(|| async { "home" }))
    ///     .fallback(|| async { "the existing app's own 404 page" });
    /// let (realtime, app) = ori::Ori::create().websocket().into_router().await?;
    /// let router = existing.nest("/realtime", realtime); // or .merge(realtime)
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
    /// let make = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    /// tokio::spawn(async move { axum::serve(listener, make).await });
    /// // ... later
    /// app.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn into_router(self) -> Result<(Router, App<E>), Error> {
        let (router, shared) = self.assemble()?;
        if let Some(p) = &shared.broker {
            p.start().await?;
        }
        Ok((
            router,
            App {
                shared,
                local_addr: None,
            },
        ))
    }
}

async fn method_not_allowed() -> axum::response::Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}
