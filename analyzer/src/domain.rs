//! The abstract domain: what the analysis knows about a byte, a value, the
//! linear memory and the whole machine state at one program point.
//!
//! Every call starts in a fresh instance, so the initial state is known
//! exactly: globals hold their initial values, memory holds the data
//! segments. Addresses therefore stay concrete numbers (the shadow stack
//! pointer, static buffers, bump-allocated heap) and the analysis tracks
//! *bytes*: a byte is a constant, a byte of the call input, of the caller's
//! or the contract's address, of a value read from storage, or unknown.
//! Anything the analysis cannot follow becomes unknown, never something
//! narrower.

// `Rc`, not `Arc`: a state never leaves the thread that analyses its entry
// point, and frames and memory are shared and unshared at every step.
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::bytemap::ByteMap;
use crate::locals::Locals;

/// What is known about one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Byte {
    Const(u8),
    /// The byte at this offset of the call's input (the encoded arguments).
    Input(u16),
    /// Byte `i` of the caller's address.
    Caller(u8),
    /// Byte `i` of the running contract's address.
    Contract(u8),
    /// Byte `offset` of the value returned by the entry's read number `read`
    /// (an index into its summary's reads).
    Stored { read: u16, offset: u16 },
    /// The low byte of an unknown boolean (0 or 1): the outcome of comparison
    /// `id`, negated or not. Only inside the analysis; never in a template.
    Flag { id: u32, negated: bool },
    /// One of a few constants (sorted, distinct): paths that stored
    /// different constants here. Only inside the analysis; never in a template.
    Choice { values: [u8; MAX_SET], len: u8 },
    Unknown,
}

impl Byte {
    /// The constants this byte may be, if it is one of a few.
    fn choices(&self) -> Option<&[u8]> {
        match self {
            Byte::Const(c) => Some(std::slice::from_ref(c)),
            Byte::Choice { values, len } => Some(&values[..*len as usize]),
            _ => None,
        }
    }

    fn one_of(values: impl IntoIterator<Item = u8>) -> Byte {
        let mut all: Vec<u8> = values.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        match all.len() {
            1 => Byte::Const(all[0]),
            n if (2..=MAX_SET).contains(&n) => {
                let mut values = [0; MAX_SET];
                values[..n].copy_from_slice(&all);
                Byte::Choice { values, len: n as u8 }
            }
            _ => Byte::Unknown,
        }
    }

    pub(crate) fn join(self, other: Byte) -> Byte {
        if self == other {
            return self;
        }
        match (self.choices(), other.choices()) {
            (Some(a), Some(b)) => Byte::one_of(a.iter().chain(b).copied()),
            _ => Byte::Unknown,
        }
    }

    /// What joining `self` with `other` loses, for choosing which paths to
    /// join: nothing when equal, 1 for most bytes, more for a byte of an
    /// address (the caller's, the contract's, or a stored one such as a
    /// token's). Keys and call targets are made of addresses: a stored token
    /// address joined with the zero address of an `unwrap_or_default` path
    /// is a call target lost, which makes a prediction unbounded; an amount
    /// joined with another only blurs a number.
    pub(crate) fn join_cost(self, other: Byte) -> usize {
        if self == other {
            0
        } else if self.names_an_address() || other.names_an_address() {
            ADDRESS_LOSS_COST
        } else {
            1
        }
    }

    /// A byte of an address, or of a stored value (which may be one).
    fn names_an_address(&self) -> bool {
        matches!(self, Byte::Caller(_) | Byte::Contract(_) | Byte::Stored { .. })
    }

    /// Whether a template may hold this byte (analysis-only bytes may not).
    pub fn is_nameable(&self) -> bool {
        !matches!(self, Byte::Unknown | Byte::Flag { .. } | Byte::Choice { .. })
    }
}

/// An i32 or i64 (or float bits): a constant, little-endian symbolic bytes,
/// an unknown boolean with an identity, or unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// i32 constants are kept zero-extended.
    Const(u64),
    Bytes { bytes: [Byte; 8], len: u8 },
    /// 0 or 1: the outcome of comparison `id` (negated or not). Branching on
    /// it records the outcome, so later uses of the same outcome agree.
    Flag { id: u32, negated: bool },
    /// One of a few constants (sorted, distinct, at least two): what paths
    /// that chose different constants (a slot, a field offset) join to.
    Set { values: [u64; MAX_SET], len: u8 },
    Top,
}

/// The cost, in joined bytes, of losing a byte of an address (see
/// [`Byte::join_cost`]). With 4 or 8, the AMM's `add_liquidity` still lost
/// a token address at some join.
const ADDRESS_LOSS_COST: usize = 16;

/// Most constants a [`Value::Set`] holds.
pub(crate) const MAX_SET: usize = 4;

impl Value {
    /// The value that is one of `values`: a constant, a set, or unknown when too many.
    pub fn one_of(values: impl IntoIterator<Item = u64>) -> Value {
        let mut all: Vec<u64> = values.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        match all.len() {
            0 => Value::Top,
            1 => Value::Const(all[0]),
            n if n <= MAX_SET => {
                let mut v = [0; MAX_SET];
                v[..n].copy_from_slice(&all);
                Value::Set { values: v, len: n as u8 }
            }
            _ => Value::Top,
        }
    }

    /// The constants this value may be: one, a few, or `None` (unknown).
    pub fn constants(&self) -> Option<&[u64]> {
        match self {
            Value::Const(v) => Some(std::slice::from_ref(v)),
            Value::Set { values, len } => Some(&values[..*len as usize]),
            _ => None,
        }
    }

    /// A value made of `bytes` (1..=8), normalised: all constant is `Const`,
    /// all unknown is `Top`.
    pub fn from_bytes(bytes: &[Byte]) -> Value {
        if bytes.iter().any(|b| matches!(b, Byte::Choice { .. })) && bytes.iter().all(|b| b.choices().is_some()) {
            // Every combination of the choices, if there are few.
            let mut values = vec![0u64];
            for (i, b) in bytes.iter().enumerate() {
                let choices = b.choices().unwrap_or(&[]);
                if values.len() * choices.len() > MAX_SET {
                    values.clear();
                    break;
                }
                values = values.iter().flat_map(|v| choices.iter().map(move |c| v | (u64::from(*c) << (8 * i)))).collect();
            }
            if !values.is_empty() {
                return Value::one_of(values);
            }
        }
        if bytes.iter().all(|b| matches!(b, Byte::Const(_))) {
            let mut v = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                if let Byte::Const(c) = b {
                    v |= u64::from(*c) << (8 * i);
                }
            }
            return Value::Const(v);
        }
        if bytes.iter().all(|b| *b == Byte::Unknown) {
            return Value::Top;
        }
        if let Some((Byte::Flag { id, negated }, rest)) = bytes.split_first() {
            if rest.iter().all(|b| *b == Byte::Const(0)) {
                return Value::Flag { id: *id, negated: *negated };
            }
        }
        let mut out = [Byte::Const(0); 8];
        out[..bytes.len()].copy_from_slice(bytes);
        Value::Bytes { bytes: out, len: bytes.len() as u8 }
    }

    /// The low `n` bytes (n <= 8), little-endian.
    pub fn bytes(&self, n: usize) -> [Byte; 8] {
        let mut out = [Byte::Unknown; 8];
        match self {
            Value::Const(v) => {
                for (i, b) in out.iter_mut().enumerate().take(n) {
                    *b = Byte::Const((v >> (8 * i)) as u8);
                }
            }
            Value::Bytes { bytes, len } => {
                let k = n.min(*len as usize);
                out[..k].copy_from_slice(&bytes[..k]);
            }
            Value::Flag { id, negated } => {
                out[..n].fill(Byte::Const(0));
                if n > 0 {
                    out[0] = Byte::Flag { id: *id, negated: *negated };
                }
            }
            Value::Set { values, len } => {
                let values = &values[..*len as usize];
                for (i, b) in out.iter_mut().enumerate().take(n) {
                    *b = Byte::one_of(values.iter().map(|v| (v >> (8 * i)) as u8));
                }
            }
            Value::Top => {}
        }
        out
    }

    pub fn as_const(&self) -> Option<u64> {
        match self {
            Value::Const(v) => Some(*v),
            _ => None,
        }
    }

    pub fn join(self, other: Value) -> Value {
        if self == other {
            return self;
        }
        if let (Some(a), Some(b)) = (self.constants(), other.constants()) {
            return Value::one_of(a.iter().chain(b).copied());
        }
        match (self, other) {
            (Value::Bytes { bytes: a, len: la }, Value::Bytes { bytes: b, len: lb }) if la == lb => {
                let joined: Vec<Byte> = (0..la as usize).map(|i| a[i].join(b[i])).collect();
                Value::from_bytes(&joined)
            }
            _ => Value::Top,
        }
    }
}

/// Content of a range of memory written in one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeContent {
    Unknown,
    Fill(u8),
    /// Input byte `first + (address - start)`.
    Input { first: u32 },
    /// Byte `first + (address - start)` of the value of read `read`.
    Stored { read: u16, first: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeFact {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    pub content: RangeContent,
}

impl RangeFact {
    fn byte_at(&self, address: u64) -> Byte {
        let i = address - self.start;
        match self.content {
            RangeContent::Unknown => Byte::Unknown,
            RangeContent::Fill(b) => Byte::Const(b),
            RangeContent::Input { first } => match u16::try_from(u64::from(first) + i) {
                Ok(offset) => Byte::Input(offset),
                Err(_) => Byte::Unknown,
            },
            RangeContent::Stored { read, first } => match u16::try_from(u64::from(first) + i) {
                Ok(offset) => Byte::Stored { read, offset },
                Err(_) => Byte::Unknown,
            },
        }
    }

    fn covers(&self, other: &RangeFact) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// Writes longer than this become one range fact instead of single bytes.
const BYTEWISE_LIMIT: u64 = 512;
/// More range facts than this and the memory is forgotten (sound, imprecise).
const MAX_RANGES: usize = 48;

/// The initial memory image: zero except for the active data segments.
pub(crate) struct Image<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
    /// Most states kept apart at one program point ([`MAX_DISJUNCTS`] but
    /// when analysing for one input shape). Here because every join reads
    /// the image.
    pub max_disjuncts: usize,
}

impl Image<'_> {
    fn byte(&self, address: u64) -> u8 {
        address
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.bytes.get(i))
            .copied()
            .unwrap_or(0)
    }
}

/// What is known about linear memory. Lookup order: bytes written one by
/// one (always newer than any range that covers them), then range facts
/// (newest first), then the initial image (unless forgotten).
#[derive(Debug, Clone, Default)]
pub(crate) struct Memory {
    /// Shared between the states of a split until one of them writes.
    written: Rc<ByteMap>,
    ranges: Vec<RangeFact>,
    /// The initial image no longer describes unwritten bytes.
    forgotten: bool,
}

impl PartialEq for Memory {
    fn eq(&self, other: &Memory) -> bool {
        self.forgotten == other.forgotten
            && self.ranges == other.ranges
            && (Rc::ptr_eq(&self.written, &other.written) || self.written == other.written)
    }
}

impl Eq for Memory {}

impl Memory {
    #[cfg(test)]
    pub fn byte(&self, image: &Image<'_>, address: u64) -> Byte {
        match self.written.get(address) {
            Some(b) => b,
            None => self.unwritten_byte(image, address),
        }
    }

    /// What range facts and the image say of an address no single byte
    /// holds, looked up on its own: the reference [`UnwrittenCursor`] is
    /// tested against (the analysis asks in address order, through a cursor).
    #[cfg(test)]
    fn unwritten_byte(&self, image: &Image<'_>, address: u64) -> Byte {
        match self.ranges.iter().rev().find(|f| f.start <= address && address < f.end) {
            Some(fact) => fact.byte_at(address),
            None => self.below_ranges(image, address),
        }
    }

    /// What an address no byte and no range fact holds is: the image's byte,
    /// unless the image is forgotten.
    fn below_ranges(&self, image: &Image<'_>, address: u64) -> Byte {
        if self.forgotten {
            Byte::Unknown
        } else {
            Byte::Const(image.byte(address))
        }
    }

    /// What range facts and the image say of addresses no single byte
    /// holds, asked in ascending order.
    fn unwritten_cursor(&self) -> UnwrittenCursor<'_> {
        UnwrittenCursor { memory: self, from: 1, until: 0, fact: None }
    }

    pub fn read(&self, image: &Image<'_>, address: u64, n: usize) -> Vec<Byte> {
        let written = self.written.get_run(address, n);
        let mut unwritten = self.unwritten_cursor();
        written.into_iter().zip(address..).map(|(b, a)| b.unwrap_or_else(|| unwritten.byte(image, a))).collect()
    }

    pub fn write(&mut self, address: u64, bytes: &[Byte]) {
        if bytes.is_empty() {
            return;
        }
        Rc::make_mut(&mut self.written).insert_run(address, bytes);
    }

    /// Sets `len` bytes from `start` to a range content.
    pub fn write_range(&mut self, image: &Image<'_>, start: u64, len: u64, content: RangeContent) {
        if len == 0 {
            return;
        }
        let fact = RangeFact { start, end: start.saturating_add(len), content };
        if len <= BYTEWISE_LIMIT {
            let bytes: Vec<Byte> = (fact.start..fact.end).map(|a| fact.byte_at(a)).collect();
            Rc::make_mut(&mut self.written).insert_run(start, &bytes);
            let _ = image;
            return;
        }
        if self.written.any_in(fact.start, fact.end) {
            Rc::make_mut(&mut self.written).remove_in(fact.start, fact.end);
        }
        self.ranges.retain(|f| !fact.covers(f));
        self.ranges.push(fact);
        if self.ranges.len() > MAX_RANGES {
            self.forget();
        }
    }

    /// Everything from `start` up is unknown (a write of unknown length).
    pub fn clobber_from(&mut self, image: &Image<'_>, start: u64) {
        self.write_range(image, start, u64::MAX - start, RangeContent::Unknown);
    }

    /// Copies `len` bytes (a constant) from `src` to `dst`.
    pub fn copy(&mut self, image: &Image<'_>, dst: u64, src: u64, len: u64) {
        if len <= BYTEWISE_LIMIT {
            let bytes = self.read(image, src, len as usize);
            self.write(dst, &bytes);
            return;
        }
        // A long copy out of one range fact keeps its meaning, shifted.
        let src_end = src.saturating_add(len);
        let untouched = !self.written.any_in(src, src_end);
        let source = self.ranges.iter().rev().find(|f| f.start <= src && src < f.end).copied();
        let content = match source {
            Some(f) if untouched && src_end <= f.end && self.ranges.iter().rev().take_while(|g| **g != f).all(|g| g.end <= src || g.start >= src_end) => {
                let shift = (src - f.start) as u32;
                match f.content {
                    RangeContent::Input { first } => RangeContent::Input { first: first.saturating_add(shift) },
                    RangeContent::Stored { read, first } => RangeContent::Stored { read, first: first.saturating_add(shift) },
                    other => other,
                }
            }
            _ => RangeContent::Unknown,
        };
        self.write_range(image, dst, len, content);
    }

    /// False when the two memories differ in something that costs no walk
    /// to see: paths at one point most often differ in what they wrote.
    fn may_equal(&self, other: &Memory) -> bool {
        self.forgotten == other.forgotten && self.ranges.len() == other.ranges.len() && self.written.len() == other.written.len()
    }

    /// At most [`Memory::distance`], from the range facts and the sizes of
    /// the written maps.
    fn distance_floor(&self, other: &Memory) -> usize {
        let common = self.ranges.iter().zip(&other.ranges).take_while(|(x, y)| x == y).count();
        let ranges = (self.ranges.len() - common + other.ranges.len() - common) * 64;
        if Rc::ptr_eq(&self.written, &other.written) {
            return ranges;
        }
        usize::from(self.forgotten != other.forgotten) * 1024 + ranges + self.written.len().abs_diff(other.written.len())
    }

    /// Roughly how many bytes two memories disagree on, weighted by what
    /// joining them loses ([`Byte::join_cost`]): written bytes that differ,
    /// plus the extent of range facts only one has. Exact when below
    /// `limit`; otherwise some number at least `limit` (the walk stops there:
    /// a caller looking for the nearest pair needs no more).
    fn distance(&self, other: &Memory, limit: usize) -> usize {
        let common = self.ranges.iter().zip(&other.ranges).take_while(|(x, y)| x == y).count();
        let ranges = (self.ranges.len() - common + other.ranges.len() - common) * 64;
        if Rc::ptr_eq(&self.written, &other.written) {
            return ranges;
        }
        let n = usize::from(self.forgotten != other.forgotten) * 1024 + ranges;
        // Each byte only one map has counts, so the sizes alone may settle it.
        if n + self.written.len().abs_diff(other.written.len()) >= limit {
            return limit.max(n);
        }
        n + self.written.differences(&other.written, limit.saturating_sub(n))
    }

    /// Forgets what was written below `address` (dead stack frames): sound,
    /// and keeps the states small.
    pub fn forget_below(&mut self, address: u64) {
        if !self.written.any_in(0, address) {
            return;
        }
        Rc::make_mut(&mut self.written).remove_below(address);
        if !self.forgotten {
            let fact = RangeFact { start: 0, end: address, content: RangeContent::Unknown };
            if !self.ranges.iter().any(|f| f.covers(&fact) && f.content == RangeContent::Unknown) {
                self.ranges.retain(|f| !fact.covers(f));
                self.ranges.push(fact);
            }
        }
    }

    /// Forgets everything: the result of a write the analysis cannot place.
    pub fn forget(&mut self) {
        self.written = Rc::default();
        self.ranges.clear();
        self.forgotten = true;
    }

    pub fn join(&self, other: &Memory, image: &Image<'_>) -> Memory {
        if self == other {
            return self.clone();
        }
        let common = self.ranges.iter().zip(&other.ranges).take_while(|(a, b)| a == b).count();
        let mut ranges: Vec<RangeFact> = self.ranges[..common].to_vec();
        // Ranges only one side has: unknown there, unless an unknown range
        // already on top says so.
        let mut extra: Vec<(u64, u64)> = self.ranges[common..]
            .iter()
            .chain(&other.ranges[common..])
            .map(|f| (f.start, f.end))
            .collect();
        extra.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in extra {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        let top_unknown: Vec<RangeFact> =
            ranges.iter().rev().take_while(|f| f.content == RangeContent::Unknown).copied().collect();
        let forgotten = self.forgotten || other.forgotten;
        for (start, end) in merged {
            let fact = RangeFact { start, end, content: RangeContent::Unknown };
            if top_unknown.iter().any(|t| t.covers(&fact)) {
                continue;
            }
            if forgotten && ranges.is_empty() {
                // Unknown over a forgotten image with nothing below says nothing.
                continue;
            }
            ranges.push(fact);
        }
        let mut joined = Memory { written: Rc::default(), ranges, forgotten };
        if Rc::ptr_eq(&self.written, &other.written) && joined.ranges == self.ranges && forgotten == self.forgotten {
            joined.written = self.written.clone();
        } else {
            // Both maps in address order at once; each side's own byte where
            // it has one.
            let mut written = ByteMap::default();
            let (mut mine, mut theirs) = (self.written.iter().peekable(), other.written.iter().peekable());
            let (mut my_unwritten, mut their_unwritten) = (self.unwritten_cursor(), other.unwritten_cursor());
            let mut joined_unwritten = joined.unwritten_cursor();
            loop {
                let (a, x, y) = match (mine.peek().copied(), theirs.peek().copied()) {
                    (None, None) => break,
                    (Some((a, x)), Some((b, y))) if a == b => {
                        mine.next();
                        theirs.next();
                        (a, x, y)
                    }
                    (Some((a, x)), Some((b, _))) if a < b => {
                        mine.next();
                        (a, x, their_unwritten.byte(image, a))
                    }
                    (Some((a, x)), None) => {
                        mine.next();
                        (a, x, their_unwritten.byte(image, a))
                    }
                    (_, Some((b, y))) => {
                        theirs.next();
                        (b, my_unwritten.byte(image, b), y)
                    }
                };
                let b = x.join(y);
                if joined_unwritten.byte(image, a) != b {
                    written.push(a, b);
                }
            }
            joined.written = Rc::new(written);
        }
        if joined.ranges.len() > MAX_RANGES {
            joined.forget();
        }
        joined
    }
}

/// Answers what range facts and the image say of ascending addresses without
/// scanning every range fact for each: it keeps the newest fact at the last
/// address asked and how far up that fact stays the answer. A join asks
/// this for every address either side wrote, and scanning up to
/// [`MAX_RANGES`] facts each time was most of its cost.
struct UnwrittenCursor<'m> {
    memory: &'m Memory,
    /// The answer is `fact`'s (or the image's, if none) for `from..until`.
    from: u64,
    until: u64,
    fact: Option<RangeFact>,
}

impl UnwrittenCursor<'_> {
    fn byte(&mut self, image: &Image<'_>, address: u64) -> Byte {
        if !(self.from <= address && address < self.until) {
            let ranges = &self.memory.ranges;
            let newest = ranges.iter().rposition(|f| f.start <= address && address < f.end);
            // A newer fact can only take over where it starts, above `address`
            // (one covering `address` would be the newest).
            let newer = newest.map_or(&ranges[..], |i| &ranges[i + 1..]);
            let ends = newest.map_or(u64::MAX, |i| ranges[i].end);
            self.until = newer.iter().filter(|f| f.start > address).map(|f| f.start).fold(ends, u64::min);
            self.from = address;
            self.fact = newest.map(|i| ranges[i]);
        }
        match self.fact {
            Some(fact) => fact.byte_at(address),
            None => self.memory.below_ranges(image, address),
        }
    }
}

/// One inlined function's operand stack and locals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Frame {
    pub stack: Vec<Value>,
    pub locals: Locals,
}

impl Frame {
    fn join(&self, other: &Frame) -> Frame {
        Frame { stack: join_values(&self.stack, &other.stack), locals: self.locals.join(&other.locals) }
    }
}

fn join_values(a: &[Value], b: &[Value]) -> Vec<Value> {
    if a.len() != b.len() {
        // Cannot happen in validated code; stay sound anyway.
        return vec![Value::Top; a.len().max(b.len())];
    }
    a.iter().zip(b).map(|(x, y)| x.join(*y)).collect()
}

/// The machine state at one program point of one path: the frames of the
/// inlined calls in progress (innermost last), globals, memory.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// Shared with the other states of a split until written (only the
    /// innermost frame ever is).
    pub frames: Vec<Rc<Frame>>,
    pub globals: Vec<Value>,
    pub memory: Memory,
    /// Current memory size in pages.
    pub pages: Value,
    /// Outcomes of comparisons this path branched on: (flag id, value).
    pub facts: Vec<(u32, bool)>,
    /// When this state is the join of paths that decided the predictor's
    /// comparisons differently: each such path's decidable facts at the
    /// join (one of them holds, together with `facts`). Empty: the state is
    /// one path, or the alternatives were too many and only `facts` stay.
    pub alternatives: Vec<Vec<(u32, bool)>>,
}

/// Field by field, memory last: states at one point mostly differ in a
/// value or a branch outcome, which are cheap to compare, and walking two
/// equal memories is not.
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        self.facts == other.facts && self.alternatives == other.alternatives && self.equal_but_facts(other)
    }
}

impl Eq for State {}

impl State {
    /// Whether the two states hold the same values, and may differ only in
    /// the outcomes they branched on.
    fn equal_but_facts(&self, other: &State) -> bool {
        self.memory.may_equal(&other.memory)
            && self.pages == other.pages
            && self.globals == other.globals
            && self.frames == other.frames
            && self.memory == other.memory
    }

    pub fn join(&self, other: &State, image: &Image<'_>) -> State {
        let frames = if self.frames.len() == other.frames.len() {
            self.frames
                .iter()
                .zip(&other.frames)
                .map(|(a, b)| if Rc::ptr_eq(a, b) || a == b { a.clone() } else { Rc::new(a.join(b)) })
                .collect()
        } else {
            // Cannot happen: states meet only at the same program point.
            self.frames
                .iter()
                .map(|f| Rc::new(Frame { stack: vec![Value::Top; f.stack.len()], locals: Locals::filled(Value::Top, f.locals.len()) }))
                .collect()
        };
        State {
            frames,
            globals: join_values(&self.globals, &other.globals),
            memory: self.memory.join(&other.memory, image),
            pages: self.pages.join(other.pages),
            facts: self.facts.iter().filter(|f| other.facts.contains(f)).copied().collect(),
            alternatives: self.joined_alternatives(other),
        }
    }

    /// The outcomes this path knows of comparisons the predictor decides.
    pub fn decided_facts(&self) -> impl Iterator<Item = &(u32, bool)> + Clone {
        self.facts.iter().filter(|(id, _)| is_decidable(*id))
    }

    /// The conjunctions of decidable facts one of which holds on every path
    /// this state stands for (one, empty, when some path decided nothing).
    pub fn guard_paths(&self) -> Vec<Vec<(u32, bool)>> {
        let decided: Vec<(u32, bool)> = self.decided_facts().copied().collect();
        if self.alternatives.is_empty() {
            return vec![decided];
        }
        self.alternatives
            .iter()
            .map(|alternative| {
                let mut path = alternative.clone();
                path.extend(decided.iter().filter(|f| !alternative.contains(f)));
                path
            })
            .collect()
    }

    /// The alternatives of the join of `self` and `other`: both states'
    /// paths, unless one decided nothing or there are too many.
    fn joined_alternatives(&self, other: &State) -> Vec<Vec<(u32, bool)>> {
        if self.alternatives.is_empty() && other.alternatives.is_empty() {
            // Both one path: the same decisions stay facts of the join, and
            // a path that decided nothing makes the join decide nothing.
            let (mine, theirs) = (self.decided_facts(), other.decided_facts());
            if mine.clone().eq(theirs.clone()) || mine.clone().next().is_none() || theirs.clone().next().is_none() {
                return Vec::new();
            }
        }
        let mut paths = self.guard_paths();
        for path in other.guard_paths() {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        if !bound_paths(&mut paths) {
            return Vec::new();
        }
        paths
    }

    /// Merges `other`, which holds the same values, into `self`.
    fn absorb(&mut self, other: &State) {
        if self.facts == other.facts && self.alternatives == other.alternatives {
            return;
        }
        self.alternatives = self.joined_alternatives(other);
        self.facts.retain(|f| other.facts.contains(f));
    }

    /// At most [`State::distance`], from what costs no walk: the branch
    /// outcomes, globals, and what differs in memory by its size.
    fn distance_floor(&self, other: &State) -> usize {
        let shared = self.facts.iter().zip(&other.facts).take_while(|(a, b)| a == b).count();
        let mut n = self.facts.len() + other.facts.len() - 2 * shared;
        n += self.globals.iter().zip(&other.globals).filter(|(x, y)| x != y).count() + self.globals.len().abs_diff(other.globals.len());
        if self.alternatives != other.alternatives {
            n += GUARD_SPLIT_COST;
        }
        // (Frames count nothing: states at one point hold frames of the same shapes.)
        n + self.memory.distance_floor(&other.memory)
    }

    /// How many values (and branch outcomes) two states disagree on; exact
    /// when below `limit` (see `Memory::distance`).
    fn distance(&self, other: &State, limit: usize) -> usize {
        let values = |a: &[Value], b: &[Value]| a.iter().zip(b).filter(|(x, y)| x != y).count() + a.len().abs_diff(b.len());
        let shared = self.facts.iter().zip(&other.facts).take_while(|(a, b)| a == b).count();
        let mut n = self.facts.len() + other.facts.len() - 2 * shared + values(&self.globals, &other.globals);
        if self.alternatives != other.alternatives {
            n += GUARD_SPLIT_COST;
        }
        // Innermost frames first: outer ones are mostly shared.
        for (a, b) in self.frames.iter().zip(&other.frames).rev() {
            if n >= limit {
                return n;
            }
            if !Rc::ptr_eq(a, b) {
                n += values(&a.stack, &b.stack);
                n += a.locals.differences(&b.locals, limit.saturating_sub(n));
            }
        }
        if n >= limit {
            return n;
        }
        n + self.memory.distance(&other.memory, limit - n)
    }

    /// Whether `v` is known to be non-zero on this path.
    pub fn truth(&self, v: &Value) -> Option<bool> {
        match v {
            Value::Const(c) => Some(*c != 0),
            Value::Bytes { bytes, len } => {
                bytes[..*len as usize].iter().any(|b| matches!(b, Byte::Const(c) if *c != 0)).then_some(true)
            }
            Value::Flag { id, negated } => self.facts.iter().find(|(f, _)| f == id).map(|(_, v)| v ^ negated),
            Value::Set { values, len } => {
                let values = &values[..*len as usize];
                if values.iter().all(|v| *v != 0) {
                    Some(true)
                } else if values.iter().all(|v| *v == 0) {
                    Some(false)
                } else {
                    None
                }
            }
            Value::Top => None,
        }
    }

    /// `v`, or the constant it is on this path when it is a decided flag.
    pub fn decided(&self, v: Value) -> Value {
        match v {
            Value::Flag { .. } => self.truth(&v).map_or(v, |t| Value::Const(u64::from(t))),
            _ => v,
        }
    }

    /// Records that `v` is `outcome` on this path (when `v` is a flag).
    pub fn assume(&mut self, v: &Value, outcome: bool) {
        if let Value::Flag { id, negated } = v {
            if self.facts.len() >= MAX_FACTS {
                self.forget_dead_facts();
            }
            if self.facts.len() >= MAX_FACTS {
                // The oldest fact the predictor cannot decide goes first.
                let oldest = self.facts.iter().position(|(id, _)| !is_decidable(*id)).unwrap_or(0);
                self.facts.remove(oldest);
            }
            let raw = outcome ^ negated;
            self.facts.push((*id, raw));
            // The innermost frame's copies of the flag are constants now:
            // paths that decided the same way by different comparisons
            // then hold equal values and go on as one.
            let id = *id;
            let holds = |v: &Value| matches!(v, Value::Flag { id: i, .. } if *i == id);
            if self.frames.last().is_some_and(|f| f.stack.iter().chain(f.locals.iter()).any(holds)) {
                let decided = |v: &Value| match *v {
                    Value::Flag { id: i, negated: n } if i == id => Some(Value::Const(u64::from(raw ^ n))),
                    _ => None,
                };
                let top = self.top();
                for v in &mut top.stack {
                    if let Some(c) = decided(v) {
                        *v = c;
                    }
                }
                top.locals.replace(decided);
            }
        }
    }

    /// Drops facts about flags no value or byte holds any more: nothing can
    /// ask about them again (flags are only ever created fresh). Paths that
    /// differ only in such facts then become equal.
    /// Facts about comparisons the predictor can decide stay: they become
    /// guards of later accesses.
    pub fn forget_dead_facts(&mut self) {
        if self.facts.is_empty() {
            return;
        }
        let mut live = std::collections::BTreeSet::new();
        self.for_each_flag(|id| {
            live.insert(id);
        });
        self.facts.retain(|(id, _)| live.contains(id) || is_decidable(*id));
    }

    /// Calls `f` with the id of every flag a value of this state holds
    /// (repeats included): the outcomes a later branch may still test.
    fn for_each_flag(&self, mut f: impl FnMut(u32)) {
        let mut note = |v: &Value| match v {
            Value::Flag { id, .. } => f(*id),
            Value::Bytes { bytes, .. } => {
                for b in bytes {
                    if let Byte::Flag { id, .. } = b {
                        f(*id);
                    }
                }
            }
            _ => {}
        };
        for frame in &self.frames {
            frame.stack.iter().chain(frame.locals.iter()).for_each(&mut note);
        }
        self.globals.iter().for_each(&mut note);
        note(&self.pages);
        for (_, b) in self.memory.written.iter() {
            if let Byte::Flag { id, .. } = b {
                note(&Value::Flag { id, negated: false });
            }
        }
    }

    /// Whether `self` and `other`, which hold the same values, differ only
    /// in outcomes the predictor evaluates (kept as guards) and in outcomes
    /// of flags that no value holds any more: no later branch can test
    /// those (a flag's id is never made again), so the paths may go on as one.
    fn differ_in_guards_or_dead_outcomes(&self, other: &State) -> bool {
        let shared = self.facts.iter().zip(&other.facts).take_while(|(x, y)| x == y).count();
        let (a, b) = (&self.facts[shared..], &other.facts[shared..]);
        let differing: Vec<u32> = a
            .iter()
            .filter(|f| !b.contains(f))
            .chain(b.iter().filter(|f| !a.contains(f)))
            .map(|(id, _)| *id)
            .filter(|id| !is_decidable(*id))
            .collect();
        let mut live = false;
        if !differing.is_empty() {
            self.for_each_flag(|id| live |= differing.contains(&id));
        }
        !live
    }

    /// The innermost frame. Every state has one while code runs.
    pub fn top(&mut self) -> &mut Frame {
        if self.frames.is_empty() {
            self.frames.push(Rc::default());
        }
        let last = self.frames.len() - 1;
        Rc::make_mut(&mut self.frames[last])
    }

    /// Forgets everything but the shape: a state that covers every state.
    pub fn widen_to_top(&mut self, mutable_globals: &[bool]) {
        for frame in &mut self.frames {
            let frame = Rc::make_mut(frame);
            frame.stack.iter_mut().for_each(|v| *v = Value::Top);
            frame.locals = Locals::filled(Value::Top, frame.locals.len());
        }
        for (g, mutable) in self.globals.iter_mut().zip(mutable_globals) {
            if *mutable {
                *g = Value::Top;
            }
        }
        self.memory.forget();
        self.pages = Value::Top;
        // Only the facts common to all paths stay: a widened loop state
        // must stop changing.
        self.alternatives.clear();
    }
}

/// Branch outcomes a path remembers (the oldest are forgotten first).
const MAX_FACTS: usize = 96;

/// Set in the id of a flag the predictor can evaluate (its operands are
/// nameable bytes), so that a fact about it can be told apart without the
/// definitions at hand.
pub(crate) const DECIDABLE_FLAG: u32 = 1 << 31;

pub(crate) fn is_decidable(id: u32) -> bool {
    id & DECIDABLE_FLAG != 0
}

/// Most alternative paths a state, or an access's guard, keeps apart.
pub(crate) const MAX_GUARD_PATHS: usize = 8;

/// Brings `paths` (a disjunction of conjunctions) within
/// [`MAX_GUARD_PATHS`] by weakening: while there are too many, every path
/// forgets its oldest outcome and equal paths become one. The newest
/// outcomes are the ones that tell later accesses apart (the AMM's paths
/// differ first in how the input failed to match one token, then in which
/// token it matched). False when a path ends up empty: the disjunction holds
/// always.
pub(crate) fn bound_paths(paths: &mut Vec<Vec<(u32, bool)>>) -> bool {
    drop_subsumed(paths);
    while paths.len() > MAX_GUARD_PATHS {
        let mut weaker: Vec<Vec<(u32, bool)>> = Vec::with_capacity(paths.len());
        for path in paths.drain(..) {
            let path = path.get(1..).unwrap_or_default().to_vec();
            if !weaker.contains(&path) {
                weaker.push(path);
            }
        }
        *paths = weaker;
        drop_subsumed(paths);
    }
    !paths.iter().any(Vec::is_empty)
}

/// Drops every path that asks for all another path asks for and more: the
/// disjunction holds on exactly the same calls without it.
fn drop_subsumed(paths: &mut Vec<Vec<(u32, bool)>>) {
    let mut i = 0;
    while i < paths.len() {
        let subsumed = paths
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.iter().all(|f| paths[i].contains(f)) && (other.len() < paths[i].len() || j < i));
        if subsumed {
            paths.remove(i);
        } else {
            i += 1;
        }
    }
}

/// What joining two states whose accesses would have different guards
/// costs, against one per differing value: more than any difference in
/// values, so that paths which decided the predictor's comparisons
/// differently (the direction of an AMM swap) are joined last and the
/// accesses after them keep apart.
const GUARD_SPLIT_COST: usize = 1 << 10;

/// Whether the outcomes two paths know differ only in comparisons the
/// predictor decides: those matter for the guards of later accesses, which
/// a join keeps as alternatives. A differing outcome of another comparison
/// may still decide a later branch on the same flag, so those paths stay apart.
fn differ_in_guards_only(a: &[(u32, bool)], b: &[(u32, bool)]) -> bool {
    // Paths share their older outcomes: compare only what follows.
    let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[shared..], &b[shared..]);
    let undecidable = |facts: &[(u32, bool)]| facts.iter().filter(|(id, _)| !is_decidable(*id)).count();
    // Facts are distinct: different counts already tell the sets apart.
    undecidable(a) == undecidable(b) && a.iter().all(|f| is_decidable(f.0) || b.contains(f))
}

/// Most states kept apart at one program point (the rest are joined). Paths
/// stay apart long enough for the error path of a decoder to die at its
/// caller's check instead of blurring the success path.
pub(crate) const MAX_DISJUNCTS: usize = 8;

/// Adds `state` to a bounded disjunction of states. When full, the new
/// state is joined with the existing state most like it: paths that differ
/// in a carry bit go together before paths that chose different slots.
pub(crate) fn add_state(states: &mut Vec<State>, state: State, image: &Image<'_>) {
    add_remembering(states, None, state, image);
}

/// The states that reach one program point, added one by one, with what
/// is known of their distances: where many paths arrive (a block's end, the
/// merge of an `if`), each join measures mostly pairs the one before it
/// measured already.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    states: Vec<State>,
    distances: Distances,
}

impl Paths {
    pub fn new(states: Vec<State>) -> Paths {
        let n = states.len();
        Paths { states, distances: Distances::new(n) }
    }

    pub fn add(&mut self, state: State, image: &Image<'_>) {
        add_remembering(&mut self.states, Some(&mut self.distances), state, image);
    }

    pub fn into_states(self) -> Vec<State> {
        self.states
    }
}

/// What is known of the distances of a disjunction's states, by position;
/// kept in step with the states by [`add_remembering`]. Each entry is a
/// lower bound of a pair's distance, shifted left by one, with the low bit
/// set when it is exact; [`Distances::UNKNOWN`] when nothing is known.
#[derive(Debug, Default)]
struct Distances {
    /// Row-major, `side` by `side`; positions from `len` up are unused.
    known: Vec<u64>,
    side: usize,
    len: usize,
}

impl Distances {
    const UNKNOWN: u64 = u64::MAX;

    fn new(len: usize) -> Distances {
        let side = len.max(MAX_DISJUNCTS + 1);
        Distances { known: vec![Self::UNKNOWN; side * side], side, len }
    }

    /// A lower bound of the distance of states `i` and `j`, and whether it is exact.
    fn get(&self, i: usize, j: usize) -> Option<(usize, bool)> {
        let k = self.known[i * self.side + j];
        (k != Self::UNKNOWN).then(|| ((k >> 1) as usize, k & 1 == 1))
    }

    fn set(&mut self, i: usize, j: usize, bound: usize, exact: bool) {
        // Distances are far below 2^62; a larger one is only less known.
        let kept = (bound as u64).min(1 << 62);
        let k = kept << 1 | u64::from(exact && kept == bound as u64);
        self.known[i * self.side + j] = k;
        self.known[j * self.side + i] = k;
    }

    /// A state was pushed.
    fn push(&mut self) {
        if self.len == self.side {
            let mut grown = Distances::new(self.side + 1);
            for i in 0..self.len {
                let (from, to) = (i * self.side, i * grown.side);
                grown.known[to..to + self.len].copy_from_slice(&self.known[from..from + self.len]);
            }
            *self = Distances { len: self.len, ..grown };
        }
        self.len += 1;
        self.forget(self.len - 1);
    }

    /// Like `Vec::swap_remove` on the states.
    fn swap_remove(&mut self, k: usize) {
        let last = self.len - 1;
        if k != last {
            for i in 0..self.len {
                self.known[k * self.side + i] = self.known[last * self.side + i];
                self.known[i * self.side + k] = self.known[i * self.side + last];
            }
            self.known[k * self.side + k] = Self::UNKNOWN;
        }
        self.len = last;
    }

    /// The state at `k` changed.
    fn forget(&mut self, k: usize) {
        for i in 0..self.len {
            self.known[k * self.side + i] = Self::UNKNOWN;
            self.known[i * self.side + k] = Self::UNKNOWN;
        }
    }
}

fn add_remembering(states: &mut Vec<State>, mut known: Option<&mut Distances>, state: State, image: &Image<'_>) {
    // Paths that differ only in how they got here go on as one: they can
    // no longer differ in anything but the guards of later accesses, and
    // keeping them apart would crowd out paths that differ in values.
    // Else the two sides of a branch whose outcome no value holds any more
    // (the comparison was consumed by the branch): one path again.
    // (Values first: they tell most paths apart, and cost less to compare
    // than long lists of outcomes.)
    let equal: Vec<usize> = (0..states.len()).filter(|&k| states[k].equal_but_facts(&state)).collect();
    let same = equal.iter().copied().find(|&k| differ_in_guards_only(&states[k].facts, &state.facts)).or_else(|| {
        equal.iter().copied().find(|&k| states[k].facts != state.facts && states[k].differ_in_guards_or_dead_outcomes(&state))
    });
    if let Some(k) = same {
        let (facts, alternatives) = (states[k].facts.len(), states[k].alternatives.clone());
        states[k].absorb(&state);
        // The outcomes a state knows count in its distances. (Absorbing
        // only ever drops facts.)
        if states[k].facts.len() != facts || states[k].alternatives != alternatives {
            if let Some(known) = known.as_deref_mut() {
                known.forget(k);
            }
        }
        return;
    }
    states.push(state);
    if let Some(known) = known.as_deref_mut() {
        known.push();
    }
    if states.len() <= image.max_disjuncts {
        return;
    }
    // Join the two most alike (an outlier such as a path whose memory is
    // forgotten stays apart, and usually dies at its revert): the first
    // pair, in index order, at the least distance. Each pair has a lower
    // bound: what an earlier join here measured, else a floor that costs
    // no value comparison. Pairs are measured lowest bound first, each only
    // up to the best distance so far, and the search ends at a bound above
    // it: most pairs are told apart by their bounds alone.
    let n = states.len();
    let bound = |i: usize, j: usize| -> (usize, bool) {
        known.as_deref().and_then(|k| k.get(i, j)).unwrap_or_else(|| (states[i].distance_floor(&states[j]), false))
    };
    // One integer per pair, sorted by (bound, i, j): sorting tuples took
    // a twentieth of the analysis.
    let mut pairs: Vec<u128> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| {
            let (b, exact) = bound(i, j);
            (b as u128) << 64 | (i as u128) << 32 | (j as u128) << 1 | u128::from(exact)
        })
        .collect();
    pairs.sort_unstable();
    let mut best = (usize::MAX, 0, 1);
    for pair in pairs {
        let (bound, i, j, exact) = ((pair >> 64) as usize, (pair >> 32) as u32 as usize, ((pair >> 1) & 0x7fff_ffff) as usize, pair & 1 == 1);
        if bound > best.0 {
            break;
        }
        let d = if exact {
            bound
        } else {
            // Exact when at most the best: ties are found too. Either way a
            // lower bound for the next join here.
            let limit = best.0.saturating_add(1);
            let d = states[i].distance(&states[j], limit);
            if let Some(known) = known.as_deref_mut() {
                known.set(i, j, d, d < limit);
            }
            d
        };
        if d < best.0 || (d == best.0 && (i, j) < (best.1, best.2)) {
            best = (d, i, j);
        }
    }
    let (_, i, j) = best;
    let b = states.swap_remove(j);
    let a = states.swap_remove(i);
    if let Some(known) = known.as_deref_mut() {
        known.swap_remove(j);
        known.swap_remove(i);
    }
    let joined = a.join(&b, image);
    add_remembering(states, known, joined, image);
}

/// The join of all states, if any.
pub(crate) fn join_all(states: &[State], image: &Image<'_>) -> Option<State> {
    let (first, rest) = states.split_first()?;
    Some(rest.iter().fold(first.clone(), |acc, s| acc.join(s, image)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: Image<'static> = Image { base: 100, bytes: &[1, 2, 3], max_disjuncts: MAX_DISJUNCTS };

    #[test]
    fn lookup_order_is_bytes_then_newest_range_then_image() {
        let mut m = Memory::default();
        assert_eq!(m.byte(&IMAGE, 101), Byte::Const(2));
        assert_eq!(m.byte(&IMAGE, 5), Byte::Const(0));
        m.write_range(&IMAGE, 0, 4096, RangeContent::Input { first: 0 });
        assert_eq!(m.byte(&IMAGE, 7), Byte::Input(7));
        m.write(7, &[Byte::Caller(3)]);
        assert_eq!(m.byte(&IMAGE, 7), Byte::Caller(3));
        m.write_range(&IMAGE, 0, 1024, RangeContent::Stored { read: 2, first: 0 });
        assert_eq!(m.byte(&IMAGE, 7), Byte::Stored { read: 2, offset: 7 }, "a newer range hides older bytes");
        assert_eq!(m.byte(&IMAGE, 2000), Byte::Input(2000));
    }

    #[test]
    fn the_unwritten_cursor_answers_as_the_memory_does() {
        // Overlapping range facts (longer than single-byte writes), newer
        // ones inside, across and after older ones, over the image.
        let mut m = Memory::default();
        m.write_range(&IMAGE, 90, 2000, RangeContent::Input { first: 0 });
        m.write_range(&IMAGE, 1000, 600, RangeContent::Fill(7));
        m.write_range(&IMAGE, 1500, 1000, RangeContent::Stored { read: 1, first: 3 });
        m.write_range(&IMAGE, 3000, 600, RangeContent::Unknown);
        assert_eq!(m.ranges.len(), 4);
        for step in [1, 7, 64, 999] {
            let mut cursor = m.unwritten_cursor();
            for a in (0..4000).step_by(step) {
                assert_eq!(cursor.byte(&IMAGE, a), m.unwritten_byte(&IMAGE, a), "address {a}, step {step}");
            }
        }
        m.forget();
        assert_eq!(m.unwritten_cursor().byte(&IMAGE, 101), Byte::Unknown);
    }

    #[test]
    fn join_keeps_agreement_and_forgets_disagreement() {
        let mut a = Memory::default();
        a.write(10, &[Byte::Caller(0), Byte::Const(9), Byte::Input(3)]);
        let mut b = a.clone();
        b.write(11, &[Byte::Const(8), Byte::Caller(1)]);
        b.write_range(&IMAGE, 1000, 4096, RangeContent::Input { first: 0 });
        let j = a.join(&b, &IMAGE);
        assert_eq!(j.byte(&IMAGE, 10), Byte::Caller(0));
        assert_eq!(j.byte(&IMAGE, 11), Byte::Choice { values: [8, 9, 0, 0], len: 2 }, "different constants: one of them");
        assert_eq!(j.byte(&IMAGE, 12), Byte::Unknown, "different sources: unknown");
        assert_eq!(j.byte(&IMAGE, 1500), Byte::Unknown, "one side's range is unknown after the join");
        assert_eq!(j.byte(&IMAGE, 100), Byte::Const(1));
        assert_eq!(j.join(&b, &IMAGE), j, "joining again changes nothing");
    }

    #[test]
    fn long_copy_out_of_a_range_keeps_its_meaning() {
        let mut m = Memory::default();
        m.write_range(&IMAGE, 1 << 16, 16384, RangeContent::Input { first: 0 });
        m.copy(&IMAGE, 1 << 20, (1 << 16) + 4, 4096);
        assert_eq!(m.byte(&IMAGE, (1 << 20) + 10), Byte::Input(14));
        m.copy(&IMAGE, 50, (1 << 16) + 32, 2);
        assert_eq!(m.read(&IMAGE, 50, 2), vec![Byte::Input(32), Byte::Input(33)]);
    }

    const A: u32 = DECIDABLE_FLAG | 1;
    const B: u32 = DECIDABLE_FLAG | 2;
    const C: u32 = DECIDABLE_FLAG | 3;
    /// A flag the predictor cannot evaluate.
    const U: u32 = 4;

    fn path_state(facts: &[(u32, bool)], local: Value) -> State {
        State {
            frames: vec![Rc::new(Frame { stack: Vec::new(), locals: Locals::new([local]) })],
            globals: Vec::new(),
            memory: Memory::default(),
            pages: Value::Const(1),
            facts: facts.to_vec(),
            alternatives: Vec::new(),
        }
    }

    #[test]
    fn paths_that_differ_in_an_address_are_joined_last() {
        // Eight paths that computed different amounts (48 constant bytes
        // each) and call a stored token address, and a ninth with the first
        // one's amount whose callee is the zero address (the token was not
        // there): it forces a join, and it is the most like the first path
        // byte for byte.
        let token: Vec<Byte> = (0..32).map(|offset| Byte::Stored { read: 0, offset }).collect();
        let mut states = Vec::new();
        for path in 0..9u8 {
            let mut st = path_state(&[], Value::Const(0));
            let (callee, amount) = if path == 8 { (vec![Byte::Const(0); 32], 0) } else { (token.clone(), path) };
            st.memory.write(0x100, &callee);
            st.memory.write(0x200, &[Byte::Const(amount); 48]);
            add_state(&mut states, st, &IMAGE);
        }
        assert_eq!(states.len(), MAX_DISJUNCTS);
        let callees: Vec<Vec<Byte>> = states.iter().map(|s| s.memory.read(&IMAGE, 0x100, 32)).collect();
        assert!(callees.contains(&vec![Byte::Const(0); 32]), "the zero-address path stays apart");
        assert!(callees.iter().all(|c| !c.contains(&Byte::Unknown)), "no join lost the token address: {callees:?}");
    }

    #[test]
    fn paths_remember_distances_and_join_as_without_them() {
        // Many paths arrive at one point: some equal in value (absorbed),
        // most not (joined when more than eight). What the remembered
        // distances save must not change a single join.
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        let (mut plain, mut paths) = (Vec::new(), Paths::default());
        for arrival in 0..400 {
            let facts: Vec<(u32, bool)> = (0..next(3)).map(|_| (DECIDABLE_FLAG | next(4) as u32, next(2) == 1)).collect();
            let mut st = path_state(&facts, Value::Const(next(3)));
            Rc::make_mut(&mut st.frames[0]).locals = Locals::new((0..20).map(|_| Value::Const(next(2))));
            for _ in 0..next(6) {
                st.memory.write(0x100 + next(96), &[Byte::Const(next(3) as u8)]);
            }
            add_state(&mut plain, st.clone(), &IMAGE);
            paths.add(st, &IMAGE);
            assert!(paths.states == plain, "after arrival {arrival}, the states differ from those added without distances");
            assert_eq!(paths.distances.len, plain.len());
        }
        assert_eq!(plain.len(), MAX_DISJUNCTS, "the test reaches the joins");
    }

    #[test]
    fn paths_that_hold_the_same_values_go_on_as_one_with_both_guards() {
        let mut states = Vec::new();
        add_state(&mut states, path_state(&[(A, true)], Value::Const(7)), &IMAGE);
        add_state(&mut states, path_state(&[(A, false), (B, true)], Value::Const(7)), &IMAGE);
        assert_eq!(states.len(), 1, "equal values: one state");
        assert_eq!(states[0].guard_paths(), vec![vec![(A, true)], vec![(A, false), (B, true)]]);
        assert!(states[0].facts.is_empty(), "no outcome is known on both paths");
        // A third path that decided nothing: the accesses after it are unguarded.
        add_state(&mut states, path_state(&[], Value::Const(7)), &IMAGE);
        assert_eq!(states[0].guard_paths(), vec![Vec::<(u32, bool)>::new()]);
    }

    #[test]
    fn paths_that_differ_in_an_outcome_the_predictor_cannot_see_stay_apart() {
        // A local still holds U (see the next test for a dead outcome).
        let held = Value::Flag { id: U, negated: true };
        let mut states = Vec::new();
        add_state(&mut states, path_state(&[(U, true)], held), &IMAGE);
        add_state(&mut states, path_state(&[(U, false)], held), &IMAGE);
        assert_eq!(states.len(), 2, "a later branch on U decides differently on each");
        assert!(differ_in_guards_only(&[(U, true), (A, true)], &[(U, true), (B, false)]));
        assert!(!differ_in_guards_only(&[(U, true), (A, true)], &[(B, false)]));
    }

    #[test]
    fn paths_that_differ_only_in_a_dead_outcome_go_on_as_one() {
        // The two sides of a branch on flag U, which no value holds: one path.
        let mut states = Vec::new();
        add_state(&mut states, path_state(&[(A, true), (U, true)], Value::Const(7)), &IMAGE);
        add_state(&mut states, path_state(&[(A, true), (U, false)], Value::Const(7)), &IMAGE);
        assert_eq!(states.len(), 1, "the outcome of U can no longer be tested");
        assert_eq!(states[0].facts, vec![(A, true)], "what both paths know stays");
        // Held in memory, U is live.
        let mut states = Vec::new();
        for outcome in [true, false] {
            let mut st = path_state(&[(U, outcome)], Value::Const(7));
            st.memory.write(0x40, &[Byte::Flag { id: U, negated: false }]);
            add_state(&mut states, st, &IMAGE);
        }
        assert_eq!(states.len(), 2, "a byte in memory still holds U");
    }

    #[test]
    fn a_join_keeps_each_sides_guard_as_an_alternative() {
        let a = path_state(&[(A, true), (U, true)], Value::Const(1));
        let b = path_state(&[(A, false), (B, true)], Value::Const(2));
        let j = a.join(&b, &IMAGE);
        assert_eq!(j.guard_paths(), vec![vec![(A, true)], vec![(A, false), (B, true)]]);
        let mut later = j.clone();
        later.assume(&Value::Flag { id: C, negated: false }, true);
        assert_eq!(later.guard_paths(), vec![vec![(A, true), (C, true)], vec![(A, false), (B, true), (C, true)]], "what is decided after the join holds on every path");
        assert_eq!(j.join(&j, &IMAGE), j, "joining again changes nothing");
    }

    #[test]
    fn too_many_paths_are_weakened_oldest_outcome_first() {
        // A path that asks for more than another is redundant.
        let mut paths = vec![vec![(A, true), (B, true)], vec![(B, true)]];
        assert!(bound_paths(&mut paths));
        assert_eq!(paths, vec![vec![(B, true)]]);
        // Ten ways of failing to match one token, then matching the other:
        // forgetting the oldest outcome keeps the match.
        let mut paths: Vec<Vec<(u32, bool)>> = (0..10).map(|i| vec![(DECIDABLE_FLAG | (10 + i), true), (C, true)]).collect();
        assert!(bound_paths(&mut paths));
        assert_eq!(paths, vec![vec![(C, true)]]);
        // A path weakened to nothing: the disjunction always holds.
        let mut paths: Vec<Vec<(u32, bool)>> = (0..10).map(|i| vec![(DECIDABLE_FLAG | (10 + i), true)]).collect();
        assert!(!bound_paths(&mut paths));
    }

    #[test]
    fn a_decided_flag_is_a_constant_on_its_path() {
        let mut s = path_state(&[], Value::Flag { id: A, negated: true });
        s.assume(&Value::Flag { id: A, negated: false }, true);
        assert_eq!(s.frames[0].locals.get(0), Some(Value::Const(0)), "the negated flag is false where the flag holds");
        assert_eq!(s.decided(Value::Flag { id: A, negated: false }), Value::Const(1));
        assert_eq!(s.decided(Value::Flag { id: B, negated: false }), Value::Flag { id: B, negated: false });
    }

    #[test]
    fn values_normalise() {
        assert_eq!(Value::from_bytes(&[Byte::Const(1), Byte::Const(2)]), Value::Const(0x201));
        assert_eq!(Value::from_bytes(&[Byte::Unknown; 4]), Value::Top);
        let v = Value::from_bytes(&[Byte::Input(0), Byte::Const(0)]);
        assert_eq!(v.bytes(2)[..2], [Byte::Input(0), Byte::Const(0)]);
        let set = Value::Const(1).join(Value::Const(2));
        assert_eq!(set.constants(), Some(&[1u64, 2][..]));
        assert_eq!(set.join(Value::Const(3)).join(Value::Const(4)).constants(), Some(&[1u64, 2, 3, 4][..]));
        assert_eq!(set.join(Value::Const(3)).join(Value::Const(4)).join(Value::Const(5)), Value::Top, "too many: unknown");
        // A set survives a round trip through memory bytes.
        assert_eq!(Value::from_bytes(&set.bytes(4)[..4]), set);
        assert!(!Byte::Choice { values: [1, 2, 0, 0], len: 2 }.is_nameable(), "choices never reach a template");
    }
}
