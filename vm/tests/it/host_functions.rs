//! Host functions at their edges, through hand-written modules.

use chroma_host_api::host::{HOST_FUNCTIONS, ValType};
use chroma_host_api::limits::{MAX_CALL_DEPTH, MAX_KEY_LEN, MAX_MEMORY_PAGES};
use chroma_host_api::{Address, Decode, MethodKind::Mutating};
use chroma_vm::Outcome;

use crate::support::{deploy_bytes, wat_contract, Chain, GAS};

fn deploy(chain: &mut Chain, body: &str, methods: &[(&str, chroma_host_api::MethodKind)]) -> Address {
    let receipt = deploy_bytes(chain, "alice", wat_contract(body, methods));
    assert_eq!(receipt.outcome, Outcome::Success);
    receipt.deployed.expect("address")
}

fn run(chain: &mut Chain, contract: Address, method: &str) -> chroma_vm::Receipt {
    chain.call_with_gas("alice", contract, method, (), GAS)
}

#[test]
fn the_linker_provides_every_host_function_with_its_signature() {
    // A module importing every function of the table links and runs.
    let types = |t: &[ValType]| t.iter().map(|v| if *v == ValType::I32 { "i32" } else { "i64" }).collect::<Vec<_>>().join(" ");
    let imports: String = HOST_FUNCTIONS
        .iter()
        .map(|f| format!(r#"(import "chroma" "{}" (func (param {}) (result {})))"#, f.name, types(f.params), types(f.results)))
        .collect();
    let mut chain = Chain::new();
    let c = deploy(&mut chain, &format!(r#"{imports} (memory (export "memory") 1) (func (export "run"))"#), &[("run", Mutating)]);
    assert_eq!(run(&mut chain, c, "run").outcome, Outcome::Success);
}

#[test]
fn out_of_bounds_pointers_trap() {
    let mut chain = Chain::new();
    let c = deploy(
        &mut chain,
        r#"(import "chroma" "caller" (func $caller (param i32)))
           (memory (export "memory") 1)
           (func (export "run") (call $caller (i32.const 65530)))"#,
        &[("run", Mutating)],
    );
    let receipt = run(&mut chain, c, "run");
    assert_eq!(
        receipt.outcome,
        Outcome::Trapped("memory access out of bounds: 32 byte(s) at 65530 in a memory of 65536 byte(s)".into())
    );
}

#[test]
fn keys_over_the_limit_and_the_reserved_slot_trap() {
    let mut chain = Chain::new();
    let c = deploy(
        &mut chain,
        &format!(
            r#"(import "chroma" "storage_write" (func $w (param i32 i32 i32 i32 i32)))
               (memory (export "memory") 1)
               (func (export "long") (call $w (i32.const 0) (i32.const 0) (i32.const {}) (i32.const 0) (i32.const 1)))
               (func (export "reserved") (call $w (i32.const -1) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))"#,
            MAX_KEY_LEN + 1
        ),
        &[("long", Mutating), ("reserved", Mutating)],
    );
    assert_eq!(
        run(&mut chain, c, "long").outcome,
        Outcome::Trapped(format!("storage key is {} bytes long (limit {MAX_KEY_LEN})", MAX_KEY_LEN + 1))
    );
    assert_eq!(run(&mut chain, c, "reserved").outcome, Outcome::Trapped("storage slot 4294967295 is reserved for the VM".into()));
}

#[test]
fn infinite_loops_run_out_of_gas() {
    let mut chain = Chain::new();
    let c = deploy(&mut chain, r#"(memory (export "memory") 1) (func (export "spin") (loop (br 0)))"#, &[("spin", Mutating)]);
    let receipt = chain.call_with_gas("alice", c, "spin", (), 1_000_000);
    assert_eq!(receipt.outcome, Outcome::OutOfGas);
    assert_eq!(receipt.gas_used, 1_000_000);
}

#[test]
fn memory_growth_stops_at_the_limit() {
    // Grows one page at a time until memory.grow fails, then returns the page count.
    let mut chain = Chain::new();
    let c = deploy(
        &mut chain,
        r#"(import "chroma" "set_return" (func $ret (param i32 i32)))
           (memory (export "memory") 1)
           (func (export "bomb")
             (block $done (loop $grow
               (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
               (br $grow)))
             (i32.store (i32.const 0) (memory.size))
             (call $ret (i32.const 0) (i32.const 4)))"#,
        &[("bomb", Mutating)],
    );
    let receipt = run(&mut chain, c, "bomb");
    assert_eq!(receipt.outcome, Outcome::Success);
    assert_eq!(u32::decode(&receipt.return_data), Ok(MAX_MEMORY_PAGES));
}

#[test]
fn recursion_through_calls_stops_at_the_depth_limit() {
    // "dive" emits an event, then calls itself; the innermost call fails with
    // DepthExceeded, which its caller ignores, so every level's event is kept.
    let mut chain = Chain::new();
    let c = deploy(
        &mut chain,
        r#"(import "chroma" "self_address" (func $me (param i32)))
           (import "chroma" "emit" (func $emit (param i32 i32 i32 i32)))
           (import "chroma" "call" (func $call (param i32 i32 i32 i32 i32 i32 i32) (result i64)))
           (memory (export "memory") 1)
           (data (i32.const 100) "dive")
           (func (export "dive")
             (call $emit (i32.const 100) (i32.const 4) (i32.const 0) (i32.const 0))
             (call $me (i32.const 0))
             (drop (call $call (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 200) (i32.const 64))))"#,
        &[("dive", Mutating)],
    );
    let receipt = run(&mut chain, c, "dive");
    assert_eq!(receipt.outcome, Outcome::Success);
    assert_eq!(receipt.events.len(), MAX_CALL_DEPTH as usize);
}

#[test]
fn a_failed_nested_call_is_undone_and_the_rest_of_the_transaction_kept() {
    // "run" writes a = 1 (top level, with no checkpoint of its own), calls
    // "keep" (k = K, event K), then "fail" (k = F, a = X, event F, trap), and
    // ignores the failure: a = 1, k = K and only event K remain.
    let mut chain = Chain::new();
    let c = deploy(
        &mut chain,
        r#"(import "chroma" "self_address" (func $me (param i32)))
           (import "chroma" "emit" (func $emit (param i32 i32 i32 i32)))
           (import "chroma" "storage_write" (func $w (param i32 i32 i32 i32 i32)))
           (import "chroma" "call" (func $call (param i32 i32 i32 i32 i32 i32 i32) (result i64)))
           (memory (export "memory") 1)
           (data (i32.const 100) "keep")
           (data (i32.const 110) "fail")
           (data (i32.const 120) "ak1KFX")
           (func (export "run")
             (call $w (i32.const 0) (i32.const 120) (i32.const 1) (i32.const 122) (i32.const 1))
             (call $me (i32.const 0))
             (drop (call $call (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 200) (i32.const 64)))
             (drop (call $call (i32.const 0) (i32.const 110) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 200) (i32.const 64))))
           (func (export "keep")
             (call $w (i32.const 0) (i32.const 121) (i32.const 1) (i32.const 123) (i32.const 1))
             (call $emit (i32.const 123) (i32.const 1) (i32.const 0) (i32.const 0)))
           (func (export "fail")
             (call $w (i32.const 0) (i32.const 121) (i32.const 1) (i32.const 124) (i32.const 1))
             (call $w (i32.const 0) (i32.const 120) (i32.const 1) (i32.const 125) (i32.const 1))
             (call $emit (i32.const 124) (i32.const 1) (i32.const 0) (i32.const 0))
             unreachable)"#,
        &[("run", Mutating), ("keep", Mutating), ("fail", Mutating)],
    );
    let receipt = run(&mut chain, c, "run");
    assert_eq!(receipt.outcome, Outcome::Success);
    let names: Vec<&str> = receipt.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["K"], "the failed call's event is dropped");
    let stored = |key: &[u8]| chroma_vm::StateRead::get(chain.vm.state().as_ref(), &chroma_host_api::key::storage_key(&c, 0, key)).expect("state");
    assert_eq!(stored(b"a"), Some(b"1".to_vec()), "the top level's write survives the nested failure");
    assert_eq!(stored(b"k"), Some(b"K".to_vec()), "the successful nested call's write survives the failed one");
    assert!(receipt.accesses.writes.contains(&chroma_host_api::key::storage_key(&c, 0, b"a")), "a failed call's writes are still accesses");
}

#[test]
fn a_trap_in_wasm_is_reported() {
    let mut chain = Chain::new();
    let c = deploy(&mut chain, r#"(memory (export "memory") 1) (func (export "boom") unreachable)"#, &[("boom", Mutating)]);
    let receipt = run(&mut chain, c, "boom");
    assert!(matches!(&receipt.outcome, Outcome::Trapped(m) if m.contains("unreachable")), "{}", receipt.outcome);
}

#[test]
fn a_warm_instance_stays_callable_for_thousands_of_calls() {
    // The SDK resets its heap at every entry, so reuse never exhausts memory.
    use chroma_host_api::Encode;
    let mut chain = Chain::new();
    let token = chain.deploy("alice", "token", ("TOK".to_string(), 1_000_000u128));
    let args = (Chain::account("bob"), 1u128).encode();
    let mut warm = chroma_vm::floor::WarmInstance::new(&chain.vm, token, Chain::account("alice"), "transfer", args)
        .expect("warm instance");
    for i in 0..5_000 {
        warm.call().unwrap_or_else(|e| panic!("call {i} failed: {e}"));
    }
}
