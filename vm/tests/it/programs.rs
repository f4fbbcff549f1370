//! Random contract programs that do reach storage: each entry point is a
//! random tree of storage reads, writes, adds and removes whose slots and
//! keys are built from constants, argument bytes, the caller, values read
//! from storage, loop counters and argument-dependent lengths, under
//! branches and loops on argument bytes, with reverts and calls back into
//! the contract. Whatever the analyzer makes of them, every access the VM
//! records must be inside the prediction, and blocks of such calls must
//! run in parallel exactly as serially.

use chroma_host_api::abi::{Abi, Arg, Method, MethodKind, Type};
use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, nonce_key, Transaction, TxKind};
use chroma_workloads::Rng;

use crate::hostile::compare_with_serial;
use crate::support::{call_within_prediction, host_imports_wat, wat_contract_with_abi, Chain};

const ENTRIES: usize = 3;
/// Memory layout of a generated contract.
const INPUT: u32 = 0; // the call input: a u32 length, then the argument bytes
const CALLER: u32 = 1024;
const SELF: u32 = 1056;
const KEY: u32 = 2048; // the key being built (up to 256 bytes)
const NAMES: u32 = 3000; // "e0e1e2", for calls back into the contract
const VALUE: u32 = 4096; // where storage_read puts the last value read

struct Generator {
    rng: Rng,
    loops: usize,
}

impl Generator {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n)
    }

    /// An argument byte's address (past the 4-byte length prefix).
    fn arg_byte(&mut self) -> u32 {
        INPUT + 4 + self.below(24) as u32
    }

    fn slot(&mut self) -> String {
        match self.below(4) {
            0 => format!("(i32.and (i32.load8_u (i32.const {})) (i32.const 3))", self.arg_byte()),
            _ => format!("(i32.const {})", self.below(4)),
        }
    }

    /// Code that builds a key at `KEY` and leaves its length in `$len`.
    fn key(&mut self) -> String {
        let mut code = String::from("(local.set $len (i32.const 0))");
        let grow = |n: String| format!("(local.set $len (i32.add (local.get $len) {n}))");
        for _ in 0..self.below(4) {
            let dst = "(i32.add (i32.const 2048) (local.get $len))";
            let segment = match self.below(7) {
                0 | 1 => format!("(i32.store8 {dst} (i32.const {})) {}", self.below(4), grow("(i32.const 1)".into())),
                2 => {
                    let n = 1 + self.below(8);
                    format!("(memory.copy {dst} (i32.const {}) (i32.const {n})) {}", self.arg_byte(), grow(format!("(i32.const {n})")))
                }
                3 => {
                    let n = 1 + self.below(32);
                    format!("(memory.copy {dst} (i32.const {CALLER}) (i32.const {n})) {}", grow(format!("(i32.const {n})")))
                }
                4 => {
                    let n = 1 + self.below(8);
                    format!("(memory.copy {dst} (i32.const {VALUE}) (i32.const {n})) {}", grow(format!("(i32.const {n})")))
                }
                5 => {
                    let counter = self.below(3);
                    format!("(i32.store8 {dst} (local.get $i{counter})) {}", grow("(i32.const 1)".into()))
                }
                _ => grow(format!("(i32.and (i32.load8_u (i32.const {})) (i32.const 15))", self.arg_byte())),
            };
            code.push_str(&segment);
        }
        code
    }

    fn op(&mut self, depth: u32) -> String {
        let leaf = depth >= 3;
        match self.below(if leaf { 6 } else { 10 }) {
            0 | 1 => format!(
                "{} (drop (call $storage_read {} (i32.const {KEY}) (local.get $len) (i32.const {VALUE}) (i32.const 64)))",
                self.key(),
                self.slot()
            ),
            2 => {
                let (value, len) = if self.below(2) == 0 { (INPUT + 4, self.below(16)) } else { (CALLER, self.below(33)) };
                format!(
                    "{} (call $storage_write {} (i32.const {KEY}) (local.get $len) (i32.const {value}) (i32.const {len}))",
                    self.key(),
                    self.slot()
                )
            }
            3 => format!(
                "{} (call $storage_add {} (i32.const {KEY}) (local.get $len) (i64.const {}) (i64.const 0))",
                self.key(),
                self.slot(),
                self.below(1000)
            ),
            4 => format!("{} (call $storage_remove {} (i32.const {KEY}) (local.get $len))", self.key(), self.slot()),
            5 => {
                if self.below(4) == 0 {
                    format!("(if (i32.eq (i32.load8_u (i32.const {})) (i32.const 7)) (then (call $revert (i32.const {NAMES}) (i32.const 2))))", self.arg_byte())
                } else {
                    String::new()
                }
            }
            6 | 7 => format!(
                "(if (i32.lt_u (i32.load8_u (i32.const {})) (i32.const {})) (then {}) (else {}))",
                self.arg_byte(),
                self.below(4),
                self.ops(depth + 1),
                self.ops(depth + 1)
            ),
            8 if self.loops < 3 => {
                let i = self.loops;
                self.loops += 1;
                let body = self.ops(depth + 1);
                self.loops -= 1;
                format!(
                    "(local.set $i{i} (i32.const 0)) (block $done{i} (loop $again{i} \
                     (br_if $done{i} (i32.ge_u (local.get $i{i}) (i32.and (i32.load8_u (i32.const {})) (i32.const 7)))) \
                     {body} (local.set $i{i} (i32.add (local.get $i{i}) (i32.const 1))) (br $again{i})))",
                    self.arg_byte()
                )
            }
            _ => {
                // A call back into this contract, with this call's arguments.
                let entry = self.below(ENTRIES as u64) as u32;
                format!(
                    "(drop (call $call (i32.const {SELF}) (i32.const {}) (i32.const 2) (i32.const {INPUT}) (local.get $n) (i32.const 8192) (i32.const 64)))",
                    NAMES + 2 * entry
                )
            }
        }
    }

    fn ops(&mut self, depth: u32) -> String {
        (0..1 + self.below(4)).map(|_| self.op(depth)).collect::<Vec<_>>().join(" ")
    }

    fn contract(&mut self) -> Vec<u8> {
        let imports = host_imports_wat();
        let entries: String = (0..ENTRIES)
            .map(|e| {
                format!(
                    "(func (export \"e{e}\") (local $len i32) (local $n i32) (local $i0 i32) (local $i1 i32) (local $i2 i32) \
                     (local.set $n (call $input (i32.const {INPUT}))) (call $caller (i32.const {CALLER})) \
                     (call $self_address (i32.const {SELF})) {})",
                    self.ops(0)
                )
            })
            .collect();
        let body = format!("{imports} (memory (export \"memory\") 1) (data (i32.const {NAMES}) \"e0e1e2\") {entries}");
        let abi = Abi {
            methods: (0..ENTRIES)
                .map(|e| Method {
                    name: format!("e{e}"),
                    kind: MethodKind::Mutating,
                    args: vec![Arg { name: "x".into(), ty: Type::Vec(Box::new(Type::U8)) }],
                    returns: Type::Unit,
                })
                .collect(),
        };
        wat_contract_with_abi(&body, &abi)
    }

    /// Argument bytes: mostly small values, so branches and loops go both ways.
    fn argument(&mut self) -> Vec<u8> {
        let len = self.below(28) as usize;
        (0..len).map(|_| if self.below(4) == 0 { self.below(256) as u8 } else { self.below(9) as u8 }).collect()
    }
}

const SENDERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

#[test]
fn random_programs_run_inside_their_predictions_and_equal_serial_in_parallel() {
    const PROGRAMS: usize = 120;
    const CALLS: usize = 12;
    let mut generator = Generator { rng: Rng::new(0x70_72_6f_67), loops: 0 };
    let mut chain = Chain::new();
    let (mut calls, mut touching, mut succeeded, mut exact) = (0, 0, 0, 0);
    let mut contracts: Vec<Address> = Vec::new();
    for program in 0..PROGRAMS {
        let code = generator.contract();
        let receipt = chain.send("alice", TxKind::Deploy { code, init_args: Vec::new() }, 50_000_000);
        let contract = receipt.deployed.unwrap_or_else(|| panic!("program {program} deploys: {}", receipt.outcome));
        contracts.push(contract);
        for _ in 0..CALLS {
            let method = format!("e{}", generator.below(ENTRIES as u64));
            let sender = SENDERS[generator.below(SENDERS.len() as u64) as usize];
            let args = generator.argument().encode();
            let gas = if generator.below(8) == 0 { 5_000 + generator.below(100_000) } else { 5_000_000 };
            let (predicted, receipt) = call_within_prediction(&mut chain, sender, contract, &method, args, gas, &format!("program {program}"));
            let a = &receipt.accesses;
            calls += 1;
            let nonce = nonce_key(&dev_account(sender));
            let touched: Vec<&Vec<u8>> = a.reads.iter().chain(&a.writes).chain(&a.adds).filter(|k| **k != nonce).collect();
            touching += usize::from(!touched.is_empty());
            succeeded += usize::from(receipt.outcome.is_success());
            let exactly = |mut patterns: chroma_analyzer::Patterns<'_>, keys: &std::collections::BTreeSet<Vec<u8>>| {
                patterns.len() == keys.len() && patterns.all(|p| matches!(p, chroma_analyzer::PatternRef::Exact(k) if keys.contains(k)))
            };
            // A prediction lists the keys it reads or adds to and does not write.
            let unwritten = |keys: &std::collections::BTreeSet<Vec<u8>>| keys.difference(&a.writes).cloned().collect();
            exact += usize::from(exactly(predicted.reads(), &unwritten(&a.reads)) && exactly(predicted.writes(), &a.writes) && exactly(predicted.adds(), &unwritten(&a.adds)));
        }
    }
    println!("{PROGRAMS} programs, {calls} calls: {succeeded} succeeded, {touching} touched storage, {exact} predicted exactly");
    assert!(touching > calls / 3, "most calls reach storage ({touching}/{calls}), so the check is not vacuous");
    assert!(succeeded > calls / 4 && succeeded < calls, "calls both succeed and fail ({succeeded}/{calls})");

    // Blocks of such calls, in parallel in every configuration, equal serial.
    let mut nonces: Vec<u64> = SENDERS.iter().map(|s| chain.vm.nonce(&dev_account(s)).expect("nonce")).collect();
    for _ in 0..6 {
        let block: Vec<Transaction> = (0..40)
            .map(|_| {
                let s = generator.below(SENDERS.len() as u64) as usize;
                let contract = contracts[generator.below(8) as usize];
                let method = format!("e{}", generator.below(ENTRIES as u64));
                let args = generator.argument().encode();
                nonces[s] += 1;
                Transaction { sender: dev_account(SENDERS[s]), nonce: nonces[s] - 1, kind: TxKind::Call { contract, method, args }, gas_limit: 5_000_000 }
            })
            .collect();
        compare_with_serial(&mut chain, &block);
    }
}
