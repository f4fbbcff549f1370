//! Filling templates in: a transaction's predicted access set.
//!
//! The top-level call's templates are evaluated with the transaction's
//! input, sender and contract; each call template is resolved to a callee
//! and method, its argument bytes evaluated, and the callee's summary filled
//! in the same way (with the caller's address as its caller), down to the
//! VM's call depth. Bytes of stored values are resolved by reading current
//! state, only from slots the contract's constructor alone writes.

use chroma_host_api::key::{slot_prefix, KEY_PREFIX_LEN};
use chroma_host_api::limits::MAX_CALL_DEPTH;
use chroma_host_api::{Address, ADDRESS_LEN};
use serde::Serialize;

use crate::domain::Byte;
use crate::summary::{AccessKind, AccessSummary, CallTemplate, Condition, ContractSummary, EntryKind, KeyTemplate, Literal};

/// Templates one prediction may fill in all (bounds recursive call fan-out).
const FILL_BUDGET: usize = 4096;

/// Deployed contracts' summaries and current state, as the predictor sees them.
pub trait Environment {
    /// The summary of the contract at `contract`; `None` means no contract
    /// will be there when the transaction runs (a call to it fails without
    /// touching storage). A block planner must therefore also answer for
    /// contracts deployed earlier in the same block.
    fn summary(&self, contract: &Address) -> Option<&ContractSummary>;
    /// The committed value at a full state key.
    fn storage(&self, key: &[u8]) -> Option<Vec<u8>>;
}

/// A set of full state keys (`address ‖ slot ‖ key`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum KeyPattern {
    Exact(Vec<u8>),
    /// Every key starting with these bytes (all of a slot, all of a contract, ...).
    Prefix(Vec<u8>),
}

impl KeyPattern {
    pub fn covers(&self, key: &[u8]) -> bool {
        match self {
            KeyPattern::Exact(k) => k == key,
            KeyPattern::Prefix(p) => key.starts_with(p),
        }
    }

    /// Whether some key is in both.
    pub fn overlaps(&self, other: &KeyPattern) -> bool {
        match (self, other) {
            (KeyPattern::Exact(a), KeyPattern::Exact(b)) => a == b,
            (KeyPattern::Exact(k), KeyPattern::Prefix(p)) | (KeyPattern::Prefix(p), KeyPattern::Exact(k)) => k.starts_with(p),
            (KeyPattern::Prefix(a), KeyPattern::Prefix(b)) => a.starts_with(b) || b.starts_with(a),
        }
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

/// The keys a transaction may read, write and add to. `unbounded` means it
/// may touch anything (a call the predictor cannot resolve).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PredictedAccess {
    pub reads: Vec<KeyPattern>,
    pub writes: Vec<KeyPattern>,
    pub adds: Vec<KeyPattern>,
    pub unbounded: bool,
}

impl PredictedAccess {
    /// Whether every pattern is a single key and nothing is unbounded.
    pub fn is_exact(&self) -> bool {
        !self.unbounded && self.reads.iter().chain(&self.writes).chain(&self.adds).all(KeyPattern::is_exact)
    }

    /// Whether the actual accesses are all predicted (each in its own kind).
    pub fn covers<'a>(
        &self,
        reads: impl IntoIterator<Item = &'a [u8]>,
        writes: impl IntoIterator<Item = &'a [u8]>,
        adds: impl IntoIterator<Item = &'a [u8]>,
    ) -> bool {
        if self.unbounded {
            return true;
        }
        let within = |patterns: &[KeyPattern], key: &[u8]| patterns.iter().any(|p| p.covers(key));
        reads.into_iter().all(|k| within(&self.reads, k))
            && writes.into_iter().all(|k| within(&self.writes, k))
            && adds.into_iter().all(|k| within(&self.adds, k))
    }

    fn normalize(&mut self) {
        for list in [&mut self.reads, &mut self.writes, &mut self.adds] {
            list.sort();
            list.dedup();
        }
    }
}

/// Predicts the accesses of a call of `method` on `contract` by `sender`
/// with encoded arguments `input`.
pub fn predict(env: &impl Environment, sender: &Address, contract: &Address, method: &str, input: &[u8]) -> PredictedAccess {
    let mut filler = Filler { env, out: PredictedAccess::default(), budget: FILL_BUDGET };
    filler.call(contract, Some(method), &Args::Known(input), sender, 1);
    filler.out.normalize();
    filler.out
}

/// How many bytes from `start` continue the source of `bytes[start]` one
/// offset at a time (1 for a byte that is not an input or address byte).
fn run_length(bytes: &[Byte], start: usize) -> usize {
    let next = |b: Byte| match b {
        Byte::Input(i) => i.checked_add(1).map(Byte::Input),
        Byte::Caller(i) => i.checked_add(1).map(Byte::Caller),
        Byte::Contract(i) => i.checked_add(1).map(Byte::Contract),
        _ => None,
    };
    let mut len = 1;
    let mut expected = next(bytes[start]);
    while let Some(b) = expected {
        if bytes.get(start + len) != Some(&b) {
            break;
        }
        len += 1;
        expected = next(b);
    }
    len
}

/// A call's input bytes as far as they are known.
enum Args<'a> {
    Known(&'a [u8]),
    /// Every byte known (a nested call's arguments).
    Owned(Vec<u8>),
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
}

struct Filler<'e, E: Environment> {
    env: &'e E,
    out: PredictedAccess,
    budget: usize,
}

/// One call being filled in.
struct Frame<'a, 's> {
    contract: &'a Address,
    caller: &'a Address,
    args: &'a Args<'a>,
    summary: &'s ContractSummary,
    entry: &'s AccessSummary,
    /// Resolved stored values by read index (`None` inside: not resolvable).
    stored: Vec<Option<Option<Vec<u8>>>>,
    /// Evaluated conditions by index (`None` inside: undecidable here).
    conditions: Vec<Option<Option<bool>>>,
}


impl<E: Environment> Filler<'_, E> {
    fn call(&mut self, contract: &Address, method: Option<&str>, args: &Args<'_>, caller: &Address, depth: u32) {
        if depth > MAX_CALL_DEPTH + 1 || self.out.unbounded {
            return;
        }
        let Some(summary) = self.env.summary(contract) else {
            // No contract there: the call fails before any access.
            return;
        };
        let entries: Vec<&AccessSummary> = match method {
            Some(name) => summary.entry(name).into_iter().collect(),
            None => summary.entries.iter().filter(|e| e.kind != EntryKind::Init).collect(),
        };
        for entry in entries {
            self.entry(contract, summary, entry, args, caller, depth);
        }
    }

    fn entry(&mut self, contract: &Address, summary: &ContractSummary, entry: &AccessSummary, args: &Args<'_>, caller: &Address, depth: u32) {
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
            summary,
            entry,
            stored: vec![None; entry.reads.len()],
            conditions: vec![None; entry.conditions.len()],
        };
        for (i, key) in entry.reads.iter().enumerate() {
            if self.may_happen(&mut frame, AccessKind::Read, i) {
                let pattern = self.key(&mut frame, key, 0);
                self.out.reads.push(pattern);
            }
        }
        for (i, key) in entry.writes.iter().enumerate() {
            if self.may_happen(&mut frame, AccessKind::Write, i) {
                let pattern = self.key(&mut frame, key, 0);
                self.out.writes.push(pattern);
            }
        }
        for (i, key) in entry.adds.iter().enumerate() {
            if self.may_happen(&mut frame, AccessKind::Add, i) {
                let pattern = self.key(&mut frame, key, 0);
                self.out.adds.push(pattern);
            }
        }
        for (i, call) in entry.calls.iter().enumerate() {
            if !self.may_happen(&mut frame, AccessKind::Call, i) {
                continue;
            }
            self.nested(&mut frame, call, depth);
            if self.out.unbounded {
                return;
            }
        }
    }

    /// Whether template `index` of `kind` may happen in this call: it has no
    /// guard, or some path's conditions are not all decided against it.
    fn may_happen(&mut self, frame: &mut Frame<'_, '_>, kind: AccessKind, index: usize) -> bool {
        let Some(guard) = frame.entry.guard(kind, index) else { return true };
        guard.any_of.iter().any(|path| path.iter().all(|literal| self.literal(frame, *literal, 0) != Some(false)))
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
        let value = match frame.entry.conditions.get(index)?.clone() {
            Condition::Compare { op, width, lhs, rhs } => {
                let word = |this: &mut Self, frame: &mut Frame<'_, '_>, bytes: &[Byte]| -> Option<u64> {
                    let mut v = 0u64;
                    for (i, b) in bytes.iter().enumerate().take(8) {
                        v |= u64::from(this.byte(frame, *b, 0)?) << (8 * i);
                    }
                    Some(v)
                };
                match (word(self, frame, &lhs), word(self, frame, &rhs)) {
                    (Some(a), Some(b)) => Some(op.eval(width, a, b)),
                    _ => None,
                }
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
        if let Some(slot) = frame.conditions.get_mut(index) {
            *slot = Some(value);
        }
        value
    }

    fn nested(&mut self, frame: &mut Frame<'_, '_>, call: &CallTemplate, depth: u32) {
        let mut callee = Vec::with_capacity(ADDRESS_LEN);
        self.bytes(frame, &call.callee[..call.callee.len().min(ADDRESS_LEN)], 0, &mut callee);
        let Ok(callee) = <[u8; ADDRESS_LEN]>::try_from(callee.as_slice()) else {
            self.out.unbounded = true;
            return;
        };
        let args = match &call.args {
            Some(bytes) => {
                let mut known = Vec::with_capacity(bytes.len());
                if self.bytes(frame, bytes, 0, &mut known) {
                    Args::Owned(known)
                } else {
                    Args::Partial(bytes.iter().map(|b| self.byte(frame, *b, 0)).collect())
                }
            }
            None => Args::Unknown,
        };
        let contract = *frame.contract;
        self.call(&Address(callee), call.method.as_deref(), &args, &contract, depth + 1);
    }

    fn key(&mut self, frame: &mut Frame<'_, '_>, key: &KeyTemplate, depth: u32) -> KeyPattern {
        let Some(slot) = key.slot else {
            return KeyPattern::Prefix(frame.contract.as_bytes().to_vec());
        };
        let mut full = Vec::with_capacity(KEY_PREFIX_LEN + key.bytes.len());
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

    /// Appends the values of `bytes` to `out`, up to the first unknown one;
    /// returns whether all were known. Keys and arguments are mostly runs of
    /// consecutive bytes of one source (an address argument, the caller),
    /// which are copied as slices.
    fn bytes(&mut self, frame: &mut Frame<'_, '_>, bytes: &[Byte], depth: u32, out: &mut Vec<u8>) -> bool {
        let mut j = 0;
        while j < bytes.len() {
            let run = run_length(bytes, j);
            let range = |i: usize| i..i + run;
            let copied = match (bytes[j], frame.args) {
                (Byte::Caller(i), _) => frame.caller.as_bytes().get(range(i as usize)).map(|s| out.extend_from_slice(s)),
                (Byte::Contract(i), _) => frame.contract.as_bytes().get(range(i as usize)).map(|s| out.extend_from_slice(s)),
                (Byte::Input(i), Args::Known(input)) => input.get(range(i as usize)).map(|s| out.extend_from_slice(s)),
                (Byte::Input(i), Args::Owned(input)) => input.get(range(i as usize)).map(|s| out.extend_from_slice(s)),
                (Byte::Input(i), Args::Partial(input)) => match input.get(range(i as usize)) {
                    Some(known) if known.iter().all(Option::is_some) => {
                        out.extend(known.iter().flatten());
                        Some(())
                    }
                    _ => None,
                },
                _ => None,
            };
            if copied.is_none() {
                for &b in &bytes[j..j + run] {
                    match self.byte(frame, b, depth) {
                        Some(v) => out.push(v),
                        None => return false,
                    }
                }
            }
            j += run;
        }
        true
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
    fn stored<'f>(&mut self, frame: &'f mut Frame<'_, '_>, read: usize, depth: u32) -> Option<&'f Vec<u8>> {
        if frame.stored.get(read)?.is_none() {
            let resolved = self.resolve_stored(frame, read, depth);
            frame.stored[read] = Some(resolved);
        }
        frame.stored[read].as_ref()?.as_ref()
    }

    fn resolve_stored(&mut self, frame: &mut Frame<'_, '_>, read: usize, depth: u32) -> Option<Vec<u8>> {
        let key = &frame.entry.reads[read];
        // The constructor writes what it then reads; other entries cannot
        // change a fixed slot, so the committed value is the one they see.
        let fixed = frame.entry.kind != EntryKind::Init && key.slot.is_some_and(|s| frame.summary.fixed_slots.contains(&s));
        if !fixed || !key.exact || depth >= 4 {
            return None;
        }
        let key = key.clone();
        match self.key(frame, &key, depth + 1) {
            KeyPattern::Exact(full) => self.env.storage(&full),
            KeyPattern::Prefix(_) => None,
        }
    }
}
