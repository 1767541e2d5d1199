//! A write half for the writers' unit tests: it records what each write
//! takes, can take only so many bytes a write, and can push back like a
//! full socket until it is unblocked.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::AsyncWrite;

use super::lock;

/// Clones share one state: the test keeps one, the code under test writes
/// to the other.
#[derive(Clone, Default)]
pub(super) struct TestSocket(Arc<Mutex<Recorded>>);

#[derive(Default)]
pub(super) struct Recorded {
    /// Bytes accepted by each write call.
    pub(super) writes: Vec<usize>,
    /// Everything accepted, in order.
    pub(super) data: Vec<u8>,
    /// While set, writes return `Pending` (the socket is full).
    pub(super) full: bool,
    /// The next write accepts at most this many bytes, then the socket is
    /// full.
    pub(super) accept_once: Option<usize>,
    /// Every write accepts at most this many bytes (`None`: any).
    pub(super) max_per_write: Option<usize>,
    /// The writer waiting for room.
    pub(super) waker: Option<Waker>,
}

impl TestSocket {
    /// A socket that takes at most `max` bytes per write, never full.
    pub(super) fn trickling(max: usize) -> Self {
        let socket = Self::default();
        socket.state().max_per_write = Some(max);
        socket
    }

    pub(super) fn state(&self) -> MutexGuard<'_, Recorded> {
        lock(&self.0)
    }

    /// The socket has room again: wakes the writer waiting for it.
    pub(super) fn unblock(&self) {
        let mut r = self.state();
        r.full = false;
        if let Some(w) = r.waker.take() {
            w.wake();
        }
    }
}

impl AsyncWrite for TestSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut r = self.state();
        if r.full {
            r.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let once = r.accept_once.take();
        if once.is_some() {
            r.full = true;
        }
        let mut room = once
            .unwrap_or(usize::MAX)
            .min(r.max_per_write.unwrap_or(usize::MAX));
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room);
            r.data.extend_from_slice(&b[..take]);
            n += take;
            room -= take;
        }
        r.writes.push(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
