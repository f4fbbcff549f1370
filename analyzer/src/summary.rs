//! What the analysis produces: for each entry point an [`AccessSummary`] of
//! [`KeyTemplate`]s (storage keys as expressions over the call) and
//! [`CallTemplate`]s (cross-contract calls, with their arguments as
//! expressions), and for the contract the slots only its constructor writes.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use chroma_host_api::abi::MethodKind;
use serde::{Deserialize, Serialize};

use crate::domain::Byte;
use crate::guards::{CompiledCell, CompiledGuards};

/// A storage key of the running contract, as an expression over the call.
///
/// `bytes` are the key bytes after the slot id. When `exact` is false the key
/// only *starts* with them (a prefix: everything after is unknown); `slot:
/// None` means any slot of the contract.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyTemplate {
    pub slot: Option<u32>,
    pub bytes: ByteTemplate,
    pub exact: bool,
}

impl KeyTemplate {
    /// Any key of the contract.
    pub fn any() -> KeyTemplate {
        KeyTemplate { slot: None, bytes: ByteTemplate::default(), exact: false }
    }

    /// The template for key bytes as far as they are known: cut at the first
    /// unknown byte, which makes it a prefix.
    pub fn from_bytes(slot: Option<u32>, bytes: &[Byte]) -> KeyTemplate {
        if slot.is_none() {
            return KeyTemplate::any();
        }
        match bytes.iter().position(|b| !b.is_nameable()) {
            Some(cut) => KeyTemplate { slot, bytes: bytes[..cut].to_vec().into(), exact: false },
            None => KeyTemplate { slot, bytes: bytes.to_vec().into(), exact: true },
        }
    }

    /// Whether the key bytes depend on nothing but constants, the input,
    /// the caller and the contract's address.
    pub fn is_closed(&self) -> bool {
        !self.bytes.iter().any(|b| matches!(b, Byte::Stored { .. }))
    }
}

/// A template's bytes, with the runs they form precomputed: filling a
/// template in copies runs (an address argument, the caller, a stored
/// address) as slices instead of looking at every byte. Serialised, compared
/// and hashed as its bytes alone.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<Byte>", into = "Vec<Byte>")]
pub struct ByteTemplate {
    bytes: Vec<Byte>,
    runs: Box<[Run]>,
}

/// Consecutive template bytes of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Const(Box<[u8]>),
    /// `len` input bytes from `start`.
    Input { start: usize, len: usize },
    Caller { start: usize, len: usize },
    Contract { start: usize, len: usize },
    /// `len` bytes from `offset` of the value of the entry's read `read`.
    Stored { read: usize, offset: usize, len: usize },
    /// A byte that is none of those (it cannot be named).
    Other(Byte),
}

impl ByteTemplate {
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }
}

impl From<Vec<Byte>> for ByteTemplate {
    fn from(bytes: Vec<Byte>) -> ByteTemplate {
        let mut runs: Vec<Run> = Vec::new();
        for &byte in &bytes {
            let extended = match (runs.last_mut(), byte) {
                (Some(Run::Const(consts)), Byte::Const(c)) => {
                    let mut grown = std::mem::take(consts).into_vec();
                    grown.push(c);
                    *consts = grown.into_boxed_slice();
                    true
                }
                (Some(Run::Input { start, len }), Byte::Input(i)) if *start + *len == usize::from(i) => {
                    *len += 1;
                    true
                }
                (Some(Run::Caller { start, len }), Byte::Caller(i)) if *start + *len == usize::from(i) => {
                    *len += 1;
                    true
                }
                (Some(Run::Contract { start, len }), Byte::Contract(i)) if *start + *len == usize::from(i) => {
                    *len += 1;
                    true
                }
                (Some(Run::Stored { read, offset, len }), Byte::Stored { read: r, offset: o })
                    if *read == usize::from(r) && *offset + *len == usize::from(o) =>
                {
                    *len += 1;
                    true
                }
                _ => false,
            };
            if !extended {
                runs.push(match byte {
                    Byte::Const(c) => Run::Const(Box::new([c])),
                    Byte::Input(i) => Run::Input { start: i.into(), len: 1 },
                    Byte::Caller(i) => Run::Caller { start: i.into(), len: 1 },
                    Byte::Contract(i) => Run::Contract { start: i.into(), len: 1 },
                    Byte::Stored { read, offset } => Run::Stored { read: read.into(), offset: offset.into(), len: 1 },
                    other => Run::Other(other),
                });
            }
        }
        ByteTemplate { bytes, runs: runs.into_boxed_slice() }
    }
}

impl From<ByteTemplate> for Vec<Byte> {
    fn from(template: ByteTemplate) -> Vec<Byte> {
        template.bytes
    }
}

impl std::ops::Deref for ByteTemplate {
    type Target = [Byte];
    fn deref(&self) -> &[Byte] {
        &self.bytes
    }
}

impl std::fmt::Debug for ByteTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.bytes.fmt(f)
    }
}

impl PartialEq for ByteTemplate {
    fn eq(&self, other: &ByteTemplate) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for ByteTemplate {}

impl PartialEq<Vec<Byte>> for ByteTemplate {
    fn eq(&self, other: &Vec<Byte>) -> bool {
        &self.bytes == other
    }
}

impl PartialOrd for ByteTemplate {
    fn partial_cmp(&self, other: &ByteTemplate) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteTemplate {
    fn cmp(&self, other: &ByteTemplate) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl std::hash::Hash for ByteTemplate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

/// A call to another contract (or to this one).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CallTemplate {
    /// The callee's 32 address bytes.
    pub callee: ByteTemplate,
    /// The method, when it is a constant.
    pub method: Option<String>,
    /// The callee's input bytes, when their length is a constant.
    pub args: Option<ByteTemplate>,
}

impl CallTemplate {
    /// A call to anything.
    pub fn unknown() -> CallTemplate {
        CallTemplate { callee: vec![Byte::Unknown; chroma_host_api::ADDRESS_LEN].into(), method: None, args: None }
    }
}

/// An entry point's kind, as its ABI declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Mutating,
    View,
    Init,
}

impl From<MethodKind> for EntryKind {
    fn from(kind: MethodKind) -> Self {
        match kind {
            MethodKind::Mutating => EntryKind::Mutating,
            MethodKind::View => EntryKind::View,
            MethodKind::Init => EntryKind::Init,
        }
    }
}

/// A comparison the entry branched on, over bytes the predictor may be able
/// to evaluate for a transaction (input, caller, contract, stored values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// `lhs op rhs`, both little-endian words of `width` bytes (4 or 8);
    /// signed comparisons are two's complement at that width.
    Compare { op: Comparison, width: u8, lhs: Vec<Byte>, rhs: Vec<Byte> },
    /// Both literals hold.
    And(Literal, Literal),
    /// Either literal holds.
    Or(Literal, Literal),
}

/// A condition (by index into the entry's conditions) required to have a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Literal {
    pub condition: u32,
    pub value: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Eq,
    Ne,
    LtU,
    LtS,
    GtU,
    GtS,
    LeU,
    LeS,
    GeU,
    GeS,
}

impl Comparison {
    /// `a op b` on words of `width` bytes, as the Wasm comparison computes it
    /// (signed comparisons are two's complement at that width).
    pub fn eval(self, width: u8, a: u64, b: u64) -> bool {
        let bits = u32::from(width) * 8;
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let (a, b) = (a & mask, b & mask);
        let signed = |v: u64| -> i64 {
            if bits >= 64 {
                v as i64
            } else {
                ((v << (64 - bits)) as i64) >> (64 - bits)
            }
        };
        match self {
            Comparison::Eq => a == b,
            Comparison::Ne => a != b,
            Comparison::LtU => a < b,
            Comparison::GtU => a > b,
            Comparison::LeU => a <= b,
            Comparison::GeU => a >= b,
            Comparison::LtS => signed(a) < signed(b),
            Comparison::GtS => signed(a) > signed(b),
            Comparison::LeS => signed(a) <= signed(b),
            Comparison::GeS => signed(a) >= signed(b),
        }
    }
}

/// Which list of an [`AccessSummary`] a guarded template is in. Declared in
/// the order the predictor visits the lists (guards sort the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessKind {
    Read,
    Write,
    Add,
    Call,
}

/// A template that happens only on some paths: when at least one of
/// `any_of` (each a conjunction of literals) may hold. Templates without a
/// guard may happen on any path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub kind: AccessKind,
    pub index: u32,
    pub any_of: Vec<Vec<Literal>>,
}

/// What one entry point may access. `Byte::Stored { read, .. }` in any
/// template refers to `reads[read]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessSummary {
    pub name: String,
    pub kind: EntryKind,
    pub reads: Vec<KeyTemplate>,
    pub writes: Vec<KeyTemplate>,
    /// Commutative adds (`storage_add`), kept apart from plain writes.
    pub adds: Vec<KeyTemplate>,
    pub calls: Vec<CallTemplate>,
    /// Conditions the guards refer to.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Templates that happen only under some conditions.
    #[serde(default)]
    pub guards: Vec<Guard>,
    /// Set when the entry may access anything anywhere, with the reason.
    pub unbounded: Option<String>,
    /// Instructions the analysis interpreted for this entry.
    pub steps: u64,
    /// Whether a prediction should use an analysis of this entry for the
    /// call's input shape instead ([`analyze_for_shape`](crate::analyze_for_shape)):
    /// the entry takes strings, vectors or options, and this summary is not
    /// precise.
    #[serde(default)]
    pub by_shape: bool,
    /// For a summary made for one input shape ([`analyze_for_shape`](crate::analyze_for_shape)):
    /// the offsets of the input bytes the shape fixes (length prefixes,
    /// option tags). The summary holds only for inputs with the shape's
    /// bytes there, which a recipe recorded from it must check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape_fixed: Option<Vec<u32>>,
    /// `guards` and `conditions` made ready for the predictor, when first
    /// needed (derived: no part of comparisons or of the JSON).
    #[serde(skip)]
    pub(crate) compiled: CompiledCell,
}

impl AccessSummary {
    /// The guard of template `index` in list `kind`, if it has one.
    pub fn guard(&self, kind: AccessKind, index: usize) -> Option<&Guard> {
        self.guards.iter().find(|g| g.kind == kind && g.index as usize == index)
    }

    /// The guards and conditions made ready for the predictor (made on
    /// the first call).
    pub(crate) fn compiled(&self) -> &CompiledGuards {
        self.compiled.get(&self.conditions, &self.guards, &self.reads)
    }

    /// Whether every key is exact and every call fully resolved by the
    /// templates alone (before looking at state).
    pub fn is_precise(&self) -> bool {
        self.unbounded.is_none()
            && self.reads.iter().chain(&self.writes).chain(&self.adds).all(|k| k.exact)
            && self.calls.iter().all(|c| c.method.is_some() && c.args.is_some() && !c.callee.contains(&Byte::Unknown))
    }
}

/// The summaries of every entry point of one contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractSummary {
    /// Sorted by name.
    pub entries: Vec<AccessSummary>,
    /// Slots that no entry point but the constructor may write (or add to):
    /// their values are fixed once the contract is deployed, so keys built
    /// from them can be resolved by reading current state.
    pub fixed_slots: BTreeSet<u32>,
    /// The entries' names, hashed, made when first needed.
    #[serde(skip)]
    names: NameIndex,
}

/// Entries up to this many are found by a scan of their names' hashes;
/// more, by a binary search of the names.
const SCANNED_ENTRIES_MAX: usize = 32;

/// Each entry's name hashed, in the entries' order: the predictor looks an
/// entry up for every call it fills in, and a binary search of the names
/// read one entry (and one string) per step, each a cache miss once a
/// block's predictions had evicted them. Filling a block of 10,000 swaps
/// in took 22.3 ms that way and 21.0 ms with a scan of the hashes (one
/// thread; medians of five alternating runs). Derived from `entries`, so
/// it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
struct NameIndex(OnceLock<Box<[u64]>>);

impl PartialEq for NameIndex {
    fn eq(&self, _: &NameIndex) -> bool {
        true
    }
}

impl Eq for NameIndex {}

fn name_hash(name: &str) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    name.hash(&mut hasher);
    hasher.finish()
}

impl ContractSummary {
    /// `entries` (sorted here by name) and the slots only the constructor writes.
    pub fn new(mut entries: Vec<AccessSummary>, fixed_slots: BTreeSet<u32>) -> ContractSummary {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        ContractSummary { entries, fixed_slots, names: NameIndex::default() }
    }

    /// The entry point `name`.
    pub fn entry(&self, name: &str) -> Option<&AccessSummary> {
        if self.entries.len() <= SCANNED_ENTRIES_MAX {
            let hashes = self.names.0.get_or_init(|| self.entries.iter().map(|e| name_hash(&e.name)).collect());
            let wanted = name_hash(name);
            if let Some((_, entry)) = hashes.iter().zip(&self.entries).find(|&(&hash, entry)| hash == wanted && entry.name == name) {
                return Some(entry);
            }
        }
        // Also when the scan finds nothing, so that an entry added after
        // the hashes were made is still found.
        self.entries.binary_search_by(|e| e.name.as_str().cmp(name)).ok().map(|i| &self.entries[i])
    }

    /// A summary that says nothing: every entry may access anything.
    pub fn unbounded(entries: impl IntoIterator<Item = (String, EntryKind)>, why: &str) -> ContractSummary {
        let entries: Vec<AccessSummary> = entries
            .into_iter()
            .map(|(name, kind)| AccessSummary {
                name,
                kind,
                reads: vec![KeyTemplate::any()],
                writes: vec![KeyTemplate::any()],
                adds: vec![KeyTemplate::any()],
                calls: vec![CallTemplate::unknown()],
                conditions: Vec::new(),
                guards: Vec::new(),
                unbounded: Some(why.to_string()),
                steps: 0,
                by_shape: false,
                shape_fixed: None,
                compiled: CompiledCell::default(),
            })
            .collect();
        ContractSummary::new(entries, BTreeSet::new())
    }

    pub(crate) fn compute_fixed_slots(entries: &[AccessSummary]) -> BTreeSet<u32> {
        let mut written = BTreeSet::new();
        for entry in entries.iter().filter(|e| e.kind != EntryKind::Init) {
            if entry.unbounded.is_some() {
                return BTreeSet::new();
            }
            for key in entry.writes.iter().chain(&entry.adds) {
                match key.slot {
                    Some(slot) => {
                        written.insert(slot);
                    }
                    None => return BTreeSet::new(),
                }
            }
        }
        let mut fixed = BTreeSet::new();
        for entry in entries {
            for key in entry.reads.iter().chain(&entry.writes).chain(&entry.adds) {
                if let Some(slot) = key.slot {
                    if !written.contains(&slot) {
                        fixed.insert(slot);
                    }
                }
            }
        }
        fixed
    }
}

#[cfg(test)]
mod tests {
    use super::{ByteTemplate, Comparison, ContractSummary, EntryKind, Run};
    use crate::domain::Byte;

    /// Entries are found by name whether scanned by hash or searched, in a
    /// summary deserialized (without its hashes) or grown after a lookup.
    #[test]
    fn entries_are_found_by_name() {
        for count in [1, 5, super::SCANNED_ENTRIES_MAX, super::SCANNED_ENTRIES_MAX + 1, 200] {
            let names: Vec<String> = (0..count).map(|i| format!("m{}", i * 7 % count)).collect();
            let summary = ContractSummary::unbounded(names.iter().map(|n| (n.clone(), EntryKind::Mutating)), "test");
            let copy: ContractSummary = serde_json::from_str(&serde_json::to_string(&summary).expect("serializes")).expect("deserializes");
            for summary in [&summary, &copy] {
                for name in &names {
                    assert_eq!(summary.entry(name).map(|e| e.name.as_str()), Some(name.as_str()), "{count} entries");
                }
                for missing in ["", "m", "mm", "m-1", &format!("m{count}")] {
                    assert!(summary.entry(missing).is_none(), "{missing} in {count} entries");
                }
            }
            let mut grown = summary.clone();
            assert!(grown.entry("m0").is_some());
            let mut added = ContractSummary::unbounded([("n".to_string(), EntryKind::View)], "test").entries;
            grown.entries.append(&mut added);
            assert_eq!(grown.entry("n").map(|e| e.kind), Some(EntryKind::View), "{count} entries");
        }
    }

    #[test]
    fn templates_group_their_bytes_into_runs_of_one_source() {
        let bytes = vec![
            Byte::Const(7),
            Byte::Const(8),
            Byte::Input(4),
            Byte::Input(5),
            Byte::Input(7), // not consecutive: a new run
            Byte::Caller(0),
            Byte::Caller(1),
            Byte::Stored { read: 1, offset: 0 },
            Byte::Stored { read: 1, offset: 1 },
            Byte::Stored { read: 2, offset: 2 }, // another read
            Byte::Unknown,
            Byte::Contract(31),
        ];
        let template = ByteTemplate::from(bytes.clone());
        assert_eq!(
            template.runs(),
            [
                Run::Const(Box::new([7, 8])),
                Run::Input { start: 4, len: 2 },
                Run::Input { start: 7, len: 1 },
                Run::Caller { start: 0, len: 2 },
                Run::Stored { read: 1, offset: 0, len: 2 },
                Run::Stored { read: 2, offset: 2, len: 1 },
                Run::Other(Byte::Unknown),
                Run::Contract { start: 31, len: 1 },
            ]
        );
        // Runs cover every byte, and the template is its bytes to everything else.
        let covered: usize = template
            .runs()
            .iter()
            .map(|run| match run {
                Run::Const(c) => c.len(),
                Run::Input { len, .. } | Run::Caller { len, .. } | Run::Contract { len, .. } | Run::Stored { len, .. } => *len,
                Run::Other(_) => 1,
            })
            .sum();
        assert_eq!(covered, bytes.len());
        assert!(template == bytes && *template == bytes[..]);
        assert_eq!(serde_json::to_string(&template).unwrap(), serde_json::to_string(&bytes).unwrap());
    }

    #[test]
    fn comparisons_follow_wasm_at_their_width() {
        // -1 as an i32 is below 0 signed, above it unsigned; high bits beyond the width are ignored.
        assert!(Comparison::LtS.eval(4, 0xffff_ffff, 0));
        assert!(Comparison::GtU.eval(4, 0xffff_ffff, 0));
        assert!(Comparison::Eq.eval(4, 0x1_0000_0005, 5));
        assert!(!Comparison::Eq.eval(8, 0x1_0000_0005, 5));
        assert!(Comparison::GeS.eval(8, 0, u64::MAX));
        assert!(Comparison::LeU.eval(8, 7, 7) && !Comparison::Ne.eval(8, 7, 7));
    }
}
