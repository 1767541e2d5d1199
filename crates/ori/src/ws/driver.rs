//! The task that owns one connection: decodes incoming frames, runs the
//! handlers in arrival order, pings quiet peers and ends with the closing
//! handshake.
//!
//! Writing is not done by the connection's task: its frames are written by
//! its writer shard (see `writer`) through its [`Link`]. The connection's
//! task is woken only for input, its timer, and the rare write events
//! (close frame written, write failed, socket drained).
//!
//! An idle connection holds no read buffer (bytes are read into a stack
//! scratch buffer and only a partial frame is kept) and no queue buffer.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use ori_core::codec::{self, close_code, Decoder, Frame, OpCode};
use ori_core::OutboxStatus;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::auth::{self, AuthClock, Fired};
use super::close::{self, End, Start};
use super::conn::ReadyState;
use super::handlers::guarded;
use super::link::{Detach, Link};
use super::rate::{Admit, Bucket, RATE_LIMITED_REPLY};
use super::session::{receive, Session};
use super::state::{CLOSE_SENT, CLOSE_STALLED, DRAINED, TICK};
use super::upgrade::{Upgrading, WsRuntime};
use super::Conn;

const SCRATCH: usize = 8 * 1024;

/// The connections' timer period: the smaller of the ping interval and the
/// idle timeout (at least 10 ms). Quiet time is counted in these.
pub(crate) fn tick_period(limits: &super::limits::Limits) -> Duration {
    limits
        .ping_interval
        .unwrap_or(limits.idle_timeout)
        .min(limits.idle_timeout)
        .max(Duration::from_millis(10))
}

/// How long the peer has been quiet. Counted in whole timer ticks (a flag
/// set when the peer completes something, looked at by the timer) rather
/// than from a stored instant: the same tick-grained verdicts, 16 bytes
/// less in every connection. Bytes alone are not activity: a frame, and a
/// fragmented message, must complete within the idle timeout, so a peer
/// that trickles a byte at a time cannot hold its partial data (up to the
/// message size limit) for ever.
///
/// The ticks come from the shard's writer (one timer for all its
/// connections), at its own phase: the first one may come at once, so the
/// connection starts as seen and that tick counts nothing.
struct Quiet {
    ticks: u32,
    seen: bool,
    ping_sent: bool,
}

/// What a tick found.
enum Quietness {
    Fine,
    /// Quiet for the ping interval: ping once.
    Ping,
    /// Quiet for the idle timeout: close.
    Idle,
}

impl Quiet {
    fn new() -> Self {
        Self {
            ticks: 0,
            seen: true,
            ping_sent: false,
        }
    }

    /// The peer completed a frame that counts as activity.
    fn activity(&mut self) {
        self.seen = true;
        self.ping_sent = false;
    }

    fn tick(&mut self, limits: &super::limits::Limits) -> Quietness {
        self.ticks = if std::mem::take(&mut self.seen) {
            0
        } else {
            self.ticks.saturating_add(1)
        };
        let quiet = tick_period(limits).saturating_mul(self.ticks);
        if quiet >= limits.idle_timeout {
            Quietness::Idle
        } else if limits.ping_interval.is_some_and(|p| quiet >= p) && !self.ping_sent {
            self.ping_sent = true;
            Quietness::Ping
        } else {
            Quietness::Fine
        }
    }
}

/// Reads what is available into `buf`: into its spare capacity when a large
/// frame is expected, otherwise through a stack scratch buffer so an idle
/// connection holds no read buffer.
pub(super) async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() >= SCRATCH {
        return reader.read_buf(buf).await;
    }
    poll_fn(|cx| {
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH];
        let mut rb = ReadBuf::uninit(&mut scratch);
        match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Drives one accepted connection until it closes. `inbuf` holds bytes that
/// arrived with the upgrade request.
///
/// Every idle connection is one suspended instance of this future, so it is
/// kept small: rare awaits (guards, handlers, the closing handshake) are
/// boxed, and the arguments are used in place (an `async fn` would keep a
/// second copy of them).
pub(crate) fn run<D, R, W>(
    rt: Arc<WsRuntime<D>>,
    conn: Conn<D>,
    mut reader: R,
    writer: W,
    mut inbuf: BytesMut,
    clock: Option<Box<AuthClock>>,
) -> impl Future<Output = ()> + Send
where
    D: Send + Sync + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let shard = rt.writers.shard_of(conn.inner.outbox.lane());
    let link = Link::new(conn.inner.clone(), shard, writer);
    let mut session = Session::new(clock);
    // What the loop keeps lives here (captured, laid out once) or in
    // locals kept across a single await: a local kept across several
    // awaits takes its room in every suspension of every connection.
    let mut quiet = Quiet::new();
    // Bytes that arrived with the upgrade request are decoded before waiting.
    let mut skip_wait = !inbuf.is_empty();
    async move {
        let _detach = Detach(&link);
        let limits = &rt.limits;
        // A pending socket may send no more than an authentication needs.
        let mut decoder = Decoder::new(if session.is_pending() {
            limits.pending_codec()
        } else {
            limits.codec()
        });
        if let Some(agreed) = conn.inner.outbox.deflate() {
            decoder.enable_deflate(agreed);
        }

        // Boxed: a connection without the limit keeps 8 bytes for it.
        let mut bucket = limits.inbound_rate.map(|r| Box::new(Bucket::new(r)));
        // How the closing handshake starts; `None`: the connection failed.
        // Locals kept across more than one suspension are laid out in every
        // one of them, so each await below is the only one in the scope of
        // what it keeps (the select's result, a frame). This one is live
        // across all of them, hence boxed.
        let start: Option<Box<Start>> = 'run: {
            // A pending socket's clock keeps its place in the upgrading
            // count; any other socket's place is this one, until admitted.
            if !session.is_pending() {
                let slot = Upgrading(&rt.upgrading);
                if let Err((code, reason)) = Box::pin(session.open(&rt, &conn, Some(slot))).await {
                    conn.close(code, reason);
                    break 'run Some(Box::new(Start::Ours));
                }
            }
            'conn: loop {
                if !std::mem::take(&mut skip_wait) {
                    let woke = tokio::select! {
                        biased;
                        event = link.event() => Woke::Event(event),
                        fired = auth::Fire(&mut session.clock) => Woke::Clock(fired),
                        read = read_some(&mut reader, &mut inbuf) => Woke::Read(read.is_ok_and(|n| n > 0)),
                    };
                    match woke {
                        Woke::Event(DRAINED) => {
                            if let (true, Some(drain)) = (session.is_open(), &rt.handlers.drain) {
                                Box::pin(guarded("drain", conn.id(), drain(conn.clone()))).await;
                            }
                            continue 'conn;
                        }
                        Woke::Event(CLOSE_SENT | CLOSE_STALLED) => {
                            break 'run Some(Box::new(Start::Ours))
                        }
                        Woke::Event(TICK) => {
                            match quiet.tick(limits) {
                                Quietness::Idle => {
                                    conn.close(close_code::GOING_AWAY, "Idle timeout");
                                }
                                Quietness::Ping => {
                                    conn.push_frame(codec::encode_frame(OpCode::Ping, b""));
                                }
                                Quietness::Fine => {}
                            }
                            if conn.inner.outbox.status() != OutboxStatus::Open {
                                // Closing (by us, a handler, a shed): the
                                // handshake and its timeout from here.
                                break 'run Some(Box::new(Start::Ours));
                            }
                            continue 'conn;
                        }
                        Woke::Event(_) => break 'run None,
                        Woke::Clock(Fired::PendingTimeout) => {
                            conn.close(close_code::POLICY_VIOLATION, "Authentication timeout");
                            break 'run Some(Box::new(Start::Ours));
                        }
                        Woke::Clock(Fired::Warn(left)) => {
                            conn.push_frame(text_frame(&auth::expiring_reply(left)));
                            link.flush_now();
                            continue 'conn;
                        }
                        Woke::Clock(Fired::Expired) => {
                            conn.close(close_code::POLICY_VIOLATION, "Token expired");
                            break 'run Some(Box::new(Start::Ours));
                        }
                        Woke::Clock(Fired::Shutdown) => {
                            conn.close(close_code::GOING_AWAY, "Server shutting down");
                            break 'run Some(Box::new(Start::Ours));
                        }
                        Woke::Read(false) => break 'run None,
                        Woke::Read(true) => {}
                    }
                }

                // Decode and dispatch everything complete in the buffer.
                loop {
                    let frame = match decoder.decode(&mut inbuf) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(socket = %conn.id(), error = %e, "protocol error");
                            break 'run Some(Box::new(Start::Violation {
                                code: e.code,
                                reason: e.reason,
                            }));
                        }
                    };
                    // A message counts as activity; a control frame only outside
                    // a fragmented message (pings between the fragments of a
                    // message that never ends must not keep it open).
                    if matches!(frame, Frame::Message(_)) || !decoder.is_assembling() {
                        quiet.activity();
                    }
                    let was_open = session.is_open();
                    // What the frame asks of the application, if anything:
                    // one boxed await for all of them.
                    let refused = {
                        let work: Option<Work<'_>> = match frame {
                            Frame::Message(message) => {
                                rt.emitter.metrics().count_message_in();
                                match bucket.as_deref_mut().map(Bucket::take) {
                                    None | Some(Admit::Yes) => {}
                                    Some(Admit::Drop) => {
                                        conn.push_frame(text_frame(RATE_LIMITED_REPLY));
                                        continue;
                                    }
                                    Some(Admit::Close) => {
                                        tracing::debug!(socket = %conn.id(), "inbound rate limit: closing");
                                        conn.close(
                                            close_code::POLICY_VIOLATION,
                                            "Rate limit exceeded",
                                        );
                                        break 'run Some(Box::new(Start::Ours));
                                    }
                                }
                                Some(Box::pin(receive(&rt, &conn, &mut session, message)))
                            }
                            Frame::Ping(payload) => {
                                conn.push_frame(codec::encode_frame(OpCode::Pong, &payload));
                                match (was_open, &rt.handlers.ping) {
                                    (true, Some(h)) => Some(Box::pin(
                                        guarded("ping", conn.id(), h(conn.clone(), payload))
                                            .map(Ok),
                                    )),
                                    _ => None,
                                }
                            }
                            Frame::Pong(payload) => match (was_open, &rt.handlers.pong) {
                                (true, Some(h)) => Some(Box::pin(
                                    guarded("pong", conn.id(), h(conn.clone(), payload)).map(Ok),
                                )),
                                _ => None,
                            },
                            Frame::Close(close) => break 'run Some(Box::new(Start::Peer(close))),
                        };
                        match work {
                            Some(work) => work.await.err(),
                            None => None,
                        }
                    };
                    if let Some((code, reason)) = refused {
                        conn.close(code, reason);
                        break 'run Some(Box::new(Start::Ours));
                    }
                    if !was_open && session.is_open() {
                        decoder.set_limits(limits.codec());
                    }
                    if conn.inner.state.failed() {
                        break 'run None;
                    }
                    if conn.inner.outbox.status() != OutboxStatus::Open {
                        // A handler closed the connection (or it overflowed): stop
                        // dispatching, finish the closing handshake.
                        break 'run Some(Box::new(Start::Ours));
                    }
                }
                // Replies to what was just handled go out now, not with the
                // writer's next pass.
                link.flush_now();
                if inbuf.is_empty() && inbuf.capacity() > 0 {
                    inbuf = BytesMut::new();
                }
            }
        };

        let opened = session.is_open();
        drop(session);
        // Boxed: awaited once per connection, it need not size every idle
        // one.
        Box::pin(finish(
            &rt,
            &conn,
            &link,
            reader,
            &mut inbuf,
            &mut decoder,
            start,
            opened,
        ))
        .await;
    }
}

/// The end of a connection: the closing handshake if one began, the hub
/// forgets the socket, the socket is released (before the close handler
/// runs, however long that takes), the close is counted and the close
/// handler runs.
#[allow(clippy::too_many_arguments)]
async fn finish<D, R, W>(
    rt: &WsRuntime<D>,
    conn: &Conn<D>,
    link: &Arc<Link<D, W>>,
    mut reader: R,
    inbuf: &mut BytesMut,
    decoder: &mut Decoder,
    start: Option<Box<Start>>,
    opened: bool,
) where
    D: Send + Sync + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let end = match start {
        Some(start) => {
            close::handshake(
                conn,
                link,
                &mut reader,
                inbuf,
                decoder,
                rt.limits.close_timeout,
                *start,
            )
            .await
        }
        None => End::abnormal(),
    };
    if opened {
        // The close handler (and any handle kept elsewhere) still
        // learns the topics the socket was in.
        conn.inner
            .set_left(conn.broker().disconnect_with_topics(&conn.id()));
    }
    conn.inner.outbox.shut();
    conn.set_state(ReadyState::Closed);
    link.detach();
    drop(reader);
    tracing::debug!(socket = %conn.id(), code = end.code, "connection closed");
    // Only a connection that opened (was counted in the connections
    // total) has a close to count and to report.
    if opened {
        rt.emitter.metrics().count_close(end.code);
    }
    if let (true, Some(close)) = (opened, &rt.handlers.close) {
        guarded(
            "close",
            conn.id(),
            close(conn.clone(), end.code.into(), end.reason),
        )
        .await;
    }
}

/// What woke a waiting connection.
enum Woke {
    /// A write event of its link.
    Event(u8),
    /// Its authentication clock.
    Clock(Fired),
    /// Input: true if bytes were read, false at the end of the stream or
    /// on an error.
    Read(bool),
}

/// The application's work for one frame: a message's dispatch, or a ping
/// or pong handler.
type Work<'a> = Pin<Box<dyn Future<Output = Result<(), super::session::Refusal>> + Send + 'a>>;

pub(super) fn text_frame(text: &str) -> bytes::Bytes {
    codec::encode_frame(OpCode::Text, text.as_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use ori_core::{Broker, InProcProvider, Outbox, SocketId};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::emitter::SocketEmitter;
    use crate::ws::conn::ConnInner;
    use crate::ws::Handlers;

    pub(crate) fn runtime() -> Arc<WsRuntime<()>> {
        let broker = Broker::new(InProcProvider);
        Arc::new(WsRuntime {
            broker: broker.clone(),
            emitter: SocketEmitter::new(broker),
            app: Default::default(),
            handlers: Handlers::default(),
            routers: Default::default(),
            registry: None,
            upgrade: None,
            authenticator: None,
            authorize_join: None,
            limits: Default::default(),
            tasks: Default::default(),
            shutdown: Default::default(),
            writers: Default::default(),
            upgrading: Default::default(),
        })
    }

    pub(crate) fn conn(rt: &Arc<WsRuntime<()>>) -> Conn<()> {
        let id = SocketId::new();
        Conn::from_inner(Arc::new(ConnInner::new(
            id,
            std::sync::OnceLock::from(()),
            None,
            Arc::new(Outbox::new(id, 1024)),
            rt.clone(),
        )))
    }

    /// The connection's shared state is the rest of what it costs.
    #[test]
    fn connection_state_stays_small() {
        let size = std::mem::size_of::<ConnInner<()>>();
        println!("ConnInner<()>: {size} bytes");
        assert!(size <= 88, "a connection's state grew to {size} bytes");
    }

    /// The connection task's state is what every idle connection costs.
    #[tokio::test]
    async fn connection_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (r, w) = client.into_split();
        let rt = runtime();
        let fut = run(rt.clone(), conn(&rt), r, w, BytesMut::new(), None);
        let size = std::mem::size_of_val(&fut);
        println!("driver::run future: {size} bytes");
        // Most of the connection task (`upgrade::connection_task_stays_small`
        // guards the task as a whole, hence its task cell's size class).
        assert!(size <= 264, "driver future grew to {size} bytes");
    }
}
