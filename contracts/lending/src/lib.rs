//! A lending market over one token: deposits are both liquidity and
//! collateral; a user may borrow up to `collateral_factor_bps` of their deposit
//! from the pool's free cash, repay, and withdraw what the remaining debt does
//! not need.
//!
//! Deposits credit the user's position and the pool total with the host's
//! commutative add, so deposits never conflict with each other; borrows,
//! repays and withdrawals read the totals and so order against everything.
//! No interest accrues (there is no block-time host function yet).

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod lending {
    use super::*;
    use chroma_sdk::math::mul_div;

    const TOKEN: Item<Address> = Item::new(0);
    const COLLATERAL_FACTOR_BPS: Item<u128> = Item::new(1);
    const TOTAL_DEPOSITS: Item<u128> = Item::new(2);
    const TOTAL_BORROWS: Item<u128> = Item::new(3);
    const DEPOSITS: Map<Address, u128> = Map::new(4);
    const BORROWS: Map<Address, u128> = Map::new(5);

    const BPS: u128 = 10_000;

    /// A market for `token`; borrowers may borrow up to
    /// `collateral_factor_bps / 10000` of their deposit.
    #[entry(init)]
    pub fn init(token: Address, collateral_factor_bps: u32) {
        require!(collateral_factor_bps > 0 && u128::from(collateral_factor_bps) < BPS, "collateral factor must be between 1 and 9999 bps");
        TOKEN.set(&token);
        COLLATERAL_FACTOR_BPS.set(&collateral_factor_bps.into());
    }

    /// Deposits `amount` (the caller approves the market first).
    #[entry]
    pub fn deposit(amount: u128) {
        require!(amount > 0, "amount must be positive");
        let user = caller();
        Contract::at(token()).call::<()>("transfer_from", (user, self_address(), amount));
        DEPOSITS.add(&user, amount);
        TOTAL_DEPOSITS.add(amount);
        emit("Deposit", &(user, amount));
    }

    /// Withdraws `amount` of the caller's deposit, if the rest still covers the debt.
    #[entry]
    pub fn withdraw(amount: u128) {
        require!(amount > 0, "amount must be positive");
        let user = caller();
        let deposit = DEPOSITS.get_or_default(&user);
        require!(deposit >= amount, "insufficient deposit: {} deposited, {} requested", deposit, amount);
        let remaining = deposit - amount;
        let debt = BORROWS.get_or_default(&user);
        require!(debt <= max_borrow_for(remaining), "withdrawal would leave the position under-collateralised: debt {}", debt);
        require!(cash() >= amount, "insufficient liquidity in the pool");
        DEPOSITS.set(&user, &remaining);
        TOTAL_DEPOSITS.set(&(TOTAL_DEPOSITS.get_or_default() - amount));
        Contract::at(token()).call::<()>("transfer", (user, amount));
        emit("Withdraw", &(user, amount));
    }

    /// Borrows `amount` against the caller's deposit.
    #[entry]
    pub fn borrow(amount: u128) {
        require!(amount > 0, "amount must be positive");
        let user = caller();
        let debt = BORROWS.get_or_default(&user);
        let limit = max_borrow_for(DEPOSITS.get_or_default(&user));
        let new_debt = debt.saturating_add(amount);
        require!(new_debt <= limit, "under-collateralised: borrowing {} would make the debt {}, limit {}", amount, new_debt, limit);
        require!(cash() >= amount, "insufficient liquidity in the pool");
        BORROWS.set(&user, &new_debt);
        TOTAL_BORROWS.set(&(TOTAL_BORROWS.get_or_default() + amount));
        Contract::at(token()).call::<()>("transfer", (user, amount));
        emit("Borrow", &(user, amount));
    }

    /// Repays `amount` of the caller's debt.
    #[entry]
    pub fn repay(amount: u128) {
        require!(amount > 0, "amount must be positive");
        let user = caller();
        let debt = BORROWS.get_or_default(&user);
        require!(amount <= debt, "repay exceeds debt: {} owed, {} offered", debt, amount);
        Contract::at(token()).call::<()>("transfer_from", (user, self_address(), amount));
        BORROWS.set(&user, &(debt - amount));
        TOTAL_BORROWS.set(&(TOTAL_BORROWS.get_or_default() - amount));
        emit("Repay", &(user, amount));
    }

    /// (deposit, debt) of `user`.
    #[entry(view)]
    pub fn position(user: Address) -> (u128, u128) {
        (DEPOSITS.get_or_default(&user), BORROWS.get_or_default(&user))
    }

    /// (total deposits, total borrows).
    #[entry(view)]
    pub fn totals() -> (u128, u128) {
        (TOTAL_DEPOSITS.get_or_default(), TOTAL_BORROWS.get_or_default())
    }

    /// How much more `user` could borrow now, ignoring pool liquidity.
    #[entry(view)]
    pub fn available_to_borrow(user: Address) -> u128 {
        max_borrow_for(DEPOSITS.get_or_default(&user)).saturating_sub(BORROWS.get_or_default(&user))
    }

    #[entry(view)]
    pub fn token() -> Address {
        TOKEN.get().unwrap_or_default()
    }

    fn max_borrow_for(deposit: u128) -> u128 {
        // The factor is below 1, so the result fits in u128.
        mul_div(deposit, COLLATERAL_FACTOR_BPS.get_or_default(), BPS).unwrap_or(0)
    }

    /// Tokens the pool holds that are not lent out. While deposits are the
    /// only collateral and the factor is below 1, no borrow or withdrawal that
    /// passes the collateral check can exceed it; the check guards that invariant.
    fn cash() -> u128 {
        TOTAL_DEPOSITS.get_or_default().saturating_sub(TOTAL_BORROWS.get_or_default())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chroma_sdk::testing::{Failure, MockChain};
    use std::string::ToString;

    struct Market {
        chain: MockChain,
        market: Address,
        token: Address,
        alice: Address,
        bob: Address,
    }

    /// A 75% market; alice and bob hold 10,000 each and approved the market.
    fn market() -> Market {
        let mut chain = MockChain::new();
        let (alice, bob) = (MockChain::account("alice"), MockChain::account("bob"));
        let token = chain.deploy(&token::token::CONTRACT, alice, ("USD".to_string(), 20_000u128)).expect("token");
        let market = chain.deploy(&lending::CONTRACT, alice, (token, 7_500u32)).expect("market");
        chain.call::<()>(alice, token, "transfer", (bob, 10_000u128)).expect("fund bob");
        for who in [alice, bob] {
            chain.call::<()>(who, token, "approve", (market, u128::MAX)).expect("approve");
        }
        Market { chain, market, token, alice, bob }
    }

    fn balance(m: &Market, who: Address) -> u128 {
        m.chain.query(m.token, "balance_of", (who,)).expect("balance_of")
    }

    #[test]
    fn deposit_borrow_repay_withdraw() {
        let mut m = market();
        m.chain.call::<()>(m.alice, m.market, "deposit", (8_000u128,)).expect("alice deposits");
        m.chain.call::<()>(m.bob, m.market, "deposit", (1_000u128,)).expect("bob deposits");
        assert_eq!(m.chain.query::<u128>(m.market, "available_to_borrow", (m.bob,)), Ok(750));
        m.chain.call::<()>(m.bob, m.market, "borrow", (750u128,)).expect("bob borrows");
        assert_eq!(balance(&m, m.bob), 9_750);
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "position", (m.bob,)), Ok((1_000, 750)));
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "totals", ()), Ok((9_000, 750)));
        m.chain.call::<()>(m.bob, m.market, "repay", (750u128,)).expect("repay");
        m.chain.call::<()>(m.bob, m.market, "withdraw", (1_000u128,)).expect("withdraw");
        assert_eq!(balance(&m, m.bob), 10_000);
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "totals", ()), Ok((8_000, 0)));
        assert_eq!(balance(&m, m.market), 8_000);
    }

    #[test]
    fn under_collateralised_borrow_reverts() {
        let mut m = market();
        m.chain.call::<()>(m.bob, m.market, "deposit", (1_000u128,)).expect("deposit");
        let result = m.chain.call::<()>(m.bob, m.market, "borrow", (751u128,));
        assert_eq!(result, Err(Failure::Reverted("under-collateralised: borrowing 751 would make the debt 751, limit 750".into())));
        let no_deposit = m.chain.call::<()>(m.alice, m.market, "borrow", (1u128,));
        assert!(matches!(no_deposit, Err(Failure::Reverted(msg)) if msg.starts_with("under-collateralised")));
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "totals", ()), Ok((1_000, 0)));
    }

    #[test]
    fn withdrawal_cannot_strand_debt() {
        let mut m = market();
        m.chain.call::<()>(m.bob, m.market, "deposit", (1_000u128,)).expect("deposit");
        m.chain.call::<()>(m.bob, m.market, "borrow", (600u128,)).expect("borrow");
        // 600 debt needs 800 deposit at 75%: 200 may leave, 201 may not.
        let result = m.chain.call::<()>(m.bob, m.market, "withdraw", (201u128,));
        assert_eq!(result, Err(Failure::Reverted("withdrawal would leave the position under-collateralised: debt 600".into())));
        m.chain.call::<()>(m.bob, m.market, "withdraw", (200u128,)).expect("withdraw 200");
        let over = m.chain.call::<()>(m.bob, m.market, "withdraw", (801u128,));
        assert_eq!(over, Err(Failure::Reverted("insufficient deposit: 800 deposited, 801 requested".into())));
    }

    #[test]
    fn pool_stays_solvent_through_a_sequence() {
        let mut m = market();
        let steps: &[(&str, bool, u128)] = &[
            ("deposit", true, 1_000), ("deposit", false, 3_000), ("borrow", false, 2_250),
            ("borrow", true, 750), ("withdraw", true, 1), ("repay", false, 250),
            ("withdraw", false, 300), ("repay", true, 750), ("withdraw", true, 1_000), ("borrow", false, 10_000),
        ];
        for (method, by_alice, amount) in steps {
            let who = if *by_alice { m.alice } else { m.bob };
            let _ = m.chain.call::<()>(who, m.market, method, (*amount,));
            let (deposits, borrows) = m.chain.query::<(u128, u128)>(m.market, "totals", ()).expect("totals");
            assert_eq!(balance(&m, m.market), deposits - borrows, "after {method} {amount}");
            for user in [m.alice, m.bob] {
                let (deposit, debt) = m.chain.query::<(u128, u128)>(m.market, "position", (user,)).expect("position");
                assert!(debt * 10_000 <= deposit * 7_500, "{user:?} under-collateralised after {method}");
            }
        }
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "position", (m.alice,)), Ok((0, 0)));
    }

    #[test]
    fn repay_more_than_owed_and_failed_transfers_revert() {
        let mut m = market();
        m.chain.call::<()>(m.bob, m.market, "deposit", (1_000u128,)).expect("deposit");
        m.chain.call::<()>(m.bob, m.market, "borrow", (100u128,)).expect("borrow");
        let result = m.chain.call::<()>(m.bob, m.market, "repay", (101u128,));
        assert_eq!(result, Err(Failure::Reverted("repay exceeds debt: 100 owed, 101 offered".into())));
        let too_big = m.chain.call::<()>(m.bob, m.market, "deposit", (1_000_000u128,));
        assert!(matches!(too_big, Err(Failure::Reverted(msg)) if msg.contains("insufficient balance")));
        assert_eq!(m.chain.query::<(u128, u128)>(m.market, "position", (m.bob,)), Ok((1_000, 100)));
    }

    #[test]
    fn collateral_factor_is_validated() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        for bad in [0u32, 10_000, 20_000] {
            let result = chain.deploy(&lending::CONTRACT, alice, (alice, bad));
            assert!(matches!(result, Err(Failure::Reverted(_))), "factor {bad} accepted");
        }
    }
}
