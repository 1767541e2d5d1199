//! In-process micro-benchmarks of the hot paths: topic validation, the
//! hub's fan-out into outboxes, subscribe/unsubscribe, frame encoding and
//! decoding, and schema validation of a typical message. Each case runs a
//! fixed number of iterations several times; the median ns per operation
//! is reported.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use clap::Args;
use ori::messages::{RoomData, Schema};
use ori_core::codec::{self, Decoder, Limits};
use ori_core::{Hub, Message, Outbox, SocketId, Topic};
use serde::Deserialize;
use serde_json::{json, Value};

/// Options of `micro`.
#[derive(Debug, Args)]
pub struct MicroArgs {
    /// Repetitions of each case (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Scale factor for iteration counts (1.0 = about a second in all).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
}

/// A message with a typical shape: a room, a short text, an optional
/// number and a small list.
#[derive(Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct ChatMessage {
    room: ori::messages::ClientTopic,
    #[schemars(length(min = 1, max = 2000))]
    text: String,
    reply_to: Option<u64>,
    #[schemars(length(max = 10))]
    mentions: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` `iters` times per run; returns the median ns per call of `ops`
/// operations each.
fn bench(runs: usize, iters: usize, ops: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm up
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / (iters * ops) as f64
        })
        .collect();
    crate::round3(median(samples))
}

/// Runs every case and returns the results as JSON.
pub fn run(args: MicroArgs) -> anyhow::Result<Value> {
    let runs = args.runs.max(1);
    let n = |base: usize| ((base as f64 * args.scale) as usize).max(1);

    let topic_ns = bench(runs, n(1_000_000), 1, || {
        black_box(Topic::validate(black_box("account:6f1c2d3e-room.updates")).is_ok());
    });

    // Fan-out: one publish to 1,000 subscribers, outboxes drained between
    // publishes as writers would.
    let hub = Hub::new();
    let topic = Topic::new("bench").map_err(anyhow::Error::msg)?;
    let outboxes: Vec<Arc<Outbox>> = (0..1000)
        .map(|_| {
            let o = Arc::new(Outbox::new(SocketId::new(), 1 << 20));
            hub.register(o.clone(), 16);
            let _ = hub.subscribe(o.id(), &topic);
            o
        })
        .collect();
    let message = Message::text("x".repeat(128));
    let mut scratch = VecDeque::new();
    let fanout_ns = bench(runs, n(2_000), 1000, || {
        black_box(hub.publish_local(&topic, &message));
        for o in &outboxes {
            o.take(&mut scratch);
            let bytes: usize = scratch.drain(..).map(|f| f.len()).sum();
            o.written(bytes);
        }
    });

    let churn_topic = Topic::new("churn").map_err(anyhow::Error::msg)?;
    let first = outboxes[0].id();
    let subscribe_ns = bench(runs, n(500_000), 2, || {
        let _ = black_box(hub.subscribe(first, &churn_topic));
        let _ = black_box(hub.unsubscribe(first, &churn_topic));
    });

    let encode_ns = bench(runs, n(2_000_000), 1, || {
        black_box(codec::encode_message(black_box(&message)));
    });

    let masked = {
        let payload = message.as_bytes();
        let mut frame = vec![0x81, 0x80 | 126];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        let mask = [1u8, 2, 3, 4];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    };
    let mut decoder = Decoder::new(Limits::default());
    let decode_ns = bench(runs, n(1_000_000), 1, || {
        let mut buf = BytesMut::from(&masked[..]);
        black_box(decoder.decode(&mut buf).ok());
    });

    let room_schema = Schema::of::<RoomData>();
    let room = json!({ "room": "lobby:42" });
    let validate_room_ns = bench(runs, n(1_000_000), 1, || {
        black_box(room_schema.validate(black_box(&room)).is_ok());
    });
    let chat_schema = Schema::of::<ChatMessage>();
    let chat = json!({
        "room": "team:7",
        "text": "Ship it after the review, please",
        "reply_to": 1234,
        "mentions": ["ann", "bob"]
    });
    let validate_chat_ns = bench(runs, n(500_000), 1, || {
        black_box(chat_schema.validate(black_box(&chat)).is_ok());
    });
    let chat_text = chat.to_string();
    let parse_chat_ns = bench(runs, n(200_000), 1, || {
        let value: Value = serde_json::from_str(black_box(&chat_text)).unwrap_or(Value::Null);
        black_box(chat_schema.parse::<ChatMessage>(value).is_ok());
    });

    Ok(json!({
        "bench": "micro",
        "runs": runs,
        "ns_per_op": {
            "topic_validate": topic_ns,
            "fanout_per_subscriber_1000": fanout_ns,
            "subscribe_or_unsubscribe": subscribe_ns,
            "encode_frame_128b": encode_ns,
            "decode_masked_frame_128b": decode_ns,
            "validate_room_join": validate_room_ns,
            "validate_chat_message": validate_chat_ns,
            "parse_validate_deserialize_chat_message": parse_chat_ns,
        }
    }))
}
