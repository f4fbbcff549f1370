//! A counter: one hot key. `increment` reads and writes it, so every two
//! increments conflict; `add` uses the host's commutative add, so adds never
//! conflict with each other (only with `increment` and `get`).

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod counter {
    use super::*;

    const COUNT: Item<u128> = Item::new(0);

    /// Adds one (read-modify-write) and returns the new count.
    #[entry]
    pub fn increment() -> u128 {
        let next = COUNT.get_or_default().checked_add(1);
        let Some(next) = next else { revert("counter overflow") };
        COUNT.set(&next);
        next
    }

    /// Adds `amount` with the commutative add (saturating, returns nothing).
    #[entry]
    pub fn add(amount: u128) {
        COUNT.add(amount);
    }

    #[entry(view)]
    pub fn get() -> u128 {
        COUNT.get_or_default()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chroma_sdk::testing::{Failure, MockChain};

    #[test]
    fn increment_and_add_share_the_key() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let c = chain.deploy(&counter::CONTRACT, alice, ()).expect("deploys");
        assert_eq!(chain.call::<u128>(alice, c, "increment", ()), Ok(1));
        assert_eq!(chain.call::<u128>(alice, c, "increment", ()), Ok(2));
        chain.call::<()>(alice, c, "add", (40u128,)).expect("add");
        assert_eq!(chain.query::<u128>(c, "get", ()), Ok(42));
    }

    #[test]
    fn add_saturates_and_increment_then_reverts() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let c = chain.deploy(&counter::CONTRACT, alice, ()).expect("deploys");
        chain.call::<()>(alice, c, "add", (u128::MAX - 1,)).expect("add");
        chain.call::<()>(alice, c, "add", (5u128,)).expect("add saturates");
        assert_eq!(chain.query::<u128>(c, "get", ()), Ok(u128::MAX));
        assert_eq!(chain.call::<u128>(alice, c, "increment", ()), Err(Failure::Reverted("counter overflow".into())));
        assert_eq!(chain.query::<u128>(c, "get", ()), Ok(u128::MAX));
    }

    #[test]
    fn views_cannot_write_and_bad_input_is_refused() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let c = chain.deploy(&counter::CONTRACT, alice, ()).expect("deploys");
        assert!(matches!(chain.query::<u128>(c, "increment", ()), Err(Failure::Trapped(m)) if m.contains("view")));
        assert!(matches!(chain.call::<()>(alice, c, "add", (1u8,)), Err(Failure::BadInput(_))));
        assert_eq!(chain.call::<()>(alice, c, "nope", ()), Err(Failure::NoSuchMethod("nope".into())));
        assert_eq!(chain.query::<u128>(c, "get", ()), Ok(0));
    }
}
