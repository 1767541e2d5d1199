//! A table of malformed frames thrown at a live server over raw TCP: each
//! gets the close code RFC 6455 prescribes (1002, 1007, 1009), or, for a
//! frame cut short by the end of the stream, just the end of the
//! connection. After every row a well-behaved subscriber on the same
//! server still receives a publish sent after the bad client, and the
//! server still accepts and serves new connections.

use crate::common;

use common::{ask, client_frame, command_handlers, subscribe, wait_for_connections, RawWs, WAIT};
use ori::testing::{self, Received};
use ori::{InProcProvider, Ori, WsOptions};

/// The server's frame limit in this test.
const MAX_FRAME: usize = 1000;

/// `frame` with the given RSV bits set in its first byte.
fn with_rsv(mut frame: Vec<u8>, bits: u8) -> Vec<u8> {
    frame[0] |= bits;
    frame
}

/// A frame header with the opcode byte `b0`, masked, empty payload.
fn bare(b0: u8) -> Vec<u8> {
    vec![b0, 0x80, 0, 0, 0, 0]
}

/// One row: a name, the bytes the bad client sends, and the close code it
/// must receive (`None`: the client ends the stream mid-frame, and the
/// server must simply drop the connection).
fn rows() -> Vec<(String, Vec<u8>, Option<u16>)> {
    let mut rows: Vec<(String, Vec<u8>, Option<u16>)> = vec![
        (
            "bad UTF-8 in a text frame".into(),
            client_frame(true, 1, &[b'o', b'k', 0xFF, b'!']),
            Some(1007),
        ),
        (
            "bad UTF-8 across fragments".into(),
            [
                client_frame(false, 1, &[b'a', 0xCE]),
                client_frame(true, 0, &[0x28, b'b']),
            ]
            .concat(),
            Some(1007),
        ),
        (
            "invalid UTF-8 early in a large text frame that never completes".into(),
            // Only the first 100 bytes of a 900-byte frame are sent: the
            // decoder must judge the text as it arrives.
            {
                let mut payload = vec![b'a'; 900];
                payload[10] = 0xC0;
                let frame = client_frame(true, 1, &payload);
                frame[..100].to_vec()
            },
            Some(1007),
        ),
    ];
    for op in (3..=7).chain(0xB..=0xF) {
        rows.push((
            format!("reserved opcode {op:#x}"),
            bare(0x80 | op),
            Some(1002),
        ));
    }
    for (bit, name) in [(0x40, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3")] {
        rows.push((
            format!("{name} set without an extension"),
            with_rsv(client_frame(true, 1, b"rsv"), bit),
            Some(1002),
        ));
    }
    rows.extend([
        (
            "ping of 126 bytes".into(),
            client_frame(true, 9, &[b'p'; 126]),
            Some(1002),
        ),
        (
            "close of 126 bytes".into(),
            client_frame(true, 8, &[[0x03, 0xE8].as_slice(), &[b'r'; 124]].concat()),
            Some(1002),
        ),
        (
            "fragmented ping".into(),
            client_frame(false, 9, b"frag"),
            Some(1002),
        ),
        (
            "unmasked client frame".into(),
            vec![0x81, 0x02, b'h', b'i'],
            Some(1002),
        ),
        (
            "continuation without a start".into(),
            client_frame(true, 0, b"orphan"),
            Some(1002),
        ),
        (
            "new text frame while a fragmented message is open".into(),
            [client_frame(false, 1, b"a"), client_frame(true, 1, b"b")].concat(),
            Some(1002),
        ),
        (
            "new binary frame while a fragmented message is open".into(),
            [client_frame(false, 2, b"a"), client_frame(false, 2, b"b")].concat(),
            Some(1002),
        ),
        (
            "truncated frame then end of stream".into(),
            client_frame(true, 1, b"cut short")[..8].to_vec(),
            None,
        ),
        (
            "close with one byte of payload".into(),
            client_frame(true, 8, &[0x03]),
            Some(1002),
        ),
        (
            "close with invalid UTF-8 in the reason".into(),
            client_frame(true, 8, &[0x03, 0xE8, b'o', 0xFF]),
            Some(1007),
        ),
        (
            "frame over max_frame_size".into(),
            client_frame(true, 2, &vec![0u8; MAX_FRAME + 1]),
            Some(1009),
        ),
        (
            "frame header declaring 2^40 bytes".into(),
            vec![0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4],
            Some(1009),
        ),
    ]);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        rows.push((
            format!("close with code {code}"),
            client_frame(true, 8, &code.to_be_bytes()),
            Some(1002),
        ));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_malformed_frame_gets_its_close_code_and_others_are_unaffected() {
    let server = testing::spawn(
        Ori::create()
            .websocket_with(
                InProcProvider::new(),
                WsOptions::new().max_frame_size(MAX_FRAME),
            )
            .on_websocket(command_handlers()),
    )
    .await;
    let mut subscriber = server.connect().await;
    subscribe(&mut subscriber, "news").await;
    wait_for_connections(server.app(), 1).await;

    let rows = rows();
    for (i, (name, bytes, expected)) in rows.iter().enumerate() {
        let mut bad = RawWs::connect(server.addr(), "/ws", None).await;
        wait_for_connections(server.app(), 2).await;
        bad.send_bytes(bytes).await;
        match expected {
            Some(code) => {
                let frame = bad
                    .read_frame(WAIT)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: no close frame: {e}"));
                let got = frame
                    .close()
                    .unwrap_or_else(|| panic!("{name}: expected a close frame, got {frame:?}"));
                assert_eq!(got.0, *code, "{name}: close code (reason {:?})", got.1);
                // After its close frame the server sends nothing more and
                // ends the stream once this client goes away.
                drop(bad);
            }
            None => {
                // The client gives up mid-frame: the server must notice
                // the end of the stream and drop the connection.
                drop(bad);
            }
        }
        wait_for_connections(server.app(), 1).await;

        // The bystander still gets a publish sent after the bad client.
        let note = format!("after row {i}: {name}");
        server
            .app()
            .socket()
            .publish("news", note.as_str())
            .await
            .unwrap_or_else(|e| panic!("{name}: publish failed: {e}"));
        assert_eq!(
            subscriber.recv().await,
            Received::Text(note.clone()),
            "{name}: the subscriber missed the publish"
        );

        // And new connections are accepted and served.
        let mut fresh = server.connect().await;
        assert_eq!(ask(&mut fresh, "still here").await, "still here", "{name}");
        drop(fresh);
        wait_for_connections(server.app(), 1).await;
    }
    common::stop_server(&server, vec![subscriber]).await;
}
