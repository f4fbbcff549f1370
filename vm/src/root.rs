//! The state root: a blake3 commitment to every (key, value) in the state.
//!
//! It is a lattice-based homomorphic multiset hash (LtHash, as in Bellare and
//! Micciancio's incremental hashing and Facebook's LtHash16): each entry maps,
//! through blake3's extendable output, to 1024 lanes of 16 bits; the state's
//! accumulator is the lane-wise sum (mod 2^16) over all entries; the root is
//! the blake3 hash of the accumulator. Hence:
//! - changing a key costs one subtraction (old entry) and one addition (new
//!   entry): a block's commit is proportional to the keys it changes;
//! - addition commutes, so the root does not depend on the order writes were
//!   applied in, or on how a block was split into groups.
//!
//! It commits to the state but gives no inclusion proofs (a Merkle tree
//! would); light clients are not a goal yet.

/// Lanes in the accumulator.
pub const LANES: usize = 1024;
/// Bytes of an encoded accumulator.
pub const ACCUMULATOR_LEN: usize = LANES * 2;

/// The running sum over all entries.
#[derive(Clone, PartialEq, Eq)]
pub struct StateHash {
    lanes: Box<[u16; LANES]>,
}

impl Default for StateHash {
    fn default() -> Self {
        StateHash { lanes: Box::new([0; LANES]) }
    }
}

impl std::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateHash({})", hex(&self.root()))
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn element(key: &[u8], value: &[u8]) -> [u16; LANES] {
    // Deriving the key hashes the context string: done once, then copied.
    static ENTRY_HASHER: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key("chroma 2026 state entry"));
    let mut hasher = ENTRY_HASHER.clone();
    // Length-prefix the key so (key, value) pairs cannot be confused.
    hasher.update(&(key.len() as u32).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    let mut bytes = [0u8; ACCUMULATOR_LEN];
    hasher.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl StateHash {
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        for (acc, x) in self.lanes.iter_mut().zip(element(key, value)) {
            *acc = acc.wrapping_add(x);
        }
    }

    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        for (acc, x) in self.lanes.iter_mut().zip(element(key, value)) {
            *acc = acc.wrapping_sub(x);
        }
    }

    /// Adds every entry of `other` (the accumulators of two disjoint sets of
    /// changes combine into that of both, in either order).
    pub fn merge(&mut self, other: &StateHash) {
        for (acc, x) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *acc = acc.wrapping_add(*x);
        }
    }

    /// The 32-byte state root.
    pub fn root(&self) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("chroma 2026 state root").update(&self.to_bytes()).finalize().as_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<StateHash> {
        if bytes.len() != ACCUMULATOR_LEN {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(StateHash { lanes })
    }

    /// The hash of a whole state, from scratch (for checking the incremental one).
    pub fn of<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> StateHash {
        let mut hash = StateHash::default();
        for (key, value) in entries {
            hash.insert(key, value);
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn incremental_equals_from_scratch_in_any_order(
            ops in proptest::collection::vec((0u8..16, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))), 1..60)
        ) {
            let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut hash = StateHash::default();
            for (k, v) in &ops {
                let key = vec![*k];
                if let Some(old) = state.remove(&key) {
                    hash.remove(&key, &old);
                }
                if let Some(new) = v {
                    hash.insert(&key, new);
                    state.insert(key, new.clone());
                }
            }
            let scratch = StateHash::of(state.iter().map(|(k, v)| (k.as_slice(), v.as_slice())));
            prop_assert_eq!(hash.root(), scratch.root());
            let reversed = StateHash::of(state.iter().rev().map(|(k, v)| (k.as_slice(), v.as_slice())));
            prop_assert_eq!(reversed.root(), scratch.root());
        }
    }

    /// A change computed apart (as a block's commit does, on another
    /// thread) and merged gives the root of applying it in place.
    #[test]
    fn a_merged_change_equals_the_change_in_place() {
        let mut in_place = StateHash::of([(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"2"[..])]);
        let mut apart = in_place.clone();
        in_place.remove(b"a", b"1");
        in_place.insert(b"a", b"3");
        in_place.insert(b"c", b"4");
        let mut change = StateHash::default();
        change.insert(b"c", b"4");
        change.remove(b"a", b"1");
        change.insert(b"a", b"3");
        apart.merge(&change);
        assert_eq!(apart.root(), in_place.root());
        assert_eq!(in_place.root(), StateHash::of([(&b"a"[..], &b"3"[..]), (&b"b"[..], &b"2"[..]), (&b"c"[..], &b"4"[..])]).root());
    }

    #[test]
    fn roots_distinguish_states() {
        let empty = StateHash::default().root();
        let a = StateHash::of([(&b"k"[..], &b"1"[..])]).root();
        let b = StateHash::of([(&b"k"[..], &b"2"[..])]).root();
        let c = StateHash::of([(&b"k1"[..], &b""[..])]).root();
        assert_ne!(empty, a);
        assert_ne!(a, b);
        assert_ne!(a, c);
        let bytes = StateHash::of([(&b"k"[..], &b"1"[..])]).to_bytes();
        assert_eq!(StateHash::from_bytes(&bytes).map(|h| h.root()), Some(a));
        assert!(StateHash::from_bytes(&bytes[1..]).is_none());
    }
}
