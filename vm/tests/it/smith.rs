//! Random valid modules from wasm-smith, restricted to the contract feature
//! set and importing every host function: the analyzer returns a summary or
//! a clean error, never panics, and stays within its time budget; and when
//! such a module is deployed and its entry points are called, every access
//! the VM records lies inside the analyzer's prediction.

use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use chroma_host_api::abi::{Abi, Method, MethodKind, Type, ABI_SECTION};
use chroma_vm::{Outcome, TxKind};
use chroma_workloads::Rng;

use crate::support::{call_within_prediction, host_imports_wat, Chain, GAS};

/// A module importing every Chroma host function, so that generated code
/// calls them (with whatever arguments it happens to compute).
fn host_imports() -> Vec<u8> {
    wat::parse_str(format!("(module {})", host_imports_wat())).expect("import list")
}

/// Seeds for wasm-smith from a deterministic generator, so failures reproduce.
struct Seeds(Rng);

impl Seeds {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A generated module, or None when wasm-smith cannot build one from the seed.
    fn module(&mut self, config: wasm_smith::Config) -> Option<Vec<u8>> {
        let seed: Vec<u8> = (0..2048 + self.next() % 8192).map(|_| self.next() as u8).collect();
        wasm_smith::Module::new(config, &mut Unstructured::new(&seed)).ok().map(|m| m.to_bytes())
    }
}

fn config() -> wasm_smith::Config {
    wasm_smith::Config {
        available_imports: Some(host_imports()),
        max_memories: 1,
        min_memories: 1,
        max_memory32_bytes: 4 << 20,
        max_tables: 2,
        min_funcs: 1,
        max_funcs: 40,
        max_instructions: 2_000,
        max_nesting_depth: 10,
        export_everything: true,
        bulk_memory_enabled: true,
        reference_types_enabled: false,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        tail_call_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        extended_const_enabled: false,
        allow_start_export: false,
        ..wasm_smith::Config::default()
    }
}

/// Generous: the interpreter's step budget bounds the work; this catches a hang.
const TIME_LIMIT: Duration = Duration::from_secs(30);
const MODULES: usize = 150;

#[test]
fn smith_modules_analyse_without_panicking() {
    let mut seeds = Seeds(Rng::new(0x2545_f491_4f6c_dd1d));
    let (mut analysed, mut refused, mut entries, mut skipped) = (0, 0, 0, 0);
    let mut slowest = Duration::ZERO;
    for _ in 0..MODULES {
        let Some(bytes) = seeds.module(config()) else {
            skipped += 1;
            continue;
        };
        let started = Instant::now();
        let result = chroma_analyzer::analyze(&bytes);
        slowest = slowest.max(started.elapsed());
        assert!(started.elapsed() < TIME_LIMIT, "analysis took {:?}", started.elapsed());
        match result {
            Ok(summary) => {
                analysed += 1;
                entries += summary.entries.len();
            }
            Err(e) => {
                refused += 1;
                if refused < 6 {
                    println!("refused: {e}");
                }
            }
        }
    }
    println!("{MODULES} seeds: {skipped} not generated, {analysed} analysed ({entries} entry points), {refused} refused; slowest {slowest:?}");
    assert!(analysed >= MODULES / 2, "most generated modules are analysable ({analysed}/{MODULES})");
    assert!(entries >= MODULES / 2, "the modules export functions to analyse ({entries})");
}

/// The entry points every generated contract exports, with its memory.
const ENTRIES: [&str; 3] = ["e0", "e1", "e2"];

/// wasm-smith modules shaped as contracts: exactly the exports of `ENTRIES`
/// (as `() -> ()`) and `memory`, plus an ABI section naming the entries.
fn smith_contract(seeds: &mut Seeds) -> Option<Vec<u8>> {
    let funcs: String = ENTRIES.iter().map(|e| format!("(func (export \"{e}\"))")).collect();
    let exports = wat::parse_str(format!("(module (memory (export \"memory\") 1 64) {funcs})")).expect("export list");
    let config = wasm_smith::Config { exports: Some(exports), export_everything: false, min_memories: 0, max_memories: 0, ..config() };
    let mut module = seeds.module(config)?;
    let abi = Abi {
        methods: ENTRIES
            .iter()
            .map(|e| Method { name: e.to_string(), kind: MethodKind::Mutating, args: vec![], returns: Type::Unit })
            .collect(),
    };
    // A custom section: id 0, size, name, payload (LEB128 lengths).
    let mut payload = Vec::new();
    leb128(&mut payload, ABI_SECTION.len() as u64);
    payload.extend_from_slice(ABI_SECTION.as_bytes());
    payload.extend_from_slice(&abi.encode());
    module.push(0);
    leb128(&mut module, payload.len() as u64);
    module.extend_from_slice(&payload);
    Some(module)
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Code no one wrote, run: random modules calling the host functions with
/// whatever arguments they compute, deployed and called with random senders
/// and gas limits. Each deploys (this found the ABI decoder refusing ABIs of
/// short, argument-less methods), each call ends in a typed receipt, and
/// every access the VM records is inside the prediction made before it.
#[test]
fn smith_contracts_run_inside_their_predictions() {
    const CONTRACTS: usize = 80;
    let mut seeds = Seeds(Rng::new(0x51ed_270b_2742_7a3f));
    let mut chain = Chain::new();
    let (mut deployed, mut refused, mut calls, mut succeeded) = (0, 0, 0, 0);
    for _ in 0..CONTRACTS {
        let Some(code) = smith_contract(&mut seeds) else { continue };
        let receipt = chain.send("alice", TxKind::Deploy { code, init_args: Vec::new() }, GAS);
        let Some(contract) = receipt.deployed else {
            assert!(matches!(receipt.outcome, Outcome::InvalidModule(_) | Outcome::OutOfGas), "{}", receipt.outcome);
            refused += 1;
            continue;
        };
        deployed += 1;
        for round in 0..6u64 {
            let method = ENTRIES[(seeds.next() % ENTRIES.len() as u64) as usize];
            let sender = ["alice", "bob", "carol"][(round % 3) as usize];
            let gas = 50_000 + seeds.next() % 2_000_000;
            let (_, receipt) = call_within_prediction(&mut chain, sender, contract, method, Vec::new(), gas, "a generated contract");
            calls += 1;
            succeeded += usize::from(receipt.outcome.is_success());
        }
    }
    println!("{CONTRACTS} seeds: {deployed} deployed, {refused} refused; {calls} calls, {succeeded} succeeded");
    // wasm-smith's code rarely reaches storage with valid arguments (random
    // lengths trap first); vm/tests/it/programs.rs generates contracts that do.
    assert!(deployed >= CONTRACTS / 2, "most generated contracts deploy ({deployed}/{CONTRACTS})");
    assert!(succeeded > 0 && succeeded < calls, "generated calls both succeed and fail ({succeeded}/{calls})");
}
