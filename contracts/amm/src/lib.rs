//! A constant-product pool (x · y = k) over two token contracts.
//!
//! Liquidity providers deposit both tokens for pool shares; traders swap one
//! token for the other with a minimum-output (slippage) check. A 0.30% fee on
//! the input goes to a per-token fee accumulator, which is credited with the
//! host's commutative add, and which the owner (the deployer) can collect.
//! Tokens move through synchronous calls into the token contracts: the pool
//! pulls inputs with `transfer_from` (the trader approves the pool first) and
//! pays outputs with `transfer`.

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod amm {
    use super::*;
    use chroma_sdk::math::{mul_div, sqrt_mul};

    const TOKEN_A: Item<Address> = Item::new(0);
    const TOKEN_B: Item<Address> = Item::new(1);
    const RESERVE_A: Item<u128> = Item::new(2);
    const RESERVE_B: Item<u128> = Item::new(3);
    const TOTAL_SHARES: Item<u128> = Item::new(4);
    const SHARES: Map<Address, u128> = Map::new(5);
    const FEES_A: Item<u128> = Item::new(6);
    const FEES_B: Item<u128> = Item::new(7);
    const OWNER: Item<Address> = Item::new(8);

    /// The swap fee, in basis points of the input.
    pub const FEE_BPS: u128 = 30;
    const BPS: u128 = 10_000;

    /// A pool over `token_a` and `token_b`, owned by the deployer.
    #[entry(init)]
    pub fn init(token_a: Address, token_b: Address) {
        require!(token_a != token_b, "the two tokens must differ");
        TOKEN_A.set(&token_a);
        TOKEN_B.set(&token_b);
        OWNER.set(&caller());
    }

    /// Deposits up to `amount_a` and `amount_b` at the pool's current ratio (all
    /// of both for the first deposit) and returns the shares minted; reverts if
    /// fewer than `min_shares`.
    #[entry]
    pub fn add_liquidity(amount_a: u128, amount_b: u128, min_shares: u128) -> u128 {
        let (reserve_a, reserve_b) = (RESERVE_A.get_or_default(), RESERVE_B.get_or_default());
        let total = TOTAL_SHARES.get_or_default();
        let (used_a, used_b, shares) = if total == 0 {
            (amount_a, amount_b, sqrt_mul(amount_a, amount_b))
        } else {
            let b_for_a = checked(mul_div(amount_a, reserve_b, reserve_a));
            let (used_a, used_b) = if b_for_a <= amount_b {
                (amount_a, b_for_a)
            } else {
                (checked(mul_div(amount_b, reserve_a, reserve_b)), amount_b)
            };
            let shares = checked(mul_div(used_a, total, reserve_a)).min(checked(mul_div(used_b, total, reserve_b)));
            (used_a, used_b, shares)
        };
        require!(shares > 0, "deposit too small to mint a share");
        require!(shares >= min_shares, "slippage: {} shares minted, at least {} required", shares, min_shares);
        let provider = caller();
        let pool = self_address();
        Contract::at(token_a()).call::<()>("transfer_from", (provider, pool, used_a));
        Contract::at(token_b()).call::<()>("transfer_from", (provider, pool, used_b));
        RESERVE_A.set(&checked(reserve_a.checked_add(used_a)));
        RESERVE_B.set(&checked(reserve_b.checked_add(used_b)));
        TOTAL_SHARES.set(&checked(total.checked_add(shares)));
        SHARES.set(&provider, &(SHARES.get_or_default(&provider) + shares));
        emit("LiquidityAdded", &(provider, used_a, used_b, shares));
        shares
    }

    /// Burns `shares` for their part of both reserves; reverts if either part
    /// is below its minimum.
    #[entry]
    pub fn remove_liquidity(shares: u128, min_a: u128, min_b: u128) -> (u128, u128) {
        let provider = caller();
        let held = SHARES.get_or_default(&provider);
        require!(shares > 0, "shares must be positive");
        require!(held >= shares, "insufficient shares: {} held, {} requested", held, shares);
        let total = TOTAL_SHARES.get_or_default();
        let (reserve_a, reserve_b) = (RESERVE_A.get_or_default(), RESERVE_B.get_or_default());
        let out_a = checked(mul_div(shares, reserve_a, total));
        let out_b = checked(mul_div(shares, reserve_b, total));
        require!(out_a >= min_a && out_b >= min_b, "slippage: would receive ({}, {}), minimum ({}, {})", out_a, out_b, min_a, min_b);
        SHARES.set(&provider, &(held - shares));
        TOTAL_SHARES.set(&(total - shares));
        RESERVE_A.set(&(reserve_a - out_a));
        RESERVE_B.set(&(reserve_b - out_b));
        Contract::at(token_a()).call::<()>("transfer", (provider, out_a));
        Contract::at(token_b()).call::<()>("transfer", (provider, out_b));
        emit("LiquidityRemoved", &(provider, out_a, out_b, shares));
        (out_a, out_b)
    }

    /// Sells `amount_in` of `token_in` for the other token; reverts if the
    /// output would be below `min_out`. Returns the output.
    #[entry]
    pub fn swap(token_in: Address, amount_in: u128, min_out: u128) -> u128 {
        let a_to_b = direction(token_in);
        let (reserve_in, reserve_out) = reserves_for(a_to_b);
        let (fee, amount_out) = swap_output(amount_in, reserve_in, reserve_out);
        require!(amount_out >= min_out, "slippage: output {} below minimum {}", amount_out, min_out);
        let trader = caller();
        let token_out = if a_to_b { token_b() } else { token_a() };
        Contract::at(token_in).call::<()>("transfer_from", (trader, self_address(), amount_in));
        let (reserve_in_item, reserve_out_item, fees_item) =
            if a_to_b { (RESERVE_A, RESERVE_B, FEES_A) } else { (RESERVE_B, RESERVE_A, FEES_B) };
        reserve_in_item.set(&checked(reserve_in.checked_add(amount_in - fee)));
        reserve_out_item.set(&(reserve_out - amount_out));
        fees_item.add(fee);
        Contract::at(token_out).call::<()>("transfer", (trader, amount_out));
        emit("Swap", &(trader, token_in, amount_in, amount_out));
        amount_out
    }

    /// Sends the accumulated fees to the owner. Owner only.
    #[entry]
    pub fn collect_fees() -> (u128, u128) {
        let owner = OWNER.get().unwrap_or_default();
        require!(caller() == owner, "only the owner can collect fees");
        let (fees_a, fees_b) = (FEES_A.get_or_default(), FEES_B.get_or_default());
        FEES_A.remove();
        FEES_B.remove();
        if fees_a > 0 {
            Contract::at(token_a()).call::<()>("transfer", (owner, fees_a));
        }
        if fees_b > 0 {
            Contract::at(token_b()).call::<()>("transfer", (owner, fees_b));
        }
        (fees_a, fees_b)
    }

    /// The output a swap of `amount_in` of `token_in` would give now.
    #[entry(view)]
    pub fn quote(token_in: Address, amount_in: u128) -> u128 {
        let (reserve_in, reserve_out) = reserves_for(direction(token_in));
        swap_output(amount_in, reserve_in, reserve_out).1
    }

    #[entry(view)]
    pub fn reserves() -> (u128, u128) {
        (RESERVE_A.get_or_default(), RESERVE_B.get_or_default())
    }

    #[entry(view)]
    pub fn tokens() -> (Address, Address) {
        (token_a(), token_b())
    }

    #[entry(view)]
    pub fn shares_of(provider: Address) -> u128 {
        SHARES.get_or_default(&provider)
    }

    #[entry(view)]
    pub fn total_shares() -> u128 {
        TOTAL_SHARES.get_or_default()
    }

    #[entry(view)]
    pub fn fees() -> (u128, u128) {
        (FEES_A.get_or_default(), FEES_B.get_or_default())
    }

    fn token_a() -> Address {
        TOKEN_A.get().unwrap_or_default()
    }

    fn token_b() -> Address {
        TOKEN_B.get().unwrap_or_default()
    }

    fn direction(token_in: Address) -> bool {
        if token_in == token_a() {
            true
        } else if token_in == token_b() {
            false
        } else {
            revert("token is not in this pool")
        }
    }

    fn reserves_for(a_to_b: bool) -> (u128, u128) {
        let (a, b) = (RESERVE_A.get_or_default(), RESERVE_B.get_or_default());
        if a_to_b { (a, b) } else { (b, a) }
    }

    /// (fee, output) of selling `amount_in` into reserves (in, out).
    fn swap_output(amount_in: u128, reserve_in: u128, reserve_out: u128) -> (u128, u128) {
        require!(amount_in > 0, "amount must be positive");
        require!(reserve_in > 0 && reserve_out > 0, "the pool has no liquidity");
        let fee = checked(mul_div(amount_in, FEE_BPS, BPS));
        let net_in = amount_in - fee;
        let amount_out = checked(mul_div(net_in, reserve_out, checked(reserve_in.checked_add(net_in))));
        require!(amount_out > 0, "swap too small: output rounds to zero");
        (fee, amount_out)
    }

    fn checked(value: Option<u128>) -> u128 {
        match value {
            Some(v) => v,
            None => revert("arithmetic overflow"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use chroma_sdk::testing::{Failure, MockChain};
    use std::string::ToString;

    struct Pool {
        chain: MockChain,
        pool: Address,
        a: Address,
        b: Address,
        alice: Address,
        bob: Address,
    }

    fn balance(chain: &MockChain, token: Address, who: Address) -> u128 {
        chain.query(token, "balance_of", (who,)).expect("balance_of")
    }

    /// Alice owns both tokens and the pool; bob gets 10,000 of each; both approve the pool.
    fn pool_with_liquidity(a_amount: u128, b_amount: u128) -> Pool {
        let mut chain = MockChain::new();
        let (alice, bob) = (MockChain::account("alice"), MockChain::account("bob"));
        let a = chain.deploy(&token::token::CONTRACT, alice, ("AAA".to_string(), 1_000_000u128)).expect("token a");
        let b = chain.deploy(&token::token::CONTRACT, alice, ("BBB".to_string(), 1_000_000u128)).expect("token b");
        let pool = chain.deploy(&amm::CONTRACT, alice, (a, b)).expect("pool");
        for t in [a, b] {
            chain.call::<()>(alice, t, "transfer", (bob, 10_000u128)).expect("fund bob");
            for who in [alice, bob] {
                chain.call::<()>(who, t, "approve", (pool, u128::MAX)).expect("approve");
            }
        }
        if a_amount > 0 {
            chain.call::<u128>(alice, pool, "add_liquidity", (a_amount, b_amount, 1u128)).expect("liquidity");
        }
        Pool { chain, pool, a, b, alice, bob }
    }

    #[test]
    fn first_deposit_mints_geometric_mean_and_moves_tokens() {
        let p = pool_with_liquidity(40_000, 10_000);
        assert_eq!(p.chain.query::<u128>(p.pool, "total_shares", ()), Ok(20_000));
        assert_eq!(p.chain.query::<(u128, u128)>(p.pool, "reserves", ()), Ok((40_000, 10_000)));
        assert_eq!(balance(&p.chain, p.a, p.pool), 40_000);
        assert_eq!(balance(&p.chain, p.b, p.pool), 10_000);
        assert_eq!(balance(&p.chain, p.a, p.alice), 1_000_000 - 10_000 - 40_000);
    }

    #[test]
    fn later_deposits_use_the_pool_ratio() {
        let mut p = pool_with_liquidity(40_000, 10_000);
        // Offers 4,000 A and 5,000 B: only 1,000 B match the 4:1 ratio.
        let shares = p.chain.call::<u128>(p.bob, p.pool, "add_liquidity", (4_000u128, 5_000u128, 0u128));
        assert_eq!(shares, Ok(2_000));
        assert_eq!(balance(&p.chain, p.b, p.bob), 9_000);
        assert_eq!(p.chain.query::<u128>(p.pool, "shares_of", (p.bob,)), Ok(2_000));
        let too_greedy = p.chain.call::<u128>(p.bob, p.pool, "add_liquidity", (4_000u128, 1_000u128, 2_001u128));
        assert_eq!(too_greedy, Err(Failure::Reverted("slippage: 2000 shares minted, at least 2001 required".into())));
    }

    #[test]
    fn swap_pays_constant_product_output_minus_fee() {
        let mut p = pool_with_liquidity(100_000, 100_000);
        let quoted: u128 = p.chain.query(p.pool, "quote", (p.a, 10_000u128)).expect("quote");
        // fee = 30, net = 9,970, out = 9,970 * 100,000 / 109,970 = 9,066
        assert_eq!(quoted, 9_066);
        let out = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 10_000u128, 9_000u128));
        assert_eq!(out, Ok(9_066));
        assert_eq!(balance(&p.chain, p.a, p.bob), 0);
        assert_eq!(balance(&p.chain, p.b, p.bob), 19_066);
        assert_eq!(p.chain.query::<(u128, u128)>(p.pool, "reserves", ()), Ok((109_970, 90_934)));
        assert_eq!(p.chain.query::<(u128, u128)>(p.pool, "fees", ()), Ok((30, 0)));
        // The pool's token balances cover reserves plus fees.
        assert_eq!(balance(&p.chain, p.a, p.pool), 110_000);
        let k_before = 100_000u128 * 100_000;
        assert!(109_970u128 * 90_934 >= k_before, "x*y must not decrease");
    }

    #[test]
    fn slippage_and_bad_swaps_revert_without_effects() {
        let mut p = pool_with_liquidity(100_000, 100_000);
        let events_before = p.chain.events().len();
        let slipped = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 10_000u128, 9_067u128));
        assert_eq!(slipped, Err(Failure::Reverted("slippage: output 9066 below minimum 9067".into())));
        let foreign = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.bob, 1u128, 0u128));
        assert_eq!(foreign, Err(Failure::Reverted("token is not in this pool".into())));
        let zero = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 0u128, 0u128));
        assert_eq!(zero, Err(Failure::Reverted("amount must be positive".into())));
        // More than bob has: the token's revert propagates through the pool.
        let broke = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 20_000u128, 0u128));
        assert_eq!(
            broke,
            Err(Failure::Reverted("call to transfer_from failed: reverted: insufficient balance: 10000 available, 20000 requested".into()))
        );
        assert_eq!(p.chain.query::<(u128, u128)>(p.pool, "reserves", ()), Ok((100_000, 100_000)));
        assert_eq!(balance(&p.chain, p.a, p.bob), 10_000);
        assert_eq!(p.chain.events().len(), events_before);
    }

    #[test]
    fn swap_back_and_forth_never_profits() {
        let mut p = pool_with_liquidity(50_000, 80_000);
        let out = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 5_000u128, 0u128)).expect("a->b");
        let back = p.chain.call::<u128>(p.bob, p.pool, "swap", (p.b, out, 0u128)).expect("b->a");
        assert!(back < 5_000, "round trip returned {back}");
    }

    #[test]
    fn remove_liquidity_returns_pro_rata_and_fees_go_to_owner() {
        let mut p = pool_with_liquidity(100_000, 100_000);
        p.chain.call::<u128>(p.bob, p.pool, "swap", (p.a, 10_000u128, 0u128)).expect("swap");
        let denied = p.chain.call::<(u128, u128)>(p.bob, p.pool, "collect_fees", ());
        assert_eq!(denied, Err(Failure::Reverted("only the owner can collect fees".into())));
        let a_before = balance(&p.chain, p.a, p.alice);
        assert_eq!(p.chain.call::<(u128, u128)>(p.alice, p.pool, "collect_fees", ()), Ok((30, 0)));
        assert_eq!(balance(&p.chain, p.a, p.alice), a_before + 30);
        let too_many = p.chain.call::<(u128, u128)>(p.bob, p.pool, "remove_liquidity", (1u128, 0u128, 0u128));
        assert_eq!(too_many, Err(Failure::Reverted("insufficient shares: 0 held, 1 requested".into())));
        let out = p.chain.call::<(u128, u128)>(p.alice, p.pool, "remove_liquidity", (50_000u128, 0u128, 0u128));
        assert_eq!(out, Ok((54_985, 45_467)));
        let rest = p.chain.call::<(u128, u128)>(p.alice, p.pool, "remove_liquidity", (50_000u128, 0u128, 0u128));
        assert_eq!(rest, Ok((54_985, 45_467)));
        assert_eq!(p.chain.query::<(u128, u128)>(p.pool, "reserves", ()), Ok((0, 0)));
        assert_eq!(balance(&p.chain, p.a, p.pool), 0);
    }

    #[test]
    fn large_amounts_do_not_overflow() {
        // 10^30 base units each: the product needs 200 bits.
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let big = 10u128.pow(30);
        let a = chain.deploy(&token::token::CONTRACT, alice, ("AAA".to_string(), 4 * big)).expect("a");
        let b = chain.deploy(&token::token::CONTRACT, alice, ("BBB".to_string(), 4 * big)).expect("b");
        let pool = chain.deploy(&amm::CONTRACT, alice, (a, b)).expect("pool");
        for t in [a, b] {
            chain.call::<()>(alice, t, "approve", (pool, u128::MAX)).expect("approve");
        }
        assert_eq!(chain.call::<u128>(alice, pool, "add_liquidity", (big, big, 0u128)), Ok(big));
        let out = chain.call::<u128>(alice, pool, "swap", (a, big, 0u128)).expect("swap");
        assert!(out < big / 2 && out > big / 3, "output {out}");
    }

    #[test]
    fn pool_needs_two_distinct_tokens() {
        let mut chain = MockChain::new();
        let alice = MockChain::account("alice");
        let t = MockChain::account("t");
        let result = chain.deploy(&amm::CONTRACT, alice, (t, t));
        assert_eq!(result, Err(Failure::Reverted("the two tokens must differ".into())));
    }
}
