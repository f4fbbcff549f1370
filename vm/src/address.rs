//! Deterministic addresses.

use chroma_host_api::Address;

/// The address of the contract `deployer` deploys with transaction `nonce`.
pub fn contract_address(deployer: &Address, nonce: u64) -> Address {
    let mut hasher = blake3::Hasher::new_derive_key("chroma 2026 contract address");
    hasher.update(deployer.as_bytes());
    hasher.update(&nonce.to_le_bytes());
    Address(*hasher.finalize().as_bytes())
}

/// The address of the local development account `name` (alice, bob, ...).
/// Dev accounts have no keys: the dev VM trusts the sender it is given.
pub fn dev_account(name: &str) -> Address {
    let mut hasher = blake3::Hasher::new_derive_key("chroma 2026 dev account");
    hasher.update(name.as_bytes());
    Address(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_deterministic_and_distinct() {
        let alice = dev_account("alice");
        assert_eq!(alice, dev_account("alice"));
        assert_ne!(alice, dev_account("bob"));
        assert_eq!(contract_address(&alice, 0), contract_address(&alice, 0));
        assert_ne!(contract_address(&alice, 0), contract_address(&alice, 1));
        assert_ne!(contract_address(&alice, 0), contract_address(&dev_account("bob"), 0));
    }
}
