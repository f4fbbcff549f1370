//! The analyzer's two costs: analysing a contract (once, at deploy) and
//! filling a transaction's templates in (once per transaction, when a block
//! is planned).
//!
//! `cargo bench -p chroma-benches --bench analyzer`.

use std::hint::black_box;

use chroma_analyzer::{analyze, predict};
use chroma_benches::example_wasm;
use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, Outcome, PredictionEnv, Transaction, TxKind, Vm};
use criterion::Criterion;

const GAS: u64 = 50_000_000;

fn analysis(c: &mut Criterion) {
    let mut group = c.benchmark_group("analyze");
    group.sample_size(10);
    for name in ["token", "amm", "lending", "registry", "counter"] {
        let wasm = example_wasm(name);
        group.bench_function(name, |b| b.iter(|| analyze(black_box(&wasm)).expect("analyses")));
    }
    group.finish();
}

fn send(vm: &mut Vm, from: &str, kind: TxKind) -> chroma_vm::Receipt {
    let sender = dev_account(from);
    let nonce = vm.nonce(&sender).expect("nonce");
    let receipt = vm.execute(&Transaction { sender, nonce, kind, gas_limit: GAS }).expect("storage");
    assert_eq!(receipt.outcome, Outcome::Success);
    receipt
}

fn deploy(vm: &mut Vm, name: &str, args: impl Encode) -> Address {
    send(vm, "alice", TxKind::Deploy { code: example_wasm(name), init_args: args.encode() }).deployed.expect("address")
}

fn fill(c: &mut Criterion) {
    let mut vm = Vm::new().expect("engine");
    let token_a = deploy(&mut vm, "token", ("AAA".to_string(), 1_000_000u128));
    let token_b = deploy(&mut vm, "token", ("BBB".to_string(), 1_000_000u128));
    let amm = deploy(&mut vm, "amm", (token_a, token_b));
    let state = vm.state().clone();
    let env = PredictionEnv::new(vm.runtime(), state.as_ref());
    let alice = dev_account("alice");
    let transfer = (dev_account("bob"), 5u128).encode();
    let swap = (token_a, 100u128, 1u128).encode();

    // A swap calls the tokens, so after the first call its prediction
    // follows the recipe learnt from it; `amm_swap_filled_in` fills every
    // call's templates in (the same prediction). A transfer calls nothing
    // and is always filled in.
    let filling = env.fork().without_recipes();
    assert_eq!(predict(&env, &alice, &amm, "swap", &swap), predict(&filling, &alice, &amm, "swap", &swap));
    let mut group = c.benchmark_group("predict");
    group.bench_function("token_transfer", |b| b.iter(|| predict(&env, &alice, &token_a, "transfer", black_box(&transfer))));
    group.bench_function("amm_swap", |b| b.iter(|| predict(&env, &alice, &amm, "swap", black_box(&swap))));
    group.bench_function("amm_swap_filled_in", |b| b.iter(|| predict(&filling, &alice, &amm, "swap", black_box(&swap))));
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    analysis(&mut c);
    fill(&mut c);
    c.final_summary();
}
