//! A thousand clients joining and leaving a topic (200 at a time) while it
//! is being published to: the subscriber that stays receives every message
//! in order, and when the churn is over only it is left.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    command_server, parse_seq, seq, subscribe, unsubscribe, wait_for_connections,
    wait_for_subscribers,
};
use ori::testing::{Received, TestSocket};
use tokio::sync::{watch, Semaphore};

const CLIENTS: usize = 1_000;
const CONCURRENCY: usize = 200;
/// At least this many messages are published, however fast the churn is.
const MIN_MESSAGES: u64 = 2_000;
/// Upper bound on the publisher loop.
const MAX_MESSAGES: u64 = 200_000;
/// Messages published per millisecond tick.
const BURST: u64 = 4;
/// How far the publisher may run ahead of the steady subscriber.
const WINDOW: u64 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_subscriber_gets_every_message_while_1000_clients_churn() {
    let server = command_server().await;
    let app = server.app().clone();
    let url = server.ws_url("/ws");

    let mut steady = server.connect().await;
    subscribe(&mut steady, "churn").await;
    let (progress_tx, mut progress) = watch::channel(0u64);
    let steady_reader = tokio::spawn(async move {
        let mut next = 0u64;
        loop {
            match steady.recv().await {
                Received::Text(t) if t == "end" => return (steady, next),
                Received::Text(t) => {
                    assert_eq!(parse_seq(&t), next, "steady subscriber: gap or reordering");
                    next += 1;
                    let _ = progress_tx.send(next);
                }
                other => panic!("steady subscriber got {other:?} after {next} messages"),
            }
        }
    });

    // The churn: each client connects, joins, leaves and disconnects.
    let churn_done = Arc::new(AtomicBool::new(false));
    let joined_while_publishing = Arc::new(AtomicU64::new(0));
    let churn = {
        let churn_done = churn_done.clone();
        let seen = joined_while_publishing.clone();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(CONCURRENCY));
            let mut tasks = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let permit = permits.clone().acquire_owned().await.unwrap();
                let url = url.clone();
                let seen = seen.clone();
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let mut ws = TestSocket::connect(&url, &[])
                        .await
                        .expect("churn client connects");
                    subscribe(&mut ws, "churn").await;
                    // Stay until one publish arrived, so every client overlaps
                    // the publishing.
                    match ws.recv().await {
                        Received::Text(t) => {
                            parse_seq(&t);
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("churn client got {other:?}"),
                    }
                    // More publishes may arrive before the reply; that is fine.
                    unsubscribe(&mut ws, "churn").await;
                    ws.close(1000, "").await;
                    while !matches!(ws.recv().await, Received::Close(_)) {}
                }));
            }
            for t in tasks {
                t.await.expect("churn client");
            }
            churn_done.store(true, Ordering::Release);
        })
    };

    // The publisher: a numbered sequence, a few messages every millisecond
    // (the interval only paces it, so it does not starve the churn), never
    // more than WINDOW ahead of the steady subscriber.
    let emitter = app.socket().clone();
    let mut published = 0u64;
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while published < MAX_MESSAGES
        && (published < MIN_MESSAGES || !churn_done.load(Ordering::Acquire))
    {
        pace.tick().await;
        for _ in 0..BURST {
            emitter.publish("churn", seq(published)).await.unwrap();
            published += 1;
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            progress.wait_for(|&got| got + WINDOW >= published),
        )
        .await
        .expect("steady subscriber fell behind")
        .expect("steady reader alive");
    }
    tokio::time::timeout(Duration::from_secs(30), churn)
        .await
        .expect("churn finished")
        .unwrap();
    emitter.publish("churn", "end").await.unwrap();

    let (steady, received) = tokio::time::timeout(Duration::from_secs(10), steady_reader)
        .await
        .expect("steady subscriber finished")
        .unwrap();
    assert_eq!(received, published, "steady subscriber missed messages");
    assert!(published >= MIN_MESSAGES);

    wait_for_connections(&app, 1).await;
    wait_for_subscribers(&app, "churn", 1).await;
    // Every churn client received a publish while it was joined.
    assert_eq!(
        joined_while_publishing.load(Ordering::Relaxed),
        CLIENTS as u64
    );
    common::stop_server(&server, vec![steady]).await;
}
