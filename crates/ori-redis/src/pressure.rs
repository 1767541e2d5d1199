//! Backpressure across instances: an instance that cannot deliver as fast
//! as the others publish says so, and their publishers go at its pace.
//!
//! Redis pub/sub tells a publisher nothing about its subscribers' pace, so
//! without this an instance's publishers would run ahead of a slower
//! instance until Redis drops that instance's subscription (past its
//! output-buffer limit) and its readers lose what was published meanwhile.
//!
//! - An instance whose subscriber has to wait for room in its outbound
//!   budget announces **behind** on the pressure channel (`<prefix>:p`) at
//!   once, and again every [`REFRESH`] while it stays behind; once its
//!   subscriber has not had to wait for [`SETTLE`] (however many envelopes
//!   it takes meanwhile), it announces **caught up**.
//! - While behind it **grants** each other instance one publish for every
//!   envelope of that instance's it has taken from Redis, less an eighth
//!   of a batch of eight or more while its subscriber waits for room (so
//!   that what was in flight when it fell behind drains), more while it
//!   does not (so that the pace can grow again; see `Pressure::grants_due`). Batched: an announcement
//!   carries the counts taken since the previous one was sent.
//! - Every instance keeps the set of others that are behind, each entry
//!   expiring [`EXPIRY`] after its last announcement (so an instance that
//!   dies cannot hold the others back), with the publishes each granted it
//!   and it has not used. While the set is not empty, a publish waits, in
//!   arrival order, for a grant of every instance in it (or until none is
//!   behind), up to the publish timeout, then fails with
//!   `PublishError::Overloaded`. So a busy instance's backlog in Redis
//!   stays what was in flight when it fell behind, and publishers are let
//!   on one at a time as it takes their envelopes, instead of all stopping
//!   and all resuming at once.
//!
//! An announcement: version (1), flags (bit 0: behind; bit 1: grants
//! follow), the instance's 16-byte id; with grants, their count (1 byte,
//! 1..=[`MAX_GRANTS`]) and per grant the instance's id and the number of
//! its envelopes taken (4 bytes, big endian, at least 1). A grant is
//! always sent with "behind". An instance that does not grant (an older
//! version) holds the others back until it catches up, as before grants;
//! one that does not read grants (older too) drops them as malformed and
//! still waits, told by the plain "behind" repeated every [`REFRESH`]
//! whatever grants go out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use crate::envelope::InstanceId;

mod announce;
mod wire;

pub(crate) use announce::announce;
pub(crate) use wire::{decode, Announcement};

/// How often an instance that stays behind repeats it.
pub(crate) const REFRESH: Duration = Duration::from_millis(100);
/// How long an instance's subscriber must not have waited before it
/// announces that it caught up. Grants keep the others' publishers going
/// meanwhile, so this can be long enough not to flap between "behind" and
/// "caught up" at a budget's edge (5 ms, before grants, flapped; with
/// grants it cost 10-20 % in p99 against 50 ms).
pub(crate) const SETTLE: Duration = Duration::from_millis(50);
/// How long an announcement holds without a repeat.
pub(crate) const EXPIRY: Duration = Duration::from_millis(300);
/// Grants in one announcement at most (more publishing instances: more
/// announcements).
pub(crate) const MAX_GRANTS: usize = 64;
/// Unused publishes an instance may hold from one busy instance: what was
/// in flight when it fell behind comes back as grants, no more is kept.
const MAX_PERMITS: u32 = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Another instance that is behind.
struct Busy {
    /// When its last announcement stops holding.
    until: Instant,
    /// Publishes it granted this instance and that were not used yet.
    permits: u32,
}

/// Other instances that are behind, and the publishes waiting for them.
#[derive(Default)]
struct Others {
    busy: HashMap<InstanceId, Busy>,
    /// Publishes waiting, in arrival order (a dropped receiver: given up).
    queue: VecDeque<oneshot::Sender<()>>,
}

impl Others {
    /// Drops expired entries; the earliest expiry left, if any.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.busy.retain(|_, b| b.until > now);
        self.busy.values().map(|b| b.until).min()
    }

    /// Whether every busy instance has a publish to spare.
    fn may_go(&self) -> bool {
        self.busy.values().all(|b| b.permits > 0)
    }

    fn take_permits(&mut self) {
        for b in self.busy.values_mut() {
            b.permits -= 1;
        }
    }

    /// Lets waiting publishes go as far as the state allows: all of them
    /// when no instance is behind, else one per grant of every busy one.
    fn dispatch(&mut self) {
        while let Some(front) = self.queue.front() {
            if front.is_closed() {
                self.queue.pop_front();
                continue;
            }
            let free = self.busy.is_empty();
            if !free && !self.may_go() {
                return;
            }
            let Some(next) = self.queue.pop_front() else {
                return;
            };
            if next.send(()).is_ok() && !free {
                self.take_permits();
            }
        }
    }
}

/// What this instance owes the others in grants.
#[derive(Default)]
struct Owed {
    /// Set when this instance falls behind, cleared when it announces it
    /// caught up: while set, envelopes taken are counted.
    granting: bool,
    /// Envelopes taken per origin since the last grant.
    taken: HashMap<InstanceId, u32>,
}

/// This instance's view: whether it is behind itself, what it owes the
/// others in grants, and which others are behind.
pub(crate) struct Pressure {
    /// This instance's subscriber is waiting for room (set by its reader).
    local: watch::Sender<bool>,
    /// `owed.granting`, for the reader's check without the lock.
    granting: AtomicBool,
    /// The subscriber waited for room since the last grant.
    waited: AtomicBool,
    owed: Mutex<Owed>,
    /// Wakes the announcer: there is something to grant.
    to_grant: Notify,
    others: Mutex<Others>,
    /// `others.busy.len()`, for the publish path's check without the lock.
    count: AtomicUsize,
    waits: AtomicU64,
    granted: AtomicU64,
}

impl Default for Pressure {
    fn default() -> Self {
        Self {
            local: watch::Sender::new(false),
            granting: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            owed: Mutex::new(Owed::default()),
            to_grant: Notify::new(),
            others: Mutex::new(Others::default()),
            count: AtomicUsize::new(0),
            waits: AtomicU64::new(0),
            granted: AtomicU64::new(0),
        }
    }
}

impl Pressure {
    /// This instance's subscriber starts (true) or stops (false) waiting
    /// for room.
    pub(crate) fn set_local(&self, behind: bool) {
        self.local
            .send_if_modified(|b| std::mem::replace(b, behind) != behind);
        if behind {
            self.waited.store(true, Ordering::Relaxed);
        }
        if behind && !self.granting.load(Ordering::Acquire) {
            lock(&self.owed).granting = true;
            self.granting.store(true, Ordering::Release);
        }
    }

    /// An envelope of `origin`'s was taken from Redis (handed to the hub):
    /// counted for a grant while this instance is behind.
    pub(crate) fn took(&self, origin: &InstanceId) {
        if !self.granting.load(Ordering::Acquire) {
            return;
        }
        let mut owed = lock(&self.owed);
        if !owed.granting {
            return;
        }
        let n = owed.taken.entry(*origin).or_insert(0);
        *n = n.saturating_add(1);
        drop(owed);
        self.to_grant.notify_one();
    }

    /// The grants owed, at most [`MAX_GRANTS`] (the rest stay for the next).
    ///
    /// One grant per envelope taken would keep for good what was in flight
    /// when this instance fell behind (the others' publishers run free
    /// until they hear it), and that backlog is delay for every envelope
    /// after it. So the grant follows the subscriber: if it waited for room
    /// since the last grant, a batch of eight or more is granted an eighth
    /// short (a smaller one whole, so that the flow never stops on this
    /// account); if it did not, an eighth and one more than was taken, so
    /// that the others are not held below a pace this instance could take.
    fn grants_due(&self) -> Vec<(InstanceId, u32)> {
        let waited = self.waited.swap(false, Ordering::Relaxed);
        let grant = |n: u32| {
            if waited {
                n - n / 8
            } else {
                n.saturating_add(n / 8 + 1)
            }
        };
        let taken = &mut lock(&self.owed).taken;
        let ids: Vec<InstanceId> = taken.keys().take(MAX_GRANTS).copied().collect();
        let due = ids
            .into_iter()
            .filter_map(|id| taken.remove(&id).map(|n| (id, grant(n))))
            .filter(|(_, n)| *n > 0)
            .collect();
        if !taken.is_empty() {
            // More origins than one announcement holds: another pass.
            self.to_grant.notify_one();
        }
        due
    }

    /// This instance announced that it caught up: nothing more is owed
    /// (unless its subscriber is waiting again by now).
    fn caught_up(&self) {
        let mut owed = lock(&self.owed);
        if *self.local.borrow() {
            return;
        }
        owed.granting = false;
        owed.taken.clear();
        self.granting.store(false, Ordering::Release);
    }

    /// An announcement from the pressure channel (this instance's own are
    /// skipped by the caller); `me` is this instance's id, to find its
    /// grants.
    pub(crate) fn note(&self, me: &InstanceId, a: &Announcement) {
        let mut others = lock(&self.others);
        if a.behind {
            let busy = others.busy.entry(a.instance).or_insert(Busy {
                until: Instant::now(),
                permits: 0,
            });
            busy.until = Instant::now() + EXPIRY;
            if let Some((_, n)) = a.grants.iter().find(|(id, _)| id == me) {
                let kept = busy.permits.saturating_add(*n).min(MAX_PERMITS);
                self.granted
                    .fetch_add(u64::from(kept - busy.permits), Ordering::Relaxed);
                busy.permits = kept;
            }
        } else {
            others.busy.remove(&a.instance);
        }
        self.count.store(others.busy.len(), Ordering::Release);
        others.dispatch();
    }

    /// Drops expired entries and keeps `count` in step; the earliest
    /// expiry left, if any.
    fn expire(&self, others: &mut Others, now: Instant) -> Option<Instant> {
        let next = others.expire(now);
        self.count.store(others.busy.len(), Ordering::Release);
        next
    }

    /// Other instances currently behind.
    pub(crate) fn others_behind(&self) -> usize {
        if self.count.load(Ordering::Acquire) > 0 {
            let mut others = lock(&self.others);
            self.expire(&mut others, Instant::now());
            others.dispatch();
        }
        self.count.load(Ordering::Acquire)
    }

    /// Publishes that waited for another instance.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Publishes other instances granted this one while behind.
    pub(crate) fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Waits for its turn while other instances are behind (at once if none
    /// is); gives up after `timeout`, returning how long it waited.
    pub(crate) async fn wait_clear(&self, timeout: Duration) -> Result<(), Duration> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let (tx, mut rx) = oneshot::channel();
        let mut next_expiry = {
            let mut others = lock(&self.others);
            let next = self.expire(&mut others, started);
            let Some(next) = next else {
                others.dispatch();
                return Ok(());
            };
            // In line behind those already waiting (or let on at once if
            // nobody ahead is and there are permits).
            others.queue.push_back(tx);
            others.dispatch();
            next
        };
        if rx.try_recv().is_ok() {
            return Ok(());
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::select! {
                biased;
                // Its turn (an `Err` would mean the queue was dropped with
                // it, which only the end of the provider does).
                _ = &mut rx => return Ok(()),
                () = tokio::time::sleep_until(next_expiry.min(deadline)) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Closed first, so that no turn is given to it from here on;
                // one given at the last moment is taken.
                rx.close();
                return match rx.try_recv() {
                    Ok(()) => Ok(()),
                    Err(_) => Err(now - started),
                };
            }
            // An entry expired: the queue moves on without it.
            let mut others = lock(&self.others);
            next_expiry = self.expire(&mut others, now).unwrap_or(deadline);
            others.dispatch();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const ME: InstanceId = [9u8; 16];

    fn behind(instance: InstanceId, grants: &[(InstanceId, u32)]) -> Announcement {
        Announcement {
            instance,
            behind: true,
            grants: grants.to_vec(),
        }
    }

    fn caught_up(instance: InstanceId) -> Announcement {
        Announcement {
            instance,
            behind: false,
            grants: Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn publishers_wait_while_another_instance_is_behind_until_it_catches_up_or_expires() {
        let p = Arc::new(Pressure::default());
        assert_eq!(p.wait_clear(Duration::from_secs(1)).await, Ok(()));
        let a = [1u8; 16];
        p.note(&ME, &behind(a, &[]));
        assert_eq!(p.others_behind(), 1);
        // Caught up: the waiter goes on.
        let p2 = p.clone();
        let relief = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p2.note(&ME, &caught_up(a));
        });
        assert_eq!(p.wait_clear(Duration::from_secs(1)).await, Ok(()));
        relief.await.unwrap();
        // Behind, then silent: the entry expires.
        p.note(&ME, &behind(a, &[]));
        let started = Instant::now();
        assert_eq!(p.wait_clear(Duration::from_secs(5)).await, Ok(()));
        assert!(started.elapsed() >= EXPIRY - Duration::from_millis(1));
        // Behind and repeating: the publisher gives up at its timeout.
        p.note(&ME, &behind(a, &[]));
        let p3 = p.clone();
        let repeat = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(REFRESH).await;
                p3.note(&ME, &behind(a, &[]));
            }
        });
        let waited = p.wait_clear(Duration::from_millis(250)).await.unwrap_err();
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
                p.wait_clear(Duration::from_secs(60)).await.unwrap();
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
        p.note(&ME, &behind(a, &[]));
        let mut done = Vec::new();
        let mut let_on = queue(&p, 5);
        settle().await;
        assert!(let_on.try_recv().is_err(), "nothing granted yet");
        // A grant for another instance lets nobody here on; two for this
        // one let the first two on, in order.
        p.note(&ME, &behind(a, &[(other, 7)]));
        settle().await;
        assert!(let_on.try_recv().is_err());
        p.note(&ME, &behind(a, &[(other, 1), (ME, 2)]));
        settle().await;
        while let Ok(i) = let_on.try_recv() {
            done.push(i);
        }
        assert_eq!(done, [0, 1]);
        // A second busy instance: a publish needs a grant of each.
        p.note(&ME, &behind(b, &[(ME, 1)]));
        p.note(&ME, &behind(a, &[(ME, 1)]));
        settle().await;
        assert_eq!(let_on.try_recv(), Ok(2));
        p.note(&ME, &behind(b, &[(ME, 5)]));
        settle().await;
        assert!(let_on.try_recv().is_err(), "a has granted nothing more");
        // One catching up leaves the other's grants in charge; the last
        // one catching up lets the rest on.
        p.note(&ME, &caught_up(a));
        settle().await;
        assert_eq!(let_on.try_recv(), Ok(3));
        assert_eq!(let_on.try_recv(), Ok(4));
        p.note(&ME, &caught_up(b));
        assert_eq!(p.others_behind(), 0);
        assert_eq!(p.granted(), 2 + 1 + 1 + 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_that_gives_up_leaves_its_turn_to_the_next() {
        let p = Arc::new(Pressure::default());
        let a = [1u8; 16];
        p.note(&ME, &behind(a, &[]));
        let impatient = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_clear(Duration::from_millis(20)).await })
        };
        settle().await;
        let mut let_on = queue(&p, 1);
        settle().await;
        assert!(impatient.await.unwrap().is_err());
        p.note(&ME, &behind(a, &[(ME, 1)]));
        settle().await;
        assert_eq!(let_on.try_recv(), Ok(0));
        // Granted while nobody waits: the next publish goes at once.
        p.note(&ME, &behind(a, &[(ME, 1)]));
        assert_eq!(p.wait_clear(Duration::from_millis(1)).await, Ok(()));
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
        // A large batch is granted an eighth short, a small one whole.
        for _ in 0..16 {
            p.took(&b);
        }
        p.took(&c);
        let mut due = p.grants_due();
        due.sort();
        assert_eq!(due, [(b, 14), (c, 1)]);
        // Taken without a wait since the last grant: more is granted.
        for _ in 0..8 {
            p.took(&b);
        }
        assert_eq!(p.grants_due(), [(b, 10)]);
        // More origins than one announcement holds: the rest wait.
        for i in 0..(MAX_GRANTS + 3) {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            p.took(&id);
        }
        assert_eq!(p.grants_due().len(), MAX_GRANTS);
        assert_eq!(p.grants_due().len(), 3);
    }
}
