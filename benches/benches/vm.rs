//! The serial VM's per-transaction cost: a token transfer through the full
//! path (nonce, instantiation from the cached InstancePre, host calls,
//! journal, receipt, apply) next to the floor (the same method on one warm
//! instance), per-call instantiation alone, and a block of 1,000 transfers
//! committed to disk.
//!
//! `cargo bench -p chroma-benches` prints criterion's figures, then the ratio
//! full path / floor from interleaved rounds measured in the same run.

use std::hint::black_box;
use std::time::Instant;

use chroma_benches::{transfer, vm_with_token};
use chroma_host_api::Encode;
use chroma_vm::floor::{instantiate_once, WarmInstance};
use chroma_vm::{dev_account, BlockOptions, Node, Outcome, Transaction, TxKind};
use criterion::{BatchSize, Criterion};

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

fn transfer_paths(c: &mut Criterion) {
    let (mut vm, token) = vm_with_token();
    let mut nonce = 1;
    let mut group = c.benchmark_group("transfer");
    group.bench_function("full_path", |b| {
        b.iter(|| {
            let receipt = vm.execute(&transfer(token, nonce)).expect("storage");
            nonce += 1;
            black_box(receipt)
        })
    });
    let (vm, token) = vm_with_token();
    let args = (dev_account("bob"), 1u128).encode();
    let mut warm = WarmInstance::new(&vm, token, dev_account("alice"), "transfer", args).expect("warm instance");
    group.bench_function("warm_floor", |b| b.iter(|| warm.call().expect("call")));
    group.bench_function("instantiate_only", |b| b.iter(|| instantiate_once(&vm, token, "transfer").expect("instantiate")));
    group.finish();
}

fn committed_block(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::create(dir.path()).expect("node");
    let alice = dev_account("alice");
    let deploy = Transaction {
        sender: alice,
        nonce: 0,
        kind: TxKind::Deploy {
            code: chroma_benches::example_wasm("token"),
            init_args: ("TOK".to_string(), u128::MAX / 2).encode(),
        },
        gas_limit: chroma_benches::GAS,
    };
    let token = node.execute_block(&[deploy], &BlockOptions::serial()).expect("deploy").receipts[0].deployed.expect("address");
    let next_nonce = std::cell::Cell::new(node.nonce(&alice).expect("nonce"));
    let mut group = c.benchmark_group("block");
    group.sample_size(10);
    group.bench_function("1000_transfers_committed", |b| {
        b.iter_batched(
            || (0..1000).map(|i| transfer(token, next_nonce.get() + i)).collect::<Vec<_>>(),
            |txs| {
                next_nonce.set(next_nonce.get() + txs.len() as u64);
                let block = node.execute_block(&txs, &BlockOptions::serial()).expect("block");
                debug_assert!(block.receipts.iter().all(|r| r.outcome == Outcome::Success));
                black_box(block.root)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Median of per-call nanoseconds over interleaved rounds of both paths.
fn print_ratio() {
    const ROUNDS: usize = 15;
    const CALLS: u64 = 2_000;
    let (mut vm, token) = vm_with_token();
    let (floor_vm, floor_token) = vm_with_token();
    let args = (dev_account("bob"), 1u128).encode();
    let mut warm = WarmInstance::new(&floor_vm, floor_token, dev_account("alice"), "transfer", args).expect("warm");
    let mut nonce = 1;
    let (mut full, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(vm.execute(&transfer(token, nonce)).expect("storage"));
            nonce += 1;
        }
        full.push(start.elapsed().as_nanos() as f64 / CALLS as f64);
        let start = Instant::now();
        for _ in 0..CALLS {
            warm.call().expect("call");
        }
        floor.push(start.elapsed().as_nanos() as f64 / CALLS as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (full, floor) = (median(&mut full), median(&mut floor));
    println!(
        "\ntransfer, medians of {ROUNDS} interleaved rounds of {CALLS} calls: full path {:.2} us, warm floor {:.2} us, \
         ratio {:.1}x, overhead beyond the floor {:.2} us",
        full / 1000.0,
        floor / 1000.0,
        full / floor,
        (full - floor) / 1000.0
    );
}

fn main() {
    chroma_alloc::tune();
    // Single transactions (`Vm::execute`) run here rather than each moving to
    // a thread with the contract stack first (which would be measured too).
    chroma_vm::on_execution_thread(|| {
        let mut criterion = Criterion::default().configure_from_args();
        transfer_paths(&mut criterion);
        committed_block(&mut criterion);
        criterion.final_summary();
        // Only when measuring (`cargo bench` passes --bench), not in `cargo test`'s quick run.
        if std::env::args().any(|a| a == "--bench") {
            print_ratio();
        }
    })
    .expect("an execution thread");
}
