//! The Rust client resumes rooms joined with positions (PROTOCOL.md
//! section 8): the network between it and the demo (with history) is cut
//! without a close frame, notifications are published while it cannot
//! reconnect, and after it does every one arrives exactly once, in order,
//! with [`Event::Recovered`] saying so.

use crate::client_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_common::*;
use ori::testing;
use ori_client::{Client, Event};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay to `target` whose connections can be cut, and which can
/// refuse new ones meanwhile: a network that goes away.
struct Relay {
    addr: std::net::SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    open: Arc<std::sync::atomic::AtomicBool>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let accept = {
            let (links, open) = (links.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !open.load(std::sync::atomic::Ordering::SeqCst) {
                        continue; // dropped: the connection is reset
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            })
        };
        Self {
            addr,
            links,
            open,
            accept,
        }
    }

    /// Cuts every connection (no close frame, no FIN from the server) and
    /// refuses new ones.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_the_network_gets_every_notification_exactly_once() {
    let config = ori_demo::Config {
        history: Some((1000, Duration::from_secs(300))),
        ..Default::default()
    };
    let server = testing::spawn(ori_demo::build(config)).await;
    let relay = Relay::start(server.addr()).await;
    let client = Client::builder(format!("ws://{}/ws", relay.addr))
        .reconnect(fast())
        .build()
        .unwrap();
    let mut events = client.events();
    let mut notes = client.on(&NOTIFICATION);
    client.join_room_resumable("feed").unwrap();
    let first = wait_for(&mut events, "recovered", |e| {
        matches!(e, Event::Recovered { .. })
    })
    .await;
    assert_eq!(
        first,
        Event::Recovered {
            reconnected: false,
            rooms: vec![("feed".into(), true)]
        }
    );
    let notify = |n: usize| {
        let body = json!({ "message": n.to_string() });
        let addr = server.addr();
        async move {
            let resp = testing::http_request(
                addr,
                testing::Method::POST,
                "/api/notify/feed",
                &[("content-type", "application/json")],
                body.to_string().into(),
            )
            .await;
            assert_eq!(resp.status, 200);
        }
    };
    for n in 0..5 {
        notify(n).await;
    }
    for n in 0..5 {
        assert_eq!(next(&mut notes).await.message, n.to_string());
    }
    let (epoch, offset) = client.position("feed").expect("a position");
    assert_eq!(offset, 5);

    relay.cut();
    wait_for(&mut events, "the drop", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    for n in 5..12 {
        notify(n).await;
    }
    relay.restore();
    let joined = wait_for(&mut events, "the resume", |e| {
        matches!(e, Event::Joined { .. })
    })
    .await;
    assert_eq!(
        joined,
        Event::Joined {
            room: "feed".into(),
            epoch: Some(epoch.clone()),
            offset: Some(12),
            recovered: Some(true),
            missed: Some(7),
        }
    );
    let recovered = wait_for(&mut events, "recovered", |e| {
        matches!(e, Event::Recovered { .. })
    })
    .await;
    assert_eq!(
        recovered,
        Event::Recovered {
            reconnected: true,
            rooms: vec![("feed".into(), true)]
        }
    );
    notify(12).await;
    for n in 5..13 {
        assert_eq!(
            next(&mut notes).await.message,
            n.to_string(),
            "in order, once"
        );
    }
    assert_eq!(client.position("feed"), Some((epoch, 13)));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), notes.recv())
            .await
            .is_err(),
        "nothing twice"
    );
    client.close();
}
