//! The committed Wasm (contracts/wasm/lending.wasm) through the test
//! harness, with the token it lends (contracts/wasm/token.wasm).

use chroma_testing::{assert_reverts, TestChain};

const LENDING: &[u8] = include_bytes!("../../wasm/lending.wasm");
const TOKEN: &[u8] = include_bytes!("../../wasm/token.wasm");

#[test]
fn deposit_borrow_repay_withdraw_through_the_token() {
    let mut chain = TestChain::new();
    let tok = chain.deploy("alice", TOKEN, ("USD".to_string(), 1_000_000u128)).expect("token");
    let market = chain.deploy("alice", LENDING, (tok, 5_000u32)).expect("market at 50%");
    let bob = TestChain::account("bob");
    chain.call::<()>("alice", tok, "transfer", (bob, 1_000u128)).expect("fund bob");
    for user in ["alice", "bob"] {
        chain.call::<()>(user, tok, "approve", (market, u128::MAX)).expect("approve");
    }
    chain.call::<()>("alice", market, "deposit", (10_000u128,)).expect("liquidity");
    chain.call::<()>("bob", market, "deposit", (1_000u128,)).expect("collateral");
    assert_reverts(chain.call::<()>("bob", market, "borrow", (501u128,)), "under-collateralised");
    chain.call::<()>("bob", market, "borrow", (500u128,)).expect("at the limit");
    assert_eq!(chain.view::<u128>(tok, "balance_of", (bob,)), Ok(500));
    assert_reverts(chain.call::<()>("bob", market, "withdraw", (1u128,)), "under-collateralised");
    chain.call::<()>("bob", market, "repay", (500u128,)).expect("repay");
    chain.call::<()>("bob", market, "withdraw", (1_000u128,)).expect("withdraw");
    assert_eq!(chain.view::<u128>(tok, "balance_of", (bob,)), Ok(1_000));
    assert_eq!(chain.view::<(u128, u128)>(market, "position", (bob,)), Ok((0, 0)));
}
