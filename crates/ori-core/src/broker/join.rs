//! Joins with positions and resumes (PROTOCOL.md section 8): the reply,
//! the replay and the switch to the live stream, with no gap and no
//! duplicate.
//!
//! In process, offsets are assigned and delivered under the topic's
//! history lock, so a join that takes the lock sees one consistent cut.
//! When the provider keeps the history, a joining socket is held in a
//! *gate*: publications that reach this instance meanwhile are kept for it
//! (under the gate's lock, the same lock their delivery takes) while the
//! history is read; then the reply, the replay and what was kept after the
//! replay's last offset are queued and the socket joins the live stream,
//! all under that lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::{BoxFuture, Core};
use crate::history::History;
use crate::positions::{self, Joined, Position, Recovery};
use crate::provider::{HistoryLimits, HistoryRead, Target};
use crate::{Hub, Message, SocketId, SubscribeError, Topic};

/// Publications kept for one joining socket before its join starts over.
const GATE_CAPACITY: usize = 10_000;
/// Reads of the history one join may make when it keeps overflowing.
const MAX_ATTEMPTS: usize = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Joining {
    ticket: u64,
    kept: Vec<(Position, Message)>,
    overflowed: bool,
}

#[derive(Default)]
struct Gate {
    joining: Vec<Joining>,
}

/// The topics with sockets in the middle of a join.
#[derive(Default)]
pub(crate) struct Gates {
    map: RwLock<HashMap<Topic, Arc<Mutex<Gate>>>>,
    tickets: AtomicU64,
}

impl Gates {
    fn get(&self, topic: &Topic) -> Option<Arc<Mutex<Gate>>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned()
    }

    /// Whether a socket is joining `topic` (the instance then needs its
    /// publications even before anyone here is subscribed).
    pub(crate) fn is_open(&self, topic: &Topic) -> bool {
        self.get(topic).is_some()
    }

    /// Holds a new joiner of `topic`; returns its ticket and whether the
    /// topic's gate was just opened.
    fn enter(&self, topic: &Topic) -> (u64, bool) {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let opened = !map.contains_key(topic);
        let gate = map.entry(topic.clone()).or_default();
        lock(gate).joining.push(Joining {
            ticket,
            kept: Vec::new(),
            overflowed: false,
        });
        (ticket, opened)
    }

    /// Lets joiner `ticket` go; closes the gate when it was the last.
    fn leave(&self, topic: &Topic, ticket: u64) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let Some(gate) = map.get(topic) else {
            return;
        };
        let empty = {
            let mut g = lock(gate);
            g.joining.retain(|j| j.ticket != ticket);
            g.joining.is_empty()
        };
        if empty {
            map.remove(topic);
        }
    }
}

/// Delivers a publication that carries its position: kept for the sockets
/// joining its topic, then queued to the positions-aware subscribers (the
/// envelope) and the others (raw), under the topic's gate when it has one.
pub(crate) fn deliver_positioned(
    hub: &Hub,
    gates: &Gates,
    topic: &Topic,
    message: &Message,
    position: &Position,
) -> usize {
    let envelope = || positions::envelope(topic, position.offset, message);
    // The map stays read-locked for the whole delivery: no gate opens or
    // closes meanwhile, so a join never completes under another lock than
    // the one this delivery holds (which would let it see this publication
    // both in its replay and live).
    let at = (&*position.epoch, position.offset);
    let map = gates.map.read().unwrap_or_else(PoisonError::into_inner);
    let Some(gate) = map.get(topic) else {
        return hub.publish_positioned(topic, message, at, envelope);
    };
    let mut g = lock(gate);
    for j in &mut g.joining {
        if j.kept.len() < GATE_CAPACITY {
            j.kept.push((position.clone(), message.clone()));
        } else {
            j.overflowed = true;
        }
    }
    hub.publish_positioned(topic, message, at, envelope)
}

fn joined(read_epoch: Arc<str>, last: u64, recovery: &Recovery, replay: Option<usize>) -> Joined {
    Joined::Positions {
        epoch: read_epoch,
        offset: last,
        recovered: match recovery {
            Recovery::Latest => None,
            Recovery::Since { .. } => Some(replay.map(|n| n as u64)),
        },
    }
}

fn frames<'a>(
    topic: &'a Topic,
    joined: &Joined,
    replay: impl IntoIterator<Item = (u64, Message)> + 'a,
) -> impl Iterator<Item = Message> + 'a {
    let reply = Message::from(joined.reply(topic));
    std::iter::once(reply).chain(
        replay
            .into_iter()
            .map(move |(offset, m)| Message::from(positions::envelope(topic, offset, &m))),
    )
}

/// A join with the history in this process. Returns the outcome and
/// whether the topic gained its first local subscriber.
pub(crate) fn join_local(
    core: &Core,
    history: &History,
    socket: &SocketId,
    topic: &Topic,
    recovery: &Recovery,
) -> Result<(Joined, bool), SubscribeError> {
    let stream = history.stream(topic);
    let mut st = History::lock(&stream);
    let sub = core.hub.subscribe_as(socket, topic, true)?;
    let found = history.find(&mut st, recovery);
    let replay_len = found.replay.as_ref().map(Vec::len);
    let joined = joined(found.epoch, found.last, recovery, replay_len);
    let replay = found.replay.unwrap_or_default();
    core.hub.push_to(socket, frames(topic, &joined, replay));
    Ok((joined, sub.topic_edge))
}

/// What a gated join needs from the provider.
pub(crate) trait HistorySource: Sync {
    /// Completes when the instance's subscription to `target` is confirmed.
    fn watched<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), SubscribeError>>;
    /// Reads the history.
    fn read<'a>(
        &'a self,
        topic: &'a Topic,
        limits: HistoryLimits,
        since: Option<(&'a str, u64)>,
    ) -> BoxFuture<'a, Result<HistoryRead, SubscribeError>>;
    /// The topic's gate opened: the instance needs its publications.
    fn gate_opened(&self, topic: &Topic);
    /// The topic's gate closed.
    fn gate_closed(&self, topic: &Topic);
}

/// A join when the provider keeps the history (see the module docs).
/// Returns the outcome and whether the topic gained its first local
/// subscriber.
pub(crate) async fn join_gated(
    core: &Core,
    source: &impl HistorySource,
    limits: HistoryLimits,
    socket: &SocketId,
    topic: &Topic,
    recovery: &Recovery,
) -> Result<(Joined, bool), SubscribeError> {
    let (ticket, opened) = core.gates.enter(topic);
    if opened {
        source.gate_opened(topic);
    }
    let result = gated(core, source, limits, ticket, socket, topic, recovery).await;
    core.gates.leave(topic, ticket);
    if !core.gates.is_open(topic) {
        source.gate_closed(topic);
    }
    result
}

async fn gated(
    core: &Core,
    source: &impl HistorySource,
    limits: HistoryLimits,
    ticket: u64,
    socket: &SocketId,
    topic: &Topic,
    recovery: &Recovery,
) -> Result<(Joined, bool), SubscribeError> {
    source.watched(&Target::Topic(topic.clone())).await?;
    let since = match recovery {
        Recovery::Latest => None,
        Recovery::Since { epoch, offset } => Some((epoch.as_str(), *offset)),
    };
    for _ in 0..MAX_ATTEMPTS {
        let read = source.read(topic, limits, since).await?;
        let Some(gate) = core.gates.get(topic) else {
            break;
        };
        let mut g = lock(&gate);
        let Some(me) = g.joining.iter_mut().find(|j| j.ticket == ticket) else {
            break;
        };
        if me.overflowed {
            // Too much arrived while reading: read again from a later cut.
            me.kept.clear();
            me.overflowed = false;
            continue;
        }
        let kept = std::mem::take(&mut me.kept);
        let replay_len = read.replay.as_ref().map(Vec::len);
        let joined = joined(read.epoch.clone(), read.last, recovery, replay_len);
        // What arrived meanwhile and is not in the replay (same epoch,
        // later offset) follows it.
        let after: Vec<(u64, Message)> = kept
            .into_iter()
            .filter(|(p, _)| p.epoch == read.epoch && p.offset > read.last)
            .map(|(p, m)| (p.offset, m))
            .collect();
        // The socket now has everything up to `floor`: a publication at or
        // below it that reaches this instance only now (its subscription
        // message can trail the history read) is not queued to it again.
        let floor = after.last().map_or(read.last, |(o, _)| *o);
        let replay = read.replay.unwrap_or_default().into_iter().chain(after);
        let sub = core
            .hub
            .subscribe_after(socket, topic, (read.epoch.clone(), floor))?;
        core.hub.push_to(socket, frames(topic, &joined, replay));
        return Ok((joined, sub.topic_edge));
    }
    Err(SubscribeError::Unavailable(std::sync::Arc::new(
        crate::ProviderError::new(
            crate::ErrorKind::Unavailable,
            "the topic's history could not be read consistently",
        ),
    )))
}
