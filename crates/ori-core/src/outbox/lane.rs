//! A lane: the queues of the connections one writer serves, under one lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

use qcell::{QCell, QCellOwner, QCellOwnerID};

/// The key to a lane's queues: whoever holds it (the lane's lock held) may
/// read and change any of them.
pub(crate) type Key = QCellOwner;

/// The queues of a group of connections (those one writer serves), locked
/// together.
///
/// A publication fanned out to many subscribers in one lane takes the
/// lane's lock once per run of at most a few hundred of them, instead of
/// one lock per subscriber's queue: at 1,000 subscribers that is a few
/// locks and unlocks instead of 1,000 of each (two atomic instructions per
/// delivery). The price: two threads pushing to queues of one lane (two
/// publishers, or a publisher and a connection's reply) take turns, and
/// the lane's writer takes its turn with them. A server gives each of its
/// writers a lane of its own, so only the connections one writer writes
/// share a lock.
///
/// Under the lock the fan-out clones writers' wakers (it calls them, and
/// drops frames, after the lock): a waker whose clone touches an outbox
/// of the same lane would deadlock.
///
/// Each queue stays in its own outbox (a cell that only the lane's key
/// opens), so a lane holds nothing per connection.
///
/// An [`Outbox`](crate::Outbox) made without a lane gets one of its own
/// (two small allocations: the lane and its key).
pub struct Lane {
    key: Mutex<Key>,
    /// The key's id, to make cells without taking the lock.
    id: QCellOwnerID,
}

impl Default for Lane {
    fn default() -> Self {
        let key = QCellOwner::new();
        Self {
            id: key.id(),
            key: Mutex::new(key),
        }
    }
}

impl Lane {
    /// An empty lane.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lane's key, its lock held.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Key> {
        // Nothing here panics while holding the lock, but a poisoned lock
        // must not take every other connection down with it.
        self.key.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cell holding `value`, opened by this lane's key.
    pub(crate) fn cell<T>(&self, value: T) -> QCell<T> {
        QCell::new(self.id, value)
    }
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::{Budget, Outbox, SocketId};

    #[test]
    fn outboxes_sharing_a_lane_keep_their_own_queues() {
        let lane = Arc::new(Lane::new());
        let budget = Arc::new(Budget::default());
        let make = || Outbox::in_lane(SocketId::new(), 1 << 20, budget.clone(), lane.clone());
        let (a, b, c) = (make(), make(), make());
        a.push(Bytes::from_static(b"a"));
        c.push(Bytes::from_static(b"bc"));
        assert_eq!(
            (a.queued_bytes(), b.queued_bytes(), c.queued_bytes()),
            (1, 0, 2)
        );
        assert_eq!(budget.used(), 3);
        drop(a);
        assert_eq!(budget.used(), 2, "a dropped outbox releases what it held");
        assert!(c.close(1000, "bye"));
        assert!(b.close(1000, "bye"));
        assert_eq!(c.queued_bytes(), 2);
    }
}
