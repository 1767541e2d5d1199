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
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the redis_envelope corpus")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the redis_envelope corpus is empty");
    for path in files {
        let data = std::fs::read(&path).expect("corpus file");
        let outcome = std::panic::catch_unwind(|| ori_redis::envelope::fuzz_decode(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
}
