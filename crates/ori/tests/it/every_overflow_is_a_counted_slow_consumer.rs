//! The server's own frames (pongs, pings, rate-limit replies) share the
//! outbound queue with publishes, and overflowing it with them is the same
//! slow-consumer close: 1013, counted in `ori_slow_consumer_closes_total`.

use crate::common;

use std::time::Duration;

use common::{client_frame, metric, RawWs};
use ori::testing;
use ori::{Handlers, InProcProvider, Ori, WsOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_from_a_client_that_never_reads_overflow_into_a_counted_1013() {
    let server = testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new()
                    .outbound_queue_limit(16 * 1024)
                    .close_timeout(Duration::from_millis(200)),
            )
            .on_websocket(Handlers::new()),
    )
    .await;
    let emitter = server.app().socket().clone();
    // A small receive buffer, and no reads: every pong stays queued.
    let mut raw = RawWs::connect(server.addr(), "/ws", Some(4096)).await;
    let ping = client_frame(true, 9, &[b'p'; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    // Up to 100k pings (13 MB of pongs), in batches of 1,000, until the
    // server has counted the overflow (or stops reading us).
    let mut sent = 0;
    while sent < 100 && metric(&emitter, "ori_slow_consumer_closes_total") == 0 {
        let write = tokio::time::timeout(Duration::from_secs(2), raw.send_bytes_fallible(&batch));
        match write.await {
            Ok(Ok(())) => sent += 1,
            // The server closed the connection, or stopped reading it.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    common::wait_until("the overflow to be counted", || {
        metric(&emitter, "ori_slow_consumer_closes_total") == 1
    })
    .await;
    common::wait_for_connections(server.app(), 0).await;
    assert_eq!(metric(&emitter, "ori_slow_consumer_closes_total"), 1);
    drop(raw);
    common::stop_server(&server, vec![]).await;
}
