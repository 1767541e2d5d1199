//! An encoded WebSocket frame, shared by every queue it waits in.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

/// An encoded frame (header and payload), ready for the socket.
///
/// A publication's frame waits in the queue of every subscriber at once:
/// each queued copy is one pointer to the one frame (8 bytes on 64-bit
/// targets), where a [`Bytes`] would be four words, so that a fan-out to
/// many queues touches a quarter of the memory, and cloning a copy, or
/// dropping one that is not the last, is one atomic count with no
/// indirect call.
#[derive(Clone)]
pub struct Frame(Arc<Bytes>);

impl Frame {
    /// The frame's bytes as [`Bytes`] (a clone of the `Bytes` inside).
    pub fn bytes(&self) -> Bytes {
        Bytes::clone(&self.0)
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self(Arc::new(bytes))
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Frame {}

impl PartialEq<Bytes> for Frame {
    fn eq(&self, other: &Bytes) -> bool {
        self[..] == other[..]
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_one_pointer_and_shows_its_bytes() {
        assert_eq!(std::mem::size_of::<Frame>(), std::mem::size_of::<usize>());
        let f = Frame::from(Bytes::from_static(b"\x81\x02hi"));
        let g = f.clone();
        assert_eq!(&g[..], b"\x81\x02hi");
        assert_eq!(f, g);
        assert_eq!(f.bytes(), Bytes::from_static(b"\x81\x02hi"));
        assert_eq!(
            format!("{f:?}"),
            format!("{:?}", Bytes::from_static(b"\x81\x02hi"))
        );
    }
}
