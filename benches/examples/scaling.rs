//! Does serial execution scale across threads when each thread has its own
//! VM (own engine, own instance pool)? Runs the same number of independent
//! transfers on one thread, then on two threads with a VM each, and on two
//! threads sharing one VM's engine through the parallel executor.

use std::time::Instant;

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

use chroma_vm::{BlockOptions, StateOverlay, Strategy, Transaction, Vm};
use chroma_workloads::{Workload, World, WorldConfig};

fn set_up(setup: &[Vec<Transaction>]) -> Vm {
    let mut vm = Vm::new().expect("engine");
    for block in setup {
        vm.execute_block(block, &BlockOptions::default()).expect("set-up");
    }
    vm
}

fn main() {
    chroma_alloc::tune();
    let config = WorldConfig { users: 4_000, pools: 1, seed: 4, ..WorldConfig::default() };
    let (mut world, setup) = World::new(config);
    let block = world.block(Workload::Transfers, 4_000);
    let (a, b) = (set_up(&setup), set_up(&setup));
    let frozen_a = StateOverlay::new();
    frozen_a.apply_values(a.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
    let frozen_b = StateOverlay::new();
    frozen_b.apply_values(b.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
    let fork = |vm: &Vm, frozen: &std::sync::Arc<StateOverlay>| Vm::with_state(vm.runtime().clone(), StateOverlay::over(frozen.clone()));
    if std::env::args().any(|a| a == "executor") {
        for _ in 0..20 {
            let mut p = fork(&a, &frozen_a);
            p.execute_block(&block, &BlockOptions { threads: 2, strategy: Strategy::Dataflow, ..BlockOptions::default() }).expect("block");
        }
        return;
    }
    for _ in 0..3 {
        let mut one = fork(&a, &frozen_a);
        let started = Instant::now();
        let serial_report = one.execute_block(&block, &BlockOptions::serial()).expect("block").report;
        let single = started.elapsed();

        let (half1, half2) = block.split_at(block.len() / 2);
        let (mut x, mut y) = (fork(&a, &frozen_a), fork(&b, &frozen_b));
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| x.execute_block(half1, &BlockOptions::serial()).expect("block"));
            s.spawn(|| y.execute_block(half2, &BlockOptions::serial()).expect("block"));
        });
        let two_engines = started.elapsed();

        let (mut x, mut y) = (fork(&a, &frozen_a), fork(&a, &frozen_a));
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| x.execute_block(half1, &BlockOptions::serial()).expect("block"));
            s.spawn(|| y.execute_block(half2, &BlockOptions::serial()).expect("block"));
        });
        let one_engine_two_threads = started.elapsed();

        let mut p = fork(&a, &frozen_a);
        let started = Instant::now();
        let report = p.execute_block(&block, &BlockOptions { threads: 2, strategy: Strategy::Dataflow, ..BlockOptions::default() }).expect("block").report;
        let executor = started.elapsed();
        println!(
            "serial: planning {:?} execution {:?}; parallel: planning {:?} execution {:?}, {} groups, {} serial segments",
            serial_report.planning, serial_report.execution, report.planning, report.execution, report.plan.groups.len(), report.serial_segments
        );
        println!(
            "{} transfers: one thread {:.1} ms; two threads with an engine each {:.1} ms ({:.2}x); two threads sharing one engine {:.1} ms ({:.2}x); executor on 2 threads {:.1} ms ({:.2}x)",
            block.len(),
            single.as_secs_f64() * 1e3,
            two_engines.as_secs_f64() * 1e3,
            single.as_secs_f64() / two_engines.as_secs_f64(),
            one_engine_two_threads.as_secs_f64() * 1e3,
            single.as_secs_f64() / one_engine_two_threads.as_secs_f64(),
            executor.as_secs_f64() * 1e3,
            single.as_secs_f64() / executor.as_secs_f64(),
        );
    }
}
