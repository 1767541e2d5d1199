//! The HTTP side of a WebSocket connection: validates the upgrade request,
//! runs the upgrade (authentication) handler under its timeout, answers
//! 101 and hands the upgraded stream to the connection task.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use bytes::BytesMut;
use futures_util::future::Either;
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use ori_core::codec::deflate;
use ori_core::{Broker, SocketId};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use super::auth::{AuthClock, AuthFn, Authenticated, JoinFn};
use super::conn::ConnInner;
use super::driver;
use super::options::{Limits, UpgradeFn, UpgradeRequest};
use super::writer::Writers;
use super::{Conn, Handlers, Upgrade};
use crate::emitter::SocketEmitter;
use crate::http::error_response;

/// Everything the WebSocket endpoint needs, shared by all connections.
pub(crate) struct WsRuntime<D> {
    pub(crate) broker: Broker,
    pub(crate) emitter: SocketEmitter,
    /// The application, for the connection handles.
    pub(crate) app: super::conn::AppHandle,
    pub(crate) handlers: Handlers<D>,
    pub(crate) routers: crate::router::RouterTable<D>,
    /// The message registry, after the routers.
    pub(crate) registry: Option<crate::messages::MessageRegistry<D>>,
    pub(crate) upgrade: Option<UpgradeFn<D>>,
    /// The in-band authenticator (PROTOCOL.md section 9).
    pub(crate) authenticator: Option<AuthFn<D>>,
    /// The join authorization of client-initiated joins.
    pub(crate) authorize_join: Option<JoinFn<D>>,
    pub(crate) limits: Limits,
    /// The connection tasks, for a shutdown to wait for.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when the app stops.
    pub(crate) shutdown: CancellationToken,
    /// The writer shards of the connections.
    pub(crate) writers: Writers,
    /// Upgrades accepted but not yet registered in the hub (for the
    /// connection limit).
    pub(crate) upgrading: Arc<AtomicUsize>,
}

impl<D> WsRuntime<D> {
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

use base64::Engine as _;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 section 4.2.2).
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks the opening handshake per RFC 6455 section 4.2.1: a `GET` on
/// HTTP/1.1 with `Host`, `Upgrade: websocket`, `Connection: Upgrade`,
/// version 13 and exactly one `Sec-WebSocket-Key` that is the base64 of 16
/// bytes. Returns the client key, or the status and reason of the refusal.
fn validate_handshake(req: &Request<Body>) -> Result<HeaderValue, (StatusCode, &'static str)> {
    let headers = req.headers();
    if req.method() != Method::GET || req.version() != Version::HTTP_11 {
        return Err((
            StatusCode::BAD_REQUEST,
            "A WebSocket upgrade is a GET on HTTP/1.1",
        ));
    }
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "Expected a WebSocket upgrade request",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "Unsupported WebSocket version (need 13)",
        ));
    }
    if headers.get(header::HOST).is_none_or(|h| h.is_empty()) {
        return Err((StatusCode::BAD_REQUEST, "Missing Host header"));
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    match (keys.next(), keys.next()) {
        (Some(key), None) if is_base64_of_16_bytes(key.as_bytes()) => Ok(key.clone()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            "Missing or invalid Sec-WebSocket-Key",
        )),
    }
}

/// Whether `key` is the base64 encoding of 16 bytes: 22 characters of the
/// base64 alphabet, then `==`.
fn is_base64_of_16_bytes(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn origin_allowed(limits: &Limits, headers: &HeaderMap) -> bool {
    let (Some(allowed), Some(origin)) = (&limits.allowed_origins, headers.get(header::ORIGIN))
    else {
        return true;
    };
    let origin = origin.to_str().unwrap_or("");
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

/// Decrements the upgrading counter however the upgrade ends.
pub(crate) struct Upgrading<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Upgrading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place in the upgrading count until it is registered or
/// refused; owned, so that a pending socket's clock can keep it.
pub(crate) struct UpgradingSlot(Arc<AtomicUsize>);

impl UpgradingSlot {
    /// Takes over one count already made.
    pub(crate) fn taken(counter: &Arc<AtomicUsize>) -> Self {
        Self(counter.clone())
    }
}

impl Drop for UpgradingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The axum handler of the WebSocket path.
pub(crate) async fn handle<D: Send + Sync + 'static>(
    rt: Arc<WsRuntime<D>>,
    mut req: Request<Body>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let key = match validate_handshake(&req) {
        Ok(key) => key,
        Err((status, reason)) => {
            let mut resp = error_response(status, reason);
            if status == StatusCode::UPGRADE_REQUIRED {
                resp.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            return resp;
        }
    };
    if rt.shutting_down() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "Server shutting down");
    }
    if !origin_allowed(&rt.limits, req.headers()) {
        return error_response(StatusCode::FORBIDDEN, "Origin not allowed");
    }
    let upgrading = rt.upgrading.fetch_add(1, Ordering::AcqRel) + 1;
    let guard = Upgrading(&rt.upgrading);
    if rt.broker.connection_count() + upgrading > rt.limits.max_connections {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "Too many connections");
    }
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let decision = match &rt.upgrade {
        None if rt.authenticator.is_some() => Upgrade::Pending,
        None => match user_data_unit::<D>() {
            Some(d) => Upgrade::accept(d),
            None => Upgrade::Reject,
        },
        Some(handler) => {
            let given = UpgradeRequest {
                method: req.method().clone(),
                uri: req.uri().clone(),
                headers: req.headers().clone(),
                remote_addr,
            };
            let guarded = std::panic::AssertUnwindSafe(handler(given)).catch_unwind();
            match tokio::time::timeout(rt.limits.upgrade_timeout, guarded).await {
                Ok(Ok(decision)) => decision,
                Ok(Err(_)) => {
                    tracing::error!(remote = ?remote_addr, "upgrade handler panicked");
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                    );
                }
                Err(_) => {
                    tracing::warn!(
                        timeout = ?rt.limits.upgrade_timeout,
                        remote = ?remote_addr,
                        "upgrade handler timed out; rejecting with 401"
                    );
                    return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
                }
            }
        }
    };
    let admitted = match decision {
        Upgrade::Accept(accepted) => Admitted::Ready(accepted),
        Upgrade::Pending => {
            if rt.authenticator.is_none() {
                tracing::error!(
                    "the upgrade handler left a socket pending, but no authenticator is set \
                     (WsOptions::authenticate); rejecting with 401"
                );
                return error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            Admitted::Pending(Box::new(UpgradeRequest::detached(&req, remote_addr)))
        }
        Upgrade::Reject => return error_response(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    // permessage-deflate, when offered by both sides.
    let deflate = rt.limits.compression.and_then(|c| {
        let offers = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .filter_map(|v| v.to_str().ok());
        deflate::negotiate(offers, &c.deflate_config())
    });
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(guard);
    rt.upgrading.fetch_add(1, Ordering::AcqRel);
    let task_guard = rt.tasks.token();
    tokio::spawn(connection_task(
        UpgradeSlot(Some(rt.clone())),
        on_upgrade,
        admitted,
        deflate.as_ref().map(|(agreed, _)| *agreed),
        remote_addr,
        task_guard,
    ));

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(Ok(v)) = deflate.map(|(_, answer)| HeaderValue::from_str(&answer)) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    rt.emitter.metrics().observe_upgrade(started.elapsed());
    resp
}

/// How an upgrade was admitted.
pub(crate) enum Admitted<D> {
    /// Authenticated at the upgrade.
    Ready(Authenticated<D>),
    /// Accepted pending in-band authentication; the request is kept for
    /// the authenticator.
    Pending(Box<UpgradeRequest>),
}

/// An upgrading slot (see [`WsRuntime::upgrading`]) held by a connection
/// task until the upgrade completes; released on drop unless handed on.
struct UpgradeSlot<D>(Option<Arc<WsRuntime<D>>>);

impl<D> UpgradeSlot<D> {
    /// Hands the slot on to the connection task (which releases it once
    /// the connection is registered).
    fn hand_on(mut self) -> Arc<WsRuntime<D>> {
        self.0.take().expect("slot handed on once")
    }
}

impl<D> Drop for UpgradeSlot<D> {
    fn drop(&mut self) {
        if let Some(rt) = &self.0 {
            rt.upgrading.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The task of one upgraded connection: waits for the HTTP server to hand
/// over the stream, then drives the connection.
///
/// Built from combinators rather than one `async` block, so that what is
/// only needed to start (the upgrade future, the user data and address
/// before they move into the connection) does not stay in the state of
/// every connection for its whole life.
fn connection_task<D: Send + Sync + 'static>(
    slot: UpgradeSlot<D>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    admitted: Admitted<D>,
    deflate: Option<deflate::Agreed>,
    remote_addr: Option<SocketAddr>,
    task_guard: TaskTrackerToken,
) -> impl Future<Output = ()> + Send {
    type Rare = Pin<Box<dyn Future<Output = ()> + Send>>;
    on_upgrade
        .then(move |upgraded| {
            let upgraded = match upgraded {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade failed");
                    return Either::Right(Box::pin(std::future::ready(())) as Rare);
                }
            };
            let rt = slot.hand_on();
            let id = SocketId::new();
            let data = std::sync::OnceLock::new();
            let clock = match admitted {
                Admitted::Ready(Authenticated {
                    data: d,
                    expires_in,
                }) => {
                    let _ = data.set(d);
                    expires_in.map(|ttl| Box::new(AuthClock::expiring(ttl)))
                }
                Admitted::Pending(req) => Some(Box::new(AuthClock::pending(
                    rt.limits.auth_timeout,
                    *req,
                    rt.shutdown.clone(),
                    UpgradingSlot::taken(&rt.upgrading),
                ))),
            };
            let outbox = rt
                .broker
                .hub()
                .new_outbox(id, rt.limits.outbound_queue_limit);
            let outbox = Arc::new(match deflate {
                Some(agreed) => outbox.with_deflate(agreed),
                None => outbox,
            });
            let conn = Conn::from_inner(Arc::new(ConnInner::new(
                id,
                data,
                remote_addr,
                outbox,
                rt.clone(),
            )));
            // Our own server hands over the TCP stream itself; behind another
            // server stack the upgraded stream is used through its trait
            // object (boxed: the rare case should not size the common one).
            match upgraded.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => {
                    // Copy the bytes that came with the request: `read_buf`
                    // shares the HTTP connection's whole read buffer, which
                    // must not live as long as the WebSocket connection.
                    let inbuf = if parts.read_buf.is_empty() {
                        BytesMut::new()
                    } else {
                        BytesMut::from(&parts.read_buf[..])
                    };
                    drop(parts.read_buf);
                    let (r, w) = parts.io.into_inner().into_split();
                    Either::Left(driver::run(rt, conn, r, w, inbuf, clock))
                }
                Err(upgraded) => {
                    let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                    Either::Right(
                        Box::pin(driver::run(rt, conn, r, w, BytesMut::new(), clock)) as Rare,
                    )
                }
            }
        })
        .map(move |()| drop(task_guard))
}

/// Without an upgrade handler the user data must be `()`.
fn user_data_unit<D: 'static>() -> Option<D> {
    let unit: Box<dyn std::any::Any> = Box::new(());
    unit.downcast::<D>().ok().map(|b| *b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// Every idle connection is one suspended instance of this task.
    #[tokio::test]
    async fn connection_task_stays_small() {
        let rt = crate::ws::driver::tests::runtime();
        let mut req = Request::new(Body::empty());
        let on_upgrade = hyper::upgrade::on(&mut req);
        rt.upgrading.fetch_add(1, Ordering::AcqRel);
        let task = connection_task(
            UpgradeSlot(Some(rt.clone())),
            on_upgrade,
            Admitted::Ready(Authenticated::new(())),
            None,
            None,
            rt.tasks.token(),
        );
        let size = std::mem::size_of_val(&task);
        println!("connection task future: {size} bytes");
        // The runtime's task cell is 128-byte aligned and adds about 104
        // bytes: up to 280 bytes of future it takes 384, past it 512 (what
        // only some suspensions keep is scoped to one await or boxed for
        // this).
        assert!(size <= 280, "connection task grew to {size} bytes");
        drop(task);
        assert_eq!(rt.upgrading.load(Ordering::Acquire), 0, "slot released");
        assert_eq!(rt.tasks.len(), 0);
    }

    #[test]
    fn a_key_is_the_base64_of_16_bytes() {
        assert!(is_base64_of_16_bytes(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_base64_of_16_bytes(
            base64::engine::general_purpose::STANDARD
                .encode([0xff; 16])
                .as_bytes()
        ));
        for bad in [
            &b"!!!!!!!!!!!!!!!!!!!!!!!!"[..],
            b"AAAAAAAAAAAAAAAAAAAAAAAA",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZ===",
            b"dGhlIHNhbX Bsbub25jZQ==",
            b"",
        ] {
            assert!(
                !is_base64_of_16_bytes(bad),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
