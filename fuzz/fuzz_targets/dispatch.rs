//! Fuzz target `dispatch`: inbound text through the demo application's
//! dispatch path; the harness is `ori::fuzzing::DispatchRig`, shared with
//! the corpus replay test
//! (crates/ori-demo/tests/it/fuzz_dispatch_corpus_replays_without_panic.rs).
#![no_main]

use std::sync::OnceLock;

use ori::fuzzing::DispatchRig;

fn rig() -> &'static DispatchRig {
    static RIG: OnceLock<DispatchRig> = OnceLock::new();
    RIG.get_or_init(|| DispatchRig::new(ori_demo::build(ori_demo::Config::default())))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| rig().run(data));
