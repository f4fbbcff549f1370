//! Executes the same block serially over and over from the same state, for a
//! profiler: `cargo run --release -p chroma-benches --example exec_profile -- [workload] [size] [rounds]`.
//! Prints the median time per transaction.

use chroma_benches::{median, SetUpWorld};
use chroma_vm::BlockOptions;
use chroma_workloads::{Workload, WorldConfig};

/// The allocator of the other benchmarks (see `throughput.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let workload: Workload = args.next().map_or(Ok(Workload::Transfers), |w| w.parse()).unwrap_or(Workload::Transfers);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let world = SetUpWorld::new(WorldConfig { users: 10_000, pools: 100, seed: 42, ..WorldConfig::default() });
    let block = world.world().block(workload, size);
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut vm = world.fork();
        let done = vm.execute_block(&block, &BlockOptions::serial()).expect("block");
        times.push(done.report.execution);
    }
    let per_tx = median(times).as_secs_f64() * 1e6 / size as f64;
    println!("{workload}: {size} transactions serially, median of {rounds}: {per_tx:.2} µs per transaction");
}
