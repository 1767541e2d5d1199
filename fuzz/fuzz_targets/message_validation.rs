//! Fuzz target `message_validation`: the harness is `ori::fuzzing::message_validation`, shared with the
//! corpus replay test (crates/ori/tests/it/fuzz_corpus_replays_without_panic.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ori::fuzzing::message_validation(data));
