//! The closing handshake: one routine that, given how the close started,
//! sends (or waits for) our close frame, waits for the peer's with the
//! close timeout, and tells how the connection ended.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ori_core::codec::{self, close_code, Decoder, Frame};
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn::ReadyState;
use super::driver::read_some;
use super::link::Link;
use super::state::{CLOSE_SENT, FAILED};
use super::Conn;

/// How the connection ended, for the close handler.
pub(super) struct End {
    pub(super) code: u16,
    pub(super) reason: String,
}

impl End {
    pub(super) fn abnormal() -> Self {
        Self {
            code: close_code::ABNORMAL,
            reason: String::new(),
        }
    }
}

/// How the closing handshake started.
pub(super) enum Start {
    /// We asked to close (a handler, a refused connection guard, the
    /// outbound queue overflowing, the idle timeout, shutdown): our close
    /// frame is queued or already written.
    Ours,
    /// The peer broke the protocol: we close with `code` and `reason`, and
    /// what it sends afterwards is read with a fresh decoder.
    Violation { code: u16, reason: &'static str },
    /// The peer's close frame arrived, with its code and reason if any.
    Peer(Option<(u16, String)>),
}

/// Performs the closing handshake that `start` began: our close frame is
/// written (waiting at most `timeout`), then, unless the peer closed first,
/// its close frame is awaited (at most `timeout` again). Returns how the
/// connection ended: the peer's close, our close, or abnormal when ours
/// could not be written. Awaited from the connection's boxed end (see
/// `driver::finish`), so not boxed itself.
pub(super) async fn handshake<D, R, W>(
    conn: &Conn<D>,
    link: &Arc<Link<D, W>>,
    reader: &mut R,
    inbuf: &mut BytesMut,
    decoder: &mut Decoder,
    timeout: Duration,
    start: Start,
) -> End
where
    D: Send + Sync + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    match start {
        Start::Ours => {
            conn.set_state(ReadyState::Closing);
            if !link.close_sent(timeout).await {
                return End::abnormal();
            }
            await_peer_close(reader, inbuf, decoder, timeout).await;
            let (code, reason) = link
                .sent_close()
                .unwrap_or((close_code::NORMAL, String::new()));
            End { code, reason }
        }
        Start::Violation { code, reason } => {
            conn.close(code, reason);
            conn.set_state(ReadyState::Closing);
            if link.close_sent(timeout).await {
                // The stream is unusable after a violation: wait for the
                // peer's close with a fresh decoder on new bytes.
                inbuf.clear();
                let mut fresh = Decoder::new(codec::Limits::default());
                // A client that compresses goes on doing so until it
                // reads our close.
                if let Some(agreed) = conn.inner.outbox.deflate() {
                    fresh.enable_deflate(agreed);
                }
                await_peer_close(reader, inbuf, &mut fresh, timeout).await;
            }
            End {
                code,
                reason: reason.to_owned(),
            }
        }
        Start::Peer(close) => {
            let (code, reason) = close.unwrap_or((close_code::NO_STATUS, String::new()));
            let echo = if code == close_code::NO_STATUS {
                close_code::NORMAL
            } else {
                code
            };
            conn.close(echo, "");
            conn.set_state(ReadyState::Closing);
            link.close_sent(timeout).await;
            End { code, reason }
        }
    }
}

impl<D: Send + Sync + 'static, W: AsyncWrite + Unpin + Send + 'static> Link<D, W> {
    /// After a close was requested: writes the close frame now if the socket
    /// takes it, else waits (at most `timeout`) until the writer has written
    /// it. False if the socket failed or timed out.
    async fn close_sent(self: &Arc<Self>, timeout: Duration) -> bool {
        self.flush_now();
        let wait = async {
            loop {
                match self.event().await {
                    CLOSE_SENT => return true,
                    FAILED => return false,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

/// After our close frame: read until the peer's close frame, end of stream,
/// an unreadable frame, or the timeout, discarding data.
async fn await_peer_close<R: AsyncRead + Unpin>(
    reader: &mut R,
    inbuf: &mut BytesMut,
    decoder: &mut Decoder,
    timeout: Duration,
) {
    let wait = async {
        // Once the bytes stop making sense (the rest of an oversized frame,
        // say), keep reading and dropping them until the peer closes: closing
        // with unread input would reset the connection and could destroy our
        // close frame before the peer reads it.
        let mut discard = false;
        loop {
            while !discard {
                match decoder.decode(inbuf) {
                    Ok(Some(Frame::Close(_))) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => discard = true,
                }
            }
            if discard {
                inbuf.clear();
            }
            match read_some(reader, inbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(timeout, wait).await;
}
