//! The committed `dispatch` fuzz corpus (`fuzz/corpus/dispatch/`) replayed
//! on the stable toolchain through the demo application, exactly as the
//! cargo-fuzz target `dispatch` runs it.

use std::path::PathBuf;

use ori::fuzzing::{replay_corpus, DispatchRig};

#[test]
fn dispatch_corpus() {
    let rig = DispatchRig::new(ori_demo::build(ori_demo::Config::default()));
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        "dispatch",
    ]
    .iter()
    .collect();
    replay_corpus(&dir, |data| rig.run(data));
}
