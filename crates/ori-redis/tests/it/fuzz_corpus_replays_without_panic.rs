//! Every file of the committed `redis_envelope` fuzz corpus
//! (`fuzz/corpus/redis_envelope/`), replayed on the stable toolchain
//! through the harness the cargo-fuzz target calls
//! (`ori_redis::envelope::fuzz_decode`).

use std::path::PathBuf;

#[test]
fn redis_envelope_corpus() {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        "redis_envelope",
    ]
    .iter()
    .collect();
    ori::fuzzing::replay_corpus(&dir, ori_redis::envelope::fuzz_decode);
}
