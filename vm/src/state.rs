//! State as the VM sees it: a committed base ([`StateRead`]) and, per
//! transaction, a journal of writes with checkpoints for nested calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use std::hash::Hasher;

use chroma_analyzer::PredictedAccess;
use rustc_hash::{FxHashMap, FxHasher};
use chroma_host_api::codec::{Decode, Encode};

use crate::tx::Event;

/// A transaction's effect on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// The key's new value (`None` removes it).
    Set(Option<Vec<u8>>),
    /// A commutative saturating add to the `u128` at the key, from a
    /// transaction that neither read nor set the key: applied to whatever
    /// value the key has when the transaction's writes are applied, so that
    /// transactions adding to one key can run at the same time.
    Add(u128),
}

/// A transaction's writes, by full key.
pub type TxWrites = BTreeMap<Vec<u8>, WriteOp>;

/// Adds `amount` to the stored `u128` `current` (absent or malformed counts as 0), saturating.
fn added(current: Option<&[u8]>, amount: u128) -> Vec<u8> {
    let current = current.and_then(|v| u128::decode(v).ok()).unwrap_or(0);
    current.saturating_add(amount).encode()
}

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
    /// `None` marks a key removed since the base. A hash map because every
    /// storage access of every transaction looks a key up here (a `BTreeMap`
    /// of tens of thousands of 68-byte keys cost a `memcmp` per level and a
    /// cache miss per node); it is only iterated through [`sorted`], so its
    /// order never shows.
    entries: RwLock<Entries>,
}

type Entries = FxHashMap<Vec<u8>, Option<Vec<u8>>>;

/// `entries` in key order.
fn sorted(entries: Entries) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    entries.into_iter().collect()
}

impl StateOverlay {
    pub fn new() -> Arc<StateOverlay> {
        Arc::new(StateOverlay::default())
    }

    pub fn over(base: Arc<dyn StateRead>) -> Arc<StateOverlay> {
        Arc::new(StateOverlay { base: RwLock::new(Some(base)), entries: RwLock::default() })
    }

    /// Applies a transaction's writes, atomically for readers: adds are
    /// applied to the values at this moment. An error (reading the base for an
    /// add failed) leaves the overlay unchanged. The keys and values are
    /// moved in: copying them, and freeing the originals, showed in profiles
    /// of serial blocks.
    pub fn apply(&self, writes: TxWrites) -> Result<(), StateError> {
        let base = self.base.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut resolved = Vec::with_capacity(writes.len());
        for (key, op) in writes {
            let value = match op {
                WriteOp::Set(value) => value,
                WriteOp::Add(amount) => {
                    let current = match entries.get(&key) {
                        Some(pending) => pending.clone(),
                        None => match &base {
                            Some(base) => base.get(&key)?,
                            None => None,
                        },
                    };
                    Some(added(current.as_deref(), amount))
                }
            };
            resolved.push((key, value));
        }
        for (key, value) in resolved {
            if value.is_none() && base.is_none() {
                entries.remove(&key);
            } else {
                entries.insert(key, value);
            }
        }
        Ok(())
    }

    /// Applies final values (another overlay's pending entries), each key at
    /// most once: the order they come in does not matter.
    pub fn apply_values(&self, values: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) {
        let values = values.into_iter();
        let has_base = self.base.read().unwrap_or_else(|p| p.into_inner()).is_some();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.reserve(values.size_hint().0);
        for (key, value) in values {
            if value.is_none() && !has_base {
                entries.remove(&key);
            } else {
                entries.insert(key, value);
            }
        }
    }

    /// Takes the pending writes, leaving the overlay empty over its base.
    pub fn take_pending(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        sorted(std::mem::take(&mut *self.entries.write().unwrap_or_else(|p| p.into_inner())))
    }

    /// Drops the pending writes and puts `base` (which now holds them) under the overlay.
    pub fn rebase(&self, base: Arc<dyn StateRead>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(base);
        entries.clear();
    }

    /// The pending writes, in key order.
    pub fn pending(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        sorted(self.entries.read().unwrap_or_else(|p| p.into_inner()).clone())
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

/// Shards of a [`BlockOverlay`]: enough that two threads rarely want the same lock.
const OVERLAY_SHARDS: usize = 64;

/// The writes of a block being executed in parallel, over the state before
/// it. Sharded by key, so that threads reading and applying different keys
/// rarely meet on one lock (with one lock, every finished transaction's
/// writes stopped every reader). Applying is atomic per key, which is all
/// the executor needs: a transaction that conflicts with another starts
/// only after that one's writes are all applied, and one that does not
/// conflict never reads them.
pub struct BlockOverlay {
    base: Arc<dyn StateRead>,
    shards: Vec<RwLock<FxHashMap<Vec<u8>, Option<Vec<u8>>>>>,
}

impl BlockOverlay {
    /// An empty overlay over `base`, with room for about `expected_writes`
    /// keys (the shards' tables grew as they filled: rehashing showed in
    /// profiles of parallel blocks).
    pub fn over(base: Arc<dyn StateRead>, expected_writes: usize) -> Arc<BlockOverlay> {
        let per_shard = expected_writes.div_ceil(OVERLAY_SHARDS);
        let shards = (0..OVERLAY_SHARDS)
            .map(|_| RwLock::new(FxHashMap::with_capacity_and_hasher(per_shard, Default::default())))
            .collect();
        Arc::new(BlockOverlay { base, shards })
    }

    fn shard(&self, key: &[u8]) -> &RwLock<FxHashMap<Vec<u8>, Option<Vec<u8>>>> {
        let mut hasher = FxHasher::default();
        hasher.write(key);
        &self.shards[(hasher.finish() >> 32) as usize % OVERLAY_SHARDS]
    }

    /// Applies a transaction's writes; adds to the value each key has now.
    pub fn apply(&self, writes: &TxWrites) -> Result<(), StateError> {
        for (key, op) in writes {
            let mut shard = self.shard(key).write().unwrap_or_else(|p| p.into_inner());
            let value = match op {
                WriteOp::Set(value) => value.clone(),
                WriteOp::Add(amount) => {
                    let current = match shard.get(key) {
                        Some(pending) => pending.clone(),
                        None => self.base.get(key)?,
                    };
                    Some(added(current.as_deref(), *amount))
                }
            };
            shard.insert(key.clone(), value);
        }
        Ok(())
    }

    /// Takes every pending write, each key once, in no particular order (for
    /// [`StateOverlay::apply_values`], to which the order makes no
    /// difference: sorting them cost a tenth of a parallel block of transfers).
    pub fn take_pending(&self) -> impl ExactSizeIterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        let shards: Vec<_> =
            self.shards.iter().map(|shard| std::mem::take(&mut *shard.write().unwrap_or_else(|p| p.into_inner()))).collect();
        Pending { len: shards.iter().map(|shard| shard.len()).sum(), entries: shards.into_iter().flatten() }
    }
}

/// A [`BlockOverlay`]'s pending writes, counted (so that the overlay they
/// are applied to can make room for them at once).
struct Pending<I> {
    len: usize,
    entries: I,
}

impl<I: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> Iterator for Pending<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.entries.next()?;
        self.len -= 1;
        Some(next)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> ExactSizeIterator for Pending<I> {}

impl StateRead for BlockOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(pending) = self.shard(key).read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(pending.clone());
        }
        self.base.get(key)
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
    overlay: TxWrites,
    /// (key, the overlay's entry before the write) for rollback.
    undo: Vec<(Vec<u8>, Option<WriteOp>)>,
    events: Vec<Event>,
    accesses: AccessSet,
    /// The first storage failure; the transaction's result is then void.
    failure: Option<StateError>,
    /// In a parallel block: the accesses the plan allows this transaction.
    allowed: Option<Arc<PredictedAccess>>,
    /// Whether an access fell outside `allowed`.
    mispredicted: bool,
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
            allowed: None,
            mispredicted: false,
        }
    }

    /// A journal that checks every access against `allowed` (see [`Journal::mispredicted`]).
    pub fn enforcing(base: Arc<dyn StateRead>, allowed: Arc<PredictedAccess>) -> Journal {
        Journal { allowed: Some(allowed), ..Journal::new(base) }
    }

    /// Whether the transaction accessed a key its plan did not allow. Its
    /// effects must then not be applied: it may have seen a state that the
    /// serial order would not have shown it.
    pub fn mispredicted(&self) -> bool {
        self.mispredicted
    }

    fn check(&mut self, key: &[u8], kind: fn(&PredictedAccess) -> &[chroma_analyzer::KeyPattern]) {
        if let Some(allowed) = &self.allowed {
            if !allowed.unbounded && !kind(allowed).iter().any(|p| p.covers(key)) {
                self.mispredicted = true;
            }
        }
    }

    fn base_value(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        match self.base.get(key) {
            Ok(value) => value,
            Err(e) => {
                self.failure.get_or_insert(e);
                None
            }
        }
    }

    fn put(&mut self, key: Vec<u8>, op: WriteOp) {
        let previous = self.overlay.insert(key.clone(), op);
        self.undo.push((key, previous));
    }

    /// The value at `key` as this transaction sees it. The key is kept for
    /// the access set.
    pub fn read(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        self.check(&key, |a| &a.reads);
        let value = match self.overlay.get(&key) {
            Some(WriteOp::Set(value)) => value.clone(),
            Some(&WriteOp::Add(amount)) => {
                let base = self.base_value(&key);
                Some(added(base.as_deref(), amount))
            }
            None => self.base_value(&key),
        };
        self.accesses.reads.insert(key);
        value
    }

    pub fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.check(&key, |a| &a.writes);
        self.accesses.writes.insert(key.clone());
        self.put(key, WriteOp::Set(value));
    }

    /// Saturating add to the `u128` at `key` (absent or malformed counts as 0).
    /// Recorded as an add, not a read and a write, and kept as a delta unless
    /// this transaction set the key: its result does not depend on the order
    /// of adds, and it does not read the key.
    pub fn add(&mut self, key: Vec<u8>, amount: u128) {
        self.check(&key, |a| &a.adds);
        self.accesses.adds.insert(key.clone());
        let op = match self.overlay.get(&key) {
            Some(WriteOp::Set(value)) => WriteOp::Set(Some(added(value.as_deref(), amount))),
            Some(&WriteOp::Add(pending)) => WriteOp::Add(pending.saturating_add(amount)),
            None => WriteOp::Add(amount),
        };
        self.put(key, op);
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
    pub fn finish(self) -> Result<(TxWrites, Vec<Event>, AccessSet), StateError> {
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
        base.apply_values(BTreeMap::from([(b"k".to_vec(), Some(b"base".to_vec()))]));
        let mut j = Journal::new(base.clone());
        j.write(b"k".to_vec(), Some(b"outer".to_vec()));
        let cp = j.checkpoint();
        j.write(b"k".to_vec(), Some(b"inner".to_vec()));
        j.write(b"new".to_vec(), Some(b"x".to_vec()));
        j.add(b"n".to_vec(), 5);
        j.emit(Event { contract: Default::default(), name: "E".into(), data: vec![] });
        assert_eq!(j.read(b"k".to_vec()), Some(b"inner".to_vec()));
        j.rollback(cp);
        assert_eq!(j.read(b"k".to_vec()), Some(b"outer".to_vec()));
        assert_eq!(j.read(b"new".to_vec()), None);
        assert_eq!(j.read(b"n".to_vec()), None);
        assert_eq!(j.event_count(), 0);
        let (writes, _, accesses) = j.finish().expect("no storage failure");
        assert_eq!(writes, BTreeMap::from([(b"k".to_vec(), WriteOp::Set(Some(b"outer".to_vec())))]));
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
        assert_eq!(j.read(b"k".to_vec()), None);
        j.write(b"k".to_vec(), Some(vec![1]));
        assert_eq!(j.finish().err(), Some(StateError("disk on fire".into())));
    }

    #[test]
    fn overlay_removals_shadow_the_base() {
        let base = StateOverlay::new();
        base.apply_values(BTreeMap::from([(b"a".to_vec(), Some(vec![1])), (b"b".to_vec(), Some(vec![2]))]));
        let top = StateOverlay::over(base.clone());
        top.apply(BTreeMap::from([(b"a".to_vec(), WriteOp::Set(None))])).expect("no base read");
        assert_eq!(top.get(b"a"), Ok(None));
        assert_eq!(top.get(b"b"), Ok(Some(vec![2])));
        assert_eq!(top.pending(), BTreeMap::from([(b"a".to_vec(), None)]));
    }

    #[test]
    fn adds_saturate_and_treat_malformed_as_zero() {
        let base = StateOverlay::new();
        base.apply_values(BTreeMap::from([(b"bad".to_vec(), Some(vec![1, 2, 3]))]));
        let mut j = Journal::new(base);
        j.add(b"bad".to_vec(), 7);
        j.add(b"max".to_vec(), u128::MAX - 1);
        j.add(b"max".to_vec(), 9);
        assert_eq!(j.read(b"bad".to_vec()), Some(7u128.encode()));
        assert_eq!(j.read(b"max".to_vec()), Some(u128::MAX.encode()));
    }

    /// Two transactions that add to one key, run from the same state, both count.
    #[test]
    fn adds_are_deltas_applied_to_the_value_at_apply_time() {
        let key = b"total".to_vec();
        let base = StateOverlay::new();
        base.apply_values(BTreeMap::from([(key.clone(), Some(10u128.encode()))]));
        let block = StateOverlay::over(base.clone());
        let mut first = Journal::new(block.clone());
        let mut second = Journal::new(block.clone());
        first.add(key.clone(), 5);
        second.add(key.clone(), 7);
        second.add(key.clone(), 1);
        for journal in [first, second] {
            let (writes, _, accesses) = journal.finish().expect("no storage failure");
            assert!(accesses.reads.is_empty(), "an add does not read");
            block.apply(writes).expect("the base is readable");
        }
        assert_eq!(block.get(&key), Ok(Some(23u128.encode())));

        // Setting a key and then adding to it is a plain write of the sum.
        let mut j = Journal::new(block.clone());
        j.write(key.clone(), Some(2u128.encode()));
        j.add(key.clone(), 3);
        let (writes, _, _) = j.finish().expect("no storage failure");
        assert_eq!(writes[&key], WriteOp::Set(Some(5u128.encode())));
    }

    #[test]
    fn an_enforcing_journal_flags_accesses_outside_the_plan() {
        use chroma_analyzer::KeyPattern;
        let allowed = Arc::new(PredictedAccess {
            reads: vec![KeyPattern::Exact(b"a".to_vec())],
            writes: vec![KeyPattern::Prefix(b"s/".to_vec())],
            adds: vec![KeyPattern::Exact(b"n".to_vec())],
            unbounded: false,
        });
        let mut j = Journal::enforcing(StateOverlay::new(), allowed.clone());
        j.read(b"a".to_vec());
        j.write(b"s/1".to_vec(), None);
        j.add(b"n".to_vec(), 1);
        assert!(!j.mispredicted());
        j.add(b"a".to_vec(), 1);
        assert!(j.mispredicted(), "a key allowed to be read is not allowed to be added to");
        let mut j = Journal::enforcing(StateOverlay::new(), allowed);
        j.read(b"s/1".to_vec());
        assert!(j.mispredicted());
    }
}
