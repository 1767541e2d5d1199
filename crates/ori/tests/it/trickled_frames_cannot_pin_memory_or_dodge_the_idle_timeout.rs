//! Partial input is bounded: a frame header announcing a large payload
//! costs the bytes that arrived, not the size it announces, and a frame or
//! a fragmented message must complete within the idle timeout, whatever
//! trickles in meanwhile (PROTOCOL.md section 6).

use crate::common;

use std::time::Duration;

use common::{client_frame, command_handlers, RawFrame, RawWs, WAIT};
use ori::testing::{self, TestServer};
use ori::{InProcProvider, Ori, WsOptions};

async fn server(idle: Duration) -> TestServer {
    testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new()
                    .ping_interval(Some(idle / 3))
                    .idle_timeout(idle),
            )
            .on_websocket(command_handlers()),
    )
    .await
}

/// Sends `bytes` in pieces of `step`, `every` apart, until the server's
/// close frame arrives (pings and pongs are read, pings not answered).
/// Returns the close, or `None` if every piece went out first.
async fn trickle_until_closed(
    raw: &mut RawWs,
    bytes: &[u8],
    step: usize,
    every: Duration,
) -> Option<RawFrame> {
    for piece in bytes.chunks(step) {
        raw.send_bytes(piece).await;
        loop {
            match raw.read_frame(every).await {
                Ok(f) if f.opcode == 8 => return Some(f),
                Ok(f) => assert!(matches!(f.opcode, 9 | 10), "only pings and pongs: {f:?}"),
                // Nothing within `every`: time for the next piece.
                Err(e) if e.starts_with("timed out") => break,
                Err(e) => panic!("connection ended without a close frame: {e}"),
            }
        }
    }
    None
}

/// Checks that `close` is 1001 "Idle timeout", then ends the stream (mid-
/// frame, a close frame of ours would only extend the partial frame) and
/// stops the server once the connection is gone.
async fn idle_closed(server: &TestServer, raw: RawWs, close: RawFrame) {
    assert_eq!(close.close(), Some((1001, "Idle timeout".to_owned())));
    drop(raw);
    common::wait_for_connections(server.app(), 0).await;
    common::stop_server(server, vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_trickled_a_byte_at_a_time_is_closed_at_the_idle_timeout() {
    let server = server(Duration::from_millis(300)).await;
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    let frame = client_frame(true, 1, &[b'x'; 1000]);
    // The header and a few payload bytes, then one byte every 50 ms for
    // 5 s (the frame would take 50 s to complete).
    raw.send_bytes(&frame[..20]).await;
    let close = trickle_until_closed(&mut raw, &frame[20..120], 1, Duration::from_millis(50))
        .await
        .expect("closed before the frame completed");
    idle_closed(&server, raw, close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_message_that_never_ends_is_closed_despite_its_fragments_and_pings() {
    let server = server(Duration::from_millis(300)).await;
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    // Every fragment and every ping is a complete frame, sent every 50 ms;
    // the message never gets its final fragment.
    let mut stream = client_frame(false, 1, b"start");
    for i in 0..100 {
        stream.extend(if i % 2 == 0 {
            client_frame(false, 0, b"more")
        } else {
            client_frame(true, 9, b"")
        });
    }
    let close = trickle_until_closed(&mut raw, &stream, 10, Duration::from_millis(50)).await;
    idle_closed(
        &server,
        raw,
        close.expect("closed before the fragments ran out"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_keep_completing_keep_a_busy_connection_open() {
    let server = server(Duration::from_millis(500)).await;
    let mut raw = RawWs::connect(server.addr(), "/ws", None).await;
    // A message every 50 ms for four idle timeouts, each split across two
    // writes so that most reads end inside a frame.
    for _ in 0..40 {
        let frame = client_frame(true, 1, b"alive");
        raw.send_bytes(&frame[..4]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
        raw.send_bytes(&frame[4..]).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Everything was answered, in order, and nothing closed it.
    for _ in 0..40 {
        let frame = loop {
            let f = raw.read_frame(WAIT).await.expect("a reply");
            if f.opcode != 9 {
                break f;
            }
        };
        assert_eq!((frame.opcode, &frame.payload[..]), (1, &b"alive"[..]));
    }
    assert_eq!(server.app().connection_count(), 1);
    drop(raw);
    common::stop_server(&server, vec![]).await;
}

/// The virtual memory of this process, in KiB.
#[cfg(target_os = "linux")]
fn vm_size_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize")
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_announcing_large_frames_cost_only_the_bytes_that_arrived() {
    const SOCKETS: usize = 200;
    let server = server(Duration::from_secs(30)).await;
    let mut canary = RawWs::connect(server.addr(), "/ws", None).await;
    // Connections first, so that what follows measures the frames only.
    let mut attackers = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        attackers.push(RawWs::connect(server.addr(), "/ws", None).await);
    }
    canary.send_text("alive").await;
    assert_eq!(canary.read_text().await, "alive");
    let before = vm_size_kib();
    // Each sends the header and 6 bytes of a 1 MiB frame (within the frame
    // size limit): 20 bytes that used to reserve the whole megabyte.
    let frame = client_frame(true, 2, &vec![0u8; 1 << 20]);
    for a in &mut attackers {
        a.send_bytes(&frame[..20]).await;
    }
    // The server has read them once a later message on another socket is
    // answered; look a few times in case it is still catching up.
    let mut peak = 0;
    for _ in 0..10 {
        canary.send_text("alive").await;
        assert_eq!(canary.read_text().await, "alive");
        peak = peak.max(vm_size_kib().saturating_sub(before));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{SOCKETS} partial frame headers: address space +{peak} KiB");
    // 200 x 1 MiB would be 200 MiB; what arrived is 4 KB in all. (The
    // margin leaves room for a new malloc arena, 64 MiB of address space,
    // should a thread start one meanwhile.)
    assert!(
        peak < 120 * 1024,
        "{SOCKETS} partial frame headers grew the address space by {peak} KiB"
    );
    assert_eq!(server.app().connection_count(), SOCKETS + 1);
    drop((attackers, canary));
    common::stop_server(&server, vec![]).await;
}
