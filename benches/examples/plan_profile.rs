//! Plans the same 10,000-transaction block over and over, for a profiler:
//! `cargo run --release -p chroma-benches --example plan_profile -- [workload] [rounds]`.

use chroma_vm::{BlockOptions, Vm};
use chroma_workloads::{Workload, World, WorldConfig};

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

fn main() {
    chroma_alloc::tune();
    let mut args = std::env::args().skip(1);
    let workload: Workload = args.next().map_or(Ok(Workload::Transfers), |w| w.parse()).unwrap_or(Workload::Transfers);
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let config = WorldConfig { users: 10_000, pools: 100, seed: 42, ..WorldConfig::default() };
    let (mut world, setup) = World::new(config);
    let mut vm = Vm::new().expect("engine");
    for block in &setup {
        vm.execute_block(block, &BlockOptions::default()).expect("set-up");
    }
    let txs = world.block(workload, 10_000);
    let threads = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(BlockOptions::default().threads);
    let (mut predicting, mut planning) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        let predictions = vm.predict_block(&txs, threads).expect("predict");
        predicting.push(started.elapsed());
        let started = std::time::Instant::now();
        let plan = chroma_vm::ExecutionPlan::new(&predictions);
        planning.push(started.elapsed());
        drop((plan, predictions));
    }
    let median = |mut d: Vec<std::time::Duration>| {
        d.sort();
        d[d.len() / 2].as_secs_f64() * 1e3
    };
    println!(
        "{workload}: {} transactions, medians of {rounds}: predicting {:.2} ms ({threads} threads), conflict graph and groups {:.2} ms",
        txs.len(),
        median(predicting),
        median(planning)
    );
}
