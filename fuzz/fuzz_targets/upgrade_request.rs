//! Fuzz target `upgrade_request`: arbitrary request heads on the WebSocket
//! path; the harness is `ori::fuzzing::DispatchRig::upgrade_request`, shared
//! with the corpus replay test
//! (crates/ori/tests/it/fuzz_corpus_replays_without_panic.rs).
#![no_main]

use std::sync::OnceLock;

use ori::fuzzing::DispatchRig;

fn rig() -> &'static DispatchRig {
    static RIG: OnceLock<DispatchRig> = OnceLock::new();
    // Compression on: the extension offers are parsed too.
    RIG.get_or_init(|| {
        let options = ori::WsOptions::new().compression(ori::Compression::new());
        DispatchRig::new(ori::Ori::create().websocket_with(ori::InProcProvider::new(), options))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| rig().upgrade_request(data));
