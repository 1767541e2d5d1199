//! Unit tests of the hub.

use bytes::Bytes;

use super::*;
use crate::codec;
use crate::OutboxStatus;

fn conn(hub: &Hub, limit: usize) -> Arc<Outbox> {
    let o = Arc::new(Outbox::new(SocketId::new(), limit));
    hub.register(o.clone(), 8);
    o
}

fn drain(o: &Outbox) -> Vec<Frame> {
    let mut q = std::collections::VecDeque::new();
    o.take(&mut q);
    q.into_iter().collect()
}

#[test]
fn subscribers_receive_one_shared_frame_and_others_do_not() {
    let hub = Hub::new();
    let (a, b, c) = (
        conn(&hub, 1 << 20),
        conn(&hub, 1 << 20),
        conn(&hub, 1 << 20),
    );
    let t = Topic::new("room").unwrap();
    assert!(hub.subscribe(a.id(), &t).unwrap().topic_edge);
    assert!(!hub.subscribe(b.id(), &t).unwrap().topic_edge);
    assert!(!hub.subscribe(b.id(), &t).unwrap().changed);
    assert_eq!(hub.publish_local(&t, &"hi".into()), 2);
    let (fa, fb) = (drain(&a), drain(&b));
    assert_eq!(fa, vec![codec::encode_frame(codec::OpCode::Text, b"hi")]);
    assert_eq!(fa[0].as_ptr(), fb[0].as_ptr(), "one encoding shared");
    assert!(drain(&c).is_empty());
    assert_eq!(hub.subscriber_count(&t), 2);
}

#[test]
fn a_publication_is_compressed_once_for_every_deflate_subscriber() {
    let hub = Hub::new();
    let agreed = |bits| codec::deflate::Agreed {
        server_window_bits: bits,
        client_window_bits: 15,
        client_no_context_takeover: false,
    };
    let t = Topic::new("room").unwrap();
    let mut deflated = Vec::new();
    for i in 0..50 {
        let bits = if i % 10 == 0 { 10 } else { 15 };
        let o = Arc::new(Outbox::new(SocketId::new(), 1 << 20).with_deflate(agreed(bits)));
        hub.register(o.clone(), 8);
        hub.subscribe(o.id(), &t).unwrap();
        deflated.push((bits, o));
    }
    let plain = conn(&hub, 1 << 20);
    hub.subscribe(plain.id(), &t).unwrap();
    let text = "a notification, a notification, a notification ".repeat(10);
    assert_eq!(hub.publish_local(&t, &text.as_str().into()), 51);
    let frames: Vec<(u8, Frame)> = deflated
        .iter()
        .map(|(bits, o)| (*bits, drain(o).remove(0)))
        .collect();
    // One compression per window size, shared by pointer.
    for bits in [10, 15] {
        let mut same = frames
            .iter()
            .filter(|(b, _)| *b == bits)
            .map(|(_, f)| f.as_ptr());
        let first = same.next().unwrap();
        assert!(same.all(|p| p == first), "window {bits}: one shared frame");
    }
    assert!(frames
        .iter()
        .all(|(_, f)| f[0] & 0x40 != 0 && f.len() < text.len()));
    assert_eq!(
        drain(&plain),
        vec![codec::encode_frame(codec::OpCode::Text, text.as_bytes())]
    );
}

#[test]
fn unsubscribe_and_unregister_report_the_last_subscriber() {
    let hub = Hub::new();
    let (a, b) = (conn(&hub, 1024), conn(&hub, 1024));
    let t = Topic::new("room").unwrap();
    hub.subscribe(a.id(), &t).unwrap();
    hub.subscribe(b.id(), &t).unwrap();
    assert!(!hub.unsubscribe(a.id(), &t).unwrap().topic_edge);
    assert!(!hub.unsubscribe(a.id(), &t).unwrap().changed);
    assert_eq!(hub.unregister(b.id()), vec![t.clone()]);
    assert_eq!(hub.subscriber_count(&t), 0);
    assert!(hub.active_topics().is_empty());
    assert_eq!(hub.publish_local(&t, &"x".into()), 0);
}

#[test]
fn virtual_topics_cover_every_connection() {
    let hub = Hub::new();
    let (a, b) = (conn(&hub, 1024), conn(&hub, 1024));
    assert_eq!(hub.subscriber_count(&Topic::broadcast()), 2);
    assert_eq!(hub.publish_local(&Topic::broadcast(), &"all".into()), 2);
    assert_eq!(
        hub.publish_local(&Topic::for_socket(a.id()), &"one".into()),
        1
    );
    assert_eq!(drain(&a).len(), 2);
    assert_eq!(drain(&b).len(), 1);
    assert!(!hub.send_local(&SocketId::new(), &"x".into()));
    let topics = hub.topics_of(a.id()).unwrap();
    assert_eq!(topics[0], Topic::broadcast());
    assert_eq!(topics[1].socket_target(), Some(*a.id()));
    assert!(matches!(
        hub.subscribe(a.id(), &Topic::broadcast()),
        Err(SubscribeError::InvalidTopic { .. })
    ));
}

#[test]
fn topic_limit_per_connection() {
    let hub = Hub::new();
    let o = Arc::new(Outbox::new(SocketId::new(), 1024));
    hub.register(o.clone(), 2);
    for name in ["a", "b"] {
        hub.subscribe(o.id(), &Topic::new(name).unwrap()).unwrap();
    }
    assert_eq!(
        hub.subscribe(o.id(), &Topic::new("c").unwrap()),
        Err(SubscribeError::TooManyTopics { limit: 2 })
    );
}

#[test]
fn overflow_drops_the_queue_and_counts_a_slow_consumer() {
    let hub = Hub::new();
    let slow = conn(&hub, 100);
    let fast = conn(&hub, 1 << 20);
    let msg: Message = "x".repeat(40).into();
    for _ in 0..3 {
        hub.broadcast_local(&msg);
        drain(&fast);
    }
    assert_eq!(slow.status(), OutboxStatus::Overflowed);
    assert!(drain(&slow).is_empty());
    assert_eq!(slow.push(Bytes::from_static(b"late")), Push::Closed);
    assert_eq!(hub.metrics().slow_consumer_closes(), 1);
    assert_eq!(fast.status(), OutboxStatus::Open);
}

#[test]
fn a_push_that_overflows_counts_one_slow_consumer() {
    let hub = Hub::new();
    let o = conn(&hub, 4);
    assert_eq!(hub.push(&o, Bytes::from_static(b"1234")), Push::Queued);
    assert_eq!(hub.push(&o, Bytes::from_static(b"5")), Push::Overflow);
    assert_eq!(hub.push(&o, Bytes::from_static(b"6")), Push::Closed);
    assert_eq!(hub.metrics().slow_consumer_closes(), 1);
    assert_eq!(hub.metrics().connections_total(), 1);
}

/// A writer's waker that reads its outbox when woken (which takes the
/// outbox's lane lock: woken under it, it would deadlock).
struct ReadsItsOutbox {
    outbox: std::sync::Mutex<Option<Arc<Outbox>>>,
    seen: std::sync::Mutex<Vec<usize>>,
}

impl std::task::Wake for ReadsItsOutbox {
    fn wake(self: Arc<Self>) {
        let outbox = self.outbox.lock().unwrap().clone();
        if let Some(o) = outbox {
            self.seen.lock().unwrap().push(o.queued_bytes());
        }
    }
}

#[test]
fn a_fan_out_over_interleaved_lanes_queues_once_each_and_wakes_outside_the_locks() {
    let hub = Hub::new();
    let lanes = [Arc::new(Lane::new()), Arc::new(Lane::new())];
    let t = Topic::new("room").unwrap();
    let mut subs = Vec::new();
    for i in 0..6 {
        let o = Arc::new(hub.new_outbox_in(SocketId::new(), 1 << 20, lanes[i % 2].clone()));
        hub.register(o.clone(), 8);
        hub.subscribe(o.id(), &t).unwrap();
        let waker = Arc::new(ReadsItsOutbox {
            outbox: std::sync::Mutex::new(Some(o.clone())),
            seen: Default::default(),
        });
        o.set_waker(Some(std::task::Waker::from(waker.clone())));
        subs.push((o, waker));
    }
    let keys = |hub: &Hub| -> Vec<usize> {
        hub.read().topics[&t]
            .raw
            .iter()
            .map(|o| subscribers::lane_key(o))
            .collect()
    };
    let mut sorted = keys(&hub);
    sorted.sort_unstable();
    assert_eq!(keys(&hub), sorted, "subscribers kept by lane");
    let (tx, rx) = std::sync::mpsc::channel();
    let publisher = hub.clone();
    let topic = t.clone();
    std::thread::spawn(move || {
        let n = publisher.publish_local(&topic, &"hi".into());
        tx.send(n).unwrap();
    });
    let queued = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the fan-out finished: no waker ran under a lane's lock");
    assert_eq!(queued, 6);
    let frame = codec::encode_frame(codec::OpCode::Text, b"hi");
    for (o, waker) in &subs {
        assert_eq!(*waker.seen.lock().unwrap(), vec![frame.len()]);
        assert_eq!(drain(o), vec![frame.clone()]);
        // The waker holds its outbox: let go of it.
        *waker.outbox.lock().unwrap() = None;
    }
    assert_eq!(hub.budget().used(), 6 * frame.len());
    hub.unsubscribe(subs[2].0.id(), &t).unwrap();
    hub.subscribe(subs[2].0.id(), &t).unwrap();
    let mut sorted = keys(&hub);
    sorted.sort_unstable();
    assert_eq!(keys(&hub), sorted, "still by lane after a leave and a join");
}
