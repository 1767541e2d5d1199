//! Backpressure across instances: an instance that cannot deliver as fast
//! as the others publish says so, and their publishers wait for it.
//!
//! Redis pub/sub tells a publisher nothing about its subscribers' pace, so
//! without this an instance's publishers would run ahead of a slower
//! instance until Redis drops that instance's subscription (past its
//! output-buffer limit) and its readers lose what was published meanwhile.
//!
//! - An instance whose subscriber has to wait for room in its outbound
//!   budget announces **behind** on the pressure channel (`<prefix>:p`) at
//!   once, and again every [`REFRESH`] while it stays behind; once it has
//!   not had to wait for [`SETTLE`], it announces **caught up**.
//! - Every instance keeps the set of others that are behind, each entry
//!   expiring [`EXPIRY`] after its last announcement (so an instance that
//!   dies cannot hold the others back). While the set is not empty,
//!   publishes wait (up to the publish timeout, then fail with
//!   `PublishError::Overloaded`).
//!
//! The announcement, 18 bytes: version (1), flags (bit 0: behind), the
//! instance's 16-byte id.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::envelope::InstanceId;
use crate::Shared;

/// How often an instance that stays behind repeats it.
pub(crate) const REFRESH: Duration = Duration::from_millis(100);
/// How long an instance must not have waited before it announces that it
/// caught up (so that waits of a few milliseconds do not flap the state).
pub(crate) const SETTLE: Duration = Duration::from_millis(5);
/// How long an announcement holds without a repeat.
pub(crate) const EXPIRY: Duration = Duration::from_millis(300);

const VERSION: u8 = 1;
const BEHIND: u8 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An announcement.
pub(crate) fn encode(instance: &InstanceId, behind: bool) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[0] = VERSION;
    out[1] = if behind { BEHIND } else { 0 };
    out[2..].copy_from_slice(instance);
    out
}

/// Reads an announcement; `None` if it is not one.
pub(crate) fn decode(payload: &[u8]) -> Option<(InstanceId, bool)> {
    let [VERSION, flags, id @ ..] = payload else {
        return None;
    };
    if flags & !BEHIND != 0 {
        return None;
    }
    Some((id.try_into().ok()?, flags & BEHIND != 0))
}

/// This instance's view: whether it is behind itself, and which others are.
pub(crate) struct Pressure {
    /// This instance's subscriber is waiting for room (set by its reader).
    local: watch::Sender<bool>,
    /// Other instances that are behind, and until when that holds.
    others: Mutex<HashMap<InstanceId, Instant>>,
    /// `others.len()`, for the publish path's check without the lock.
    count: AtomicUsize,
    relieved: Notify,
    waits: AtomicU64,
}

impl Default for Pressure {
    fn default() -> Self {
        Self {
            local: watch::Sender::new(false),
            others: Mutex::new(HashMap::new()),
            count: AtomicUsize::new(0),
            relieved: Notify::new(),
            waits: AtomicU64::new(0),
        }
    }
}

impl Pressure {
    /// This instance's subscriber starts (true) or stops (false) waiting
    /// for room.
    pub(crate) fn set_local(&self, behind: bool) {
        self.local
            .send_if_modified(|b| std::mem::replace(b, behind) != behind);
    }

    /// An announcement from the pressure channel (this instance's own are
    /// skipped by the caller).
    pub(crate) fn note(&self, instance: InstanceId, behind: bool) {
        let mut others = lock(&self.others);
        if behind {
            others.insert(instance, Instant::now() + EXPIRY);
        } else {
            others.remove(&instance);
        }
        self.count.store(others.len(), Ordering::Release);
        drop(others);
        if !behind {
            self.relieved.notify_waiters();
        }
    }

    /// Other instances currently behind.
    pub(crate) fn others_behind(&self) -> usize {
        self.expire();
        self.count.load(Ordering::Acquire)
    }

    /// Publishes that waited for another instance.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Drops expired entries; the earliest expiry left, if any.
    fn expire(&self) -> Option<Instant> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let now = Instant::now();
        let mut others = lock(&self.others);
        others.retain(|_, until| *until > now);
        self.count.store(others.len(), Ordering::Release);
        others.values().min().copied()
    }

    /// Waits until no other instance is behind (at once if none is); gives
    /// up after `timeout`, returning how long it waited.
    pub(crate) async fn wait_clear(&self, timeout: Duration) -> Result<(), Duration> {
        if self.count.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let mut counted = false;
        loop {
            let notified = pin!(self.relieved.notified());
            let mut notified = notified;
            notified.as_mut().enable();
            let Some(next_expiry) = self.expire() else {
                return Ok(());
            };
            if !counted {
                counted = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(now - started);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(next_expiry.min(deadline)) => {}
            }
        }
    }
}

/// Announces this instance's state while the provider runs: behind at
/// once, repeated every [`REFRESH`]; caught up after [`SETTLE`] without a
/// wait. Announcements that cannot be published (Redis down) are skipped.
pub(crate) async fn announce(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut local = shared.pressure.local.subscribe();
    let channel = shared.channels.pressure().to_owned();
    // When "behind" was last published; `None`: "caught up" is what the
    // others were told last.
    let mut announced: Option<Instant> = None;
    loop {
        let behind = *local.borrow_and_update();
        let wait = match (behind, announced) {
            // At once the first time, then at most every REFRESH however
            // often the state flips (a budget at its limit flips it per
            // message).
            (true, Some(at)) if at.elapsed() < REFRESH => Some(REFRESH - at.elapsed()),
            (true, _) => {
                publish(&shared, &channel, true).await;
                announced = Some(Instant::now());
                Some(REFRESH)
            }
            (false, Some(_)) => Some(SETTLE),
            (false, None) => None,
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            changed = local.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = sleep_or_never(wait) => {
                let still_caught_up = !*local.borrow();
                if !behind && still_caught_up {
                    publish(&shared, &channel, false).await;
                    announced = None;
                }
            }
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn publish(shared: &Shared, channel: &str, behind: bool) {
    let Some(mut conn) = shared.publisher() else {
        return;
    };
    let payload = encode(&shared.instance(), behind);
    let within = shared.config.publish_timeout;
    let _ = tokio::time::timeout(within, conn.publish(channel, &payload)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_anything_else_is_refused() {
        let id = [7u8; 16];
        assert_eq!(decode(&encode(&id, true)), Some((id, true)));
        assert_eq!(decode(&encode(&id, false)), Some((id, false)));
        let mut bad = encode(&id, true);
        bad[1] = 2;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&bad[..17]), None);
        assert_eq!(decode(b""), None);
        let mut v2 = encode(&id, true);
        v2[0] = 2;
        assert_eq!(decode(&v2), None);
    }

    #[tokio::test(start_paused = true)]
    async fn publishers_wait_while_another_instance_is_behind_until_it_catches_up_or_expires() {
        let p = Arc::new(Pressure::default());
        assert_eq!(p.wait_clear(Duration::from_secs(1)).await, Ok(()));
        let a = [1u8; 16];
        p.note(a, true);
        assert_eq!(p.others_behind(), 1);
        // Caught up: the waiter goes on.
        let p2 = p.clone();
        let relief = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p2.note(a, false);
        });
        assert_eq!(p.wait_clear(Duration::from_secs(1)).await, Ok(()));
        relief.await.unwrap();
        // Behind, then silent: the entry expires.
        p.note(a, true);
        let started = Instant::now();
        assert_eq!(p.wait_clear(Duration::from_secs(5)).await, Ok(()));
        assert!(started.elapsed() >= EXPIRY - Duration::from_millis(1));
        // Behind and repeating: the publisher gives up at its timeout.
        p.note(a, true);
        let p3 = p.clone();
        let repeat = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(REFRESH).await;
                p3.note(a, true);
            }
        });
        let waited = p.wait_clear(Duration::from_millis(250)).await.unwrap_err();
        assert!(waited >= Duration::from_millis(250));
        assert_eq!(p.waits(), 3);
        repeat.abort();
    }
}
