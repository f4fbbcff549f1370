//! Executes blocks over and over, for a profiler:
//! `cargo run --release -p chroma-benches --example exec_profile -- [serial|parallel|node] [workload] [size] [rounds]`.
//!
//! - `serial`: the same block serially from the same state; prints the
//!   median time per transaction.
//! - `parallel`: the same, in parallel with the default options (`THREADS=n`:
//!   on n threads, never serially); prints the
//!   medians of planning, execution and the rest of the call (what planning
//!   does not overlap, and the report) per transaction, and the median of
//!   each block's planning over its own execution.
//! - `compare`: serial, parallel on one thread and parallel on every core,
//!   taking turns to go first; prints the medians per transaction of the
//!   whole serial call and of the parallel runs' execution, the whole call
//!   of the parallel run (planning included), and the speedups: whole call
//!   over whole call is what the throughput harness counts.
//! - `plan`: the block's planning on one thread and on every core: filling
//!   in templates alone, the graph and groups alone (from those
//!   predictions), then both; prints the medians per transaction, and the
//!   block's accesses, conflict edges and groups.
//! - `allocs`: the block's planning alone, then the block once serially and
//!   once in parallel; prints the allocations and bytes allocated per
//!   transaction (counts, unlike times, repeat exactly from run to run).
//! - `node`: fresh blocks of the workload executed by a `Node` on disk (in
//!   parallel) and committed, back to back; prints the medians of execution,
//!   commit and the whole call per transaction (`SYNC_BEHIND=1`: each block
//!   synced while the next executes, `Durability::SyncBehind`).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chroma_benches::{median, median_ratio, SetUpWorld};
use chroma_vm::{BlockOptions, Node};
use chroma_workloads::{Workload, World, WorldConfig};

/// The allocator of the other benchmarks (see `throughput.rs`), counting
/// allocations while `allocs` mode measures: a count does not vary from run
/// to run as times do on a noisy host.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

struct Counting;

impl Counting {
    fn count(size: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is passed on to the binaries' allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        unsafe { chroma_alloc::Allocator.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        unsafe { chroma_alloc::Allocator.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { chroma_alloc::Allocator.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::count(new_size);
        unsafe { chroma_alloc::Allocator.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and bytes allocated (reallocations included) while `f` runs.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    ALLOCATED_BYTES.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let result = f();
    COUNTING.store(false, Ordering::SeqCst);
    (result, ALLOCATIONS.load(Ordering::SeqCst), ALLOCATED_BYTES.load(Ordering::SeqCst))
}

fn main() {
    chroma_alloc::tune();
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
            // THREADS=n: on n threads, not adaptively (the parallel path itself, as `par 1t`).
            let options = match std::env::var("THREADS").ok().and_then(|t| t.parse().ok()) {
                Some(threads) => BlockOptions { threads, adaptive: false, ..BlockOptions::default() },
                None => BlockOptions::default(),
            };
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let (mut planning, mut execution, mut outside) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                let mut vm = world.fork();
                let started = Instant::now();
                let done = vm.execute_block(&block, &options).expect("block");
                outside.push(started.elapsed().saturating_sub(done.report.execution));
                planning.push(done.report.planning);
                execution.push(done.report.execution);
            }
            // Each block's planning over its own execution: the two run at
            // the same time, so the host's drift between rounds cancels.
            let share = median_ratio(&planning, &execution);
            println!(
                "{workload}: {size} transactions in parallel, median of {rounds}: planning {:.2} µs, execution {:.2} µs, the call beyond execution {:.3} µs per transaction; planning {:.1}% of its block's execution",
                micros_per_tx(planning),
                micros_per_tx(execution),
                micros_per_tx(outside),
                100.0 * share
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
            for round in 0..rounds {
                // A different run first each round, as in the throughput
                // harness: the run after the one-thread run measured slower.
                let mut order: Vec<usize> = (0..runs.len()).collect();
                order.rotate_left(round % runs.len());
                for i in order {
                    let ((name, options), times) = (&runs[i], &mut times[i]);
                    let mut vm = world.fork();
                    let started = Instant::now();
                    let done = vm.execute_block(&block, options).expect("block");
                    let elapsed = started.elapsed();
                    match *name {
                        // The whole call, as the harness times serial blocks.
                        "serial" => times.push(elapsed),
                        "parallel" => {
                            whole.push(elapsed);
                            times.push(done.report.execution);
                        }
                        _ => times.push(done.report.execution),
                    }
                }
            }
            let medians: Vec<f64> = times.into_iter().map(micros_per_tx).collect();
            let whole = micros_per_tx(whole);
            let described: Vec<String> = runs.iter().zip(&medians).map(|((name, _), m)| format!("{name} {m:.2} µs")).collect();
            println!(
                "{workload}: {size} transactions, per transaction, medians of {rounds} (serial: the whole call; the others: execution): {}; parallel, the whole call {whole:.2} µs; speedup {:.2}x, whole call over whole call {:.2}x",
                described.join(", "),
                medians[0] / medians[2],
                medians[0] / whole
            );
        }
        "plan" => {
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let vm = world.fork();
            let cores = BlockOptions::default().threads;
            for threads in [1, cores] {
                let (mut predicting, mut planning, mut graphs) = (Vec::new(), Vec::new(), Vec::new());
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
                for _ in 0..rounds {
                    let started = Instant::now();
                    let predicted = vm.predict_block(&block, threads).expect("predictions");
                    predicting.push(started.elapsed());
                    assert_eq!(predicted.len(), size);
                    // The graph and groups alone, from predictions made
                    // beforehand (as the executor makes them: on the pool).
                    let started = Instant::now();
                    let plan = pool.install(|| chroma_analyzer::ExecutionPlan::new(&predicted));
                    graphs.push(started.elapsed());
                    drop(plan);
                    drop(predicted);
                    let started = Instant::now();
                    let plan = vm.plan(&block, threads).expect("plan");
                    planning.push(started.elapsed());
                    assert_eq!(plan.len(), size);
                }
                println!(
                    "{workload}: {size} transactions planned on {threads} thread(s), median of {rounds}: templates {:.2} µs, graph alone {:.2} µs, templates and plan {:.2} µs per transaction",
                    micros_per_tx(predicting),
                    micros_per_tx(graphs),
                    micros_per_tx(planning)
                );
            }
            let plan = vm.plan(&block, 1).expect("plan");
            let accesses: usize = vm.predict_block(&block, 1).expect("predictions").iter().map(|p| p.patterns().len()).sum();
            println!(
                "{workload}: {size} transactions, {accesses} predicted accesses, {} conflict edges, {} groups",
                plan.graph.edge_count(),
                plan.groups.len()
            );
        }
        "allocs" => {
            // The block once serially and once in parallel, each from the
            // same state; dropping the result is not counted.
            let world = SetUpWorld::new(config);
            let block = world.world().block(workload, size);
            let vm = world.fork();
            let (predicted, count, bytes) = allocations_in(|| vm.predict_block(&block, 1).expect("predictions"));
            let (_, plan_count, plan_bytes) = allocations_in(|| chroma_analyzer::ExecutionPlan::new(&predicted));
            println!(
                "{workload}: {size} transactions planned: templates {:.1} allocations ({:.0} bytes), plan {:.1} allocations ({:.0} bytes) per transaction",
                count as f64 / size as f64,
                bytes as f64 / size as f64,
                plan_count as f64 / size as f64,
                plan_bytes as f64 / size as f64
            );
            for (name, options) in [("serially", BlockOptions::serial()), ("in parallel", BlockOptions::default())] {
                let mut vm = world.fork();
                let (done, count, bytes) = allocations_in(|| vm.execute_block(&block, &options).expect("block"));
                assert_eq!(done.receipts.len(), size);
                println!(
                    "{workload}: {size} transactions {name}: {:.1} allocations, {:.0} bytes allocated per transaction (planning included)",
                    count as f64 / size as f64,
                    bytes as f64 / size as f64
                );
            }
        }
        "node" => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let mut node = Node::create(dir.path()).expect("node");
            let (mut world, setup) = World::new(config);
            for block in &setup {
                node.execute_block(block, &BlockOptions::default()).expect("set-up");
            }
            let behind = std::env::var_os("SYNC_BEHIND").is_some();
            if behind {
                node.set_durability(chroma_vm::Durability::SyncBehind);
            }
            // Made beforehand: blocks run back to back, as a node runs them
            // (a sync behind would otherwise overlap making the next block).
            let blocks: Vec<_> = (0..rounds).map(|_| world.block(workload, size)).collect();
            let (mut execution, mut commit, mut whole) = (Vec::new(), Vec::new(), Vec::new());
            for block in &blocks {
                let started = Instant::now();
                let committed = node.execute_block(block, &BlockOptions::default()).expect("block");
                whole.push(started.elapsed());
                execution.push(committed.report.execution + committed.report.planning);
                commit.push(committed.commit);
            }
            println!(
                "{workload}: {size} transactions on a node{}, median of {rounds}: execution {:.2} µs, commit {:.2} µs, the whole call {:.2} µs per transaction",
                if behind { " syncing behind" } else { "" },
                micros_per_tx(execution),
                micros_per_tx(commit),
                micros_per_tx(whole)
            );
        }
        "node-compare" => {
            // Two nodes on the same blocks, one keeping the last block's
            // writes in memory and one reading everything from its database,
            // taking turns going first (this host's speed drifts by tens of
            // percent within minutes; a ratio within each pair of blocks
            // does not).
            let dirs = [tempfile::tempdir().expect("temporary directory"), tempfile::tempdir().expect("temporary directory")];
            let mut nodes = [Node::create(dirs[0].path()).expect("node"), Node::create(dirs[1].path()).expect("node")];
            nodes[1].set_last_block_in_memory(false);
            let (mut world, setup) = World::new(config);
            for node in &mut nodes {
                node.set_durability(chroma_vm::Durability::SyncBehind);
                for block in &setup {
                    node.execute_block(block, &BlockOptions::default()).expect("set-up");
                }
            }
            let blocks: Vec<_> = (0..rounds).map(|_| world.block(workload, size)).collect();
            let mut whole: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            let mut ratios = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let mut pair = [Duration::ZERO; 2];
                for n in [i % 2, 1 - i % 2] {
                    let started = Instant::now();
                    node_block(&mut nodes[n], block);
                    pair[n] = started.elapsed();
                }
                assert_eq!(nodes[0].root(), nodes[1].root(), "block {i}: the roots differ");
                whole[0].push(pair[0]);
                whole[1].push(pair[1]);
                ratios.push(pair[1].as_secs_f64() / pair[0].as_secs_f64());
            }
            ratios.sort_by(f64::total_cmp);
            let [kept, read] = whole;
            println!(
                "{workload}: {size} transactions on two nodes syncing behind, median of {rounds}: the whole call {:.2} µs with the last block in memory, {:.2} µs without; per block, without over with: median {:.3}, range {:.3}-{:.3}",
                micros_per_tx(kept),
                micros_per_tx(read),
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1]
            );
        }
        other => {
            eprintln!("unknown mode {other:?}: serial, parallel, compare, plan, allocs, node or node-compare");
            std::process::exit(2);
        }
    }
}

/// Executes and commits `block` on `node` (and drops what it returns inside the timing).
fn node_block(node: &mut Node, block: &[chroma_vm::Transaction]) {
    node.execute_block(block, &BlockOptions::default()).expect("block");
}
