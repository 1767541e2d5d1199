//! A subscriber that stops reading is cut off once its outbound queue
//! passes the limit: it gets a close frame with 1013 (after what was already
//! written), the slow-consumer metric counts it, and a subscriber that keeps
//! up on the same topic receives every message, in order.

use crate::common;

use std::time::Duration;

use common::{
    command_handlers, metric, parse_seq, seq, subscribe, wait_for_subscribers, RawWs, WAIT,
};
use ori::testing::{self, Received, TestServer};
use ori::{InProcProvider, Ori, WsOptions};
use tokio::sync::watch;

const QUEUE_LIMIT: usize = 64 * 1024;
/// Messages published at most (about 40 MiB).
const MAX_MESSAGES: u64 = 40_000;
/// Messages published after the slow consumer was cut off.
const AFTER_CLOSE: u64 = 500;
/// How far the publisher may run ahead of the fast subscriber, kept well
/// under the queue limit so the fast one never overflows.
const WINDOW: u64 = 16;

fn payload(n: u64) -> String {
    let mut p = seq(n);
    p.push(':');
    p.push_str(&"x".repeat(1013));
    p
}

async fn server() -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new().outbound_queue_limit(QUEUE_LIMIT),
            )
            .on_websocket(command_handlers()),
    )
    .await
}

/// The outcome of a flood.
struct Flood {
    published: u64,
    fast_received: u64,
}

/// Publishes numbered ~1 KiB messages to `flood`, paced by the fast
/// subscriber, until the slow consumer has been cut off (plus
/// [`AFTER_CLOSE`] more) or [`MAX_MESSAGES`]. `between` runs every 256
/// messages (to poke the slow client). Returns what was published and what
/// the fast subscriber got (it checks the order itself).
async fn flood(
    server: &TestServer,
    mut fast: testing::TestSocket,
    mut between: impl FnMut(u64) -> Option<String>,
    slow: &mut RawWs,
) -> Flood {
    let (progress_tx, mut progress) = watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            match fast.recv().await {
                Received::Text(t) if t == "end" => return next,
                Received::Text(t) => {
                    assert_eq!(parse_seq(&t), next, "fast subscriber: gap or reordering");
                    assert_eq!(t, payload(next), "fast subscriber: payload altered");
                    next += 1;
                    let _ = progress_tx.send(next);
                }
                other => panic!("fast subscriber got {other:?} after {next} messages"),
            }
        }
    });

    let emitter = server.app().socket();
    let metrics = emitter.hub_metrics().expect("websocket configured");
    let mut published = 0u64;
    let mut cut_off_at = None;
    while published < MAX_MESSAGES {
        emitter.publish("flood", payload(published)).await.unwrap();
        published += 1;
        if published % WINDOW == 0 {
            let target = published - WINDOW / 2;
            tokio::time::timeout(WAIT, progress.wait_for(|&got| got >= target))
                .await
                .expect("fast subscriber fell behind")
                .expect("fast reader alive");
        }
        if published % 256 == 0 {
            if let Some(text) = between(published) {
                slow.send_text(&text).await;
            }
        }
        if cut_off_at.is_none() && metrics.slow_consumer_closes() >= 1 {
            cut_off_at = Some(published);
            if let Some(text) = between(published) {
                slow.send_text(&text).await;
            }
        }
        if cut_off_at.is_some_and(|at| published >= at + AFTER_CLOSE) {
            break;
        }
    }
    assert!(
        cut_off_at.is_some(),
        "the slow consumer was never cut off after {published} messages"
    );
    emitter.publish("flood", "end").await.unwrap();
    let fast_received = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("fast subscriber finished")
        .unwrap();
    Flood {
        published,
        fast_received,
    }
}

/// Reads everything the slow client was sent: numbered messages from 0 with
/// no gap, then the close frame. Returns the close (code, reason) and how
/// many messages came before it.
async fn drain_until_close(slow: &mut RawWs) -> ((u16, String), u64) {
    let mut next = 0u64;
    loop {
        let frame = slow
            .read_frame(WAIT)
            .await
            .unwrap_or_else(|e| panic!("slow consumer stream after {next} messages: {e}"));
        match frame.opcode {
            1 => {
                let text = String::from_utf8(frame.payload).expect("UTF-8");
                if text.starts_with("subscribed:") {
                    continue;
                }
                assert_eq!(parse_seq(&text), next, "slow consumer: gap or reordering");
                assert_eq!(text, payload(next), "slow consumer: payload altered");
                next += 1;
            }
            8 => return (frame.close().expect("close frame with a code"), next),
            other => panic!("unexpected opcode {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_closed_with_1013_and_fast_subscriber_gets_everything() {
    let server = server().await;
    let mut fast = server.connect().await;
    subscribe(&mut fast, "flood").await;
    let mut slow = RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    slow.send_text("sub:flood").await;
    assert_eq!(slow.read_text().await, "subscribed:flood");
    // From here on the slow client reads nothing until the flood is over.

    let result = flood(&server, fast, |_| None, &mut slow).await;
    assert_eq!(
        result.fast_received, result.published,
        "fast subscriber missed messages"
    );

    let ((code, reason), delivered) = drain_until_close(&mut slow).await;
    assert_eq!(code, 1013, "close reason {reason:?}");
    assert!(
        delivered < result.published,
        "the slow consumer got everything, so was never cut off"
    );
    slow.send_close(1000).await;

    assert!(metric(server.app().socket(), "ori_slow_consumer_closes_total") >= 1);
    wait_for_subscribers(server.app(), "flood", 0).await;
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(&server, vec![]).await;
}

/// Same, but the stalled client keeps sending small messages while it does
/// not read (each one interrupts the server's blocked write). Its stream
/// must still be well formed: whole frames, then a 1013 close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn stalled_reader_that_keeps_sending_still_gets_a_well_formed_1013_close() {
    let server = server().await;
    let mut fast = server.connect().await;
    subscribe(&mut fast, "flood").await;
    let mut slow = RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    slow.send_text("sub:flood").await;
    assert_eq!(slow.read_text().await, "subscribed:flood");

    let result = flood(&server, fast, |_| Some("noop".to_owned()), &mut slow).await;
    assert_eq!(
        result.fast_received, result.published,
        "fast subscriber missed messages"
    );

    let ((code, _), delivered) = drain_until_close(&mut slow).await;
    assert_eq!(code, 1013);
    assert!(delivered < result.published);
    slow.send_close(1000).await;
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(&server, vec![]).await;
}
