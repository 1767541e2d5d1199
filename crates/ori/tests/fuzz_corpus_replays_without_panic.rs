//! Every file of the committed fuzz corpus (`fuzz/corpus/<target>/`),
//! replayed on the stable toolchain through the same harness functions the
//! cargo-fuzz targets call (`ori::fuzzing`), so the seeds and every crash
//! found and fixed so far guard against regressions in ordinary test runs.
//! (The Redis envelope corpus is replayed by ori-redis's own test.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The files of one target's corpus, by name; panics when there are none.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        target,
    ]
    .iter()
    .collect();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    files
}

/// Runs `harness` on every file of `target`'s corpus. Panics caught inside
/// the server (a handler that panics) are counted too: the fuzzer would
/// report them as crashes.
fn replay(target: &str, harness: fn(&[u8])) {
    let panics = Arc::new(AtomicUsize::new(0));
    let seen = panics.clone();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    for (name, data) in corpus(target) {
        let before = panics.load(Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(
            outcome.is_ok() && panics.load(Ordering::SeqCst) == before,
            "fuzz/corpus/{target}/{name} panicked"
        );
    }
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", ori::fuzzing::frame_decoder);
}

#[test]
fn dispatch_corpus() {
    replay("dispatch", ori::fuzzing::dispatch);
}

#[test]
fn message_validation_corpus() {
    replay("message_validation", ori::fuzzing::message_validation);
}

#[test]
fn topic_and_socket_id_corpus() {
    replay("topic_and_socket_id", ori::fuzzing::topic_and_socket_id);
}
