//! The HTTP side of a WebSocket connection: checks the upgrade request,
//! runs the upgrade (authentication) handler under its timeout, answers
//! 101 and hands the upgraded stream to the connection task. Upgrades
//! routed by axum come through [`handle`]; the accept loop's fast path
//! (`fast.rs`) shares [`admit`] and [`start`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use bytes::BytesMut;
use futures_util::future::Either;
use futures_util::FutureExt;
use hyper_util::rt::TokioIo;
use ori_core::codec::deflate;
use ori_core::{Broker, SocketId};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

use super::auth::{AuthClock, AuthFn, Authenticated, JoinFn};
use super::conn::ConnInner;
use super::driver;
use super::handshake::{self, Refusal};
use super::limits::Limits;
use super::options::{UpgradeFn, UpgradeRequest};
use super::writer::Writers;
use super::{Conn, Handlers, Upgrade};
use crate::emitter::SocketEmitter;
use crate::server::{Prefixed, Stream};

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

/// Decrements the upgrading counter however the opening ends.
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

/// The axum handler of the WebSocket path (upgrades the accept loop's fast
/// path declined, and every upgrade behind another server stack).
pub(crate) async fn handle<D: Send + Sync + 'static>(
    rt: Arc<WsRuntime<D>>,
    mut req: Request<Body>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let asked = match handshake::check(&req, &rt.limits, rt.shutting_down()) {
        Ok(asked) => asked,
        Err(refusal) => return refusal.response(),
    };
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    // The parts, not the request: its body is not `Sync`.
    let (method, uri, headers) = (req.method(), req.uri(), req.headers());
    let given = || UpgradeRequest {
        method: method.clone(),
        uri: uri.clone(),
        headers: headers.clone(),
        remote_addr,
    };
    let (decided, slot) = match admit(&rt, remote_addr, given).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.response(),
    };
    let admitted = match decided {
        Decided::Ready(accepted) => Admitted::Ready(accepted),
        Decided::Pending => {
            Admitted::Pending(Box::new(UpgradeRequest::detached(&req, remote_addr)))
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_guard = rt.tasks.token();
    tokio::spawn(connection_task(
        slot,
        on_upgrade,
        admitted,
        asked.deflate.as_ref().map(|(agreed, _)| *agreed),
        remote_addr,
        task_guard,
    ));
    rt.emitter.metrics().observe_upgrade(started.elapsed());
    asked.response()
}

/// How an upgrade was decided, before the request is kept or dropped.
pub(crate) enum Decided<D> {
    /// Accepted, authenticated.
    Ready(Authenticated<D>),
    /// Accepted pending in-band authentication.
    Pending,
}

/// Counts an upgrade against the connection limit and runs the upgrade
/// handler (given `request()`) under its timeout. On success the returned
/// slot keeps the connection's place in the count until it is registered.
pub(crate) async fn admit<D: Send + Sync + 'static>(
    rt: &Arc<WsRuntime<D>>,
    remote_addr: Option<SocketAddr>,
    request: impl FnOnce() -> UpgradeRequest,
) -> Result<(Decided<D>, UpgradeSlot<D>), Refusal> {
    let upgrading = rt.upgrading.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = UpgradeSlot(Some(rt.clone()));
    if rt.broker.connection_count() + upgrading > rt.limits.max_connections {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many connections",
        ));
    }
    let unauthorized = Refusal::new(StatusCode::UNAUTHORIZED, "Unauthorized");
    let decision = match &rt.upgrade {
        None if rt.authenticator.is_some() => Upgrade::Pending,
        None => match user_data_unit::<D>() {
            Some(d) => Upgrade::accept(d),
            None => Upgrade::Reject,
        },
        Some(handler) => {
            let guarded = std::panic::AssertUnwindSafe(handler(request())).catch_unwind();
            match tokio::time::timeout(rt.limits.upgrade_timeout, guarded).await {
                Ok(Ok(decision)) => decision,
                Ok(Err(_)) => {
                    tracing::error!(remote = ?remote_addr, "upgrade handler panicked");
                    return Err(Refusal::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                    ));
                }
                Err(_) => {
                    tracing::warn!(
                        timeout = ?rt.limits.upgrade_timeout,
                        remote = ?remote_addr,
                        "upgrade handler timed out; rejecting with 401"
                    );
                    return Err(unauthorized);
                }
            }
        }
    };
    match decision {
        Upgrade::Accept(accepted) => Ok((Decided::Ready(accepted), slot)),
        Upgrade::Pending if rt.authenticator.is_none() => {
            tracing::error!(
                "the upgrade handler left a socket pending, but no authenticator is set \
                 (WsOptions::authenticate); rejecting with 401"
            );
            Err(unauthorized)
        }
        Upgrade::Pending => Ok((Decided::Pending, slot)),
        Upgrade::Reject => Err(unauthorized),
    }
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
pub(crate) struct UpgradeSlot<D>(Option<Arc<WsRuntime<D>>>);

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

/// The connection of an admitted upgrade, and its authentication clock.
fn open<D: Send + Sync + 'static>(
    rt: &Arc<WsRuntime<D>>,
    admitted: Admitted<D>,
    deflate: Option<deflate::Agreed>,
    remote_addr: Option<SocketAddr>,
) -> (Conn<D>, Option<Box<AuthClock>>) {
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
    // Its queue goes in the lane of the writer that will write it (the
    // connection's task finds that writer by the lane).
    let outbox = rt.broker.hub().new_outbox_in(
        id,
        rt.limits.outbound_queue_limit,
        rt.writers.pick().lane().clone(),
    );
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
    (conn, clock)
}

/// The task of a connection the fast path upgraded: `stream` already had
/// its 101; `inbuf` holds what came after the request head. The connection
/// is made when the task first runs (a task dropped before that releases
/// the slot); combinators, as for [`connection_task`], so that what only
/// the start needs is not kept in every connection's state.
pub(crate) fn start<D: Send + Sync + 'static, S: Stream>(
    slot: UpgradeSlot<D>,
    admitted: Admitted<D>,
    deflate: Option<deflate::Agreed>,
    remote_addr: Option<SocketAddr>,
    stream: S,
    inbuf: BytesMut,
    task_guard: TaskTrackerToken,
) -> impl Future<Output = ()> + Send {
    futures_util::future::lazy(move |_| {
        let rt = slot.hand_on();
        let (conn, clock) = open(&rt, admitted, deflate, remote_addr);
        let (r, w) = stream.split();
        driver::run(rt, conn, r, w, inbuf, clock)
    })
    .flatten()
    .map(move |()| drop(task_guard))
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
            let (conn, clock) = open(&rt, admitted, deflate, remote_addr);
            // Our own server hands over the TCP stream itself; behind another
            // server stack the upgraded stream is used through its trait
            // object (boxed: the rare case should not size the common one).
            match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
                Ok(parts) => {
                    // Copy the bytes that came with the request: `read_buf`
                    // shares the HTTP connection's whole read buffer, which
                    // must not live as long as the WebSocket connection.
                    let (ahead, tcp) = parts.io.into_inner().into_parts();
                    let mut inbuf = BytesMut::new();
                    if !parts.read_buf.is_empty() || !ahead.is_empty() {
                        inbuf.extend_from_slice(&parts.read_buf);
                        inbuf.extend_from_slice(&ahead);
                    }
                    drop(parts.read_buf);
                    let (r, w) = tcp.split();
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

    /// A connection the fast path upgraded is one suspended instance of
    /// this task; dropped before it runs, it releases its slot.
    #[tokio::test]
    async fn fast_connection_task_stays_small() {
        let rt = crate::ws::driver::tests::runtime();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_client, stream) = (client.unwrap(), accepted.unwrap().0);
        rt.upgrading.fetch_add(1, Ordering::AcqRel);
        let task = start(
            UpgradeSlot(Some(rt.clone())),
            Admitted::Ready(Authenticated::new(())),
            None,
            None,
            stream,
            BytesMut::new(),
            rt.tasks.token(),
        );
        let size = std::mem::size_of_val(&task);
        println!("fast connection task future: {size} bytes");
        assert!(size <= 280, "fast connection task grew to {size} bytes");
        drop(task);
        assert_eq!(rt.upgrading.load(Ordering::Acquire), 0, "slot released");
        assert_eq!(rt.tasks.len(), 0);
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
}
