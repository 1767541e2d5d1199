//! The byte streams the server serves: a connection splits into the halves
//! a WebSocket connection task reads and writes, and a stream whose first
//! bytes were read ahead (to look for an upgrade) gives them back first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection the server can serve: a TCP stream (and, for the fuzz
/// harness, an in-memory one).
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    /// The half a connection task reads.
    type Read: AsyncRead + Unpin + Send + 'static;
    /// The half a connection's writer writes.
    type Write: AsyncWrite + Unpin + Send + 'static;

    /// Splits the stream into its halves.
    fn split(self) -> (Self::Read, Self::Write);

    /// Offers the connection to the upgrade's fast path (which takes it, or
    /// gives it back with its first bytes).
    fn offer(
        self,
        fast: &dyn crate::ws::fast::FastUpgrade,
        first: bytes::BytesMut,
        remote: std::net::SocketAddr,
    ) -> crate::ws::fast::Offered<Self>;
}

impl Stream for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = TcpWrite;

    fn split(self) -> (Self::Read, Self::Write) {
        let (r, w) = self.into_split();
        (r, TcpWrite(Some(w)))
    }

    fn offer(
        self,
        fast: &dyn crate::ws::fast::FastUpgrade,
        first: bytes::BytesMut,
        remote: std::net::SocketAddr,
    ) -> crate::ws::fast::Offered<Self> {
        fast.tcp(self, first, remote)
    }
}

#[cfg(feature = "fuzzing")]
impl Stream for tokio::io::DuplexStream {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;

    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }

    fn offer(
        self,
        fast: &dyn crate::ws::fast::FastUpgrade,
        first: bytes::BytesMut,
        remote: std::net::SocketAddr,
    ) -> crate::ws::fast::Offered<Self> {
        fast.duplex(self, first, remote)
    }
}

/// A TCP stream's write half that, dropped, leaves the stream to close with
/// its read half (tokio's own would first shut the write side down: one
/// more system call per connection, for a FIN that `close` sends anyway).
#[derive(Debug)]
pub(crate) struct TcpWrite(Option<tokio::net::tcp::OwnedWriteHalf>);

impl TcpWrite {
    fn half(&mut self) -> io::Result<Pin<&mut tokio::net::tcp::OwnedWriteHalf>> {
        self.0
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for TcpWrite {
    fn drop(&mut self) {
        if let Some(half) = self.0.take() {
            half.forget();
        }
    }
}

impl AsyncWrite for TcpWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.half()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.half()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.half()?.poll_shutdown(cx)
    }
}

/// A stream whose first bytes were already read: reads give them back
/// before reading the stream again. Writes go straight to the stream.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }

    /// The bytes read ahead and not yet read back, and the stream.
    pub(crate) fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Read back: its buffer must not live as long as the connection.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_bytes_read_ahead_come_back_first_even_in_small_reads() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut s = Prefixed::new(Bytes::from_static(b"GET / HT"), server);
        client.write_all(b"TP/1.1\r\n").await.unwrap();
        drop(client);
        let mut small = [0u8; 5];
        s.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"GET /");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" HTTP/1.1\r\n");
        let (left, _) = s.into_parts();
        assert!(left.is_empty());
    }
}
