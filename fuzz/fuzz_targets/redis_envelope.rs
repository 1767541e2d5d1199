//! Fuzz target `redis_envelope`: the harness is `ori_redis::envelope::fuzz_decode`,
//! shared with the corpus replay test (crates/ori-redis/tests/it/fuzz_corpus_replays_without_panic.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ori_redis::envelope::fuzz_decode(data));
