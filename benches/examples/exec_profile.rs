//! Executes blocks over and over, for a profiler:
//! `cargo run --release -p chroma-benches --example exec_profile -- [serial|parallel|node] [workload] [size] [rounds]`.
//!
//! - `serial`: the same block serially from the same state; prints the
//!   median time per transaction.
//! - `parallel`: the same, in parallel with the default options; prints the
//!   medians of planning, execution and the rest of the call (what planning
//!   does not overlap, and the report) per transaction.
//! - `compare`: serial, parallel on one thread and parallel on every core,
//!   alternating round by round; prints the medians of execution per
//!   transaction, the whole call of the parallel run (planning included,
//!   as the throughput harness counts it) and the speedups.
//! - `plan`: the block's planning on one thread, split into filling in
//!   templates and building the plan; prints the medians per transaction.
//! - `node`: fresh blocks of the workload executed by a `Node` on disk (in
//!   parallel) and committed; prints the medians of execution and commit per
//!   transaction.

use std::time::Instant;

use chroma_benches::{median, SetUpWorld};
use chroma_vm::{BlockOptions, Node};
use chroma_workloads::{Workload, World, WorldConfig};

/// The allocator of the other benchmarks (see `throughput.rs`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "serial".into());
    let workload: Workload = args.next().map_or(Ok(Workload::Transfers), |w| w.parse()).unwrap_or(Workload::Transfers);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let config = WorldConfig { users: 10_000, pools: 100, seed: 42, ..WorldConfig::default() };
    let micros_per_tx = |samples| median(samples).as_secs_f64() * 1e6 / size as f64;
    match mode.as_str() {
        "serial" => {
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let mut times = Vec::new();
            for _ in 0..rounds {
                let mut vm = world.fork();
                let done = vm.execute_block(&block, &BlockOptions::serial()).expect("block");
                times.push(done.report.execution);
            }
            println!("{workload}: {size} transactions serially, median of {rounds}: {:.2} µs per transaction", micros_per_tx(times));
        }
        "parallel" => {
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let (mut planning, mut execution, mut outside) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let mut vm = world.fork();
                let started = Instant::now();
                let done = vm.execute_block(&block, &BlockOptions::default()).expect("block");
                outside.push(started.elapsed().saturating_sub(done.report.execution));
                planning.push(done.report.planning);
                execution.push(done.report.execution);
            }
            println!(
                "{workload}: {size} transactions in parallel, median of {rounds}: planning {:.2} µs, execution {:.2} µs, the call beyond execution {:.3} µs per transaction",
                micros_per_tx(planning),
                micros_per_tx(execution),
                micros_per_tx(outside)
            );
        }
        "compare" => {
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let runs = [
                ("serial", BlockOptions::serial()),
                ("one_thread", BlockOptions { threads: 1, adaptive: false, ..BlockOptions::default() }),
                ("parallel", BlockOptions::default()),
            ];
            let mut times = vec![Vec::new(); runs.len()];
            let mut whole = Vec::new();
            for _ in 0..rounds {
                for ((name, options), times) in runs.iter().zip(&mut times) {
                    let mut vm = world.fork();
                    let started = Instant::now();
                    let done = vm.execute_block(&block, options).expect("block");
                    if *name == "parallel" {
                        whole.push(started.elapsed());
                    }
                    times.push(done.report.execution);
                }
            }
            let medians: Vec<f64> = times.into_iter().map(micros_per_tx).collect();
            let whole = micros_per_tx(whole);
            let described: Vec<String> = runs.iter().zip(&medians).map(|((name, _), m)| format!("{name} {m:.2} µs")).collect();
            println!(
                "{workload}: {size} transactions, execution per transaction, medians of {rounds}: {}; parallel with planning {whole:.2} µs; speedup {:.2}x, with planning {:.2}x",
                described.join(", "),
                medians[0] / medians[2],
                medians[0] / whole
            );
        }
        "plan" => {
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let vm = world.fork();
            let (mut predicting, mut planning) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let started = Instant::now();
                let predicted = vm.predict_block(&block, 1).expect("predictions");
                predicting.push(started.elapsed());
                let started = Instant::now();
                let plan = chroma_analyzer::ExecutionPlan::new(&predicted);
                planning.push(started.elapsed());
                assert_eq!(plan.len(), size);
            }
            println!(
                "{workload}: {size} transactions planned on one thread, median of {rounds}: templates {:.2} µs, plan {:.2} µs per transaction",
                micros_per_tx(predicting),
                micros_per_tx(planning)
            );
        }
        "node" => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let mut node = Node::create(dir.path()).expect("node");
            let (mut world, setup) = World::new(config);
            for block in &setup {
                node.execute_block(block, &BlockOptions::default()).expect("set-up");
            }
            let (mut execution, mut commit) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let block = world.block(workload, size);
                let committed = node.execute_block(&block, &BlockOptions::default()).expect("block");
                execution.push(committed.report.execution + committed.report.planning);
                commit.push(committed.commit);
            }
            println!(
                "{workload}: {size} transactions on a node, median of {rounds}: execution {:.2} µs, commit {:.2} µs per transaction",
                micros_per_tx(execution),
                micros_per_tx(commit)
            );
        }
        other => {
            eprintln!("unknown mode {other:?}: serial, parallel, compare, plan or node");
            std::process::exit(2);
        }
    }
}
