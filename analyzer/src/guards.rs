//! An entry's guards and conditions made ready for the predictor, once per
//! entry: its paths as bit masks over the conditions, and each comparison's
//! operands as where their word comes from.
//!
//! A swap's entry has 12 guards (36 paths of 144 literals) over 16
//! comparisons of 8-byte words; checked literal by literal, with each
//! operand's bytes examined one by one at every evaluation, the guards were
//! about a third of the instructions of filling a swap in.

use std::cell::RefCell;
use std::sync::OnceLock;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::domain::Byte;
use crate::summary::{Condition, Guard, KeyTemplate, Run};

/// The bytes of a comparison's operand that make its word (little-endian).
pub(crate) const WORD_BYTES: usize = 8;

/// [`CompiledGuards`], made when first needed. Derived from the entry's
/// conditions and guards, so it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledCell(OnceLock<CompiledGuards>);

impl CompiledCell {
    pub(crate) fn get(&self, conditions: &[Condition], guards: &[Guard], reads: &[KeyTemplate]) -> &CompiledGuards {
        self.0.get_or_init(|| CompiledGuards::of(conditions, guards, reads))
    }
}

impl CompiledCell {
    /// A cell holding what checks guards literal by literal and reads
    /// operands byte by byte (what the compiled form must agree with).
    #[cfg(test)]
    pub(crate) fn interpreted(conditions: usize) -> CompiledCell {
        CompiledCell(OnceLock::from(CompiledGuards { masks: None, operands: vec![[Operand::Bytes; 2]; conditions].into(), control: None }))
    }
}

impl PartialEq for CompiledCell {
    fn eq(&self, _: &CompiledCell) -> bool {
        true
    }
}

impl Eq for CompiledCell {}

#[derive(Debug, Clone)]
pub(crate) struct CompiledGuards {
    /// `None` when there are more than 64 conditions (then the guards are
    /// checked literal by literal).
    pub(crate) masks: Option<PathMasks>,
    /// Each condition's operands (`[Operand::Bytes; 2]` for an `And` or an
    /// `Or`, which have none).
    pub(crate) operands: Box<[[Operand; 2]]>,
    /// What the conditions depend on in a call; `None` when the entry's
    /// decisions are not kept (see [`Control`]).
    pub(crate) control: Option<Control>,
}

impl CompiledGuards {
    fn of(conditions: &[Condition], guards: &[Guard], reads: &[KeyTemplate]) -> CompiledGuards {
        let operands = conditions
            .iter()
            .map(|condition| match condition {
                Condition::Compare { lhs, rhs, .. } => [Operand::of(lhs), Operand::of(rhs)],
                Condition::And(..) | Condition::Or(..) => [Operand::Bytes, Operand::Bytes],
            })
            .collect();
        let masks = PathMasks::of(conditions, guards);
        let control = if guards.is_empty() || masks.is_none() { None } else { Control::of(conditions, reads) };
        CompiledGuards { masks, operands, control }
    }
}

/// Input bytes whose decisions are kept, at most (each takes up to two
/// bytes of a [`Decisions`] key).
const CONTROL_INPUTS_MAX: usize = 48;

/// What an entry's conditions depend on in a call, besides the contract
/// (whose summary and fixed stored values are the same for every call of
/// a planned block): the caller, and some of the input's bytes. Calls that
/// agree on those take the same guarded templates, so a planner can keep
/// which ones by them ([`Decisions`]): a block's swaps of one pool and one
/// direction decide alike, whatever their amounts and senders.
///
/// Made only for entries whose reads' keys name no stored value: the
/// predictor resolves a stored value once per call and keeps it, and a key
/// made of another stored value would be resolved or not depending on which
/// was asked for first (its depth is bounded), which decisions kept from
/// another call would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Control {
    pub(crate) caller: bool,
    /// The input bytes, as runs of consecutive ones (`start`, `len`), in
    /// order, apart.
    pub(crate) inputs: Box<[(usize, usize)]>,
}

impl Control {
    fn of(conditions: &[Condition], reads: &[KeyTemplate]) -> Option<Control> {
        let stored_in_keys = reads.iter().any(|key| key.bytes.runs().iter().any(|run| matches!(run, Run::Stored { .. } | Run::Other(Byte::Stored { .. }))));
        if stored_in_keys {
            return None;
        }
        let mut caller = false;
        let mut inputs = Vec::new();
        for condition in conditions {
            let Condition::Compare { lhs, rhs, .. } = condition else { continue };
            // Only a word's bytes are read (see `Operand`).
            for byte in lhs.iter().take(WORD_BYTES).chain(rhs.iter().take(WORD_BYTES)) {
                match *byte {
                    Byte::Input(at) => inputs.push(at),
                    Byte::Caller(_) => caller = true,
                    // The key of a stored value is made of constants, the
                    // contract, the caller and the input.
                    Byte::Stored { read, .. } => {
                        for run in reads.get(usize::from(read)).map(|key| key.bytes.runs()).unwrap_or_default() {
                            match *run {
                                Run::Input { start, len } => inputs.extend((start..start + len).filter_map(|at| u16::try_from(at).ok())),
                                Run::Caller { .. } | Run::Other(Byte::Caller(_)) => caller = true,
                                Run::Other(Byte::Input(at)) => inputs.push(at),
                                _ => {}
                            }
                        }
                    }
                    // Constants, the contract, and bytes never known.
                    Byte::Const(_) | Byte::Contract(_) | Byte::Flag { .. } | Byte::Choice { .. } | Byte::Unknown => {}
                }
            }
        }
        inputs.sort_unstable();
        inputs.dedup();
        if inputs.len() > CONTROL_INPUTS_MAX {
            return None;
        }
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for at in inputs.into_iter().map(usize::from) {
            match runs.last_mut() {
                Some((start, len)) if *start + *len == at => *len += 1,
                _ => runs.push((at, 1)),
            }
        }
        Some(Control { caller, inputs: runs.into() })
    }
}

/// Templates of an entry whose decisions are kept, at most.
pub(crate) const DECIDED_TEMPLATES_MAX: usize = 256;

/// Keys a [`Decisions`] table holds, at most (past that, decisions are
/// made for each call: a block whose calls all decide differently should
/// not grow a table).
const DECISIONS_MAX: usize = 4096;

/// A key of [`Decisions`]: the entry, the contract, and what the entry's
/// [`Control`] names (8 + 32 bytes, the caller's 32, and per run of input
/// bytes a tag and its bytes, or two bytes per byte when some are unknown).
pub(crate) type DecisionKey = SmallVec<[u8; 128]>;

/// Which templates may happen (a bit per template, in the order reads,
/// writes, adds, calls).
pub(crate) type Decided = SmallVec<[u64; DECIDED_TEMPLATES_MAX / 64]>;

/// Which guarded templates of entries may happen, kept by what decided it
/// ([`Control`]), for the calls of one environment (whose summaries and
/// fixed stored values do not change: a planner keeps one per block and
/// thread). See [`Environment::decisions`](crate::Environment::decisions).
#[derive(Default)]
pub struct Decisions {
    table: RefCell<FxHashMap<DecisionKey, Decided>>,
}

impl Decisions {
    pub(crate) fn get(&self, key: &[u8]) -> Option<Decided> {
        self.table.borrow().get(key).cloned()
    }

    pub(crate) fn keep(&self, key: DecisionKey, decided: &Decided) {
        let mut table = self.table.borrow_mut();
        if table.len() < DECISIONS_MAX {
            table.insert(key, decided.clone());
        }
    }

    /// Forgets every decision (when a summary the table was made under changes).
    pub fn clear(&self) {
        self.table.borrow_mut().clear();
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where the word of an operand (its first [`WORD_BYTES`] bytes) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operand {
    /// Every byte a constant: the word.
    Const(u64),
    /// Consecutive bytes of the call's input: `input[start..start + len]`.
    Input { start: usize, len: usize },
    /// Consecutive bytes of the value read by the entry's read `read`.
    Stored { read: usize, offset: usize, len: usize },
    /// Anything else: evaluated byte by byte.
    Bytes,
}

impl Operand {
    fn of(bytes: &[Byte]) -> Operand {
        let bytes = &bytes[..bytes.len().min(WORD_BYTES)];
        if bytes.iter().all(|b| matches!(b, Byte::Const(_))) {
            let word = bytes.iter().enumerate().fold(0u64, |word, (i, b)| match b {
                Byte::Const(c) => word | u64::from(*c) << (8 * i),
                _ => word,
            });
            return Operand::Const(word);
        }
        match bytes.first() {
            Some(&Byte::Input(start)) if bytes.iter().enumerate().all(|(i, b)| matches!(*b, Byte::Input(at) if usize::from(at) == usize::from(start) + i)) => {
                Operand::Input { start: usize::from(start), len: bytes.len() }
            }
            Some(&Byte::Stored { read, offset })
                if bytes.iter().enumerate().all(|(i, b)| matches!(*b, Byte::Stored { read: r, offset: at } if r == read && usize::from(at) == usize::from(offset) + i)) =>
            {
                Operand::Stored { read: usize::from(read), offset: usize::from(offset), len: bytes.len() }
            }
            _ => Operand::Bytes,
        }
    }
}

/// Each path of each guard as two masks over the entry's conditions: those
/// it needs true and those it needs false. A path is closed when one it
/// needs true is known false or the other way round, so a path is checked
/// with two `and`s instead of a lookup per literal.
#[derive(Debug, Clone)]
pub(crate) struct PathMasks {
    /// Guard `g`'s paths are `paths[starts[g]..starts[g + 1]]`.
    starts: Box<[u32]>,
    /// (needed true, needed false) per path.
    paths: Box<[(u64, u64)]>,
}

impl PathMasks {
    /// The masks of `guards`, when `conditions` fit in a mask. A literal of
    /// a condition that does not exist is never decided, so it closes no
    /// path and takes no bit.
    fn of(conditions: &[Condition], guards: &[Guard]) -> Option<PathMasks> {
        if conditions.len() > 64 {
            return None;
        }
        let mut starts = Vec::with_capacity(guards.len() + 1);
        let mut paths = Vec::new();
        for guard in guards {
            starts.push(u32::try_from(paths.len()).ok()?);
            for path in &guard.any_of {
                let (mut needed_true, mut needed_false) = (0u64, 0u64);
                for literal in path.iter().filter(|l| (l.condition as usize) < conditions.len()) {
                    let bit = 1u64 << literal.condition;
                    if literal.value {
                        needed_true |= bit;
                    } else {
                        needed_false |= bit;
                    }
                }
                paths.push((needed_true, needed_false));
            }
        }
        starts.push(u32::try_from(paths.len()).ok()?);
        Some(PathMasks { starts: starts.into(), paths: paths.into() })
    }

    /// The paths of guard `guard` (by its place in the entry's guards).
    pub(crate) fn paths(&self, guard: usize) -> Option<&[(u64, u64)]> {
        let (start, end) = (*self.starts.get(guard)?, *self.starts.get(guard + 1)?);
        self.paths.get(start as usize..end as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{AccessKind, Comparison, Literal};

    #[test]
    fn operands_name_where_their_word_comes_from() {
        let input = |from: u16, n: u16| (from..from + n).map(Byte::Input).collect::<Vec<_>>();
        assert_eq!(Operand::of(&input(8, 8)), Operand::Input { start: 8, len: 8 });
        // Only the first eight bytes make the word.
        assert_eq!(Operand::of(&input(0, 12)), Operand::Input { start: 0, len: 8 });
        assert_eq!(Operand::of(&input(0, 4)), Operand::Input { start: 0, len: 4 });
        assert_eq!(Operand::of(&[Byte::Const(1), Byte::Const(2)]), Operand::Const(0x0201));
        assert_eq!(Operand::of(&[]), Operand::Const(0));
        let stored: Vec<Byte> = (3..11).map(|offset| Byte::Stored { read: 2, offset }).collect();
        assert_eq!(Operand::of(&stored), Operand::Stored { read: 2, offset: 3, len: 8 });
        // Not consecutive, or of two sources: byte by byte.
        assert_eq!(Operand::of(&[Byte::Input(1), Byte::Input(0)]), Operand::Bytes);
        assert_eq!(Operand::of(&[Byte::Input(0), Byte::Const(0)]), Operand::Bytes);
        assert_eq!(Operand::of(&[Byte::Stored { read: 0, offset: 0 }, Byte::Stored { read: 1, offset: 1 }]), Operand::Bytes);
        assert_eq!(Operand::of(&[Byte::Caller(0)]), Operand::Bytes);
    }

    /// A control names the input bytes and the caller that comparisons
    /// read (through the keys of stored values too), in runs; none is made
    /// when a read's key names a stored value.
    #[test]
    fn a_control_names_what_comparisons_read() {
        let compare = |lhs: Vec<Byte>, rhs: Vec<Byte>| Condition::Compare { op: Comparison::Eq, width: 8, lhs, rhs };
        let reads = vec![KeyTemplate::from_bytes(Some(1), &[]), KeyTemplate::from_bytes(Some(2), &[Byte::Input(40), Byte::Input(41), Byte::Caller(0)])];
        let stored = |read: u16| (0..8).map(|offset| Byte::Stored { read, offset }).collect::<Vec<_>>();
        let input = |from: u16| (from..from + 8).map(Byte::Input).collect::<Vec<_>>();
        // Input 0..8 and 8..16 merge into one run; bytes past a word's eight are not read.
        let conditions = vec![compare(input(8), stored(0)), compare(input(0), (0..12).map(Byte::Input).collect())];
        assert_eq!(Control::of(&conditions, &reads), Some(Control { caller: false, inputs: vec![(0, 16)].into() }));
        // Stored value 1's key reads input 40..42 and the caller.
        let conditions = vec![compare(input(0), stored(1)), compare(vec![Byte::Const(1)], vec![Byte::Unknown])];
        assert_eq!(Control::of(&conditions, &reads), Some(Control { caller: true, inputs: vec![(0, 8), (40, 2)].into() }));
        // A key made of a stored value: not kept.
        let chained = vec![reads[0].clone(), KeyTemplate::from_bytes(Some(3), &stored(0))];
        assert_eq!(Control::of(&conditions, &chained), None);
        // Too many input bytes: not kept.
        let wide: Vec<Condition> = (0..7).map(|i| compare(input(i * 8), vec![Byte::Const(0)])).collect();
        assert_eq!(Control::of(&wide, &reads), None);
    }

    #[test]
    fn a_path_needs_its_literals_and_a_missing_condition_takes_no_bit() {
        let compare = Condition::Compare { op: Comparison::Eq, width: 8, lhs: vec![Byte::Input(0)], rhs: vec![Byte::Const(0)] };
        let conditions = vec![compare.clone(), compare.clone(), compare];
        let literal = |condition, value| Literal { condition, value };
        let guards = vec![
            Guard { kind: AccessKind::Read, index: 0, any_of: vec![vec![literal(0, true), literal(2, false)], vec![literal(1, true), literal(9, true)]] },
            Guard { kind: AccessKind::Write, index: 1, any_of: vec![] },
        ];
        let masks = PathMasks::of(&conditions, &guards).expect("three conditions fit");
        assert_eq!(masks.paths(0), Some(&[(0b001, 0b100), (0b010, 0)][..]));
        assert_eq!(masks.paths(1), Some(&[][..]));
        assert_eq!(masks.paths(2), None);
        let many = vec![conditions[0].clone(); 65];
        assert!(PathMasks::of(&many, &guards).is_none(), "65 conditions do not fit in a mask");
    }
}
