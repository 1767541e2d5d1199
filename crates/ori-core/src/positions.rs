//! Positions on the wire (PROTOCOL.md section 8): the `room.message`
//! envelope a positions-aware socket receives, and the `room.joined` reply
//! to a join with positions or a resume.

use base64::Engine as _;
use serde_json::value::RawValue;

use ori_protocol::wire::RoomJoined;
pub use ori_protocol::Recovery;

use crate::{Message, Topic};

/// Where a publication sits in a topic's history: the history's epoch and
/// the publication's offset (1 for the first, then +1 for each).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The history's epoch: changes whenever entries may have been lost.
    pub epoch: std::sync::Arc<str>,
    /// The offset.
    pub offset: u64,
}

/// The outcome of a join with positions, as the `room.joined` reply says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The topic keeps no history: joined, payloads stay raw.
    NoHistory,
    /// Joined with positions; `offset` is the latest publication's (0 when
    /// none).
    Positions {
        /// The history's current epoch.
        epoch: std::sync::Arc<str>,
        /// The latest offset.
        offset: u64,
        /// For a resume: `Some(missed)` when every publication after the
        /// client's offset was replayed (`missed` of them), `None` when it
        /// could not be (nothing replayed).
        recovered: Option<Option<u64>>,
    },
}

impl Joined {
    /// Whether a resume was recovered (false for [`Joined::NoHistory`]).
    pub fn recovered(&self) -> bool {
        matches!(
            self,
            Joined::Positions {
                recovered: Some(Some(_)),
                ..
            }
        )
    }

    /// The `room.joined` reply for `topic`.
    pub fn reply(&self, topic: &Topic) -> String {
        let room = topic.as_str().to_owned();
        let reply = match self {
            Joined::NoHistory => RoomJoined {
                room,
                epoch: None,
                offset: None,
                recovered: Some(false),
                missed: None,
            },
            Joined::Positions {
                epoch,
                offset,
                recovered,
            } => RoomJoined {
                room,
                epoch: Some(epoch.to_string()),
                offset: Some(*offset),
                recovered: recovered.map(|r| r.is_some()),
                missed: recovered.flatten(),
            },
        };
        serde_json::to_string(&reply).unwrap_or_default()
    }
}

/// The `room.message` envelope of a publication to `topic` at `offset`:
/// a JSON text payload spliced as `data`, other text as a JSON string,
/// binary as standard base64 in `binary`.
pub fn envelope(topic: &Topic, offset: u64, message: &Message) -> String {
    let room = json_string(topic.as_str());
    let head = format!(r#"{{"type":"room.message","room":{room},"offset":{offset},"#);
    match message.as_text() {
        Some(text) => {
            let mut out = head;
            out.push_str(r#""data":"#);
            // Spliced as published when it is one JSON value; RawValue
            // accepts surrounding whitespace, which stays valid JSON.
            if serde_json::from_str::<&RawValue>(text).is_ok() {
                out.push_str(text);
            } else {
                out.push_str(&json_string(text));
            }
            out.push('}');
            out
        }
        None => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(message.as_bytes());
            format!(r#"{head}"binary":"{b64}"}}"#)
        }
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> Topic {
        Topic::new(name).unwrap()
    }

    #[test]
    fn json_text_is_spliced_other_text_quoted_and_binary_base64() {
        assert_eq!(
            envelope(&t("news"), 7, &Message::from(r#"{"n":1}"#)),
            r#"{"type":"room.message","room":"news","offset":7,"data":{"n":1}}"#
        );
        assert_eq!(
            envelope(&t("news"), 1, &Message::from("hi \"you\"")),
            r#"{"type":"room.message","room":"news","offset":1,"data":"hi \"you\""}"#
        );
        assert_eq!(
            envelope(&t("news"), 2, &Message::from("12 13")),
            r#"{"type":"room.message","room":"news","offset":2,"data":"12 13"}"#
        );
        assert_eq!(
            envelope(&t("news"), 3, &Message::from(vec![0u8, 255, 1])),
            r#"{"type":"room.message","room":"news","offset":3,"binary":"AP8B"}"#
        );
        for m in [r#"{"n":1}"#, "plain", "42"] {
            let v: serde_json::Value =
                serde_json::from_str(&envelope(&t("a"), 1, &Message::from(m))).unwrap();
            assert_eq!(v["type"], "room.message");
        }
        // The spliced form is the protocol crate's `RoomMessage`.
        let text = envelope(&t("a:b"), 9, &Message::from(r#"[1,{"x":"y"}]"#));
        let parsed: ori_protocol::wire::RoomMessage<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!((parsed.room.as_ref(), parsed.offset), ("a:b", 9));
        assert_eq!(parsed.data.map(|d| d.get()), Some(r#"[1,{"x":"y"}]"#));
        let text = envelope(&t("a"), 1, &Message::from(vec![7u8]));
        let parsed: ori_protocol::wire::RoomMessage<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.binary.as_deref(), Some("Bw=="));
    }

    #[test]
    fn replies_follow_section_8() {
        let e: std::sync::Arc<str> = "ep".into();
        let p = |recovered| Joined::Positions {
            epoch: e.clone(),
            offset: 5,
            recovered,
        };
        assert_eq!(
            p(None).reply(&t("r")),
            r#"{"type":"room.joined","room":"r","epoch":"ep","offset":5}"#
        );
        assert_eq!(
            p(Some(Some(2))).reply(&t("r")),
            r#"{"type":"room.joined","room":"r","epoch":"ep","offset":5,"recovered":true,"missed":2}"#
        );
        assert_eq!(
            p(Some(None)).reply(&t("r")),
            r#"{"type":"room.joined","room":"r","epoch":"ep","offset":5,"recovered":false}"#
        );
        assert_eq!(
            Joined::NoHistory.reply(&t("r")),
            r#"{"type":"room.joined","room":"r","recovered":false}"#
        );
    }
}
