//! Fuzz target `topic_and_socket_id`: the harness is `ori::fuzzing::topic_and_socket_id`, shared with the
//! corpus replay test (crates/ori/tests/it/fuzz_corpus_replays_without_panic.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ori::fuzzing::topic_and_socket_id(data));
