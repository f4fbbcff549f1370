//! A name registry: first come, first served names, transferable by their owner.

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod registry {
    use super::*;

    const OWNERS: Map<String, Address> = Map::new(0);
    const COUNT: Item<u128> = Item::new(1);

    /// Longest name, in bytes.
    pub const MAX_NAME_LEN: usize = 64;

    fn check_name(name: &str) {
        require!(!name.is_empty() && name.len() <= MAX_NAME_LEN, "name must be 1 to 64 bytes");
        require!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
            "name may contain only a-z, 0-9, '-' and '.'"
        );
    }

    /// Registers `name` to the caller; fails if it is taken.
    #[entry]
    pub fn register(name: String) {
        check_name(&name);
        require!(!OWNERS.contains(&name), "name {:?} is already registered", name);
        let owner = caller();
        OWNERS.set(&name, &owner);
        COUNT.add(1);
        emit("Registered", &(name, owner));
    }

    /// Gives `name` to `to`. Only its owner may.
    #[entry]
    pub fn transfer(name: String, to: Address) {
        let Some(owner) = OWNERS.get(&name) else { revert("name is not registered") };
        require!(owner == caller(), "only the owner of a name can transfer it");
        OWNERS.set(&name, &to);
        emit("NameTransferred", &(name, owner, to));
    }

    /// The owner of `name`, if registered.
    #[entry(view)]
    pub fn resolve(name: String) -> Option<Address> {
        OWNERS.get(&name)
    }

    /// How many names were ever registered.
    #[entry(view)]
    pub fn count() -> u128 {
        COUNT.get_or_default()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chroma_sdk::testing::{Failure, MockChain};
    use std::string::ToString;

    #[test]
    fn register_resolve_transfer() {
        let mut chain = MockChain::new();
        let (alice, bob) = (MockChain::account("alice"), MockChain::account("bob"));
        let r = chain.deploy(&registry::CONTRACT, alice, ()).expect("deploys");
        chain.call::<()>(alice, r, "register", ("alice.chroma".to_string(),)).expect("register");
        assert_eq!(chain.query::<Option<Address>>(r, "resolve", ("alice.chroma".to_string(),)), Ok(Some(alice)));
        assert_eq!(chain.query::<Option<Address>>(r, "resolve", ("nobody".to_string(),)), Ok(None));
        let taken = chain.call::<()>(bob, r, "register", ("alice.chroma".to_string(),));
        assert_eq!(taken, Err(Failure::Reverted("name \"alice.chroma\" is already registered".into())));
        let stolen = chain.call::<()>(bob, r, "transfer", ("alice.chroma".to_string(), bob));
        assert_eq!(stolen, Err(Failure::Reverted("only the owner of a name can transfer it".into())));
        chain.call::<()>(alice, r, "transfer", ("alice.chroma".to_string(), bob)).expect("transfer");
        assert_eq!(chain.query::<Option<Address>>(r, "resolve", ("alice.chroma".to_string(),)), Ok(Some(bob)));
        assert_eq!(chain.query::<u128>(r, "count", ()), Ok(1));
        let missing = chain.call::<()>(alice, r, "transfer", ("ghost".to_string(), bob));
        assert_eq!(missing, Err(Failure::Reverted("name is not registered".into())));
    }

    #[test]
    fn names_are_validated() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let r = chain.deploy(&registry::CONTRACT, alice, ()).expect("deploys");
        for bad in ["", "UPPER", "has space", &"x".repeat(65)] {
            let result = chain.call::<()>(alice, r, "register", (bad.to_string(),));
            assert!(matches!(result, Err(Failure::Reverted(_))), "{bad:?} accepted");
        }
        assert!(chain.call::<()>(alice, r, "register", ("x".repeat(64),)).is_ok());
    }
}
