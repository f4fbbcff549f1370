//! Does serial execution scale across threads? Runs a block of transfers:
//! serially on one thread; split by sender into two independent halves,
//! serially on two threads (with an engine each, and sharing one engine);
//! the whole and the halves again as plain loops of `Vm::execute` (no block
//! around them, nothing planned beside them); and through the parallel
//! executor on two threads. Each run takes each place in a round in turn.
//! The throughput harness's `indep` column is the plain loops' ratio, for
//! every workload.

use std::time::Instant;

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

use chroma_benches::{run_independent_parts, split_by_sender};
use chroma_vm::{BlockOptions, StateOverlay, Strategy, Transaction, Vm};
use chroma_workloads::{Workload, World, WorldConfig};

fn set_up(setup: &[Vec<Transaction>]) -> Vm {
    let mut vm = Vm::new().expect("engine");
    // As a node runs (and the harness): receipts without the keys accessed.
    vm.runtime().set_recording_accesses(false);
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
    // Split by sender: split in the middle, the second half's transactions
    // from senders of the first (two in five) carried nonces its fork had
    // not reached, and were refused unrun.
    let halves = split_by_sender(&block, 2);
    let serial_halves = |x: &mut Vm, y: &mut Vm| {
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| x.execute_block(&halves[0], &BlockOptions::serial()).expect("block"));
            s.spawn(|| y.execute_block(&halves[1], &BlockOptions::serial()).expect("block"));
        });
        started.elapsed()
    };
    const RUNS: usize = 6;
    let names = [
        "one thread (a serial block)",
        "two threads with an engine each",
        "two threads sharing one engine",
        "one thread, a plain loop",
        "two threads, plain loops",
        "the executor on two threads",
    ];
    // Each run takes each place in turn, so that no run keeps the place
    // right after the same other one (a run right after another measured
    // slower than alone, in the harness).
    for round in 0..RUNS {
        let mut times = [std::time::Duration::ZERO; RUNS];
        for place in 0..RUNS {
            let run = (round + place) % RUNS;
            times[run] = match run {
                0 => {
                    let mut one = fork(&a, &frozen_a);
                    let started = Instant::now();
                    one.execute_block(&block, &BlockOptions::serial()).expect("block");
                    started.elapsed()
                }
                1 => serial_halves(&mut fork(&a, &frozen_a), &mut fork(&b, &frozen_b)),
                2 => serial_halves(&mut fork(&a, &frozen_a), &mut fork(&a, &frozen_a)),
                // Plain loops of `Vm::execute`, without the planning a
                // serial block does beside itself (for its report).
                3 => run_independent_parts(&mut [fork(&a, &frozen_a)], std::slice::from_ref(&block)),
                4 => run_independent_parts(&mut [fork(&a, &frozen_a), fork(&a, &frozen_a)], &halves),
                _ => {
                    let mut p = fork(&a, &frozen_a);
                    let started = Instant::now();
                    p.execute_block(&block, &BlockOptions { threads: 2, strategy: Strategy::Dataflow, ..BlockOptions::default() }).expect("block");
                    started.elapsed()
                }
            };
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let [block_time, engines, shared, loop_time, loops, executor] = times;
        println!(
            "{} transfers: {} {:.1} ms; {} {:.1} ms ({:.2}x); {} {:.1} ms ({:.2}x); {} {:.1} ms ({:.2}x)",
            block.len(),
            names[0],
            ms(block_time),
            names[1],
            ms(engines),
            ms(block_time) / ms(engines),
            names[2],
            ms(shared),
            ms(block_time) / ms(shared),
            names[5],
            ms(executor),
            ms(block_time) / ms(executor),
        );
        println!(
            "  {} {:.1} ms; {} {:.1} ms ({:.2}x); the executor against it {:.2}x",
            names[3],
            ms(loop_time),
            names[4],
            ms(loops),
            ms(loop_time) / ms(loops),
            ms(loop_time) / ms(executor),
        );
    }
}
