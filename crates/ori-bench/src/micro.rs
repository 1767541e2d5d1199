//! In-process micro-benchmarks of the hot paths: topic validation, the
//! hub's fan-out into outboxes, subscribe/unsubscribe, frame encoding and
//! decoding, and schema validation of a typical message. Each case runs a
//! fixed number of iterations several times; the median ns per operation
//! is reported.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use clap::Args;
use ori_core::codec::{self, Decoder, Limits};
use ori_core::Topic;
use serde_json::{json, Value};

pub mod setup;

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
    // Micro-benchmarks are meant to keep one core busy: the fields are
    // reported, without the saturation warning.
    let mut bench_cpu = crate::common::BenchCpu::start();
    let n = |base: usize| ((base as f64 * args.scale) as usize).max(1);

    let topic_ns = bench(runs, n(1_000_000), 1, || {
        black_box(Topic::validate(black_box(setup::TOPIC_NAME)).is_ok());
    });

    // Fan-out: one publish to 1,000 subscribers, outboxes drained between
    // publishes as writers would.
    let mut fanout = setup::FanoutHub::new(1000, 0);
    let message = setup::message_128b();
    let fanout_ns = bench(runs, n(2_000), 1000, || {
        black_box(fanout.publish_and_drain(&message));
    });

    let batched_ns = bench(runs, n(60), 64 * 1000, || {
        black_box(fanout.publish_batch_and_drain(&message, 64));
    });

    let churn_topic = Topic::new("churn").map_err(anyhow::Error::msg)?;
    let first = *fanout.outboxes[0].id();
    let hub = &fanout.hub;
    let subscribe_ns = bench(runs, n(500_000), 2, || {
        let _ = black_box(hub.subscribe(&first, &churn_topic));
        let _ = black_box(hub.unsubscribe(&first, &churn_topic));
    });

    let encode_ns = bench(runs, n(2_000_000), 1, || {
        black_box(codec::encode_message(black_box(&message)));
    });

    let masked = setup::masked_frame(&message);
    let mut decoder = Decoder::new(Limits::default());
    let decode_ns = bench(runs, n(1_000_000), 1, || {
        let mut buf = BytesMut::from(&masked[..]);
        black_box(decoder.decode(&mut buf).ok());
    });

    let (room_schema, room) = setup::room_join();
    let validate_room_ns = bench(runs, n(1_000_000), 1, || {
        black_box(room_schema.validate(black_box(&room)).is_ok());
    });
    let (chat_schema, chat) = setup::chat_message();
    let validate_chat_ns = bench(runs, n(500_000), 1, || {
        black_box(chat_schema.validate(black_box(&chat)).is_ok());
    });
    let chat_text = chat.to_string();
    let parse_chat_ns = bench(runs, n(200_000), 1, || {
        black_box(setup::parse_chat(&chat_schema, black_box(&chat_text)));
    });

    let (batch_schema, batch) = setup::large_rejection();
    let reject_large_ns = bench(runs, n(50), 1, || {
        black_box(batch_schema.validate(black_box(&batch)).is_err());
    });

    let mut out = json!({
        "bench": "micro",
        "runs": runs,
        "ns_per_op": {
            "topic_validate": topic_ns,
            "fanout_per_subscriber_1000": fanout_ns,
            "fanout_per_subscriber_1000_batches_of_64": batched_ns,
            "subscribe_or_unsubscribe": subscribe_ns,
            "encode_frame_128b": encode_ns,
            "decode_masked_frame_128b": decode_ns,
            "validate_room_join": validate_room_ns,
            "validate_chat_message": validate_chat_ns,
            "parse_validate_deserialize_chat_message": parse_chat_ns,
            "reject_1mb_value_under_an_optional_struct": reject_large_ns,
        }
    });
    if let Some(map) = out.as_object_mut() {
        bench_cpu.fields(map);
    }
    Ok(out)
}
