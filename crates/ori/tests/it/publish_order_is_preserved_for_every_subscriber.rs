//! One publisher's messages reach every subscriber complete and in the
//! order they were published.

use crate::common;

use std::time::Duration;

use common::{command_server, parse_seq, seq, subscribe};
use ori::testing::{self, Received, TestServer};
use ori::{Ori, WsOptions};

const MESSAGES: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subscribers_receive_2000_messages_in_order() {
    three_subscribers_in_order(command_server().await).await;
}

/// One writer for every connection, or one each (three subscribers on
/// three writers): the same messages, in the same order, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_writers_delivers_everything_in_order() {
    for writers in [1, 3] {
        let app = Ori::create()
            .websocket_options(WsOptions::new().writers(writers))
            .on_websocket(common::command_handlers());
        three_subscribers_in_order(testing::spawn(app).await).await;
    }
}

async fn three_subscribers_in_order(server: TestServer) {
    let mut readers = Vec::new();
    for _ in 0..3 {
        let mut ws = server.connect().await;
        subscribe(&mut ws, "ordered").await;
        readers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while (got.len() as u64) < MESSAGES {
                match ws.recv().await {
                    Received::Text(t) => got.push(parse_seq(&t)),
                    other => panic!("after {} messages got {other:?}", got.len()),
                }
            }
            (ws, got)
        }));
    }

    let emitter = server.app().socket();
    for n in 0..MESSAGES {
        emitter
            .publish("ordered", format!("{}:payload", seq(n)))
            .await
            .unwrap();
    }

    let expected: Vec<u64> = (0..MESSAGES).collect();
    let mut clients = Vec::new();
    for reader in readers {
        let (ws, got) = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("subscriber received everything in time")
            .unwrap();
        assert_eq!(got.len(), expected.len());
        if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g != e) {
            panic!(
                "out of order at index {i}: got {} expected {}",
                got[i], expected[i]
            );
        }
        clients.push(ws);
    }
    // Nothing more than what was published.
    for ws in &mut clients {
        ws.expect_silence(Duration::from_millis(50)).await;
    }
    common::stop_server(&server, clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_from_concurrent_tasks_keep_each_publishers_order() {
    let server = command_server().await;
    let mut ws = server.connect().await;
    subscribe(&mut ws, "mixed").await;
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let emitter = server.app().socket().clone();
            tokio::spawn(async move {
                for n in 0..500u64 {
                    emitter
                        .publish("mixed", format!("{}:{p}", seq(n)))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u64; 4];
    for _ in 0..2_000 {
        let text = ws.recv_text().await;
        let (n, p) = (parse_seq(&text), text[11..].parse::<usize>().unwrap());
        assert_eq!(n, next[p], "publisher {p} out of order");
        next[p] += 1;
    }
    for p in publishers {
        p.await.unwrap();
    }
    assert_eq!(next, [500; 4]);
    common::stop_server(&server, vec![ws]).await;
}
