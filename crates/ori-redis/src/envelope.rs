//! The cross-instance envelope: what travels through a Redis channel.
//!
//! ```text
//! offset  size  field
//! 0       1     version (1)
//! 1       1     flags: bit 0 = binary payload; every other bit is 0
//! 2       16    origin: the publishing instance's id (its own echoes are skipped)
//! 18      2     topic length in bytes, big endian (1..=256)
//! 20      n     topic (a valid Ori topic, ASCII)
//! 20+n    rest  payload: UTF-8 text, or bytes kept exactly as published
//! ```
//!
//! With flag bit 1 (positioned: a publication of a topic whose history
//! Redis keeps), the topic is followed by its position, written by the
//! publishing script in the same atomic step that assigned it:
//!
//! ```text
//! 20+n    1     epoch length e (1..=64)
//! 21+n    e     epoch (ASCII)
//! 21+n+e  8     offset, big endian (at least 1)
//! 29+n+e  rest  payload
//! ```
//!
//! Anything else (short, unknown version or flags, a bad topic, text that is
//! not UTF-8) is malformed and dropped by the receiver.

use bytes::Bytes;
use ori_core::{Message, Topic, Utf8Bytes};

/// The envelope format version written by this crate.
pub const VERSION: u8 = 1;
/// Flag: the payload is binary.
pub const FLAG_BINARY: u8 = 0b0000_0001;
/// Flag: a position (epoch and offset) follows the topic.
pub const FLAG_POSITIONED: u8 = 0b0000_0010;
const MAX_EPOCH_LEN: usize = 64;
/// Bytes before the topic.
pub const HEADER_LEN: usize = 20;
const MAX_TOPIC_LEN: usize = 256;

/// The id of one provider instance, carried in every envelope it publishes.
pub type InstanceId = [u8; 16];

/// Encodes one envelope. `topic` is a valid [`Topic`] name (or
/// `__broadcast__` / `__socket__:<id>`), at most 256 bytes.
pub fn encode(origin: &InstanceId, topic: impl AsRef<str>, message: &Message) -> Vec<u8> {
    let mut out = head(origin, topic.as_ref(), message, false);
    out.extend_from_slice(message.as_bytes());
    out
}

/// The bytes of a positioned envelope before its position: what the
/// publishing script completes with the epoch, the offset and the payload.
pub fn head(origin: &InstanceId, topic: &str, message: &Message, positioned: bool) -> Vec<u8> {
    let topic = topic.as_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + topic.len() + 73 + message.as_bytes().len());
    out.push(VERSION);
    let mut flags = if message.is_text() { 0 } else { FLAG_BINARY };
    if positioned {
        flags |= FLAG_POSITIONED;
    }
    out.push(flags);
    out.extend_from_slice(origin);
    // Topics are at most 256 bytes (validated by `Topic`), so this fits.
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out
}

/// Encodes a positioned envelope (as the publishing script does).
pub fn encode_positioned(
    origin: &InstanceId,
    topic: &str,
    epoch: &str,
    offset: u64,
    message: &Message,
) -> Vec<u8> {
    let mut out = head(origin, topic, message, true);
    // Epochs are at most 64 bytes (checked by the decoder), so this fits.
    out.push(epoch.len() as u8);
    out.extend_from_slice(epoch.as_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The publishing instance.
    pub origin: InstanceId,
    /// The topic it was published to (`__broadcast__` and `__socket__:<id>`
    /// for broadcasts and direct sends).
    pub topic: Topic,
    /// The message, text or binary.
    pub message: Message,
    /// Its position (epoch, offset), for a topic whose history Redis keeps.
    pub position: Option<(String, u64)>,
}

/// Why an envelope was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Fewer bytes than a header and a topic.
    #[error("truncated envelope ({0} bytes)")]
    Truncated(usize),
    /// A version this build does not read.
    #[error("unknown envelope version {0}")]
    Version(u8),
    /// Flag bits this build does not know.
    #[error("unknown envelope flags {0:#04x}")]
    Flags(u8),
    /// The topic is not a valid topic.
    #[error("invalid topic in envelope: {0}")]
    Topic(String),
    /// A text payload that is not UTF-8.
    #[error("text payload is not valid UTF-8")]
    Utf8,
    /// A position that is not an epoch of 1 to 64 ASCII characters and an
    /// offset of at least 1.
    #[error("malformed position")]
    Position,
    /// A message on the pressure channel that is not an announcement.
    #[error("malformed backpressure announcement")]
    Announcement,
    /// The envelope's topic does not belong on the channel it came from.
    #[error("topic {topic:?} does not belong on channel {channel:?}")]
    WrongChannel {
        /// The envelope's topic.
        topic: String,
        /// The channel it arrived on.
        channel: String,
    },
    /// The channel is not one of this provider's.
    #[error("unexpected channel {0:?}")]
    UnknownChannel(String),
}

/// Decodes one envelope.
pub fn decode(bytes: &[u8]) -> Result<Envelope, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::Truncated(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(Malformed::Version(bytes[0]));
    }
    let flags = bytes[1];
    if flags & !(FLAG_BINARY | FLAG_POSITIONED) != 0 {
        return Err(Malformed::Flags(flags));
    }
    let mut origin = [0u8; 16];
    origin.copy_from_slice(&bytes[2..18]);
    let topic_len = usize::from(u16::from_be_bytes([bytes[18], bytes[19]]));
    if topic_len == 0 || topic_len > MAX_TOPIC_LEN {
        return Err(Malformed::Topic(format!("length {topic_len}")));
    }
    let Some(topic) = bytes.get(HEADER_LEN..HEADER_LEN + topic_len) else {
        return Err(Malformed::Truncated(bytes.len()));
    };
    let topic = std::str::from_utf8(topic)
        .ok()
        .and_then(|t| Topic::new(t).ok())
        .ok_or_else(|| Malformed::Topic(String::from_utf8_lossy(topic).into_owned()))?;
    let mut at = HEADER_LEN + topic_len;
    let position = if flags & FLAG_POSITIONED != 0 {
        let Some(&epoch_len) = bytes.get(at) else {
            return Err(Malformed::Truncated(bytes.len()));
        };
        let epoch_len = usize::from(epoch_len);
        if epoch_len == 0 || epoch_len > MAX_EPOCH_LEN {
            return Err(Malformed::Position);
        }
        let Some(epoch) = bytes.get(at + 1..at + 1 + epoch_len) else {
            return Err(Malformed::Truncated(bytes.len()));
        };
        if !epoch.iter().all(|b| b.is_ascii_graphic()) {
            return Err(Malformed::Position);
        }
        let Some(offset) = bytes.get(at + 1 + epoch_len..at + 9 + epoch_len) else {
            return Err(Malformed::Truncated(bytes.len()));
        };
        let offset = u64::from_be_bytes(offset.try_into().map_err(|_| Malformed::Position)?);
        if offset == 0 || topic.is_reserved() {
            return Err(Malformed::Position);
        }
        at += 9 + epoch_len;
        // ASCII, checked above.
        Some((String::from_utf8_lossy(epoch).into_owned(), offset))
    } else {
        None
    };
    let payload = Bytes::copy_from_slice(&bytes[at..]);
    let message = if flags & FLAG_BINARY != 0 {
        Message::Binary(payload)
    } else {
        Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| Malformed::Utf8)?)
    };
    Ok(Envelope {
        origin,
        topic,
        message,
        position,
    })
}

/// Fuzzing entry point (not a stable API): decodes arbitrary bytes as an
/// envelope, as a subscriber does with whatever arrives on a channel. Panics
/// only if an invariant breaks: an accepted envelope re-encodes to exactly
/// the same bytes, and a truncation is reported with the length seen.
#[doc(hidden)]
pub fn fuzz_decode(bytes: &[u8]) {
    match decode(bytes) {
        Ok(e) => {
            let again = match &e.position {
                None => encode(&e.origin, &e.topic, &e.message),
                Some((epoch, offset)) => {
                    encode_positioned(&e.origin, e.topic.as_str(), epoch, *offset, &e.message)
                }
            };
            assert_eq!(again, bytes);
        }
        Err(Malformed::Truncated(n)) => assert_eq!(n, bytes.len()),
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: InstanceId = [7; 16];

    fn topic(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    #[test]
    fn text_and_binary_round_trip_byte_exact() {
        let all_bytes: Vec<u8> = (0..=255u8).collect();
        for message in [
            Message::from("héllo"),
            Message::from(""),
            Message::from(all_bytes.clone()),
            Message::from(Vec::<u8>::new()),
        ] {
            let t = topic("room:1");
            let decoded = decode(&encode(&ME, &t, &message)).unwrap();
            assert_eq!(decoded.origin, ME);
            assert_eq!(decoded.topic, t);
            assert_eq!(decoded.message, message);
        }
        let e = encode(&ME, topic("a"), &Message::from(vec![0xff, 0x00]));
        assert_eq!(e[1], FLAG_BINARY);
        assert_eq!(&e[e.len() - 2..], &[0xff, 0x00]);
    }

    #[test]
    fn positioned_envelopes_carry_epoch_and_offset() {
        for message in [Message::from("hi"), Message::from(vec![1u8, 2])] {
            let bytes = encode_positioned(&ME, "room", "e-1", 42, &message);
            let d = decode(&bytes).unwrap();
            assert_eq!(d.position, Some(("e-1".to_owned(), 42)));
            assert_eq!(d.message, message);
            fuzz_decode(&bytes);
        }
        let good = encode_positioned(&ME, "room", "e", 1, &"x".into());
        for cut in 25..good.len() - 1 {
            assert!(
                matches!(decode(&good[..cut]), Err(Malformed::Truncated(_))),
                "cut at {cut}"
            );
        }
        let zero = encode_positioned(&ME, "room", "e", 0, &"x".into());
        assert_eq!(decode(&zero), Err(Malformed::Position));
        let mut no_epoch = good.clone();
        no_epoch[24] = 0;
        assert_eq!(decode(&no_epoch), Err(Malformed::Position));
        let broadcast = encode_positioned(&ME, "__broadcast__", "e", 1, &"x".into());
        assert_eq!(decode(&broadcast), Err(Malformed::Position));
    }

    #[test]
    fn reserved_topics_travel_too() {
        let t = Topic::broadcast();
        assert_eq!(decode(&encode(&ME, &t, &"x".into())).unwrap().topic, t);
    }

    #[test]
    fn malformed_envelopes_are_rejected_with_the_reason() {
        let good = encode(&ME, topic("room"), &"hi".into());
        assert_eq!(decode(b""), Err(Malformed::Truncated(0)));
        assert_eq!(decode(&good[..10]), Err(Malformed::Truncated(10)));
        assert_eq!(decode(&good[..22]), Err(Malformed::Truncated(22)));
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(decode(&v), Err(Malformed::Version(9)));
        let mut v = good.clone();
        v[1] = 0x82;
        assert_eq!(decode(&v), Err(Malformed::Flags(0x82)));
        let mut v = good.clone();
        v[18..20].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(decode(&v), Err(Malformed::Topic(_))));
        let mut v = good.clone();
        v[18..20].copy_from_slice(&300u16.to_be_bytes());
        assert!(matches!(decode(&v), Err(Malformed::Topic(_))));
        let mut v = good.clone();
        v[20] = b' ';
        assert!(matches!(decode(&v), Err(Malformed::Topic(_))));
        let mut v = good;
        v.extend_from_slice(&[0xc3, 0x28]);
        assert_eq!(decode(&v), Err(Malformed::Utf8));
    }
}
