//! The gate, the grants owed and the announcements' effect, without Redis.

use std::sync::Arc;

use super::*;

const ME: InstanceId = [9u8; 16];

fn behind(instance: InstanceId, grants: &[(InstanceId, u32)]) -> Announcement {
    Announcement::behind(instance, grants)
}

fn caught_up(instance: InstanceId) -> Announcement {
    Announcement {
        instance,
        behind: false,
        grants: Vec::new(),
        holds: None,
    }
}

#[tokio::test(start_paused = true)]
async fn publishers_wait_while_another_instance_is_behind_until_it_catches_up_or_expires() {
    let p = Arc::new(Pressure::default());
    assert_eq!(p.wait_clear(None, Duration::from_secs(1)).await, Ok(()));
    let a = [1u8; 16];
    p.note(&ME, behind(a, &[]));
    assert_eq!(p.others_behind(), 1);
    // Caught up: the waiter goes on.
    let p2 = p.clone();
    let relief = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        p2.note(&ME, caught_up(a));
    });
    assert_eq!(p.wait_clear(None, Duration::from_secs(1)).await, Ok(()));
    relief.await.unwrap();
    // Behind, then silent: the entry expires.
    p.note(&ME, behind(a, &[]));
    let started = Instant::now();
    assert_eq!(p.wait_clear(None, Duration::from_secs(5)).await, Ok(()));
    assert!(started.elapsed() >= EXPIRY - Duration::from_millis(1));
    // Behind and repeating: the publisher gives up at its timeout.
    p.note(&ME, behind(a, &[]));
    let p3 = p.clone();
    let repeat = tokio::spawn(async move {
        for _ in 0..10 {
            tokio::time::sleep(REFRESH).await;
            p3.note(&ME, behind(a, &[]));
        }
    });
    let waited = p
        .wait_clear(None, Duration::from_millis(250))
        .await
        .unwrap_err();
    assert!(waited >= Duration::from_millis(250));
    assert_eq!(p.waits(), 3);
    repeat.abort();
}

/// Queues `n` publishes, each reporting its index when let on.
fn queue(p: &Arc<Pressure>, n: usize) -> tokio::sync::mpsc::UnboundedReceiver<usize> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..n {
        let (p, tx) = (p.clone(), tx.clone());
        tokio::spawn(async move {
            p.wait_clear(None, Duration::from_secs(60)).await.unwrap();
            tx.send(i).unwrap();
        });
    }
    rx
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn grants_let_waiting_publishes_on_one_each_in_arrival_order() {
    let p = Arc::new(Pressure::default());
    let (a, b, other) = ([1u8; 16], [2u8; 16], [3u8; 16]);
    p.note(&ME, behind(a, &[]));
    let mut done = Vec::new();
    let mut let_on = queue(&p, 5);
    settle().await;
    assert!(let_on.try_recv().is_err(), "nothing granted yet");
    // A grant for another instance lets nobody here on; two for this
    // one let the first two on, in order.
    p.note(&ME, behind(a, &[(other, 7)]));
    settle().await;
    assert!(let_on.try_recv().is_err());
    p.note(&ME, behind(a, &[(other, 1), (ME, 2)]));
    settle().await;
    while let Ok(i) = let_on.try_recv() {
        done.push(i);
    }
    assert_eq!(done, [0, 1]);
    // A second busy instance: a publish needs a grant of each.
    p.note(&ME, behind(b, &[(ME, 1)]));
    p.note(&ME, behind(a, &[(ME, 1)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(2));
    p.note(&ME, behind(b, &[(ME, 5)]));
    settle().await;
    assert!(let_on.try_recv().is_err(), "a has granted nothing more");
    // One catching up leaves the other's grants in charge; the last
    // one catching up lets the rest on.
    p.note(&ME, caught_up(a));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(3));
    assert_eq!(let_on.try_recv(), Ok(4));
    p.note(&ME, caught_up(b));
    assert_eq!(p.others_behind(), 0);
    assert_eq!(p.granted(), 2 + 1 + 1 + 5);
}

#[tokio::test(start_paused = true)]
async fn a_publish_that_gives_up_leaves_its_turn_to_the_next() {
    let p = Arc::new(Pressure::default());
    let a = [1u8; 16];
    p.note(&ME, behind(a, &[]));
    let impatient = {
        let p = p.clone();
        tokio::spawn(async move { p.wait_clear(None, Duration::from_millis(20)).await })
    };
    settle().await;
    let mut let_on = queue(&p, 1);
    settle().await;
    assert!(impatient.await.unwrap().is_err());
    p.note(&ME, behind(a, &[(ME, 1)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(0));
    // Granted while nobody waits: the next publish goes at once.
    p.note(&ME, behind(a, &[(ME, 1)]));
    assert_eq!(p.wait_clear(None, Duration::from_millis(1)).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_publish_dropped_after_its_turn_came_gives_the_permit_to_the_next() {
    let p = Arc::new(Pressure::default());
    let a = [1u8; 16];
    p.note(&ME, behind(a, &[]));
    // Queued, then let on by the one grant, then dropped before it ran
    // again (a publish whose caller went away).
    let mut dropped = Box::pin(p.wait_clear(None, Duration::from_secs(60)));
    assert!(futures_poll_once(dropped.as_mut()).is_none());
    let mut let_on = queue(&p, 1);
    settle().await;
    p.note(&ME, behind(a, &[(ME, 1)]));
    settle().await;
    assert!(let_on.try_recv().is_err(), "the turn went to the first");
    drop(dropped);
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(0), "and came back with it");
    // The permit was used once: none is left over.
    p.note(&ME, behind(a, &[]));
    assert_eq!(
        p.wait_clear(None, Duration::from_millis(1)).await,
        Err(Duration::from_millis(1))
    );
}

/// Polls `f` once with a waker that does nothing.
fn futures_poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn envelopes_taken_are_owed_as_grants_only_while_behind() {
    let p = Pressure::default();
    let (b, c) = ([2u8; 16], [3u8; 16]);
    p.took(&b);
    assert!(p.grants_due().is_empty(), "not behind: nothing owed");
    p.set_local(true);
    p.set_local(false);
    p.took(&b);
    p.took(&b);
    p.took(&c);
    let mut due = p.grants_due();
    due.sort();
    assert_eq!(due, [(b, 2), (c, 1)]);
    assert!(p.grants_due().is_empty());
    p.took(&b);
    p.caught_up();
    assert!(p.grants_due().is_empty(), "caught up: the debt is gone");
    p.took(&b);
    assert!(p.grants_due().is_empty());
    p.set_local(true);
    // Waited: an eighth of what was taken is not granted.
    for _ in 0..16 {
        p.took(&b);
    }
    p.took(&c);
    let mut due = p.grants_due();
    due.sort();
    assert_eq!(due, [(b, 14), (c, 1)]);
    // Taken without a wait since the last grant: an eighth more.
    for _ in 0..8 {
        p.took(&b);
    }
    assert_eq!(p.grants_due(), [(b, 9)]);
    // One envelope per grant moves the window as much, both ways: c has
    // one counted already, so its eighth comes with the seventh.
    let granted = |p: &Pressure, wait: bool| {
        (0..7)
            .map(|_| {
                if wait {
                    p.set_local(true);
                }
                p.took(&c);
                p.grants_due().iter().map(|(_, n)| n).sum::<u32>()
            })
            .sum::<u32>()
    };
    assert_eq!(granted(&p, true), 6, "one in eight withheld");
    assert_eq!(granted(&p, false), 7, "none of these seven is the eighth");
    p.took(&c);
    assert_eq!(p.grants_due(), [(c, 2)], "the eighth, granted twice");
    // More origins than one announcement holds: the rest wait.
    for i in 0..(MAX_GRANTS + 3) {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        p.took(&id);
    }
    assert_eq!(p.grants_due().len(), MAX_GRANTS);
    assert_eq!(p.grants_due().len(), 3);
}

/// "Behind" with the filter of `channels`.
fn holding(instance: InstanceId, channels: &[&str]) -> Announcement {
    let mut held = Held::default();
    let channels: Vec<String> = channels.iter().map(|c| c.to_string()).collect();
    held.extend(&channels);
    Announcement {
        holds: Some(held.filter()),
        ..behind(instance, &[])
    }
}

/// Queues a publish to `channel` (`None`: broadcast), reporting `i` when
/// let on.
fn publish_to(
    p: &Arc<Pressure>,
    channel: Option<&str>,
    i: usize,
    tx: &tokio::sync::mpsc::UnboundedSender<usize>,
) {
    let (p, tx) = (p.clone(), tx.clone());
    let channel = channel.map(str::to_owned);
    tokio::spawn(async move {
        p.wait_clear(channel.as_deref(), Duration::from_secs(60))
            .await
            .unwrap();
        tx.send(i).unwrap();
    });
}

#[tokio::test(start_paused = true)]
async fn only_publishes_to_channels_a_busy_instance_holds_wait_for_it() {
    let p = Arc::new(Pressure::default());
    let (a, b) = ([1u8; 16], [2u8; 16]);
    let (tx, mut let_on) = tokio::sync::mpsc::unbounded_channel();
    // Before its filter came, a busy instance holds everything.
    p.note(&ME, behind(a, &[]));
    publish_to(&p, Some("ori:t:elsewhere"), 0, &tx);
    publish_to(&p, Some("ori:t:busy"), 1, &tx);
    settle().await;
    assert!(let_on.try_recv().is_err());
    // Its filter frees what does not reach it, wherever it waits; what
    // does still waits for a grant, as does a broadcast.
    p.note(&ME, holding(a, &["ori:t:busy"]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(0));
    assert!(let_on.try_recv().is_err());
    publish_to(&p, None, 2, &tx);
    publish_to(&p, Some("ori:t:elsewhere"), 3, &tx);
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(3), "not behind the waiting ones");
    assert!(let_on.try_recv().is_err());
    p.note(&ME, behind(a, &[(ME, 2)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(1));
    assert_eq!(let_on.try_recv(), Ok(2));
    // Two busy instances: a publish waits for a grant of each that holds
    // its channel, and only of those.
    p.note(&ME, holding(b, &["ori:t:other"]));
    publish_to(&p, Some("ori:t:other"), 4, &tx);
    publish_to(&p, Some("ori:t:busy"), 5, &tx);
    settle().await;
    assert!(let_on.try_recv().is_err());
    p.note(&ME, behind(b, &[(ME, 1)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(4));
    assert!(
        let_on.try_recv().is_err(),
        "5 reaches a only: needs a's grant"
    );
    p.note(&ME, behind(a, &[(ME, 1)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(5));
    // The other way round: one waiting for a's grant does not hold back
    // one that reaches only b, but does hold back a later one for a.
    publish_to(&p, Some("ori:t:busy"), 7, &tx);
    publish_to(&p, Some("ori:t:other"), 8, &tx);
    publish_to(&p, None, 9, &tx);
    settle().await;
    assert!(let_on.try_recv().is_err());
    p.note(&ME, behind(b, &[(ME, 2)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(8));
    assert!(let_on.try_recv().is_err(), "9 reaches a too, behind 7");
    p.note(&ME, behind(a, &[(ME, 2)]));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(7));
    assert_eq!(let_on.try_recv(), Ok(9));
    assert_eq!(p.granted(), 2 + 1 + 1 + 2 + 2);
    // A filter that is not repeated stops holding: a plain "behind" keeps
    // the instance busy, and then it holds everything again.
    for _ in 0..4 {
        tokio::time::advance(REFRESH).await;
        p.note(&ME, behind(a, &[]));
        p.note(&ME, behind(b, &[]));
    }
    publish_to(&p, Some("ori:t:elsewhere"), 6, &tx);
    settle().await;
    assert!(let_on.try_recv().is_err(), "a stale filter frees nothing");
    p.note(&ME, caught_up(a));
    p.note(&ME, caught_up(b));
    settle().await;
    assert_eq!(let_on.try_recv(), Ok(6));
}

#[test]
fn this_instance_announces_the_channels_its_subscriber_holds() {
    let p = Pressure::default();
    let channels = |names: &[&str]| names.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    p.holding(&channels(&["ori:t:a", "ori:t:b", "ori:s:c"]), &[]);
    p.holding(&[], &channels(&["ori:t:b"]));
    let filter = p.holds();
    assert!(filter.may_hold(holds::hash("ori:t:a")));
    assert!(filter.may_hold(holds::hash("ori:s:c")));
    assert!(!filter.may_hold(holds::hash("ori:t:b")));
    p.unhold_all();
    assert!(!p.holds().may_hold(holds::hash("ori:t:a")));
}

#[test]
fn a_channel_newly_held_while_behind_wakes_the_announcer() {
    let p = Pressure::default();
    let woken = |p: &Pressure| {
        let notified = std::pin::pin!(p.holds_changed.notified());
        let woken = futures_poll_once(notified).is_some();
        assert_eq!(woken, p.holds_dirty.swap(false, Ordering::AcqRel));
        woken
    };
    let one = |c: &str| vec![c.to_string()];
    // Not behind: the next "behind" carries the filter anyway.
    p.holding(&one("ori:t:a"), &[]);
    assert!(!woken(&p));
    p.set_local(true);
    p.holding(&one("ori:t:b"), &[]);
    assert!(woken(&p), "a new channel while behind");
    // A channel already held, or one no longer held, changes nothing
    // the others must hear of at once.
    p.holding(&one("ori:t:a"), &one("ori:t:b"));
    assert!(!woken(&p));
}

#[test]
fn no_more_busy_instances_are_kept_than_the_bound() {
    let p = Pressure::default();
    for i in 0..(MAX_BUSY + 100) {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        p.note(&ME, holding(id, &["ori:t:x"]));
    }
    assert_eq!(p.others_behind(), MAX_BUSY);
}
