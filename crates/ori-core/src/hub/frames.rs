//! The wire forms of one message: the plain frame, and the compressed one
//! per window size for subscribers that negotiated permessage-deflate.
//! Each is encoded at most once per message, and only when a subscriber
//! takes it, so a publication is compressed once for all its subscribers.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::codec::{self, deflate, OpCode};
use crate::{Frame, Message, Outbox};

/// Compression settings of a hub (set once by the application).
#[derive(Debug)]
pub(crate) struct Compression {
    /// zlib level, 0 to 9.
    level: AtomicU32,
    /// Messages shorter than this go uncompressed.
    threshold: AtomicUsize,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            level: AtomicU32::new(DEFAULT_LEVEL),
            threshold: AtomicUsize::new(DEFAULT_THRESHOLD),
        }
    }
}

/// The default compression level: zlib's fast end, where JSON already
/// shrinks several times.
pub const DEFAULT_LEVEL: u32 = 1;
/// The default threshold: below this many bytes compression saves little
/// and costs a deflate pass per message.
pub const DEFAULT_THRESHOLD: usize = 128;

impl Compression {
    pub(crate) fn set(&self, level: u32, threshold: usize) {
        self.level.store(level.min(9), Ordering::Relaxed);
        self.threshold.store(threshold, Ordering::Relaxed);
    }
}

/// Server window sizes a deflated frame can be made for (9 to 15).
const WINDOWS: usize = 7;

pub(crate) struct Frames<'a> {
    message: &'a Message,
    raw: Option<Frame>,
    /// Per window size: the compressed frame, or `Some(None)` when
    /// compressing did not make it smaller.
    deflated: [Option<Option<Frame>>; WINDOWS],
    level: u32,
    threshold: usize,
    /// The payload's length, read once (a text's bytes are checked as
    /// text each time they are read as `str`).
    len: usize,
}

impl<'a> Frames<'a> {
    pub(crate) fn new(message: &'a Message, compression: &Compression) -> Self {
        Self {
            message,
            raw: None,
            deflated: Default::default(),
            level: compression.level.load(Ordering::Relaxed),
            threshold: compression.threshold.load(Ordering::Relaxed),
            len: message.len(),
        }
    }

    /// The plain frame.
    pub(crate) fn raw(&mut self) -> Frame {
        self.raw
            .get_or_insert_with(|| codec::encode_message(self.message).into())
            .clone()
    }

    /// Whether the frame `outbox` takes is made already, or is the plain
    /// one (encoded in one copy of the payload): false when it still has
    /// to be compressed, which the fan-out does with no lock held.
    pub(crate) fn is_cheap(&self, outbox: &Outbox) -> bool {
        let bits = outbox.deflate_bits();
        bits == 0
            || self.len < self.threshold
            || self.deflated[usize::from(bits.clamp(9, 15) - 9)].is_some()
    }

    /// The frame `outbox` takes.
    pub(crate) fn for_outbox(&mut self, outbox: &Outbox) -> Frame {
        let bits = outbox.deflate_bits();
        let (opcode, payload): (OpCode, &[u8]) = match self.message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        if bits == 0 || payload.len() < self.threshold {
            return self.raw();
        }
        let slot = usize::from(bits.clamp(9, 15) - 9);
        let level = self.level;
        let deflated = self.deflated[slot].get_or_insert_with(|| {
            deflate::compress_frame(opcode, payload, bits, level).map(Frame::from)
        });
        match deflated {
            Some(frame) => frame.clone(),
            None => self.raw(),
        }
    }
}
