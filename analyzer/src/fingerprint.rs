//! A key pattern's fingerprint: the 64-bit word the planner knows a
//! resource by (see `plan::fingerprint`).
//!
//! The bytes are folded sixteen at a time, as `rustc-hash` folds a slice
//! (a multiply of two words into 128 bits, its halves xored), with whether
//! the pattern is a prefix in the seed. Its own rather than a `Hasher`'s:
//! a template's key starts with constants (a balance key with its
//! contract's address), and the fold over those is made once, when the
//! template is, and resumed by each call that follows it (see
//! [`Folded`]). Through `FxHasher`, which also mixes in the variant and
//! the length, a followed transfer's three keys took 182 instructions to
//! fingerprint; folded here, resumed after the constants, 132.

use crate::predict::PatternRef;

const SEED0: u64 = 0x243f_6a88_85a3_08d3;
const SEED1: u64 = 0x1319_8a2e_0370_7344;
/// Xored into each chunk's second word, so that zeros do not fold into
/// zeros.
const NOT_ZERO: u64 = 0xa409_3822_299f_31d0;
/// Xored into the seed of a prefix: a prefix and the key of its bytes are
/// two resources.
const PREFIX_SEED: u64 = 0x0827_7f6e_3e35_d2c1;

const CHUNK: usize = 16;

/// The product of `x` and `y` in 128 bits, its halves xored.
#[inline(always)]
fn multiply_mix(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A chunk's two words, from one read of its sixteen bytes.
#[inline(always)]
fn words(chunk: &[u8; CHUNK]) -> (u64, u64) {
    let both = u128::from_le_bytes(*chunk);
    (both as u64, (both >> 64) as u64)
}

#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|word| word.first_chunk::<8>()).map_or(0, |word| u64::from_le_bytes(*word))
}

/// The fold of a key's first chunks of sixteen bytes: where its
/// fingerprint's fold resumes (see [`Folded::over`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Folded {
    /// The bytes folded: a multiple of [`CHUNK`].
    folded: usize,
    s0: u64,
    s1: u64,
}

impl Folded {
    /// Nothing folded yet, for an exact key or a prefix.
    #[inline(always)]
    fn start(prefix: bool) -> Folded {
        Folded { folded: 0, s0: SEED0, s1: if prefix { SEED1 ^ PREFIX_SEED } else { SEED1 } }
    }

    /// The fold of the chunks of a key `len` bytes long that lie within its
    /// first bytes, `constant` (the same in every key it is resumed for):
    /// every chunk that [`fingerprint`] folds in its loop, not the last
    /// bytes, which it takes in their own step.
    pub(crate) fn over(constant: &[u8], len: usize, prefix: bool) -> Folded {
        let mut folded = Folded::start(prefix);
        if len > CHUNK {
            folded.fold(constant, constant.len().min(len - 1));
        }
        folded
    }

    /// Folds `bytes`' chunks from the next one, each that ends by `end`.
    #[inline(always)]
    fn fold(&mut self, bytes: &[u8], end: usize) {
        let Folded { folded, s0, s1 } = self;
        let Some(run) = bytes.get(*folded..end) else { return };
        let chunks = run.as_chunks::<CHUNK>().0;
        for chunk in chunks {
            let (x, y) = words(chunk);
            // Two streams, each chunk into one of them in turn.
            let mixed = multiply_mix(*s0 ^ x, NOT_ZERO ^ y);
            *s0 = *s1;
            *s1 = mixed;
        }
        *folded += chunks.len() * CHUNK;
    }
}

/// The fingerprint of `key` (a prefix or not, as `folded` was made),
/// whose first chunks `folded` holds: the one [`fingerprint_of`] makes of
/// the same pattern.
#[inline(always)]
pub(crate) fn fingerprint(key: &[u8], mut folded: Folded) -> u64 {
    let len = key.len();
    if len <= CHUNK {
        let (s0, s1) = if len >= 8 {
            (word(key, 0), word(key, len - 8))
        } else if len >= 4 {
            let half = |at: usize| key.get(at..at + 4).and_then(|h| h.first_chunk::<4>()).map_or(0, |h| u64::from(u32::from_le_bytes(*h)));
            (half(0), half(len - 4))
        } else if len > 0 {
            (u64::from(key[0]), u64::from(key[len - 1]) << 8 | u64::from(key[len / 2]))
        } else {
            (0, 0)
        };
        folded.s0 ^= s0;
        folded.s1 ^= s1;
    } else {
        // The last sixteen bytes in a step of their own (they may overlap
        // the last chunk folded).
        folded.fold(key, len - 1);
        let (x, y) = key.last_chunk::<CHUNK>().map_or((0, 0), words);
        folded.s0 ^= x;
        folded.s1 ^= y;
    }
    multiply_mix(folded.s0, folded.s1) ^ len as u64
}

/// The fingerprint of `pattern`.
#[inline(always)]
pub(crate) fn fingerprint_of(pattern: PatternRef<'_>) -> u64 {
    match pattern {
        PatternRef::Exact(key) => fingerprint(key, Folded::start(false)),
        PatternRef::Prefix(prefix) => fingerprint(prefix, Folded::start(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_fold_is_the_whole_folds() {
        let key: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..key.len() {
            for prefix in [false, true] {
                let whole = fingerprint_of(if prefix { PatternRef::Prefix(&key[..len]) } else { PatternRef::Exact(&key[..len]) });
                for constant in 0..=len {
                    assert_eq!(fingerprint(&key[..len], Folded::over(&key[..constant], len, prefix)), whole, "len {len}, constant {constant}");
                }
            }
        }
    }

    #[test]
    fn keys_that_differ_anywhere_have_other_fingerprints() {
        let key = [7u8; 68];
        let mut seen = std::collections::BTreeSet::new();
        for len in 0..key.len() {
            assert!(seen.insert(fingerprint_of(PatternRef::Exact(&key[..len]))), "exact, len {len}");
            assert!(seen.insert(fingerprint_of(PatternRef::Prefix(&key[..len]))), "prefix, len {len}");
            for at in 0..len {
                let mut other = key;
                other[at] ^= 1;
                assert!(seen.insert(fingerprint_of(PatternRef::Exact(&other[..len]))), "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn the_high_bits_spread() {
        // `plan::shard_of` takes the top three bits.
        let mut counts = [0u32; 8];
        for i in 0..8_000u32 {
            let mut key = [0u8; 68];
            key[36..40].copy_from_slice(&i.to_le_bytes());
            counts[(fingerprint_of(PatternRef::Exact(&key)) >> 61) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1_200).contains(&n)), "{counts:?}");
    }
}
