//! The committed Wasm (contracts/wasm/amm.wasm) through the test harness,
//! over two tokens (contracts/wasm/token.wasm).

use chroma_testing::{assert_reverts, TestChain};

const AMM: &[u8] = include_bytes!("../../wasm/amm.wasm");
const TOKEN: &[u8] = include_bytes!("../../wasm/token.wasm");

#[test]
fn swaps_keep_the_reserves_equal_to_the_token_balances() {
    let mut chain = TestChain::new();
    let a = chain.deploy("alice", TOKEN, ("AAA".to_string(), 1_000_000u128)).expect("token a");
    let b = chain.deploy("alice", TOKEN, ("BBB".to_string(), 1_000_000u128)).expect("token b");
    let pool = chain.deploy("alice", AMM, (a, b)).expect("pool");
    for t in [a, b] {
        chain.call::<()>("alice", t, "approve", (pool, u128::MAX)).expect("approve");
    }
    chain.call::<u128>("alice", pool, "add_liquidity", (100_000u128, 100_000u128, 0u128)).expect("liquidity");
    let mut total_out = 0;
    for i in 1..=5u128 {
        total_out += chain.call::<u128>("alice", pool, "swap", (a, 1_000 * i, 0u128)).expect("swap");
    }
    assert_eq!(chain.view::<u128>(a, "balance_of", (pool,)), Ok(115_000));
    assert_eq!(chain.view::<u128>(b, "balance_of", (pool,)), Ok(100_000 - total_out));
    assert_reverts(chain.call::<u128>("alice", pool, "swap", (a, 1_000u128, 1_000_000u128)), "slippage: output");
}
