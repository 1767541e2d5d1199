//! The fixtures of the hot-path micro-benchmarks, shared by `ori-bench
//! micro` (its own timing loop) and the Criterion benches
//! (`benches/hot_paths.rs`, which includes this file by path).

use std::collections::VecDeque;
use std::sync::Arc;

use ori::messages::{RoomData, Schema};
use ori_core::{Hub, Lane, Message, Outbox, SocketId, Topic};
use serde::Deserialize;
use serde_json::{json, Value};

/// A topic name of typical length (30 characters).
pub const TOPIC_NAME: &str = "account:6f1c2d3e-room.updates";

/// A message with a typical shape: a room, a short text, an optional
/// number and a small list.
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
pub struct ChatMessage {
    room: ori::messages::ClientTopic,
    #[schemars(length(min = 1, max = 2000))]
    text: String,
    reply_to: Option<u64>,
    #[schemars(length(max = 10))]
    mentions: Vec<String>,
}

/// The 128-byte text message that is published, encoded and decoded.
pub fn message_128b() -> Message {
    Message::text("x".repeat(128))
}

/// A masked client frame carrying `message` (as a client sends it).
pub fn masked_frame(message: &Message) -> Vec<u8> {
    let payload = message.as_bytes();
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    let mask = [1u8, 2, 3, 4];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A hub with `subscribers` registered outboxes, all on one topic `bench`,
/// plus `other_topics` topics of one subscriber each (`topic-<i>`, spread
/// over the outboxes), so lookups and subscriptions run on a populated map.
pub struct FanoutHub {
    /// The hub.
    pub hub: Hub,
    /// The topic every outbox joined.
    pub topic: Topic,
    /// The subscribers' outboxes.
    pub outboxes: Vec<Arc<Outbox>>,
    scratch: VecDeque<ori_core::Frame>,
}

impl FanoutHub {
    /// Builds the hub.
    pub fn new(subscribers: usize, other_topics: usize) -> Self {
        let hub = Hub::new();
        let topic = Topic::new("bench").expect("valid topic");
        // One lane, as a server with one writer has.
        let lane = Arc::new(Lane::new());
        let outboxes: Vec<Arc<Outbox>> = (0..subscribers.max(1))
            .map(|_| {
                let o = Arc::new(hub.new_outbox_in(SocketId::new(), 1 << 20, lane.clone()));
                hub.register(o.clone(), 1 << 20);
                let _ = hub.subscribe(o.id(), &topic);
                o
            })
            .collect();
        for i in 0..other_topics {
            let t = Topic::new(&format!("topic-{i}")).expect("valid topic");
            let _ = hub.subscribe(outboxes[i % outboxes.len()].id(), &t);
        }
        Self {
            hub,
            topic,
            outboxes,
            scratch: VecDeque::new(),
        }
    }

    /// Publishes `message` to `bench`, then drains every outbox as the
    /// writers would.
    pub fn publish_and_drain(&mut self, message: &Message) -> usize {
        self.publish_batch_and_drain(message, 1)
    }

    /// Publishes `message` to `bench` `batch` times, then drains every
    /// outbox: the writers' view at saturation, where each write carries
    /// the frames of many publications.
    pub fn publish_batch_and_drain(&mut self, message: &Message, batch: usize) -> usize {
        let mut delivered = 0;
        for _ in 0..batch {
            delivered += self.hub.publish_local(&self.topic, message);
        }
        for o in &self.outboxes {
            ori_core::__private::take(o, 0, &mut self.scratch);
            let bytes: usize = self.scratch.drain(..).map(|f| f.len()).sum();
            ori_core::__private::written(o, bytes);
        }
        delivered
    }
}

/// The schema of the demo's `room.join` data, and a valid instance.
pub fn room_join() -> (Arc<Schema>, Value) {
    (
        Schema::of::<RoomData>().expect("the schema compiles"),
        json!({ "room": "lobby:42" }),
    )
}

/// The schema of [`ChatMessage`], and a valid instance.
pub fn chat_message() -> (Arc<Schema>, Value) {
    (
        Schema::of::<ChatMessage>().expect("the schema compiles"),
        json!({
            "room": "team:7",
            "text": "Ship it after the review, please",
            "reply_to": 1234,
            "mentions": ["ann", "bob"]
        }),
    )
}

/// Parses, validates and deserializes a chat message from its text.
pub fn parse_chat(schema: &Schema, text: &str) -> bool {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    schema.parse::<ChatMessage>(value).is_ok()
}

/// A message whose data has an optional nested struct (schemars writes an
/// `anyOf` for it), for the cost of rejecting a large value.
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
pub struct Batch {
    inner: Option<BatchItems>,
}

/// The nested struct of [`Batch`].
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
pub struct BatchItems {
    ids: Vec<u32>,
}

/// The schema of [`Batch`] and an invalid instance of about 1 MB: 250,000
/// strings where numbers belong (a hostile message well under the default
/// 16 MiB limit).
pub fn large_rejection() -> (Arc<Schema>, Value) {
    (
        Schema::of::<Batch>().expect("the schema compiles"),
        json!({ "inner": { "ids": vec!["x"; 250_000] } }),
    )
}
