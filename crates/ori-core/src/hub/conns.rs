//! The hub's table of registered connections, keyed by the socket id their
//! outbox carries (stored once per connection, not again as a map key).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::{Outbox, SocketId, Topic};

/// One registered connection.
pub(super) struct ConnEntry {
    pub(super) outbox: Arc<Outbox>,
    /// Each topic, and whether the connection takes it with positions.
    pub(super) topics: Vec<(Topic, bool)>,
    pub(super) max_topics: usize,
}

/// Registered connections by socket id.
#[derive(Default)]
pub(super) struct Conns {
    table: HashTable<ConnEntry>,
    hasher: RandomState,
}

impl Conns {
    fn hash(&self, id: &SocketId) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Adds `entry`, replacing a connection of the same id.
    pub(super) fn insert(&mut self, entry: ConnEntry) {
        let id = *entry.outbox.id();
        let hash = self.hash(&id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |e| *e.outbox.id() == id,
            |e| hasher.hash_one(e.outbox.id()),
        ) {
            Entry::Occupied(o) => *o.into_mut() = entry,
            Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
    }

    pub(super) fn remove(&mut self, id: &SocketId) -> Option<ConnEntry> {
        let hash = self.hash(id);
        self.table
            .find_entry(hash, |e| e.outbox.id() == id)
            .ok()
            .map(|o| o.remove().0)
    }

    pub(super) fn get(&self, id: &SocketId) -> Option<&ConnEntry> {
        self.table.find(self.hash(id), |e| e.outbox.id() == id)
    }

    pub(super) fn get_mut(&mut self, id: &SocketId) -> Option<&mut ConnEntry> {
        let hash = self.hash(id);
        self.table.find_mut(hash, |e| e.outbox.id() == id)
    }

    pub(super) fn contains_key(&self, id: &SocketId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &ConnEntry> {
        self.table.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: SocketId) -> ConnEntry {
        ConnEntry {
            outbox: Arc::new(Outbox::new(id, 1024)),
            topics: Vec::new(),
            max_topics: 10,
        }
    }

    #[test]
    fn entries_are_found_by_their_outboxs_id() {
        let mut conns = Conns::default();
        let ids: Vec<SocketId> = (0..100).map(|_| SocketId::new()).collect();
        for id in &ids {
            conns.insert(entry(*id));
        }
        assert_eq!(conns.len(), 100);
        assert!(ids.iter().all(|id| conns.contains_key(id)));
        conns.get_mut(&ids[7]).unwrap().max_topics = 3;
        assert_eq!(conns.get(&ids[7]).unwrap().max_topics, 3);
        // Registering an id again replaces its entry.
        conns.insert(entry(ids[7]));
        assert_eq!(conns.len(), 100);
        assert_eq!(conns.get(&ids[7]).unwrap().max_topics, 10);
        assert!(conns.remove(&ids[3]).is_some());
        assert!(conns.remove(&ids[3]).is_none());
        assert!(!conns.contains_key(&ids[3]));
        assert!(!conns.contains_key(&SocketId::new()));
        assert_eq!(conns.values().count(), 99);
    }
}
