//! The decoder's limits: as the application sets them, and as each
//! connection's decoder keeps them.

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload of a single frame, in bytes (exactly this is allowed).
    pub max_frame_size: usize,
    /// Largest message after joining fragments, in bytes (exactly this is allowed).
    pub max_message_size: usize,
    /// Largest number of frames in one fragmented message.
    pub max_fragments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 1 << 17,
        }
    }
}

/// [`Limits`] as the decoder keeps them: in 32 bits (a limit past 4 GiB
/// is 4 GiB), so every connection's decoder stays small.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compact {
    frame: u32,
    message: u32,
    fragments: u32,
}

impl Compact {
    pub(super) fn of(l: Limits) -> Self {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            frame: c(l.max_frame_size),
            message: c(l.max_message_size),
            fragments: c(l.max_fragments),
        }
    }

    pub(super) fn max_frame_size(self) -> usize {
        self.frame as usize
    }

    pub(super) fn max_message_size(self) -> usize {
        self.message as usize
    }

    pub(super) fn max_fragments(self) -> usize {
        self.fragments as usize
    }
}
