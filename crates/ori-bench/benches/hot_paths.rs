//! Criterion micro-benchmarks of the hot paths: topic validation and lookup,
//! subscribe/unsubscribe on a hub with many topics, the hub's fan-out into
//! outboxes, frame encoding and decoding, and validation of typical
//! messages. The fixtures are shared with `ori-bench micro`.
//!
//! `cargo bench -p ori-bench --bench hot_paths`

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ori_core::codec::{self, Decoder, Limits};
use ori_core::Topic;

#[allow(dead_code, unreachable_pub)]
#[path = "../src/micro/setup.rs"]
mod setup;

fn topics(c: &mut Criterion) {
    c.bench_function("topic_validate", |b| {
        b.iter(|| Topic::validate(black_box(setup::TOPIC_NAME)).is_ok())
    });
    // A hub with 10,000 topics: look one up, and join and leave one.
    let hub = setup::FanoutHub::new(1000, 10_000);
    let known = Topic::new("topic-4242").expect("valid topic");
    c.bench_function("topic_lookup_10k_topics", |b| {
        b.iter(|| hub.hub.subscriber_count(black_box(&known)))
    });
    let churn = Topic::new("churn").expect("valid topic");
    let id = *hub.outboxes[0].id();
    c.bench_function("subscribe_unsubscribe_10k_topics", |b| {
        b.iter(|| {
            let _ = black_box(hub.hub.subscribe(&id, &churn));
            let _ = black_box(hub.hub.unsubscribe(&id, &churn));
        })
    });
}

fn fanout(c: &mut Criterion) {
    let mut hub = setup::FanoutHub::new(1000, 0);
    let message = setup::message_128b();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("publish_1000_subscribers", |b| {
        b.iter(|| hub.publish_and_drain(&message))
    });
    group.finish();
}

fn frames(c: &mut Criterion) {
    let message = setup::message_128b();
    c.bench_function("encode_frame_128b", |b| {
        b.iter(|| codec::encode_message(black_box(&message)))
    });
    let masked = setup::masked_frame(&message);
    let mut decoder = Decoder::new(Limits::default());
    c.bench_function("decode_masked_frame_128b", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&masked[..]);
            decoder.decode(&mut buf).ok()
        })
    });
}

fn validation(c: &mut Criterion) {
    let (room_schema, room) = setup::room_join();
    c.bench_function("validate_room_join", |b| {
        b.iter(|| room_schema.validate(black_box(&room)).is_ok())
    });
    let (chat_schema, chat) = setup::chat_message();
    c.bench_function("validate_chat_message", |b| {
        b.iter(|| chat_schema.validate(black_box(&chat)).is_ok())
    });
    let text = chat.to_string();
    c.bench_function("parse_validate_deserialize_chat_message", |b| {
        b.iter(|| setup::parse_chat(&chat_schema, black_box(&text)))
    });
}

/// The generated group function has no docs of its own.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(hot_paths, topics, fanout, frames, validation);
}
criterion_main!(group::hot_paths);
