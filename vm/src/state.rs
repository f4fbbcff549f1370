//! State as the VM sees it: a committed base ([`StateRead`]) and, per
//! transaction, a journal of writes with checkpoints for nested calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use chroma_host_api::codec::{Decode, Encode};

use crate::tx::Event;

/// Reading the state failed (the disk, not the contract): the block cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage failed: {0}")]
pub struct StateError(pub String);

/// Committed state: full keys (see `chroma_host_api::key`) to values.
pub trait StateRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

/// Writes not yet persisted, over an optional base (the last committed block
/// on disk). Without a base it is a whole in-memory state.
#[derive(Default)]
pub struct StateOverlay {
    base: RwLock<Option<Arc<dyn StateRead>>>,
    /// `None` marks a key removed since the base.
    entries: RwLock<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
}

impl StateOverlay {
    pub fn new() -> Arc<StateOverlay> {
        Arc::new(StateOverlay::default())
    }

    pub fn over(base: Arc<dyn StateRead>) -> Arc<StateOverlay> {
        Arc::new(StateOverlay { base: RwLock::new(Some(base)), entries: RwLock::default() })
    }

    /// Applies a transaction's writes (`None` removes).
    pub fn apply(&self, writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        let has_base = self.base.read().unwrap_or_else(|p| p.into_inner()).is_some();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in writes {
            if value.is_none() && !has_base {
                entries.remove(&key);
            } else {
                entries.insert(key, value);
            }
        }
    }

    /// Takes the pending writes and puts `base` (which now holds them) under the overlay.
    pub fn rebase(&self, base: Arc<dyn StateRead>) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(base);
        std::mem::take(&mut *entries)
    }

    /// The pending writes, in key order.
    pub fn pending(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The entries held in memory (for a VM without a base: the whole state).
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|p| p.into_inner()).values().filter(|v| v.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateRead for StateOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(pending) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(pending.clone());
        }
        match &*self.base.read().unwrap_or_else(|p| p.into_inner()) {
            Some(base) => base.get(key),
            None => Ok(None),
        }
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
    /// The first storage failure; the transaction's result is then void.
    failure: Option<StateError>,
}

impl Journal {
    pub fn new(base: Arc<dyn StateRead>) -> Journal {
        Journal {
            base,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
            events: Vec::new(),
            accesses: AccessSet::default(),
            failure: None,
        }
    }

    fn current(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(pending) = self.overlay.get(key) {
            return pending.clone();
        }
        match self.base.get(key) {
            Ok(value) => value,
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
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

    /// The net writes, events and accesses, or the storage failure that voids them.
    #[allow(clippy::type_complexity)]
    pub fn finish(self) -> Result<(BTreeMap<Vec<u8>, Option<Vec<u8>>>, Vec<Event>, AccessSet), StateError> {
        match self.failure {
            Some(e) => Err(e),
            None => Ok((self.overlay, self.events, self.accesses)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_rollback_restores_earlier_values() {
        let base = StateOverlay::new();
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
        let (writes, _, accesses) = j.finish().expect("no storage failure");
        assert_eq!(writes, BTreeMap::from([(b"k".to_vec(), Some(b"outer".to_vec()))]));
        assert!(accesses.writes.contains(&b"new".to_vec()), "accesses of rolled-back calls are kept");
        assert!(accesses.adds.contains(&b"n".to_vec()));
    }

    struct Broken;
    impl StateRead for Broken {
        fn get(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Err(StateError("disk on fire".into()))
        }
    }

    #[test]
    fn a_storage_failure_voids_the_transaction() {
        let mut j = Journal::new(Arc::new(Broken));
        assert_eq!(j.read(b"k"), None);
        j.write(b"k".to_vec(), Some(vec![1]));
        assert_eq!(j.finish().err(), Some(StateError("disk on fire".into())));
    }

    #[test]
    fn overlay_removals_shadow_the_base() {
        let base = StateOverlay::new();
        base.apply(BTreeMap::from([(b"a".to_vec(), Some(vec![1])), (b"b".to_vec(), Some(vec![2]))]));
        let top = StateOverlay::over(base.clone());
        top.apply(BTreeMap::from([(b"a".to_vec(), None)]));
        assert_eq!(top.get(b"a"), Ok(None));
        assert_eq!(top.get(b"b"), Ok(Some(vec![2])));
        assert_eq!(top.pending(), BTreeMap::from([(b"a".to_vec(), None)]));
    }

    #[test]
    fn adds_saturate_and_treat_malformed_as_zero() {
        let base = StateOverlay::new();
        base.apply(BTreeMap::from([(b"bad".to_vec(), Some(vec![1, 2, 3]))]));
        let mut j = Journal::new(base);
        j.add(b"bad".to_vec(), 7);
        j.add(b"max".to_vec(), u128::MAX - 1);
        j.add(b"max".to_vec(), 9);
        assert_eq!(j.read(b"bad"), Some(7u128.encode()));
        assert_eq!(j.read(b"max"), Some(u128::MAX.encode()));
    }
}
