//! Filling templates in: a transaction's predicted access set.
//!
//! The top-level call's templates are evaluated with the transaction's
//! input, sender and contract; each call template is resolved to a callee
//! and method, its argument bytes evaluated, and the callee's summary filled
//! in the same way (with the caller's address as its caller), down to the
//! VM's call depth. Bytes of stored values are resolved by reading current
//! state, only from slots the contract's constructor alone writes.

use std::sync::Arc;

use chroma_host_api::key::{slot_prefix, KEY_PREFIX_LEN, NONCE_RECORD, SYSTEM_SLOT};
use chroma_host_api::limits::MAX_CALL_DEPTH;
use chroma_host_api::{Address, ADDRESS_LEN};
use serde::Serialize;
use smallvec::SmallVec;

use crate::arena::{FreshBytes, SharedBytes};
use crate::domain::Byte;
use crate::guards::{Decided, DecisionKey, Decisions, Operand, DECIDED_TEMPLATES_MAX, WORD_BYTES};
use crate::recipe::{CallId, Followed, Recipes, Source, Trace};
use crate::summary::{AccessKind, AccessSummary, ByteTemplate, CallTemplate, Comparison, Condition, ContractSummary, EntryKind, KeyTemplate, Literal, Run};

/// Templates one prediction may fill in all (bounds recursive call fan-out).
const FILL_BUDGET: usize = 4096;

/// Deployed contracts' summaries and current state, as the predictor sees them.
pub trait Environment {
    /// The summary of the contract at `contract`; `None` means no contract
    /// will be there when the transaction runs (a call to it fails without
    /// touching storage). A block planner must therefore also answer for
    /// contracts deployed earlier in the same block.
    fn summary(&self, contract: &Address) -> Option<&ContractSummary>;
    /// The committed value at a full state key (shared: every swap of a
    /// pool reads the same token addresses, so an environment can hand out
    /// one cached copy).
    fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>>;
    /// Entry `method` of the contract at `contract` analysed for inputs of
    /// `input`'s shape ([`analyze_for_shape`](crate::analyze_for_shape)),
    /// asked for when the entry's summary says
    /// [`by_shape`](AccessSummary::by_shape). `None`, the default: the
    /// entry's summary is used.
    fn shaped_entry(&self, contract: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        let _ = (contract, method, input);
        None
    }
    /// Where the predictor may keep which guarded templates of an entry
    /// may happen, by what decides it, for later calls through this
    /// environment. Its summaries and the stored values it hands out must
    /// stay the same meanwhile (a planner keeps one per block; clear it
    /// when a summary changes). `None`, the default: decided in every call.
    fn decisions(&self) -> Option<&Decisions> {
        None
    }
    /// Where the predictor may keep how the predictions of top-level calls
    /// are made from their senders and inputs ([`Recipes`]), under the same
    /// terms as [`decisions`](Environment::decisions). `None`, the default:
    /// every call is filled in.
    fn recipes(&self) -> Option<&Recipes> {
        None
    }
}

/// Key bytes kept inline up to this length: a key by one address (a
/// balance, a nonce) fits, a longer one (an allowance) goes to the heap.
pub const INLINE_KEY_LEN: usize = KEY_PREFIX_LEN + ADDRESS_LEN;

/// The bytes of a [`KeyPattern`]. Inline, so that a prediction's keys sit in
/// its lists: filling a transfer in made one allocation per key, and
/// planning a block spent a fifth of its time on the cache misses of
/// following each key to its own allocation.
pub type KeyBytes = SmallVec<[u8; INLINE_KEY_LEN]>;

/// A set of full state keys (`address ‖ slot ‖ key`).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum KeyPattern {
    Exact(KeyBytes),
    /// Every key starting with these bytes (all of a slot, all of a contract, ...).
    Prefix(KeyBytes),
}

/// A copy of the bytes at once: `SmallVec`'s own `clone` collects them one
/// by one (a swap's recipe clones its five constant keys: 1,100 of its
/// 7,750 instructions).
impl Clone for KeyPattern {
    fn clone(&self) -> KeyPattern {
        match self {
            KeyPattern::Exact(bytes) => KeyPattern::Exact(KeyBytes::from_slice(bytes)),
            KeyPattern::Prefix(bytes) => KeyPattern::Prefix(KeyBytes::from_slice(bytes)),
        }
    }
}

impl KeyPattern {
    /// The one key `key`.
    pub fn exact(key: &[u8]) -> KeyPattern {
        KeyPattern::Exact(KeyBytes::from_slice(key))
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyPattern {
        KeyPattern::Prefix(KeyBytes::from_slice(prefix))
    }

    /// The same set, borrowed.
    pub fn as_ref(&self) -> PatternRef<'_> {
        match self {
            KeyPattern::Exact(k) => PatternRef::Exact(k),
            KeyPattern::Prefix(p) => PatternRef::Prefix(p),
        }
    }

    pub fn covers(&self, key: &[u8]) -> bool {
        self.as_ref().covers(key)
    }

    /// Whether some key is in both.
    pub fn overlaps(&self, other: &KeyPattern) -> bool {
        self.as_ref().overlaps(other.as_ref())
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            KeyPattern::Exact(k) | KeyPattern::Prefix(k) => k,
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, KeyPattern::Exact(_))
    }
}

/// A [`KeyPattern`] borrowed from where it is kept (a prediction keeps its
/// patterns' bytes one after another, not as patterns). Hashed, ordered and
/// serialized as the `KeyPattern` of the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PatternRef<'a> {
    Exact(&'a [u8]),
    /// Every key starting with these bytes.
    Prefix(&'a [u8]),
}

impl<'a> PatternRef<'a> {
    /// Whether `key` is in the set.
    pub fn covers(self, key: &[u8]) -> bool {
        match self {
            PatternRef::Exact(k) => k == key,
            PatternRef::Prefix(p) => key.starts_with(p),
        }
    }

    /// Whether some key is in both.
    pub fn overlaps(self, other: PatternRef<'_>) -> bool {
        match (self, other) {
            (PatternRef::Exact(a), PatternRef::Exact(b)) => a == b,
            (PatternRef::Exact(k), PatternRef::Prefix(p)) | (PatternRef::Prefix(p), PatternRef::Exact(k)) => k.starts_with(p),
            (PatternRef::Prefix(a), PatternRef::Prefix(b)) => a.starts_with(b) || b.starts_with(a),
        }
    }

    pub fn bytes(self) -> &'a [u8] {
        match self {
            PatternRef::Exact(k) | PatternRef::Prefix(k) => k,
        }
    }

    pub fn is_exact(self) -> bool {
        matches!(self, PatternRef::Exact(_))
    }

    /// The pattern, owned.
    pub fn to_pattern(self) -> KeyPattern {
        match self {
            PatternRef::Exact(k) => KeyPattern::exact(k),
            PatternRef::Prefix(p) => KeyPattern::prefix(p),
        }
    }
}

impl PartialEq<KeyPattern> for PatternRef<'_> {
    fn eq(&self, other: &KeyPattern) -> bool {
        *self == other.as_ref()
    }
}

/// The pattern an unbounded prediction writes: every key.
pub(crate) const EVERYTHING: PatternRef<'static> = PatternRef::Prefix(&[]);

/// The keys a transaction may read, write and add to, with each pattern's
/// fingerprint (the planner's name for it). An unbounded one may touch
/// anything (a call the predictor cannot resolve). A write allows a read
/// and an add of its key, so a read or add of a pattern it writes is not
/// listed (see [`PredictedAccess::readable`]).
///
/// The fingerprints are made as the prediction is filled in, while its
/// keys are in cache: the planner reads a block's predictions on other
/// threads, later, and hashing each key there read it from memory again (a
/// swap block's graph took 1.47 µs per transaction that way, 1.06 µs from
/// fingerprints made beforehand).
///
/// Everything is one shared range of bytes (in a chunk of the thread that
/// made it: see `arena`): the fingerprints (8 bytes each), where each
/// pattern's bytes end (4 bytes each, the top bit set for an exact key),
/// then the patterns' bytes one after another: reads, then writes, then
/// adds. Cloning it is a reference count. Before, its patterns were a
/// shared slice of `KeyPattern`s (80 bytes each, a balance
/// key's 68 inline) and their fingerprints a second allocation; dropping
/// the slice asked each pattern whether it had spilled to the heap (a
/// cache miss per two patterns where a block's predictions are freed), and
/// packing a prediction cost more than its patterns: now a swap's takes 24%
/// fewer instructions to fill in, and a transfer's 10% (`plan_count`).
#[derive(Clone, PartialEq, Eq)]
pub struct PredictedAccess {
    packed: SharedBytes,
    /// Where the writes start, where the adds start, and how many patterns
    /// there are.
    writes_at: u32,
    adds_at: u32,
    len: u32,
    /// The reads and adds (by position, the first 64) the planner leaves
    /// out: of a fingerprint the same prediction writes (see `covered_of`),
    /// or of a fixed slot (see `fixed_reads`).
    covered: u64,
    /// Whether any pattern is a prefix.
    any_prefix: bool,
    unbounded: bool,
}

/// The top bit of a pattern's end in [`PredictedAccess`]: an exact key.
pub(crate) const EXACT_BIT: u32 = 1 << 31;

/// The fingerprint at `position` of a prediction packed in `packed` (as
/// [`PredictedAccess`] packs it; 0 past its end).
pub(crate) fn fingerprint_in(packed: &[u8], position: usize) -> u64 {
    packed.get(8 * position..8 * position + 8).and_then(|word| word.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The pattern at `position` of the `len` packed in `packed` (as
/// [`PredictedAccess`] packs them; empty past their end).
pub(crate) fn pattern_in(packed: &[u8], len: usize, position: usize) -> PatternRef<'_> {
    let end_of = |i: usize| packed.get(8 * len + 4 * i..8 * len + 4 * i + 4).and_then(|word| word.try_into().ok()).map_or(0, u32::from_le_bytes);
    let end = end_of(position);
    let start = if position == 0 { 0 } else { end_of(position - 1) & !EXACT_BIT };
    let bytes = packed.get(12 * len + start as usize..12 * len + (end & !EXACT_BIT) as usize).unwrap_or_default();
    if end & EXACT_BIT != 0 { PatternRef::Exact(bytes) } else { PatternRef::Prefix(bytes) }
}

impl Default for PredictedAccess {
    fn default() -> PredictedAccess {
        PredictedAccess::new(Vec::new(), Vec::new(), Vec::new())
    }
}

impl PredictedAccess {
    /// A prediction of these reads, writes and adds (each list as given).
    pub fn new(reads: Vec<KeyPattern>, writes: Vec<KeyPattern>, adds: Vec<KeyPattern>) -> PredictedAccess {
        let lists = [reads, writes, adds].map(|list| {
            let mut parts = (Vec::with_capacity(list.len()), Vec::with_capacity(list.len()), Vec::new());
            for pattern in &list {
                parts.0.push(crate::plan::fingerprint(pattern));
                parts.2.extend_from_slice(pattern.bytes());
                parts.1.push(parts.2.len() as u32 | if pattern.is_exact() { EXACT_BIT } else { 0 });
            }
            parts
        });
        let parts = lists.each_ref().map(|(fingerprints, ends, bytes)| ListParts { fingerprints, ends, bytes });
        PredictedAccess::pack(parts, false, 0)
    }

    /// The prediction of these reads, writes and adds, packed (in place, in
    /// this thread's chunks: see `arena`), leaving out of the graph the
    /// `fixed_reads` (see `Collected::fixed_reads`) besides the covered
    /// ones. A read or an add of a pattern it also writes is left out of
    /// its list: the write allows it (see [`PredictedAccess::readable`]).
    fn pack(lists: [ListParts<'_>; 3], unbounded: bool, fixed_reads: u64) -> PredictedAccess {
        let [reads, writes, adds] = lists;
        let (written_reads, written_adds) = (reads.written_in(&writes), adds.written_in(&writes));
        if written_reads.is_empty() && written_adds.is_empty() {
            return PredictedAccess::pack_lists(lists, unbounded, fixed_reads);
        }
        // Left out, and the fixed reads' positions moved to the reads kept.
        let (reads_kept, adds_kept) = (reads.without(&written_reads), adds.without(&written_adds));
        let mut kept_fixed = 0u64;
        let mut kept = 0;
        for position in 0..reads.fingerprints.len() {
            if written_reads.contains(&position) {
                continue;
            }
            if position < 64 && kept < 64 && fixed_reads & (1 << position) != 0 {
                kept_fixed |= 1 << kept;
            }
            kept += 1;
        }
        PredictedAccess::pack_lists([reads_kept.parts(), writes, adds_kept.parts()], unbounded, kept_fixed)
    }

    /// [`PredictedAccess::pack`] of lists in which no read or add is a
    /// write's pattern.
    fn pack_lists(lists: [ListParts<'_>; 3], unbounded: bool, fixed_reads: u64) -> PredictedAccess {
        let counts = lists.map(|list| list.fingerprints.len());
        let len = counts.iter().sum::<usize>();
        let key_bytes: usize = lists.iter().map(|list| list.bytes.len()).sum();
        // Sized first, then written in place: appended piece by piece, the
        // growth checks and small copies cost more than the patterns did.
        let mut packed = FreshBytes::new(12 * len + key_bytes);
        let (head, mut bytes) = packed.split_at_mut(12 * len);
        let (fingerprint_words, end_words) = head.split_at_mut(8 * len);
        let (mut fingerprint_words, mut end_words) = (fingerprint_words.chunks_exact_mut(8), end_words.chunks_exact_mut(4));
        let (mut offset, mut any_prefix) = (0u32, false);
        for list in lists {
            debug_assert_eq!(list.fingerprints.len(), list.ends.len());
            for (fingerprint, word) in list.fingerprints.iter().zip(&mut fingerprint_words) {
                word.copy_from_slice(&fingerprint.to_le_bytes());
            }
            // Each list's ends count from its own first byte; adding where
            // it starts keeps the top bit (ends are far below it).
            for (end, word) in list.ends.iter().zip(&mut end_words) {
                any_prefix |= end & EXACT_BIT == 0;
                word.copy_from_slice(&(end + offset).to_le_bytes());
            }
            let (here, rest) = bytes.split_at_mut(list.bytes.len());
            here.copy_from_slice(list.bytes);
            bytes = rest;
            offset += list.bytes.len() as u32;
        }
        let [reads, writes, adds] = lists.map(|list| list.fingerprints);
        PredictedAccess {
            packed: packed.share(),
            writes_at: bound(counts[0]),
            adds_at: bound(counts[0] + counts[1]),
            len: bound(len),
            covered: covered_of(reads, writes, adds) | fixed_reads,
            any_prefix,
            unbounded,
        }
    }

    /// The prediction packed in `packed` as [`PredictedAccess::pack`]
    /// packs one (fingerprints, ends, bytes), of `shape`.
    pub(crate) fn from_packed(packed: SharedBytes, shape: FollowedShape, unbounded: bool) -> PredictedAccess {
        let FollowedShape { counts: [reads, writes, adds], covered, any_prefix } = shape;
        PredictedAccess {
            packed,
            writes_at: bound(reads),
            adds_at: bound(reads + writes),
            len: bound(reads + writes + adds),
            covered,
            any_prefix,
            unbounded,
        }
    }

    /// A prediction that any key may be accessed in any way.
    pub fn unbounded() -> PredictedAccess {
        PredictedAccess { unbounded: true, ..PredictedAccess::default() }
    }

    /// `self`, marked unbounded (or not).
    pub fn with_unbounded(mut self, unbounded: bool) -> PredictedAccess {
        self.unbounded = unbounded;
        self
    }

    /// The keys it may read and does not write (see
    /// [`readable`](PredictedAccess::readable) for every key it may read).
    pub fn reads(&self) -> Patterns<'_> {
        Patterns { access: self, next: 0, end: self.writes_at }
    }

    /// The keys it may write (plainly: set or delete).
    pub fn writes(&self) -> Patterns<'_> {
        Patterns { access: self, next: self.writes_at, end: self.adds_at }
    }

    /// The keys it may add to (commutative additions) and does not write
    /// (see [`addable`](PredictedAccess::addable)).
    pub fn adds(&self) -> Patterns<'_> {
        Patterns { access: self, next: self.adds_at, end: self.len }
    }

    /// Every pattern: its reads, then its writes, then its adds.
    pub fn patterns(&self) -> Patterns<'_> {
        Patterns { access: self, next: 0, end: self.len }
    }

    /// Whether it may touch anything.
    pub fn is_unbounded(&self) -> bool {
        self.unbounded
    }

    /// Its reads, writes and adds as lists of their own (to change and
    /// make a prediction of again).
    pub fn into_lists(self) -> (Vec<KeyPattern>, Vec<KeyPattern>, Vec<KeyPattern>) {
        (self.reads().to_vec(), self.writes().to_vec(), self.adds().to_vec())
    }

    /// Its reads (by position, the first 64) of keys in slots only their
    /// contract's constructor writes: no transaction can write them, so the
    /// planner leaves them out (see `Collected::fixed_reads`). The
    /// analyzer's predictions name them; one made by
    /// [`PredictedAccess::new`] has none until told
    /// ([`PredictedAccess::with_fixed_reads`]).
    pub fn fixed_reads(&self) -> u64 {
        let reads = self.writes_at as usize;
        let fingerprints: Vec<u64> = self.fingerprints().collect();
        let (reads_fps, rest) = fingerprints.split_at(reads.min(fingerprints.len()));
        let (writes, adds) = rest.split_at(((self.adds_at - self.writes_at) as usize).min(rest.len()));
        self.covered & read_positions(reads) & !covered_of(reads_fps, writes, adds)
    }

    /// The same prediction, its reads at the positions set in `fixed`
    /// (the first 64) left out by the planner: the caller vouches that no
    /// transaction can write their keys (see
    /// [`PredictedAccess::fixed_reads`]).
    pub fn with_fixed_reads(mut self, fixed: u64) -> PredictedAccess {
        self.covered |= fixed & read_positions(self.writes_at as usize);
        self
    }

    /// Whether every pattern is a single key and nothing is unbounded.
    pub fn is_exact(&self) -> bool {
        !self.unbounded && !self.any_prefix
    }

    /// Whether the planner must look for prefixes in it (a prefix pattern,
    /// or unbounded: every key).
    pub(crate) fn has_prefixes(&self) -> bool {
        self.unbounded || self.any_prefix
    }

    /// The keys it may read: its reads and its writes. A write allows a
    /// read of its key (it conflicts with whatever a read does), so a
    /// prediction does not list a read of a key it writes: a transfer's
    /// prediction reads nothing and writes the sender's balance, instead of
    /// listing that key twice. Its reads and writes are one run of its
    /// patterns, so this is one list to look in.
    pub fn readable(&self) -> Patterns<'_> {
        Patterns { access: self, next: 0, end: self.adds_at }
    }

    /// The keys it may add to: its writes and its adds (as for
    /// [`readable`](PredictedAccess::readable), a write allows an add).
    pub fn addable(&self) -> Patterns<'_> {
        Patterns { access: self, next: self.writes_at, end: self.len }
    }

    /// Whether the actual accesses are all predicted: each read among the
    /// [`readable`](PredictedAccess::readable) keys, each write among the
    /// writes, each add among the [`addable`](PredictedAccess::addable) keys.
    pub fn covers<'a>(
        &self,
        reads: impl IntoIterator<Item = &'a [u8]>,
        writes: impl IntoIterator<Item = &'a [u8]>,
        adds: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        if self.unbounded {
            return true;
        }
        reads.into_iter().all(|k| self.readable().covers(k)) && writes.into_iter().all(|k| self.writes().covers(k)) && adds.into_iter().all(|k| self.addable().covers(k))
    }

    /// The pattern at `position` in [`patterns`](PredictedAccess::patterns);
    /// past them, every key (what an unbounded prediction writes last).
    pub fn pattern_at(&self, position: u32) -> PatternRef<'_> {
        if position >= self.len {
            return EVERYTHING;
        }
        pattern_in(&self.packed, self.len as usize, position as usize)
    }

    /// How many patterns the planner visits: every pattern, and every key
    /// for an unbounded one.
    pub(crate) fn visited(&self) -> usize {
        self.len as usize + usize::from(self.unbounded)
    }

    /// The fingerprint of the pattern at `position` (as
    /// [`pattern_at`](PredictedAccess::pattern_at) takes it).
    pub(crate) fn fingerprint_at(&self, position: u32) -> u64 {
        if position >= self.len {
            return crate::plan::fingerprint_of(EVERYTHING);
        }
        fingerprint_in(&self.packed, position as usize)
    }

    /// Its patterns' fingerprints, in order, covered ones too (an unbounded
    /// prediction's every key is left out).
    #[inline]
    pub(crate) fn fingerprints(&self) -> impl Iterator<Item = u64> + '_ {
        self.packed.get(..8 * self.len as usize).unwrap_or_default().chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()))
    }

    /// Where its fingerprints start in memory (for a prefetch).
    pub(crate) fn fingerprints_ptr(&self) -> *const u8 {
        self.packed.as_ptr()
    }

    /// How the pattern at `position` is accessed: by its list, and an
    /// unbounded prediction's every key (past its patterns) is written.
    pub(crate) fn mode_at(&self, position: u32) -> AccessMode {
        if position < self.writes_at {
            AccessMode::Read
        } else if position < self.adds_at || position >= self.len {
            AccessMode::Write
        } else {
            AccessMode::Add
        }
    }

    /// Calls `send` with each pattern the planner visits but for the
    /// covered ones, with its mode, position and fingerprint: reads,
    /// writes, adds, then an unbounded one's every key. A loop per list,
    /// not an iterator of positions asked for their list and their words
    /// (that cost a swap block's graph 4% more instructions). Within the
    /// first 64 patterns (where covers are kept, so nearly always) the
    /// positions visited are bits, each list's taken lowest first: a
    /// covered pattern costs nothing, where the loop over every word asked
    /// each one whether it was covered (planning a swap block took 128
    /// more instructions per transaction, 4,417 against 4,289; a transfer
    /// block 21 more, 2,098 against 2,077).
    #[inline]
    pub(crate) fn for_each_touch(&self, mut send: impl FnMut(AccessMode, u32, u64)) {
        if self.len <= 64 {
            let below = |end: u32| if end >= 64 { u64::MAX } else { (1u64 << end) - 1 };
            let visited = below(self.len) & !self.covered;
            let (reads, writes) = (below(self.writes_at), below(self.adds_at));
            for (mode, mut positions) in [(AccessMode::Read, visited & reads), (AccessMode::Write, visited & writes & !reads), (AccessMode::Add, visited & !writes)] {
                while positions != 0 {
                    let position = positions.trailing_zeros();
                    positions &= positions - 1;
                    send(mode, position, fingerprint_in(&self.packed, position as usize));
                }
            }
        } else {
            let mut fingerprints = self.fingerprints();
            let mut position = 0u32;
            for (mode, end) in [(AccessMode::Read, self.writes_at), (AccessMode::Write, self.adds_at), (AccessMode::Add, self.len)] {
                for fingerprint in fingerprints.by_ref().take(end.saturating_sub(position) as usize) {
                    if !self.is_covered(position) {
                        send(mode, position, fingerprint);
                    }
                    position += 1;
                }
            }
        }
        if self.unbounded {
            send(AccessMode::Write, self.len, crate::plan::fingerprint_of(EVERYTHING));
        }
    }

    /// Each pattern the planner visits, with its mode (see `for_each_touch`).
    pub(crate) fn accessed(&self) -> impl Iterator<Item = (AccessMode, PatternRef<'_>)> + '_ {
        (0..self.visited() as u32).map(|position| (self.mode_at(position), self.pattern_at(position)))
    }

    fn is_covered(&self, position: u32) -> bool {
        position < 64 && self.covered & (1 << position) != 0
    }
}

/// How a prediction's pattern is accessed, as the planner takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AccessMode {
    Read,
    Write,
    Add,
}

/// The bits of the first `reads` positions (of the first 64).
fn read_positions(reads: usize) -> u64 {
    if reads >= 64 { u64::MAX } else { (1 << reads) - 1 }
}

/// Reads and adds (by position, the first 64) of a fingerprint the same
/// prediction also writes. A plain write conflicts with everything a read
/// or an add does, and a transaction's modes on one resource are taken
/// together, so the planner leaves them out: the same edges from fewer
/// accesses. A read or add of the very pattern written is not even listed
/// (`PredictedAccess::pack`); what is left here is a key of another
/// pattern's fingerprint (a collision: the planner's resources are
/// fingerprints, so it would merge the two there anyway). Leaving out a
/// swap's four reads of keys it writes and two adds (11 accesses instead of
/// 17) made its block's graph take 0.97 instead of 1.03 µs per transaction
/// (one thread; medians of 21 rounds alternating in one process).
fn covered_of(reads: &[u64], writes: &[u64], adds: &[u64]) -> u64 {
    // A bit per written fingerprint's low six bits: most reads and adds
    // are of keys not written, and the bit rules them out without a scan
    // of the writes (scanning every one was a sixth of packing a swap).
    let written = writes.iter().fold(0u64, |bits, &f| bits | 1 << (f % 64));
    if written == 0 {
        return 0;
    }
    let mut covered = 0u64;
    let adds_at = reads.len() + writes.len();
    let positions = reads.iter().enumerate().chain(adds.iter().enumerate().map(|(i, f)| (adds_at + i, f)));
    for (position, &fingerprint) in positions.take_while(|&(p, _)| p < 64) {
        if written & (1 << (fingerprint % 64)) != 0 && writes.contains(&fingerprint) {
            covered |= 1 << position;
        }
    }
    covered
}

/// Its lists, as lists.
impl std::fmt::Debug for PredictedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictedAccess")
            .field("reads", &self.reads().collect::<Vec<_>>())
            .field("writes", &self.writes().collect::<Vec<_>>())
            .field("adds", &self.adds().collect::<Vec<_>>())
            .field("unbounded", &self.unbounded)
            .finish()
    }
}

/// Serialized as its three lists and whether it is unbounded.
impl Serialize for PredictedAccess {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("PredictedAccess", 4)?;
        out.serialize_field("reads", &self.reads().collect::<Vec<_>>())?;
        out.serialize_field("writes", &self.writes().collect::<Vec<_>>())?;
        out.serialize_field("adds", &self.adds().collect::<Vec<_>>())?;
        out.serialize_field("unbounded", &self.unbounded)?;
        out.end()
    }
}

/// One list of a [`PredictedAccess`]'s patterns (or all of them), in order.
#[derive(Clone)]
pub struct Patterns<'a> {
    access: &'a PredictedAccess,
    next: u32,
    end: u32,
}

impl<'a> Patterns<'a> {
    /// The list's pattern at `index`.
    pub fn get(&self, index: usize) -> Option<PatternRef<'a>> {
        let position = u32::try_from(index).ok()?.checked_add(self.next)?;
        (position < self.end).then(|| self.access.pattern_at(position))
    }

    pub fn is_empty(&self) -> bool {
        self.next >= self.end
    }

    /// Whether `key` is in one of the patterns left. Without a prefix in
    /// the prediction, by fingerprint first (the executor asks this of
    /// every access a transaction makes): a word per pattern is compared,
    /// and the bytes of the one whose word matches.
    pub fn covers(&self, key: &[u8]) -> bool {
        let access = self.access;
        if access.any_prefix {
            return self.clone().any(|p| p.covers(key));
        }
        let fingerprint = crate::plan::fingerprint_of(PatternRef::Exact(key));
        (self.next..self.end).any(|position| access.fingerprint_at(position) == fingerprint && access.pattern_at(position).covers(key))
    }

    /// The patterns left, owned.
    pub fn to_vec(&self) -> Vec<KeyPattern> {
        self.clone().map(PatternRef::to_pattern).collect()
    }
}

impl<'a> Iterator for Patterns<'a> {
    type Item = PatternRef<'a>;
    fn next(&mut self) -> Option<PatternRef<'a>> {
        let pattern = self.get(0)?;
        self.next += 1;
        Some(pattern)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end.saturating_sub(self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Patterns<'_> {}

impl std::fmt::Debug for Patterns<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// A list's length as a bound in [`PredictedAccess`] (a prediction is
/// bounded by `FILL_BUDGET` templates, far below `u32::MAX`).
fn bound(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Patterns a list is scanned for a repeat up to (see `Distinct::insert`).
pub(crate) const SCANNED_MAX: usize = 32;

/// One list of a prediction while it is filled in, in place, without
/// repeats: each pattern with its fingerprint, so that a repeat is found by
/// comparing words, and only a matching word's bytes. Sorted and deduplicated
/// at the end instead, a swap's lists took a fifth of filling it in
/// (comparing and moving 80-byte patterns). The patterns' bytes are kept one
/// after another, as a [`PredictedAccess`] keeps them, so that finishing a
/// prediction copies each list in three pieces. Vectors, not inline: a
/// [`Collected`] is reused from prediction to prediction, so they are
/// allocated once per thread, and a push to a vector costs less than to a
/// `SmallVec`.
#[derive(Default)]
pub(crate) struct Distinct {
    fingerprints: Vec<u64>,
    /// Where each pattern's bytes end in `bytes`, the top bit set for an
    /// exact key (as in [`PredictedAccess`]).
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Distinct {
    fn insert(&mut self, pattern: PatternRef<'_>) {
        let fingerprint = crate::plan::fingerprint_of(pattern);
        self.insert_fingerprinted(pattern, fingerprint);
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The pattern at `index` (empty past the end).
    fn pattern(&self, index: usize) -> PatternRef<'_> {
        self.parts().pattern(index)
    }

    /// Its patterns, in order.
    #[cfg(test)]
    fn patterns(&self) -> impl Iterator<Item = PatternRef<'_>> + '_ {
        (0..self.len()).map(|i| self.pattern(i))
    }

    /// Its parts as a [`PredictedAccess`] packs them.
    fn parts(&self) -> ListParts<'_> {
        ListParts { fingerprints: &self.fingerprints, ends: &self.ends, bytes: &self.bytes }
    }

    /// Whether the list holds `pattern`, whose fingerprint is `fingerprint`
    /// (its bytes compared only where a fingerprint matches).
    #[inline(always)]
    fn holds(&self, pattern: PatternRef<'_>, fingerprint: u64) -> bool {
        self.fingerprints.iter().enumerate().any(|(i, &f)| f == fingerprint && self.pattern(i) == pattern)
    }

    /// [`Distinct::insert`] of a pattern whose fingerprint is known.
    #[inline(always)]
    fn insert_fingerprinted(&mut self, pattern: PatternRef<'_>, fingerprint: u64) {
        // Past `SCANNED_MAX` patterns, repeats are left for `settle`: a
        // scan per pattern would make a long list (an entry may have
        // thousands of templates) cost the square of its length.
        let scanned = self.len() < SCANNED_MAX;
        if scanned && self.holds(pattern, fingerprint) {
            return;
        }
        self.push(pattern, fingerprint);
    }

    fn push(&mut self, pattern: PatternRef<'_>, fingerprint: u64) {
        self.bytes.extend_from_slice(pattern.bytes());
        self.push_end(pattern.is_exact(), fingerprint);
    }

    /// Ends the pattern whose bytes were appended last.
    fn push_end(&mut self, exact: bool, fingerprint: u64) {
        // Keys are bounded (`MAX_KEY_LEN`) and so is a prediction
        // (`FILL_BUDGET`): far below the top bit.
        let exact = if exact { EXACT_BIT } else { 0 };
        self.ends.push(self.bytes.len() as u32 | exact);
        self.fingerprints.push(fingerprint);
    }

    /// Adds the pattern whose bytes `make` appends to the ones it is
    /// given, made in place (built apart and then copied in, a swap's
    /// recipe keys cost a copy each), unless it is a repeat (as
    /// [`Distinct::add`] decides).
    #[inline(always)]
    fn add_made(&mut self, exact: bool, may_repeat: bool, make: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        make(&mut self.bytes);
        let key = self.bytes.get(start..).unwrap_or_default();
        let pattern = if exact { PatternRef::Exact(key) } else { PatternRef::Prefix(key) };
        let fingerprint = crate::plan::fingerprint_of(pattern);
        if may_repeat && self.len() < SCANNED_MAX && self.holds(pattern, fingerprint) {
            self.bytes.truncate(start);
            return;
        }
        self.push_end(exact, fingerprint);
    }

    /// [`Distinct::insert_fingerprinted`], or, for a pattern that cannot be
    /// in the list (`may_repeat` false), added without looking.
    fn add(&mut self, pattern: PatternRef<'_>, fingerprint: u64, may_repeat: bool) {
        if may_repeat {
            self.insert_fingerprinted(pattern, fingerprint);
        } else {
            self.push(pattern, fingerprint);
        }
    }

    /// Drops the repeats that `insert` left in a long list, keeping each
    /// pattern's first occurrence, in order: a sort of the positions by
    /// fingerprint, then pattern, then position.
    #[inline]
    pub(crate) fn settle(&mut self) {
        if self.len() > SCANNED_MAX {
            self.settle_long();
        }
    }

    /// [`Distinct::settle`] of a list longer than `SCANNED_MAX` (rare: out
    /// of line, so that settling a short list is a comparison).
    #[cold]
    fn settle_long(&mut self) {
        let fingerprints = &self.fingerprints;
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| fingerprints[a].cmp(&fingerprints[b]).then_with(|| self.pattern(a).cmp(&self.pattern(b))).then(a.cmp(&b)));
        let mut repeat = vec![false; self.len()];
        for pair in order.windows(2) {
            if fingerprints[pair[0]] == fingerprints[pair[1]] && self.pattern(pair[0]) == self.pattern(pair[1]) {
                repeat[pair[1]] = true;
            }
        }
        let mut kept = Distinct::default();
        for (i, _) in repeat.iter().enumerate().filter(|(_, &r)| !r) {
            kept.push(self.pattern(i), self.fingerprints[i]);
        }
        *self = kept;
    }

    fn clear(&mut self) {
        self.fingerprints.clear();
        self.ends.clear();
        self.bytes.clear();
    }
}

/// One list's patterns as a [`PredictedAccess`] is packed from them: their
/// fingerprints, where each one's bytes end (the top bit set for an exact
/// key), and their bytes one after another.
#[derive(Clone, Copy)]
struct ListParts<'a> {
    fingerprints: &'a [u64],
    ends: &'a [u32],
    bytes: &'a [u8],
}

impl<'a> ListParts<'a> {
    /// The pattern at `index` (empty past the end).
    fn pattern(&self, index: usize) -> PatternRef<'a> {
        let end = self.ends.get(index).copied().unwrap_or(0);
        let start = if index == 0 { 0 } else { self.ends.get(index - 1).map_or(0, |e| e & !EXACT_BIT) };
        let bytes = self.bytes.get(start as usize..(end & !EXACT_BIT) as usize).unwrap_or_default();
        if end & EXACT_BIT != 0 { PatternRef::Exact(bytes) } else { PatternRef::Prefix(bytes) }
    }

    /// The positions of its patterns that `writes` holds too (the same
    /// bytes, exact or prefix alike).
    fn written_in(&self, writes: &ListParts<'_>) -> SmallVec<[usize; 4]> {
        // A bit per written fingerprint's low six bits rules most patterns
        // out without a scan of the writes (as in `covered_of`).
        let written = writes.fingerprints.iter().fold(0u64, |bits, &f| bits | 1 << (f % 64));
        let mut found = SmallVec::new();
        if written == 0 {
            return found;
        }
        for (position, &fingerprint) in self.fingerprints.iter().enumerate() {
            if written & (1 << (fingerprint % 64)) != 0
                && writes.fingerprints.iter().enumerate().any(|(w, &f)| f == fingerprint && writes.pattern(w) == self.pattern(position))
            {
                found.push(position);
            }
        }
        found
    }

    /// Its patterns but those at `left_out`, in order, in a list of its
    /// own (a `Distinct`'s storage, filled as given).
    fn without(&self, left_out: &[usize]) -> Distinct {
        let mut list = Distinct::default();
        for position in (0..self.fingerprints.len()).filter(|p| !left_out.contains(p)) {
            let pattern = self.pattern(position);
            list.fingerprints.push(self.fingerprints[position]);
            list.bytes.extend_from_slice(pattern.bytes());
            list.ends.push(list.bytes.len() as u32 | if pattern.is_exact() { EXACT_BIT } else { 0 });
        }
        list
    }
}

/// A prediction's patterns while it is filled in, in place, each with its
/// fingerprint. Filled into vectors and then shrunk to fit, each list cost
/// two allocations and a copy (filling a block of transfers in made 8.0
/// allocations per transaction, 5.0 this way). [`Collected::finish`] packs
/// them into a [`PredictedAccess`] with those fingerprints, without hashing
/// a key again (that was 5% of filling a swap in).
#[derive(Default)]
pub struct Collected {
    pub(crate) reads: Distinct,
    pub(crate) writes: Distinct,
    pub(crate) adds: Distinct,
    pub(crate) unbounded: bool,
    /// The reads (by position, the first 64) of keys in a slot that only
    /// its contract's constructor writes (`ContractSummary::fixed_slots`):
    /// no transaction can write them, so they make no edge, and the planner
    /// leaves them out as it leaves out covered ones (see `covered_of`). A
    /// swap reads two such keys (its pool's tokens), a lending call one or
    /// two (its market's settings).
    fixed_reads: u64,
    /// Set when a recipe's template made the prediction (see
    /// `recipe::Template`): it is packed in `shared`, the bytes it will be
    /// shared in, and the lists are empty.
    followed: Option<FollowedShape>,
    /// A prediction packed by a template, in the bytes it will be shared
    /// in: a copy of the template patched in place (made in a scratch
    /// vector and copied after, a swap's was copied twice).
    shared: Option<FreshBytes>,
}

/// What a prediction packed by following a recipe's template is besides
/// its bytes: how many reads, writes and adds it has, which reads and adds
/// are covered (as `covered_of` finds them), and whether any is a prefix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowedShape {
    pub(crate) counts: [usize; 3],
    pub(crate) covered: u64,
    pub(crate) any_prefix: bool,
}

impl Collected {
    /// Adds a key `pattern` written (unless already there).
    pub fn write(&mut self, pattern: KeyPattern) {
        self.unfollow();
        self.writes.insert(pattern.as_ref());
    }

    /// Where a recipe's template packs a prediction (see
    /// [`Collected::followed`]): `self` emptied, then a copy of `template`
    /// in the bytes the prediction will be shared in.
    pub(crate) fn follow_into(&mut self, template: &[u8]) -> &mut [u8] {
        self.clear();
        let packed = self.shared.insert(FreshBytes::new(template.len()));
        packed.copy_from_slice(template);
        packed
    }

    /// The prediction is what [`Collected::follow_into`] was given, of
    /// `shape`.
    pub(crate) fn followed(&mut self, shape: FollowedShape, unbounded: bool) {
        self.followed = Some(shape);
        self.unbounded = unbounded;
    }

    /// A prediction packed by a template, taken back into the lists (before
    /// anything else is added to it).
    fn unfollow(&mut self) {
        let Some(FollowedShape { counts, covered, .. }) = self.followed.take() else { return };
        let Some(packed) = self.shared.take() else { return };
        // The template's fixed reads are among its covered ones; the
        // others stay covered by their writes when packed again.
        self.fixed_reads = covered & read_positions(counts[0]);
        let Collected { reads, writes, adds, .. } = self;
        let len = counts.iter().sum::<usize>();
        for position in 0..len {
            let list = if position < counts[0] {
                &mut *reads
            } else if position < counts[0] + counts[1] {
                &mut *writes
            } else {
                &mut *adds
            };
            list.push(pattern_in(&packed, len, position), fingerprint_in(&packed, position));
        }
    }

    /// Adds a key `pattern` of `kind` whose fingerprint is known: unless
    /// already there, or, when it cannot be (`may_repeat` false), without
    /// looking. A call template's kind adds nothing.
    pub(crate) fn add_fingerprinted(&mut self, kind: AccessKind, pattern: PatternRef<'_>, fingerprint: u64, may_repeat: bool, fixed: bool) {
        self.unfollow();
        match kind {
            AccessKind::Read => {
                let before = self.reads.len();
                self.reads.add(pattern, fingerprint, may_repeat);
                self.note_fixed(before, fixed);
            }
            AccessKind::Write => self.writes.add(pattern, fingerprint, may_repeat),
            AccessKind::Add => self.adds.add(pattern, fingerprint, may_repeat),
            AccessKind::Call => {}
        }
    }

    /// [`Collected::add_fingerprinted`] of a pattern made in place (see
    /// `Distinct::add_made`).
    pub(crate) fn add_made(&mut self, kind: AccessKind, exact: bool, may_repeat: bool, fixed: bool, make: impl FnOnce(&mut Vec<u8>)) {
        self.unfollow();
        match kind {
            AccessKind::Read => {
                let before = self.reads.len();
                self.reads.add_made(exact, may_repeat, make);
                self.note_fixed(before, fixed);
            }
            AccessKind::Write => self.writes.add_made(exact, may_repeat, make),
            AccessKind::Add => self.adds.add_made(exact, may_repeat, make),
            AccessKind::Call => {}
        }
    }

    /// Adds a read of `pattern` (unless already there), of a key in a
    /// fixed slot or not (see `Collected::fixed_reads`).
    fn read(&mut self, pattern: PatternRef<'_>, fixed: bool) {
        let before = self.reads.len();
        self.reads.insert(pattern);
        self.note_fixed(before, fixed);
    }

    /// Notes the read added last as fixed, if it is and was added (the
    /// list was `before` long). A repeat is the same key, of the same slot.
    fn note_fixed(&mut self, before: usize, fixed: bool) {
        if fixed && before < 64 && self.reads.len() > before {
            self.fixed_reads |= 1 << before;
        }
    }

    /// Drops the repeats left in long lists (see `Distinct::insert`).
    pub(crate) fn settle(&mut self) {
        self.reads.settle();
        self.writes.settle();
        self.adds.settle();
    }

    /// Each list without repeats, in the order found (a function of the
    /// summaries, the state and the transaction, so the same on every
    /// node), with the fingerprints made while collecting. Leaves `self`
    /// empty.
    pub fn finish(&mut self) -> PredictedAccess {
        if let (Some(shape), Some(packed)) = (self.followed.take(), self.shared.take()) {
            // The rest is empty already: `follow_into` emptied it, and
            // anything added since would have unfollowed the template.
            // (Emptied again here, and before the recipe was looked up
            // too, a followed transfer took 40 instructions more: 1,790
            // against 1,750.)
            debug_assert!(self.reads.len() + self.writes.len() + self.adds.len() == 0 && self.fixed_reads == 0);
            let access = PredictedAccess::from_packed(packed.share(), shape, self.unbounded);
            self.unbounded = false;
            return access;
        }
        // Settling a long list moves its reads: none is left out then.
        let fixed_reads = if self.reads.len() > SCANNED_MAX { 0 } else { self.fixed_reads };
        self.settle();
        let lists = [self.reads.parts(), self.writes.parts(), self.adds.parts()];
        let access = PredictedAccess::pack(lists, self.unbounded, fixed_reads);
        self.clear();
        access
    }

    /// Empties `self`, then collects `access` into it.
    pub fn set(&mut self, access: PredictedAccess) {
        self.clear();
        self.unbounded = access.unbounded;
        access.reads().for_each(|p| self.reads.insert(p));
        access.writes().for_each(|p| self.writes.insert(p));
        access.adds().for_each(|p| self.adds.insert(p));
    }

    pub(crate) fn clear(&mut self) {
        self.followed = None;
        self.fixed_reads = 0;
        self.shared = None;
        self.reads.clear();
        self.writes.clear();
        self.adds.clear();
        self.unbounded = false;
    }
}

/// Predicts the accesses of a call of `method` on `contract` by `sender`
/// with encoded arguments `input`.
pub fn predict(env: &impl Environment, sender: &Address, contract: &Address, method: &str, input: &[u8]) -> PredictedAccess {
    let mut collected = Collected::default();
    predict_into(env, sender, contract, method, input, &mut collected);
    collected.finish()
}

/// [`predict`] into `out` (emptied first), with its patterns' fingerprints.
/// `out` is large (its lists are inline): filled in place and reused, it
/// is not copied from call to call.
///
/// With the environment's [`Recipes`], a call that fits a recipe learnt
/// from an earlier one is made by following it, and one that does not is
/// filled in while its recipe is recorded (the prediction is the same).
pub fn predict_into(env: &impl Environment, sender: &Address, contract: &Address, method: &str, input: &[u8], out: &mut Collected) {
    predict_call_into(env, sender, contract, method, input, false, out);
}

/// How many transactions ahead of the one being filled in a planner asks
/// for a call's method name and input ([`prefetch_call`]).
pub const PREFETCH_CALLS_AHEAD: usize = 8;

/// Asks for the first bytes of a call's method name and input to be
/// brought to the cache (a hint; it never faults). A planner fills in a
/// block's transactions one after another, and each one's name and input
/// are allocations of their own, made when the transaction was decoded,
/// among others: the first look at them (finding the call's recipes by
/// name, checking the input fits one) missed the cache. Asked for
/// [`PREFETCH_CALLS_AHEAD`] transactions ahead, they are there when their
/// turn comes: a defi-mix block's filling in, from transactions decoded
/// from a file, took 0.192 µs per transaction instead of 0.217
/// (`plan_count count`), for 12 instructions more. Transactions made one
/// after another (the workloads' generated blocks) lie in order in
/// memory, where the processor's own prefetching finds them: no change.
#[inline(always)]
pub fn prefetch_call(method: &str, input: &[u8]) {
    crate::plan::prefetch(method.as_ptr());
    crate::plan::prefetch(input.as_ptr());
}

/// [`predict_into`] of a transaction: the call's accesses, then the write
/// of the sender's nonce ([`nonce_key`](chroma_host_api::key::nonce_key)),
/// which the executor makes after every call (as a plain write, it orders
/// the sender's transactions). Made here rather than added afterwards, the
/// nonce key is part of the call's recipe: a call following it gets its
/// prediction packed whole from the recipe's template.
pub fn predict_transaction_into(env: &impl Environment, sender: &Address, contract: &Address, method: &str, input: &[u8], out: &mut Collected) {
    predict_call_into(env, sender, contract, method, input, true, out);
}

/// [`predict_into`], with the sender's nonce written last when it is a
/// `transaction`'s.
fn predict_call_into(env: &impl Environment, sender: &Address, contract: &Address, method: &str, input: &[u8], transaction: bool, out: &mut Collected) {
    // A call that follows a recipe needs neither its contract's summary nor
    // its entry (one analysed by input shape follows the recipe of its
    // shape); one that fails has none to follow. Following one empties
    // `out` first.
    let recipes = env.recipes();
    let id = CallId { contract, method, transaction };
    let follows = recipes.map(|recipes| recipes.follow(&id, sender, input, out));
    if let Some(Followed::Done) = follows {
        return;
    }
    out.clear();
    // No contract there, or no such entry: the call fails before any access.
    let Some((summary, entry)) = env.summary(contract).and_then(|summary| Some((summary, summary.entry(method)?))) else {
        if transaction {
            out.write(nonce_pattern(sender));
        }
        return;
    };
    // Every entry follows recipes, one that calls no other contract too:
    // with its keys built in place, a transfer followed takes a fifth fewer
    // instructions than filled in (1,960 against 2,480).
    let recording = match (recipes, follows) {
        (Some(recipes), Some(Followed::Record)) => Some(recipes),
        _ => None,
    };
    let args = Args::Known(input);
    match recording {
        Some(recipes) => {
            let mut trace = Trace::new(sender, input);
            let mut filler = Filler::<_, true> { env, out, budget: FILL_BUDGET, scratch: KeyBytes::new(), trace: Some(&mut trace) };
            filler.named_entry(contract, summary, method, entry, &args, sender, 1, Sources::Sender);
            if transaction {
                let nonce = nonce_pattern(sender);
                let after_sender = nonce.bytes().get(ADDRESS_LEN..).unwrap_or_default();
                let sources = (0..ADDRESS_LEN as u8).map(Source::Caller).chain(after_sender.iter().map(|&b| Source::Const(b))).collect();
                trace.key(AccessKind::Write, &nonce, sources, false);
                out.write(nonce);
            }
            recipes.keep(&id, trace.recipe(out.unbounded));
        }
        None => {
            let mut filler = Filler::<_, false> { env, out, budget: FILL_BUDGET, scratch: KeyBytes::new(), trace: None };
            filler.named_entry(contract, summary, method, entry, &args, sender, 1, Sources::Sender);
            if transaction {
                out.write(nonce_pattern(sender));
            }
        }
    }
}

/// The key of `sender`'s nonce ([`nonce_key`](chroma_host_api::key::nonce_key))
/// as a pattern, built inline, with no allocation.
pub fn nonce_pattern(sender: &Address) -> KeyPattern {
    let mut key = KeyBytes::from_slice(&slot_prefix(sender, SYSTEM_SLOT));
    key.extend_from_slice(NONCE_RECORD);
    KeyPattern::Exact(key)
}

/// Where the bytes of a call's caller and input come from, in terms of the
/// transaction (see [`Trace`]; used only while a recipe is recorded).
#[derive(Clone, Copy)]
enum Sources<'a> {
    /// The transaction's own call: its sender and input.
    Sender,
    /// A call made by a contract: its caller is that contract (the same for
    /// every call following a recipe), its input's bytes come from these.
    Nested(&'a [Source]),
}

impl Sources<'_> {
    /// Where byte `at` of a call's input `args` comes from.
    fn input(self, args: &Args<'_>, at: usize) -> Source {
        match self {
            Sources::Sender => match (args.byte(at), u32::try_from(at)) {
                (Some(_), Ok(at)) => Source::Input(at),
                _ => Source::Unknown,
            },
            Sources::Nested(sources) => sources.get(at).copied().unwrap_or(Source::Unknown),
        }
    }
}

/// A call's input bytes as far as they are known.
enum Args<'a> {
    Known(&'a [u8]),
    /// Every byte known (a nested call's arguments).
    Owned(KeyBytes),
    Partial(Vec<Option<u8>>),
    Unknown,
}

impl Args<'_> {
    fn byte(&self, i: usize) -> Option<u8> {
        match self {
            Args::Known(bytes) => bytes.get(i).copied(),
            Args::Owned(bytes) => bytes.get(i).copied(),
            Args::Partial(bytes) => bytes.get(i).copied().flatten(),
            Args::Unknown => None,
        }
    }

    /// All the bytes, when every one is known.
    fn known(&self) -> Option<&[u8]> {
        match self {
            Args::Known(bytes) => Some(bytes),
            Args::Owned(bytes) => Some(bytes),
            Args::Partial(_) | Args::Unknown => None,
        }
    }
}

/// A call template evaluated in one call: its callee, its method (`None`:
/// any), its arguments as far as known.
struct ResolvedCall<'s, 'e> {
    callee: [u8; ADDRESS_LEN],
    /// The callee's summary, found while resolving (a swap's prediction
    /// looked up nine summaries by address, two of them twice).
    summary: &'e ContractSummary,
    method: Option<&'s str>,
    args: Args<'static>,
}

impl ResolvedCall<'_, '_> {
    /// Whether filling `self` in predicts at least what filling `other` in
    /// does: the same callee, a method at least as wide, and arguments known
    /// at most where `other`'s are, with the same values there.
    fn subsumes(&self, other: &ResolvedCall<'_, '_>) -> bool {
        if self.callee != other.callee || (self.method.is_some() && self.method != other.method) {
            return false;
        }
        match (&self.args, &other.args) {
            (Args::Unknown, _) => true,
            (_, Args::Unknown) => false,
            (Args::Partial(a), Args::Partial(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.is_none() || x == y),
            (Args::Partial(a), b) => b.known().is_some_and(|b| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.is_none_or(|x| x == *y))),
            // Fully known arguments subsume only the same arguments.
            (a, b) => a.known().is_some() && a.known() == b.known(),
        }
    }
}

/// Fills templates in; `RECORD`: while a recipe is recorded (a fill of its
/// own, so that the others do not test for it: filling a transfer in took
/// 6% more instructions).
struct Filler<'e, 'o, 't, E: Environment, const RECORD: bool> {
    env: &'e E,
    out: &'o mut Collected,
    budget: usize,
    /// Reused for callee addresses.
    scratch: KeyBytes,
    /// What the fill looks at and makes, while a recipe is recorded (`Some`
    /// when `RECORD`).
    trace: Option<&'t mut Trace>,
}

/// One call being filled in.
struct Frame<'a, 's> {
    contract: &'a Address,
    caller: &'a Address,
    args: &'a Args<'a>,
    sources: Sources<'a>,
    summary: &'s ContractSummary,
    entry: &'s AccessSummary,
    /// Resolved stored values by read index (`None` inside: not resolvable).
    stored: SmallVec<[Option<Option<Arc<[u8]>>>; 8]>,
    /// Evaluated conditions by index (`None` inside: undecidable here).
    conditions: SmallVec<[Option<Option<bool>>; 32]>,
    /// Guards before this one belong to templates already visited.
    next_guard: usize,
    /// The conditions decided so far, as masks (see `Filler::path_open`).
    known: KnownConditions,
}

impl Frame<'_, '_> {
    /// Whether `key` is in a slot that only its contract's constructor
    /// writes, read by another entry: its value is the one the constructor
    /// left, in every state of the contract's life.
    fn fixes(&self, key: &KeyTemplate) -> bool {
        self.entry.kind != EntryKind::Init && key.slot.is_some_and(|s| self.summary.fixed_slots.contains(&s))
    }

    /// Where the call's input byte `at` comes from (while a recipe is recorded).
    fn input_source(&self, at: usize) -> Source {
        self.sources.input(self.args, at)
    }

    /// Where the call's caller's byte `at` comes from (while a recipe is recorded).
    fn caller_source(&self, at: u8) -> Source {
        match self.sources {
            Sources::Sender if usize::from(at) < ADDRESS_LEN => Source::Caller(at),
            Sources::Sender => Source::Unknown,
            Sources::Nested(_) => self.caller.as_bytes().get(usize::from(at)).map_or(Source::Unknown, |&b| Source::Const(b)),
        }
    }
}

/// Conditions of a call by bit (the first 64): evaluated, and of those the
/// ones known true and known false (the others cannot be decided here).
#[derive(Default)]
struct KnownConditions {
    evaluated: u64,
    known_true: u64,
    known_false: u64,
}


impl<'e, E: Environment, const RECORD: bool> Filler<'e, '_, '_, E, RECORD> {
    /// Fills in the call of `method` (`None`: any) on the contract at
    /// `contract`, whose summary is `summary`, by `caller`.
    #[allow(clippy::too_many_arguments)]
    fn call_into(&mut self, contract: &Address, summary: &ContractSummary, method: Option<&str>, args: &Args<'_>, caller: &Address, depth: u32, sources: Sources<'_>) {
        if depth > MAX_CALL_DEPTH + 1 || self.out.unbounded {
            return;
        }
        match method {
            Some(name) => {
                if let Some(entry) = summary.entry(name) {
                    self.named_entry(contract, summary, name, entry, args, caller, depth, sources);
                }
            }
            None => {
                for entry in summary.entries.iter().filter(|e| e.kind != EntryKind::Init) {
                    self.entry(contract, summary, entry, args, caller, depth, true, sources);
                }
            }
        }
    }

    /// Fills in entry `name` of the contract at `contract`, whose summary is
    /// `entry`, or the one the environment has for the input's shape.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn named_entry(&mut self, contract: &Address, summary: &ContractSummary, name: &str, entry: &AccessSummary, args: &Args<'_>, caller: &Address, depth: u32, sources: Sources<'_>) {
        let shaped = match args.known() {
            Some(input) if entry.by_shape => self.env.shaped_entry(contract, name, input),
            _ => None,
        };
        // A shaped entry's summary lives as long as the environment keeps
        // it, so its decisions are not kept (they are kept by where the
        // summary is).
        let kept = shaped.is_none();
        // A recipe recorded through a shaped summary holds for the inputs of
        // its shape: the same length (which a recipe checks anyway) and the
        // same bytes where the shape fixes them, which it is told to check
        // here. One recorded through the general summary of such an entry
        // would no longer hold once the call's shape is analysed.
        if let (true, true, Some(trace)) = (RECORD, entry.by_shape, &mut self.trace) {
            match shaped.as_deref().and_then(|shaped| shaped.shape_fixed.as_deref()) {
                Some(offsets) => {
                    for &at in offsets {
                        match sources.input(args, at as usize) {
                            Source::Unknown => trace.give_up(),
                            source => trace.look_at(source),
                        }
                    }
                }
                None => trace.give_up(),
            }
        }
        self.entry(contract, summary, shaped.as_deref().unwrap_or(entry), args, caller, depth, kept, sources);
    }

    /// Fills `entry` in for one call; `kept`: whether its decisions may be
    /// kept in the environment's [`Decisions`].
    #[allow(clippy::too_many_arguments)]
    fn entry(&mut self, contract: &Address, summary: &ContractSummary, entry: &AccessSummary, args: &Args<'_>, caller: &Address, depth: u32, kept: bool, sources: Sources<'_>) {
        let templates = entry.reads.len() + entry.writes.len() + entry.adds.len() + entry.calls.len();
        if entry.unbounded.is_some() || templates > self.budget {
            self.out.unbounded = true;
            return;
        }
        self.budget -= templates;
        let mut frame = Frame {
            contract,
            caller,
            args,
            sources,
            summary,
            entry,
            // Sized when first needed: most calls resolve no stored value
            // and decide no condition. Inline up to a size that holds the
            // example contracts' entries (an allocation each, otherwise).
            stored: SmallVec::new(),
            conditions: SmallVec::new(),
            next_guard: 0,
            known: KnownConditions::default(),
        };
        // Decided together (and perhaps not at all: kept from an earlier
        // call), or template by template.
        let decided = if kept && !entry.guards.is_empty() { self.decided(&mut frame) } else { None };
        let (writes_at, adds_at) = (entry.reads.len(), entry.reads.len() + entry.writes.len());
        let calls_at = adds_at + entry.adds.len();
        let happens = |this: &mut Self, frame: &mut Frame<'_, '_>, kind: AccessKind, i: usize, place: usize| match &decided {
            Some(bits) => bits[place / 64] & (1 << (place % 64)) != 0,
            None => this.may_happen(frame, kind, i),
        };
        for (i, key) in entry.reads.iter().enumerate() {
            if happens(self, &mut frame, AccessKind::Read, i, i) {
                let pattern = self.key(&mut frame, key, 0);
                let fixed = frame.fixes(key);
                if RECORD {
                    self.record_key(&mut frame, AccessKind::Read, key, &pattern, fixed);
                }
                self.out.read(pattern.as_ref(), fixed);
            }
        }
        for (i, key) in entry.writes.iter().enumerate() {
            if happens(self, &mut frame, AccessKind::Write, i, writes_at + i) {
                let pattern = self.key(&mut frame, key, 0);
                if RECORD {
                    self.record_key(&mut frame, AccessKind::Write, key, &pattern, false);
                }
                self.out.writes.insert(pattern.as_ref());
            }
        }
        for (i, key) in entry.adds.iter().enumerate() {
            if happens(self, &mut frame, AccessKind::Add, i, adds_at + i) {
                let pattern = self.key(&mut frame, key, 0);
                if RECORD {
                    self.record_key(&mut frame, AccessKind::Add, key, &pattern, false);
                }
                self.out.adds.insert(pattern.as_ref());
            }
        }
        let mut calls: SmallVec<[ResolvedCall<'_, '_>; 4]> = SmallVec::new();
        // Where each call's arguments come from, while a recipe is recorded.
        let mut call_sources: Vec<Vec<Source>> = Vec::new();
        for (i, call) in entry.calls.iter().enumerate() {
            if !happens(self, &mut frame, AccessKind::Call, i, calls_at + i) {
                continue;
            }
            match self.resolve_call(&mut frame, call) {
                Some(Some(resolved)) => {
                    if RECORD {
                        let args = call.args.as_ref().map(|bytes| self.argument_sources(&mut frame, bytes, &resolved.args));
                        call_sources.push(args.unwrap_or_default());
                    }
                    calls.push(resolved);
                }
                // A call to an address with no contract accesses nothing.
                Some(None) => {}
                None => {
                    self.out.unbounded = true;
                    return;
                }
            }
        }
        if let (true, Some(trace)) = (RECORD, &mut self.trace) {
            // Whether one call stands in for another depends on their
            // arguments' values when they go to one callee and method: on
            // the bytes that come from different places (the same sender's
            // byte in both compares equal for every sender).
            let compared = |a: &ResolvedCall<'_, '_>, b: &ResolvedCall<'_, '_>| a.callee == b.callee && (a.method.is_none() || a.method == b.method);
            for (i, call) in calls.iter().enumerate() {
                for (j, other) in calls.iter().enumerate().skip(i + 1) {
                    if compared(call, other) || compared(other, call) {
                        for (&a, &b) in call_sources[i].iter().zip(&call_sources[j]).filter(|(a, b)| a != b) {
                            trace.look_at(a);
                            trace.look_at(b);
                        }
                    }
                }
            }
        }
        // Paths that differ only in what they know of a call's arguments
        // leave several templates of one call (`transfer(caller ‖ 1)` and
        // `transfer(caller ‖ ???)`): filling in the widest is enough, since
        // knowing fewer argument bytes can only widen a prediction.
        for (i, call) in calls.iter().enumerate() {
            let redundant = calls.iter().enumerate().any(|(j, other)| j != i && other.subsumes(call) && (j < i || !call.subsumes(other)));
            if !redundant {
                let nested = Sources::Nested(call_sources.get(i).map_or(&[], |s| &s[..]));
                self.call_into(&Address(call.callee), call.summary, call.method, &call.args, frame.contract, depth + 1, nested);
                if self.out.unbounded {
                    return;
                }
            }
        }
    }

    /// Which of the call's templates may happen (see [`Decided`]), all
    /// decided at once and kept in the environment's [`Decisions`] by what
    /// decided them, or taken from there. `None` when the entry has no
    /// guards (every template may happen) or its decisions are not kept:
    /// then they are decided template by template.
    fn decided(&mut self, frame: &mut Frame<'_, '_>) -> Option<Decided> {
        let entry = frame.entry;
        let control = entry.compiled().control.as_ref()?;
        let decisions = self.env.decisions()?;
        let lists = [(AccessKind::Read, entry.reads.len()), (AccessKind::Write, entry.writes.len()), (AccessKind::Add, entry.adds.len()), (AccessKind::Call, entry.calls.len())];
        let templates: usize = lists.iter().map(|(_, len)| len).sum();
        if templates > DECIDED_TEMPLATES_MAX {
            return None;
        }
        // The entry (its summary does not move while the environment lasts),
        // the contract, then what the conditions read.
        let mut key = DecisionKey::new();
        key.extend_from_slice(&(entry as *const AccessSummary as usize).to_le_bytes());
        key.extend_from_slice(frame.contract.as_bytes());
        if control.caller {
            key.extend_from_slice(frame.caller.as_bytes());
        }
        // Each run of input bytes: 1 and its bytes when all are known (a
        // run's length is the entry's), else 0 and each as known or not.
        for &(start, len) in control.inputs.iter() {
            match frame.args.known().and_then(|input| input.get(start..start + len)) {
                Some(run) => {
                    key.push(1);
                    key.extend_from_slice(run);
                }
                None => {
                    key.push(0);
                    for at in start..start + len {
                        key.extend_from_slice(&frame.args.byte(at).map_or([0, 0], |byte| [1, byte]));
                    }
                }
            }
        }
        // While a recipe is recorded, the conditions are evaluated, for
        // the recipe to know what they compared.
        if !RECORD {
            if let Some(decided) = decisions.get(&key) {
                return Some(decided);
            }
        }
        let mut decided: Decided = smallvec::smallvec![0; templates.div_ceil(64)];
        let mut place = 0;
        for (kind, len) in lists {
            for i in 0..len {
                if self.may_happen(frame, kind, i) {
                    decided[place / 64] |= 1 << (place % 64);
                }
                place += 1;
            }
        }
        decisions.keep(key, &decided);
        Some(decided)
    }

    /// Whether template `index` of `kind` may happen in this call: it has no
    /// guard, or some path's conditions are not all decided against it.
    ///
    /// Templates are visited in (kind, index) order, the order the analyzer
    /// lists guards in, so one pass over the guards finds them all (a linear
    /// search per template was a third of filling a swap's entry in). Were
    /// a summary's guards out of order, a guard passed over would only make
    /// its template unconditional: a wider prediction, never a wrong one.
    fn may_happen(&mut self, frame: &mut Frame<'_, '_>, kind: AccessKind, index: usize) -> bool {
        let guards = &frame.entry.guards;
        let wanted = (kind, index as u32);
        while guards.get(frame.next_guard).is_some_and(|g| (g.kind, g.index) < wanted) {
            frame.next_guard += 1;
        }
        let Some(guard) = guards.get(frame.next_guard).filter(|g| (g.kind, g.index) == wanted) else { return true };
        let entry = frame.entry;
        if let Some(paths) = entry.compiled().masks.as_ref().and_then(|masks| masks.paths(frame.next_guard)) {
            return paths.iter().any(|&(needed_true, needed_false)| self.path_open(frame, needed_true, needed_false));
        }
        guard.any_of.iter().any(|path| path.iter().all(|literal| self.literal(frame, *literal, 0) != Some(false)))
    }

    /// Whether a path that needs the conditions of `needed_true` true and
    /// those of `needed_false` false may hold: none of them is decided
    /// against it. The ones not evaluated yet are, in index order, up to
    /// the first that closes the path (as the literal-by-literal check
    /// stops at the first literal that fails).
    fn path_open(&mut self, frame: &mut Frame<'_, '_>, needed_true: u64, needed_false: u64) -> bool {
        let mut pending = (needed_true | needed_false) & !frame.known.evaluated;
        loop {
            let known = &frame.known;
            if needed_true & known.known_false != 0 || needed_false & known.known_true != 0 {
                return false;
            }
            if pending == 0 {
                return true;
            }
            let index = pending.trailing_zeros();
            pending &= pending - 1;
            let value = self.condition(frame, index as usize, 0);
            let (known, bit) = (&mut frame.known, 1u64 << index);
            known.evaluated |= bit;
            match value {
                Some(true) => known.known_true |= bit,
                Some(false) => known.known_false |= bit,
                None => {}
            }
        }
    }

    /// Whether a literal holds: `None` when its condition cannot be decided here.
    fn literal(&mut self, frame: &mut Frame<'_, '_>, literal: Literal, depth: u32) -> Option<bool> {
        self.condition(frame, literal.condition as usize, depth).map(|v| v == literal.value)
    }

    fn condition(&mut self, frame: &mut Frame<'_, '_>, index: usize, depth: u32) -> Option<bool> {
        if let Some(known) = frame.conditions.get(index).copied().flatten() {
            return known;
        }
        if depth > 16 {
            return None;
        }
        let entry = frame.entry;
        let value = match *entry.conditions.get(index)? {
            Condition::Compare { op, width, ref lhs, ref rhs } => {
                let [left, right] = entry.compiled().operands.get(index).copied().unwrap_or([Operand::Bytes; 2]);
                let value = match (self.word(frame, left, lhs), self.word(frame, right, rhs)) {
                    (Some(a), Some(b)) => Some(op.eval(width, a, b)),
                    _ => None,
                };
                if RECORD {
                    self.record_check(frame, op, width, lhs, rhs, value);
                }
                value
            }
            Condition::And(a, b) => match (self.literal(frame, a, depth + 1), self.literal(frame, b, depth + 1)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Condition::Or(a, b) => match (self.literal(frame, a, depth + 1), self.literal(frame, b, depth + 1)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        };
        if frame.conditions.len() <= index {
            frame.conditions.resize(entry.conditions.len(), None);
        }
        if let Some(slot) = frame.conditions.get_mut(index) {
            *slot = Some(value);
        }
        value
    }

    /// A call template's callee and arguments in this call: `None` when the
    /// callee cannot be resolved (the call may reach any contract),
    /// `Some(None)` when no contract is there (the call accesses nothing).
    fn resolve_call<'s>(&mut self, frame: &mut Frame<'_, 's>, call: &'s CallTemplate) -> Option<Option<ResolvedCall<'s, 'e>>> {
        let mut callee = std::mem::take(&mut self.scratch);
        callee.clear();
        self.bytes(frame, &call.callee, 0, &mut callee);
        let resolved = callee.get(..ADDRESS_LEN).and_then(|bytes| <[u8; ADDRESS_LEN]>::try_from(bytes).ok());
        self.scratch = callee;
        let callee = resolved?;
        if RECORD {
            // The callee chosen depends on where its bytes come from.
            let mut sources = SmallVec::new();
            self.sources(frame, &call.callee, 0, ADDRESS_LEN, &mut sources);
            if let Some(trace) = &mut self.trace {
                if trace.rebuilds(&sources, &callee) {
                    sources.iter().for_each(|&source| trace.look_at(source));
                } else {
                    trace.give_up();
                }
            }
        }
        let env: &'e E = self.env;
        let Some(summary) = env.summary(&Address(callee)) else {
            return Some(None);
        };
        let args = match &call.args {
            Some(bytes) => {
                let mut known = KeyBytes::new();
                if self.bytes(frame, bytes, 0, &mut known) {
                    Args::Owned(known)
                } else {
                    // `known` holds the bytes before the first unknown
                    // one (a swap's `transfer(caller ‖ ???)`: the caller);
                    // only the rest are evaluated one by one.
                    let mut partial = Vec::with_capacity(bytes.len());
                    partial.extend(known.iter().take(bytes.len()).map(|&b| Some(b)));
                    partial.extend(bytes.iter().skip(partial.len()).map(|b| self.byte(frame, *b, 0)));
                    Args::Partial(partial)
                }
            }
            None => Args::Unknown,
        };
        Some(Some(ResolvedCall { callee, summary, method: call.method.as_deref(), args }))
    }

    /// Where each byte of a call's arguments `args`, made from `template`,
    /// comes from (`Unknown` for those not known); gives up recording when
    /// the sources do not rebuild the known bytes.
    fn argument_sources(&mut self, frame: &mut Frame<'_, '_>, template: &ByteTemplate, args: &Args<'_>) -> Vec<Source> {
        let mut sources = SmallVec::<[Source; 80]>::new();
        self.sources(frame, template, 0, template.len(), &mut sources);
        let Some(trace) = &mut self.trace else { return Vec::new() };
        let rebuilt = match args {
            Args::Owned(bytes) => trace.rebuilds(&sources, bytes),
            Args::Partial(bytes) => {
                let mut rebuilt = sources.len() == bytes.len();
                for (source, byte) in sources.iter_mut().zip(bytes) {
                    match byte {
                        Some(byte) => rebuilt &= trace.rebuilds(&[*source], &[*byte]),
                        None => *source = Source::Unknown,
                    }
                }
                rebuilt
            }
            Args::Known(_) | Args::Unknown => false,
        };
        if !rebuilt {
            trace.give_up();
        }
        sources.into_vec()
    }

    /// Records a comparison of the words of `lhs` and `rhs` that the fill
    /// evaluated to `value` (while a recipe is recorded).
    #[allow(clippy::too_many_arguments)]
    fn record_check(&mut self, frame: &mut Frame<'_, '_>, op: Comparison, width: u8, lhs: &[Byte], rhs: &[Byte], value: Option<bool>) {
        let [mut left, mut right] = [SmallVec::new(), SmallVec::new()];
        self.word_sources(frame, lhs, &mut left);
        self.word_sources(frame, rhs, &mut right);
        if let Some(trace) = &mut self.trace {
            trace.check(op, width, left, right, value);
        }
    }

    /// Where each byte of the word of an operand `bytes` comes from, up to
    /// the first not known (past which the fill does not evaluate).
    fn word_sources(&mut self, frame: &mut Frame<'_, '_>, bytes: &[Byte], out: &mut SmallVec<[Source; WORD_BYTES]>) {
        for byte in bytes.iter().take(WORD_BYTES) {
            let mut one = SmallVec::<[Source; 80]>::new();
            self.sources(frame, std::slice::from_ref(byte), 0, 1, &mut one);
            let source = one.first().copied().unwrap_or(Source::Unknown);
            out.push(source);
            if source == Source::Unknown {
                break;
            }
        }
    }

    /// Records where the bytes of `pattern`, made from `key` as a template
    /// of `kind`, come from (while a recipe is recorded).
    fn record_key(&mut self, frame: &mut Frame<'_, '_>, kind: AccessKind, key: &KeyTemplate, pattern: &KeyPattern, fixed: bool) {
        let mut sources: SmallVec<[Source; 80]> = SmallVec::new();
        let made = pattern.bytes().len();
        match key.slot {
            None => sources.extend(frame.contract.as_bytes().iter().map(|&b| Source::Const(b))),
            Some(slot) => {
                sources.extend(slot_prefix(frame.contract, slot).iter().map(|&b| Source::Const(b)));
                self.sources(frame, &key.bytes, 0, made.saturating_sub(KEY_PREFIX_LEN), &mut sources);
            }
        }
        if let Some(trace) = &mut self.trace {
            trace.key(kind, pattern, sources, fixed);
        }
    }

    /// Appends where each of the first `limit` bytes of `template` comes
    /// from. Only bytes the fill has made are asked for: a stored value
    /// they name is resolved already, so that recording resolves nothing
    /// a plain fill would not (a value resolved is kept for the call).
    fn sources(&mut self, frame: &mut Frame<'_, '_>, template: &[Byte], depth: u32, limit: usize, out: &mut SmallVec<[Source; 80]>) {
        for &byte in template.iter().take(limit) {
            let source = match byte {
                Byte::Const(c) => Source::Const(c),
                Byte::Input(at) => frame.input_source(usize::from(at)),
                Byte::Caller(at) => frame.caller_source(at),
                Byte::Contract(at) => frame.contract.as_bytes().get(usize::from(at)).map_or(Source::Unknown, |&b| Source::Const(b)),
                Byte::Stored { read, offset } => {
                    self.stored(frame, usize::from(read), depth).and_then(|value| value.get(usize::from(offset))).map_or(Source::Unknown, |&b| Source::Const(b))
                }
                Byte::Flag { .. } | Byte::Choice { .. } | Byte::Unknown => Source::Unknown,
            };
            out.push(source);
        }
    }

    fn key(&mut self, frame: &mut Frame<'_, '_>, key: &KeyTemplate, depth: u32) -> KeyPattern {
        let Some(slot) = key.slot else {
            return KeyPattern::prefix(frame.contract.as_bytes());
        };
        let mut full = KeyBytes::new();
        full.extend_from_slice(&slot_prefix(frame.contract, slot));
        if !self.bytes(frame, &key.bytes, depth, &mut full) {
            return KeyPattern::Prefix(full);
        }
        if key.exact {
            KeyPattern::Exact(full)
        } else {
            KeyPattern::Prefix(full)
        }
    }

    /// Appends the values of `template`'s bytes to `out`, up to the first
    /// unknown one; returns whether all were known. Keys and arguments are
    /// mostly runs of consecutive bytes of one source (an address argument,
    /// the caller), which are copied as slices.
    fn bytes(&mut self, frame: &mut Frame<'_, '_>, template: &ByteTemplate, depth: u32, out: &mut KeyBytes) -> bool {
        /// Appends what `source` has of `start .. start + len`; whether it had all.
        fn copy(out: &mut KeyBytes, source: &[u8], start: usize, len: usize) -> bool {
            let available = source.get(start..).unwrap_or_default();
            let n = available.len().min(len);
            out.extend_from_slice(&available[..n]);
            n == len
        }
        for run in template.runs() {
            let complete = match *run {
                Run::Const(ref consts) => {
                    out.extend_from_slice(consts);
                    true
                }
                Run::Caller { start, len } => copy(out, frame.caller.as_bytes(), start, len),
                Run::Contract { start, len } => copy(out, frame.contract.as_bytes(), start, len),
                Run::Input { start, len } => match frame.args {
                    Args::Known(input) => copy(out, input, start, len),
                    Args::Owned(input) => copy(out, input, start, len),
                    Args::Partial(input) => {
                        let known = input.get(start..).unwrap_or_default().iter().take(len).map_while(|b| *b);
                        let before = out.len();
                        out.extend(known);
                        out.len() - before == len
                    }
                    Args::Unknown => false,
                },
                Run::Stored { read, offset, len } => match self.stored(frame, read, depth) {
                    Some(value) => copy(out, value, offset, len),
                    None => false,
                },
                Run::Other(byte) => match self.byte(frame, byte, depth) {
                    Some(v) => {
                        out.push(v);
                        true
                    }
                    None => false,
                },
            };
            if !complete {
                return false;
            }
        }
        true
    }

    /// The word (little-endian) of a comparison's operand `bytes`, found
    /// where `operand` says it comes from: a constant, or a slice of the
    /// input or of a stored value read at once. Otherwise (and for input
    /// known only in part) byte by byte. `None` when not all are known.
    fn word(&mut self, frame: &mut Frame<'_, '_>, operand: Operand, bytes: &[Byte]) -> Option<u64> {
        let word = |run: &[u8]| run.iter().enumerate().fold(0u64, |word, (i, b)| word | u64::from(*b) << (8 * i));
        match operand {
            Operand::Const(value) => return Some(value),
            Operand::Input { start, len } => {
                if let Some(input) = frame.args.known() {
                    return input.get(start..start + len).map(word);
                }
            }
            Operand::Stored { read, offset, len } => return self.stored(frame, read, 0)?.get(offset..offset + len).map(word),
            Operand::Bytes => {}
        }
        let mut value = 0u64;
        for (i, b) in bytes.iter().take(WORD_BYTES).enumerate() {
            value |= u64::from(self.byte(frame, *b, 0)?) << (8 * i);
        }
        Some(value)
    }

    fn byte(&mut self, frame: &mut Frame<'_, '_>, b: Byte, depth: u32) -> Option<u8> {
        match b {
            Byte::Const(c) => Some(c),
            Byte::Input(i) => frame.args.byte(i as usize),
            Byte::Caller(i) => frame.caller.as_bytes().get(i as usize).copied(),
            Byte::Contract(i) => frame.contract.as_bytes().get(i as usize).copied(),
            Byte::Stored { read, offset } => {
                let value = self.stored(frame, read as usize, depth)?;
                value.get(offset as usize).copied()
            }
            Byte::Flag { .. } | Byte::Choice { .. } | Byte::Unknown => None,
        }
    }

    /// The current value read by `frame.entry.reads[read]`, when that is
    /// also the value the call will see.
    fn stored<'f>(&mut self, frame: &'f mut Frame<'_, '_>, read: usize, depth: u32) -> Option<&'f [u8]> {
        if read >= frame.entry.reads.len() {
            return None;
        }
        if frame.stored.len() <= read {
            frame.stored.resize(frame.entry.reads.len(), None);
        }
        if frame.stored[read].is_none() {
            let resolved = self.resolve_stored(frame, read, depth);
            frame.stored[read] = Some(resolved);
        }
        frame.stored[read].as_ref()?.as_deref()
    }

    fn resolve_stored(&mut self, frame: &mut Frame<'_, '_>, read: usize, depth: u32) -> Option<Arc<[u8]>> {
        let entry = frame.entry;
        let key = &entry.reads[read];
        // The constructor writes what it then reads; other entries cannot
        // change a fixed slot, so the committed value is the one they see.
        let fixed = frame.fixes(key);
        if !fixed || !key.exact || depth >= 4 {
            return None;
        }
        let pattern = self.key(frame, key, depth + 1);
        if RECORD {
            // The value read depends on where its key's bytes come from.
            let mut sources = SmallVec::new();
            self.sources(frame, &key.bytes, depth + 1, pattern.bytes().len().saturating_sub(KEY_PREFIX_LEN), &mut sources);
            if let Some(trace) = &mut self.trace {
                sources.iter().for_each(|&source| trace.look_at(source));
            }
        }
        match pattern {
            KeyPattern::Exact(full) => self.env.storage(&full),
            KeyPattern::Prefix(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::summary::{Comparison, EntryKind, Guard};
    use crate::Recipes;

    /// Two contracts: `caller.go` calls `callee.take(caller ‖ amount)` in
    /// several templates that know more or less of the arguments, and
    /// `callee.take` reads and writes a key of the first argument and adds
    /// to one keyed by the amount.
    struct Chain {
        caller: Address,
        summaries: Vec<(Address, ContractSummary)>,
    }

    fn entry(name: &str, reads: Vec<KeyTemplate>, writes: Vec<KeyTemplate>, adds: Vec<KeyTemplate>, calls: Vec<CallTemplate>) -> AccessSummary {
        AccessSummary {
            name: name.into(),
            kind: EntryKind::Mutating,
            reads,
            writes,
            adds,
            calls,
            conditions: Vec::new(),
            guards: Vec::new(),
            unbounded: None,
            steps: 0,
            by_shape: false,
            shape_fixed: None,
            compiled: Default::default(),
        }
    }

    fn chain(calls: Vec<CallTemplate>) -> Chain {
        let (caller, callee) = (Address([1; ADDRESS_LEN]), Address([2; ADDRESS_LEN]));
        let first_arg = KeyTemplate::from_bytes(Some(3), &(0..32).map(Byte::Input).collect::<Vec<_>>());
        let amount = KeyTemplate::from_bytes(Some(4), &(32..48).map(Byte::Input).collect::<Vec<_>>());
        let take = entry("take", vec![first_arg.clone()], vec![first_arg], vec![amount], Vec::new());
        let go = entry("go", Vec::new(), Vec::new(), Vec::new(), calls);
        let summary = |entries| ContractSummary::new(entries, BTreeSet::new());
        Chain { caller, summaries: vec![(caller, summary(vec![go])), (callee, summary(vec![take]))] }
    }

    impl Environment for Chain {
        fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
            self.summaries.iter().find(|(a, _)| a == contract).map(|(_, s)| s)
        }
        fn storage(&self, _: &[u8]) -> Option<Arc<[u8]>> {
            None
        }
    }

    fn call_take(callee: &Address, args: Vec<Byte>) -> CallTemplate {
        CallTemplate { callee: callee.as_bytes().iter().map(|&b| Byte::Const(b)).collect::<Vec<_>>().into(), method: Some("take".into()), args: Some(args.into()) }
    }

    /// Repeats are dropped as they come in a short list and at the end in a
    /// long one; either way each pattern stays where it first occurred.
    #[test]
    fn a_list_keeps_each_pattern_once_in_the_order_first_found() {
        for len in [5u32, SCANNED_MAX as u32, 300] {
            let mut next = crate::test_rng(u64::from(len));
            let input: Vec<KeyPattern> = (0..len)
                .map(|_| {
                    let key = next(u64::from(len) / 2 + 1).to_le_bytes();
                    if next(4) == 0 { KeyPattern::prefix(&key) } else { KeyPattern::exact(&key) }
                })
                .collect();
            let mut expected: Vec<KeyPattern> = Vec::new();
            for pattern in &input {
                if !expected.contains(pattern) {
                    expected.push(pattern.clone());
                }
            }
            assert!(expected.len() < input.len(), "{len} patterns: some repeats");
            let mut list = Distinct::default();
            input.iter().for_each(|p| list.insert(p.as_ref()));
            list.settle();
            let fingerprints: Vec<u64> = expected.iter().map(crate::plan::fingerprint).collect();
            assert_eq!(list.fingerprints.to_vec(), fingerprints, "{len} patterns");
            assert_eq!(list.patterns().map(PatternRef::to_pattern).collect::<Vec<_>>(), expected, "{len} patterns");
        }
    }

    /// A prediction keeps its three lists apart in its one slice: each
    /// comes back as given (empty ones included), but for the reads and
    /// adds of a pattern it writes, which the write allows; and its JSON is
    /// the three lists and the flag, as when they were fields of their own.
    #[test]
    fn a_prediction_gives_back_each_of_its_lists() {
        let key = |b: u8| KeyPattern::exact(&[b; 3]);
        let lists = [
            (vec![key(1), key(2)], vec![KeyPattern::prefix(&[3])], vec![key(4), key(5), key(6)]),
            (Vec::new(), vec![key(7)], Vec::new()),
            (vec![key(8)], Vec::new(), Vec::new()),
            (Vec::new(), Vec::new(), vec![key(9)]),
            (Vec::new(), Vec::new(), Vec::new()),
            // Reads and adds of a written pattern are left out (the write
            // allows them); a prefix of a written key's bytes is another
            // pattern, kept.
            (vec![key(1), key(7), KeyPattern::prefix(&[2; 3])], vec![key(7), key(2)], vec![key(2), key(3)]),
        ];
        for (given_reads, writes, given_adds) in lists {
            let access = PredictedAccess::new(given_reads.clone(), writes.clone(), given_adds.clone());
            let unwritten = |list: &[KeyPattern]| -> Vec<KeyPattern> { list.iter().filter(|p| !writes.contains(p)).cloned().collect() };
            let (reads, adds) = (unwritten(&given_reads), unwritten(&given_adds));
            assert_eq!((access.reads().to_vec(), access.writes().to_vec(), access.adds().to_vec()), (reads.clone(), writes.clone(), adds.clone()));
            let all: Vec<KeyPattern> = reads.iter().chain(&writes).chain(&adds).cloned().collect();
            assert_eq!(access.patterns().to_vec(), all);
            // Each pattern with its own fingerprint; none left covered.
            for (position, pattern) in all.iter().enumerate() {
                let position = position as u32;
                assert_eq!(access.fingerprint_at(position), crate::plan::fingerprint(pattern));
                assert!(!access.is_covered(position), "{pattern:?} in {access:?}");
            }
            assert_eq!(access.is_exact(), all.iter().all(KeyPattern::is_exact));
            // A list covers a key as its patterns do (by fingerprint when
            // the prediction has no prefix); a key may be read or added to
            // where it is written too, as given.
            let readable: Vec<KeyPattern> = given_reads.iter().chain(&writes).cloned().collect();
            let addable: Vec<KeyPattern> = writes.iter().chain(&given_adds).cloned().collect();
            let views = [(access.reads(), &reads), (access.writes(), &writes), (access.adds(), &adds), (access.readable(), &readable), (access.addable(), &addable)];
            for (list, patterns) in views {
                for key in (0..=10u8).flat_map(|b| [vec![b; 3], vec![b; 2], vec![b; 4]]) {
                    assert_eq!(list.covers(&key), patterns.iter().any(|p| p.covers(&key)), "{key:?} in {list:?}");
                }
            }
            let json = serde_json::to_value(&access).expect("serializable");
            assert_eq!(json, serde_json::json!({ "reads": reads, "writes": writes, "adds": adds, "unbounded": false }));
            // Collected and finished, the same lists.
            let mut collected = Collected::default();
            collected.set(access.clone());
            assert_eq!(collected.finish(), access);
            assert_eq!(access.clone().into_lists(), (reads, writes, adds));
        }
        let anything = PredictedAccess::unbounded();
        assert!(anything.is_unbounded() && !anything.is_exact());
        assert!(anything.covers([&b"a"[..]], [&b"b"[..]], [&b"c"[..]]));
        assert!(!PredictedAccess::default().covers([&b"a"[..]], [], []));
        assert_ne!(PredictedAccess::new(vec![key(1)], Vec::new(), Vec::new()), PredictedAccess::new(Vec::new(), vec![key(1)], Vec::new()), "the same patterns in another list");
    }

    /// Contracts whose entries' guards decide which of their writes happen,
    /// with stored values for the reads their conditions compare.
    struct Guarded {
        summaries: Vec<(Address, ContractSummary)>,
        stored: BTreeMap<Vec<u8>, Vec<u8>>,
        decisions: Option<Decisions>,
        recipes: Option<Recipes>,
    }

    impl Environment for Guarded {
        fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
            self.summaries.iter().find(|(a, _)| a == contract).map(|(_, s)| s)
        }
        fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>> {
            self.stored.get(key).map(|v| v[..].into())
        }
        fn decisions(&self) -> Option<&Decisions> {
            self.decisions.as_ref()
        }
        fn recipes(&self) -> Option<&Recipes> {
            self.recipes.as_ref()
        }
    }

    /// Guards checked by their paths' masks, and comparisons' operands read
    /// where their compiled form says, decide what the literal-by-literal,
    /// byte-by-byte evaluation decides, and so do decisions kept from
    /// earlier calls: random entries (comparisons of constants, input,
    /// stored values, the caller and mixed bytes; `And`s and `Or`s; literals
    /// of conditions that do not exist), called with whole inputs of
    /// several lengths and, through another contract, with inputs known in
    /// part, by two senders. So do recipes learnt from earlier calls
    /// (the outer contract's, which makes a call): followed when the
    /// comparisons of the inner call's guards come out as recorded.
    #[test]
    fn compiled_guards_decide_what_the_literals_decide() {
        let (outer, inner) = (Address([1; ADDRESS_LEN]), Address([2; ADDRESS_LEN]));
        let senders = [Address([9; ADDRESS_LEN]), Address([8; ADDRESS_LEN])];
        let (mut calls, mut kept) = (0, 0);
        let mut next = crate::test_rng(0x9e37_79b9);
        let mut decided = [0usize; 2];
        let (mut followed, mut recorded) = (0, 0);
        for case in 0..400 {
            let mut pick = |n: u64| next(n) as usize;
            let small = |pick: &mut dyn FnMut(u64) -> usize| Byte::Const(pick(3) as u8);
            let conditions_len = 1 + pick(6);
            let mut conditions = Vec::new();
            for i in 0..conditions_len {
                let operand = |pick: &mut dyn FnMut(u64) -> usize| -> Vec<Byte> {
                    let len = if pick(3) == 0 { 4 } else { 8 };
                    let start = pick(10) as u16;
                    match pick(6) {
                        0 => (0..len).map(|_| small(pick)).collect(),
                        1 | 2 => (start..start + len).map(Byte::Input).collect(),
                        3 => {
                            let read = pick(2) as u16;
                            (0..len).map(|o| Byte::Stored { read, offset: (start % 4) + o }).collect()
                        }
                        4 => (0..len).map(|o| if o % 2 == 0 { Byte::Input(start + o) } else { small(pick) }).collect(),
                        _ => (0..len).map(|o| Byte::Caller(o as u8)).collect(),
                    }
                };
                let literal = |pick: &mut dyn FnMut(u64) -> usize| Literal { condition: pick(i.max(1) as u64) as u32, value: pick(2) == 0 };
                conditions.push(match pick(8) {
                    0 if i > 0 => Condition::And(literal(&mut pick), literal(&mut pick)),
                    1 if i > 0 => Condition::Or(literal(&mut pick), literal(&mut pick)),
                    _ => {
                        let ops = [Comparison::Eq, Comparison::Ne, Comparison::LtU, Comparison::GeS];
                        Condition::Compare { op: ops[pick(4)], width: if pick(2) == 0 { 4 } else { 8 }, lhs: operand(&mut pick), rhs: operand(&mut pick) }
                    }
                });
            }
            // Each write its own key, so that the prediction names the writes that may happen.
            let writes: Vec<KeyTemplate> = (0..6).map(|i| KeyTemplate::from_bytes(Some(10 + i), &[Byte::Const(i as u8)])).collect();
            let mut guards = Vec::new();
            for index in 0..writes.len() as u32 {
                if pick(4) == 0 {
                    continue;
                }
                let any_of = (0..pick(4))
                    .map(|_| (0..1 + pick(4)).map(|_| Literal { condition: pick(conditions_len as u64 + 1) as u32, value: pick(2) == 0 }).collect())
                    .collect();
                guards.push(Guard { kind: AccessKind::Write, index, any_of });
            }
            // Read 0: a constant key; read 1: a key of the input's first two bytes.
            let reads = vec![KeyTemplate::from_bytes(Some(1), &[]), KeyTemplate::from_bytes(Some(2), &[Byte::Input(0), Byte::Input(1)])];
            let go = AccessSummary { conditions, guards, ..entry("go", reads, writes, Vec::new(), Vec::new()) };
            let interpreted = AccessSummary { compiled: crate::guards::CompiledCell::interpreted(go.conditions.len()), ..go.clone() };
            // The outer contract calls `go` with its own input's bytes, some unknown.
            let args: Vec<Byte> = (0..pick(14) as u16).map(|i| if pick(4) == 0 { Byte::Unknown } else { Byte::Input(i) }).collect();
            let call = CallTemplate { method: Some("go".into()), args: Some(args.into()), ..call_take(&inner, Vec::new()) };
            let relay = entry("relay", Vec::new(), Vec::new(), Vec::new(), vec![call]);
            let mut stored = BTreeMap::new();
            stored.insert(slot_prefix(&inner, 1).to_vec(), (0..12).map(|_| pick(3) as u8).collect());
            for (a, b) in [(0u8, 0u8), (0, 1), (1, 2)] {
                stored.insert([&slot_prefix(&inner, 2)[..], &[a, b]].concat(), (0..12).map(|_| pick(3) as u8).collect());
            }
            let fixed: BTreeSet<u32> = [1, 2].into();
            let env = |go: AccessSummary, decisions: Option<Decisions>, recipes: Option<Recipes>| Guarded {
                summaries: vec![(outer, ContractSummary::new(vec![relay.clone()], BTreeSet::new())), (inner, ContractSummary::new(vec![go], fixed.clone()))],
                stored: stored.clone(),
                decisions,
                recipes,
            };
            let guarded = !go.guards.is_empty();
            let following = env(go.clone(), Some(Decisions::default()), Some(Recipes::default()));
            let (compiled, literal) = (env(go, Some(Decisions::default()), None), env(interpreted, None, None));
            let mut input: Vec<u8> = Vec::new();
            for _ in 0..8 {
                // Half the time the last input again (by the other sender, say).
                if pick(2) == 0 {
                    input = (0..pick(16)).map(|_| pick(3) as u8).collect();
                }
                let (contract, method) = if pick(2) == 0 { (&inner, "go") } else { (&outer, "relay") };
                let sender = &senders[pick(2)];
                let expected = predict(&literal, sender, contract, method, &input);
                assert_eq!(predict(&compiled, sender, contract, method, &input), expected, "case {case}: {method} with {input:?}");
                assert_eq!(predict(&following, sender, contract, method, &input), expected, "case {case}: {method} with {input:?}, recipes");
                decided[usize::from(expected.writes().len() < 6)] += 1;
                calls += usize::from(guarded);
            }
            kept += compiled.decisions.as_ref().map_or(0, Decisions::len);
            followed += following.recipes.as_ref().map_or(0, Recipes::followed);
            recorded += following.recipes.as_ref().map_or(0, Recipes::len);
        }
        // Recipes were followed, and calls that did not fit made others.
        assert!(followed > 200 && recorded > 400, "{followed} predictions followed {recorded} recipes");
        // Decisions were kept, and later calls took many of them.
        assert!(kept > 0 && kept < calls * 3 / 4, "{kept} decisions kept for {calls} calls");
        // Both kinds of outcome, often.
        assert!(decided.iter().all(|&n| n > 150), "{decided:?}");
    }

    /// Two views of `summaries` and `stored`: one following recipes, one
    /// filling every call in.
    fn following_and_filling(summaries: &[(Address, ContractSummary)], stored: &BTreeMap<Vec<u8>, Vec<u8>>) -> (Guarded, Guarded) {
        let env = |recipes| Guarded { summaries: summaries.to_vec(), stored: stored.clone(), decisions: Some(Decisions::default()), recipes };
        (env(Some(Recipes::default())), env(None))
    }

    /// Predicts `calls` (sender, contract, method, input) in order, following
    /// recipes and filling every call in, and asserts the two agree;
    /// returns the predictions and how many followed a recipe.
    fn follow_and_fill(summaries: Vec<(Address, ContractSummary)>, calls: &[(Address, Address, &str, Vec<u8>)]) -> (Vec<PredictedAccess>, u64) {
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        let predictions = calls
            .iter()
            .map(|(sender, contract, method, input)| {
                let expected = predict(&filling, sender, contract, method, input);
                assert_eq!(predict(&following, sender, contract, method, input), expected, "{method} by {sender:?} with {input:?}");
                expected
            })
            .collect();
        (predictions, following.recipes.as_ref().map_or(0, Recipes::followed))
    }

    fn consts(bytes: &[u8]) -> Vec<Byte> {
        bytes.iter().map(|&b| Byte::Const(b)).collect()
    }

    fn inputs(range: std::ops::Range<u16>) -> Vec<Byte> {
        range.map(Byte::Input).collect()
    }

    /// A recipe's template packs a prediction whole only when no key
    /// repeats an earlier one of its list: a transfer to oneself reads and
    /// writes one balance, not two, and follows the recipe's steps, which
    /// keep each key once. As a transaction's, the sender's nonce is
    /// written last, in the template too.
    #[test]
    fn a_template_is_packed_only_where_every_key_is_distinct() {
        let token = Address([1; ADDRESS_LEN]);
        let (a, b, c) = (Address([7; ADDRESS_LEN]), Address([8; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let caller: Vec<Byte> = (0..ADDRESS_LEN as u8).map(Byte::Caller).collect();
        let balances = || vec![KeyTemplate::from_bytes(Some(3), &caller), KeyTemplate::from_bytes(Some(3), &inputs(0..ADDRESS_LEN as u16))];
        let transfer = entry("transfer", balances(), balances(), Vec::new(), Vec::new());
        let summaries = vec![(token, ContractSummary::new(vec![transfer], BTreeSet::new()))];
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        let (mut followed, mut filled) = (Collected::default(), Collected::default());
        // Recorded, packed, then one to oneself (steps), then packed again.
        let calls = [(a, b), (b, c), (c, c), (a, c)];
        for transaction in [false, true] {
            for (sender, to) in calls {
                let predict_one = |env: &Guarded, out: &mut Collected| {
                    if transaction {
                        predict_transaction_into(env, &sender, &token, "transfer", to.as_bytes(), out);
                    } else {
                        predict_into(env, &sender, &token, "transfer", to.as_bytes(), out);
                    }
                    out.finish()
                };
                let expected = predict_one(&filling, &mut filled);
                assert_eq!(predict_one(&following, &mut followed), expected, "{sender:?} to {to:?}, as a transaction: {transaction}");
                // Each balance read is written too: the write allows it.
                let keys = if sender == to { 1 } else { 2 };
                assert_eq!((expected.reads().len(), expected.writes().len()), (0, keys + usize::from(transaction)));
                assert_eq!(expected.readable().len(), keys + usize::from(transaction));
                if transaction {
                    assert_eq!(expected.writes().last(), Some(nonce_pattern(&sender).as_ref()));
                }
            }
        }
        let recipes = following.recipes.as_ref().expect("recipes");
        // Per kind of call: the first recorded, three followed, of which the one to oneself by steps.
        assert_eq!((recipes.len(), recipes.followed(), recipes.packed()), (2, 6, 4));
        // A key added to a packed prediction: as if added to the lists.
        let extra = |out: &mut Collected| {
            out.write(KeyPattern::exact(b"more"));
            out.write(nonce_pattern(&b));
            out.finish()
        };
        predict_transaction_into(&following, &b, &token, "transfer", a.as_bytes(), &mut followed);
        predict_transaction_into(&filling, &b, &token, "transfer", a.as_bytes(), &mut filled);
        assert_eq!(recipes.packed(), 5);
        let expected = extra(&mut filled);
        assert_eq!(expected.writes().len(), 4, "one more: the nonce was there");
        assert_eq!(extra(&mut followed), expected);

        // A constant key read and a key written from the input: left out
        // (the write allows the read) only in the call that makes them
        // one, which follows the steps.
        let sweep = entry("sweep", vec![KeyTemplate::from_bytes(Some(3), &consts(c.as_bytes()))], vec![KeyTemplate::from_bytes(Some(3), &inputs(0..ADDRESS_LEN as u16))], Vec::new(), Vec::new());
        let summaries = vec![(token, ContractSummary::new(vec![sweep], BTreeSet::new()))];
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        for to in [a, b, c, a] {
            let expected = predict(&filling, &a, &token, "sweep", to.as_bytes());
            assert_eq!(predict(&following, &a, &token, "sweep", to.as_bytes()), expected, "sweep to {to:?}");
            assert_eq!(expected.reads().len(), usize::from(to != c), "sweep to {to:?}");
            assert!(!expected.is_covered(0), "sweep to {to:?}");
        }
        assert_eq!(following.recipes.as_ref().map(|r| (r.followed(), r.packed())), Some((3, 2)));

        // A key read and a key written made of the same sources (the
        // sender's balance): left out in every call, as the template knows
        // when it is made; a key read made of others (the receiver's) only
        // in a call that makes it one with a key written.
        let pay = entry("pay", balances(), vec![KeyTemplate::from_bytes(Some(3), &caller)], Vec::new(), Vec::new());
        let summaries = vec![(token, ContractSummary::new(vec![pay], BTreeSet::new()))];
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        for to in [b, c, a, b] {
            let expected = predict(&filling, &a, &token, "pay", to.as_bytes());
            assert_eq!(predict(&following, &a, &token, "pay", to.as_bytes()), expected, "pay to {to:?}");
            assert_eq!(expected.reads().len(), usize::from(to != a), "pay to {to:?}");
            assert!(!expected.is_covered(0), "pay to {to:?}");
        }
        // The first recorded; to oneself by steps (one balance read).
        assert_eq!(following.recipes.as_ref().map(|r| (r.followed(), r.packed())), Some((3, 2)));
    }

    /// Recipes are looked up by contract, method and whether the call is a
    /// transaction's, before the contract's summary: two contracts of one
    /// summary (their first eight bytes alike, so that they share the word
    /// a call is kept under) and two methods of one contract each follow
    /// their own, and a call to no contract or no entry follows none.
    #[test]
    fn recipes_are_kept_apart_by_contract_method_and_flag() {
        let token = Address([1; ADDRESS_LEN]);
        let mut twin = [1; ADDRESS_LEN];
        twin[ADDRESS_LEN - 1] = 2;
        let twin = Address(twin);
        let (a, b, c) = (Address([7; ADDRESS_LEN]), Address([8; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let caller: Vec<Byte> = (0..ADDRESS_LEN as u8).map(Byte::Caller).collect();
        let key = |slot| KeyTemplate::from_bytes(Some(slot), &caller);
        let transfer = entry("transfer", vec![key(3)], vec![key(3)], Vec::new(), Vec::new());
        let approve = entry("approve", Vec::new(), vec![key(4)], Vec::new(), Vec::new());
        let summary = ContractSummary::new(vec![transfer, approve], BTreeSet::new());
        let summaries = vec![(token, summary.clone()), (twin, summary)];
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        let nowhere = Address([5; ADDRESS_LEN]);
        let calls = [(token, "transfer"), (twin, "transfer"), (token, "approve"), (twin, "approve"), (nowhere, "transfer"), (token, "mint")];
        let (mut followed, mut filled) = (Collected::default(), Collected::default());
        for round in 0..2 {
            for sender in [a, b, c] {
                for (contract, method) in calls {
                    for transaction in [false, true] {
                        let predict_one = |env: &Guarded, out: &mut Collected| {
                            predict_call_into(env, &sender, &contract, method, &[], transaction, out);
                            out.finish()
                        };
                        let expected = predict_one(&filling, &mut filled);
                        assert_eq!(predict_one(&following, &mut followed), expected, "{method} of {contract:?} by {sender:?}, as a transaction: {transaction}, round {round}");
                        let writes = usize::from(summaries.iter().any(|(at, s)| *at == contract && s.entry(method).is_some())) + usize::from(transaction);
                        assert_eq!(expected.writes().len(), writes, "{method} of {contract:?}");
                    }
                }
            }
        }
        let recipes = following.recipes.as_ref().expect("recipes");
        // Two contracts, two methods, two flags: recorded once each, the
        // other calls to them followed.
        assert_eq!(recipes.len(), 8);
        assert_eq!(recipes.followed(), 2 * 3 * 8 - 8);
    }

    /// A call whose recordings make no recipe (here an entry analysed by
    /// input shape, in an environment with no analyses by shape) is
    /// recorded `RECORDINGS_IN_VAIN_MAX` times, then only filled in, while
    /// another entry of the same contract follows its recipe: the same
    /// predictions, without paying for a recording every time.
    #[test]
    fn a_call_that_makes_no_recipe_stops_being_recorded() {
        use crate::recipe::RECORDINGS_IN_VAIN_MAX;
        let caller: Vec<Byte> = (0..ADDRESS_LEN as u8).map(Byte::Caller).collect();
        let bump = entry("bump", Vec::new(), vec![KeyTemplate::from_bytes(Some(3), &caller)], Vec::new(), Vec::new());
        let name = AccessSummary { by_shape: true, ..entry("name", Vec::new(), vec![KeyTemplate::from_bytes(Some(4), &caller)], Vec::new(), Vec::new()) };
        let contract = Address([5; ADDRESS_LEN]);
        let summaries = vec![(contract, ContractSummary::new(vec![bump, name], BTreeSet::new()))];
        let calls: Vec<_> = (0..40u8).flat_map(|i| [(Address([i; ADDRESS_LEN]), contract, "name", vec![i]), (Address([i; ADDRESS_LEN]), contract, "bump", vec![i])]).collect();
        let (predictions, followed) = follow_and_fill(summaries.clone(), &calls);
        assert!(predictions.iter().all(|p| p.writes().len() == 1 && p.is_exact()), "{predictions:?}");
        // `bump` recorded once and followed after; `name` recorded in vain.
        assert_eq!(followed, 39);
        let (following, _) = following_and_filling(&summaries, &BTreeMap::new());
        for (sender, contract, method, input) in &calls {
            predict(&following, sender, contract, method, input);
        }
        let recipes = following.recipes.as_ref().expect("recipes");
        assert_eq!((recipes.len(), recipes.followed()), (1, 39));
        assert_eq!(recipes.recorded(), 1 + u64::from(RECORDINGS_IN_VAIN_MAX), "then filled in");
    }

    /// A view keeps recipes for at most `CALLS_MAX` calls (its thread keeps
    /// it from block to block): calls of contracts past those are filled
    /// in, their predictions the same, and calls of the first ones still
    /// follow theirs.
    #[test]
    fn recipes_are_kept_for_a_bounded_number_of_calls() {
        use crate::recipe::CALLS_MAX;
        let caller: Vec<Byte> = (0..ADDRESS_LEN as u8).map(Byte::Caller).collect();
        let bump = entry("bump", Vec::new(), vec![KeyTemplate::from_bytes(Some(3), &caller)], Vec::new(), Vec::new());
        let summary = ContractSummary::new(vec![bump], BTreeSet::new());
        let contract = |i: usize| {
            let mut bytes = [0; ADDRESS_LEN];
            bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Address(bytes)
        };
        let count = CALLS_MAX + 8;
        let summaries: Vec<_> = (0..count).map(|i| (contract(i), summary.clone())).collect();
        let sender = Address([7; ADDRESS_LEN]);
        // Each contract twice, then the first again.
        let calls: Vec<_> = (0..count).chain(0..count).chain([0]).map(|i| (sender, contract(i), "bump", Vec::new())).collect();
        let (following, filling) = following_and_filling(&summaries, &BTreeMap::new());
        for (sender, contract, method, input) in &calls {
            let expected = predict(&filling, sender, contract, method, input);
            assert_eq!(predict(&following, sender, contract, method, input), expected, "{contract:?}");
        }
        let recipes = following.recipes.as_ref().expect("recipes");
        assert_eq!(recipes.len(), CALLS_MAX, "one recipe per call kept, up to the bound");
        assert_eq!(recipes.followed(), CALLS_MAX as u64 + 1, "the second round of the first calls, then the first again");
    }

    /// A recipe is followed only by calls whose guards' comparisons come
    /// out as they did where it was recorded: `relay` passes its input to
    /// `go`, which writes a key only when that input is 7.
    #[test]
    fn a_recipe_is_followed_only_where_the_guards_decide_alike() {
        let (outer, inner, sender) = (Address([1; ADDRESS_LEN]), Address([2; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let writes = vec![KeyTemplate::from_bytes(Some(10), &[Byte::Const(0)]), KeyTemplate::from_bytes(Some(11), &[Byte::Const(1)])];
        let conditions = vec![Condition::Compare { op: Comparison::Eq, width: 8, lhs: inputs(0..8), rhs: consts(&7u64.to_le_bytes()) }];
        let guards = vec![Guard { kind: AccessKind::Write, index: 0, any_of: vec![vec![Literal { condition: 0, value: true }]] }];
        let go = AccessSummary { conditions, guards, ..entry("go", Vec::new(), writes, Vec::new(), Vec::new()) };
        let call = CallTemplate { callee: consts(inner.as_bytes()).into(), method: Some("go".into()), args: Some(inputs(0..8).into()) };
        let relay = entry("relay", Vec::new(), Vec::new(), Vec::new(), vec![call]);
        let summaries = vec![(outer, ContractSummary::new(vec![relay], BTreeSet::new())), (inner, ContractSummary::new(vec![go], BTreeSet::new()))];
        let [seven, eight] = [7u64, 8].map(|n| n.to_le_bytes().to_vec());
        let calls: Vec<_> = [&seven, &eight, &seven, &eight].iter().map(|input| (sender, outer, "relay", input.to_vec())).collect();
        let (predictions, followed) = follow_and_fill(summaries, &calls);
        assert_eq!((predictions[0].writes().len(), predictions[1].writes().len()), (2, 1), "the guard decides");
        assert_eq!(followed, 2, "the third and fourth calls follow the first's and the second's recipes");
    }

    /// A recipe is followed only by calls to the same callee when the
    /// callee comes from the input.
    #[test]
    fn a_recipe_is_followed_only_to_the_callee_it_was_recorded_for() {
        let (outer, sender) = (Address([1; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let callees = [Address([2; ADDRESS_LEN]), Address([3; ADDRESS_LEN])];
        let take = |key: u8| entry("take", Vec::new(), vec![KeyTemplate::from_bytes(Some(3), &[Byte::Const(key)])], Vec::new(), Vec::new());
        let call = CallTemplate { callee: inputs(0..32).into(), method: Some("take".into()), args: Some(Vec::new().into()) };
        let relay = entry("relay", Vec::new(), Vec::new(), Vec::new(), vec![call]);
        let mut summaries = vec![(outer, ContractSummary::new(vec![relay], BTreeSet::new()))];
        summaries.extend(callees.iter().zip([5, 6]).map(|(callee, key)| (*callee, ContractSummary::new(vec![take(key)], BTreeSet::new()))));
        let calls: Vec<_> = [0, 1, 0, 1].iter().map(|&i| (sender, outer, "relay", callees[i].as_bytes().to_vec())).collect();
        let (predictions, followed) = follow_and_fill(summaries, &calls);
        assert_ne!(predictions[0], predictions[1]);
        assert_eq!(followed, 2);
    }

    /// A recipe is followed only by calls that read the same stored values:
    /// `relay` calls the contract whose address it stores under its input's
    /// first byte (a fixed slot).
    #[test]
    fn a_recipe_is_followed_only_where_the_same_stored_values_are_read() {
        let (outer, sender) = (Address([1; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let callees = [Address([2; ADDRESS_LEN]), Address([3; ADDRESS_LEN])];
        let take = |key: u8| entry("take", Vec::new(), vec![KeyTemplate::from_bytes(Some(3), &[Byte::Const(key)])], Vec::new(), Vec::new());
        let reads = vec![KeyTemplate::from_bytes(Some(1), &[Byte::Input(0)])];
        let callee: Vec<Byte> = (0..32).map(|offset| Byte::Stored { read: 0, offset }).collect();
        let call = CallTemplate { callee: callee.into(), method: Some("take".into()), args: Some(Vec::new().into()) };
        let relay = entry("relay", reads, Vec::new(), Vec::new(), vec![call]);
        let mut summaries = vec![(outer, ContractSummary::new(vec![relay], [1].into()))];
        summaries.extend(callees.iter().zip([5, 6]).map(|(callee, key)| (*callee, ContractSummary::new(vec![take(key)], BTreeSet::new()))));
        let stored: BTreeMap<Vec<u8>, Vec<u8>> = callees.iter().zip([0u8, 1]).map(|(callee, at)| ([&slot_prefix(&outer, 1)[..], &[at]].concat(), callee.as_bytes().to_vec())).collect();
        let (following, filling) = following_and_filling(&summaries, &stored);
        let mut predictions = Vec::new();
        for at in [0u8, 1, 0, 1] {
            let expected = predict(&filling, &sender, &outer, "relay", &[at]);
            assert_eq!(predict(&following, &sender, &outer, "relay", &[at]), expected, "relay with [{at}]");
            predictions.push(expected);
        }
        assert_ne!(predictions[0], predictions[1]);
        assert_eq!(following.recipes.as_ref().map_or(0, Recipes::followed), 2);
    }

    /// Keys that are one key in some calls (a key by the sender and one by
    /// an input address, when the sender sends to itself) are kept once by
    /// a recipe, as by a fill; keys that differ in a constant byte never are.
    #[test]
    fn a_recipe_keeps_each_key_once_when_two_coincide() {
        let (outer, callee) = (Address([1; ADDRESS_LEN]), Address([2; ADDRESS_LEN]));
        let (alice, bob) = (Address([8; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let callers: Vec<Byte> = (0..32).map(Byte::Caller).collect();
        let writes = vec![KeyTemplate::from_bytes(Some(3), &callers), KeyTemplate::from_bytes(Some(3), &inputs(0..32)), KeyTemplate::from_bytes(Some(4), &inputs(0..32))];
        let call = CallTemplate { callee: consts(callee.as_bytes()).into(), method: Some("take".into()), args: Some(Vec::new().into()) };
        let send = entry("send", Vec::new(), writes, Vec::new(), vec![call]);
        let take = entry("take", Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let summaries = vec![(outer, ContractSummary::new(vec![send], BTreeSet::new())), (callee, ContractSummary::new(vec![take], BTreeSet::new()))];
        let calls: Vec<_> = [(alice, bob), (alice, alice), (bob, bob), (bob, alice)].iter().map(|(from, to)| (*from, outer, "send", to.as_bytes().to_vec())).collect();
        let (predictions, followed) = follow_and_fill(summaries, &calls);
        let writes: Vec<usize> = predictions.iter().map(|p| p.writes().len()).collect();
        assert_eq!(writes, [3, 2, 2, 3], "sending to oneself writes one balance");
        assert_eq!(followed, 3, "one recipe for all four");
    }

    /// Whether one call template stands in for another depends on their
    /// arguments: `take(caller ‖ 0 1 2 …)` is left out when the input names
    /// the caller, for `take(input ‖ ???)` covers it. A recipe recorded
    /// where it does not is not followed where it does.
    #[test]
    fn a_recipe_is_followed_only_where_the_same_call_templates_stand_in() {
        let callee = Address([2; ADDRESS_LEN]);
        let (alice, bob) = (Address([8; ADDRESS_LEN]), Address([9; ADDRESS_LEN]));
        let by_caller: Vec<Byte> = (0..32).map(Byte::Caller).chain(consts(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15])).collect();
        let by_input: Vec<Byte> = inputs(0..32).into_iter().chain((0..16).map(|_| Byte::Unknown)).collect();
        let Chain { caller: outer, summaries } = chain(vec![call_take(&callee, by_caller), call_take(&callee, by_input)]);
        let calls: Vec<_> = [bob, alice, bob, alice].iter().map(|to| (alice, outer, "go", to.as_bytes().to_vec())).collect();
        let (predictions, followed) = follow_and_fill(summaries, &calls);
        assert_eq!((predictions[0].adds().len(), predictions[1].adds().len()), (2, 1), "the first template stands in only for alice");
        assert_eq!(followed, 2);
    }

    #[test]
    fn redundant_call_templates_predict_what_the_widest_alone_does() {
        let callee = Address([2; ADDRESS_LEN]);
        let sender = Address([9; ADDRESS_LEN]);
        let me = (0..32).map(Byte::Contract);
        let known_amount: Vec<Byte> = me.clone().chain((0..16).map(|i| Byte::Const(i as u8))).collect();
        let unknown_amount: Vec<Byte> = me.clone().chain((0..16).map(|_| Byte::Unknown)).collect();
        let other_amount: Vec<Byte> = me.chain((0..16).map(|_| Byte::Const(0xee))).collect();
        let predict_go = |calls| {
            let env = chain(calls);
            predict(&env, &sender, &env.caller, "go", &[])
        };
        // The template knowing nothing of the amount covers the one knowing it.
        let both = predict_go(vec![call_take(&callee, known_amount.clone()), call_take(&callee, unknown_amount.clone())]);
        let widest = predict_go(vec![call_take(&callee, unknown_amount.clone())]);
        assert_eq!(both, widest);
        assert!(!both.is_exact(), "the unknown amount leaves a prefix");
        // A template that knows a different amount is not covered by another exact one.
        let two = predict_go(vec![call_take(&callee, known_amount.clone()), call_take(&callee, other_amount)]);
        assert_eq!(two.adds().len(), 2);
        assert!(two.is_exact());
        // Identical templates are filled in once, and give what one gives.
        let twice = predict_go(vec![call_take(&callee, known_amount.clone()), call_take(&callee, known_amount.clone())]);
        assert_eq!(twice, predict_go(vec![call_take(&callee, known_amount)]));
        // A call to an address with no contract accesses nothing.
        let nowhere = predict_go(vec![call_take(&Address([0; ADDRESS_LEN]), unknown_amount)]);
        assert_eq!(nowhere, PredictedAccess::default());
    }

    /// The planner's visit of a prediction (`for_each_touch`): every
    /// pattern in order, in its own list's mode, but the covered ones (of
    /// the first 64 positions, where covers are kept), then an unbounded
    /// one's every key; a prediction of more than 64 patterns as one of
    /// fewer.
    #[test]
    fn the_planner_visits_every_pattern_in_order_but_the_covered_ones() {
        use proptest::prelude::*;
        let key = (0u16..400, any::<bool>()).prop_map(|(k, exact)| {
            let bytes = [[b'k'].as_slice(), &k.to_be_bytes()].concat();
            if exact { KeyPattern::exact(&bytes) } else { KeyPattern::prefix(&bytes) }
        });
        let lists = (prop::collection::vec(key.clone(), 0..40), prop::collection::vec(key.clone(), 0..40), prop::collection::vec(key, 0..40));
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(500));
        let (long, covered) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        runner
            .run(&(lists, any::<bool>(), any::<u64>()), |((reads, writes, adds), unbounded, fixed)| {
                // Covered: reads of fixed slots (a read of a written key is
                // not even listed).
                let access = PredictedAccess::new(reads, writes, adds).with_unbounded(unbounded).with_fixed_reads(fixed);
                let mut visited = Vec::new();
                access.for_each_touch(|mode, position, fingerprint| visited.push((mode, position, fingerprint)));
                let mut expected = Vec::new();
                for position in 0..access.visited() as u32 {
                    if !access.is_covered(position) {
                        expected.push((access.mode_at(position), position, crate::plan::fingerprint_of(access.pattern_at(position))));
                    }
                }
                prop_assert_eq!(visited, expected);
                long.set(long.get() + usize::from(access.len > 64));
                covered.set(covered.get() + usize::from(access.covered != 0));
                Ok(())
            })
            .expect("visited as listed");
        let (long, covered) = (long.get(), covered.get());
        assert!(long > 50 && covered > 50, "{long} predictions of more than 64 patterns, {covered} with covered ones");
    }
}
