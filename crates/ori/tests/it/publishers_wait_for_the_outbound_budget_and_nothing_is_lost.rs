//! The instance's outbound budget slows publishers to the pace of delivery:
//! past it `publish().await` waits, fails with `Overloaded` after the
//! publish timeout (the message is then not queued anywhere), and goes
//! through once the readers catch up; a reader that stopped altogether is
//! shed with 1013 so it cannot stall the publishers or the other readers.

use crate::common;

use std::time::Duration;

use common::{command_handlers, metric, parse_seq, seq, subscribe, RawWs, WAIT};
use ori::testing::{self, Received, TestServer};
use ori::{InProcProvider, Ori, PublishError, WsOptions};

const BUDGET: usize = 64 << 10;
/// Messages published at most: about 20 MiB, far more than the kernel's
/// socket buffers on both sides hold.
const MAX_MESSAGES: u64 = 20_000;

fn payload(n: u64) -> String {
    let mut p = seq(n);
    p.push(':');
    p.push_str(&"x".repeat(1013));
    p
}

async fn server(options: WsOptions) -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                options
                    .outbound_budget(BUDGET)
                    .outbound_queue_limit(4 << 20),
            )
            .on_websocket(command_handlers()),
    )
    .await
}

/// A client subscribed to `t` with a small receive buffer, which then reads
/// only when told to.
async fn stalled_subscriber(server: &TestServer) -> RawWs {
    let mut ws = RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    ws.send_text("sub:t").await;
    assert_eq!(ws.read_text().await, "subscribed:t");
    ws
}

fn queued(server: &TestServer) -> u64 {
    metric(server.app().socket(), "ori_outbound_queued_bytes")
}

/// Reads numbered messages `0..until` from `ws` in order, skipping the
/// subscription reply.
async fn read_in_order(ws: &mut RawWs, until: u64) {
    let mut next = 0;
    while next < until {
        let frame = ws
            .read_frame(WAIT)
            .await
            .unwrap_or_else(|e| panic!("after {next} messages: {e}"));
        assert_eq!(frame.opcode, 1, "after {next} messages");
        let text = String::from_utf8(frame.payload).unwrap();
        assert_eq!(parse_seq(&text), next, "gap or reordering");
        assert_eq!(text, payload(next));
        next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_makes_publish_wait_then_fail_and_nothing_is_lost() {
    let server = server(
        WsOptions::new()
            .publish_timeout(Duration::from_millis(200))
            .shed_slowest_after(Duration::from_secs(60)),
    )
    .await;
    let mut reader = stalled_subscriber(&server).await;
    // The reader stops reading: the kernel's buffers fill, then the queue.

    let emitter = server.app().socket();
    let mut published = 0;
    let refused = loop {
        assert!(published < MAX_MESSAGES, "no publish was ever refused");
        match emitter.publish("t", payload(published)).await {
            Ok(()) => published += 1,
            Err(e) => break e,
        }
        let frame = payload(0).len() as u64 + 4;
        assert!(
            queued(&server) <= BUDGET as u64 + frame,
            "the queue grew past the budget plus one fan-out"
        );
    };
    assert!(
        matches!(&refused, PublishError::Overloaded { topic, waited }
            if topic == "t" && *waited >= Duration::from_millis(200)),
        "{refused:?}"
    );
    assert_eq!(metric(emitter, "ori_publish_overloaded_total"), 1);

    // The refused message was queued nowhere: publishing it again (it waits
    // for room) while the reader catches up delivers everything once, in
    // order.
    let again = {
        let emitter = emitter.clone();
        let message = payload(published);
        tokio::spawn(async move { emitter.publish("t", message).await })
    };
    read_in_order(&mut reader, published + 1).await;
    tokio::time::timeout(WAIT, again)
        .await
        .expect("the waiting publish went through")
        .unwrap()
        .expect("published once there was room");
    assert!(metric(emitter, "ori_publish_waits_total") >= 2);
    assert_eq!(metric(emitter, "ori_budget_shed_total"), 0);
    reader.send_close(1000).await;
    common::wait_for_connections(server.app(), 0).await;
    common::wait_until("every queued byte released", || queued(&server) == 0).await;
    common::stop_server(&server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stopped_is_shed_and_publishers_and_fast_readers_go_on() {
    let server = server(
        WsOptions::new()
            .publish_timeout(Duration::from_secs(10))
            .shed_slowest_after(Duration::from_millis(100)),
    )
    .await;
    let mut fast = server.connect().await;
    subscribe(&mut fast, "t").await;
    let mut slow = stalled_subscriber(&server).await;

    let total = 12_000;
    let fast_reader = tokio::spawn(async move {
        for next in 0..total {
            match fast.recv().await {
                Received::Text(t) => assert_eq!(parse_seq(&t), next, "fast: gap or reordering"),
                other => panic!("fast reader got {other:?} after {next} messages"),
            }
        }
        fast
    });
    // No pacing by the test: the budget is what keeps the publisher from
    // running ahead of the fast reader.
    let emitter = server.app().socket();
    for n in 0..total {
        emitter
            .publish("t", payload(n))
            .await
            .unwrap_or_else(|e| panic!("publish {n} refused: {e}"));
    }
    let fast = tokio::time::timeout(WAIT, fast_reader)
        .await
        .expect("the fast reader got everything")
        .unwrap();

    // The stalled reader got a prefix, then 1013.
    let mut next = 0;
    let close = loop {
        let frame = slow.read_frame(WAIT).await.expect("slow stream");
        match frame.opcode {
            1 => {
                let text = String::from_utf8(frame.payload).unwrap();
                assert_eq!(parse_seq(&text), next, "slow: gap or reordering");
                next += 1;
            }
            8 => break frame.close().expect("close code"),
            other => panic!("opcode {other}"),
        }
    };
    assert_eq!(close.0, 1013, "{close:?}");
    assert!(next < total, "the stalled reader was never cut off");
    assert!(metric(emitter, "ori_budget_shed_total") >= 1);
    assert!(metric(emitter, "ori_publish_waits_total") >= 1);
    slow.send_close(1000).await;
    common::stop_server(&server, vec![fast]).await;
}

/// A connection closed while its reader has stopped (here: shed by the
/// budget) must not linger with bytes charged: its close frame waits
/// behind a full socket, so the closing handshake's timeout ends it and
/// releases every byte, well before the connection's next timer tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_connection_whose_reader_stopped_ends_after_the_close_timeout() {
    let server = server(
        WsOptions::new()
            .close_timeout(Duration::from_millis(200))
            .publish_timeout(Duration::from_secs(10))
            .shed_slowest_after(Duration::from_millis(50)),
    )
    .await;
    let reader = stalled_subscriber(&server).await;
    let emitter = server.app().socket();
    let mut published = 0;
    while metric(emitter, "ori_budget_shed_total") == 0 {
        assert!(
            published < MAX_MESSAGES,
            "the stalled reader was never shed"
        );
        emitter.publish("t", payload(published)).await.unwrap();
        published += 1;
    }
    // The default ping interval is 30 s: only the handshake's timeout can
    // end the connection within the wait.
    common::wait_for_connections(server.app(), 0).await;
    common::wait_until("the backlog released", || queued(&server) == 0).await;
    drop(reader);
    common::stop_server(&server, vec![]).await;
}
