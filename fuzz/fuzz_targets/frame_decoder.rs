//! Fuzz target `frame_decoder`: the harness is `ori::fuzzing::frame_decoder`, shared with the
//! corpus replay test (crates/ori/tests/it/fuzz_corpus_replays_without_panic.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ori::fuzzing::frame_decoder(data));
