//! The example contracts' flows through the real VM.

use chroma_host_api::{Address, Decode};
use chroma_vm::Outcome;

use crate::support::{Chain, GAS};

fn token(chain: &mut Chain, owner: &str, symbol: &str, supply: u128) -> Address {
    chain.deploy(owner, "token", (symbol.to_string(), supply))
}

#[test]
fn token_transfer_approve_transfer_from() {
    let mut chain = Chain::new();
    let (alice, bob, carol) = (Chain::account("alice"), Chain::account("bob"), Chain::account("carol"));
    let t = token(&mut chain, "alice", "TOK", 1_000);
    assert_eq!(chain.view::<u128>(t, "balance_of", (alice,)), 1_000);

    let receipt = chain.call("alice", t, "transfer", (bob, 300u128));
    assert_eq!(receipt.outcome, Outcome::Success);
    assert_eq!(receipt.events.len(), 1);
    assert_eq!(receipt.events[0].name, "Transfer");
    assert_eq!(<(Address, Address, u128)>::decode(&receipt.events[0].data), Ok((alice, bob, 300)));
    assert!(receipt.gas_used > 0);

    chain.ok::<()>("bob", t, "approve", (carol, 100u128));
    chain.ok::<()>("carol", t, "transfer_from", (bob, carol, 60u128));
    assert_eq!(chain.view::<u128>(t, "allowance", (bob, carol)), 40);
    assert_eq!(chain.view::<u128>(t, "balance_of", (bob,)), 240);
    assert_eq!(chain.view::<u128>(t, "balance_of", (carol,)), 60);
}

#[test]
fn reverts_leave_state_unchanged() {
    let mut chain = Chain::new();
    let (alice, bob) = (Chain::account("alice"), Chain::account("bob"));
    let t = token(&mut chain, "alice", "TOK", 100);
    let before = chain.vm.state().snapshot();
    let receipt = chain.call("bob", t, "transfer", (alice, 1u128));
    assert_eq!(receipt.outcome, Outcome::Reverted("insufficient balance: 0 available, 1 requested".into()));
    assert!(receipt.events.is_empty());
    let after = chain.vm.state().snapshot();
    // Only bob's nonce changed.
    let changed: Vec<_> = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(chain.vm.nonce(&bob).expect("nonce"), 1);
    assert_eq!(chain.view::<u128>(t, "balance_of", (alice,)), 100);
}

#[test]
fn out_of_gas_leaves_state_unchanged_and_charges_the_limit() {
    let mut chain = Chain::new();
    let bob = Chain::account("bob");
    let t = token(&mut chain, "alice", "TOK", 100);
    let full = chain.call("alice", t, "transfer", (bob, 1u128));
    assert_eq!(full.outcome, Outcome::Success);

    let starved = chain.call_with_gas("alice", t, "transfer", (bob, 1u128), full.gas_used / 2);
    assert_eq!(starved.outcome, Outcome::OutOfGas);
    assert_eq!(starved.gas_used, full.gas_used / 2, "a failed transaction is charged its whole limit");

    // The smallest sufficient limit: fuel is checked at function entries and loop
    // back-edges, so it may be a little below the gas a run with plenty reports.
    let (mut low, mut high) = (full.gas_used / 2, full.gas_used);
    while high - low > 1 {
        let mid = (low + high) / 2;
        let before = chain.vm.state().snapshot();
        let receipt = chain.call_with_gas("alice", t, "transfer", (bob, 1u128), mid);
        match receipt.outcome {
            Outcome::Success => high = mid,
            Outcome::OutOfGas => {
                low = mid;
                let after = chain.vm.state().snapshot();
                let changed = after.iter().filter(|(k, v)| before.get(*k) != Some(v)).count();
                assert_eq!(changed, 1, "only the nonce changes when gas runs out");
            }
            other => panic!("unexpected outcome {other}"),
        }
    }
    let balance_before = chain.view::<u128>(t, "balance_of", (bob,));
    let just_short = chain.call_with_gas("alice", t, "transfer", (bob, 1u128), high - 1);
    assert_eq!(just_short.outcome, Outcome::OutOfGas);
    assert_eq!(chain.view::<u128>(t, "balance_of", (bob,)), balance_before);
    let just_enough = chain.call_with_gas("alice", t, "transfer", (bob, 1u128), high);
    assert_eq!(just_enough.outcome, Outcome::Success);
    assert!(just_enough.gas_used <= high);
    assert_eq!(chain.view::<u128>(t, "balance_of", (bob,)), balance_before + 1);
}

#[test]
fn amm_liquidity_and_swaps_move_real_token_balances() {
    let mut chain = Chain::new();
    let (alice, bob) = (Chain::account("alice"), Chain::account("bob"));
    let a = token(&mut chain, "alice", "AAA", 1_000_000);
    let b = token(&mut chain, "alice", "BBB", 1_000_000);
    let pool = chain.deploy("alice", "amm", (a, b));
    for t in [a, b] {
        chain.ok::<()>("alice", t, "transfer", (bob, 10_000u128));
        for who in ["alice", "bob"] {
            chain.ok::<()>(who, t, "approve", (pool, u128::MAX));
        }
    }
    let shares: u128 = chain.ok("alice", pool, "add_liquidity", (100_000u128, 100_000u128, 1u128));
    assert_eq!(shares, 100_000);
    assert_eq!(chain.view::<u128>(a, "balance_of", (pool,)), 100_000);

    let out: u128 = chain.ok("bob", pool, "swap", (a, 10_000u128, 9_000u128));
    assert_eq!(out, 9_066);
    assert_eq!(chain.view::<u128>(a, "balance_of", (bob,)), 0);
    assert_eq!(chain.view::<u128>(b, "balance_of", (bob,)), 19_066);
    assert_eq!(chain.view::<(u128, u128)>(pool, "reserves", ()), (109_970, 90_934));
    assert_eq!(chain.view::<(u128, u128)>(pool, "fees", ()), (30, 0));

    // Slippage: reverted inside the pool after nothing moved.
    let slipped = chain.call("bob", pool, "swap", (b, 1_000u128, 10_000u128));
    assert!(matches!(&slipped.outcome, Outcome::Reverted(m) if m.starts_with("slippage")), "{:?}", slipped.outcome);
    // A failing nested call: the token's revert propagates and the pool's reads stay recorded.
    let broke = chain.call("bob", pool, "swap", (a, 100u128, 0u128));
    assert_eq!(
        broke.outcome,
        Outcome::Reverted("call to transfer_from failed: reverted: insufficient balance: 0 available, 100 requested".into())
    );
    assert!(!broke.accesses.reads.is_empty());
    assert_eq!(chain.view::<(u128, u128)>(pool, "reserves", ()), (109_970, 90_934));
    let _ = alice;
}

#[test]
fn lending_flows_and_under_collateralised_borrow() {
    let mut chain = Chain::new();
    let bob = Chain::account("bob");
    let usd = token(&mut chain, "alice", "USD", 20_000);
    let market = chain.deploy("alice", "lending", (usd, 7_500u32));
    chain.ok::<()>("alice", usd, "transfer", (bob, 10_000u128));
    for who in ["alice", "bob"] {
        chain.ok::<()>(who, usd, "approve", (market, u128::MAX));
    }
    chain.ok::<()>("alice", market, "deposit", (8_000u128,));
    chain.ok::<()>("bob", market, "deposit", (1_000u128,));
    let denied = chain.call("bob", market, "borrow", (751u128,));
    assert_eq!(
        denied.outcome,
        Outcome::Reverted("under-collateralised: borrowing 751 would make the debt 751, limit 750".into())
    );
    chain.ok::<()>("bob", market, "borrow", (750u128,));
    assert_eq!(chain.view::<u128>(usd, "balance_of", (bob,)), 9_750);
    chain.ok::<()>("bob", market, "repay", (750u128,));
    chain.ok::<()>("bob", market, "withdraw", (1_000u128,));
    assert_eq!(chain.view::<u128>(usd, "balance_of", (bob,)), 10_000);
    assert_eq!(chain.view::<(u128, u128)>(market, "totals", ()), (8_000, 0));
}

#[test]
fn registry_and_counter() {
    let mut chain = Chain::new();
    let (alice, bob) = (Chain::account("alice"), Chain::account("bob"));
    let r = chain.deploy("alice", "registry", ());
    chain.ok::<()>("alice", r, "register", ("alice.chroma".to_string(),));
    let taken = chain.call("bob", r, "register", ("alice.chroma".to_string(),));
    assert!(matches!(taken.outcome, Outcome::Reverted(_)));
    chain.ok::<()>("alice", r, "transfer", ("alice.chroma".to_string(), bob));
    assert_eq!(chain.view::<Option<Address>>(r, "resolve", ("alice.chroma".to_string(),)), Some(bob));

    let c = chain.deploy("alice", "counter", ());
    assert_eq!(chain.ok::<u128>("alice", c, "increment", ()), 1);
    let add = chain.call("bob", c, "add", (41u128,));
    assert_eq!(add.outcome, Outcome::Success);
    assert!(add.accesses.reads.is_empty() && add.accesses.writes.is_empty(), "add is recorded as an add only");
    assert_eq!(add.accesses.adds.len(), 1);
    assert_eq!(chain.view::<u128>(c, "get", ()), 42);
    let _ = alice;
}

#[test]
fn views_cannot_write_through_query() {
    let mut chain = Chain::new();
    let c = chain.deploy("alice", "counter", ());
    let receipt = chain.vm.query(c, "increment", Vec::new(), GAS).expect("storage works");
    assert_eq!(receipt.outcome, Outcome::Trapped("`storage_write` is not allowed in a view call".into()));
    assert_eq!(chain.view::<u128>(c, "get", ()), 0);
}

#[test]
fn same_transactions_give_same_receipts_gas_and_state() {
    fn run() -> (Vec<chroma_vm::Receipt>, std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut chain = Chain::new();
        let bob = Chain::account("bob");
        let a = token(&mut chain, "alice", "AAA", 1_000_000);
        let b = token(&mut chain, "alice", "BBB", 1_000_000);
        let pool = chain.deploy("alice", "amm", (a, b));
        let mut receipts = Vec::new();
        for t in [a, b] {
            receipts.push(chain.call("alice", t, "approve", (pool, u128::MAX)));
            receipts.push(chain.call("alice", t, "transfer", (bob, 5_000u128)));
            receipts.push(chain.call("bob", t, "approve", (pool, u128::MAX)));
        }
        receipts.push(chain.call("alice", pool, "add_liquidity", (50_000u128, 70_000u128, 0u128)));
        for i in 0..20u128 {
            let (from, token_in) = if i % 2 == 0 { ("bob", a) } else { ("alice", b) };
            receipts.push(chain.call(from, pool, "swap", (token_in, 100 + i * 37, 0u128)));
        }
        receipts.push(chain.call("bob", pool, "swap", (a, 1_000_000u128, 0u128)));
        (receipts, chain.vm.state().snapshot())
    }
    let first = run();
    let second = run();
    assert_eq!(first.0.len(), 28);
    assert!(first.0.iter().filter(|r| r.outcome.is_success()).count() >= 27);
    assert_eq!(first, second);
}

#[test]
fn receipts_and_gas_do_not_depend_on_concurrent_threads() {
    fn session() -> Vec<(Outcome, u64, Vec<u8>)> {
        let mut chain = Chain::new();
        let bob = Chain::account("bob");
        let t = token(&mut chain, "alice", "TOK", 1_000_000);
        let c = chain.deploy("alice", "counter", ());
        let mut out = Vec::new();
        for i in 0..40u128 {
            let r = if i % 3 == 0 {
                chain.call("alice", c, "increment", ())
            } else {
                chain.call(if i % 2 == 0 { "alice" } else { "bob" }, t, "transfer", (bob, i * 1_000))
            };
            out.push((r.outcome, r.gas_used, r.return_data));
        }
        out
    }
    let alone = session();
    assert!(alone.iter().any(|(o, _, _)| !o.is_success()), "the session includes failures");
    let concurrent: Vec<_> = (0..4).map(|_| std::thread::spawn(session)).collect();
    for handle in concurrent {
        assert_eq!(handle.join().expect("thread"), alone);
    }
}
