//! A fungible token.
//!
//! The whole supply is minted to the deployer at init; the owner (the
//! deployer) may mint more. Balances are credited with the host's commutative
//! add, so many transfers *to* one account (a pool, a merchant) do not conflict
//! with each other; only debits read the balance. An allowance of `u128::MAX`
//! is unlimited and never written back, so routers approved once do not
//! serialize on the allowance key.

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod token {
    use super::*;

    const OWNER: Item<Address> = Item::new(0);
    const SYMBOL: Item<String> = Item::new(1);
    const TOTAL_SUPPLY: Item<u128> = Item::new(2);
    const BALANCES: Map<Address, u128> = Map::new(3);
    /// Keyed by (owner, spender).
    const ALLOWANCES: Map<(Address, Address), u128> = Map::new(4);

    /// Symbols are short tickers.
    const MAX_SYMBOL_LEN: usize = 16;

    /// Creates the token with `supply` units, all owned by the deployer.
    #[entry(init)]
    pub fn init(symbol: String, supply: u128) {
        require!(!symbol.is_empty() && symbol.len() <= MAX_SYMBOL_LEN, "symbol must be 1 to 16 bytes");
        let owner = caller();
        OWNER.set(&owner);
        SYMBOL.set(&symbol);
        TOTAL_SUPPLY.set(&supply);
        BALANCES.set(&owner, &supply);
        emit("Transfer", &(Address::ZERO, owner, supply));
    }

    /// Moves `amount` from the caller to `to`.
    #[entry]
    pub fn transfer(to: Address, amount: u128) {
        move_tokens(caller(), to, amount);
    }

    /// Lets `spender` move up to `amount` of the caller's tokens
    /// (`u128::MAX`: unlimited).
    #[entry]
    pub fn approve(spender: Address, amount: u128) {
        let owner = caller();
        ALLOWANCES.set(&(owner, spender), &amount);
        emit("Approval", &(owner, spender, amount));
    }

    /// Moves `amount` from `from` to `to`, spending the caller's allowance.
    #[entry]
    pub fn transfer_from(from: Address, to: Address, amount: u128) {
        let spender = caller();
        let allowed = ALLOWANCES.get_or_default(&(from, spender));
        require!(allowed >= amount, "insufficient allowance: {} approved, {} requested", allowed, amount);
        if allowed != u128::MAX {
            ALLOWANCES.set(&(from, spender), &(allowed - amount));
        }
        move_tokens(from, to, amount);
    }

    /// Creates `amount` new tokens for `to`. Owner only.
    #[entry]
    pub fn mint(to: Address, amount: u128) {
        require!(caller() == OWNER.get().unwrap_or_default(), "only the owner can mint");
        let Some(supply) = TOTAL_SUPPLY.get_or_default().checked_add(amount) else {
            revert("total supply would overflow");
        };
        TOTAL_SUPPLY.set(&supply);
        BALANCES.add(&to, amount);
        emit("Transfer", &(Address::ZERO, to, amount));
    }

    #[entry(view)]
    pub fn balance_of(owner: Address) -> u128 {
        BALANCES.get_or_default(&owner)
    }

    #[entry(view)]
    pub fn allowance(owner: Address, spender: Address) -> u128 {
        ALLOWANCES.get_or_default(&(owner, spender))
    }

    #[entry(view)]
    pub fn total_supply() -> u128 {
        TOTAL_SUPPLY.get_or_default()
    }

    #[entry(view)]
    pub fn symbol() -> String {
        SYMBOL.get().unwrap_or_default()
    }

    #[entry(view)]
    pub fn owner() -> Address {
        OWNER.get().unwrap_or_default()
    }

    fn move_tokens(from: Address, to: Address, amount: u128) {
        let balance = BALANCES.get_or_default(&from);
        require!(balance >= amount, "insufficient balance: {} available, {} requested", balance, amount);
        BALANCES.set(&from, &(balance - amount));
        // Cannot overflow: every balance is at most the total supply.
        BALANCES.add(&to, amount);
        emit("Transfer", &(from, to, amount));
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chroma_sdk::testing::{Failure, MockChain};
    use std::string::ToString;

    struct Setup {
        chain: MockChain,
        token: Address,
        alice: Address,
        bob: Address,
        carol: Address,
    }

    fn setup(supply: u128) -> Setup {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let token = chain.deploy(&token::CONTRACT, alice, ("TOK".to_string(), supply)).expect("deploys");
        Setup { chain, token, alice, bob: MockChain::account("bob"), carol: MockChain::account("carol") }
    }

    fn balance(s: &Setup, who: Address) -> u128 {
        s.chain.query(s.token, "balance_of", (who,)).expect("balance_of")
    }

    #[test]
    fn init_gives_the_supply_to_the_deployer() {
        let s = setup(1_000);
        assert_eq!(balance(&s, s.alice), 1_000);
        assert_eq!(s.chain.query::<u128>(s.token, "total_supply", ()), Ok(1_000));
        assert_eq!(s.chain.query::<String>(s.token, "symbol", ()), Ok("TOK".into()));
        assert_eq!(s.chain.query::<Address>(s.token, "owner", ()), Ok(s.alice));
        let events = s.chain.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name, "Transfer");
        assert_eq!(events[0].decode::<(Address, Address, u128)>(), Ok((Address::ZERO, s.alice, 1_000)));
    }

    #[test]
    fn bad_symbol_fails_deploy() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let result = chain.deploy(&token::CONTRACT, alice, (String::new(), 1u128));
        assert_eq!(result, Err(Failure::Reverted("symbol must be 1 to 16 bytes".into())));
        assert_eq!(chain.storage_len(), 0);
    }

    #[test]
    fn transfer_moves_balance_and_emits() {
        let mut s = setup(1_000);
        s.chain.take_events();
        s.chain.call::<()>(s.alice, s.token, "transfer", (s.bob, 300u128)).expect("transfer");
        assert_eq!((balance(&s, s.alice), balance(&s, s.bob)), (700, 300));
        let events = s.chain.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].decode::<(Address, Address, u128)>(), Ok((s.alice, s.bob, 300)));
        // To oneself: no change.
        s.chain.call::<()>(s.bob, s.token, "transfer", (s.bob, 300u128)).expect("self transfer");
        assert_eq!(balance(&s, s.bob), 300);
    }

    #[test]
    fn insufficient_balance_reverts_without_effects() {
        let mut s = setup(100);
        s.chain.take_events();
        let result = s.chain.call::<()>(s.bob, s.token, "transfer", (s.alice, 1u128));
        assert_eq!(result, Err(Failure::Reverted("insufficient balance: 0 available, 1 requested".into())));
        let result = s.chain.call::<()>(s.alice, s.token, "transfer", (s.bob, 101u128));
        assert_eq!(result, Err(Failure::Reverted("insufficient balance: 100 available, 101 requested".into())));
        assert_eq!((balance(&s, s.alice), balance(&s, s.bob)), (100, 0));
        assert!(s.chain.events().is_empty());
    }

    #[test]
    fn approve_and_transfer_from() {
        let mut s = setup(1_000);
        s.chain.call::<()>(s.alice, s.token, "approve", (s.bob, 250u128)).expect("approve");
        assert_eq!(s.chain.query::<u128>(s.token, "allowance", (s.alice, s.bob)), Ok(250));
        s.chain.call::<()>(s.bob, s.token, "transfer_from", (s.alice, s.carol, 200u128)).expect("spend");
        assert_eq!(balance(&s, s.carol), 200);
        assert_eq!(s.chain.query::<u128>(s.token, "allowance", (s.alice, s.bob)), Ok(50));
        let over = s.chain.call::<()>(s.bob, s.token, "transfer_from", (s.alice, s.carol, 51u128));
        assert_eq!(over, Err(Failure::Reverted("insufficient allowance: 50 approved, 51 requested".into())));
        // Carol was never approved.
        let stranger = s.chain.call::<()>(s.carol, s.token, "transfer_from", (s.alice, s.carol, 1u128));
        assert!(stranger.is_err());
        assert_eq!(balance(&s, s.alice), 800);
    }

    #[test]
    fn unlimited_allowance_is_not_spent() {
        let mut s = setup(1_000);
        s.chain.call::<()>(s.alice, s.token, "approve", (s.bob, u128::MAX)).expect("approve");
        s.chain.call::<()>(s.bob, s.token, "transfer_from", (s.alice, s.bob, 400u128)).expect("spend");
        assert_eq!(s.chain.query::<u128>(s.token, "allowance", (s.alice, s.bob)), Ok(u128::MAX));
    }

    #[test]
    fn allowance_is_checked_before_balance() {
        let mut s = setup(10);
        s.chain.call::<()>(s.alice, s.token, "approve", (s.bob, 100u128)).expect("approve");
        let result = s.chain.call::<()>(s.bob, s.token, "transfer_from", (s.alice, s.bob, 50u128));
        assert_eq!(result, Err(Failure::Reverted("insufficient balance: 10 available, 50 requested".into())));
        // The failed call's allowance decrement was rolled back.
        assert_eq!(s.chain.query::<u128>(s.token, "allowance", (s.alice, s.bob)), Ok(100));
    }

    #[test]
    fn only_the_owner_mints_and_supply_cannot_overflow() {
        let mut s = setup(1_000);
        let denied = s.chain.call::<()>(s.bob, s.token, "mint", (s.bob, 5u128));
        assert_eq!(denied, Err(Failure::Reverted("only the owner can mint".into())));
        s.chain.call::<()>(s.alice, s.token, "mint", (s.bob, 5u128)).expect("mint");
        assert_eq!(balance(&s, s.bob), 5);
        assert_eq!(s.chain.query::<u128>(s.token, "total_supply", ()), Ok(1_005));
        let overflow = s.chain.call::<()>(s.alice, s.token, "mint", (s.bob, u128::MAX));
        assert_eq!(overflow, Err(Failure::Reverted("total supply would overflow".into())));
    }
}
