//! Recipes: how a transaction's prediction is made from its sender and
//! input, learnt from one transaction and followed by the next ones alike.
//!
//! Filling a call's templates in resolves the same things for every
//! transaction of one entry of one contract: the callees (from fixed stored
//! values), their summaries, the stored values, the guards' decisions. What
//! differs from one transaction to the next is mostly copied, byte for
//! byte, from the sender and the input into the keys (a balance by sender,
//! an allowance by sender and spender). A recipe keeps the result of
//! resolving: each key the fill produced, in order, as parts that are
//! constants, runs of the sender's bytes or runs of the input's.
//!
//! A later call of the same entry on the same contract follows it when the
//! fill would take the same path: the input has the same length, every
//! comparison the guards made comes out the same (whether a recipient is
//! the sender decides alike for every other sender), and it agrees with the
//! recorded call on every byte the fill *looked at* rather than copied (the
//! bytes that chose a callee or a stored value, arguments compared with one
//! another). The fill then makes each key from the same places.
//!
//! A recorded fill through an entry analysed by input shape also checks the
//! bytes the shape fixes (length prefixes, option tags): its recipe holds
//! for the inputs of that shape only. A fill whose keys or comparisons the
//! recorded sources do not rebuild makes no recipe: those calls are filled
//! in as before. The prediction is the same
//! either way: tests check it against fills without recipes for random
//! guarded entries, for each thing a path depends on, and for every
//! workload's transactions.

use std::cell::{Cell, RefCell};
use std::hash::Hasher;

use chroma_host_api::{Address, ADDRESS_LEN};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::fingerprint::Folded;
use crate::predict::{fingerprint_in, pattern_in, Collected, FollowedShape, KeyBytes, KeyPattern, EXACT_BIT, SCANNED_MAX};
use crate::guards::WORD_BYTES;
use crate::summary::{AccessKind, Comparison};

/// Where one byte of a key or of a callee's arguments comes from, in terms
/// of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The same in every call that follows the recipe.
    Const(u8),
    /// The transaction sender's byte.
    Caller(u8),
    /// The transaction input's byte.
    Input(u32),
    /// Not known when filling in.
    Unknown,
}

// The bytes of the sender a recipe depends on are kept as a mask.
const _: () = assert!(ADDRESS_LEN <= 32);

impl Source {
    /// Its value in a call by `sender` with `input`.
    fn value(self, sender: &Address, input: &[u8]) -> Option<u8> {
        match self {
            Source::Const(byte) => Some(byte),
            Source::Caller(at) => sender.as_bytes().get(usize::from(at)).copied(),
            Source::Input(at) => input.get(at as usize).copied(),
            Source::Unknown => None,
        }
    }
}

/// A comparison the recorded fill's path depends on, and its result there
/// (`None`: undecided).
#[derive(Debug, Clone)]
struct Check {
    op: Comparison,
    width: u8,
    lhs: SmallVec<[Source; WORD_BYTES]>,
    rhs: SmallVec<[Source; WORD_BYTES]>,
    result: Option<bool>,
}

impl Check {
    /// Its result in a call by `sender` with `input` (as the fill evaluates
    /// a comparison: a word little-endian, undecided if a byte is not known).
    fn result_for(&self, sender: &Address, input: &[u8]) -> Option<bool> {
        let word = |sources: &[Source]| sources.iter().enumerate().try_fold(0u64, |word, (i, source)| Some(word | u64::from(source.value(sender, input)?) << (8 * i)));
        Some(self.op.eval(self.width, word(&self.lhs)?, word(&self.rhs)?))
    }
}

/// What a recording fill learns: each key it made, in order, with where its
/// bytes come from, and the bytes of the transaction it looked at.
pub(crate) struct Trace {
    sender: Address,
    input: Box<[u8]>,
    /// Kind, exact, sources, and whether it is a read of a fixed slot
    /// (see `Collected::fixed_reads`).
    keys: Vec<(AccessKind, bool, Box<[Source]>, bool)>,
    checks: Vec<Check>,
    /// The sender's bytes looked at, by bit.
    caller_looked_at: u32,
    inputs_looked_at: Vec<u32>,
    /// Whether the fill did something a recipe cannot follow.
    opaque: bool,
}

impl Trace {
    pub(crate) fn new(sender: &Address, input: &[u8]) -> Trace {
        Trace { sender: *sender, input: input.into(), keys: Vec::new(), checks: Vec::new(), caller_looked_at: 0, inputs_looked_at: Vec::new(), opaque: false }
    }

    /// The fill's path depends on the byte at `source`.
    pub(crate) fn look_at(&mut self, source: Source) {
        match source {
            Source::Caller(at) => self.caller_looked_at |= 1 << (u32::from(at) % 32),
            Source::Input(at) => self.inputs_looked_at.push(at),
            Source::Const(_) | Source::Unknown => {}
        }
    }

    /// The fill did something no recipe follows.
    pub(crate) fn give_up(&mut self) {
        self.opaque = true;
    }

    /// The value of `source` in the recorded transaction.
    fn value(&self, source: Source) -> Option<u8> {
        source.value(&self.sender, &self.input)
    }

    /// A condition the fill evaluated to `result`: a comparison of words
    /// made from `lhs` and `rhs`. The path depends on its result, not on the
    /// bytes compared (whether a transfer's recipient is its sender decides
    /// alike for every other sender).
    pub(crate) fn check(&mut self, op: Comparison, width: u8, lhs: SmallVec<[Source; WORD_BYTES]>, rhs: SmallVec<[Source; WORD_BYTES]>, result: Option<bool>) {
        let check = Check { op, width, lhs, rhs, result };
        if check.result_for(&self.sender, &self.input) != result {
            self.opaque = true;
            return;
        }
        self.checks.push(check);
    }

    /// Whether `sources` rebuild `bytes` in the recorded transaction (what a
    /// recipe relies on; a mismatch means the sources are not the fill's).
    pub(crate) fn rebuilds(&self, sources: &[Source], bytes: &[u8]) -> bool {
        sources.len() == bytes.len() && sources.iter().zip(bytes).all(|(&s, &b)| self.value(s) == Some(b))
    }

    /// A key made, of `kind`, from `sources` (its bytes, at least); a read
    /// of a fixed slot or not.
    pub(crate) fn key(&mut self, kind: AccessKind, pattern: &KeyPattern, mut sources: SmallVec<[Source; 80]>, fixed: bool) {
        sources.truncate(pattern.bytes().len());
        if !self.rebuilds(&sources, pattern.bytes()) {
            self.opaque = true;
            return;
        }
        self.keys.push((kind, pattern.is_exact(), sources.as_slice().into(), fixed));
    }

    /// The recipe it makes; `None` when the fill cannot be followed.
    pub(crate) fn recipe(mut self, unbounded: bool) -> Option<Recipe> {
        if self.opaque {
            return None;
        }
        self.inputs_looked_at.sort_unstable();
        self.inputs_looked_at.dedup();
        let mut inputs: Vec<(u32, Vec<u8>)> = Vec::new();
        for &at in &self.inputs_looked_at {
            // Past the input's end there is nothing to compare: the length is.
            let Some(&value) = self.input.get(at as usize) else { continue };
            match inputs.last_mut() {
                Some((start, bytes)) if *start + bytes.len() as u32 == at => bytes.push(value),
                _ => inputs.push((at, vec![value])),
            }
        }
        let mut caller = [0u8; ADDRESS_LEN];
        for (at, byte) in caller.iter_mut().enumerate() {
            if self.caller_looked_at & (1 << at) != 0 {
                *byte = self.sender.as_bytes()[at];
            }
        }
        // A comparison of constants and of bytes the recipe matches anyway
        // has the same result in every call that fits.
        let (caller_mask, looked_at) = (self.caller_looked_at, &self.inputs_looked_at);
        let implied = |source: &Source| match *source {
            Source::Const(_) => true,
            Source::Caller(at) => caller_mask & (1 << (u32::from(at) % 32)) != 0,
            Source::Input(at) => looked_at.binary_search(&at).is_ok(),
            Source::Unknown => false,
        };
        self.checks.retain(|check| !check.lhs.iter().chain(&check.rhs).all(implied));
        // Whether a key may equal an earlier one of its kind in some call
        // (then it is kept only if it does not, as a fill keeps each once):
        // not when a constant byte differs somewhere.
        let mut steps: Vec<Step> = Vec::with_capacity(self.keys.len());
        for (i, (kind, exact, sources, fixed)) in self.keys.iter().enumerate() {
            let may_repeat = self.keys[..i].iter().any(|(k, e, earlier, _)| {
                k == kind && e == exact && earlier.len() == sources.len() && !earlier.iter().zip(sources).any(|(a, b)| matches!((a, b), (Source::Const(x), Source::Const(y)) if x != y))
            });
            steps.push(Step::of(*kind, *exact, may_repeat, *fixed, sources)?);
        }
        let template = Template::of(&self, &steps);
        Some(Recipe {
            template,
            input_len: self.input.len(),
            checks: self.checks.into(),
            caller_mask: self.caller_looked_at,
            caller,
            inputs: inputs.into_iter().map(|(at, bytes)| (at, bytes.into_boxed_slice())).collect(),
            steps: steps.into(),
            unbounded,
        })
    }
}

/// One part of a key in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Const(KeyBytes),
    Caller { start: u8, len: u8 },
    Input { start: u32, len: u32 },
}

/// One key of a recipe: its kind, whether it is one key or a prefix, and
/// its parts; a key of constants alone is kept made, with its fingerprint.
#[derive(Debug, Clone)]
struct Step {
    kind: AccessKind,
    exact: bool,
    /// Whether it may be a key made earlier (see `Trace::recipe`).
    may_repeat: bool,
    /// Whether it is a read of a fixed slot (see `Collected::fixed_reads`).
    fixed: bool,
    parts: Box<[Part]>,
    made: Option<(KeyPattern, u64)>,
}

impl Step {
    /// `None` for a key with a byte not known (`Trace::key` keeps none).
    fn of(kind: AccessKind, exact: bool, may_repeat: bool, fixed: bool, sources: &[Source]) -> Option<Step> {
        let mut parts: Vec<Part> = Vec::new();
        for &source in sources {
            match (parts.last_mut(), source) {
                (Some(Part::Const(bytes)), Source::Const(byte)) => bytes.push(byte),
                (Some(Part::Caller { start, len }), Source::Caller(at)) if *start + *len == at => *len += 1,
                (Some(Part::Input { start, len }), Source::Input(at)) if *start + *len == at => *len += 1,
                (_, Source::Const(byte)) => parts.push(Part::Const(KeyBytes::from_slice(&[byte]))),
                (_, Source::Caller(at)) => parts.push(Part::Caller { start: at, len: 1 }),
                (_, Source::Input(at)) => parts.push(Part::Input { start: at, len: 1 }),
                (_, Source::Unknown) => return None,
            }
        }
        let made = match parts.as_slice() {
            [] => Some(KeyBytes::new()),
            [Part::Const(bytes)] => Some(bytes.clone()),
            _ => None,
        }
        .map(|bytes| {
            let pattern = if exact { KeyPattern::Exact(bytes) } else { KeyPattern::Prefix(bytes) };
            let fingerprint = crate::plan::fingerprint(&pattern);
            (pattern, fingerprint)
        });
        Some(Step { kind, exact, may_repeat, fixed, parts: parts.into(), made })
    }
}

/// A top-level call's prediction, as made from its sender and input (see
/// the module's documentation).
#[derive(Debug, Clone)]
pub(crate) struct Recipe {
    input_len: usize,
    /// The sender's bytes the path depends on (by bit), and their values.
    caller_mask: u32,
    caller: [u8; ADDRESS_LEN],
    /// The input's bytes the path depends on, as runs: where each starts
    /// and its values.
    inputs: Box<[(u32, Box<[u8]>)]>,
    /// The comparisons the path depends on, each with its result there.
    checks: Box<[Check]>,
    steps: Box<[Step]>,
    /// The prediction packed, for calls whose keys are all distinct.
    template: Option<Template>,
    unbounded: bool,
}

/// A recipe's prediction packed as a [`PredictedAccess`](crate::PredictedAccess)
/// shares it, made once: a call following the recipe copies it, writes its
/// own bytes into the keys made of them and their fingerprints next to the
/// constants' (a key made of the same sources as an earlier one is copied
/// from it: neither patched nor hashed again). A read or add made of the
/// same sources as a write is not in it: the write allows it (see
/// `PredictedAccess::readable`); a transfer's template is its sender's
/// balance and nonce written and its receiver's balance added to, three
/// keys, not four. Following the steps instead puts every key into a list
/// of its kind, looks for it there, and packs the lists at the end.
///
/// It holds for a call in which no key equals an earlier one of its list,
/// and no read or add equals a write: a call in which one does (a transfer
/// to oneself reads and writes one balance, not two) follows the steps,
/// which keep each key once and leave out what a write allows.
#[derive(Debug, Clone)]
struct Template {
    packed: Box<[u8]>,
    /// Its counts, and the reads and adds the planner leaves out whatever
    /// the call: of fixed slots, and constant keys of a constant write's
    /// fingerprint (a collision).
    shape: FollowedShape,
    /// The keys made from the call: where each one's fingerprint and
    /// bytes go, and its patches.
    made: Box<[MadeKey]>,
    /// The pairs of positions (later, earlier) of one list whose keys may
    /// be equal in some call: equal, the template does not hold.
    may_equal: Box<[(usize, usize)]>,
    /// The reads and adds that may be a write's key in some call: each one
    /// made from the call (against every write), and each constant one
    /// (against the writes made from the call). One that is, by
    /// fingerprint, is left to the steps: a fill leaves it out of its list
    /// (`PredictedAccess::pack`), or covers it (a collision). A read or add
    /// made of the same sources as a write is left out of the template.
    made_reads_adds: Box<[usize]>,
    constant_reads_adds: Box<[usize]>,
    made_writes: Box<[usize]>,
}

#[derive(Debug, Clone)]
struct MadeKey {
    position: usize,
    /// Its bytes in `packed`.
    bytes: std::ops::Range<usize>,
    exact: bool,
    /// Where the call's bytes go, each run at its offset in `packed` (kept
    /// with its key: taken as a range of one list for the whole template,
    /// they made a followed transfer 43 instructions longer, 1,742 against
    /// 1,699).
    patches: Box<[Patch]>,
    /// The fold of its constant first bytes, where its fingerprint's
    /// resumes (a balance key's contract address: four of the ten chunks
    /// of a transfer's three keys).
    folded: Folded,
    /// The earlier key made of the same sources (by index in `made`),
    /// whose bytes and fingerprint it copies instead.
    same_as: Option<usize>,
}

/// A run of a call's bytes in a [`Template`]: `len` bytes of its sender
/// (or of its input, `from_input`) from `start`, written at `at` in the
/// packed prediction. Sixteen bytes, where an offset with a [`Part`]
/// (which keeps a constant's bytes inline) took more than a key's length:
/// a followed transfer's prediction took 1,851 instructions, 1,836 this
/// way, and 1,802 with an address copied in line.
#[derive(Debug, Clone, Copy)]
struct Patch {
    at: u32,
    start: u32,
    len: u32,
    from_input: bool,
}

impl Patch {
    /// Copies its run of `sender`'s or `input`'s bytes into `packed`;
    /// `false` when either is too short (never, for a call that fits the
    /// recipe: its input is as long as the recorded one).
    #[inline(always)]
    fn apply(&self, sender: &Address, input: &[u8], packed: &mut [u8]) -> bool {
        let source = if self.from_input { input } else { sender.as_bytes() };
        let (at, start, len) = (self.at as usize, self.start as usize, self.len as usize);
        let (Some(from), Some(to)) = (source.get(start..start + len), packed.get_mut(at..at + len)) else { return false };
        // An address is the usual run (a sender, a recipient): copied as
        // one, in two moves rather than a call.
        match (<&[u8; ADDRESS_LEN]>::try_from(from), <&mut [u8; ADDRESS_LEN]>::try_from(&mut *to)) {
            (Ok(from), Ok(to)) => *to = *from,
            _ => copy_run(to, from),
        }
        true
    }
}

/// A run that is not an address, copied by a call of its own: copied in
/// line, its `memcpy` was taken for the address's too (the two merged
/// into one call of the run's length).
#[cold]
#[inline(never)]
fn copy_run(to: &mut [u8], from: &[u8]) {
    to.copy_from_slice(from);
}

impl Template {
    /// The template of `steps`, whose keys' sources `trace` recorded;
    /// `None` when a list would need settling or two constant keys of one
    /// list are equal.
    fn of(trace: &Trace, steps: &[Step]) -> Option<Template> {
        // Each list's steps, in order (calls make no key).
        let kinds = [AccessKind::Read, AccessKind::Write, AccessKind::Add];
        // A read or add made of the same sources as a write is the write's
        // key in every call: left out, as `PredictedAccess::pack` leaves
        // it out (the write allows it).
        let written = |i: usize| (0..steps.len()).any(|w| steps[w].kind == AccessKind::Write && steps[w].exact == steps[i].exact && trace.keys[w].2 == trace.keys[i].2);
        let lists: Vec<Vec<usize>> =
            kinds.iter().map(|kind| (0..steps.len()).filter(|&i| steps[i].kind == *kind && (*kind == AccessKind::Write || !written(i))).collect()).collect();
        if lists.iter().any(|list| list.len() > SCANNED_MAX) {
            return None;
        }
        let order: Vec<usize> = lists.iter().flatten().copied().collect();
        let len = order.len();
        let sources = |i: usize| &trace.keys[i].2;
        let mut may_equal = Vec::new();
        let mut position = 0;
        for list in &lists {
            for (later, &j) in list.iter().enumerate() {
                for (earlier, &i) in list[..later].iter().enumerate() {
                    let (a, b) = (sources(i), sources(j));
                    let differ = |(x, y): (&Source, &Source)| matches!((x, y), (Source::Const(x), Source::Const(y)) if x != y);
                    if steps[i].exact != steps[j].exact || a.len() != b.len() || a.iter().zip(b.iter()).any(differ) {
                        continue;
                    }
                    if steps[i].made.is_some() && steps[j].made.is_some() {
                        // Two equal constant keys: the template never holds.
                        return None;
                    }
                    may_equal.push((position + later, position + earlier));
                }
            }
            position += list.len();
        }
        // Packed as `PredictedAccess::pack` packs: fingerprints, ends, bytes.
        let key_bytes: usize = order.iter().map(|&i| sources(i).len()).sum();
        let mut packed = vec![0u8; 12 * len + key_bytes];
        let mut made = Vec::new();
        let (mut end, mut any_prefix) = (0usize, false);
        for (position, &i) in order.iter().enumerate() {
            let step = &steps[i];
            let start = 12 * len + end;
            end += sources(i).len();
            let exact_bit = if step.exact { EXACT_BIT } else { 0 };
            packed.get_mut(8 * len + 4 * position..8 * len + 4 * position + 4)?.copy_from_slice(&(u32::try_from(end).ok()? | exact_bit).to_le_bytes());
            any_prefix |= !step.exact;
            match &step.made {
                Some((pattern, fingerprint)) => {
                    packed.get_mut(start..start + pattern.bytes().len())?.copy_from_slice(pattern.bytes());
                    packed.get_mut(8 * position..8 * position + 8)?.copy_from_slice(&fingerprint.to_le_bytes());
                }
                None => {
                    // The same sources as a key made earlier (a balance
                    // read and written): the same bytes in every call.
                    if let Some(earlier) = made.iter().position(|key: &MadeKey| key.exact == step.exact && sources(order[key.position]) == sources(i)) {
                        let folded = made[earlier].folded;
                        made.push(MadeKey { position, bytes: start..12 * len + end, exact: step.exact, patches: Box::default(), folded, same_as: Some(earlier) });
                        continue;
                    }
                    let mut patches = Vec::new();
                    let mut at = start;
                    for part in step.parts.iter() {
                        match part {
                            Part::Const(bytes) => {
                                packed.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
                                at += bytes.len();
                            }
                            Part::Caller { start, len } => {
                                patches.push(Patch { at: u32::try_from(at).ok()?, start: u32::from(*start), len: u32::from(*len), from_input: false });
                                at += usize::from(*len);
                            }
                            Part::Input { start, len } => {
                                patches.push(Patch { at: u32::try_from(at).ok()?, start: *start, len: *len, from_input: true });
                                at += *len as usize;
                            }
                        }
                    }
                    let constant = patches.first().map_or(at, |patch: &Patch| patch.at as usize);
                    let folded = Folded::over(packed.get(start..constant)?, sources(i).len(), !step.exact);
                    made.push(MadeKey { position, bytes: start..12 * len + end, exact: step.exact, patches: patches.into(), folded, same_as: None });
                }
            }
        }
        // Covers now; which reads and adds may be a write's key, for the
        // calls that follow.
        let counts = [lists[0].len(), lists[1].len(), lists[2].len()];
        let writes = counts[0]..counts[0] + counts[1];
        let is_made = |position: usize| made.iter().any(|key| key.position == position);
        let (mut covered, mut made_reads_adds, mut constant_reads_adds) = (0u64, Vec::new(), Vec::new());
        let made_writes: Vec<usize> = writes.clone().filter(|&w| is_made(w)).collect();
        for position in (0..counts[0]).chain(writes.end..len) {
            let bit = if position < 64 { 1 << position } else { 0 };
            // A read of a fixed slot, left out whatever the call (as
            // `Collected::finish` leaves it out).
            if steps[order[position]].fixed {
                covered |= bit;
                continue;
            }
            if is_made(position) {
                made_reads_adds.push(position);
                continue;
            }
            // A constant key of a constant write's fingerprint but other
            // bytes (equal ones are left out): covered, as by `covered_of`.
            let fingerprint = fingerprint_in(&packed, position);
            if writes.clone().any(|w| !is_made(w) && fingerprint_in(&packed, w) == fingerprint) {
                covered |= bit;
            }
            if !made_writes.is_empty() {
                constant_reads_adds.push(position);
            }
        }
        Some(Template {
            packed: packed.into(),
            shape: FollowedShape { counts, covered, any_prefix },
            made: made.into(),
            may_equal: may_equal.into(),
            made_reads_adds: made_reads_adds.into(),
            constant_reads_adds: constant_reads_adds.into(),
            made_writes: made_writes.into(),
        })
    }

    /// Packs the prediction of a call by `sender` with `input` (one that
    /// fits its recipe) into `out`; `false` (and `out` to be filled in
    /// otherwise) when two of its keys in one list are equal.
    fn follow(&self, sender: &Address, input: &[u8], unbounded: bool, out: &mut Collected) -> bool {
        let packed = out.follow_into(&self.packed);
        for made in self.made.iter() {
            if let Some(earlier) = made.same_as.and_then(|earlier| self.made.get(earlier)) {
                if earlier.bytes.len() != made.bytes.len() || made.bytes.end > packed.len() || 8 * made.position + 8 > packed.len() {
                    return false;
                }
                packed.copy_within(earlier.bytes.clone(), made.bytes.start);
                packed.copy_within(8 * earlier.position..8 * earlier.position + 8, 8 * made.position);
                continue;
            }
            for patch in made.patches.iter() {
                if !patch.apply(sender, input, packed) {
                    return false;
                }
            }
            let Some(key) = packed.get(made.bytes.clone()) else { return false };
            let fingerprint = crate::fingerprint::fingerprint(key, made.folded);
            let Some(word) = packed.get_mut(8 * made.position..8 * made.position + 8) else { return false };
            word.copy_from_slice(&fingerprint.to_le_bytes());
        }
        let packed = &packed[..];
        let [reads, writes, adds] = self.shape.counts;
        let len = reads + writes + adds;
        if self.may_equal.iter().any(|&(later, earlier)| fingerprint_in(packed, later) == fingerprint_in(packed, earlier) && pattern_in(packed, len, later) == pattern_in(packed, len, earlier)) {
            return false;
        }
        fn written(packed: &[u8], position: usize, mut writes: impl Iterator<Item = usize>) -> bool {
            let fingerprint = fingerprint_in(packed, position);
            writes.any(|w| fingerprint_in(packed, w) == fingerprint)
        }
        if self.made_reads_adds.iter().any(|&position| written(packed, position, reads..reads + writes))
            || self.constant_reads_adds.iter().any(|&position| written(packed, position, self.made_writes.iter().copied()))
        {
            return false;
        }
        out.followed(self.shape, unbounded);
        true
    }
}

impl Recipe {
    /// Whether a call by `sender` with `input` takes the recorded path.
    fn fits(&self, sender: &Address, input: &[u8]) -> bool {
        if input.len() != self.input_len {
            return false;
        }
        let bytes = sender.as_bytes();
        let caller_fits = match self.caller_mask {
            0 => true,
            u32::MAX => *bytes == self.caller,
            mask => (0..ADDRESS_LEN).all(|at| mask & (1 << at) == 0 || bytes[at] == self.caller[at]),
        };
        caller_fits
            && self.inputs.iter().all(|(start, bytes)| input.get(*start as usize..*start as usize + bytes.len()) == Some(&bytes[..]))
            && self.checks.iter().all(|check| check.result_for(sender, input) == check.result)
    }

    /// The prediction of a call by `sender` with `input`, into `out`
    /// (emptied first), for a call that [`fits`](Recipe::fits): packed whole
    /// from the template (`true`) where it holds, else by the steps.
    fn follow(&self, sender: &Address, input: &[u8], out: &mut Collected) -> bool {
        if self.template.as_ref().is_some_and(|template| template.follow(sender, input, self.unbounded, out)) {
            return true;
        }
        out.clear();
        for step in self.steps.iter() {
            match &step.made {
                Some((pattern, fingerprint)) => out.add_fingerprinted(step.kind, pattern.as_ref(), *fingerprint, step.may_repeat, step.fixed),
                None => out.add_made(step.kind, step.exact, step.may_repeat, step.fixed, |bytes| {
                    for part in step.parts.iter() {
                        // In range: the input is as long as the recorded one,
                        // whose bytes these were.
                        let part = match part {
                            Part::Const(consts) => Some(&consts[..]),
                            Part::Caller { start, len } => sender.as_bytes().get(usize::from(*start)..usize::from(*start) + usize::from(*len)),
                            Part::Input { start, len } => input.get(*start as usize..*start as usize + *len as usize),
                        };
                        bytes.extend_from_slice(part.unwrap_or_default());
                    }
                }),
            }
        }
        out.unbounded = self.unbounded;
        false
    }
}

/// Recipes kept for one entry of one contract, at most (swaps of a pool
/// take two: one per direction). Calls that fit none of them are filled in.
const RECIPES_PER_CALL: usize = 4;

/// Recordings of one call that made no recipe (its fill went where no
/// recipe follows: an entry analysed by input shape whose shape has no
/// analysis, a key its sources do not rebuild) after which its calls are no
/// longer recorded, only filled in: recording a fill takes about twice the
/// instructions of filling it in (a registration recorded in vain, 8,100
/// more), which a call that never makes a recipe would pay every time.
pub(crate) const RECORDINGS_IN_VAIN_MAX: u32 = 8;

/// Calls (entries of contracts) a [`Recipes`] table holds recipes for, at most (a
/// recipe holds each of its keys' parts, and a planner's thread keeps its
/// table from block to block).
pub(crate) const CALLS_MAX: usize = 1024;

/// A call, as a transaction names it: the contract, the method, and
/// whether it is a transaction's (its sender's nonce written too; see
/// [`predict_transaction_into`](crate::predict::predict_transaction_into)).
/// Recipes are looked up by it before the contract's summary and the entry
/// are, since a call that follows one needs neither (looking those two up
/// was a tenth of a followed transfer's instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallId<'a> {
    pub contract: &'a Address,
    pub method: &'a str,
    pub transaction: bool,
}

impl CallId<'_> {
    /// The word a call is kept under: its method's hash with the
    /// contract's first bytes and the flag (calls that share it are told
    /// apart by their names).
    fn word(&self) -> u64 {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(self.method.as_bytes());
        let contract = self.contract.as_bytes().first_chunk::<8>().map_or(0, |bytes| u64::from_le_bytes(*bytes));
        hasher.finish() ^ contract.rotate_left(5) ^ u64::from(self.transaction)
    }
}

/// The recipes kept for one call.
struct CallRecipes {
    contract: Address,
    method: Box<str>,
    transaction: bool,
    recipes: SmallVec<[Recipe; 2]>,
    /// Its recordings that made no recipe.
    in_vain: u32,
}

impl CallRecipes {
    fn is(&self, id: &CallId<'_>) -> bool {
        self.contract == *id.contract && self.transaction == id.transaction && same_name(self.method.as_bytes(), id.method.as_bytes())
    }
}

/// Whether two method names are the same, compared a word at a time in
/// line: a name is short, and with `bcmp` called for it (the registers
/// saved around the call) a followed transfer took 8 instructions more,
/// 1,750 against 1,742.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let ((a_words, a_rest), (b_words, b_rest)) = (a.as_chunks::<8>(), b.as_chunks::<8>());
    a.len() == b.len()
        && a_words.iter().zip(b_words).all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
        && a_rest.iter().zip(b_rest).all(|(x, y)| x == y)
}

/// The recipes a planner's view has learnt (see the module's
/// documentation), kept like [`Decisions`](crate::Decisions): for as long
/// as the summaries and the fixed stored values they were made from stay
/// the same.
#[derive(Default)]
pub struct Recipes {
    /// By [`CallId::word`].
    table: RefCell<FxHashMap<u64, SmallVec<[CallRecipes; 1]>>>,
    calls: Cell<usize>,
    followed: Cell<u64>,
    packed: Cell<u64>,
    recorded: Cell<u64>,
}

/// What [`Recipes::follow`] did.
pub(crate) enum Followed {
    /// The prediction is in `out`.
    Done,
    /// No recipe fits, and one made by a recording fill would be kept.
    Record,
    /// No recipe fits, and no more are kept for this call.
    Fill,
}

impl Recipes {
    /// Follows the recipe for `id` that fits `sender` and `input`, if any,
    /// into `out` (emptied first); `out` is left as it was when none does.
    pub(crate) fn follow(&self, id: &CallId<'_>, sender: &Address, input: &[u8], out: &mut Collected) -> Followed {
        let table = self.table.borrow();
        let Some(call) = table.get(&id.word()).and_then(|calls| calls.iter().find(|call| call.is(id))) else {
            return if self.calls.get() < CALLS_MAX { self.record() } else { Followed::Fill };
        };
        match call.recipes.iter().find(|recipe| recipe.fits(sender, input)) {
            Some(recipe) => {
                let packed = recipe.follow(sender, input, out);
                self.followed.set(self.followed.get() + 1);
                self.packed.set(self.packed.get() + u64::from(packed));
                Followed::Done
            }
            None if call.recipes.len() < RECIPES_PER_CALL && call.in_vain < RECORDINGS_IN_VAIN_MAX => self.record(),
            None => Followed::Fill,
        }
    }

    /// Out of line: inline, it made a followed transfer 6 instructions
    /// longer to predict (1,279 against 1,273).
    #[inline(never)]
    fn record(&self) -> Followed {
        self.recorded.set(self.recorded.get() + 1);
        Followed::Record
    }

    /// Keeps `recipe`, recorded for `id`; `None`: the recording made none.
    pub(crate) fn keep(&self, id: &CallId<'_>, recipe: Option<Recipe>) {
        let mut table = self.table.borrow_mut();
        let word = id.word();
        let known = table.get(&word).is_some_and(|calls| calls.iter().any(|call| call.is(id)));
        if !known && self.calls.get() >= CALLS_MAX {
            return;
        }
        let calls = table.entry(word).or_default();
        if !known {
            self.calls.set(self.calls.get() + 1);
            calls.push(CallRecipes { contract: *id.contract, method: id.method.into(), transaction: id.transaction, recipes: SmallVec::new(), in_vain: 0 });
        }
        if let Some(call) = calls.iter_mut().find(|call| call.is(id)) {
            match recipe {
                Some(recipe) if call.recipes.len() < RECIPES_PER_CALL => call.recipes.push(recipe),
                Some(_) => {}
                None => call.in_vain += 1,
            }
        }
    }

    /// Forgets every recipe (when a summary the table was made under changes).
    pub fn clear(&self) {
        self.table.borrow_mut().clear();
        self.calls.set(0);
    }

    /// How many recipes are kept.
    pub fn len(&self) -> usize {
        self.table.borrow().values().flatten().map(|call| call.recipes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many predictions were made by following a recipe.
    pub fn followed(&self) -> u64 {
        self.followed.get()
    }

    /// How many of those were packed whole from a recipe's template (the
    /// others had a key twice in one list).
    pub fn packed(&self) -> u64 {
        self.packed.get()
    }

    /// How many predictions were filled in while a recipe was recorded.
    pub fn recorded(&self) -> u64 {
        self.recorded.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_same_only_byte_for_byte() {
        let name: Vec<u8> = b"transfer_from_with_a_long_name".to_vec();
        for len in 0..name.len() {
            let a = &name[..len];
            assert!(same_name(a, a), "len {len}");
            assert!(!same_name(a, &name[..len + 1]), "len {len} against {}", len + 1);
            for at in 0..len {
                let mut other = a.to_vec();
                other[at] ^= 0x20;
                assert!(!same_name(a, &other), "len {len}, byte {at}");
            }
        }
    }
}
