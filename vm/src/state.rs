//! State as the VM sees it: a committed base ([`StateRead`]) and, per
//! transaction, a journal of writes with checkpoints for nested calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use chroma_host_api::codec::{Decode, Encode};

use crate::tx::Event;

/// Committed state: full keys (see `chroma_host_api::key`) to values.
pub trait StateRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
}

/// An in-memory state.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryState {
    pub fn new() -> Arc<MemoryState> {
        Arc::new(MemoryState::default())
    }

    /// Applies a transaction's writes (`None` removes).
    pub fn apply(&self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, value) in writes {
            match value {
                Some(v) => entries.insert(key, v),
                None => entries.remove(&key),
            };
        }
    }

    /// A copy of every entry, in key order.
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateRead for MemoryState {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }
}

/// The keys a transaction touched, by kind. Full state keys, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessSet {
    pub reads: BTreeSet<Vec<u8>>,
    pub writes: BTreeSet<Vec<u8>>,
    /// Keys changed only through the commutative `storage_add`.
    pub adds: BTreeSet<Vec<u8>>,
}

/// A position in the journal to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    undo_len: usize,
    events_len: usize,
}

/// One transaction's pending writes over the base state.
pub struct Journal {
    base: Arc<dyn StateRead>,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// (key, the overlay's entry before the write) for rollback.
    undo: Vec<(Vec<u8>, Option<Option<Vec<u8>>>)>,
    events: Vec<Event>,
    accesses: AccessSet,
}

impl Journal {
    pub fn new(base: Arc<dyn StateRead>) -> Journal {
        Journal { base, overlay: BTreeMap::new(), undo: Vec::new(), events: Vec::new(), accesses: AccessSet::default() }
    }

    fn current(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.overlay.get(key) {
            Some(pending) => pending.clone(),
            None => self.base.get(key),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let previous = self.overlay.insert(key.clone(), value);
        self.undo.push((key, previous));
    }

    pub fn read(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.accesses.reads.insert(key.to_vec());
        self.current(key)
    }

    pub fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.accesses.writes.insert(key.clone());
        self.put(key, value);
    }

    /// Saturating add to the `u128` at `key` (absent or malformed counts as 0).
    /// Recorded as an add, not a read and a write: its result does not depend
    /// on the order of adds.
    pub fn add(&mut self, key: Vec<u8>, amount: u128) {
        self.accesses.adds.insert(key.clone());
        let current = self.current(&key).and_then(|v| u128::decode(&v).ok()).unwrap_or(0);
        self.put(key, Some(current.saturating_add(amount).encode()));
    }

    pub fn emit(&mut self, event: Event) {
        self.events.push(event);
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { undo_len: self.undo.len(), events_len: self.events.len() }
    }

    /// Undoes every write and event since `checkpoint`. Accesses stay recorded:
    /// a failed call still read what it read.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        while self.undo.len() > checkpoint.undo_len {
            let Some((key, previous)) = self.undo.pop() else { break };
            match previous {
                Some(value) => self.overlay.insert(key, value),
                None => self.overlay.remove(&key),
            };
        }
        self.events.truncate(checkpoint.events_len);
    }

    /// The net writes, events and accesses.
    pub fn finish(self) -> (BTreeMap<Vec<u8>, Option<Vec<u8>>>, Vec<Event>, AccessSet) {
        (self.overlay, self.events, self.accesses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_rollback_restores_earlier_values() {
        let base = MemoryState::new();
        base.apply(BTreeMap::from([(b"k".to_vec(), Some(b"base".to_vec()))]));
        let mut j = Journal::new(base.clone());
        j.write(b"k".to_vec(), Some(b"outer".to_vec()));
        let cp = j.checkpoint();
        j.write(b"k".to_vec(), Some(b"inner".to_vec()));
        j.write(b"new".to_vec(), Some(b"x".to_vec()));
        j.add(b"n".to_vec(), 5);
        j.emit(Event { contract: Default::default(), name: "E".into(), data: vec![] });
        assert_eq!(j.read(b"k"), Some(b"inner".to_vec()));
        j.rollback(cp);
        assert_eq!(j.read(b"k"), Some(b"outer".to_vec()));
        assert_eq!(j.read(b"new"), None);
        assert_eq!(j.read(b"n"), None);
        assert_eq!(j.event_count(), 0);
        let (writes, _, accesses) = j.finish();
        assert_eq!(writes, BTreeMap::from([(b"k".to_vec(), Some(b"outer".to_vec()))]));
        assert!(accesses.writes.contains(&b"new".to_vec()), "accesses of rolled-back calls are kept");
        assert!(accesses.adds.contains(&b"n".to_vec()));
    }

    #[test]
    fn adds_saturate_and_treat_malformed_as_zero() {
        let base = MemoryState::new();
        base.apply(BTreeMap::from([(b"bad".to_vec(), Some(vec![1, 2, 3]))]));
        let mut j = Journal::new(base);
        j.add(b"bad".to_vec(), 7);
        j.add(b"max".to_vec(), u128::MAX - 1);
        j.add(b"max".to_vec(), 9);
        assert_eq!(j.read(b"bad"), Some(7u128.encode()));
        assert_eq!(j.read(b"max"), Some(u128::MAX.encode()));
    }
}
