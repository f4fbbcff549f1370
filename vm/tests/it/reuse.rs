//! Instances kept between calls (`reuse`): every call sees the memory and
//! globals of a fresh instance, whatever ran in the instance before.

use chroma_host_api::MethodKind::Mutating;
use chroma_vm::Outcome;

use crate::support::{deploy_bytes, wat_contract, Chain, GAS};

/// Each method first returns a digest of the whole memory and a global as
/// it finds them, then writes in every way a contract can: a store across a
/// page boundary, a byte store, `memory.fill` over three pages,
/// `memory.copy`, a host function writing into memory, a global. The last
/// two methods then revert, or grow the memory.
const SCRIBBLER: &str = r#"
    (import "chroma" "caller" (func $caller (param i32)))
    (import "chroma" "set_return" (func $set_return (param i32 i32)))
    (import "chroma" "revert" (func $revert (param i32 i32)))
    (memory (export "memory") 2)
    (global $g (mut i64) (i64.const 7))
    (data (i32.const 70000) "the initial image")
    (func $digest (result i64) (local $at i32) (local $h i64)
        (local.set $h (global.get $g))
        (block $done (loop $next
            (br_if $done (i32.ge_u (local.get $at) (i32.const 131072)))
            (local.set $h (i64.add (i64.rotl (local.get $h) (i64.const 5)) (i64.load (local.get $at))))
            (local.set $at (i32.add (local.get $at) (i32.const 8)))
            (br $next)))
        (local.get $h))
    (func $report_then_scribble
        (i64.store (i32.const 8) (call $digest))
        (call $set_return (i32.const 8) (i32.const 8))
        (i64.store offset=4093 (i32.const 0) (i64.const -1))
        (i32.store8 (i32.const 100000) (i32.const 9))
        (memory.fill (i32.const 5000) (i32.const 170) (i32.const 9000))
        (memory.copy (i32.const 100) (i32.const 70000) (i32.const 17))
        (call $caller (i32.const 120000))
        (global.set $g (i64.const 99)))
    (func (export "scribble") (call $report_then_scribble))
    (func (export "scribble_and_revert") (call $report_then_scribble) (call $revert (i32.const 0) (i32.const 0)))
    (func (export "scribble_and_grow") (call $report_then_scribble) (drop (memory.grow (i32.const 1))))
"#;

const METHODS: [(&str, chroma_host_api::MethodKind); 3] =
    [("scribble", Mutating), ("scribble_and_revert", Mutating), ("scribble_and_grow", Mutating)];

#[test]
fn a_kept_instance_starts_every_call_as_a_fresh_one() {
    let mut chain = Chain::new();
    let code = wat_contract(SCRIBBLER, &METHODS);
    let contract = deploy_bytes(&mut chain, "alice", code.clone()).deployed.expect("deployed");
    let first = chain.call_with_gas("alice", contract, "scribble", (), GAS);
    assert_eq!(first.outcome, Outcome::Success);
    let fresh = first.return_data.clone();
    assert_eq!(fresh.len(), 8);

    for round in 0..30 {
        let receipt = chain.call_with_gas("alice", contract, "scribble", (), GAS);
        assert_eq!(receipt.return_data, fresh, "call {round} saw another memory");
        assert_eq!(receipt.gas_used, first.gas_used, "call {round} cost other gas");
    }
    // Calls run on the few execution threads, each keeping its instance: far
    // fewer made than calls.
    let made = chain.vm.runtime().instances_made_for_reuse();
    assert!(made >= 1 && made < 10, "{made} instances made for 31 calls");

    // An instance whose call reverted, or whose memory grew, is not kept;
    // the next call still sees a fresh instance.
    let reverted = chain.call_with_gas("alice", contract, "scribble_and_revert", (), GAS);
    assert_eq!(reverted.outcome, Outcome::Reverted(String::new()));
    let grown = chain.call_with_gas("alice", contract, "scribble_and_grow", (), GAS);
    assert_eq!((grown.outcome, grown.return_data), (Outcome::Success, fresh.clone()));
    for _ in 0..3 {
        assert_eq!(chain.call_with_gas("alice", contract, "scribble", (), GAS).return_data, fresh);
    }

    // The same code at another address, in another runtime: the same digest.
    let mut other = Chain::new();
    let again = deploy_bytes(&mut other, "bob", code).deployed.expect("deployed");
    assert_eq!(other.call_with_gas("bob", again, "scribble", (), GAS).return_data, fresh);
}
