//! RFC 6455 framing without I/O: a decoder for client frames and encoders for
//! server frames.
//!
//! The decoder takes whatever bytes arrived and returns complete messages and
//! control frames, or the close code the RFC prescribes for the violation. It
//! never panics on input, which makes it the natural fuzzing target. Server
//! frames are unmasked, so one encoded frame can be shared byte for byte by
//! every subscriber of a topic.

use bytes::{Buf, Bytes, BytesMut};

use crate::message::{Message, Utf8Bytes};

pub mod deflate;
mod encode;
mod limits;

pub use encode::{encode_close, encode_frame, encode_message};
pub(crate) use encode::{header_len, put_header};
use limits::Compact;
pub use limits::Limits;

/// Close codes used by the server, as the `u16`s of frames
/// (the named type is [`CloseCode`](crate::CloseCode)).
pub mod close_code {
    use ori_protocol::CloseCode;

    /// Normal closure.
    pub const NORMAL: u16 = CloseCode::NORMAL.as_u16();
    /// The server is going away (shutting down).
    pub const GOING_AWAY: u16 = CloseCode::GOING_AWAY.as_u16();
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = CloseCode::PROTOCOL_ERROR.as_u16();
    /// No status code was present in the close frame (never sent on the wire).
    pub const NO_STATUS: u16 = CloseCode::NO_STATUS.as_u16();
    /// The connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: u16 = CloseCode::ABNORMAL.as_u16();
    /// Text that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = CloseCode::INVALID_PAYLOAD.as_u16();
    /// Policy violation (a connection guard refused).
    pub const POLICY_VIOLATION: u16 = CloseCode::POLICY_VIOLATION.as_u16();
    /// A frame or message over the configured size.
    pub const MESSAGE_TOO_BIG: u16 = CloseCode::MESSAGE_TOO_BIG.as_u16();
    /// An unexpected server error.
    pub const INTERNAL_ERROR: u16 = CloseCode::INTERNAL_ERROR.as_u16();
    /// Try again later: the client read too slowly.
    pub const TRY_AGAIN_LATER: u16 = CloseCode::TRY_AGAIN_LATER.as_u16();

    /// Whether `code` may appear in a close frame on the wire.
    pub fn is_valid_on_wire(code: u16) -> bool {
        CloseCode::new(code).is_valid_on_wire()
    }
}

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation = 0x0,
    /// Text data.
    Text = 0x1,
    /// Binary data.
    Binary = 0x2,
    /// Close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// One event decoded from the client's byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete data message (fragments already joined).
    Message(Message),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close frame: the code and reason, or `None` for an empty close.
    Close(Option<(u16, String)>),
}

/// A violation of the protocol or of a limit, with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (close {code})")]
pub struct ProtocolError {
    /// The close code the RFC prescribes.
    pub code: u16,
    /// A short human-readable reason, also used as the close reason.
    pub reason: &'static str,
}

impl ProtocolError {
    const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// The least a partial frame's buffer grows by at a time.
const MIN_GROWTH: usize = 8 * 1024;

struct Partial {
    opcode: OpCode,
    /// The message is compressed (RSV1 on its first frame): its UTF-8 is
    /// checked once inflated.
    compressed: bool,
    data: BytesMut,
    fragments: usize,
    /// For text: how many leading bytes are known to be valid UTF-8.
    utf8_checked: usize,
}

/// Decodes client-to-server frames (which must be masked).
///
/// Feed it the connection's input buffer; it consumes complete frames and
/// leaves a trailing partial frame in place.
///
/// ```
/// use bytes::BytesMut;
/// use ori_core::codec::{Decoder, Frame, Limits};
/// // a masked text frame "Hi" with the all-zero mask
/// let mut buf = BytesMut::from(&[0x81, 0x82, 0, 0, 0, 0, b'H', b'i'][..]);
/// let mut dec = Decoder::new(Limits::default());
/// let frame = dec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame, Frame::Message("Hi".into()));
/// assert!(buf.is_empty());
/// ```
pub struct Decoder {
    limits: Compact,
    partial: Option<Box<Partial>>,
    /// permessage-deflate, when negotiated: RSV1 marks compressed messages.
    inflater: Option<Box<deflate::Inflater>>,
    /// For a text frame still arriving at the head of the buffer: how many
    /// of its payload bytes are known to be valid UTF-8 (up to a character
    /// boundary), so invalid text fails before the whole frame is in.
    text_checked: usize,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Compact::of(limits),
            partial: None,
            inflater: None,
            text_checked: 0,
        }
    }

    /// Accepts compressed messages from now on (permessage-deflate was
    /// agreed, [`deflate::negotiate`]); the size limit applies to the
    /// inflated message.
    pub fn enable_deflate(&mut self, agreed: deflate::Agreed) {
        self.inflater = Some(Box::new(deflate::Inflater::new(agreed)));
    }

    /// Changes the limits, from the next frame on (a connection that
    /// authenticated may send larger messages than a pending one).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = Compact::of(limits);
    }

    /// Whether a fragmented message is being assembled (the decoder holds
    /// buffered data).
    pub fn is_assembling(&self) -> bool {
        self.partial.is_some()
    }

    /// Decodes the next event from `buf`, consuming its bytes.
    ///
    /// `Ok(None)` means more bytes are needed. After an `Err`, the connection
    /// must be closed with the error's code; the decoder's state is undefined.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            let Some(header) = parse_header(buf, self.limits, self.inflater.is_some())? else {
                return Ok(None);
            };
            self.check_sequence(&header)?;
            let total = header.header_len + header.payload_len;
            if buf.len() < total {
                self.check_arriving_text(&buf[header.header_len..], &header)?;
                // Room for the next bytes, growing with what has arrived (at
                // most doubling), never by what the header announces: a
                // 14-byte header claiming a 16 MiB frame must not cost
                // 16 MiB before the bytes exist.
                let missing = total - buf.len();
                buf.reserve(missing.min(buf.len().max(MIN_GROWTH)));
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            unmask(&mut payload, header.mask);
            let checked = std::mem::take(&mut self.text_checked);
            if let Some(frame) = self.on_frame(
                header.fin,
                header.opcode,
                header.compressed,
                payload,
                checked,
            )? {
                return Ok(Some(frame));
            }
        }
    }

    /// Inflates a compressed message within the message size limit.
    fn inflate(&mut self, data: &[u8]) -> Result<Bytes, ProtocolError> {
        let max = self.limits.max_message_size();
        match self.inflater.as_deref_mut() {
            Some(inflater) => inflater.inflate(data, max),
            None => Err(ProtocolError::new(
                close_code::PROTOCOL_ERROR,
                "reserved bits set without a negotiated extension",
            )),
        }
    }

    /// Judges a data frame by its header alone, before its payload arrives:
    /// whether it may come now (a continuation only inside a fragmented
    /// message, a new message only outside one) and whether it keeps the
    /// message within the size and fragment limits.
    fn check_sequence(&self, header: &Header) -> Result<(), ProtocolError> {
        match (header.opcode, self.partial.as_deref()) {
            (OpCode::Continuation, None) => Err(ProtocolError::new(
                close_code::PROTOCOL_ERROR,
                "continuation frame without a message",
            )),
            (OpCode::Continuation, Some(p)) => {
                if p.data.len() + header.payload_len > self.limits.max_message_size() {
                    return Err(ProtocolError::new(
                        close_code::MESSAGE_TOO_BIG,
                        "message too big",
                    ));
                }
                if p.fragments + 1 > self.limits.max_fragments() {
                    return Err(ProtocolError::new(
                        close_code::MESSAGE_TOO_BIG,
                        "too many fragments",
                    ));
                }
                Ok(())
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(ProtocolError::new(
                close_code::PROTOCOL_ERROR,
                "new data frame inside a fragmented message",
            )),
            _ => Ok(()),
        }
    }

    /// Validates the part of a text frame's payload that has arrived so far
    /// (`arrived`, still masked), continuing from where the last call
    /// stopped. A code point cut by the end of what arrived, or by the
    /// previous fragment's end, is completed by later bytes.
    fn check_arriving_text(
        &mut self,
        arrived: &[u8],
        header: &Header,
    ) -> Result<(), ProtocolError> {
        let carry: &[u8] = match (header.opcode, self.partial.as_deref()) {
            (OpCode::Text, None) if !header.compressed => &[],
            (OpCode::Continuation, Some(p)) if p.opcode == OpCode::Text && !p.compressed => {
                &p.data[p.utf8_checked..]
            }
            _ => return Ok(()),
        };
        let start = self.text_checked;
        if arrived.len() <= start {
            return Ok(());
        }
        // Once past the first character the carried bytes are consumed.
        let carry = if start == 0 { carry } else { &[] };
        let mut scratch = Vec::with_capacity(carry.len() + arrived.len() - start);
        scratch.extend_from_slice(carry);
        scratch.extend(
            arrived[start..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ header.mask[(start + i) & 3]),
        );
        match std::str::from_utf8(&scratch) {
            Ok(_) => self.text_checked = arrived.len(),
            Err(e) if e.error_len().is_some() => return Err(invalid_utf8()),
            Err(e) => {
                self.text_checked = start + e.valid_up_to().saturating_sub(carry.len());
            }
        }
        Ok(())
    }

    /// Handles one complete frame. `checked`: how many leading payload
    /// bytes [`Self::check_arriving_text`] already validated.
    fn on_frame(
        &mut self,
        fin: bool,
        opcode: OpCode,
        compressed: bool,
        payload: BytesMut,
        checked: usize,
    ) -> Result<Option<Frame>, ProtocolError> {
        match opcode {
            OpCode::Ping => Ok(Some(Frame::Ping(payload.freeze()))),
            OpCode::Pong => Ok(Some(Frame::Pong(payload.freeze()))),
            OpCode::Close => parse_close(payload.freeze()).map(|c| Some(Frame::Close(c))),
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ProtocolError::new(
                        close_code::PROTOCOL_ERROR,
                        "new data frame inside a fragmented message",
                    ));
                }
                if fin && compressed {
                    let data = self.inflate(&payload)?;
                    return finish(opcode, data, 0).map(Some);
                }
                if fin {
                    return finish(opcode, payload.freeze(), checked).map(Some);
                }
                let mut partial = Box::new(Partial {
                    opcode,
                    compressed,
                    data: payload,
                    fragments: 1,
                    utf8_checked: checked,
                });
                if opcode == OpCode::Text && !compressed {
                    check_utf8_prefix(&mut partial)?;
                }
                self.partial = Some(partial);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ProtocolError::new(
                        close_code::PROTOCOL_ERROR,
                        "continuation frame without a message",
                    ));
                };
                if partial.data.len() + payload.len() > self.limits.max_message_size() {
                    return Err(ProtocolError::new(
                        close_code::MESSAGE_TOO_BIG,
                        "message too big",
                    ));
                }
                partial.fragments += 1;
                if partial.fragments > self.limits.max_fragments() {
                    return Err(ProtocolError::new(
                        close_code::MESSAGE_TOO_BIG,
                        "too many fragments",
                    ));
                }
                if checked > 0 {
                    // The carried code point and `checked` bytes are valid.
                    partial.utf8_checked = partial.data.len() + checked;
                }
                partial.data.extend_from_slice(&payload);
                if partial.opcode == OpCode::Text && !partial.compressed {
                    check_utf8_prefix(partial)?;
                }
                if !fin {
                    return Ok(None);
                }
                let Some(partial) = self.partial.take() else {
                    return Ok(None);
                };
                let Partial {
                    opcode,
                    compressed,
                    data,
                    utf8_checked,
                    ..
                } = *partial;
                if compressed {
                    let data = self.inflate(&data)?;
                    return finish(opcode, data, 0).map(Some);
                }
                let data = data.freeze();
                Ok(Some(Frame::Message(match opcode {
                    OpCode::Text if utf8_checked == data.len() => {
                        Message::Text(Utf8Bytes::from_checked(data))
                    }
                    OpCode::Text => return Err(invalid_utf8()),
                    _ => Message::Binary(data),
                })))
            }
        }
    }
}

struct Header {
    fin: bool,
    opcode: OpCode,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

fn parse_header(
    buf: &[u8],
    limits: Compact,
    deflate: bool,
) -> Result<Option<Header>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::new(
        close_code::PROTOCOL_ERROR,
        "reserved opcode",
    ))?;
    // RSV1 only with permessage-deflate, and only on the first frame of a
    // data message; RSV2 and RSV3 never.
    let compressed = b0 & 0x40 != 0;
    if b0 & 0x30 != 0
        || (compressed && !(deflate && matches!(opcode, OpCode::Text | OpCode::Binary)))
    {
        return Err(ProtocolError::new(
            close_code::PROTOCOL_ERROR,
            "reserved bits set without a negotiated extension",
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::new(
            close_code::PROTOCOL_ERROR,
            "client frames must be masked",
        ));
    }
    let len7 = (b1 & 0x7F) as usize;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::new(
                close_code::PROTOCOL_ERROR,
                "fragmented control frame",
            ));
        }
        if len7 > 125 {
            return Err(ProtocolError::new(
                close_code::PROTOCOL_ERROR,
                "control frame payload over 125 bytes",
            ));
        }
    }
    let (payload_len, ext) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(raw);
            if len >> 63 != 0 {
                return Err(ProtocolError::new(
                    close_code::PROTOCOL_ERROR,
                    "payload length with the high bit set",
                ));
            }
            (usize::try_from(len).unwrap_or(usize::MAX), 8)
        }
        n => (n, 0),
    };
    if payload_len > limits.max_frame_size()
        || (!opcode.is_control() && payload_len > limits.max_message_size())
    {
        return Err(ProtocolError::new(
            close_code::MESSAGE_TOO_BIG,
            "frame too big",
        ));
    }
    let header_len = 2 + ext + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[2 + ext..header_len]);
    Ok(Some(Header {
        fin,
        opcode,
        compressed,
        mask,
        header_len,
        payload_len,
    }))
}

/// XORs `data` with the 4-byte `mask`, eight bytes at a time.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    if mask == [0; 4] {
        return;
    }
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// A complete unfragmented message; for text, the first `checked` bytes
/// are already known to be valid UTF-8 up to a character boundary.
fn finish(opcode: OpCode, data: Bytes, checked: usize) -> Result<Frame, ProtocolError> {
    Ok(Frame::Message(match opcode {
        OpCode::Text => {
            if std::str::from_utf8(data.get(checked..).unwrap_or_default()).is_err() {
                return Err(invalid_utf8());
            }
            Message::Text(Utf8Bytes::from_checked(data))
        }
        _ => Message::Binary(data),
    }))
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError::new(close_code::INVALID_PAYLOAD, "invalid UTF-8 in text")
}

/// Validates the newly arrived part of a fragmented text message, so invalid
/// text fails as soon as it arrives instead of at the last fragment. A
/// sequence cut by a fragment boundary is left for the next fragment.
fn check_utf8_prefix(partial: &mut Partial) -> Result<(), ProtocolError> {
    let tail = &partial.data[partial.utf8_checked..];
    match std::str::from_utf8(tail) {
        Ok(_) => partial.utf8_checked = partial.data.len(),
        Err(e) => {
            if e.error_len().is_some() {
                return Err(invalid_utf8());
            }
            partial.utf8_checked += e.valid_up_to();
        }
    }
    Ok(())
}

fn parse_close(payload: Bytes) -> Result<Option<(u16, String)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::new(
            close_code::PROTOCOL_ERROR,
            "close payload of one byte",
        )),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::is_valid_on_wire(code) {
                return Err(ProtocolError::new(
                    close_code::PROTOCOL_ERROR,
                    "invalid close code",
                ));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| invalid_utf8())?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests;
