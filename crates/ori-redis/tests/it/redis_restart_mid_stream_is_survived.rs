//! Redis is killed (SIGKILL) and restarted on the same port while one
//! instance keeps publishing: nothing panics, the publishing instance's
//! own subscribers keep getting every message, publishes during the
//! outage fail quickly with an error instead of hanging, and once Redis is
//! back every instance resubscribes and cross-instance delivery resumes
//! in both directions, without restarting anything.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ori::testing::{Received, TestSocket};
use ori_redis::testing::RedisServer;

type Shared<T> = Arc<Mutex<T>>;

/// Reads everything `ws` receives (as text) into a list, until `stop`.
fn collect(mut ws: TestSocket, stop: Arc<AtomicBool>) -> Shared<Vec<String>> {
    let got: Shared<Vec<String>> = Arc::default();
    let out = got.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match ws.recv_within(Duration::from_millis(100)).await {
                Some(Received::Text(t)) => out.lock().unwrap().push(t),
                Some(other) => panic!("unexpected {other:?}"),
                None => {}
            }
        }
    });
    got
}

fn numbers(got: &Shared<Vec<String>>) -> BTreeSet<u32> {
    got.lock()
        .unwrap()
        .iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}

fn contains(got: &Shared<Vec<String>>, prefix: &str) -> bool {
    got.lock().unwrap().iter().any(|t| t.starts_with(prefix))
}

struct Outcome {
    n: u32,
    ok: bool,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_stream_is_survived() {
    let mut redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let mut r = redis_conn(&redis).await;
    let mut on_a = a.server.connect().await;
    let mut on_b = b.server.connect().await;
    subscribe(&mut on_a, "feed").await;
    subscribe(&mut on_b, "feed").await;
    let b_id = whoami(&mut on_b).await;
    wait_numsub(&mut r, "ws:t:feed", 2).await;
    wait_numsub(&mut r, &b.provider.socket_channel(&b_id), 1).await;
    drop(r);

    let stop = Arc::new(AtomicBool::new(false));
    let got_a = collect(on_a, stop.clone());
    let got_b = collect(on_b, stop.clone());

    // A publishes a numbered message every 10 ms, recording each outcome.
    let log: Shared<Vec<Outcome>> = Arc::default();
    let publisher = {
        let (log, stop, emitter) = (log.clone(), stop.clone(), a.socket().clone());
        tokio::spawn(async move {
            for n in 0..5_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let ok = emitter.publish("feed", n.to_string()).await.is_ok();
                let took = started.elapsed();
                log.lock().unwrap().push(Outcome { n, ok, took });
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let failed = |log: &Shared<Vec<Outcome>>| -> Vec<u32> {
        let log = log.lock().unwrap();
        log.iter().filter(|o| !o.ok).map(|o| o.n).collect()
    };

    // Before: cross-instance delivery works.
    eventually("B receives A's publishes", || {
        let n = numbers(&got_b).len();
        async move { n >= 5 }
    })
    .await;
    assert!(failed(&log).is_empty());

    redis.kill();
    eventually("publishes on A fail while Redis is down", || {
        let n = failed(&log).len();
        async move { n >= 20 }
    })
    .await;
    eventually("both instances notice the outage", || {
        let down = !a.provider.stats().connected && !b.provider.stats().connected;
        async move { down }
    })
    .await;
    // Local delivery never stopped: A's own subscriber got every message,
    // including those whose publish reported the outage.
    let failed_now = failed(&log);
    eventually(
        "A's subscriber gets the messages published in the outage",
        || {
            let have = numbers(&got_a);
            let all = failed_now.iter().all(|n| have.contains(n));
            async move { all }
        },
    )
    .await;
    // B's local delivery works too, and its publish reports the outage.
    assert!(b.socket().publish("feed", "b-local").await.is_err());
    eventually("B's subscriber gets B's own publish", || {
        let yes = contains(&got_b, "b-local");
        async move { yes }
    })
    .await;
    // Errors came back quickly: never a hang past the publish timeout.
    {
        let log = log.lock().unwrap();
        let slowest = log.iter().filter(|o| !o.ok).map(|o| o.took).max().unwrap();
        assert!(
            slowest <= PUBLISH_TIMEOUT + Duration::from_millis(300),
            "a failing publish took {slowest:?}"
        );
    }

    redis.restart();
    let last_failed = *failed(&log).last().unwrap();
    eventually("A -> B resumes after the restart", || {
        let resumed = numbers(&got_b).iter().any(|n| *n > last_failed);
        async move { resumed }
    })
    .await;
    let mut k = 0;
    eventually("B -> A resumes after the restart", || {
        k += 1;
        let (b_emitter, got_a) = (b.socket().clone(), got_a.clone());
        async move {
            let _ = b_emitter.publish("feed", format!("from-b-{k}")).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            contains(&got_a, "from-b-")
        }
    })
    .await;
    eventually("a direct send from A reaches the socket on B", || {
        let a_emitter = a.socket().clone();
        async move { matches!(a_emitter.send(b_id, "direct").await, Ok(true)) }
    })
    .await;
    eventually("a broadcast from B reaches A", || {
        let (b_emitter, got_a) = (b.socket().clone(), got_a.clone());
        async move {
            let _ = b_emitter.broadcast("everyone").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            contains(&got_a, "everyone")
        }
    })
    .await;

    // Steady again: the next publishes all succeed.
    let before = log.lock().unwrap().len();
    eventually("20 more publishes", || {
        let n = log.lock().unwrap().len();
        async move { n >= before + 20 }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    publisher.await.expect("publisher task did not panic");
    let log = log.lock().unwrap();
    assert!(
        log[before..].iter().all(|o| o.ok),
        "publishes fail after recovery"
    );
    for p in [&a.provider, &b.provider] {
        let s = p.stats();
        assert!(s.connected);
        assert_eq!(s.disconnects, 1, "one outage, one transition: {s:?}");
        assert_eq!(s.reconnects, 1, "one recovery: {s:?}");
    }
}
