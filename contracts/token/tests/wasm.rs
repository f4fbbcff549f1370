//! The committed Wasm (contracts/wasm/token.wasm) in the real VM, through
//! the test harness: what the mock-host tests in src/lib.rs check, again on
//! the built module.

use chroma_testing::{assert_reverts, events, Address, TestChain};

const WASM: &[u8] = include_bytes!("../../wasm/token.wasm");

#[test]
fn transfer_approve_transfer_from_and_their_events() {
    let mut chain = TestChain::new();
    let tok = chain.deploy("alice", WASM, ("TOK".to_string(), 1_000u128)).expect("deploys");
    let (alice, bob, carol) = (TestChain::account("alice"), TestChain::account("bob"), TestChain::account("carol"));
    let receipt = chain.send("alice", tok, "approve", (bob, 300u128)).expect("runs");
    assert_eq!(events::<(Address, Address, u128)>(&receipt, "Approval"), Ok(vec![(alice, bob, 300)]));
    chain.call::<()>("bob", tok, "transfer_from", (alice, carol, 200u128)).expect("within the allowance");
    assert_eq!(chain.view::<u128>(tok, "allowance", (alice, bob)), Ok(100));
    assert_eq!(chain.view::<u128>(tok, "balance_of", (carol,)), Ok(200));
    assert_reverts(chain.call::<()>("bob", tok, "transfer_from", (alice, carol, 101u128)), "insufficient allowance: 100 approved, 101 requested");
    assert_reverts(chain.call::<()>("carol", tok, "transfer", (bob, 201u128)), "insufficient balance");
}
