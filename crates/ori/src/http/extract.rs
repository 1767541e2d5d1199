//! Extractors for controller handlers written the axum way: the request's
//! emitter, a service by type, a JSON body with Ori's limits and JSON
//! errors, and the [`RequestContext`] itself. Ori's readers go through
//! [`read_body`], so both handler styles answer the same 413, 408 and 415;
//! in a controller route the body itself ends at the request timeout
//! ([`DeadlineBody`]), so axum's own body extractors are bounded too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams};
use axum::http::{request::Parts, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::request::{correlation_id, is_json_content_type};
use super::{HttpError, RequestContext};
use crate::context::AppContext;
use crate::emitter::{Emitter, RequestEmitter, SocketEmitter};

/// The body limit, the body deadline and the correlation id of one request,
/// set by the controller route before any extractor runs.
#[derive(Clone)]
pub(crate) struct RequestConfig {
    pub(crate) body_limit: usize,
    /// When the body must have arrived (the request timeout).
    pub(crate) deadline: tokio::time::Instant,
    pub(crate) correlation_id: Arc<str>,
    /// Counts request timeouts for `/metrics`.
    pub(crate) base: Option<SocketEmitter>,
    /// Whether the body is a [`DeadlineBody`] (in a controller route).
    pub(crate) bounded: bool,
}

/// Outside Ori's controller routes (a merged axum route using an Ori
/// extractor): the default limits, no counting.
const DEFAULT_BODY_LIMIT: usize = 1 << 20;
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl RequestConfig {
    pub(crate) fn new(
        headers: &HeaderMap,
        body_limit: usize,
        timeout: std::time::Duration,
        base: Option<SocketEmitter>,
    ) -> Self {
        Self {
            body_limit,
            deadline: tokio::time::Instant::now() + timeout,
            correlation_id: correlation_id(headers),
            base,
            bounded: false,
        }
    }

    /// The request's configuration, or the defaults when it has none.
    pub(crate) fn of(parts: &Parts) -> Self {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self::new(&parts.headers, DEFAULT_BODY_LIMIT, DEFAULT_TIMEOUT, None))
    }
}

/// The error of a [`DeadlineBody`] past its deadline.
#[derive(Debug)]
struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body not received in time")
    }
}

impl std::error::Error for BodyDeadline {}

/// Whether `error` (or one of its causes) is a [`BodyDeadline`].
fn is_deadline(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyDeadline>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A request body that fails once the request timeout has passed, whoever
/// reads it (Ori's readers, axum's `Bytes` or `String`), and counts the
/// timeout once.
///
/// The timer is armed only when the body has to be waited for: a body that
/// is already there (most are, read with the request head) is checked
/// against the clock alone. Arming a timer earlier than the runtime's next
/// one wakes its driver (a system call), on every request.
struct DeadlineBody {
    inner: Body,
    deadline: tokio::time::Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: Arc<AtomicBool>,
    base: Option<SocketEmitter>,
}

impl DeadlineBody {
    /// Counts the timeout (once) and gives the deadline's error.
    fn expire(&self) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        if !self.expired.swap(true, Ordering::Relaxed) {
            if let Some(base) = &self.base {
                base.http_counters()
                    .request_timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Poll::Ready(Some(Err(axum::Error::new(BodyDeadline))))
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        // The deadline first: a body trickling a byte at a time is always
        // ready with another frame.
        if tokio::time::Instant::now() >= self.deadline {
            return self.expire();
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if frame.is_pending() {
            // Waiting for the peer: from now on the timer wakes us at the
            // deadline.
            let deadline = self.deadline;
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return self.expire();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bounds `req`'s body by `config`'s deadline (a body already complete is
/// left alone) and records `config` for the extractors. The flag tells
/// whether the deadline passed while the body was read.
pub(crate) fn bound_request(req: &mut Request<Body>, mut config: RequestConfig) -> Arc<AtomicBool> {
    let expired = Arc::new(AtomicBool::new(false));
    if !hyper::body::Body::is_end_stream(req.body()) {
        let inner = std::mem::take(req.body_mut());
        *req.body_mut() = Body::new(DeadlineBody {
            inner,
            deadline: config.deadline,
            timer: None,
            expired: expired.clone(),
            base: config.base.clone(),
        });
        config.bounded = true;
    }
    req.extensions_mut().insert(config);
    expired
}

/// The answer to a request whose body missed the deadline.
pub(crate) fn timed_out() -> HttpError {
    HttpError::new(
        StatusCode::REQUEST_TIMEOUT,
        "Request body not received in time",
    )
}

/// Reads a body: at most the body limit (413 beyond, also when the declared
/// `Content-Length` says so), arrived by the deadline (408 beyond).
pub(crate) async fn read_body(
    config: &RequestConfig,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, HttpError> {
    let too_big = || HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.body_limit as u64) {
        return Err(too_big());
    }
    let collect = Limited::new(body, config.body_limit).collect();
    // A bounded body ends at the deadline by itself (and counts it).
    let collected = if config.bounded {
        collect.await
    } else {
        match tokio::time::timeout_at(config.deadline, collect).await {
            Ok(collected) => collected,
            Err(_) => return Err(timed_out()),
        }
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(e) if is_deadline(&*e) => Err(timed_out()),
        Err(e) => Err(HttpError::bad_request(format!("Cannot read body: {e}"))),
    }
}

/// Reads a JSON body into `T`: 415 without a JSON content type, then the
/// rules of [`read_body`], then 400 on malformed JSON or a shape that does
/// not fit.
pub(crate) async fn read_json<T: DeserializeOwned>(
    config: &RequestConfig,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, HttpError> {
    if !is_json_content_type(headers.get(axum::http::header::CONTENT_TYPE)) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected Content-Type: application/json",
        ));
    }
    let bytes = read_body(config, headers, body).await?;
    serde_json::from_slice(&bytes).map_err(|e| HttpError::bad_request(format!("Invalid JSON: {e}")))
}

impl<E: Emitter> FromRequest<AppContext<E>> for RequestContext<E> {
    type Rejection = HttpError;

    async fn from_request(req: Request<Body>, app: &AppContext<E>) -> Result<Self, HttpError> {
        let (mut parts, body) = req.into_parts();
        let params = RawPathParams::from_request_parts(&mut parts, &())
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let config = RequestConfig::of(&parts);
        Ok(RequestContext::new(
            app.clone(),
            parts,
            params,
            body,
            config,
        ))
    }
}

impl<E: Emitter> FromRequestParts<AppContext<E>> for RequestEmitter<E> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppContext<E>,
    ) -> Result<Self, Self::Rejection> {
        let correlation_id = match parts.extensions.get::<RequestConfig>() {
            Some(config) => config.correlation_id.clone(),
            None => correlation_id(&parts.headers),
        };
        Ok(RequestEmitter::new(app.socket().clone(), correlation_id))
    }
}

/// A registered service by type ([`Ori::service`](crate::Ori::service)),
/// as an extractor; a missing one answers 500 `{"error": ...}` naming it.
///
/// ```
/// use ori::extract::Service;
///
/// struct Stats;
/// impl Stats {
///     fn count(&self) -> usize { 0 }
/// }
///
/// async fn count(Service(stats): Service<Stats>) -> String {
///     stats.count().to_string()
/// }
/// ```
pub struct Service<T>(pub Arc<T>);

impl<T> std::ops::Deref for Service<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<E: Emitter, T: Send + Sync + 'static> FromRequestParts<AppContext<E>> for Service<T> {
    type Rejection = HttpError;

    async fn from_request_parts(
        _parts: &mut Parts,
        app: &AppContext<E>,
    ) -> Result<Self, Self::Rejection> {
        app.require::<T>()
            .map(Service)
            .map_err(|e| HttpError::internal(e.to_string()))
    }
}

/// JSON in and out: as a response, `T` serialized with
/// `Content-Type: application/json` (like axum's `Json`); as an extractor,
/// the body read with Ori's rules and errors answered as JSON
/// `{"error": "..."}`: 415 without `Content-Type: application/json` (or
/// `application/*+json`), 413 over the [body limit](crate::Ori::body_limit),
/// 408 past the [request timeout](crate::Ori::request_timeout), 400 on
/// malformed JSON or a shape that does not fit. In a plain axum route
/// merged into the app (not a controller's), the limits are the defaults:
/// 1 MiB and 30 s.
///
/// ```
/// use ori::Json;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Notify { message: String }
///
/// async fn notify(Json(body): Json<Notify>) -> Json<serde_json::Value> {
///     Json(serde_json::json!({ "echo": body.message }))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Json<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T> From<T> for Json<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, HttpError> {
        let (parts, body) = req.into_parts();
        let config = RequestConfig::of(&parts);
        read_json(&config, &parts.headers, body).await.map(Json)
    }
}
