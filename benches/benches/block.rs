//! Parallel block execution against serial execution, on the same state and
//! the same blocks, measured in interleaved rounds of one run: serial
//! execution, parallel execution with each strategy on all cores (planning
//! included), and the planning inside the dataflow runs (filling in
//! templates, building the conflict graph and the groups) as the executor
//! reports it, next to the execution it planned. Prints medians and ratios.
//!
//! `cargo bench -p chroma-benches --bench block [-- WORKLOAD...]`
//! (10,000-transaction blocks, 7 rounds or `ROUNDS`; under `cargo test` the
//! same code runs once on small blocks).

use std::time::{Duration, Instant};

use chroma_benches::{median, SetUpWorld};
use chroma_vm::{BlockOptions, Strategy, Transaction};
use chroma_workloads::{Workload, WorldConfig};

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

fn main() {
    chroma_alloc::tune();
    let full = std::env::args().any(|a| a == "--bench");
    let (users, size, chain_size, rounds) = if full { (10_000, 10_000, 2_000, 7) } else { (200, 300, 100, 1) };
    let threads = BlockOptions::default().threads;
    let config = WorldConfig { users, pools: 100, seed: 42, ..WorldConfig::default() };
    let base = SetUpWorld::new(config);

    println!("{threads} threads; medians of {rounds} interleaved rounds; times per block");
    println!("planning: inside the dataflow runs; plan/exec: over the execution it planned; plan/ser: over serial execution");
    println!(
        "{:<16} {:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "workload", "txs", "serial", "dataflow", "barrier", "df/ser", "bar/ser", "planning", "plan/exec", "plan/ser"
    );
    // `-- NAME...` measures only the workloads named.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let rounds = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(rounds);
    let all = [Workload::Transfers, Workload::TransfersZipf, Workload::Swaps, Workload::DefiMix, Workload::Lending, Workload::Chain];
    if let Some(unknown) = only.iter().find(|o| !all.iter().any(|w| w.name() == o.as_str())) {
        let names: Vec<&str> = all.iter().map(|w| w.name()).collect();
        eprintln!("unknown workload {unknown:?}; the workloads are: {}", names.join(", "));
        std::process::exit(2);
    }
    for workload in all {
        if !only.is_empty() && !only.iter().any(|name| name == workload.name()) {
            continue;
        }
        // A fresh generator per workload: its nonces continue from the set-up.
        let mut world = base.world();
        let txs: Vec<Transaction> = world.block(workload, if workload == Workload::Chain { chain_size } else { size });
        let (mut serial, mut dataflow, mut barrier) = (Vec::new(), Vec::new(), Vec::new());
        let (mut planning, mut executing) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut modes = [
                (&mut serial, BlockOptions::serial()),
                (&mut dataflow, BlockOptions { threads, strategy: Strategy::Dataflow, ..BlockOptions::default() }),
                (&mut barrier, BlockOptions { threads, strategy: Strategy::Barrier, ..BlockOptions::default() }),
            ];
            // A different mode first each round, so that no mode always
            // runs in the same place of the round (after a fork, say).
            modes.rotate_left(round % 3);
            for (samples, options) in modes {
                let mut vm = base.fork();
                let started = Instant::now();
                let done = vm.execute_block(&txs, &options).expect("block");
                let elapsed = started.elapsed();
                // Serial "execution" includes the report's plan; count execution alone.
                samples.push(if options.serial { done.report.execution } else { elapsed });
                if options.strategy == Strategy::Dataflow && !options.serial {
                    planning.push(done.report.planning);
                    executing.push(done.report.execution);
                }
                assert!(done.report.mispredicted.is_empty());
                assert_eq!(done.report.plan.len(), txs.len());
            }
        }
        let (s, d, b) = (median(serial), median(dataflow), median(barrier));
        let (p, e) = (median(planning), median(executing));
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1e3);
        println!(
            "{:<16} {:>6} {:>10} {:>10} {:>10} {:>8.2}x {:>8.2}x {:>10} {:>9.1}% {:>9.1}%",
            workload.name(),
            txs.len(),
            ms(s),
            ms(d),
            ms(b),
            s.as_secs_f64() / d.as_secs_f64(),
            s.as_secs_f64() / b.as_secs_f64(),
            ms(p),
            100.0 * p.as_secs_f64() / e.as_secs_f64(),
            100.0 * p.as_secs_f64() / s.as_secs_f64()
        );
    }
}
