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
//! Anything else (short, unknown version or flags, a bad topic, text that is
//! not UTF-8) is malformed and dropped by the receiver.

use bytes::Bytes;
use ori_core::{Message, Topic, Utf8Bytes};

/// The envelope format version written by this crate.
pub const VERSION: u8 = 1;
/// Flag: the payload is binary.
pub const FLAG_BINARY: u8 = 0b0000_0001;
/// Bytes before the topic.
pub const HEADER_LEN: usize = 20;
const MAX_TOPIC_LEN: usize = 256;

/// The id of one provider instance, carried in every envelope it publishes.
pub type InstanceId = [u8; 16];

/// Encodes one envelope. `topic` is a valid [`Topic`] name (or
/// `__broadcast__` / `__socket__:<id>`), at most 256 bytes.
pub fn encode(origin: &InstanceId, topic: impl AsRef<str>, message: &Message) -> Vec<u8> {
    let topic = topic.as_ref().as_bytes();
    let payload = message.as_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + topic.len() + payload.len());
    out.push(VERSION);
    out.push(if message.is_text() { 0 } else { FLAG_BINARY });
    out.extend_from_slice(origin);
    // Topics are at most 256 bytes (validated by `Topic`), so this fits.
    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(payload);
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
    if flags & !FLAG_BINARY != 0 {
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
    let payload = Bytes::copy_from_slice(&bytes[HEADER_LEN + topic_len..]);
    let message = if flags & FLAG_BINARY != 0 {
        Message::Binary(payload)
    } else {
        Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| Malformed::Utf8)?)
    };
    Ok(Envelope {
        origin,
        topic,
        message,
    })
}

/// Fuzzing entry point (not a stable API): decodes arbitrary bytes as an
/// envelope, as a subscriber does with whatever arrives on a channel. Panics
/// only if an invariant breaks: an accepted envelope re-encodes to exactly
/// the same bytes, and a truncation is reported with the length seen.
#[doc(hidden)]
pub fn fuzz_decode(bytes: &[u8]) {
    match decode(bytes) {
        Ok(e) => assert_eq!(encode(&e.origin, &e.topic, &e.message), bytes),
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
