//! Every file of the committed fuzz corpus (`fuzz/corpus/<target>/`),
//! replayed on the stable toolchain through the same harness functions the
//! cargo-fuzz targets call (`ori::fuzzing`), so the seeds and every crash
//! found and fixed so far guard against regressions in ordinary test runs.
//! (The `dispatch` corpus runs through the demo application in ori-demo's
//! tests, the Redis envelope corpus in ori-redis's.)

use std::path::PathBuf;

use ori::fuzzing::replay_corpus;

fn corpus(target: &str) -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "fuzz",
        "corpus",
        target,
    ]
    .iter()
    .collect()
}

#[test]
fn frame_decoder_corpus() {
    replay_corpus(&corpus("frame_decoder"), ori::fuzzing::frame_decoder);
}

#[test]
fn message_validation_corpus() {
    replay_corpus(
        &corpus("message_validation"),
        ori::fuzzing::message_validation,
    );
}

#[test]
fn topic_and_socket_id_corpus() {
    replay_corpus(
        &corpus("topic_and_socket_id"),
        ori::fuzzing::topic_and_socket_id,
    );
}

#[test]
fn upgrade_request_corpus() {
    // Compression on: the extension offers are parsed too.
    let options = ori::WsOptions::new().compression(ori::Compression::new());
    let rig = ori::fuzzing::DispatchRig::new(
        ori::Ori::create().websocket_with(ori::InProcProvider::new(), options),
    );
    replay_corpus(&corpus("upgrade_request"), |data| rig.upgrade_request(data));
}
