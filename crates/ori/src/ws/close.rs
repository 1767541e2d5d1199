//! The closing handshake: waiting until our close frame is written, then
//! for the peer's close frame, and how the connection ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::Either;
use ori_core::codec::{close_code, Decoder, Frame};
use tokio::io::{AsyncRead, AsyncWrite};

use super::driver::read_some;
use super::link::{Link, CLOSE_SENT, FAILED};

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

impl<W: AsyncWrite + Unpin + Send + 'static> Link<W> {
    /// After a close was requested: writes the close frame now if the socket
    /// takes it, else waits (at most `timeout`) until the writer has written
    /// it. False if the socket failed or timed out. The wait is boxed: a
    /// rare await that would otherwise enlarge every connection's future.
    pub(super) fn close_sent(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Either<std::future::Ready<bool>, Pin<Box<impl Future<Output = bool> + Send + '_>>> {
        self.flush_now();
        let ev = self.events.load(Ordering::Acquire);
        if ev & (CLOSE_SENT | FAILED) != 0 {
            return Either::Left(std::future::ready(ev & CLOSE_SENT != 0));
        }
        Either::Right(Box::pin(async move {
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
        }))
    }
}

/// After our close frame: read until the peer's close frame, end of stream,
/// an unreadable frame, or the timeout, discarding data. Boxed: a rare
/// await that would otherwise enlarge every connection's future.
pub(super) fn await_peer_close<'a, R: AsyncRead + Unpin + Send>(
    reader: &'a mut R,
    inbuf: &'a mut BytesMut,
    decoder: &'a mut Decoder,
    timeout: Duration,
) -> Pin<Box<impl Future<Output = ()> + Send + 'a>> {
    Box::pin(async move { await_peer_close_inner(reader, inbuf, decoder, timeout).await })
}

async fn await_peer_close_inner<R: AsyncRead + Unpin>(
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
