//! The layout of storage keys.
//!
//! A contract names a storage location by a constant slot id and key bytes:
//! `balances[to]` is slot 1 (say) with the 32 bytes of `to`. The host prefixes
//! the contract's own address, so the full key in the state is
//!
//! ```text
//! contract address (32 bytes) ‖ slot id (u32, big-endian) ‖ key bytes (0..=MAX_KEY_LEN)
//! ```
//!
//! A contract can therefore only reach its own keys; another contract's state
//! is reachable only by calling it. Big-endian slot ids keep one slot's keys
//! together in key order, so a slot is a key prefix (the analyzer's wildcards
//! and `chroma state` listings rely on that).

use alloc::vec::Vec;

use crate::address::{Address, ADDRESS_LEN};

/// A storage slot id: a constant chosen by the contract for each `Item` / `Map`.
pub type Slot = u32;

/// Bytes of the encoded slot id.
pub const SLOT_LEN: usize = 4;

/// Bytes before the contract-chosen key bytes: address and slot.
pub const KEY_PREFIX_LEN: usize = ADDRESS_LEN + SLOT_LEN;

/// The full state key of `key` in `slot` of `contract`.
pub fn storage_key(contract: &Address, slot: Slot, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(KEY_PREFIX_LEN + key.len());
    full.extend_from_slice(contract.as_bytes());
    full.extend_from_slice(&slot.to_be_bytes());
    full.extend_from_slice(key);
    full
}

/// The prefix shared by every key of `slot` in `contract`.
pub fn slot_prefix(contract: &Address, slot: Slot) -> [u8; KEY_PREFIX_LEN] {
    let mut prefix = [0u8; KEY_PREFIX_LEN];
    prefix[..ADDRESS_LEN].copy_from_slice(contract.as_bytes());
    prefix[ADDRESS_LEN..].copy_from_slice(&slot.to_be_bytes());
    prefix
}

/// Splits a full state key into contract, slot and key bytes.
pub fn split_storage_key(full: &[u8]) -> Option<(Address, Slot, &[u8])> {
    if full.len() < KEY_PREFIX_LEN {
        return None;
    }
    let mut address = [0u8; ADDRESS_LEN];
    address.copy_from_slice(&full[..ADDRESS_LEN]);
    let mut slot = [0u8; SLOT_LEN];
    slot.copy_from_slice(&full[ADDRESS_LEN..KEY_PREFIX_LEN]);
    Some((Address(address), Slot::from_be_bytes(slot), &full[KEY_PREFIX_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_split() {
        let c = Address([9; 32]);
        let full = storage_key(&c, 0x0102_0304, b"abc");
        assert_eq!(full.len(), KEY_PREFIX_LEN + 3);
        assert_eq!(&full[32..36], &[1, 2, 3, 4]);
        assert!(full.starts_with(&slot_prefix(&c, 0x0102_0304)));
        assert_eq!(split_storage_key(&full), Some((c, 0x0102_0304, &b"abc"[..])));
        assert_eq!(split_storage_key(&full[..35]), None);
    }

    #[test]
    fn slots_sort_together() {
        let c = Address([1; 32]);
        let a = storage_key(&c, 1, &[0xff; 8]);
        let b = storage_key(&c, 2, &[]);
        assert!(a < b, "every key of slot 1 sorts before slot 2");
    }
}

/// The slot the VM keeps its own per-address records in (a contract's code
/// hash, an account's nonce), so the state root commits to them too. Contracts
/// cannot use it: the host refuses it with `HostError::ReservedSlot`.
pub const SYSTEM_SLOT: Slot = Slot::MAX;

/// The system record (under [`SYSTEM_SLOT`] of an account) holding the
/// account's next nonce, which every transaction it sends reads and writes.
pub const NONCE_RECORD: &[u8] = b"nonce";

/// The state key of `account`'s nonce.
pub fn nonce_key(account: &Address) -> Vec<u8> {
    storage_key(account, SYSTEM_SLOT, NONCE_RECORD)
}
