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
//!   envelope of that instance's it has taken from Redis, an eighth less
//!   while its subscriber waits for room (so that what was in flight when
//!   it fell behind drains), an eighth more while it does not (so that the
//!   pace can grow again), eighths counted across batches (see
//!   `Pressure::grants_due`). Batched: an announcement carries the counts
//!   taken since the previous one was sent.
//! - Every instance keeps the set of others that are behind, each entry
//!   expiring [`EXPIRY`] after its last announcement (so an instance that
//!   dies cannot hold the others back), with the publishes each granted it
//!   and it has not used, and the filter of the channels it holds (see
//!   `holds`; sent after each plain "behind", holding as long, and
//!   [`HOLDS_GAP`] at most after a channel is newly held). A publish to a
//!   channel no busy instance holds goes on at once. Any other waits
//!   for a grant of every busy instance that holds its channel (all of
//!   them for a broadcast, or one whose filter did not come or is older
//!   than [`EXPIRY`]), in arrival order among those reaching the same
//!   instance, or until none is behind, up to the publish timeout, then
//!   fails with
//!   `PublishError::Overloaded`; one dropped at its turn, before it went
//!   on (its caller gave up), gives the grants back for the next (one
//!   whose PUBLISH then fails has used them). So a busy instance's backlog in Redis
//!   stays what was in flight when it fell behind, and publishers are let
//!   on one at a time as it takes their envelopes, instead of all stopping
//!   and all resuming at once.
//!
//! An announcement: version (1), flags (bit 0: behind; bit 1: grants
//! follow; bit 2: the filter follows), the instance's 16-byte id; with
//! grants, their count (1 byte, 1..=[`MAX_GRANTS`]) and per grant the
//! instance's id and the number of its envelopes taken (4 bytes, big
//! endian, at least 1); with the filter, its size in bits as a base-2
//! logarithm (1 byte, 9..=16) and the bits (layout in `holds`). Grants and
//! the filter are always sent with "behind", each in an announcement of
//! its own. An instance that does not grant (an older version) holds the
//! others back until it catches up, as before grants; one that sends no
//! filter holds back every publish; one that does not read grants or
//! filters (older too) drops them as malformed and still waits, told by
//! the plain "behind" repeated every [`REFRESH`] whatever else goes out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use crate::envelope::InstanceId;

mod announce;
mod holds;
mod wire;

pub(crate) use announce::announce;
use holds::{Filter, Held};
pub(crate) use wire::{decode, Announcement};

/// How often an instance that stays behind repeats it.
pub(crate) const REFRESH: Duration = Duration::from_millis(100);
/// How long an instance's subscriber must not have waited before it
/// announces that it caught up. Grants keep the others' publishers going
/// meanwhile, so this can be long enough not to flap between "behind" and
/// "caught up" at a budget's edge (5 ms, before grants, flapped; with
/// grants it cost 10-20 % in p99 against 50 ms).
pub(crate) const SETTLE: Duration = Duration::from_millis(50);
/// The shortest time between two filters of the channels held sent for
/// a change (channels newly held while behind), however many change.
pub(crate) const HOLDS_GAP: Duration = Duration::from_millis(10);
/// How long an announcement holds without a repeat.
pub(crate) const EXPIRY: Duration = Duration::from_millis(300);
/// Grants in one announcement at most (more publishing instances: more
/// announcements).
pub(crate) const MAX_GRANTS: usize = 64;
/// Other instances kept as behind at most.
const MAX_BUSY: usize = 1024;
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
    /// The channels it holds, and until when that holds (without a
    /// filter, or past it, every publish counts as reaching it).
    holds: Option<(Filter, Instant)>,
}

impl Busy {
    /// Whether a publish to the channel of `hash` (`None`: the broadcast
    /// channel, which every instance holds) reaches this instance.
    fn reached_by(&self, hash: Option<u64>, now: Instant) -> bool {
        match (hash, &self.holds) {
            (Some(h), Some((filter, until))) if *until > now => filter.may_hold(h),
            _ => true,
        }
    }
}

/// The busy instances a publish let on was charged a permit of.
type Charged = Vec<InstanceId>;

/// A publish waiting for its turn.
struct Waiter {
    /// Told when it may go, and which permits that took (a dropped
    /// receiver: given up; taken: told).
    go: Option<oneshot::Sender<Charged>>,
    /// Its channel's hash (`None`: broadcast).
    channel: Option<u64>,
}

/// Other instances that are behind, and the publishes waiting for them.
#[derive(Default)]
struct Others {
    busy: HashMap<InstanceId, Busy>,
    /// Publishes waiting, in arrival order.
    queue: VecDeque<Waiter>,
}

impl Others {
    /// Drops expired entries; the earliest expiry left, if any.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.busy.retain(|_, b| b.until > now);
        self.busy.values().map(|b| b.until).min()
    }

    /// Whether a publish to the channel of `hash` reaches a busy instance.
    fn held_back(&self, hash: Option<u64>, now: Instant) -> bool {
        self.busy.values().any(|b| b.reached_by(hash, now))
    }

    /// Lets waiting publishes go as far as the state allows: those that
    /// reach no busy instance at once, wherever they wait (a filter that
    /// came after them can free them); the others each for a grant of
    /// every busy instance it reaches, in arrival order among those that
    /// reach the same instance (one waiting for an instance's grant does
    /// not hold back one that reaches only others).
    fn dispatch(&mut self) {
        let now = Instant::now();
        let Others { busy, queue } = self;
        // Instances some earlier waiter still waits for a grant of.
        let mut blocked: Vec<InstanceId> = Vec::new();
        queue.retain_mut(|w| {
            let Some(go) = w.go.take_if(|go| !go.is_closed()) else {
                return false;
            };
            let reached = || busy.iter().filter(|(_, b)| b.reached_by(w.channel, now));
            if reached().next().is_none() {
                let _ = go.send(Charged::new());
                return false;
            }
            if reached().any(|(id, b)| b.permits == 0 || blocked.contains(id)) {
                blocked.extend(reached().map(|(id, _)| *id));
                w.go = Some(go);
                return true;
            }
            let charged: Charged = reached().map(|(id, _)| *id).collect();
            if go.send(charged).is_ok() {
                for b in busy.values_mut().filter(|b| b.reached_by(w.channel, now)) {
                    b.permits -= 1;
                }
            }
            false
        });
    }

    /// Returns the permits of a turn that was given but not taken.
    fn give_back(&mut self, charged: &[InstanceId]) {
        for id in charged {
            if let Some(b) = self.busy.get_mut(id) {
                b.permits = b.permits.saturating_add(1).min(MAX_PERMITS);
            }
        }
        self.dispatch();
    }
}

/// A publish's place in the queue. Dropped with its turn given but not
/// taken (the publish's future was dropped first), it gives the permits
/// back, so that the next publish goes in its stead.
struct Place<'a> {
    pressure: &'a Pressure,
    turn: oneshot::Receiver<Charged>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        // Closed first, so that no turn is given to it from here on; one
        // given before is in the channel.
        self.turn.close();
        if let Ok(charged) = self.turn.try_recv() {
            if !charged.is_empty() {
                lock(&self.pressure.others).give_back(&charged);
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
    /// Per origin, envelopes taken since its window last moved by one,
    /// modulo 8 (see `Pressure::grants_due`); cleared when this instance
    /// catches up.
    eighths: HashMap<InstanceId, u8>,
}

/// Origins whose partial eighths are kept, at most (past it they start
/// again: one permit more or less, once).
const MAX_EIGHTHS: usize = 1024;

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
    /// The channels this instance holds, for its own announcements.
    held: Mutex<Held>,
    /// A channel is newly held while behind, and the wake-up for it.
    holds_dirty: AtomicBool,
    holds_changed: Notify,
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
            held: Mutex::new(Held::default()),
            holds_dirty: AtomicBool::new(false),
            holds_changed: Notify::new(),
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
    /// since the last grant, one envelope in eight taken is not granted
    /// (the others' window shrinks by an eighth per window taken); if it
    /// did not, one in eight is granted twice (it grows by as much), so
    /// that the others are not held below a pace this instance could take.
    /// The eighths are counted across grants, so small batches (an instance
    /// that takes envelopes as fast as they come grants a few at a time)
    /// move the window as much as large ones, both ways: rounding them
    /// away, as before, let a fast instance's window only grow.
    fn grants_due(&self) -> Vec<(InstanceId, u32)> {
        let waited = self.waited.swap(false, Ordering::Relaxed);
        let mut owed = lock(&self.owed);
        let Owed { taken, eighths, .. } = &mut *owed;
        if eighths.len() > MAX_EIGHTHS {
            eighths.clear();
        }
        let ids: Vec<InstanceId> = taken.keys().take(MAX_GRANTS).copied().collect();
        let due = ids
            .into_iter()
            .filter_map(|id| {
                let n = taken.remove(&id)?;
                let part = eighths.entry(id).or_insert(0);
                let counted = u32::from(*part) + n;
                *part = (counted % 8) as u8;
                let step = counted / 8;
                let grant = if waited {
                    n - step
                } else {
                    n.saturating_add(step)
                };
                Some((id, grant))
            })
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
        owed.eighths.clear();
        self.granting.store(false, Ordering::Release);
    }

    /// An announcement from the pressure channel (this instance's own are
    /// skipped by the caller); `me` is this instance's id, to find its
    /// grants.
    pub(crate) fn note(&self, me: &InstanceId, a: Announcement) {
        let mut others = lock(&self.others);
        if a.behind {
            let now = Instant::now();
            if !others.busy.contains_key(&a.instance) {
                // Expired entries go before a new one comes, and no more
                // than MAX_BUSY are kept (anyone can publish on the
                // channel; ids past the bound are not waited for).
                self.expire(&mut others, now);
                if others.busy.len() >= MAX_BUSY {
                    return;
                }
            }
            let busy = others.busy.entry(a.instance).or_insert(Busy {
                until: now,
                permits: 0,
                holds: None,
            });
            busy.until = now + EXPIRY;
            if let Some(filter) = a.holds {
                busy.holds = Some((filter, now + EXPIRY));
            }
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

    /// This instance's subscriber now holds the channels `added` and no
    /// longer those `removed`. While it is behind, a channel newly held
    /// wakes the announcer, so that the others hold back its publishes
    /// from the next filter on instead of the next refresh (a channel no
    /// longer held waits for the refresh: meanwhile it only holds back
    /// more than it needs to).
    pub(crate) fn holding(&self, added: &[String], removed: &[String]) {
        let mut held = lock(&self.held);
        let mut grew = false;
        for channel in added {
            grew |= held.add(channel);
        }
        for channel in removed {
            held.remove(channel);
        }
        drop(held);
        if grew && self.granting.load(Ordering::Acquire) {
            self.holds_dirty.store(true, Ordering::Release);
            self.holds_changed.notify_one();
        }
    }

    /// This instance's subscriber holds nothing (its connection is gone).
    pub(crate) fn unhold_all(&self) {
        lock(&self.held).clear();
    }

    /// The filter of the channels this instance holds now.
    fn holds(&self) -> Filter {
        lock(&self.held).filter()
    }

    /// Waits for its turn while other instances that hold `channel` are
    /// behind (`None`: the broadcast channel, which they all hold); at once
    /// if none is. Gives up after `timeout`, returning how long it waited.
    pub(crate) async fn wait_clear(
        &self,
        channel: Option<&str>,
        timeout: Duration,
    ) -> Result<(), Duration> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let hash = channel.map(holds::hash);
        let started = Instant::now();
        let deadline = started + timeout;
        let (tx, turn) = oneshot::channel();
        let mut next_expiry = {
            let mut others = lock(&self.others);
            let next = self.expire(&mut others, started);
            let Some(next) = next else {
                others.dispatch();
                return Ok(());
            };
            if !others.held_back(hash, started) {
                return Ok(());
            }
            // In line behind those already waiting (or let on at once if
            // nobody ahead is and there are permits).
            others.queue.push_back(Waiter {
                go: Some(tx),
                channel: hash,
            });
            others.dispatch();
            next
        };
        let mut place = Place {
            pressure: self,
            turn,
        };
        if place.turn.try_recv().is_ok() {
            return Ok(());
        }
        self.waits.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::select! {
                biased;
                // Its turn (an `Err` would mean the queue was dropped with
                // it, which only the end of the provider does).
                _ = &mut place.turn => return Ok(()),
                () = tokio::time::sleep_until(next_expiry.min(deadline)) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Closed first, so that no turn is given to it from here on;
                // one given at the last moment is taken.
                place.turn.close();
                return match place.turn.try_recv() {
                    Ok(_) => Ok(()),
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
mod tests;
