//! HTTP controllers: a [`Controller`] configures routes on a
//! [`RouteBuilder`]; handlers receive either a [`RequestContext`] with
//! params, query, headers, a size-limited JSON body, the app's services and
//! a request-bound emitter carrying the correlation id, or the same pieces
//! as axum extractors ([`extract`](crate::extract)).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{PublishError, PublishErrorKind};
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use futures_util::FutureExt;

use crate::context::AppContext;
use crate::emitter::Emitter;
use crate::error::BuildError;

pub(crate) mod extract;
mod handler;
mod request;

use extract::RequestConfig;
pub use handler::ControllerHandler;
pub(crate) use request::query_param;
pub use request::RequestContext;

/// The JSON body of an error answer: `{"error": "<reason>"}`.
pub(crate) fn error_body(reason: &str) -> String {
    serde_json::json!({ "error": reason }).to_string()
}

/// A JSON error body `{"error": "<reason>"}` with `status`.
pub(crate) fn error_response(status: StatusCode, reason: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(error_body(reason)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Gives an unknown path's empty 404 (axum's default fallback, or a
/// fallback answering a bare 404) Ori's JSON body. Routes are left alone:
/// a handler's own 404 is its business.
pub(crate) async fn json_not_found(
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let routed = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some();
    let resp = next.run(req).await;
    let bare = resp.status() == StatusCode::NOT_FOUND
        && !resp
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
        && axum::body::HttpBody::size_hint(resp.body()).exact() == Some(0);
    if !routed && bare {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    }
    resp
}

/// An HTTP error answered as JSON `{"error": "<message>"}`.
///
/// Handlers return `Result<impl IntoResponse, HttpError>` and use `?`:
/// a malformed body becomes 400, an oversized one 413, and a
/// [`PublishError`] maps by its [`kind`](PublishError::kind): 400 (bad
/// topic, socket id or data), 500 (the app's own mistake: no WebSocket, a
/// schema that does not compile, data that cannot be serialized), 503 (not
/// ready, overloaded, provider unavailable), 504 (provider timed out), 502
/// (provider error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response<Body> {
        let mut resp = error_response(self.status, &self.message);
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still trickle in: the connection is
            // not reused (RFC 9110, section 15.5.9).
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

impl From<PublishError> for HttpError {
    fn from(e: PublishError) -> Self {
        let status = match e.kind() {
            PublishErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            // The server's own mistake, not the request's.
            PublishErrorKind::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            PublishErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            PublishErrorKind::Backend => StatusCode::BAD_GATEWAY,
            // Not ready, overloaded, unavailable (and kinds added later):
            // the same request may succeed in a moment.
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

type BoxedHandler<E> = Arc<
    dyn Fn(Request<Body>, AppContext<E>) -> crate::BoxFuture<'static, Response<Body>> + Send + Sync,
>;

/// An HTTP controller: a group of routes under a prefix.
///
/// A handler takes the controller and either axum-style extractors
/// ([`ControllerHandler`]) or the whole [`RequestContext`]; one controller
/// may mix both.
///
/// ```
/// use std::sync::Arc;
/// use ori::extract::Path;
/// use ori::{Controller, HttpError, Json, RequestContext, RequestEmitter, RouteBuilder};
/// use serde_json::{json, Value};
///
/// struct NotificationController;
///
/// impl Controller for NotificationController {
///     fn configure(&self, r: &mut RouteBuilder<Self>) {
///         r.post("/notify/:topic", Self::notify);
///         r.post("/classic/:topic", Self::classic);
///     }
/// }
///
/// impl NotificationController {
///     async fn notify(
///         self: Arc<Self>,
///         Path(topic): Path<String>,
///         socket: RequestEmitter,
///         Json(body): Json<Value>,
///     ) -> Result<Json<Value>, HttpError> {
///         socket.publish(topic, body.to_string()).await?;
///         Ok(Json(json!({ "sent": true })))
///     }
///
///     async fn classic(self: Arc<Self>, mut ctx: RequestContext) -> Result<Json<Value>, HttpError> {
///         let topic = ctx.param("topic").unwrap_or_default().to_owned();
///         let body: Value = ctx.json().await?;
///         ctx.socket().publish(topic, body.to_string()).await?;
///         Ok(Json(json!({ "sent": true })))
///     }
/// }
/// ```
pub trait Controller<E: Emitter = crate::SocketEmitter>: Send + Sync + Sized + 'static {
    /// Declares the controller's routes.
    fn configure(&self, r: &mut RouteBuilder<Self, E>);
}

/// Collects the routes of one controller.
pub struct RouteBuilder<C, E: Emitter = crate::SocketEmitter> {
    controller: Arc<C>,
    routes: Vec<(Method, String, BoxedHandler<E>)>,
}

impl<C: Send + Sync + 'static, E: Emitter> RouteBuilder<C, E> {
    /// Adds a route for `method` at `path` (relative to the controller's
    /// prefix; `:name` segments are path parameters, read with
    /// [`RequestContext::param`] or the `Path` extractor).
    pub fn route<H: ControllerHandler<C, E, T>, T>(
        &mut self,
        method: Method,
        path: &str,
        handler: H,
    ) -> &mut Self {
        let controller = self.controller.clone();
        let handler = Arc::new(handler);
        let boxed: BoxedHandler<E> =
            Arc::new(move |req, app| handler.clone().call(controller.clone(), req, app));
        self.routes.push((method, path.to_owned(), boxed));
        self
    }

    /// A GET route.
    pub fn get<H: ControllerHandler<C, E, T>, T>(&mut self, path: &str, handler: H) -> &mut Self {
        self.route(Method::GET, path, handler)
    }

    /// A POST route.
    pub fn post<H: ControllerHandler<C, E, T>, T>(&mut self, path: &str, handler: H) -> &mut Self {
        self.route(Method::POST, path, handler)
    }

    /// A PUT route.
    pub fn put<H: ControllerHandler<C, E, T>, T>(&mut self, path: &str, handler: H) -> &mut Self {
        self.route(Method::PUT, path, handler)
    }

    /// A PATCH route.
    pub fn patch<H: ControllerHandler<C, E, T>, T>(&mut self, path: &str, handler: H) -> &mut Self {
        self.route(Method::PATCH, path, handler)
    }

    /// A DELETE route.
    pub fn delete<H: ControllerHandler<C, E, T>, T>(
        &mut self,
        path: &str,
        handler: H,
    ) -> &mut Self {
        self.route(Method::DELETE, path, handler)
    }
}

/// Turns `/notify/:topic` (and `*rest`) into the router's `{topic}` syntax
/// and joins it to `prefix`.
pub(crate) fn join_path(prefix: &str, path: &str) -> Result<String, BuildError> {
    let mut out = String::new();
    for part in prefix.split('/').chain(path.split('/')) {
        if part.is_empty() {
            continue;
        }
        out.push('/');
        if let Some(name) = part.strip_prefix(':') {
            if name.is_empty() {
                return Err(BuildError::InvalidPath(format!("{prefix}{path}")));
            }
            out.push('{');
            out.push_str(name);
            out.push('}');
        } else if let Some(name) = part.strip_prefix('*') {
            out.push_str("{*");
            out.push_str(name);
            out.push('}');
        } else {
            out.push_str(part);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The routes of every controller, checked for duplicates.
pub(crate) struct HttpRoutes<E: Emitter> {
    routes: BTreeMap<String, Vec<(Method, BoxedHandler<E>)>>,
}

impl<E: Emitter> Default for HttpRoutes<E> {
    fn default() -> Self {
        Self {
            routes: BTreeMap::new(),
        }
    }
}

impl<E: Emitter> HttpRoutes<E> {
    pub(crate) fn add_controller<C: Controller<E>>(
        &mut self,
        prefix: &str,
        controller: C,
    ) -> Result<(), BuildError> {
        let mut builder = RouteBuilder {
            controller: Arc::new(controller),
            routes: Vec::new(),
        };
        builder.controller.clone().configure(&mut builder);
        for (method, path, handler) in builder.routes {
            let full = join_path(prefix, &path)?;
            let entry = self.routes.entry(full.clone()).or_default();
            if entry.iter().any(|(m, _)| *m == method) {
                return Err(BuildError::DuplicateRoute {
                    method: method.to_string(),
                    path: full,
                });
            }
            entry.push((method, handler));
        }
        Ok(())
    }

    pub(crate) fn has_path(&self, path: &str) -> bool {
        self.routes.contains_key(path)
    }

    pub(crate) fn into_router(
        self,
        app: AppContext<E>,
        body_limit: usize,
        request_timeout: Duration,
    ) -> Router {
        let mut router = Router::new();
        for (path, handlers) in self.routes {
            let mut method_router: MethodRouter = MethodRouter::new();
            for (method, handler) in handlers {
                let Ok(filter) = MethodFilter::try_from(method) else {
                    continue;
                };
                let app = app.clone();
                method_router = method_router.merge(on(filter, move |mut req: Request<Body>| {
                    let config = RequestConfig::new(
                        req.headers(),
                        body_limit,
                        request_timeout,
                        Some(app.socket().socket_emitter().clone()),
                    );
                    let id = config.correlation_id.clone();
                    let expired = extract::bound_request(&mut req, config);
                    // A panicking handler answers 500; the connection
                    // and the server carry on. The handler's task knows
                    // the request's correlation id (`ori::correlation_id`).
                    let handled = crate::correlation::scoped(id, handler(req, app.clone()));
                    std::panic::AssertUnwindSafe(handled)
                        .catch_unwind()
                        .map(move |result| {
                            let resp = result.unwrap_or_else(|_| {
                                tracing::error!("HTTP handler panicked");
                                error_response(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "Internal Server Error",
                                )
                            });
                            // However the body was read (axum's `Bytes`
                            // answers 400), a body past the deadline is a
                            // 408 that closes the connection.
                            let late = expired.load(std::sync::atomic::Ordering::Relaxed);
                            if late && resp.status().is_client_error() {
                                return extract::timed_out().into_response();
                            }
                            resp
                        })
                }));
            }
            // axum's own body extractors (`Bytes`, `String`) honour the
            // body limit too.
            let method_router = method_router.layer(DefaultBodyLimit::max(body_limit));
            router = router.route(&path, method_router);
        }
        router
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_translate_params() {
        assert_eq!(
            join_path("/api", "/notify/:topic").unwrap(),
            "/api/notify/{topic}"
        );
        assert_eq!(join_path("/api/", "stats").unwrap(), "/api/stats");
        assert_eq!(join_path("", "/").unwrap(), "/");
        assert_eq!(join_path("/files", "/*rest").unwrap(), "/files/{*rest}");
        assert!(join_path("/api", "/:").is_err());
    }

    #[test]
    fn each_publish_error_kind_answers_its_status() {
        use ori_core::{ErrorKind, ProviderError};
        let provider = |kind| PublishError::Provider(ProviderError::new(kind, "x"));
        let cases = [
            (
                PublishError::InvalidTopic {
                    topic: "__x".into(),
                    reason: crate::Topic::client("__x").unwrap_err(),
                },
                PublishErrorKind::InvalidInput,
                400,
            ),
            (
                PublishError::NotConfigured,
                PublishErrorKind::Misconfigured,
                500,
            ),
            (
                PublishError::NotReady { topic: "t".into() },
                PublishErrorKind::NotReady,
                503,
            ),
            (
                PublishError::Overloaded {
                    topic: "t".into(),
                    waited: std::time::Duration::from_secs(5),
                },
                PublishErrorKind::Overloaded,
                503,
            ),
            (
                provider(ErrorKind::Overloaded),
                PublishErrorKind::Overloaded,
                503,
            ),
            (
                provider(ErrorKind::Unavailable),
                PublishErrorKind::Unavailable,
                503,
            ),
            (provider(ErrorKind::Timeout), PublishErrorKind::Timeout, 504),
            (provider(ErrorKind::Backend), PublishErrorKind::Backend, 502),
            (
                provider(ErrorKind::Config),
                PublishErrorKind::Misconfigured,
                500,
            ),
        ];
        for (error, kind, status) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            let retryable = matches!(status, 503 | 504);
            assert_eq!(error.is_retryable(), retryable, "{error}");
            assert_eq!(error.is_timeout(), status == 504, "{error}");
            let message = error.to_string();
            let http = HttpError::from(error);
            assert_eq!(http.status().as_u16(), status, "{message}");
            assert_eq!(http.message(), message);
        }
    }
}
