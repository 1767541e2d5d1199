//! A topic's local subscribers: raw ones, positions-aware ones, and the
//! floors below which a resumed subscriber skips live publications.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Outbox, Topic};

pub(super) type List = Arc<Vec<Arc<Outbox>>>;

/// A topic's local subscribers: those that take the raw payload, and those
/// that joined with positions (PROTOCOL.md section 8) and take the
/// `room.message` envelope.
#[derive(Clone, Default)]
pub(super) struct Subscribers {
    pub(super) raw: List,
    pub(super) positioned: List,
    /// Positions-aware subscribers that already have every publication up
    /// to a position (their join replayed it) and must not get those again
    /// live; dropped once publications pass them.
    pub(super) floors: Option<Arc<Vec<Floor>>>,
}

/// A subscriber's position below which live publications are skipped.
#[derive(Clone)]
pub(super) struct Floor {
    pub(super) outbox: Arc<Outbox>,
    pub(super) epoch: Arc<str>,
    pub(super) offset: u64,
}

impl Floor {
    /// Whether the publication at (`epoch`, `offset`) is at or below it.
    pub(super) fn covers(&self, epoch: &str, offset: u64) -> bool {
        offset <= self.offset && *self.epoch == *epoch
    }
}

impl Subscribers {
    pub(super) fn len(&self) -> usize {
        self.raw.len() + self.positioned.len()
    }

    pub(super) fn list(&mut self, positioned: bool) -> &mut Vec<Arc<Outbox>> {
        Arc::make_mut(if positioned {
            &mut self.positioned
        } else {
            &mut self.raw
        })
    }

    /// Adds `outbox` to a list, next to the outboxes of its lane (each list
    /// is kept ordered by lane, so that a fan-out takes each lane's lock
    /// once).
    pub(super) fn add(&mut self, positioned: bool, outbox: Arc<Outbox>) {
        let list = self.list(positioned);
        let key = lane_key(&outbox);
        let at = list.partition_point(|o| lane_key(o) <= key);
        list.insert(at, outbox);
    }

    /// Removes `outbox` from a list, keeping the others in order.
    pub(super) fn remove(&mut self, positioned: bool, outbox: &Arc<Outbox>) {
        let list = self.list(positioned);
        if let Some(pos) = list.iter().position(|o| Arc::ptr_eq(o, outbox)) {
            list.remove(pos);
        }
    }
}

/// The order of outboxes in a list: by lane.
pub(super) fn lane_key(outbox: &Outbox) -> usize {
    Arc::as_ptr(outbox.lane()) as usize
}

/// Removes `outbox` from `topic`; true if the topic became empty (and was
/// dropped).
pub(super) fn remove_subscriber(
    topics: &mut HashMap<Topic, Subscribers>,
    topic: &Topic,
    positioned: bool,
    outbox: &Arc<Outbox>,
) -> bool {
    let Some(subs) = topics.get_mut(topic) else {
        return false;
    };
    subs.remove(positioned, outbox);
    if let Some(floors) = &mut subs.floors {
        Arc::make_mut(floors).retain(|f| !Arc::ptr_eq(&f.outbox, outbox));
        if floors.is_empty() {
            subs.floors = None;
        }
    }
    if subs.len() == 0 {
        topics.remove(topic);
        return true;
    }
    false
}

/// Records that `outbox` already has `topic`'s publications up to `floor`.
pub(super) fn add_floor(
    topics: &mut HashMap<Topic, Subscribers>,
    topic: &Topic,
    outbox: Arc<Outbox>,
    floor: Option<(Arc<str>, u64)>,
) {
    let (Some((epoch, offset)), Some(subs)) = (floor, topics.get_mut(topic)) else {
        return;
    };
    let floor = Floor {
        outbox,
        epoch,
        offset,
    };
    Arc::make_mut(subs.floors.get_or_insert_with(Default::default)).push(floor);
}
