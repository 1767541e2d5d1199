//! Fuzz target `upgrade_request`: arbitrary request heads on the WebSocket
//! path; the harness is `ori::fuzzing::DispatchRig::upgrade_request`, shared
//! with the corpus replay test
//! (crates/ori/tests/fuzz_corpus_replays_without_panic.rs).
#![no_main]

use std::sync::OnceLock;

use ori::fuzzing::DispatchRig;

fn rig() -> &'static DispatchRig {
    static RIG: OnceLock<DispatchRig> = OnceLock::new();
    RIG.get_or_init(|| DispatchRig::new(ori::Ori::create().websocket()))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| rig().upgrade_request(data));
