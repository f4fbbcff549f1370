//! The committed Wasm (contracts/wasm/counter.wasm) through the test harness.

use chroma_testing::{Failure, TestChain};

const WASM: &[u8] = include_bytes!("../../wasm/counter.wasm");

#[test]
fn increments_and_adds_in_one_block_and_alone() {
    let mut chain = TestChain::new();
    let c = chain.deploy("alice", WASM, ()).expect("deploys");
    assert_eq!(chain.call::<u128>("alice", c, "increment", ()), Ok(1));
    for user in ["bob", "carol", "dave"] {
        chain.queue(user, c, "add", (10u128,));
    }
    chain.queue("eve", c, "increment", ());
    let receipts = chain.next_block().expect("block");
    assert!(receipts.iter().all(|r| r.outcome.is_success()));
    assert_eq!(chain.view::<u128>(c, "get", ()), Ok(32));
    assert!(matches!(chain.view::<u128>(c, "increment", ()), Err(Failure::Trapped(m)) if m.contains("view")));
}
