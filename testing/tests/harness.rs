//! The harness against the committed example contracts: deploy, typed
//! calls and views, reverts with their messages, events, cross-contract
//! calls, blocks, and the errors a test author meets.

use chroma_testing::{assert_reverts, events, Address, Failure, TestChain};

fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/wasm").join(format!("{name}.wasm"))
}

fn token(chain: &mut TestChain, symbol: &str) -> Address {
    chain.deploy_file("alice", example("token"), (symbol.to_string(), 1_000_000u128)).expect("the token deploys")
}

#[test]
fn deploy_call_view_and_events() {
    let mut chain = TestChain::new();
    let tok = token(&mut chain, "TOK");
    let (alice, bob) = (TestChain::account("alice"), TestChain::account("bob"));
    assert_eq!(chain.view::<String>(tok, "symbol", ()), Ok("TOK".to_string()));
    let receipt = chain.send("alice", tok, "transfer", (bob, 250u128)).expect("runs");
    assert!(receipt.outcome.is_success());
    assert_eq!(events::<(Address, Address, u128)>(&receipt, "Transfer"), Ok(vec![(alice, bob, 250)]));
    assert_eq!(chain.view::<u128>(tok, "balance_of", (bob,)), Ok(250));
    assert_eq!(chain.call::<()>("bob", tok, "transfer", (alice, 50u128)), Ok(()));
    assert_eq!(chain.view::<u128>(tok, "balance_of", (bob,)), Ok(200));
    assert_eq!(chain.height(), 3, "a deploy and two calls, a block each");
}

#[test]
fn reverts_carry_their_message_and_change_nothing() {
    let mut chain = TestChain::new();
    let tok = token(&mut chain, "TOK");
    let alice = TestChain::account("alice");
    assert_reverts(chain.call::<()>("bob", tok, "transfer", (alice, 1u128)), "insufficient balance: 0 available, 1 requested");
    assert_reverts(chain.call::<()>("bob", tok, "mint", (alice, 1u128)), "only the owner can mint");
    assert_eq!(chain.view::<u128>(tok, "total_supply", ()), Ok(1_000_000));
    // A revert without an event: the failed call's events are dropped.
    let receipt = chain.send("bob", tok, "transfer", (alice, 1u128)).expect("runs");
    assert!(receipt.events.is_empty());
}

#[test]
fn cross_contract_calls_move_real_balances() {
    let mut chain = TestChain::new();
    let (a, b) = (token(&mut chain, "AAA"), token(&mut chain, "BBB"));
    let pool = chain.deploy_file("alice", example("amm"), (a, b)).expect("the pool deploys");
    for t in [a, b] {
        chain.call::<()>("alice", t, "approve", (pool, u128::MAX)).expect("approve");
    }
    let shares: u128 = chain.call("alice", pool, "add_liquidity", (10_000u128, 20_000u128, 0u128)).expect("liquidity");
    assert!(shares > 0);
    let out: u128 = chain.call("alice", pool, "swap", (a, 1_000u128, 0u128)).expect("swap");
    assert!(out > 0 && out < 2_000, "{out}");
    // The pool holds what the token contracts say it holds.
    assert_eq!(chain.view::<u128>(a, "balance_of", (pool,)), Ok(11_000));
    assert_eq!(chain.view::<u128>(b, "balance_of", (pool,)), Ok(20_000 - out));
    // A swap beyond the caller's balance fails inside the token, and the pool reverts with it.
    let result = chain.call::<u128>("bob", pool, "swap", (a, 1_000u128, 0u128));
    assert!(matches!(&result, Err(Failure::Reverted(m)) if m.contains("insufficient")), "{result:?}");
}

#[test]
fn blocks_of_queued_calls_run_together() {
    let mut chain = TestChain::new();
    let tok = token(&mut chain, "TOK");
    let users: Vec<Address> = (0..6).map(|i| TestChain::account(&format!("user{i}"))).collect();
    for user in &users {
        chain.queue("alice", tok, "transfer", (*user, 10u128));
    }
    let receipts = chain.next_block().expect("block");
    assert_eq!(receipts.len(), 6);
    assert!(receipts.iter().all(|r| r.outcome.is_success()));
    assert_eq!(chain.height(), 2);
    for user in &users {
        assert_eq!(chain.view::<u128>(tok, "balance_of", (*user,)), Ok(10));
    }
}

#[test]
fn mistakes_are_typed_failures() {
    let mut chain = TestChain::new();
    let tok = token(&mut chain, "TOK");
    let bob = TestChain::account("bob");
    assert_eq!(chain.call::<()>("alice", tok, "transfr", (bob, 1u128)), Err(Failure::NoSuchMethod("transfr".into())));
    assert!(matches!(chain.call::<()>("alice", tok, "transfer", (1u8,)), Err(Failure::BadInput(_))));
    assert!(matches!(chain.view::<String>(tok, "total_supply", ()), Err(Failure::BadReturn { .. })));
    assert_eq!(chain.call::<()>("alice", Address([9; 32]), "transfer", ()), Err(Failure::NoSuchContract(Address([9; 32]))));
    assert!(matches!(chain.deploy("alice", b"not wasm", ()), Err(Failure::InvalidModule(_))));
    assert!(matches!(chain.deploy_file("alice", "/nonexistent.wasm", ()), Err(Failure::Other(m)) if m.contains("cannot read")));
    chain.set_gas(2_000);
    assert_eq!(chain.call::<()>("alice", tok, "transfer", (bob, 1u128)), Err(Failure::OutOfGas));
}
