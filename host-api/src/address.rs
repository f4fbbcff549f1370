//! Account and contract addresses.

use core::fmt;

/// Length in bytes of an [`Address`].
pub const ADDRESS_LEN: usize = 32;

/// A 32-byte account or contract address.
///
/// Accounts and contracts share one address space. The VM derives contract
/// addresses deterministically (see the VM crate); the SDK never computes them.
#[derive(Clone, Copy, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address(pub [u8; ADDRESS_LEN]);

/// Compared as four little-endian words, each one test, rather than with
/// `memcmp`: in a contract the analyzer then sees `token_in == token_a` as
/// comparisons of input and stored bytes, which it can decide when it fills
/// a transaction in (an AMM swap then predicts only the direction it takes).
impl PartialEq for Address {
    #[inline]
    fn eq(&self, other: &Address) -> bool {
        let word = |a: &[u8; ADDRESS_LEN], i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&a[8 * i..8 * i + 8]);
            u64::from_le_bytes(w)
        };
        word(&self.0, 0) == word(&other.0, 0)
            && word(&self.0, 1) == word(&other.0, 1)
            && word(&self.0, 2) == word(&other.0, 2)
            && word(&self.0, 3) == word(&other.0, 3)
    }
}

impl Address {
    /// The all-zero address. No key pair or deployment produces it; contracts use
    /// it as "nobody" (for example the `from` of a mint event).
    pub const ZERO: Address = Address([0; ADDRESS_LEN]);

    pub const fn new(bytes: [u8; ADDRESS_LEN]) -> Self {
        Address(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; ADDRESS_LEN] {
        &self.0
    }

    /// Parses 64 hexadecimal digits, with or without a `0x` prefix.
    pub fn from_hex(text: &str) -> Option<Address> {
        let digits = text.strip_prefix("0x").unwrap_or(text).as_bytes();
        if digits.len() != ADDRESS_LEN * 2 {
            return None;
        }
        let mut out = [0u8; ADDRESS_LEN];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(Address(out))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Full lowercase hex with a `0x` prefix.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Abbreviated (`0x1a2b3c4d…`), for logs and test failures.
impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn hex_round_trip() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        let a = Address(bytes);
        let text = a.to_string();
        assert_eq!(text.len(), 66);
        assert_eq!(Address::from_hex(&text), Some(a));
        assert_eq!(Address::from_hex(&text[2..]), Some(a));
        assert_eq!(Address::from_hex(&text.to_uppercase()[2..]), Some(a));
    }

    #[test]
    fn hex_rejects_bad_input() {
        assert_eq!(Address::from_hex("0x12"), None);
        assert_eq!(Address::from_hex(&"g".repeat(64)), None);
        assert_eq!(Address::from_hex(""), None);
    }
}
