//! The application builder ([`Ori`]) and the running application ([`App`]).
//!
//! `Ori::create()` collects services, controllers and WebSocket set-up;
//! `listen` validates it all (a missing dependency or duplicate route fails
//! here, not at run time), starts the provider and serves HTTP/1.1 with
//! WebSocket upgrades. `App::stop` shuts down gracefully.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::AppContext;
use crate::emitter::{Emitter, SocketEmitter};
use crate::error::{BuildError, Error};
use crate::http::{error_response, Controller, HttpRoutes};
use crate::server::{accept_loop, bind, HttpLimits, Serving};
use crate::ws::fast::FastUpgrade;

mod listen_addr;
mod running;
mod websocket;

pub use listen_addr::ListenAddr;
pub use running::App;
use running::Shared;
pub use websocket::{Mount, NoWebSocket, WebSocketState, WithWebSocket};

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
/// `E` is the app's emitter type ([`Ori::with_emitter`]); `W` whether
/// WebSocket support is configured: [`NoWebSocket`], or
/// [`WithWebSocket<D>`](WithWebSocket) after `websocket()`, `D` being the
/// user data of each connection (set by the upgrade handler in
/// [`WsOptions::upgrade`](crate::WsOptions::upgrade)); plain `Ori` is an
/// app with WebSocket support and no user data (what `Ori::create()` is
/// once `.websocket()` is called; a function that takes the builder at
/// either stage is generic over `W: WebSocketState`). The methods that need
/// WebSocket support exist only on the second, so the wrong order does not
/// compile:
///
/// ```compile_fail,E0599
/// // on_websocket() before websocket(): no such method yet.
/// let app = ori::Ori::create().on_websocket(ori::Handlers::<()>::new());
/// ```
pub struct Ori<E: Emitter = SocketEmitter, W = WithWebSocket> {
    ctx: AppContext<E>,
    base: SocketEmitter,
    ws: W,
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

impl Ori<SocketEmitter, NoWebSocket> {
    /// A new application with the base [`SocketEmitter`].
    pub fn create() -> Self {
        Self::with_emitter()
    }

    /// A new application whose emitter is the custom type `E`; services and
    /// handlers reach it as `ctx.socket()` with its domain methods.
    pub fn with_emitter<E: Emitter>() -> Ori<E, NoWebSocket> {
        let base = SocketEmitter::unconfigured();
        Ori {
            ctx: AppContext::new(E::from_socket_emitter(base.clone())),
            base,
            ws: NoWebSocket,
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

impl<E: Emitter, W: WebSocketState> Ori<E, W> {
    /// The same builder in another WebSocket state.
    fn with_ws<W2: WebSocketState>(self, ws: W2) -> Ori<E, W2> {
        Ori {
            ctx: self.ctx,
            base: self.base,
            ws,
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

    fn assemble(mut self) -> Result<Assembled<E>, BuildError> {
        if let Some(e) = self.errors.drain(..).next() {
            return Err(e);
        }
        self.ws.check()?;
        let shared = Arc::new(Shared {
            ctx: self.ctx.clone(),
            broker: self.ws.broker().cloned(),
            ws_tasks: TaskTracker::new(),
            http_conns: TaskTracker::new(),
            listener: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            timeout: self.shutdown_timeout,
            stopped: tokio::sync::Mutex::new(false),
        });
        let ws_path = self.ws.path().map(str::to_owned);
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
        let mount = Mount {
            base: &self.base,
            app: crate::ws::AppHandle::new(&self.ctx),
            tasks: shared.ws_tasks.clone(),
            shutdown: shared.shutdown.clone(),
        };
        let mut fast = None;
        if let Some(endpoint) = self.ws.into_route(mount) {
            router = router.route(&endpoint.path, endpoint.route);
            fast = endpoint.fast;
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
        Ok(Assembled {
            router,
            shared,
            fast,
        })
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
        let Assembled {
            router,
            shared,
            fast,
        } = self.assemble()?;
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
                fast,
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
        let (router, _, app) = self.into_parts().await?;
        Ok((router, app))
    }

    /// Like [`into_router`](Self::into_router), with the upgrade's fast
    /// path (for a harness serving connections as the accept loop does).
    pub(crate) async fn into_parts(
        self,
    ) -> Result<(Router, Option<Arc<dyn FastUpgrade>>, App<E>), Error> {
        let Assembled {
            router,
            shared,
            fast,
        } = self.assemble()?;
        if let Some(p) = &shared.broker {
            p.start().await?;
        }
        let app = App {
            shared,
            local_addr: None,
        };
        Ok((router, fast, app))
    }
}

/// The app, assembled: its router, its shared state and the upgrade's
/// fast path.
struct Assembled<E: Emitter> {
    router: Router,
    shared: Arc<Shared<E>>,
    fast: Option<Arc<dyn FastUpgrade>>,
}

async fn method_not_allowed() -> axum::response::Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}
