//! The hostile test contract (contracts/hostile): every attack ends in a
//! typed failure that names the limit, rolls back the call's writes, and
//! leaves the chain able to go on; in parallel blocks the result still
//! equals serial.

use chroma_analyzer::PatternRef;
use chroma_host_api::key::storage_key;
use chroma_host_api::limits::{
    MAX_CALL_DEPTH, MAX_EVENTS_PER_TX, MAX_EVENT_DATA_LEN, MAX_KEY_LEN, MAX_RETURN_LEN, MAX_VALUE_LEN,
};
use chroma_host_api::gas::MAX_TX_GAS;
use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, nonce_key, BlockOptions, Outcome, Receipt, Transaction, TxKind, Vm};

use crate::parallel::{assert_same, configurations, root};
use crate::support::{Chain, GAS};

fn hostile(chain: &mut Chain) -> Address {
    chain.deploy("alice", "hostile", ())
}

fn trapped(receipt: &Receipt) -> &str {
    match &receipt.outcome {
        Outcome::Trapped(message) => message,
        other => panic!("expected a trap, got {other}"),
    }
}

/// The attack failed, charged gas, and left the contract's state alone;
/// the same sender's next transaction works.
fn contained(chain: &mut Chain, h: Address, receipt: &Receipt) {
    assert!(!receipt.outcome.is_success());
    assert!(receipt.gas_used > 0 && receipt.gas_used <= GAS);
    assert!(receipt.events.is_empty(), "a failed call's events are dropped");
    assert_eq!(chain.view::<u128>(h, "count", ()), 0, "the failed call's writes are rolled back");
    let next = chain.call("alice", h, "set_pointer", (9u64,));
    assert_eq!(next.outcome, Outcome::Success, "the chain goes on");
}

#[test]
fn an_infinite_loop_runs_out_of_gas() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let receipt = chain.call_with_gas("alice", h, "spin", (), 2_000_000);
    assert_eq!(receipt.outcome, Outcome::OutOfGas);
    assert_eq!(receipt.gas_used, 2_000_000, "out of gas charges the whole limit");
    contained(&mut chain, h, &receipt);
}

/// Gas bounds a loop only if the limit is bounded: a transaction asking for
/// more than the maximum is refused without executing (no gas, no nonce).
#[test]
fn a_gas_limit_above_the_maximum_is_refused_before_execution() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let alice = dev_account("alice");
    let nonce = chain.vm.nonce(&alice).expect("nonce");
    for limit in [MAX_TX_GAS + 1, u64::MAX] {
        let receipt = chain.call_with_gas("alice", h, "spin", (), limit);
        assert_eq!(receipt.outcome, Outcome::GasLimitTooHigh { limit, max: MAX_TX_GAS });
        assert_eq!(receipt.gas_used, 0);
        assert_eq!(chain.vm.nonce(&alice).expect("nonce"), nonce, "a refused transaction does not use its nonce");
        let query = chain.vm.query(h, "count", Vec::new(), limit).expect("storage works");
        assert_eq!(query.outcome, Outcome::GasLimitTooHigh { limit, max: MAX_TX_GAS });
    }
    let receipt = chain.call_with_gas("alice", h, "spin", (), 3_000_000);
    assert_eq!(receipt.outcome, Outcome::OutOfGas);
}

#[test]
fn deep_recursion_exhausts_the_wasm_stack() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let receipt = chain.call("alice", h, "recurse", (10_000_000u32,));
    assert!(trapped(&receipt).contains("call stack exhausted"), "{}", receipt.outcome);
    contained(&mut chain, h, &receipt);
}

/// The largest recursion depth (in `stack_reenter`'s frames) that fits one
/// call's Wasm stack and still calls in again at the bottom, by bisection.
fn deepest_frames(chain: &mut Chain, h: Address) -> u32 {
    let (mut fits, mut fails) = (1u32, 1_000_000u32);
    while fails - fits > 1 {
        let mid = fits + (fails - fits) / 2;
        let receipt = chain.call("alice", h, "stack_reenter", (mid, 1u32));
        match &receipt.outcome {
            Outcome::Success => fits = mid,
            Outcome::Trapped(m) if m.contains("call stack exhausted") => fails = mid,
            other => panic!("stack_reenter({mid}, 0): {other}"),
        }
    }
    fits
}

/// Recursing to just under the Wasm stack bound and then calling in again,
/// at every nesting level, needs MAX_CALL_DEPTH times the bound of native
/// stack: this aborted the whole process on a 2 MiB thread (such as this
/// test's) before contracts ran only on threads with enough.
#[test]
fn full_stacks_at_every_nesting_level_do_not_crash_the_node() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let frames = deepest_frames(&mut chain, h);
    assert!(frames > 1_000, "a call can recurse deeply ({frames} frames)");
    let levels = MAX_CALL_DEPTH - 1;
    let receipt = chain.call("alice", h, "stack_reenter", (frames, levels));
    assert_eq!(receipt.outcome, Outcome::Success, "{frames} frames at each of {} levels", levels + 1);
    let one_more = chain.call("alice", h, "stack_reenter", (frames, levels + 1));
    assert!(!one_more.outcome.is_success(), "past the depth limit: {}", one_more.outcome);

    // The same in a parallel block, on the executor's threads, equal to serial.
    let sender = dev_account("bob");
    let block: Vec<Transaction> = [(frames, levels), (frames + 1, levels), (frames, levels + 1), (frames / 2, 3)]
        .iter()
        .enumerate()
        .map(|(i, args)| call(sender, i as u64, h, "stack_reenter", args))
        .collect();
    compare_with_serial(&mut chain, &block);
}

#[test]
fn memory_bombs_stop_at_the_memory_limit() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let grow = chain.call("alice", h, "grow", ());
    assert_eq!(grow.outcome, Outcome::Reverted("memory.grow refused at the limit".into()));
    contained(&mut chain, h, &grow);
    for chunk in [64 * 1024u32, 1024 * 1024, u32::MAX / 2] {
        let receipt = chain.call("alice", h, "allocate", (chunk,));
        match &receipt.outcome {
            Outcome::Reverted(m) => assert!(m.starts_with("panicked"), "allocate({chunk}): {m}"),
            Outcome::Trapped(m) => assert!(m.contains("memory") || m.contains("unreachable"), "allocate({chunk}): {m}"),
            other => panic!("allocate({chunk}): {other}"),
        }
        contained(&mut chain, h, &receipt);
    }
}

#[test]
fn oversized_returns_events_keys_and_values_are_refused_with_their_limit() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let len = |n: usize| n as u32;
    let cases: [(&str, u32, String); 4] = [
        ("huge_return", len(MAX_RETURN_LEN + 1), format!("return value is {} bytes long (limit {MAX_RETURN_LEN})", MAX_RETURN_LEN + 1)),
        ("huge_event", len(MAX_EVENT_DATA_LEN + 1), format!("event data is {} bytes long (limit {MAX_EVENT_DATA_LEN})", MAX_EVENT_DATA_LEN + 1)),
        ("huge_key", len(MAX_KEY_LEN + 1), format!("storage key is {} bytes long (limit {MAX_KEY_LEN})", MAX_KEY_LEN + 1)),
        ("huge_value", len(MAX_VALUE_LEN + 1), format!("storage value is {} bytes long (limit {MAX_VALUE_LEN})", MAX_VALUE_LEN + 1)),
    ];
    for (method, size, message) in cases {
        let receipt = chain.call("alice", h, method, (size,));
        assert_eq!(trapped(&receipt), message, "{method}({size})");
        contained(&mut chain, h, &receipt);
        let at_limit = chain.call("alice", h, method, (size - 1,));
        assert_eq!(at_limit.outcome, Outcome::Success, "{method}({}) is at the limit", size - 1);
    }
    let events = chain.call("alice", h, "many_events", (MAX_EVENTS_PER_TX as u32,));
    assert_eq!(events.outcome, Outcome::Success);
    assert_eq!(events.events.len(), MAX_EVENTS_PER_TX);
    let too_many = chain.call("alice", h, "many_events", (MAX_EVENTS_PER_TX as u32 + 1,));
    assert_eq!(trapped(&too_many), format!("more than {MAX_EVENTS_PER_TX} events in one transaction"));
    contained(&mut chain, h, &too_many);
}

#[test]
fn panics_and_the_reserved_slot_are_typed_failures() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let panic = chain.call("alice", h, "panic_now", ());
    assert_eq!(panic.outcome, Outcome::Reverted("panicked: hostile panic".into()));
    contained(&mut chain, h, &panic);
    let reserved = chain.call("alice", h, "write_reserved", ());
    assert_eq!(trapped(&reserved), format!("storage slot {} is reserved for the VM", u32::MAX));
    contained(&mut chain, h, &reserved);
    let missing = chain.call("alice", h, "no_such_method", ());
    assert_eq!(missing.outcome, Outcome::NoSuchMethod("no_such_method".into()));
    let bad_args = chain.call("alice", h, "recurse", ("not a number".to_string(),));
    assert!(matches!(bad_args.outcome, Outcome::BadInput(_)), "{}", bad_args.outcome);
    let nobody = chain.call("alice", Address([7; 32]), "spin", ());
    assert_eq!(nobody.outcome, Outcome::NoSuchContract(Address([7; 32])));
}

/// Reentrancy is allowed, bounded by the call depth: A calls B, which calls
/// back into A while A is still running, and so on.
#[test]
fn reentrancy_is_allowed_up_to_the_depth_limit() {
    let mut chain = Chain::new();
    let a = hostile(&mut chain);
    let b = hostile(&mut chain);
    // Depth 5: A, B, A, B, A. A's counter goes 1, 2, 3 (each reentry sees
    // the write its outer frame made), B's 1, 2.
    let receipt = chain.call("alice", a, "ping", (b, 4u32));
    assert_eq!(receipt.outcome, Outcome::Success);
    assert_eq!(u128::decode_all(&receipt.return_data), 1 + 1 + 2 + 2 + 3);
    assert_eq!(chain.view::<u128>(a, "count", ()), 3);
    assert_eq!(chain.view::<u128>(b, "count", ()), 2);
    // One level past the limit: the innermost call fails, every level reverts.
    let too_deep = chain.call("alice", a, "ping", (b, MAX_CALL_DEPTH));
    match &too_deep.outcome {
        Outcome::Reverted(m) => assert!(m.contains("depth"), "{m}"),
        other => panic!("expected the depth failure to revert every level, got {other}"),
    }
    assert_eq!(chain.view::<u128>(a, "count", ()), 3, "nothing of the failed chain of calls is kept");
    assert_eq!(chain.view::<u128>(b, "count", ()), 2);

    // In one block with interleaved pings, parallel equals serial.
    let block: Vec<Transaction> = (0..24u64)
        .map(|i| {
            let (from, to) = if i % 3 == 0 { (b, a) } else { (a, b) };
            call(dev_account(["carol", "dave"][i as usize % 2]), i / 2, from, "ping", (to, (i % 9) as u32))
        })
        .collect();
    compare_with_serial(&mut chain, &block);
}

trait DecodeAll {
    fn decode_all(bytes: &[u8]) -> Self;
}
impl DecodeAll for u128 {
    fn decode_all(bytes: &[u8]) -> u128 {
        <u128 as chroma_host_api::Decode>::decode(bytes).expect("u128")
    }
}

#[test]
fn the_caller_cannot_be_forged_and_storage_is_the_contracts_own() {
    let mut chain = Chain::new();
    let relay = hostile(&mut chain);
    let target = hostile(&mut chain);
    let direct: Address = chain.ok("alice", target, "whoami", ());
    assert_eq!(direct, dev_account("alice"));
    let relayed: Address = chain.ok("alice", relay, "relay_whoami", (target,));
    assert_eq!(relayed, relay, "the callee sees the calling contract, not the transaction's sender");

    // Every key any hostile call touched is the contract's own (or the
    // sender's nonce, which only the VM writes).
    let alice_nonce = nonce_key(&dev_account("alice"));
    let calls: Vec<(&str, Vec<u8>)> = vec![
        ("hashed_set", (77u64, 5u128).encode()),
        ("loop_set", (4u32, 1u128).encode()),
        ("pointed_set", (3u128,).encode()),
        ("ping", (target, 3u32).encode()),
        ("huge_key", (MAX_KEY_LEN as u32,).encode()),
    ];
    for (method, args) in calls {
        let receipt = chain.send("alice", TxKind::Call { contract: relay, method: method.into(), args }, GAS);
        assert_eq!(receipt.outcome, Outcome::Success, "{method}");
        let a = &receipt.accesses;
        for key in a.reads.iter().chain(&a.writes).chain(&a.adds) {
            let own = key.starts_with(&relay.0) || (method == "ping" && key.starts_with(&target.0));
            assert!(own || *key == alice_nonce, "{method} touched a key outside its contracts: {key:02x?}");
        }
    }
    assert_eq!(chain.view::<u128>(relay, "hashed", (77u64,)), 5);
}

/// Keys hashed in the guest, written in a loop, or read from a pointer that
/// any caller can move: the analyzer widens them to prefixes, the block
/// still equals serial, and the report's hottest keys show the wildcards
/// that serialised it.
#[test]
fn keys_the_analyzer_cannot_follow_still_run_correctly_in_parallel() {
    let mut chain = Chain::new();
    let h = hostile(&mut chain);
    let token = chain.deploy("alice", "token", ("TOK".to_string(), 1_000_000u128));
    let users: Vec<Address> = (0..8).map(|i| dev_account(&format!("user{i}"))).collect();
    for user in &users {
        chain.ok::<()>("alice", token, "transfer", (*user, 1_000u128));
    }
    let mut nonces = vec![0u64; users.len()];
    let mut block = Vec::new();
    for i in 0..64usize {
        let u = i % users.len();
        let (method, args): (&str, Vec<u8>) = match i % 8 {
            0 => ("hashed_set", (i as u64 % 5, 1u128).encode()),
            1 => ("loop_set", ((i % 7) as u32, i as u128).encode()),
            2 => ("set_pointer", ((i % 3) as u64,).encode()),
            3 => ("pointed_set", (i as u128,).encode()),
            _ => ("transfer", (users[(u + 1) % users.len()], 3u128).encode()),
        };
        let contract = if method == "transfer" { token } else { h };
        block.push(Transaction {
            sender: users[u],
            nonce: nonces[u],
            kind: TxKind::Call { contract, method: method.into(), args },
            gas_limit: GAS,
        });
        nonces[u] += 1;
    }
    let report = compare_with_serial(&mut chain, &block);
    // The report names the wildcards among the keys that made edges: all
    // of slot 1 for the hashed keys, and a prefix covering slot 2 for the
    // longer loops.
    let hot = report.hottest_keys(usize::MAX);
    let wildcard_edges = |covered: &[u8]| {
        hot.iter()
            .filter(|(p, _)| matches!(p, PatternRef::Prefix(p) if covered.starts_with(p)))
            .map(|(_, edges)| *edges)
            .sum::<u32>()
    };
    assert!(wildcard_edges(&storage_key(&h, 1, &[])) > 0, "hashed keys: {hot:?}");
    assert!(wildcard_edges(&storage_key(&h, 2, &[])) > 0, "looped keys: {hot:?}");
    let hashed = block.iter().position(|tx| matches!(&tx.kind, TxKind::Call { method, .. } if method == "hashed_set"));
    let prediction = &report.predictions[hashed.expect("a hashed_set")];
    assert!(prediction.writes().any(|p| matches!(p, PatternRef::Prefix(_))), "a hashed key is predicted as a wildcard");
}

fn call(sender: Address, nonce: u64, contract: Address, method: &str, args: impl Encode) -> Transaction {
    Transaction { sender, nonce, kind: TxKind::Call { contract, method: method.into(), args: args.encode() }, gas_limit: GAS }
}

/// Runs `block` on copies of `chain`'s state serially and in every parallel
/// configuration; asserts equal receipts and roots; returns the report of
/// the last parallel run.
pub(crate) fn compare_with_serial(chain: &mut Chain, block: &[Transaction]) -> chroma_vm::BlockReport {
    let copy = |chain: &Chain| -> Vm {
        let vm = Vm::with_state(chain.vm.runtime().clone(), chroma_vm::StateOverlay::new());
        vm.state().apply_values(chain.vm.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
        vm
    };
    let mut serial = copy(chain);
    let expected = serial.execute_block(block, &BlockOptions::serial()).expect("storage works");
    let mut last = None;
    for options in configurations() {
        let mut vm = copy(chain);
        let done = vm.execute_block(block, &options).expect("storage works");
        assert_same(&expected.receipts, &done.receipts, block, &format!("{options:?}"));
        assert_eq!(root(&vm), root(&serial), "{options:?}");
        last = Some(done.report);
    }
    chain.vm.execute_block(block, &BlockOptions::default()).expect("storage works");
    last.expect("at least one configuration")
}
