//! Planning a block: the conflict graph of its transactions' predicted
//! accesses, and the ordered groups it is colored into.
//!
//! # Conflicts
//! Two transactions conflict when one writes what the other reads or writes.
//! Commutative adds conflict only with reads and plain writes of the same
//! key, never with other adds. A key pattern is a *resource*: an exact key,
//! or a prefix (a slot, a contract, everything for an unbounded
//! transaction). Prefixes and the keys under them are related like a lock
//! hierarchy: an access to a key under a prefix that some transaction of the
//! block uses also takes an *intention* on that prefix (intention-read,
//! -write, -add). Intentions never conflict with each other (the keys below
//! decide), but they conflict with direct accesses of the prefix the way the
//! access below would.
//!
//! # Linear construction
//! The graph is built in one pass over the transactions in block order,
//! through an index from resource to the transactions that used it since
//! its last plain write. A plain write conflicts with everything, so it is a
//! barrier: later accesses of the resource need an edge to it only, and the
//! earlier ones are reached through it. Only edges of this reduced graph are
//! made, never all pairs: the work is proportional to accesses plus edges.
//! On one thread, one table indexes the block's resources and each
//! transaction's edges are made as it is taken; on more, the resources are
//! split into shards indexed in parallel, and the edges gathered back: the
//! same graph, edge for edge.
//! (A long run of reads followed by a long run of adds of one key still
//! would need an edge from every read to every add; past a bound, an access
//! that would need more edges is ordered as a plain write instead, which
//! keeps the graph linear at the price of ordering more.)
//!
//! # Ordered groups
//! Every edge goes from an earlier transaction to a later one, so one pass
//! in block order gives each transaction its *level*: one more than the
//! highest level among the transactions it conflicts with. Level `g` is
//! group `g`; conflicting transactions are in different groups, the earlier
//! one first, and a group's transactions can run together once the groups
//! before it are done.

use std::collections::{BTreeSet, BinaryHeap};
use std::cmp::Reverse;
use std::sync::{Arc, OnceLock};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::predict::{AccessMode, KeyPattern, PatternRef, PredictedAccess};

/// How the executor orders a plan's transactions on its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Each transaction starts as soon as the transactions it conflicts with
    /// and that come before it are done.
    #[default]
    Dataflow,
    /// Groups run one after another; a group's transactions run together.
    Barrier,
}

impl Strategy {
    pub const ALL: [Strategy; 2] = [Strategy::Dataflow, Strategy::Barrier];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Dataflow => "dataflow",
            Strategy::Barrier => "barrier",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|strategy| strategy.name() == s)
            .ok_or_else(|| format!("unknown strategy {s:?} (expected dataflow or barrier)"))
    }
}

/// Access modes of one transaction on one resource, as bits.
type Modes = u8;
const READ: Modes = 1;
const WRITE: Modes = 2;
const ADD: Modes = 4;
const INTENT_READ: Modes = 8;
const INTENT_WRITE: Modes = 16;
const INTENT_ADD: Modes = 32;
const MODE_COUNT: usize = 6;

/// For each mode bit, the modes it conflicts with (symmetric).
const CONFLICTS: [Modes; MODE_COUNT] = [
    /* read         */ WRITE | ADD | INTENT_WRITE | INTENT_ADD,
    /* write        */ READ | WRITE | ADD | INTENT_READ | INTENT_WRITE | INTENT_ADD,
    /* add          */ READ | WRITE | INTENT_READ | INTENT_WRITE,
    /* intent read  */ WRITE | ADD,
    /* intent write */ READ | WRITE | ADD,
    /* intent add   */ READ | WRITE,
];

/// The modes that conflict with any of `modes`, for every combination.
const CONFLICT_MASKS: [Modes; 1 << MODE_COUNT] = {
    let mut masks = [0; 1 << MODE_COUNT];
    let mut modes = 0;
    while modes < masks.len() {
        let mut bit = 0;
        while bit < MODE_COUNT {
            if modes & (1 << bit) != 0 {
                masks[modes] |= CONFLICTS[bit];
            }
            bit += 1;
        }
        modes += 1;
    }
    masks
};

fn conflict_mask(modes: Modes) -> Modes {
    CONFLICT_MASKS[modes as usize % CONFLICT_MASKS.len()]
}

/// The intention a direct access takes on the prefixes above it.
fn intention(modes: Modes) -> Modes {
    (modes & (READ | WRITE | ADD)) << 3
}

/// Edges one access may need from one resource before it is treated as a
/// plain write of it (see `ConflictGraph::build`). With 32, a block of
/// lending (reads of a market's totals among adds to them) made 14.7 edges
/// per transaction and its graph took twice as long to build; with 8, 5.6
/// edges and 1% more groups.
const MAX_EDGES_PER_ACCESS: usize = 8;

/// Resources are split into this many shards by fingerprint, each indexed
/// on its own (in parallel): a resource's edges depend only on the
/// accesses of that resource. A constant, so that resource numbering (and
/// with it the report) does not depend on the thread count.
const SHARDS: usize = 8;

/// Transactions whose accesses are fingerprinted by one task.
const CHUNK: usize = 512;

/// Blocks of at most this many transactions are planned on the calling
/// thread alone: handing a few dozen transactions to a pool (a probe of a
/// block's first transactions, a small block) cost more than the planning.
pub const SEQUENTIAL_MAX: usize = CHUNK;

/// Whether a block of `transactions` is planned in one pass on the calling
/// thread: a short one, or one planned on a pool of one thread (the planner
/// beside execution on two cores), where shards would only cost.
fn in_one_pass(transactions: usize) -> bool {
    transactions <= SEQUENTIAL_MAX || rayon::current_num_threads() == 1
}

/// The shards' numberings as one, shard after shard: each shard's first
/// number in it, and every numbered resource's pattern and edge count,
/// each list made at its size. The shards' lists are left empty, with the
/// room they had.
fn merge_numberings<'n>(numberings: impl IntoIterator<Item = &'n mut Numbering>) -> ([u32; SHARDS], Vec<PatternAt>, Vec<u32>) {
    let mut numberings: Vec<&mut Numbering> = numberings.into_iter().take(SHARDS).collect();
    let mut offsets = [0u32; SHARDS];
    let total = numberings.iter().map(|numbering| numbering.patterns.len()).sum();
    let (mut patterns, mut edges_by_resource) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (shard, numbering) in numberings.iter_mut().enumerate() {
        offsets[shard] = patterns.len() as u32;
        patterns.append(&mut numbering.patterns);
        edges_by_resource.append(&mut numbering.edges_by_resource);
    }
    (offsets, patterns, edges_by_resource)
}

/// A resource's identity while building: a 64-bit fingerprint of its key
/// pattern. The tables then hold and compare words, not key bytes. Two
/// patterns with one fingerprint become one resource, which can only add
/// conflicts, so a collision (even a crafted one) orders more transactions,
/// never fewer.
pub(crate) fn fingerprint(pattern: &KeyPattern) -> u64 {
    fingerprint_of(pattern.as_ref())
}

/// [`fingerprint`] of a borrowed pattern (see `fingerprint.rs`).
pub(crate) use crate::fingerprint::fingerprint_of;

fn shard_of(fingerprint: u64) -> usize {
    // The high bits: the fold's last multiply mixes them best.
    (fingerprint >> 61) as usize % SHARDS
}

/// One transaction's predicted accesses, as the planner reads them.
pub trait Planned: Sync {
    fn access(&self) -> &PredictedAccess;
}

impl Planned for PredictedAccess {
    fn access(&self) -> &PredictedAccess {
        self
    }
}

impl<T: Planned + ?Sized> Planned for &T {
    fn access(&self) -> &PredictedAccess {
        (**self).access()
    }
}

impl<T: Planned + Send + ?Sized> Planned for Arc<T> {
    fn access(&self) -> &PredictedAccess {
        (**self).access()
    }
}

/// The planner's modes of an access of a prediction.
fn modes_of(mode: AccessMode) -> Modes {
    match mode {
        AccessMode::Read => READ,
        AccessMode::Write => WRITE,
        AccessMode::Add => ADD,
    }
}

/// The prefix patterns of a block, by their bytes and by length, each with
/// where it first occurs.
#[derive(Default)]
struct Prefixes<'a> {
    /// Each prefix's first occurrence and fingerprint.
    by_bytes: FxHashMap<&'a [u8], (PatternAt, u64)>,
    lengths: BTreeSet<usize>,
}

impl<'a> Prefixes<'a> {
    /// Calls `f` with each prefix of the block strictly above `pattern`.
    fn above(&self, pattern: PatternRef<'_>, mut f: impl FnMut((PatternAt, u64))) {
        let bytes = pattern.bytes();
        for &len in &self.lengths {
            let strictly_inside = len < bytes.len() || (len == bytes.len() && pattern.is_exact());
            if len > bytes.len() || !strictly_inside {
                break;
            }
            if let Some(&prefix) = self.by_bytes.get(&bytes[..len]) {
                f(prefix);
            }
        }
    }
}

/// How many patterns the planner visits for `item`.
fn pattern_count<A: Planned>(item: &A) -> usize {
    item.access().visited()
}

/// Each access of `item`, transaction `tx`, as the planner takes it, and
/// the intention it takes on each of the block's `prefixes` above it:
/// `send(modes, fingerprint, where the resource's pattern is)`.
fn touches_of<A: Planned>(item: &A, tx: u32, prefixes: &Prefixes<'_>, mut send: impl FnMut(Modes, u64, PatternAt)) {
    let access = item.access();
    if prefixes.by_bytes.is_empty() {
        // Without reading the patterns.
        access.for_each_touch(|mode, position, fingerprint| send(modes_of(mode), fingerprint, PatternAt { tx, position }));
    } else {
        // Every access, covered or not: two patterns with one fingerprint
        // may lie under different prefixes.
        for (position, (mode, pattern)) in access.accessed().enumerate() {
            let (mode, position) = (modes_of(mode), position as u32);
            send(mode, access.fingerprint_at(position), PatternAt { tx, position });
            prefixes.above(pattern, |(at, fingerprint)| send(intention(mode), fingerprint, at));
        }
    }
}

/// How many transactions ahead the planner asks for a prediction's
/// fingerprints to be brought to the cache: they are an allocation of
/// their own, made long before, and reading them was most of the misses
/// of sending a swap block's accesses to their shards.
const PREFETCH_AHEAD: usize = 6;

/// How many transactions ahead the one-pass planner asks for the index
/// slots of a prediction's resources (its fingerprints, asked for
/// [`PREFETCH_AHEAD`] ahead, are in the cache by then).
const SLOT_PREFETCH_AHEAD: usize = 2;

/// Asks for the first two cache lines of `item`'s fingerprints (a hint).
#[inline(always)]
fn prefetch_fingerprints<A: Planned>(item: Option<&A>) {
    if let Some(item) = item {
        let fingerprints = item.access().fingerprints_ptr();
        prefetch(fingerprints);
        prefetch(fingerprints.wrapping_add(64));
    }
}

/// Where a pattern is in a block's predictions: the transaction, and its
/// position in the prediction (reads, writes, adds, then every key for an
/// unbounded one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PatternAt {
    pub tx: u32,
    pub position: u32,
}

impl PatternAt {
    /// The pattern in `accesses`, the predictions the plan was made of.
    /// `None` when `accesses` are other predictions that have no such
    /// transaction.
    pub fn of<'a, A: Planned>(self, accesses: &'a [A]) -> Option<PatternRef<'a>> {
        accesses.get(self.tx as usize).map(|item| item.access().pattern_at(self.position))
    }
}

/// Asks for the cache line at `at` (a hint: nothing happens on other
/// architectures, and it never faults).
#[inline(always)]
pub(crate) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it does not access memory
    // architecturally and does not fault on any address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// One access of one transaction to one resource, on its way to the
/// resource's shard. `pattern` is where the resource's pattern is: the
/// access's own, or the prefix it takes an intention on.
#[derive(Clone, Copy)]
struct Touch {
    tx: u32,
    modes: Modes,
    fingerprint: u64,
    pattern: PatternAt,
}

/// No transaction, no list, no number (in [`Slot`] and [`Extra`]).
const NONE: u32 = u32::MAX;

/// One resource in a resource index: its fingerprint, the last transaction
/// that wrote it plainly ([`NONE`] before any), and its [`Extra`] ([`NONE`]
/// until it needs one: most keys of a block see only writes and make no
/// edge). Sixteen bytes, looked up in place: with the resource's users in
/// a table of their own behind a `HashMap` from fingerprint to resource, a
/// lookup missed the cache up to three times (the map's control bytes, its
/// entry, the users), and the first of those misses was a third of a swap
/// block's indexing.
#[derive(Clone, Copy)]
struct Slot {
    /// [`EMPTY`] for a free slot.
    fingerprint: u64,
    writer: u32,
    extra: u32,
}

/// The fingerprint of no resource ([`slot_key`] moves a resource's 0 away).
const EMPTY: u64 = 0;

const FREE: Slot = Slot { fingerprint: EMPTY, writer: NONE, extra: NONE };

/// A resource's fingerprint as its index holds it: [`EMPTY`] marks a free
/// slot, so a fingerprint of 0 is taken as 1 (the two are one resource
/// then, which can only add conflicts, as any collision).
#[inline(always)]
fn slot_key(fingerprint: u64) -> u64 {
    fingerprint.max(1)
}

/// What a resource needs beyond its [`Slot`], once it needs it: the
/// transactions that used it by mode bit since its last plain write (per
/// bit, how many, and the newest as a link into its table's
/// [`SinceNode`]s), and its number among its shard's resources that made
/// edges ([`NONE`] until it makes one). Kept in tables from block to block: as boxed
/// vectors per resource, the adds to a block's receivers made two
/// allocations each (the shards' pass over a transfer block took about a
/// tenth longer).
#[derive(Clone, Copy)]
struct Extra {
    newest: [u32; MODE_COUNT],
    count: [u32; MODE_COUNT],
    /// The mode bits whose lists are not empty.
    present: Modes,
    numbered: u32,
}

const NO_EXTRA: Extra = Extra { newest: [NONE; MODE_COUNT], count: [0; MODE_COUNT], present: 0, numbered: NONE };

/// The bits set in `modes`, lowest first.
fn mode_bits(mut modes: Modes) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (modes != 0).then(|| {
            let bit = modes.trailing_zeros() as usize;
            modes &= modes - 1;
            bit
        })
    })
}

/// One transaction in one list: the transaction, and the one before it in
/// the list ([`NONE`] for the first).
#[derive(Clone, Copy)]
struct SinceNode {
    tx: u32,
    older: u32,
}

/// What one shard found: for each transaction in block order the earlier
/// transactions it must follow, with the resource why. Only the resources
/// that made edges are numbered, in the order of their first edge.
#[derive(Default)]
struct ShardEdges {
    /// (later, earlier, resource), sorted, without repeats.
    preds: Vec<(u32, u32, u32)>,
    numbering: Numbering,
}

/// An index of resources: open addressing over a power-of-two table of
/// [`Slot`]s, probed linearly, at most three quarters full.
#[derive(Default)]
struct ResourceIndex {
    slots: Vec<Slot>,
    len: usize,
}

impl ResourceIndex {
    /// Empties it, with room for `resources` without growing, or for as
    /// many as it held last if that is not far more (the next block of a
    /// node is like the last; a short one after a long one, a segment's
    /// probe say, should not clear a table sized for the long one). Only
    /// the slots in use are cleared; the allocation is kept.
    fn reset(&mut self, resources: usize) {
        let expected = resources.max(self.len.min(4 * resources));
        let wanted = (expected * 4 / 3 + 1).next_power_of_two().max(64);
        self.slots.clear();
        self.slots.resize(wanted, FREE);
        self.len = 0;
    }

    fn home(&self, key: u64) -> usize {
        // The fingerprint's high bits chose the shard: mixed, so that the
        // slot does not depend on them alone.
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (self.slots.len() - 1)
    }

    /// The slot of the resource `key` (see [`slot_key`]), taken if it is new.
    fn slot(&mut self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        loop {
            let slot = &mut self.slots[at];
            if slot.fingerprint == key {
                return at;
            }
            if slot.fingerprint == EMPTY {
                slot.fingerprint = key;
                self.len += 1;
                if 4 * self.len > 3 * self.slots.len() {
                    self.grow();
                    return self.find(key);
                }
                return at;
            }
            at = (at + 1) & mask;
        }
    }

    /// Asks for the home slot of the resource `key` to be brought to the
    /// cache (a hint; where it ends up, if the table grows before it is
    /// taken, does not matter).
    #[inline(always)]
    fn prefetch(&self, key: u64) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            prefetch(slot);
        }
    }

    /// The slot of a resource that is in the table.
    fn find(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        while self.slots[at].fingerprint != key {
            at = (at + 1) & mask;
        }
        at
    }

    /// Twice the room, every resource moved to its new slot (slots name
    /// resources only for the access being taken).
    fn grow(&mut self) {
        let doubled = vec![FREE; 2 * self.slots.len()];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|slot| slot.fingerprint != EMPTY) {
            let mut at = self.home(slot.fingerprint);
            while self.slots[at].fingerprint != EMPTY {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }
}

/// The resources that made edges among a shard's, in the order of their
/// first edge: where each one's pattern is (in the transaction whose access
/// made that edge), and how many edges it made.
#[derive(Default)]
struct Numbering {
    patterns: Vec<PatternAt>,
    edges_by_resource: Vec<u32>,
}

/// Resources and who used them since their last plain write: one shard's,
/// or a whole block's when it is planned in one pass.
#[derive(Default)]
struct ResourceTable {
    index: ResourceIndex,
    extras: Vec<Extra>,
    nodes: Vec<SinceNode>,
}

impl ResourceTable {
    /// Empties it, with room for `resources`.
    fn reset(&mut self, resources: usize) {
        self.index.reset(resources);
        self.extras.clear();
        self.nodes.clear();
    }

    /// Transaction `tx`'s access to the resource `key` in `modes`, after
    /// every access of earlier transactions and its own earlier ones:
    /// pushes the earlier transactions it must follow onto `earlier` (each
    /// as the high half of a [`PackedPred`], the resource left for the
    /// caller to name: the one-pass build pushes straight onto its
    /// transaction's predecessors, where a list of its own to copy from
    /// took 73 of a defi-mix block's graph instructions per transaction),
    /// and returns the resource's number in `numbering` when it pushed any
    /// ([`NONE`] otherwise). A transaction never follows itself, and is in
    /// each mode's list of a resource once.
    fn access(&mut self, tx: u32, key: u64, mut modes: Modes, pattern: PatternAt, max_edges: usize, numbering: &mut Numbering, earlier: &mut Vec<u64>) -> u32 {
        let ResourceTable { index, extras, nodes } = self;
        let at = index.slot(key);
        let slot = &mut index.slots[at];
        let before = earlier.len();
        // Every mode conflicts with a plain write.
        if slot.writer != NONE && slot.writer != tx {
            earlier.push(PackedPred::of(slot.writer, 0));
        }
        if let Some(extra) = extras.get(slot.extra as usize) {
            let mut listed = conflict_mask(modes) & extra.present;
            if listed != 0 {
                // Long runs of one mode followed by another (reads of a
                // total after many adds to it) would need an edge from
                // every member of one run to every member of the other.
                // Past a bound the access counts as a plain write instead:
                // the same edges once, then the lists empty, and later
                // accesses need one edge. Ordering more is always safe.
                let needed: u32 = mode_bits(listed).map(|bit| extra.count[bit]).sum();
                if needed as usize > max_edges {
                    modes |= WRITE;
                    listed = conflict_mask(modes) & extra.present;
                }
                for bit in mode_bits(listed) {
                    let mut node = extra.newest[bit];
                    while let Some(&SinceNode { tx: user, older }) = nodes.get(node as usize) {
                        if user != tx {
                            earlier.push(PackedPred::of(user, 0));
                        }
                        node = older;
                    }
                }
            }
        }
        let mut number = NONE;
        if earlier.len() > before {
            // Named by its number among the resources that made edges,
            // taken at its first.
            let extra = Extra::of(slot, extras);
            if extra.numbered == NONE {
                extra.numbered = numbering.patterns.len() as u32;
                numbering.patterns.push(pattern);
                numbering.edges_by_resource.push(0);
            }
            number = extra.numbered;
        }
        if modes & WRITE != 0 {
            // A plain write conflicts with everything after it too: it
            // alone stands for what came before.
            slot.writer = tx;
            if let Some(extra) = extras.get_mut(slot.extra as usize) {
                if extra.present != 0 {
                    extra.newest = [NONE; MODE_COUNT];
                    extra.count = [0; MODE_COUNT];
                    extra.present = 0;
                }
            }
        } else {
            let extra = Extra::of(slot, extras);
            for bit in mode_bits(modes) {
                let newest = extra.newest[bit];
                if nodes.get(newest as usize).is_some_and(|node| node.tx == tx) {
                    continue;
                }
                nodes.push(SinceNode { tx, older: newest });
                extra.newest[bit] = nodes.len() as u32 - 1;
                extra.count[bit] += 1;
                extra.present |= 1 << bit;
            }
        }
        number
    }
}

impl Extra {
    /// The [`Extra`] of the resource in `slot`, taken if it has none.
    fn of<'e>(slot: &mut Slot, extras: &'e mut Vec<Extra>) -> &'e mut Extra {
        if slot.extra == NONE {
            slot.extra = extras.len() as u32;
            extras.push(NO_EXTRA);
        }
        &mut extras[slot.extra as usize]
    }
}

/// A thread's working tables, kept from one block to the next. Made afresh,
/// they were the planner's largest allocations (about a megabyte per shard
/// for 10,000 swaps), and in a node that executes between plans the
/// allocator had handed their pages back: in a profile of the executor
/// running swap blocks, zeroing the pages they faulted in again took a
/// fifth of the graph's samples (228 of 1,312; 17 of 1,017 with the tables
/// kept).
#[derive(Default)]
struct PlanTables {
    resources: ResourceTable,
    /// A shard's earlier transactions for one access (the one-pass build
    /// pushes them straight onto `preds`).
    earlier: Vec<u64>,
    /// The last one-pass build's edges and transactions, to size the
    /// next one's list of edges by: grown from one per transaction, a
    /// defi-mix block's (three per transaction) were copied twice as they
    /// grew, 3% of its graph's instructions.
    last_edges: (usize, usize),
    /// One transaction's predecessors (see [`PackedPred`]).
    preds: Vec<u64>,
    /// A one-pass build's numberings, one per shard, empty between blocks
    /// (made afresh, each grew from nothing as its resources made their
    /// first edges: 144 reallocations of a transfer block, 2% of its
    /// graph's instructions, 940 against 922 per transaction).
    numberings: [Numbering; SHARDS],
}

/// Bits of a resource's number within its shard in a [`PackedPred`].
const NUMBER_BITS: u32 = 29;

/// A resource's number within its shard, of a [`PackedPred`]'s low half.
const NUMBER_MASK: u32 = (1 << NUMBER_BITS) - 1;

// The shard fits above the number in 32 bits.
const _: () = assert!(SHARDS <= 1 << (32 - NUMBER_BITS));

/// A one-pass build's predecessor of a transaction as one word: the earlier
/// transaction in the high half, then the resource why, its shard and its
/// number there (below `1 << NUMBER_BITS`). Sorted as words, earlier
/// transaction first and each one's resources in order; sorted as pairs,
/// the sort was a twelfth of a defi-mix block's graph.
struct PackedPred;

impl PackedPred {
    fn named(shard: usize, number: u32) -> u32 {
        (shard as u32) << NUMBER_BITS | number
    }

    fn of(earlier: u32, named: u32) -> u64 {
        u64::from(earlier) << 32 | u64::from(named)
    }

    /// The earlier transaction, and the resource as [`PackedPred::named`] names it.
    fn unpack(packed: u64) -> (u32, u32) {
        ((packed >> 32) as u32, packed as u32)
    }

    /// The shard and the number of a resource named by [`PackedPred::named`].
    fn resource(named: u32) -> (usize, u32) {
        ((named >> NUMBER_BITS) as usize, named & NUMBER_MASK)
    }
}

/// Tables that grew past this many resources (or edges) are not kept (a
/// huge block should not pin its memory for the blocks after it).
const KEPT_TABLES_MAX: usize = 1 << 20;

thread_local! {
    static PLAN_TABLES: std::cell::Cell<PlanTables> = std::cell::Cell::default();
}

/// Runs `f` with this thread's kept tables (taken, not borrowed: nothing
/// here re-enters, but a taken table cannot be borrowed twice if something
/// ever did).
fn with_tables<R>(f: impl FnOnce(&mut PlanTables) -> R) -> R {
    let mut tables = PLAN_TABLES.take();
    let result = f(&mut tables);
    if tables.resources.index.slots.capacity() <= KEPT_TABLES_MAX {
        PLAN_TABLES.set(tables);
    }
    result
}

/// Indexes the accesses of one shard's resources, in block order (see
/// `ConflictGraph::build`). `touches` are the shard's accesses, chunk by
/// chunk, each in block order.
fn shard_edges(touches: &[&[Touch]], max_edges: usize) -> ShardEdges {
    let total: usize = touches.iter().map(|chunk| chunk.len()).sum();
    with_tables(|PlanTables { resources, earlier, .. }| {
        resources.reset(total / ACCESSES_PER_RESOURCE);
        let mut numbering = Numbering::default();
        let mut preds: Vec<(u32, u32)> = Vec::new();
        let mut out = ShardEdges::default();
        let mut all = touches.iter().flat_map(|chunk| chunk.iter()).peekable();
        while let Some(&first) = all.peek() {
            let tx = first.tx;
            preds.clear();
            while let Some(touch) = all.next_if(|t| t.tx == tx) {
                earlier.clear();
                let number = resources.access(tx, slot_key(touch.fingerprint), touch.modes, touch.pattern, max_edges, &mut numbering, earlier);
                preds.extend(earlier.iter().map(|&e| (PackedPred::unpack(e).0, number)));
            }
            if preds.len() > 1 {
                preds.sort_unstable();
                preds.dedup();
            }
            for &(earlier, number) in preds.iter() {
                numbering.edges_by_resource[number as usize] += 1;
                out.preds.push((tx, earlier, number));
            }
        }
        out.numbering = numbering;
        out
    })
}

/// The accesses per resource a block's tables are first sized for (a swap
/// block's 160,000 accesses are about six per resource, a transfer block's
/// two: its tables grow, and the next block's start at what they held).
const ACCESSES_PER_RESOURCE: usize = 6;

/// Transactions as nodes (node `i` is the block's transaction `i`), an edge
/// from each earlier transaction to each later one it must precede.
///
/// Kept as the list the build makes, by later transaction: the executor
/// reads its edges once into its schedule (`Successors`), and a report
/// reads each transaction's predecessors. Adding every edge to a petgraph
/// graph on the planner's path cost 64 (transfers) to 158 (defi-mix)
/// instructions per transaction, 3-5% of planning, for a view only reports
/// and researchers' tools use: [`ConflictGraph::petgraph`] makes it when
/// first asked for.
#[derive(Debug, Clone)]
pub struct ConflictGraph {
    transactions: usize,
    /// Every edge as (later, earlier, resource), by later transaction, then
    /// earlier. The resource (index into `resources`) is the one that made
    /// the edge, the first one found when several did.
    edges: Vec<(u32, u32, u32)>,
    /// The graph as petgraph's, edge weights the resources (made when first needed).
    petgraph: OnceLock<DiGraph<(), u32>>,
    /// Where the key patterns that made edges are in the predictions the
    /// graph was built of, by resource index ([`ConflictGraph::pattern`]
    /// reads one).
    pub resources: Vec<PatternAt>,
    /// How many edges each of them made (an edge made by two resources
    /// counts for both).
    pub edges_by_resource: Vec<u32>,
}

impl ConflictGraph {
    /// The conflict graph of a block whose transactions access `accesses`,
    /// in block order. Runs on the current rayon pool (in one pass on the
    /// calling thread for at most [`SEQUENTIAL_MAX`] transactions, or on a
    /// pool of one thread); the result does not depend on how many threads
    /// it has.
    pub fn build<A: Planned>(accesses: &[A]) -> ConflictGraph {
        Self::build_from(accesses, in_one_pass(accesses.len()), MAX_EDGES_PER_ACCESS).0
    }

    /// The graph, and each transaction's level: one more than the highest
    /// level among the transactions it must follow (0 for none). With
    /// `sequential`, in one pass on the calling thread, otherwise in shards
    /// on the pool; the result is the same.
    /// `max_edges`: see [`MAX_EDGES_PER_ACCESS`].
    fn build_from<'a, A: Planned>(accesses: &'a [A], sequential: bool, max_edges: usize) -> (ConflictGraph, Vec<u32>) {
        // The block's prefixes first (most blocks have none, and a
        // prediction made beforehand says whether it has any), so that each
        // access's intentions are known when it is sent. Chunk by chunk on
        // the pool: the scan is mostly cache misses, one per list.
        let chunk_prefixes = |(c, chunk): (usize, &'a [A])| -> Vec<(&'a [u8], PatternAt, u64)> {
            let mut found = Vec::new();
            for (i, item) in chunk.iter().enumerate() {
                let access = item.access();
                if !access.has_prefixes() {
                    continue;
                }
                let tx = (c * CHUNK + i) as u32;
                for (position, (_, pattern)) in access.accessed().enumerate().filter(|(_, (_, p))| !p.is_exact()) {
                    let position = position as u32;
                    found.push((pattern.bytes(), PatternAt { tx, position }, access.fingerprint_at(position)));
                }
            }
            found
        };
        let found: Vec<Vec<(&'a [u8], PatternAt, u64)>> = if sequential {
            accesses.chunks(CHUNK).enumerate().map(chunk_prefixes).collect()
        } else {
            accesses.par_chunks(CHUNK).enumerate().map(chunk_prefixes).collect()
        };
        let mut prefixes = Prefixes::default();
        for (bytes, at, fingerprint) in found.into_iter().flatten() {
            prefixes.by_bytes.entry(bytes).or_insert((at, fingerprint));
            prefixes.lengths.insert(bytes.len());
        }
        let prefixes = &prefixes;
        if sequential {
            // A resource's number packs into a predecessor's word when the
            // block cannot number that many (each access and intention
            // makes one resource at most): every real block, but not one of
            // half a billion accesses, which the shards plan.
            let total: usize = accesses.iter().map(pattern_count).sum();
            if total.saturating_mul(1 + prefixes.lengths.len()) < 1 << NUMBER_BITS {
                return Self::build_in_one_pass(accesses, prefixes, total, max_edges);
            }
        }
        // Every access (and intention) sent to its resource's shard, chunk
        // by chunk in block order.
        let chunk_touches = |(c, chunk): (usize, &'a [A])| {
            // Sized for an even spread (grown on a skewed chunk).
            let expected = chunk.iter().map(pattern_count).sum::<usize>() * 5 / 4 / SHARDS;
            let mut shards: [Vec<Touch>; SHARDS] = std::array::from_fn(|_| Vec::with_capacity(expected + 4));
            for (i, item) in chunk.iter().enumerate() {
                prefetch_fingerprints(chunk.get(i + PREFETCH_AHEAD));
                let tx = (c * CHUNK + i) as u32;
                touches_of(item, tx, prefixes, |modes, fingerprint, pattern| {
                    shards[shard_of(fingerprint)].push(Touch { tx, modes, fingerprint, pattern });
                });
            }
            shards
        };
        let chunks: Vec<[Vec<Touch>; SHARDS]> = accesses.par_chunks(CHUNK).enumerate().map(chunk_touches).collect();
        let shard = |shard: usize| shard_edges(&chunks.iter().map(|c| c[shard].as_slice()).collect::<Vec<_>>(), max_edges);
        let mut shards: Vec<ShardEdges> = (0..SHARDS).into_par_iter().map(shard).collect();

        // Resources that made edges, numbered shard after shard, each
        // shard's in the order of their first edge: a function of the
        // block alone, like the shards. (Numbered in order of first use
        // over the block, they had to be sorted and renamed: a tenth of a
        // transfer block's graph.)
        let (offsets, resources, edges_by_resource) = merge_numberings(shards.iter_mut().map(|shard| &mut shard.numbering));

        // Each transaction's predecessors from every shard: one edge per
        // earlier transaction, named by the first resource that made it.
        // Gathered chunk by chunk on the pool (reading eight shards' lists
        // and renaming their resources was half of a lending block's graph,
        // on one thread while the other waited); only adding the edges and
        // the levels, in block order, is left to one thread.
        let (shards, offsets) = (&shards, &offsets);
        let chunk_edges = |chunk: usize| -> Vec<(u32, u32, u32)> {
            let (start, end) = (chunk * CHUNK, ((chunk + 1) * CHUNK).min(accesses.len()));
            // Each shard's part of the chunk, gathered by transaction (in
            // shard order): work in proportion to the edges, not to the
            // transactions times the shards (a cursor per shard checked for
            // each transaction was a fifth of a transfer block's graph).
            let parts: [&[(u32, u32, u32)]; SHARDS] = std::array::from_fn(|s| {
                let preds = &shards[s].preds;
                let from = preds.partition_point(|p| (p.0 as usize) < start);
                let to = from + preds[from..].partition_point(|p| (p.0 as usize) < end);
                &preds[from..to]
            });
            let mut first = vec![0u32; end - start + 1];
            for &(tx, ..) in parts.iter().copied().flatten() {
                first[tx as usize - start + 1] += 1;
            }
            for i in 1..first.len() {
                first[i] += first[i - 1];
            }
            let mut next = first.clone();
            let mut gathered = vec![(0u32, 0u32); first[end - start] as usize];
            for (s, part) in parts.iter().enumerate() {
                for &(tx, earlier, resource) in part.iter() {
                    let at = &mut next[tx as usize - start];
                    gathered[*at as usize] = (earlier, offsets[s] + resource);
                    *at += 1;
                }
            }
            let mut edges = Vec::with_capacity(gathered.len());
            for (i, tx) in (start as u32..end as u32).enumerate() {
                let preds = &mut gathered[first[i] as usize..first[i + 1] as usize];
                if preds.len() > 1 {
                    preds.sort_unstable();
                }
                // One edge per earlier transaction, named by its first resource.
                let mut last = None;
                for &(earlier, resource) in preds.iter() {
                    if last != Some(earlier) {
                        edges.push((tx, earlier, resource));
                        last = Some(earlier);
                    }
                }
            }
            edges
        };
        let chunks = accesses.len().div_ceil(CHUNK);
        let chunked: Vec<Vec<(u32, u32, u32)>> = (0..chunks).into_par_iter().map(chunk_edges).collect();
        let mut edges = Vec::with_capacity(chunked.iter().map(Vec::len).sum());
        let mut levels = vec![0u32; accesses.len()];
        for &(tx, earlier, resource) in chunked.iter().flatten() {
            edges.push((tx, earlier, resource));
            levels[tx as usize] = levels[tx as usize].max(levels[earlier as usize] + 1);
        }
        (ConflictGraph::of_edges(accesses.len(), edges, resources, edges_by_resource), levels)
    }

    /// [`ConflictGraph::build_from`] on one thread: the transactions in
    /// block order, each access looked up in one table of the block's
    /// resources, and each transaction's edges added as it is taken. The
    /// graph is the sharded build's, edge for edge: each resource is
    /// numbered within its shard in the order of its first edge (a
    /// transaction's accesses taken in the order the shards take them),
    /// and the shards' numbers follow one another. On one thread the shards
    /// only cost: without sending every access to its shard and gathering
    /// the edges back, a swap block's graph takes a quarter fewer
    /// instructions and a third less time.
    fn build_in_one_pass<A: Planned>(accesses: &[A], prefixes: &Prefixes<'_>, total: usize, max_edges: usize) -> (ConflictGraph, Vec<u32>) {
        with_tables(|PlanTables { resources, last_edges, preds, numberings, .. }| {
            resources.reset(total / ACCESSES_PER_RESOURCE);
            for numbering in numberings.iter_mut() {
                numbering.patterns.clear();
                numbering.edges_by_resource.clear();
            }
            // Written as (later, earlier, resource as its shard and its
            // number there), then each resource renamed in place: kept
            // from block to block and copied into the graph's list with
            // the resources renamed, they took 52 instructions per
            // defi-mix transaction more.
            let (edges_before, transactions_before) = *last_edges;
            let expected = (edges_before + edges_before / 8).saturating_mul(accesses.len()) / transactions_before.max(1);
            let mut edges: Vec<(u32, u32, u32)> = Vec::with_capacity(expected.clamp(accesses.len(), KEPT_TABLES_MAX.max(accesses.len())) + 16);
            let mut levels = vec![0u32; accesses.len()];
            for (i, item) in accesses.iter().enumerate() {
                prefetch_fingerprints(accesses.get(i + PREFETCH_AHEAD));
                if let Some(ahead) = accesses.get(i + SLOT_PREFETCH_AHEAD) {
                    ahead.access().fingerprints().for_each(|fingerprint| resources.index.prefetch(slot_key(fingerprint)));
                }
                let tx = i as u32;
                preds.clear();
                touches_of(item, tx, prefixes, |modes, fingerprint, pattern| {
                    let shard = shard_of(fingerprint);
                    let before = preds.len();
                    let number = resources.access(tx, slot_key(fingerprint), modes, pattern, max_edges, &mut numberings[shard], preds);
                    if preds.len() > before {
                        let named = u64::from(PackedPred::named(shard, number));
                        preds[before..].iter_mut().for_each(|pred| *pred |= named);
                    }
                });
                if preds.len() > 1 {
                    preds.sort_unstable();
                    preds.dedup();
                }
                // One edge per earlier transaction, named by the first
                // resource that made it; every resource counts its edges.
                let mut last = NONE;
                for &packed in preds.iter() {
                    let (e, named) = PackedPred::unpack(packed);
                    let (shard, number) = PackedPred::resource(named);
                    numberings[shard].edges_by_resource[number as usize] += 1;
                    if e != last {
                        edges.push((tx, e, named));
                        levels[i] = levels[i].max(levels[e as usize] + 1);
                        last = e;
                    }
                }
            }
            let (offsets, patterns, edges_by_resource) = merge_numberings(numberings.iter_mut());
            for edge in edges.iter_mut() {
                let (shard, number) = PackedPred::resource(edge.2);
                edge.2 = offsets[shard] + number;
            }
            *last_edges = (edges.len(), accesses.len());
            (ConflictGraph::of_edges(accesses.len(), edges, patterns, edges_by_resource), levels)
        })
    }

    /// Of `transactions` transactions, with `edges` as (later, earlier,
    /// resource) by later transaction, then earlier.
    fn of_edges(transactions: usize, edges: Vec<(u32, u32, u32)>, resources: Vec<PatternAt>, edges_by_resource: Vec<u32>) -> ConflictGraph {
        debug_assert!(edges.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "edges by later, then earlier, transaction");
        ConflictGraph { transactions, edges, petgraph: OnceLock::new(), resources, edges_by_resource }
    }

    pub fn transactions(&self) -> usize {
        self.transactions
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// The earlier transactions `tx` conflicts with, in block order.
    pub fn predecessors(&self, tx: usize) -> impl Iterator<Item = usize> + '_ {
        let start = self.edges.partition_point(|&(later, _, _)| (later as usize) < tx);
        self.edges[start..].iter().take_while(move |&&(later, _, _)| later as usize == tx).map(|&(_, earlier, _)| earlier as usize)
    }

    /// The later transactions that conflict with `tx`.
    pub fn successors(&self, tx: usize) -> impl Iterator<Item = usize> + '_ {
        self.petgraph().neighbors_directed(NodeIndex::new(tx), Direction::Outgoing).map(|n| n.index())
    }

    /// Every edge as (earlier, later, resource), by later transaction, then earlier.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
        self.edges.iter().map(|&(later, earlier, resource)| (earlier as usize, later as usize, resource))
    }

    /// The graph as petgraph's (node `i` the block's transaction `i`, each
    /// edge weighted by its resource, in the order of [`ConflictGraph::edges`]),
    /// for petgraph's algorithms; made on the first call.
    pub fn petgraph(&self) -> &DiGraph<(), u32> {
        self.petgraph.get_or_init(|| {
            let mut graph = DiGraph::with_capacity(self.transactions, self.edges.len());
            for _ in 0..self.transactions {
                graph.add_node(());
            }
            for (earlier, later, resource) in self.edges() {
                graph.add_edge(NodeIndex::new(earlier), NodeIndex::new(later), resource);
            }
            graph
        })
    }

    /// The key pattern of `resource`, found in `accesses`, the predictions
    /// the graph was built of (`None` for other predictions without it).
    pub fn pattern<'a, A: Planned>(&self, resource: u32, accesses: &'a [A]) -> Option<PatternRef<'a>> {
        self.resources.get(resource as usize)?.of(accesses)
    }

    /// The `limit` resources that made the most edges, most first (ties in
    /// resource order), with their patterns found in `accesses`, the
    /// predictions the graph was built of.
    pub fn hottest<'a, A: Planned>(&self, limit: usize, accesses: &'a [A]) -> Vec<(PatternRef<'a>, u32)> {
        let mut ranked: Vec<(u32, usize)> =
            self.edges_by_resource.iter().enumerate().filter(|(_, &n)| n > 0).map(|(r, &n)| (n, r)).collect();
        ranked.sort_by_key(|&(n, r)| (Reverse(n), r));
        ranked.into_iter().filter_map(|(n, r)| Some((self.pattern(r as u32, accesses)?, n))).take(limit).collect()
    }
}

/// The edges of a plan from its transactions `first` on, as a schedule
/// walks them: each transaction's successors in one array (a graph's edge
/// lists are a cache miss per edge), and how many predecessors each waits
/// for.
#[derive(Debug, Clone, Default)]
pub struct Successors {
    /// Where each transaction's successors start in `of` (one more entry
    /// at the end).
    starts: Vec<u32>,
    of: Vec<u32>,
    /// Each transaction's predecessors from `first` on.
    pub waiting: Vec<u32>,
}

impl Successors {
    /// Of `graph`'s edges from transactions `first` on (earlier ones have
    /// run: nothing waits for them).
    pub fn of_graph(graph: &ConflictGraph, first: usize) -> Successors {
        let len = graph.transactions();
        let mut waiting = vec![0u32; len];
        let mut starts = vec![0u32; len + 1];
        for (earlier, later, _) in graph.edges() {
            if earlier >= first {
                waiting[later] += 1;
                starts[earlier + 1] += 1;
            }
        }
        for i in 0..len {
            starts[i + 1] += starts[i];
        }
        let mut of = vec![0u32; starts[len] as usize];
        let mut filled = starts.clone();
        for (earlier, later, _) in graph.edges() {
            if earlier >= first {
                of[filled[earlier] as usize] = later as u32;
                filled[earlier] += 1;
            }
        }
        Successors { starts, of, waiting }
    }

    /// The successors of transaction `i`.
    pub fn of(&self, i: usize) -> &[u32] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&start), Some(&end)) => self.of.get(start as usize..end as usize).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// A block's conflict graph and its ordered groups.
#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    pub graph: ConflictGraph,
    /// The group of each transaction.
    pub group_of: Vec<u32>,
    /// Each group's transactions, in block order.
    pub groups: Groups,
}

/// A plan's groups in order, each its transactions in block order, all in
/// one array. A vector per group was an allocation per group: a chain of
/// 10,000 transactions has 10,000 groups, and its graph took 728
/// instructions per transaction with them, 639 with one array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// The transactions, group after group.
    members: Vec<u32>,
    /// Where each group ends in `members`.
    ends: Vec<u32>,
}

impl Groups {
    /// The groups of transactions whose groups are `group_of`.
    pub fn of(group_of: &[u32]) -> Groups {
        let count = group_of.iter().max().map_or(0, |&g| g as usize + 1);
        // Counted, then each transaction placed after those of earlier
        // groups and earlier in its own.
        let mut ends = vec![0u32; count];
        for &group in group_of {
            ends[group as usize] += 1;
        }
        let mut total = 0;
        for end in ends.iter_mut() {
            total += *end;
            *end = total;
        }
        let mut next: Vec<u32> = std::iter::once(0).chain(ends.iter().copied()).take(count).collect();
        let mut members = vec![0u32; group_of.len()];
        for (tx, &group) in group_of.iter().enumerate() {
            let at = &mut next[group as usize];
            members[*at as usize] = tx as u32;
            *at += 1;
        }
        Groups { members, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Group `i`'s transactions, in block order.
    pub fn get(&self, i: usize) -> Option<&[u32]> {
        let start = if i == 0 { 0 } else { *self.ends.get(i - 1)? as usize };
        self.members.get(start..*self.ends.get(i)? as usize)
    }

    /// The groups in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u32]> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }
}

impl ExecutionPlan {
    pub fn new<A: Planned>(accesses: &[A]) -> ExecutionPlan {
        let (graph, group_of) = ConflictGraph::build_from(accesses, in_one_pass(accesses.len()), MAX_EDGES_PER_ACCESS);
        let groups = Groups::of(&group_of);
        ExecutionPlan { graph, group_of, groups }
    }

    pub fn len(&self) -> usize {
        self.group_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.group_of.is_empty()
    }

    /// The heaviest chain of conflicting transactions, with `weight` per
    /// transaction (gas used, say): no schedule can be shorter.
    pub fn critical_path(&self, weight: &[u64]) -> u64 {
        let mut finish = vec![0u64; self.len()];
        for tx in 0..self.len() {
            let start = self.graph.predecessors(tx).map(|p| finish[p]).max().unwrap_or(0);
            finish[tx] = start + weight[tx];
        }
        finish.into_iter().max().unwrap_or(0)
    }

    /// The length of the schedule `strategy` gives on `threads` threads when
    /// transaction `i` takes `weight[i]`, each free thread taking the
    /// earliest ready transaction in block order.
    pub fn makespan(&self, strategy: Strategy, threads: usize, weight: &[u64]) -> u64 {
        let threads = threads.max(1);
        match strategy {
            Strategy::Barrier => self
                .groups
                .iter()
                .map(|group| list_schedule(group.iter().map(|&t| weight[t as usize]), threads))
                .sum(),
            Strategy::Dataflow => {
                // The edges in arrays, not walked in the graph's lists (a
                // lending block's schedule, simulated where its executor
                // decides whether to run it in parallel, took 0.55 ms of
                // its 6.5 ms planning that way).
                let mut successors = Successors::of_graph(&self.graph, 0);
                let mut waiting = std::mem::take(&mut successors.waiting);
                let mut ready: BinaryHeap<Reverse<usize>> = (0..self.len()).filter(|&t| waiting[t] == 0).map(Reverse).collect();
                let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
                let mut now = 0;
                let mut end = 0;
                loop {
                    while running.len() < threads {
                        let Some(Reverse(tx)) = ready.pop() else { break };
                        running.push(Reverse((now + weight[tx], tx)));
                    }
                    let Some(Reverse((finish, tx))) = running.pop() else { break };
                    now = finish;
                    end = end.max(finish);
                    for &next in successors.of(tx) {
                        let next = next as usize;
                        waiting[next] -= 1;
                        if waiting[next] == 0 {
                            ready.push(Reverse(next));
                        }
                    }
                }
                end
            }
        }
    }
}

/// Greedy list scheduling of independent jobs, in order, on `threads` threads.
fn list_schedule(jobs: impl Iterator<Item = u64>, threads: usize) -> u64 {
    let mut free_at: BinaryHeap<Reverse<u64>> = (0..threads).map(|_| Reverse(0)).collect();
    let mut end = 0;
    for job in jobs {
        let Reverse(start) = free_at.pop().unwrap_or(Reverse(0));
        end = end.max(start + job);
        free_at.push(Reverse(start + job));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::Patterns;

    fn exact(key: &[u8]) -> KeyPattern {
        KeyPattern::exact(key)
    }

    fn access(reads: &[&[u8]], writes: &[&[u8]], adds: &[&[u8]]) -> PredictedAccess {
        let exact = |keys: &[&[u8]]| keys.iter().map(|k| exact(k)).collect();
        PredictedAccess::new(exact(reads), exact(writes), exact(adds))
    }

    fn conflicts_of(plan: &ExecutionPlan) -> Vec<(usize, usize)> {
        let mut edges: Vec<_> = plan.graph.edges().map(|(a, b, _)| (a, b)).collect();
        edges.sort();
        edges
    }

    /// Groups in one array hold what a vector per group holds: random
    /// group numbers (every group used, as a plan's are), each group's
    /// transactions in block order, found by `get` and `iter` alike.
    #[test]
    fn groups_in_one_array_are_the_groups_one_by_one() {
        let mut next = crate::test_rng(0x9e37_79b9);
        for case in 0..200 {
            let len = next(60) as usize;
            let count = 1 + next(len.max(1) as u64) as u32;
            // Each group used at least once, then at random.
            let mut group_of: Vec<u32> = (0..len as u32).map(|tx| if tx < count { tx } else { next(u64::from(count)) as u32 }).collect();
            for i in (1..len).rev() {
                group_of.swap(i, next(i as u64 + 1) as usize);
            }
            let count = if len == 0 { 0 } else { count as usize };
            let mut expected: Vec<Vec<u32>> = vec![Vec::new(); count];
            for (tx, &group) in group_of.iter().enumerate() {
                expected[group as usize].push(tx as u32);
            }
            let groups = Groups::of(&group_of);
            assert_eq!(groups.len(), count, "case {case}");
            assert_eq!(groups.iter().map(<[u32]>::to_vec).collect::<Vec<_>>(), expected, "case {case}: {group_of:?}");
            assert!((0..count).all(|i| groups.get(i) == Some(&expected[i][..])));
            assert_eq!(groups.get(count), None);
        }
    }

    /// Whether `later` is reachable from `earlier` in the graph.
    fn ordered(plan: &ExecutionPlan, earlier: usize, later: usize) -> bool {
        petgraph::algo::has_path_connecting(plan.graph.petgraph(), NodeIndex::new(earlier), NodeIndex::new(later), None)
    }

    /// The graph's views agree with its list of edges: petgraph's graph,
    /// edge for edge, and each transaction's predecessors and successors.
    fn assert_views_agree(graph: &ConflictGraph) {
        let edges: Vec<(usize, usize, u32)> = graph.edges().collect();
        let petgraph = graph.petgraph();
        assert_eq!(petgraph.node_count(), graph.transactions());
        assert_eq!(petgraph.raw_edges().iter().map(|e| (e.source().index(), e.target().index(), e.weight)).collect::<Vec<_>>(), edges);
        let (mut predecessors, mut successors) = (vec![Vec::new(); graph.transactions()], vec![BTreeSet::new(); graph.transactions()]);
        for &(earlier, later, _) in &edges {
            predecessors[later].push(earlier);
            successors[earlier].insert(later);
        }
        for tx in 0..graph.transactions() {
            assert_eq!(graph.predecessors(tx).collect::<Vec<_>>(), predecessors[tx], "{tx}");
            assert_eq!(graph.successors(tx).collect::<BTreeSet<_>>(), successors[tx], "{tx}");
        }
    }

    #[test]
    fn adds_commute_with_adds_but_not_with_reads_or_writes() {
        let plan = ExecutionPlan::new(&[
            access(&[], &[], &[b"k"]),
            access(&[], &[], &[b"k"]),
            access(&[b"k"], &[], &[]),
            access(&[b"k"], &[], &[]),
            access(&[], &[b"k"], &[]),
        ]);
        // Adds stay listed until a plain write, so the write gets an edge from
        // them too (each edge is a real conflict, some implied by others).
        assert_eq!(conflicts_of(&plan), vec![(0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4), (2, 4), (3, 4)]);
        assert_eq!(plan.groups.iter().collect::<Vec<_>>(), [&[0, 1][..], &[2, 3], &[4]]);
    }

    #[test]
    fn a_write_is_a_barrier_so_chains_stay_linear() {
        let block: Vec<_> = (0..100).map(|_| access(&[b"hot"], &[b"hot"], &[])).collect();
        let plan = ExecutionPlan::new(&block);
        assert_eq!(plan.graph.edge_count(), 99);
        assert_eq!(plan.groups.len(), 100);
        assert_eq!(plan.graph.hottest(1, &block), vec![(exact(b"hot").as_ref(), 99)]);
    }

    #[test]
    fn alternating_long_runs_stay_linear() {
        let mut block = Vec::new();
        for _ in 0..20 {
            block.extend((0..200).map(|_| access(&[], &[], &[b"total"])));
            block.extend((0..200).map(|_| access(&[b"total"], &[], &[])));
        }
        let plan = ExecutionPlan::new(&block);
        assert!(plan.graph.edge_count() < 40 * block.len(), "{} edges", plan.graph.edge_count());
    }

    #[test]
    fn prefixes_conflict_with_the_keys_below_them_only() {
        let slot = KeyPattern::prefix(b"s1");
        let plan = ExecutionPlan::new(&[
            access(&[], &[b"s1a"], &[]),
            access(&[], &[b"s1b"], &[]),
            PredictedAccess::new(vec![slot.clone()], Vec::new(), Vec::new()),
            access(&[b"s1a"], &[], &[]),
            access(&[], &[b"s2a"], &[]),
            PredictedAccess::new(Vec::new(), Vec::new(), vec![slot]),
            access(&[], &[], &[b"s1c"]),
        ]);
        // 0 and 1 write different keys; the slot read waits for both; a read
        // of s1a after it does not conflict with it; s2a is elsewhere; the
        // slot add conflicts with the keys written and read below it and with
        // the slot read, but not with the add below it.
        assert_eq!(conflicts_of(&plan), vec![(0, 2), (0, 3), (0, 5), (1, 2), (1, 5), (2, 5), (2, 6), (3, 5)]);
        assert_eq!(plan.group_of, vec![0, 0, 1, 1, 0, 2, 2]);
    }

    #[test]
    fn unbounded_transactions_conflict_with_everything() {
        let plan = ExecutionPlan::new(&[
            access(&[b"a"], &[], &[]),
            access(&[], &[], &[b"b"]),
            PredictedAccess::unbounded(),
            access(&[b"c"], &[], &[]),
        ]);
        assert_eq!(conflicts_of(&plan), vec![(0, 2), (1, 2), (2, 3)]);
        assert_eq!(plan.groups.iter().collect::<Vec<_>>(), [&[0, 1][..], &[2], &[3]]);
    }

    /// Against the definition: every conflicting pair is ordered by a path,
    /// and groups never hold a conflicting pair.
    /// Random blocks of `len` transactions over a few keys and prefixes.
    fn random_blocks(len: usize, keys: &[&[u8]], unbounded_one_in: u64) -> impl Iterator<Item = Vec<PredictedAccess>> {
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let prefixes = [KeyPattern::prefix(b"p1"), KeyPattern::prefix(b"p")];
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        std::iter::repeat_with(move || {
            let mut block = Vec::new();
            for _ in 0..len {
                let (mut reads, mut writes, mut adds) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..next(3) + 1 {
                    let pattern = if next(5) == 0 {
                        prefixes[next(2) as usize].clone()
                    } else {
                        KeyPattern::exact(&keys[next(keys.len() as u64) as usize])
                    };
                    match next(3) {
                        0 => reads.push(pattern),
                        1 => writes.push(pattern),
                        _ => adds.push(pattern),
                    }
                }
                block.push(PredictedAccess::new(reads, writes, adds).with_unbounded(next(unbounded_one_in) == 0));
            }
            block
        })
    }

    #[test]
    fn a_plan_made_on_one_thread_equals_one_made_in_parallel() {
        // Several chunks of transactions, over many keys and a few prefixes.
        let keys: Vec<Vec<u8>> = (0..300u32).map(|i| [b"p1".as_slice(), &i.to_be_bytes()].concat()).collect();
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for block in random_blocks(3 * CHUNK + 77, &keys, 500).take(3) {
            assert!(block.len() > SEQUENTIAL_MAX);
            let one = ConflictGraph::build_from(&block, true, MAX_EDGES_PER_ACCESS);
            let many = ConflictGraph::build_from(&block, false, MAX_EDGES_PER_ACCESS);
            assert_same_plan(&one, &many, block.len());
        }
    }

    #[test]
    fn packed_predecessors_sort_as_pairs_and_unpack() {
        let top = (1u32 << NUMBER_BITS) - 1;
        let pairs = [(0, 0, 0), (0, 0, top), (0, 1, 0), (0, SHARDS - 1, top), (1, 0, 0), (7, 3, 5), (u32::MAX - 1, SHARDS - 1, top)];
        let mut packed: Vec<u64> = pairs.iter().rev().map(|&(earlier, shard, number)| PackedPred::of(earlier, PackedPred::named(shard, number))).collect();
        packed.sort_unstable();
        let unpacked: Vec<(u32, (usize, u32))> = packed.into_iter().map(PackedPred::unpack).map(|(earlier, named)| (earlier, PackedPred::resource(named))).collect();
        let expected: Vec<(u32, (usize, u32))> = pairs.iter().map(|&(earlier, shard, number)| (earlier, (shard, number))).collect();
        assert_eq!(unpacked, expected, "in (earlier, shard, number) order, each as it went in");
    }

    /// Blocks of more resources than the tables are first sized for: they
    /// grow while a block is indexed (and the next block's start at that
    /// size). Planned in one pass and in shards, and again, they give one
    /// plan.
    #[test]
    fn plans_over_more_resources_than_the_tables_start_with_agree() {
        // Half the accesses to cold keys, half to two hot ones.
        let cold: Vec<Vec<u8>> = (0..20_000u32).map(|i| [b"q".as_slice(), &i.to_be_bytes()].concat()).collect();
        let mut keys: Vec<&[u8]> = cold.iter().map(Vec::as_slice).collect();
        keys.extend([b"p1hot".as_slice(), b"p1warm"].repeat(10_000));
        let with_prefixes = random_blocks(3_000, &keys, 1_000).next().expect("a block");
        for block in [without_prefixes(&with_prefixes), with_prefixes] {
            let accesses: usize = block.iter().map(|a| pattern_count(a)).sum();
            let distinct: BTreeSet<PatternRef<'_>> = block.iter().flat_map(|a| a.patterns()).collect();
            // More than a fresh table holds at three quarters full.
            assert!(distinct.len() > 2 * (accesses / ACCESSES_PER_RESOURCE) + 2, "{} resources of {accesses} accesses", distinct.len());
            // On a thread of its own: its tables start empty.
            let one = std::thread::scope(|scope| scope.spawn(|| ConflictGraph::build_from(&block, true, MAX_EDGES_PER_ACCESS)).join()).expect("the plan");
            let sharded = ConflictGraph::build_from(&block, false, MAX_EDGES_PER_ACCESS);
            assert_same_plan(&one, &sharded, block.len());
            assert_same_plan(&one, &ConflictGraph::build_from(&block, true, MAX_EDGES_PER_ACCESS), block.len());
        }
    }

    /// Both builds give the same graph and levels, one with conflicts.
    fn assert_same_plan((a, a_levels): &(ConflictGraph, Vec<u32>), (b, b_levels): &(ConflictGraph, Vec<u32>), transactions: usize) {
        assert!(a.edge_count() > transactions, "a block with conflicts");
        assert_eq!(a.edges().collect::<Vec<_>>(), b.edges().collect::<Vec<_>>());
        assert_views_agree(a);
        assert_eq!(a.resources, b.resources);
        assert_eq!(a.edges_by_resource, b.edges_by_resource);
        assert_eq!(a_levels, b_levels);
    }

    #[test]
    fn every_conflicting_pair_is_ordered() {
        let keys: [&[u8]; 4] = [b"p1x", b"p1y", b"p2x", b"q"];
        // Blocks with prefixes are planned from every access, blocks of
        // single keys through `for_each_touch`.
        let blocks = random_blocks(24, &keys, 40).take(300).flat_map(|block| [without_prefixes(&block), block]);
        for block in blocks {
            // Without the edge bound, every edge is a conflict. With it, an
            // access ordered as a plain write also follows the accesses it
            // stands for, conflicting or not: edges still only go forward.
            let (unbounded, _) = ConflictGraph::build_from(&block, true, usize::MAX);
            for (a, b, _) in unbounded.edges() {
                assert!(a < b && pair_conflicts(&block[a], &block[b]), "edge {a} -> {b} is not a conflict");
            }
            let plan = ExecutionPlan::new(&block);
            assert!(plan.graph.edges().all(|(a, b, _)| a < b), "an edge goes backwards");
            assert_views_agree(&plan.graph);
            for i in 0..block.len() {
                for j in i + 1..block.len() {
                    if pair_conflicts(&block[i], &block[j]) {
                        assert!(ordered(&plan, i, j), "{i} and {j} conflict but are not ordered: {block:?}");
                        assert!(plan.group_of[i] < plan.group_of[j]);
                    }
                }
            }
        }
    }

    /// A prediction leaves out the reads and adds of a pattern it writes
    /// (the write allows them; see `PredictedAccess::readable`): a block's
    /// plan still orders every pair whose accesses, as given, conflict.
    #[test]
    fn reads_and_adds_of_written_keys_left_out_change_no_order() {
        let keys: [&[u8]; 3] = [b"a", b"b", b"c"];
        let mut next = crate::test_rng(0x5eed);
        let mut left_out = 0;
        for _ in 0..200 {
            let (mut given, mut block) = (Vec::new(), Vec::new());
            for _ in 0..16 {
                let mut lists: [Vec<KeyPattern>; 3] = Default::default();
                for _ in 0..next(4) + 1 {
                    lists[next(3) as usize].push(KeyPattern::exact(keys[next(3) as usize]));
                }
                let [reads, writes, adds] = lists;
                let access = PredictedAccess::new(reads.clone(), writes.clone(), adds.clone());
                left_out += reads.len() + adds.len() - access.reads().len() - access.adds().len();
                given.push((reads, writes, adds));
                block.push(access);
            }
            let plan = ExecutionPlan::new(&block);
            let any = |x: &[KeyPattern], y: &[KeyPattern]| x.iter().any(|p| y.contains(p));
            for j in 0..block.len() {
                for i in 0..j {
                    let ((ra, wa, aa), (rb, wb, ab)) = (&given[i], &given[j]);
                    let conflict = any(wa, rb) || any(wa, wb) || any(wa, ab) || any(ra, wb) || any(ra, ab) || any(aa, wb) || any(aa, rb);
                    if conflict {
                        assert!(ordered(&plan, i, j), "{i} and {j} conflict as given but are not ordered: {given:?}");
                    }
                }
            }
        }
        assert!(left_out > 500, "only {left_out} reads and adds of written keys");
    }

    /// `block` with its prefixes left out (and nothing unbounded).
    fn without_prefixes(block: &[PredictedAccess]) -> Vec<PredictedAccess> {
        block
            .iter()
            .map(|a| {
                let exact = |list: Patterns<'_>| list.filter(|p| p.is_exact()).map(PatternRef::to_pattern).collect();
                PredictedAccess::new(exact(a.reads()), exact(a.writes()), exact(a.adds()))
            })
            .collect()
    }

    /// The definition of a conflict, pair by pair.
    fn pair_conflicts(a: &PredictedAccess, b: &PredictedAccess) -> bool {
        if a.is_unbounded() || b.is_unbounded() {
            return true;
        }
        // What each may do: a write allows a read and an add of its key.
        let any = |mut x: Patterns<'_>, y: Patterns<'_>| x.any(|p| y.clone().any(|q| p.overlaps(q)));
        any(a.writes(), b.readable())
            || any(a.writes(), b.addable())
            || any(a.readable(), b.writes())
            || any(a.readable(), b.addable())
            || any(a.addable(), b.writes())
            || any(a.addable(), b.readable())
    }

    /// The executor decides a plan is worth running in parallel without
    /// simulating it when n/threads + groups steps is fast enough: that is
    /// an upper bound on both schedules with unit weights (Graham's bound
    /// for greedy schedules), which this checks.
    #[test]
    fn unit_makespans_stay_within_greedy_bound() {
        let keys: [&[u8]; 4] = [b"p1x", b"p1y", b"p2x", b"q"];
        for block in random_blocks(12, &keys, 60).take(300) {
            let plan = ExecutionPlan::new(&block);
            let unit = vec![1u64; plan.len()];
            for threads in 1..=4 {
                let bound = (plan.len().div_ceil(threads) + plan.groups.len()) as u64;
                for strategy in Strategy::ALL {
                    let steps = plan.makespan(strategy, threads, &unit);
                    assert!(steps <= bound, "{strategy:?} on {threads} threads: {steps} steps over the bound {bound}");
                    assert!(steps >= plan.groups.len() as u64, "no schedule is shorter than the longest chain");
                }
            }
        }
    }

    #[test]
    fn makespans() {
        // 0 → 2, 1 independent; weights 4, 4, 2.
        let plan = ExecutionPlan::new(&[access(&[], &[b"a"], &[]), access(&[], &[b"b"], &[]), access(&[b"a"], &[], &[])]);
        let weight = [4, 4, 2];
        assert_eq!(plan.critical_path(&weight), 6);
        assert_eq!(plan.makespan(Strategy::Dataflow, 1, &weight), 10);
        assert_eq!(plan.makespan(Strategy::Dataflow, 2, &weight), 6);
        assert_eq!(plan.makespan(Strategy::Barrier, 2, &weight), 6);
        // Barriers wait for the slowest member of a group.
        let plan = ExecutionPlan::new(&[access(&[], &[b"a"], &[]), access(&[], &[b"b"], &[]), access(&[b"b"], &[], &[])]);
        let weight = [1, 5, 5];
        assert_eq!(plan.makespan(Strategy::Dataflow, 2, &weight), 10);
        let weight = [5, 1, 5];
        assert_eq!(plan.makespan(Strategy::Dataflow, 2, &weight), 6);
        assert_eq!(plan.makespan(Strategy::Barrier, 2, &weight), 10);
    }
}
