//! permessage-deflate (RFC 7692) settings: whether the server offers it,
//! how hard it compresses, and what it asks of clients.

/// The compression settings of [`WsOptions::compression`](crate::WsOptions::compression).
///
/// The server compresses every message of at least
/// [`threshold`](Self::threshold) bytes once, with no context kept between
/// messages, and shares the compressed frame between all subscribers that
/// negotiated the extension (the others get the plain frame); so the cost
/// per publication does not grow with the number of subscribers. A client
/// that compresses what it sends is inflated with the message size limit
/// applied to the inflated size.
///
/// ```
/// use ori::{Compression, WsOptions};
/// let options = WsOptions::new().compression(
///     Compression::new().level(1).threshold(256).client_window_bits(12),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    pub(crate) level: u32,
    pub(crate) threshold: usize,
    pub(crate) client_window_bits: u8,
}

impl Compression {
    /// Level 1, threshold 128 bytes, client window 2^15.
    pub fn new() -> Self {
        Self {
            level: ori_core::DEFAULT_COMPRESSION_LEVEL,
            threshold: ori_core::DEFAULT_COMPRESSION_THRESHOLD,
            client_window_bits: 15,
        }
    }

    /// The zlib level, 0 (store) to 9 (smallest); default 1, the fast end.
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes go uncompressed (default 128).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The window (9 to 15 bits) the server asks a client to compress with
    /// when the client lets it choose (`client_max_window_bits` in its
    /// offer, as browsers send): a client that keeps its context costs an
    /// inflater of about `2^bits` bytes on the server while it sends
    /// compressed messages. Default 15.
    pub fn client_window_bits(mut self, bits: u8) -> Self {
        self.client_window_bits = bits.clamp(9, 15);
        self
    }

    pub(crate) fn deflate_config(&self) -> ori_core::codec::deflate::DeflateConfig {
        ori_core::codec::deflate::DeflateConfig {
            client_window_bits: self.client_window_bits,
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::new()
    }
}
