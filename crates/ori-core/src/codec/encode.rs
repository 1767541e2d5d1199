//! Server frames: unmasked, FIN set, encoded once so that every
//! subscriber of a publication can share the bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::OpCode;
use crate::message::Message;

pub(crate) fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

pub(crate) fn put_header(buf: &mut BytesMut, opcode: OpCode, payload_len: usize) {
    buf.put_u8(0x80 | opcode as u8);
    match payload_len {
        0..=125 => buf.put_u8(payload_len as u8),
        126..=0xFFFF => {
            buf.put_u8(126);
            buf.put_u16(payload_len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(payload_len as u64);
        }
    }
}

/// Encodes one unmasked server frame (FIN set).
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut buf, opcode, payload.len());
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// Encodes a data message as one server frame: the bytes every subscriber
/// of a publish shares.
pub fn encode_message(message: &Message) -> Bytes {
    match message {
        Message::Text(t) => encode_frame(OpCode::Text, t.as_bytes()),
        Message::Binary(b) => encode_frame(OpCode::Binary, b),
    }
}

/// Encodes a close frame. The reason is cut at a character boundary to fit
/// the 125-byte control-frame limit.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Close, &payload)
}
