//! Plans the same 10,000-transaction block over and over, for a profiler:
//! `cargo run --release -p chroma-benches --example plan_profile -- [workload] [rounds] [recipes]`.
//!
//! With `recipes`, it fills the block's templates in on this thread instead,
//! alternately following the recipes learnt from earlier transactions (as
//! the planner does) and filling every one in, and prints the medians of
//! both: the two in one process, taking turns, on this noisy host.

use std::time::{Duration, Instant};

use chroma_analyzer::{Collected, Environment, PredictedAccess};
use chroma_vm::tx::TxKind;
use chroma_vm::{BlockOptions, PredictionEnv, Vm};
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
    if args.next().as_deref() == Some("recipes") {
        return compare_recipes(&vm, &txs, workload, rounds);
    }
    let threads = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(BlockOptions::default().threads);
    // The graph on as many threads as the predictions (the planner beside
    // execution has one).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    let (mut predicting, mut planning) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        let predictions = vm.predict_block(&txs, threads).expect("predict");
        predicting.push(started.elapsed());
        let started = std::time::Instant::now();
        let plan = pool.install(|| chroma_vm::ExecutionPlan::new(&predictions));
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

fn compare_recipes(vm: &Vm, txs: &[chroma_vm::Transaction], workload: Workload, rounds: usize) {
    let env = PredictionEnv::new(vm.runtime(), &**vm.state());
    let without = env.fork().without_recipes();
    let fill = |env: &PredictionEnv<'_>| {
        let mut collected = Collected::default();
        let started = Instant::now();
        let predictions: Vec<PredictedAccess> = txs
            .iter()
            .filter_map(|tx| match &tx.kind {
                TxKind::Call { contract, method, args } => {
                    chroma_analyzer::predict_transaction_into(env, &tx.sender, contract, method, args, &mut collected);
                    Some(collected.finish())
                }
                TxKind::Deploy { .. } => None,
            })
            .collect();
        let took = started.elapsed();
        drop(predictions);
        took
    };
    // The first round of each learns (and warms the view's caches): the
    // recipes are recorded then, as in a node's first block (or its first
    // after a deploy).
    let first = [fill(&without), fill(&env)];
    let (mut following, mut filling) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            following.push(fill(&env));
            filling.push(fill(&without));
        } else {
            filling.push(fill(&without));
            following.push(fill(&env));
        }
    }
    let per_tx = |mut d: Vec<Duration>| {
        d.sort();
        d[d.len() / 2].as_secs_f64() * 1e6 / txs.len() as f64
    };
    let followed = env.recipes().map_or(0, |r| r.followed());
    println!(
        "{workload}: {} transactions, templates filled in on one thread, medians of {rounds}: following recipes {:.3} µs, filling every one in {:.3} µs per transaction ({followed} predictions followed a recipe); first round: {:.3} µs filling in, {:.3} µs recording recipes",
        txs.len(),
        per_tx(following),
        per_tx(filling),
        per_tx(vec![first[0]]),
        per_tx(vec![first[1]])
    );
}
