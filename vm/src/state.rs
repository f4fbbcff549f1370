//! State as the VM sees it: a committed base ([`StateRead`]) and, per
//! transaction, a journal of writes with checkpoints for nested calls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use std::hash::Hasher;

use chroma_analyzer::PredictedAccess;
use rustc_hash::{FxHashMap, FxHasher};
use smallvec::SmallVec;
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
    sum(current, amount).encode()
}

/// [`added`], encoded straight into a table's value (no vector between).
fn added_value(current: Option<&[u8]>, amount: u128) -> ValueBuf {
    let mut value = ValueBuf::new();
    sum(current, amount).encode_to(&mut ValueWriter(&mut value));
    value
}

fn sum(current: Option<&[u8]>, amount: u128) -> u128 {
    current.and_then(|v| u128::decode(v).ok()).unwrap_or(0).saturating_add(amount)
}

/// Encodes into a table's value.
struct ValueWriter<'a>(&'a mut ValueBuf);

impl chroma_host_api::codec::Writer for ValueWriter<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Reading the state failed (the disk, not the contract): the block cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage failed: {0}")]
pub struct StateError(pub String);

/// Committed state: full keys (see `chroma_host_api::key`) to values.
pub trait StateRead: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Calls `with` once with the value at `key` (`None`: absent), lent
    /// where the state can lend it, unless reading fails: a read that only
    /// copies the value somewhere (a contract's `storage_read`, into its
    /// memory) then allocates nothing.
    fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StateError> {
        with(self.get(key)?.as_deref());
        Ok(())
    }
}

/// Writes not yet persisted, over an optional base (the last committed block
/// on disk). Without a base it is a whole in-memory state.
#[derive(Default)]
pub struct StateOverlay {
    base: RwLock<Option<Base>>,
    /// `None` marks a key removed since the base. A hash map because every
    /// storage access of every transaction looks a key up here (a `BTreeMap`
    /// of tens of thousands of 68-byte keys cost a `memcmp` per level and a
    /// cache miss per node); it is only iterated through [`sorted`], so its
    /// order never shows.
    entries: RwLock<Entries>,
    /// Held by whoever changes `entries`: an apply reads the values its
    /// adds sum under the read lock, and then writes them, so that readers
    /// (the other threads of a parallel block) wait only while values go in.
    writer: Mutex<()>,
}

type Entries = FxHashMap<KeyBuf, Option<ValueBuf>>;

/// A key as a state table holds it: inline up to 72 bytes (a balance's key
/// is 68), so that a lookup compares it where the table's entry is instead
/// of following it to an allocation of its own. With keys and values each
/// in an allocation of its own, a lookup that found its key missed the
/// cache at the entry, at the key and at the value: in serial transfer
/// blocks (`exec_profile serial transfers 10000 60`, steady state) `memcmp`
/// was 10.7% of the samples, nearly all of it that miss, and 3.2% inline;
/// freeing and allocating went from 12% to 8.7%. Keys and values are copied
/// in (a key moved in as its vector had been cost no copy, but every lookup
/// paid for it).
type KeyBuf = SmallVec<[u8; 72]>;

/// A value as a state table holds it: inline up to 24 bytes (a balance is
/// 16, a nonce 8). An entry of the table is 120 bytes.
type ValueBuf = SmallVec<[u8; 24]>;

fn value_buf(value: Option<Vec<u8>>) -> Option<ValueBuf> {
    value.map(|v| ValueBuf::from_slice(&v))
}

fn value_vec(value: &Option<ValueBuf>) -> Option<Vec<u8>> {
    value.as_ref().map(|v| v.to_vec())
}

/// A block's pending writes, taken out of a [`StateOverlay`] (see
/// [`StateOverlay::take_pending_entries`]).
#[derive(Default)]
pub struct PendingWrites(Entries);

impl PendingWrites {
    /// The writes in key order (`None`: removed), borrowed. Sorted as a
    /// vector: collected into a `BTreeMap`, a 10,000-transfer block's writes
    /// took 3-4 ms, an eighth of its commit.
    pub fn sorted(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut writes: Vec<_> = self.0.iter().map(|(key, value)| (&key[..], value.as_deref())).collect();
        // Keys are unique: an unstable sort gives the one order.
        writes.sort_unstable_by_key(|&(key, _)| key);
        writes
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// See [`StateOverlay::known_in_base`].
pub struct KnownValues<'a>(std::sync::RwLockReadGuard<'a, Option<Base>>);

impl KnownValues<'_> {
    /// Calls `with` with the value at `key` (`None`: absent) if it is known,
    /// and says whether it was.
    pub fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> bool {
        match self.0.as_ref().and_then(|base| base.known.get(key)) {
            Some(value) => {
                with(value.as_deref());
                true
            }
            None => false,
        }
    }
}

/// The committed state under an overlay, and what is known of it in memory.
struct Base {
    read: Arc<dyn StateRead>,
    /// Values known to equal `read`'s (`None`: known absent): the writes of
    /// the block last committed to it ([`StateOverlay::rebase_committed`]).
    /// A node's base is its database, where a read walks a B-tree through
    /// redb's page cache: in a node's 10,000-transfer blocks those reads were
    /// a tenth of the samples. The keys a block writes are the ones the next
    /// block reads most (balances, nonces, pools). Only the last block's:
    /// merging each block's writes into a map of the earlier ones' cost
    /// 400-600 ns a key (measured when the tables' keys were allocations of
    /// their own: a cache miss or more on each), as much as the reads it
    /// saved, while this map is the block's pending table, kept as it is.
    known: Entries,
}

impl Base {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.known.get(key) {
            Some(value) => Ok(value_vec(value)),
            None => self.read.get(key),
        }
    }

    fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StateError> {
        match self.known.get(key) {
            Some(value) => {
                with(value.as_deref());
                Ok(())
            }
            None => self.read.read_with(key, with),
        }
    }
}

/// `entries` in key order.
fn sorted(entries: &Entries) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    entries.iter().map(|(key, value)| (key.to_vec(), value_vec(value))).collect()
}

impl StateOverlay {
    pub fn new() -> Arc<StateOverlay> {
        Arc::new(StateOverlay::default())
    }

    pub fn over(base: Arc<dyn StateRead>) -> Arc<StateOverlay> {
        let base = Base { read: base, known: Entries::default() };
        Arc::new(StateOverlay { base: RwLock::new(Some(base)), ..StateOverlay::default() })
    }

    /// Applies a transaction's writes, atomically for readers: adds are
    /// applied to the values at this moment. An error (reading the base for an
    /// add failed) leaves the overlay unchanged. The keys and values are
    /// copied into the table's entries (see [`KeyBuf`]) and the originals
    /// freed here, on the thread that made them.
    pub fn apply(&self, writes: TxWrites) -> Result<(), StateError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // Held while the adds are resolved: only `rebase`, which takes the
        // writer lock first, changes the base.
        let base = self.base.read().unwrap_or_else(|p| p.into_inner());
        let resolved = {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            let mut resolved = Vec::with_capacity(writes.len());
            for (key, op) in writes {
                let value = match op {
                    WriteOp::Set(value) => value_buf(value),
                    // Summed where the current value is (copied out first,
                    // every add cost an allocation and a free).
                    WriteOp::Add(amount) => Some(match (entries.get(&key[..]), &*base) {
                        (Some(pending), _) => added_value(pending.as_deref(), amount),
                        (None, Some(base)) => {
                            let mut sum = None;
                            base.read_with(&key, &mut |current| sum = Some(added_value(current, amount)))?;
                            sum.unwrap_or_else(|| added_value(None, amount))
                        }
                        (None, None) => added_value(None, amount),
                    }),
                };
                resolved.push((key, value));
            }
            resolved
        };
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in resolved {
            if value.is_none() && base.is_none() {
                entries.remove(&key[..]);
            } else {
                entries.insert(KeyBuf::from_slice(&key), value);
            }
        }
        Ok(())
    }

    /// Applies final values (another overlay's pending entries), each key at
    /// most once: the order they come in does not matter.
    pub fn apply_values(&self, values: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>) {
        let values = values.into_iter();
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let has_base = self.base.read().unwrap_or_else(|p| p.into_inner()).is_some();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.reserve(values.size_hint().0);
        for (key, value) in values {
            if value.is_none() && !has_base {
                entries.remove(&key[..]);
            } else {
                entries.insert(KeyBuf::from_slice(&key), value_buf(value));
            }
        }
    }

    /// Makes room for `additional` more pending keys at once (a block's
    /// writes, before it runs): grown write by write, the table of a
    /// 10,000-transfer block was rehashed a dozen times, into memory the
    /// system zeroed first.
    pub fn reserve(&self, additional: usize) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.entries.write().unwrap_or_else(|p| p.into_inner()).reserve(additional);
    }

    /// Takes the pending writes as they are held, leaving the overlay empty
    /// over its base (for [`StateOverlay::rebase_committed`] once they are
    /// committed; [`PendingWrites::sorted`] lists them in key order).
    pub fn take_pending_entries(&self) -> PendingWrites {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        PendingWrites(std::mem::take(&mut *self.entries.write().unwrap_or_else(|p| p.into_inner())))
    }

    /// Drops the pending writes and puts `base` (which now holds them) under
    /// the overlay, knowing nothing of it in memory.
    pub fn rebase(&self, base: Arc<dyn StateRead>) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Some(Base { read: base, known: Entries::default() });
        entries.clear();
    }

    /// [`StateOverlay::rebase`] onto `base`, which is the current base with
    /// exactly `committed` (taken by [`StateOverlay::take_pending_entries`])
    /// written to it: those values are kept known in memory, and read there
    /// rather than from `base`. Returns the values known until now, to be
    /// dropped by the caller when it suits (freeing a block's writes takes a
    /// millisecond or more; the locks are not held for it).
    pub fn rebase_committed(&self, base: Arc<dyn StateRead>, committed: PendingWrites) -> PendingWrites {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut current = self.base.write().unwrap_or_else(|p| p.into_inner());
        let previous = current.replace(Base { read: base, known: committed.0 });
        entries.clear();
        PendingWrites(previous.map(|base| base.known).unwrap_or_default())
    }

    /// The values known in memory to be the base's (see
    /// [`StateOverlay::rebase_committed`]), locked for reading until dropped:
    /// the threads of a commit look thousands of keys up, and taking the
    /// lock for each made them contend on it.
    pub fn known_in_base(&self) -> KnownValues<'_> {
        KnownValues(self.base.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The pending writes, in key order.
    pub fn pending(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        sorted(&self.entries.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The entries held in memory (for a VM without a base: the whole state).
    pub fn snapshot(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.iter().filter_map(|(k, v)| v.as_ref().map(|v| (k.to_vec(), v.to_vec()))).collect()
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
            return Ok(value_vec(pending));
        }
        match &*self.base.read().unwrap_or_else(|p| p.into_inner()) {
            Some(base) => base.get(key),
            None => Ok(None),
        }
    }

    fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StateError> {
        if let Some(pending) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            with(pending.as_deref());
            return Ok(());
        }
        match &*self.base.read().unwrap_or_else(|p| p.into_inner()) {
            Some(base) => base.read_with(key, with),
            None => {
                with(None);
                Ok(())
            }
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
///
/// Each key keeps its writes, with the transaction that made them, in the
/// order they were applied (a key's [`History`]), and a read folds them over
/// the base. The writes are moved in, not copied, and the state as of any
/// transaction can still be taken ([`BlockOverlay::take_before`]): when a
/// transaction mispredicts, the effects of the ones before it are applied
/// and the rest are dropped. Writes that do not commute (a set with
/// anything else on its key) are ordered by the plan, so a key's history
/// lists them in block order; adds between them may come in any order,
/// and their sum does not depend on it.
pub struct BlockOverlay {
    base: Arc<dyn StateRead>,
    shards: Vec<RwLock<Shard>>,
}

/// A shard's written keys. A table of entries that keep their key's hash:
/// the hash picks the shard and finds the entry, computed once per key and
/// access (a map keyed by the key hashed it again for the lookup).
type Shard = hashbrown::HashTable<Written>;

/// One written key of a [`BlockOverlay`].
struct Written {
    hash: u64,
    key: Vec<u8>,
    history: History,
}

/// One key's writes in a [`BlockOverlay`], by transaction (the index in the
/// segment), in the order they were applied. Most keys have one.
type History = SmallVec<[(usize, WriteOp); 1]>;

fn hash_of(key: &[u8]) -> u64 {
    let mut hasher = FxHasher::default();
    hasher.write(key);
    hasher.finish()
}

/// [`fold`] of a whole history taken out of the overlay: when the last write
/// sets the key (as it does for all but added-to keys), its value is moved
/// out instead of copied.
fn fold_owned(
    mut history: History,
    base: impl FnOnce() -> Result<Option<Vec<u8>>, StateError>,
) -> Result<Option<Vec<u8>>, StateError> {
    if let Some((_, WriteOp::Set(value))) = history.last_mut() {
        return Ok(std::mem::take(value));
    }
    fold(history.iter().map(|(_, op)| op), base)
}

/// The value of a key whose `history` (filtered to the transactions wanted)
/// applies over `base`: the last set, or the base value, plus the adds after it.
fn fold<'h>(
    history: impl DoubleEndedIterator<Item = &'h WriteOp> + Clone,
    base: impl FnOnce() -> Result<Option<Vec<u8>>, StateError>,
) -> Result<Option<Vec<u8>>, StateError> {
    let mut adds_after = 0usize;
    let mut last_set = None;
    for op in history.clone().rev() {
        match op {
            WriteOp::Set(value) => {
                last_set = Some(value);
                break;
            }
            WriteOp::Add(_) => adds_after += 1,
        }
    }
    let value = match last_set {
        Some(value) => value.clone(),
        None => base()?,
    };
    if adds_after == 0 {
        return Ok(value);
    }
    // The adds summed first and encoded once (as `added` one by one would:
    // saturating adds of non-negative amounts commute).
    let skip = history.clone().count() - adds_after;
    let sum = history.skip(skip).fold(0u128, |sum, op| match op {
        WriteOp::Add(amount) => sum.saturating_add(*amount),
        WriteOp::Set(_) => sum,
    });
    Ok(Some(added(value.as_deref(), sum)))
}

impl BlockOverlay {
    /// An empty overlay over `base`, with room for about `expected_writes`
    /// keys (the shards' tables grew as they filled: rehashing showed in
    /// profiles of parallel blocks).
    pub fn over(base: Arc<dyn StateRead>, expected_writes: usize) -> Arc<BlockOverlay> {
        let per_shard = expected_writes.div_ceil(OVERLAY_SHARDS);
        let shards = (0..OVERLAY_SHARDS).map(|_| RwLock::new(Shard::with_capacity(per_shard))).collect();
        Arc::new(BlockOverlay { base, shards })
    }

    /// The shard of a key with `hash`: bits the table does not use to place
    /// entries (hashbrown takes the low bits for the bucket and the top seven
    /// for its control bytes).
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.shards[(hash >> 32) as usize % OVERLAY_SHARDS]
    }

    /// Applies the writes of transaction `tx` (its index in the segment).
    pub fn apply(&self, tx: usize, writes: TxWrites) {
        for (key, op) in writes {
            let hash = hash_of(&key);
            let mut shard = self.shard(hash).write().unwrap_or_else(|p| p.into_inner());
            match shard.find_mut(hash, |written| written.key == key) {
                Some(written) => written.history.push((tx, op)),
                None => {
                    let history = SmallVec::from_buf([(tx, op)]);
                    shard.insert_unique(hash, Written { hash, key, history }, |written| written.hash);
                }
            }
        }
    }

    /// Takes the final value of every key written, each key once, in no
    /// particular order (for [`StateOverlay::apply_values`], to which the
    /// order makes no difference: sorting them cost a tenth of a parallel
    /// block of transfers).
    pub fn take_pending(&self) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, StateError> {
        self.take_before(usize::MAX, None)
    }

    /// Takes the final values of the keys written by transactions before
    /// `tx` (their writes only), in no particular order; the shards folded
    /// on `pool` if given (at a segment's end the pool's threads are idle,
    /// and one thread folding 30,000 keys was a tenth of a block of
    /// transfers).
    pub fn take_before(
        &self,
        tx: usize,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, StateError> {
        let shards: Vec<Shard> =
            self.shards.iter().map(|shard| std::mem::take(&mut *shard.write().unwrap_or_else(|p| p.into_inner()))).collect();
        let folded: Vec<Result<Vec<_>, StateError>> = match pool {
            Some(pool) => {
                use rayon::prelude::*;
                pool.install(|| shards.into_par_iter().map(|shard| self.fold_shard(shard, tx)).collect())
            }
            None => shards.into_iter().map(|shard| self.fold_shard(shard, tx)).collect(),
        };
        let mut values = Vec::new();
        for shard in folded {
            let shard = shard?;
            if values.is_empty() {
                values.reserve(shard.len() * OVERLAY_SHARDS);
            }
            values.extend(shard);
        }
        Ok(values)
    }

    /// The final values of one shard's keys written before `tx`.
    fn fold_shard(&self, shard: Shard, tx: usize) -> Result<Vec<(Vec<u8>, Option<Vec<u8>>)>, StateError> {
        let mut values = Vec::with_capacity(shard.len());
        for Written { key, history, .. } in shard {
            let value = if history.iter().all(|(writer, _)| *writer < tx) {
                fold_owned(history, || self.base.get(&key))?
            } else {
                let before = history.iter().filter(|(writer, _)| *writer < tx).map(|(_, op)| op);
                if before.clone().next().is_none() {
                    continue;
                }
                fold(before, || self.base.get(&key))?
            };
            values.push((key, value));
        }
        Ok(values)
    }
}

impl StateRead for BlockOverlay {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let hash = hash_of(key);
        if let Some(written) = self.shard(hash).read().unwrap_or_else(|p| p.into_inner()).find(hash, |w| w.key == key) {
            return fold(written.history.iter().map(|(_, op)| op), || self.base.get(key));
        }
        self.base.get(key)
    }

    fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StateError> {
        let hash = hash_of(key);
        if let Some(written) = self.shard(hash).read().unwrap_or_else(|p| p.into_inner()).find(hash, |w| w.key == key) {
            // A key last set is lent as it is; one added to since is folded.
            if let Some((_, WriteOp::Set(value))) = written.history.last() {
                with(value.as_deref());
                return Ok(());
            }
            with(fold(written.history.iter().map(|(_, op)| op), || self.base.get(key))?.as_deref());
            return Ok(());
        }
        self.base.read_with(key, with)
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
    /// (key, the overlay's entry before the write) for rollback, recorded
    /// only while a checkpoint is open: a transaction's top-level call takes
    /// none (its writes are dropped whole if it fails), so its writes copy
    /// no key for an undo that never comes.
    undo: Vec<(Vec<u8>, Option<WriteOp>)>,
    /// Checkpoints taken and not yet released or rolled back.
    open_checkpoints: u32,
    events: Vec<Event>,
    accesses: AccessSet,
    /// The first storage failure; the transaction's result is then void.
    failure: Option<StateError>,
    /// In a parallel block: the accesses the plan allows this transaction.
    allowed: Option<PredictedAccess>,
    /// Whether `accesses` is kept (see [`Journal::recording_accesses`]).
    record_accesses: bool,
    /// Whether an access fell outside `allowed`.
    mispredicted: bool,
}

impl Journal {
    pub fn new(base: Arc<dyn StateRead>) -> Journal {
        Journal {
            base,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
            open_checkpoints: 0,
            events: Vec::new(),
            accesses: AccessSet::default(),
            failure: None,
            allowed: None,
            record_accesses: true,
            mispredicted: false,
        }
    }

    /// Whether to keep the set of keys accessed (on by default). Keeping it
    /// costs a copy of every key written or added to and a sorted insert per
    /// access: about 15% of a transfer.
    pub fn recording_accesses(self, record_accesses: bool) -> Journal {
        Journal { record_accesses, ..self }
    }

    /// A journal that checks every access against `allowed` (see [`Journal::mispredicted`]).
    pub fn enforcing(base: Arc<dyn StateRead>, allowed: PredictedAccess) -> Journal {
        Journal { allowed: Some(allowed), ..Journal::new(base) }
    }

    /// Whether the transaction accessed a key its plan did not allow. Its
    /// effects must then not be applied: it may have seen a state that the
    /// serial order would not have shown it.
    pub fn mispredicted(&self) -> bool {
        self.mispredicted
    }

    fn check(&mut self, key: &[u8], kind: fn(&PredictedAccess) -> chroma_analyzer::Patterns<'_>) {
        if let Some(allowed) = &self.allowed {
            if !allowed.is_unbounded() && !kind(allowed).covers(key) {
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
        if self.open_checkpoints == 0 {
            self.overlay.insert(key, op);
            return;
        }
        let previous = self.overlay.insert(key.clone(), op);
        self.undo.push((key, previous));
    }

    /// Calls `with` once with the value at `key` as this transaction sees
    /// it, lent where it can be (see [`StateRead::read_with`]); the key is
    /// copied for the access set only when that is recorded. A storage
    /// failure is kept (see [`Journal::finish`]) and reads as absent.
    pub fn read_with(&mut self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) {
        self.check(key, PredictedAccess::readable);
        match self.overlay.get(key) {
            Some(WriteOp::Set(value)) => with(value.as_deref()),
            Some(&WriteOp::Add(amount)) => {
                let base = self.base_value(key);
                with(Some(&added(base.as_deref(), amount)));
            }
            None => {
                if let Err(e) = self.base.read_with(key, with) {
                    self.failure.get_or_insert(e);
                    with(None);
                }
            }
        }
        if self.record_accesses {
            self.accesses.reads.insert(key.to_vec());
        }
    }

    /// The value at `key` as this transaction sees it, copied (see
    /// [`Journal::read_with`], which contracts' reads use).
    pub fn read(&mut self, key: Vec<u8>) -> Option<Vec<u8>> {
        let mut value = None;
        self.read_with(&key, &mut |lent| value = lent.map(<[u8]>::to_vec));
        value
    }

    pub fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.check(&key, PredictedAccess::writes);
        if self.record_accesses {
            self.accesses.writes.insert(key.clone());
        }
        self.put(key, WriteOp::Set(value));
    }

    /// Saturating add to the `u128` at `key` (absent or malformed counts as 0).
    /// Recorded as an add, not a read and a write, and kept as a delta unless
    /// this transaction set the key: its result does not depend on the order
    /// of adds, and it does not read the key.
    pub fn add(&mut self, key: Vec<u8>, amount: u128) {
        self.check(&key, PredictedAccess::addable);
        if self.record_accesses {
            self.accesses.adds.insert(key.clone());
        }
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

    /// A position to roll back to; until it is released or rolled back,
    /// writes record how to undo them.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.open_checkpoints += 1;
        Checkpoint { undo_len: self.undo.len(), events_len: self.events.len() }
    }

    /// Keeps everything since `checkpoint` (the call it guarded succeeded).
    pub fn release(&mut self, checkpoint: Checkpoint) {
        debug_assert!(checkpoint.undo_len <= self.undo.len() && self.open_checkpoints > 0);
        self.close_checkpoint();
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
        self.close_checkpoint();
    }

    fn close_checkpoint(&mut self) {
        self.open_checkpoints = self.open_checkpoints.saturating_sub(1);
        if self.open_checkpoints == 0 {
            // No checkpoint can reach these entries any more.
            self.undo.clear();
        }
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

    /// What `read_with` lends is what `get` returns, through every state a
    /// transaction reads: an overlay over another (a key removed on top),
    /// a block's writes over it (a key set, a key added to), and the
    /// journal's own writes and adds; `with` is called exactly once.
    #[test]
    fn read_with_lends_what_get_returns() {
        let base = StateOverlay::new();
        base.apply_values([(b"a".to_vec(), Some(b"1".to_vec())), (b"n".to_vec(), Some(5u128.encode()))]);
        let top = StateOverlay::over(base.clone());
        top.apply_values([(b"b".to_vec(), Some(b"2".to_vec())), (b"a".to_vec(), None)]);
        let block = BlockOverlay::over(top.clone(), 4);
        // Keys with several writes: set twice, set then added to, added to twice.
        block.apply(0, BTreeMap::from([(b"c".to_vec(), WriteOp::Set(Some(b"3".to_vec()))), (b"n".to_vec(), WriteOp::Add(7)), (b"z".to_vec(), WriteOp::Set(Some(9u128.encode())))]));
        block.apply(1, BTreeMap::from([(b"b".to_vec(), WriteOp::Set(None)), (b"c".to_vec(), WriteOp::Set(Some(b"5".to_vec()))), (b"n".to_vec(), WriteOp::Add(1)), (b"z".to_vec(), WriteOp::Add(2))]));
        let keys: [&[u8]; 6] = [b"a", b"b", b"c", b"n", b"z", b"absent"];
        let states: [(&str, &dyn StateRead); 3] = [("base", &*base), ("top", &*top), ("block", &*block)];
        for (name, state) in states {
            for key in keys {
                let mut lent = Vec::new();
                state.read_with(key, &mut |value| lent.push(value.map(<[u8]>::to_vec))).expect("read");
                assert_eq!(lent, vec![state.get(key).expect("read")], "{name} {key:?}");
            }
        }
        assert_eq!(block.get(b"n").expect("read"), Some(13u128.encode()), "the adds folded over the base");
        assert_eq!(block.get(b"c").expect("read"), Some(b"5".to_vec()), "the last set");
        assert_eq!(block.get(b"z").expect("read"), Some(11u128.encode()), "the set, then the add");
        let mut journal = Journal::new(block.clone());
        journal.write(b"a".to_vec(), Some(b"4".to_vec()));
        journal.add(b"c".to_vec(), 2);
        journal.add(b"n".to_vec(), 1);
        // Its own write, the block's removal, an add over a value that is not
        // a number (counted as 0), adds over the block's folded ones, none.
        let expected: [Option<Vec<u8>>; 6] = [Some(b"4".to_vec()), None, Some(2u128.encode()), Some(14u128.encode()), Some(11u128.encode()), None];
        for (key, expected) in keys.into_iter().zip(expected) {
            let mut lent = Vec::new();
            journal.read_with(key, &mut |value| lent.push(value.map(<[u8]>::to_vec)));
            assert_eq!(lent, vec![journal.read(key.to_vec())], "journal {key:?}");
            assert_eq!(lent, vec![expected], "journal {key:?}");
        }
        let (_, _, accesses) = journal.finish().expect("no storage failure");
        assert!(keys.iter().all(|k| accesses.reads.contains(*k)), "both ways of reading record the key");
    }

    /// A read that fails is seen as absent, once, and the failure is kept.
    #[test]
    fn a_failed_read_with_is_absent_and_kept() {
        let mut journal = Journal::new(Arc::new(Broken));
        let mut lent = Vec::new();
        journal.read_with(b"k", &mut |value| lent.push(value.map(<[u8]>::to_vec)));
        assert_eq!(lent, vec![None]);
        assert!(journal.finish().is_err());
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

    /// An add whose base cannot be read fails the whole apply, before any
    /// of its writes lands (its other writes included); an add to a key
    /// pending in the overlay does not read the base at all.
    #[test]
    fn an_add_over_an_unreadable_base_applies_nothing() {
        let top = StateOverlay::over(Arc::new(Broken));
        top.reserve(4);
        top.apply_values([(b"pending".to_vec(), Some(5u128.encode()))]);
        let failing = BTreeMap::from([(b"a".to_vec(), WriteOp::Set(Some(vec![1]))), (b"fresh".to_vec(), WriteOp::Add(2)), (b"pending".to_vec(), WriteOp::Add(1))]);
        assert_eq!(top.apply(failing), Err(StateError("disk on fire".into())));
        assert_eq!(top.pending(), BTreeMap::from([(b"pending".to_vec(), Some(5u128.encode()))]));
        top.apply(BTreeMap::from([(b"pending".to_vec(), WriteOp::Add(1))])).expect("a pending key reads no base");
        assert_eq!(top.pending(), BTreeMap::from([(b"pending".to_vec(), Some(6u128.encode()))]));
    }

    /// A committed block's writes are read from memory, removals included,
    /// and adds resolve over them; the next commit forgets them.
    #[test]
    fn the_last_committed_writes_are_read_from_memory() {
        let base = StateOverlay::new();
        base.apply_values([(b"a".to_vec(), Some(vec![1])), (b"b".to_vec(), Some(vec![2])), (b"n".to_vec(), Some(5u128.encode()))]);
        let top = StateOverlay::over(base.clone());
        top.apply(BTreeMap::from([(b"a".to_vec(), WriteOp::Set(Some(vec![10]))), (b"b".to_vec(), WriteOp::Set(None)), (b"n".to_vec(), WriteOp::Add(2))])).expect("applied");
        let pending = top.take_pending_entries();
        let seven = 7u128.encode();
        let expected: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(&[10])), (b"b", None), (b"n", Some(&seven))];
        assert_eq!(pending.sorted(), expected, "in key order, removals as None");
        // Committed to a base that can read nothing: what is known never reaches it.
        let previous = top.rebase_committed(Arc::new(Broken), pending);
        assert!(previous.is_empty());
        assert!(top.pending().is_empty());
        assert_eq!((top.get(b"a"), top.get(b"b"), top.get(b"n")), (Ok(Some(vec![10])), Ok(None), Ok(Some(7u128.encode()))));
        assert_eq!(top.get(b"other"), Err(StateError("disk on fire".into())), "an unknown key reads the base");
        let mut lent = Vec::new();
        let known = top.known_in_base();
        assert!(known.read_with(b"b", &mut |value| lent.push(value.map(<[u8]>::to_vec))));
        assert!(!known.read_with(b"other", &mut |_| unreachable!("not known")));
        assert_eq!(lent, vec![None]);
        drop(known);
        top.apply(BTreeMap::from([(b"n".to_vec(), WriteOp::Add(1))])).expect("an add over a known value reads no base");
        let pending = top.take_pending_entries();
        let previous = top.rebase_committed(Arc::new(Broken), pending);
        assert_eq!(previous.len(), 3, "the block before's writes are handed back");
        assert_eq!(top.get(b"n"), Ok(Some(8u128.encode())));
        assert_eq!(top.get(b"a"), Err(StateError("disk on fire".into())), "known only until the next commit");
        top.rebase(base);
        assert_eq!(top.get(b"n"), Ok(Some(5u128.encode())), "a plain rebase knows nothing");
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

    /// A block overlay folds each key's writes over the base, and gives the
    /// state as of any transaction: what a misprediction keeps.
    #[test]
    fn a_block_overlay_gives_the_state_before_any_transaction() {
        let (counter, fresh, gone) = (b"counter".to_vec(), b"fresh".to_vec(), b"gone".to_vec());
        let base = StateOverlay::new();
        base.apply_values(BTreeMap::from([(fresh.clone(), Some(7u128.encode())), (gone.clone(), Some(b"x".to_vec()))]));
        let writes = |ops: Vec<(&Vec<u8>, WriteOp)>| -> TxWrites { ops.into_iter().map(|(k, op)| (k.clone(), op)).collect() };
        let fill = || {
            let block = BlockOverlay::over(base.clone(), 4);
            // The order a plan allows: transactions 1 and 2 only add to the
            // counter, so they may finish in either order.
            block.apply(0, writes(vec![(&counter, WriteOp::Set(Some(10u128.encode()))), (&fresh, WriteOp::Add(3))]));
            block.apply(2, writes(vec![(&counter, WriteOp::Add(5))]));
            block.apply(1, writes(vec![(&counter, WriteOp::Add(2)), (&gone, WriteOp::Set(None))]));
            block.apply(3, writes(vec![(&counter, WriteOp::Set(Some(100u128.encode())))]));
            block.apply(4, writes(vec![(&counter, WriteOp::Add(1)), (&fresh, WriteOp::Add(1))]));
            block
        };
        let block = fill();
        assert_eq!(block.get(&counter), Ok(Some(101u128.encode())));
        assert_eq!(block.get(&fresh), Ok(Some(11u128.encode())), "adds fold over the base value");
        assert_eq!(block.get(&gone), Ok(None));
        assert_eq!(block.get(b"untouched"), Ok(None));

        // Folded on one thread and on a pool, alike.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool");
        let before = |tx: usize| -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
            let here: BTreeMap<_, _> = fill().take_before(tx, None).expect("the base is readable").into_iter().collect();
            let pooled: BTreeMap<_, _> = fill().take_before(tx, Some(&pool)).expect("readable").into_iter().collect();
            assert_eq!(here, pooled);
            here
        };
        let value = |n: u128| Some(n.encode());
        assert_eq!(before(0), BTreeMap::new());
        assert_eq!(before(1), BTreeMap::from([(counter.clone(), value(10)), (fresh.clone(), value(10))]));
        assert_eq!(before(2), BTreeMap::from([(counter.clone(), value(12)), (fresh.clone(), value(10)), (gone.clone(), None)]));
        assert_eq!(before(3), BTreeMap::from([(counter.clone(), value(17)), (fresh.clone(), value(10)), (gone.clone(), None)]));
        let all: BTreeMap<_, _> = fill().take_pending().expect("the base is readable").into_iter().collect();
        assert_eq!(all, BTreeMap::from([(counter.clone(), value(101)), (fresh.clone(), value(11)), (gone.clone(), None)]));
        assert_eq!(all, before(5));
    }

    #[test]
    fn an_enforcing_journal_flags_accesses_outside_the_plan() {
        use chroma_analyzer::KeyPattern;
        let allowed = PredictedAccess::new(vec![KeyPattern::exact(b"a")], vec![KeyPattern::prefix(b"s/")], vec![KeyPattern::exact(b"n")]);
        let mut j = Journal::enforcing(StateOverlay::new(), allowed.clone());
        j.read(b"a".to_vec());
        j.write(b"s/1".to_vec(), None);
        j.add(b"n".to_vec(), 1);
        assert!(!j.mispredicted());
        j.add(b"a".to_vec(), 1);
        assert!(j.mispredicted(), "a key allowed to be read is not allowed to be added to");
        // A write allows a read and an add of its keys, and nothing else does.
        let mut j = Journal::enforcing(StateOverlay::new(), allowed.clone());
        j.read(b"s/1".to_vec());
        j.add(b"s/2".to_vec(), 1);
        assert!(!j.mispredicted(), "read and added to under a written prefix");
        for wrong in [|j: &mut Journal| j.write(b"a".to_vec(), None), |j: &mut Journal| drop(j.read(b"n".to_vec())), |j: &mut Journal| j.write(b"n".to_vec(), None)] {
            let mut j = Journal::enforcing(StateOverlay::new(), allowed.clone());
            wrong(&mut j);
            assert!(j.mispredicted());
        }
    }
}
