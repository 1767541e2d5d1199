//! permessage-deflate (RFC 7692) without I/O: the negotiation of the
//! extension's parameters, compressing a server message, and inflating a
//! client's within the message size limit.
//!
//! The server never keeps a compression context between messages
//! (`server_no_context_takeover` is always in its answer), so one
//! compressed frame can be shared by every subscriber that negotiated the
//! same window, like the plain frame is. The deflater is reset and reused
//! per thread; a connection keeps an inflater only when its client keeps
//! its context, and only once the client has sent a compressed message.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{close_code, header_len, put_header, OpCode, ProtocolError};

/// The extension's name.
pub const EXTENSION: &str = "permessage-deflate";

/// The empty block that ends a flushed deflate stream: stripped from every
/// compressed message, appended before inflating one (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest and largest LZ77 window the server accepts (zlib cannot
/// produce a raw stream with a 256-byte window, so offers that insist on 8
/// are declined).
const MIN_BITS: u8 = 9;
const MAX_BITS: u8 = 15;

/// What the server is willing to agree to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The window the server asks clients to compress with when they let
    /// it choose (`client_max_window_bits` without a value), 9 to 15: the
    /// inflater of a client that keeps its context holds `2^bits` bytes.
    pub client_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            client_window_bits: MAX_BITS,
        }
    }
}

/// The parameters agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with (9 to 15).
    pub server_window_bits: u8,
    /// The window the client compresses with (9 to 15), which its
    /// inflater on the server needs.
    pub client_window_bits: u8,
    /// The client starts every message afresh: no inflater is kept
    /// between messages.
    pub client_no_context_takeover: bool,
}

/// Reads the client's `Sec-WebSocket-Extensions` values and agrees to the
/// first acceptable permessage-deflate offer: the parameters and the
/// header value to answer with. `None` declines (a plain connection).
///
/// ```
/// use ori_core::codec::deflate::{negotiate, DeflateConfig};
/// let (agreed, answer) = negotiate(
///     ["permessage-deflate; client_max_window_bits"],
///     &DeflateConfig::default(),
/// )
/// .unwrap();
/// assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_max_window_bits=15");
/// assert!(!agreed.client_no_context_takeover);
/// ```
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(Agreed, String)> {
    header_values
        .into_iter()
        .flat_map(split_list)
        .find_map(|offer| accept(offer, config))
}

/// Splits an extension list at the commas outside quoted strings.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// A window size parameter's value: 8 to 15, plain or quoted.
fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    if v.is_empty() || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) || v.starts_with('0') {
        return None;
    }
    v.parse().ok().filter(|b| (8..=MAX_BITS).contains(b))
}

/// Accepts one offer, or declines it (unknown, repeated or malformed
/// parameters, or a window the server cannot honour).
fn accept(offer: &str, config: &DeflateConfig) -> Option<(Agreed, String)> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_bits = None;
    let mut client_bits: Option<Option<u8>> = None;
    let mut client_no_context = false;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v)),
            None => (param, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                client_no_context = true;
                1
            }
            "server_max_window_bits" => {
                server_bits = Some(window_bits(value)?);
                2
            }
            "client_max_window_bits" => {
                client_bits = Some(match value {
                    None => None,
                    v => Some(window_bits(v)?),
                });
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    let server_window_bits = match server_bits {
        Some(bits) if bits < MIN_BITS => return None,
        Some(bits) => bits,
        None => MAX_BITS,
    };
    let mut answer = format!("{EXTENSION}; server_no_context_takeover");
    if server_bits.is_some() {
        answer.push_str(&format!("; server_max_window_bits={server_window_bits}"));
    }
    if client_no_context {
        answer.push_str("; client_no_context_takeover");
    }
    let wanted = config.client_window_bits.clamp(MIN_BITS, MAX_BITS);
    // The client compresses with at most what it offered, and at most what
    // the server asks for when it let the server choose; without the
    // parameter in the offer, the server may not ask.
    let client_window_bits = match client_bits {
        None => MAX_BITS,
        Some(offered) => {
            // Never more than the client offered (8 included: a 2^9
            // window inflates what a 2^8 one produced).
            let bits = offered.map_or(wanted, |o| o.min(wanted));
            answer.push_str(&format!("; client_max_window_bits={bits}"));
            bits.max(MIN_BITS)
        }
    };
    Some((
        Agreed {
            server_window_bits,
            client_window_bits,
            client_no_context_takeover: client_no_context,
        },
        answer,
    ))
}

thread_local! {
    /// One deflater per window size (with its level), reset after each
    /// message.
    static DEFLATERS: RefCell<[Option<(u32, Compress)>; (MAX_BITS - MIN_BITS + 1) as usize]> =
        const { RefCell::new([const { None }; (MAX_BITS - MIN_BITS + 1) as usize]) };
}

/// Compresses one message into a server frame with RSV1 set, with a fresh
/// context and a window of `2^window_bits` at `level` (0 to 9). `None` when
/// compressing would not make the frame smaller: send the plain frame.
pub fn compress_frame(
    opcode: OpCode,
    payload: &[u8],
    window_bits: u8,
    level: u32,
) -> Option<Bytes> {
    let bits = window_bits.clamp(MIN_BITS, MAX_BITS);
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    DEFLATERS.with(|cell| {
        let mut deflaters = cell.borrow_mut();
        let level = level.min(9);
        let slot = &mut deflaters[usize::from(bits - MIN_BITS)];
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((
                level,
                Compress::new_with_window_bits(Compression::new(level), false, bits),
            ));
        }
        let (_, deflater) = slot.as_mut()?;
        deflater.reset();
        let mut consumed = 0;
        loop {
            let before = deflater.total_in();
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let status = deflater
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            consumed += (deflater.total_in() - before) as usize;
            // Done once all input is in and the flush left room to spare.
            if consumed == payload.len() && out.len() < out.capacity() {
                break;
            }
            if status == Status::StreamEnd {
                break;
            }
        }
        Some(())
    })?;
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    let frame_len = header_len(out.len()) + out.len();
    if frame_len >= header_len(payload.len()) + payload.len() {
        return None;
    }
    let mut frame = BytesMut::with_capacity(frame_len);
    put_header(&mut frame, opcode, out.len());
    frame[0] |= 0x40;
    frame.extend_from_slice(&out);
    Some(frame.freeze())
}

/// A client's inflater, for the messages it compresses.
pub struct Inflater {
    agreed: Agreed,
    /// Kept between messages only when the client keeps its context.
    state: Option<Box<Decompress>>,
}

impl Inflater {
    /// An inflater for what was agreed; it allocates on the first message.
    pub fn new(agreed: Agreed) -> Self {
        Self {
            agreed,
            state: None,
        }
    }

    /// Inflates one compressed message. Fails with 1009 as soon as the
    /// output would pass `max_size` (never allocating more than what was
    /// produced so far, doubled), and with 1007 on corrupt data.
    pub fn inflate(&mut self, compressed: &[u8], max_size: usize) -> Result<Bytes, ProtocolError> {
        let bits = self.agreed.client_window_bits.clamp(MIN_BITS, MAX_BITS);
        let state = self
            .state
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let result = inflate_into(state, compressed, max_size);
        let ended = matches!(result, Ok((_, true)));
        if self.agreed.client_no_context_takeover || ended || result.is_err() {
            // Nothing carries over (or the stream ended with a final block
            // and the next message starts a new one): the memory goes back.
            self.state = None;
        }
        result.map(|(message, _)| message)
    }
}

/// Inflates one message; `true` with it when the data ended the deflate
/// stream (a block with BFINAL set, which RFC 7692 7.2.3.4 allows).
fn inflate_into(
    state: &mut Decompress,
    compressed: &[u8],
    max_size: usize,
) -> Result<(Bytes, bool), ProtocolError> {
    let too_big = || ProtocolError::new(close_code::MESSAGE_TOO_BIG, "message too big");
    let corrupt = || ProtocolError::new(close_code::INVALID_PAYLOAD, "invalid compressed data");
    // One byte past the limit is room enough to see it crossed.
    let cap = max_size.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(compressed.len().saturating_mul(2).max(64).min(cap));
    for input in [compressed, &TAIL[..]] {
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                // Growth follows what was produced (at most doubling), up
                // to one byte past the limit, so that crossing it is seen.
                let room = out.len().max(4096).min(cap - out.len());
                out.reserve_exact(room);
            }
            let (in_before, out_before) = (state.total_in(), out.len());
            let status = state
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
                .map_err(|_| corrupt())?;
            consumed += (state.total_in() - in_before) as usize;
            if out.len() > max_size {
                return Err(too_big());
            }
            if status == Status::StreamEnd {
                // A final block ends the message: anything after it in
                // the same message would be lost, so it is refused.
                if input.len() == compressed.len() && consumed < input.len() {
                    return Err(corrupt());
                }
                return Ok((Bytes::from(out), true));
            }
            let room_left = out.len() < out.capacity();
            if consumed == input.len() && room_left {
                break;
            }
            if room_left && out.len() == out_before && state.total_in() == in_before {
                return Err(corrupt());
            }
        }
    }
    Ok((Bytes::from(out), false))
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("agreed", &self.agreed)
            .field("allocated", &self.state.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(values: &[&str]) -> Option<(Agreed, String)> {
        negotiate(values.iter().copied(), &DeflateConfig::default())
    }

    #[test]
    fn offers_are_answered_per_rfc_7692() {
        let (a, answer) = agreed(&["permessage-deflate"]).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!((a.server_window_bits, a.client_window_bits), (15, 15));
        let (a, answer) = agreed(&[
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
        ])
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover; client_max_window_bits=12"
        );
        assert_eq!(
            a,
            Agreed {
                server_window_bits: 10,
                client_window_bits: 12,
                client_no_context_takeover: true
            }
        );
        // Quoted values, any case, several header values and list items.
        let (a, _) =
            agreed(&["x-other, PerMessage-Deflate; Server_Max_Window_Bits=\"9\""]).unwrap();
        assert_eq!(a.server_window_bits, 9);
    }

    #[test]
    fn a_bad_offer_is_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(&[bad]), None, "{bad}");
        }
        let (a, _) =
            agreed(&["permessage-deflate; server_max_window_bits=8, permessage-deflate"]).unwrap();
        assert_eq!(a.server_window_bits, 15);
    }

    #[test]
    fn the_server_chooses_the_client_window_only_when_let() {
        let config = DeflateConfig {
            client_window_bits: 10,
        };
        let (a, answer) =
            negotiate(["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert_eq!(a.client_window_bits, 10);
        assert!(answer.ends_with("client_max_window_bits=10"));
        let (a, _) = negotiate(["permessage-deflate; client_max_window_bits=9"], &config).unwrap();
        assert_eq!(a.client_window_bits, 9);
        let (a, answer) = negotiate(["permessage-deflate"], &config).unwrap();
        assert_eq!(
            a.client_window_bits, 15,
            "not offered: the client may use 15"
        );
        assert!(!answer.contains("client_max_window_bits"));
    }

    #[test]
    fn a_compressed_frame_inflates_back_and_shares_no_context() {
        let text = br#"{"type":"notification","message":"hello hello hello hello"}"#.repeat(8);
        let frame = compress_frame(OpCode::Text, &text, 15, 6).unwrap();
        assert_eq!(frame[0], 0x80 | 0x40 | 0x1, "FIN, RSV1, text");
        let body = &frame[header_len(frame.len() - 2)..];
        let mut inflater = Inflater::new(Agreed {
            server_window_bits: 15,
            client_window_bits: 15,
            client_no_context_takeover: true,
        });
        assert_eq!(&inflater.inflate(body, 1 << 20).unwrap()[..], &text[..]);
        // The same bytes again: no context was carried from the first.
        assert_eq!(compress_frame(OpCode::Text, &text, 15, 6).unwrap(), frame);
        // Incompressible or tiny: the plain frame is smaller.
        assert_eq!(compress_frame(OpCode::Binary, b"x", 15, 6), None);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_corrupt_data_is_1007() {
        let zeros = vec![0u8; 4 << 20];
        let frame = compress_frame(OpCode::Binary, &zeros, 15, 9).unwrap();
        assert!(frame.len() < 8 << 10, "{} bytes", frame.len());
        let body = &frame[header_len(frame.len() - 4)..];
        let mut inflater = Inflater::new(Agreed {
            server_window_bits: 15,
            client_window_bits: 15,
            client_no_context_takeover: false,
        });
        let err = inflater.inflate(body, 1 << 20).unwrap_err();
        assert_eq!(err.code, close_code::MESSAGE_TOO_BIG);
        assert_eq!(
            inflater
                .inflate(&[0xff, 0xff, 0xff], 1 << 20)
                .unwrap_err()
                .code,
            1007
        );
    }

    #[test]
    fn a_final_block_ends_the_stream_and_the_next_message_starts_afresh() {
        let finished = |data: &[u8]| {
            let mut c = Compress::new(Compression::new(6), false);
            let mut out = Vec::with_capacity(256);
            c.compress_vec(data, &mut out, FlushCompress::Finish)
                .unwrap();
            out
        };
        let mut inflater = Inflater::new(Agreed {
            server_window_bits: 15,
            client_window_bits: 15,
            client_no_context_takeover: false,
        });
        assert_eq!(
            &inflater.inflate(&finished(b"first"), 100).unwrap()[..],
            b"first"
        );
        assert_eq!(
            &inflater.inflate(&finished(b"second"), 100).unwrap()[..],
            b"second"
        );
        // Data after the final block in the same message is refused.
        let mut two = finished(b"one");
        two.extend(finished(b"two"));
        assert_eq!(inflater.inflate(&two, 100).unwrap_err().code, 1007);
    }

    #[test]
    fn an_offered_client_window_of_8_is_answered_8() {
        let (a, answer) = agreed(&["permessage-deflate; client_max_window_bits=8"]).unwrap();
        assert!(answer.ends_with("client_max_window_bits=8"), "{answer}");
        assert_eq!(a.client_window_bits, 9, "inflated with 2^9");
    }

    #[test]
    fn tiny_and_huge_limits_hold() {
        let frame = compress_frame(OpCode::Text, &b"abc".repeat(100), 15, 6).unwrap();
        let body = &frame[header_len(frame.len() - 2)..];
        let mut inflater = Inflater::new(Agreed {
            server_window_bits: 15,
            client_window_bits: 15,
            client_no_context_takeover: true,
        });
        assert_eq!(inflater.inflate(body, 19).unwrap_err().code, 1009);
        assert_eq!(inflater.inflate(body, 0).unwrap_err().code, 1009);
        assert_eq!(inflater.inflate(body, usize::MAX).unwrap().len(), 300);
    }

    #[test]
    fn a_client_context_carries_over_between_messages() {
        // Two messages from one stream, the second referring to the first.
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut m1 = Vec::with_capacity(256);
        c.compress_vec(b"abcdefghijabcdefghij", &mut m1, FlushCompress::Sync)
            .unwrap();
        let mut m2 = Vec::with_capacity(256);
        c.compress_vec(b"abcdefghij", &mut m2, FlushCompress::Sync)
            .unwrap();
        let strip = |m: &[u8]| m[..m.len() - 4].to_vec();
        let mut inflater = Inflater::new(Agreed {
            server_window_bits: 15,
            client_window_bits: 15,
            client_no_context_takeover: false,
        });
        assert_eq!(
            &inflater.inflate(&strip(&m1), 100).unwrap()[..],
            b"abcdefghijabcdefghij"
        );
        assert_eq!(
            &inflater.inflate(&strip(&m2), 100).unwrap()[..],
            b"abcdefghij"
        );
    }
}
