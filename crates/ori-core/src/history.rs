//! Per-topic history in this process: a bounded buffer of the latest
//! publications of every topic that keeps history, each with its offset,
//! so that a socket that reconnects can resume where it left off
//! (PROTOCOL.md section 8).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::positions::Recovery;
use crate::{Message, Topic};

/// Bytes counted per entry on top of its payload (offset, time, queue slot).
const ENTRY_OVERHEAD: usize = 48;
/// Bytes counted per topic that keeps history (its counters and map slot).
const STREAM_OVERHEAD: usize = 128;
/// Appends between two sweeps of idle topics.
const SWEEP_EVERY: u64 = 4096;

/// Which topics keep history.
type Selector = Arc<dyn Fn(&Topic) -> bool + Send + Sync>;

/// Which topics keep history, and how much.
///
/// ```
/// use std::time::Duration;
/// use ori_core::HistoryConfig;
///
/// let history = HistoryConfig::new(100)
///     .ttl(Duration::from_secs(120))
///     .max_bytes(16 << 20)
///     .topics(|topic| topic.as_str().starts_with("room:"));
/// assert_eq!(history.max_entries(), 100);
/// ```
#[derive(Clone)]
pub struct HistoryConfig {
    max_entries: usize,
    ttl: Duration,
    max_bytes: usize,
    select: Option<Selector>,
}

impl std::fmt::Debug for HistoryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryConfig")
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("max_bytes", &self.max_bytes)
            .field("every_topic", &self.select.is_none())
            .finish()
    }
}

impl HistoryConfig {
    /// The last `max_entries` publications of every topic (at least 1),
    /// kept for 5 minutes, at most 64 MiB in all.
    pub fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            ttl: Duration::from_secs(300),
            max_bytes: 64 << 20,
            select: None,
        }
    }

    /// Drops publications older than `ttl`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Bounds the memory of all histories together (payloads plus a fixed
    /// overhead per entry and per topic). A topic whose new publication
    /// does not fit drops its oldest entries first, then its whole history
    /// (a later resume on it is then `recovered: false`).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Only topics for which `select` is true keep history (default: all).
    pub fn topics(mut self, select: impl Fn(&Topic) -> bool + Send + Sync + 'static) -> Self {
        self.select = Some(Arc::new(select));
        self
    }

    /// Entries kept per topic.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// How long entries are kept.
    pub fn ttl_value(&self) -> Duration {
        self.ttl
    }

    /// Whether `topic` keeps history.
    pub fn applies_to(&self, topic: &Topic) -> bool {
        !topic.is_reserved() && self.select.as_ref().is_none_or(|f| f(topic))
    }
}

struct Entry {
    offset: u64,
    at: Instant,
    message: Message,
}

impl Entry {
    fn cost(&self) -> usize {
        self.message.as_bytes().len() + ENTRY_OVERHEAD
    }
}

/// One topic's history: its epoch, its latest offset and the entries kept
/// (always consecutive offsets ending at `last`, or none).
pub(crate) struct Stream {
    epoch: Arc<str>,
    last: u64,
    touched: Instant,
    entries: VecDeque<Entry>,
}

/// What a resume finds in a stream.
pub(crate) struct Found {
    pub(crate) epoch: Arc<str>,
    pub(crate) last: u64,
    /// For a resume: the publications after its offset, or `None` when they
    /// are not all there.
    pub(crate) replay: Option<Vec<(u64, Message)>>,
}

/// Every history of this process.
pub(crate) struct History {
    config: HistoryConfig,
    /// Random per process: a restart changes every epoch.
    run: String,
    epochs: AtomicU64,
    /// Read-locked on every publication, write-locked to add or sweep.
    streams: RwLock<HashMap<Topic, Arc<Mutex<Stream>>>>,
    bytes: Arc<AtomicUsize>,
    appends: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
    pub(crate) fn new(config: HistoryConfig) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        Self {
            config,
            run: run[..12].to_owned(),
            epochs: AtomicU64::new(0),
            streams: RwLock::new(HashMap::new()),
            bytes: Arc::new(AtomicUsize::new(0)),
            appends: AtomicU64::new(0),
        }
    }

    pub(crate) fn applies_to(&self, topic: &Topic) -> bool {
        self.config.applies_to(topic)
    }

    pub(crate) fn limits(&self) -> crate::provider::HistoryLimits {
        crate::provider::HistoryLimits {
            max_entries: self.config.max_entries,
            ttl: self.config.ttl,
        }
    }

    /// Bytes held by all histories (as counted against the cap).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Topics that currently keep a history.
    pub(crate) fn topics(&self) -> usize {
        self.read_streams().len()
    }

    /// `topic`'s stream, made (with a fresh epoch, offset 0) if it has none.
    pub(crate) fn stream(&self, topic: &Topic) -> Arc<Mutex<Stream>> {
        if let Some(s) = self.read_streams().get(topic) {
            return s.clone();
        }
        let mut streams = self.write_streams();
        if let Some(s) = streams.get(topic) {
            return s.clone();
        }
        let n = self.epochs.fetch_add(1, Ordering::Relaxed);
        let stream = Arc::new(Mutex::new(Stream {
            epoch: format!("{}-{n}", self.run).into(),
            last: 0,
            touched: Instant::now(),
            entries: VecDeque::new(),
        }));
        self.bytes.fetch_add(STREAM_OVERHEAD, Ordering::Relaxed);
        streams.insert(topic.clone(), stream.clone());
        stream
    }

    fn read_streams(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Topic, Arc<Mutex<Stream>>>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_streams(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Topic, Arc<Mutex<Stream>>>> {
        self.streams.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
        lock(stream)
    }

    /// The stream's epoch.
    pub(crate) fn epoch(stream: &Stream) -> Arc<str> {
        stream.epoch.clone()
    }

    /// Gives `message` the next offset of `stream` and keeps it within the
    /// bounds; returns the offset. Called with the stream locked, by
    /// whoever then delivers it (so deliveries follow offsets).
    pub(crate) fn append(&self, stream: &mut Stream, message: &Message) -> u64 {
        let now = Instant::now();
        stream.last += 1;
        stream.touched = now;
        self.expire(stream, now);
        let entry = Entry {
            offset: stream.last,
            at: now,
            message: message.clone(),
        };
        let cost = entry.cost();
        while stream.entries.len() >= self.config.max_entries
            || (self.bytes() + cost > self.config.max_bytes && !stream.entries.is_empty())
        {
            self.pop(stream);
        }
        if self.bytes() + cost <= self.config.max_bytes {
            self.bytes.fetch_add(cost, Ordering::Relaxed);
            stream.entries.push_back(entry);
        }
        stream.last
    }

    /// Called after each append, with no stream locked: every
    /// `SWEEP_EVERY` appends, drops the idle streams of topics for which
    /// `in_use` is false.
    pub(crate) fn after_append(&self, in_use: impl Fn(&Topic) -> bool) {
        if self.appends.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep(in_use);
        }
    }

    /// What a join with `recovery` finds in `stream` (locked by the caller,
    /// who subscribes and queues the replay before unlocking).
    pub(crate) fn find(&self, stream: &mut Stream, recovery: &Recovery) -> Found {
        self.expire(stream, Instant::now());
        let replay = match recovery {
            Recovery::Latest => None,
            Recovery::Since { epoch, offset } => {
                let n = *offset;
                if **epoch != *stream.epoch || n > stream.last {
                    None
                } else if n == stream.last {
                    Some(Vec::new())
                } else {
                    match stream.entries.front() {
                        Some(first) if first.offset <= n + 1 => Some(
                            stream
                                .entries
                                .iter()
                                .filter(|e| e.offset > n)
                                .map(|e| (e.offset, e.message.clone()))
                                .collect(),
                        ),
                        _ => None,
                    }
                }
            }
        };
        Found {
            epoch: stream.epoch.clone(),
            last: stream.last,
            replay,
        }
    }

    fn pop(&self, stream: &mut Stream) {
        if let Some(e) = stream.entries.pop_front() {
            self.bytes.fetch_sub(e.cost(), Ordering::Relaxed);
        }
    }

    fn expire(&self, stream: &mut Stream, now: Instant) {
        while stream
            .entries
            .front()
            .is_some_and(|e| now.duration_since(e.at) > self.config.ttl)
        {
            self.pop(stream);
        }
    }

    /// Drops the streams of topics idle for longer than the TTL, whose
    /// entries have all expired and that nobody is subscribed to (their
    /// offsets restart, with a new epoch, at the next publication). Never
    /// waits on a stream in use.
    fn sweep(&self, in_use: impl Fn(&Topic) -> bool) {
        let now = Instant::now();
        let mut streams = self.write_streams();
        streams.retain(|topic, stream| {
            if in_use(topic) {
                return true;
            }
            let Ok(mut s) = stream.try_lock() else {
                return true;
            };
            self.expire(&mut s, now);
            let idle = s.entries.is_empty()
                && now.duration_since(s.touched) > self.config.ttl
                && Arc::strong_count(stream) == 1;
            if idle {
                self.bytes.fetch_sub(STREAM_OVERHEAD, Ordering::Relaxed);
            }
            !idle
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(config: HistoryConfig) -> (History, Arc<Mutex<Stream>>) {
        let h = History::new(config);
        let s = h.stream(&Topic::new("t").unwrap());
        (h, s)
    }

    fn since(epoch: &str, offset: u64) -> Recovery {
        Recovery::Since {
            epoch: epoch.to_owned(),
            offset,
        }
    }

    fn offsets(found: &Found) -> Option<Vec<u64>> {
        found
            .replay
            .as_ref()
            .map(|r| r.iter().map(|(o, _)| *o).collect())
    }

    #[test]
    fn offsets_count_from_one_and_a_resume_replays_exactly_what_was_missed() {
        let (h, s) = history(HistoryConfig::new(10));
        let mut st = History::lock(&s);
        for i in 1..=5u64 {
            assert_eq!(h.append(&mut st, &Message::from(format!("m{i}"))), i);
        }
        let epoch = st.epoch.to_string();
        let found = h.find(&mut st, &since(&epoch, 2));
        assert_eq!(found.last, 5);
        assert_eq!(offsets(&found), Some(vec![3, 4, 5]));
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 5))), Some(vec![]));
        // Ahead of the stream, or another epoch: nothing, never a part.
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 6))), None);
        assert_eq!(offsets(&h.find(&mut st, &since("other", 2))), None);
        assert_eq!(offsets(&h.find(&mut st, &Recovery::Latest)), None);
    }

    #[test]
    fn a_resume_further_back_than_the_size_or_the_ttl_is_not_recovered() {
        let (h, s) = history(HistoryConfig::new(3));
        let mut st = History::lock(&s);
        for i in 1..=5u64 {
            h.append(&mut st, &Message::from(format!("m{i}")));
        }
        let epoch = st.epoch.to_string();
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 1))), None);
        assert_eq!(
            offsets(&h.find(&mut st, &since(&epoch, 2))),
            Some(vec![3, 4, 5])
        );

        let (h, s) = history(HistoryConfig::new(10).ttl(Duration::ZERO));
        let mut st = History::lock(&s);
        h.append(&mut st, &Message::from("old"));
        std::thread::sleep(Duration::from_millis(2));
        let epoch = st.epoch.to_string();
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 0))), None);
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 1))), Some(vec![]));
    }

    #[test]
    fn memory_is_capped_and_counted() {
        let cap = STREAM_OVERHEAD + 3 * (100 + ENTRY_OVERHEAD);
        let (h, s) = history(HistoryConfig::new(1000).max_bytes(cap));
        let mut st = History::lock(&s);
        for _ in 0..50 {
            h.append(&mut st, &Message::from("x".repeat(100)));
        }
        assert!(h.bytes() <= cap, "{} > {cap}", h.bytes());
        assert_eq!(st.entries.len(), 3);
        // A publication larger than the whole cap is not kept, and what was
        // kept before it goes (entries stay consecutive).
        h.append(&mut st, &Message::from("y".repeat(cap)));
        assert!(st.entries.is_empty());
        assert_eq!(h.bytes(), STREAM_OVERHEAD);
        let epoch = st.epoch.to_string();
        assert_eq!(offsets(&h.find(&mut st, &since(&epoch, 50))), None);
    }

    #[test]
    fn epochs_differ_between_processes_and_topics() {
        let a = History::new(HistoryConfig::new(1));
        let b = History::new(HistoryConfig::new(1));
        let t = Topic::new("t").unwrap();
        let ea = History::lock(&a.stream(&t)).epoch.clone();
        let eb = History::lock(&b.stream(&t)).epoch.clone();
        assert_ne!(ea, eb);
        let eu = History::lock(&a.stream(&Topic::new("u").unwrap()))
            .epoch
            .clone();
        assert_ne!(ea, eu);
        assert!(ea.len() <= 64);
    }
}
