//! The throughput harness: each DeFi workload at 1,000 and 10,000
//! transactions, executed serially, in parallel on one thread and on every
//! core, and end to end on disk (planning, execution and the commit of a
//! `Node`), next to its floor (each of the block's methods called in a loop
//! on one warm instance), to what the host itself gives every core (the
//! block split by sender into independent loops), and to its planning alone
//! on one thread (templates, then graph and groups). All figures come from
//! one run, in interleaved rounds, as medians; ratios are taken within the
//! run.
//!
//! `cargo bench -p chroma-benches --bench throughput` prints the table and
//! writes it as JSON to `target/throughput.json` (`ROUNDS` sets the rounds,
//! `-- NAME...` picks workloads). Under `cargo test` a quick mode runs every
//! measurement once on small blocks, to show that the harness works
//! (`target/throughput-quick.json`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chroma_benches::{median, median_ratio, run_independent_parts, split_by_sender, SetUpWorld};
use chroma_host_api::Address;
use chroma_vm::floor::WarmInstance;
use chroma_vm::{BlockOptions, Durability, ExecutionPlan, Node, Transaction, TxKind};
use chroma_workloads::{Workload, World, WorldConfig};
use serde::Serialize;

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

/// One row of the table: a workload at one block size.
#[derive(Debug, Serialize)]
struct Row {
    workload: String,
    txs: usize,
    /// Transactions per second, from median times.
    serial_tps: f64,
    parallel_1_thread_tps: f64,
    parallel_tps: f64,
    /// Parallel execution (`BlockReport::execution`), all cores: a segment
    /// starts executing while it is planned, so this includes the planning
    /// it overlapped.
    parallel_execution_tps: f64,
    /// Planning, execution and the commit to disk, all cores, each block
    /// synced before the next (`Durability::EachBlock`).
    end_to_end_tps: f64,
    /// The same with each block synced while the next one executes
    /// (`Durability::SyncBehind`).
    end_to_end_sync_behind_tps: f64,
    /// The floor: the block's calls on warm instances, one after another.
    floor_tps: f64,
    speedup: f64,
    /// The median over rounds of each round's serial time over its parallel
    /// time (the runs of a round are moments apart; see `median_ratio`).
    speedup_paired: f64,
    /// What the host gives all cores on this workload in this run: one
    /// thread executing the block's transactions one after another, over one
    /// thread per core each executing its own part of them (split by
    /// sender) on its own copy of the state, with nothing shared, planned or
    /// checked (paired, as `speedup_paired`): about the best an executor can
    /// do on this host, and what its speedup is to be read against.
    independent_parts_speedup: f64,
    predicted_speedup: f64,
    /// Planning per transaction, in microseconds (in the parallel runs).
    planning_us_per_tx: f64,
    /// The same planning measured alone on one thread (as the executor's
    /// planner runs beside execution on two cores), in microseconds per
    /// transaction: filling the templates in (the predictions), and the
    /// conflict graph with its ordered groups (made in one pass: a
    /// transaction's group is found as its edges are).
    fill_us_per_tx: f64,
    graph_and_groups_us_per_tx: f64,
    /// The median over rounds of each block's planning over its own
    /// execution (until session 33, the median planning over the median
    /// execution).
    planning_share_of_execution: f64,
    /// Serial, parallel and end-to-end time per transaction over the floor's.
    serial_over_floor: f64,
    parallel_over_floor: f64,
    end_to_end_over_floor: f64,
    /// Serial time per transaction beyond the floor, in microseconds.
    overhead_us_per_tx: f64,
    peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    threads: usize,
    rounds: usize,
    analysis_ms: BTreeMap<String, f64>,
    rows: Vec<Row>,
}

fn tps(txs: usize, time: Duration) -> f64 {
    txs as f64 / time.as_secs_f64().max(1e-9)
}

/// The process's peak resident memory since the last reset, in MiB (Linux;
/// 0 elsewhere), and a reset for the next workload.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
    kib.unwrap_or(0.0) / 1024.0
}

fn reset_peak_rss() {
    // "5" resets the peak (VmHWM) to the current size; harmless if refused.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The floor of `txs` over `base`'s state: each distinct (contract,
/// method) called in a loop on one warm instance, its time per call
/// counted once per transaction.
fn floor(base: &SetUpWorld, txs: &[Transaction], calls: usize) -> Duration {
    let vm = base.fork();
    let mut by_method: BTreeMap<(Address, &str), usize> = BTreeMap::new();
    for tx in txs {
        if let TxKind::Call { contract, method, .. } = &tx.kind {
            *by_method.entry((*contract, method.as_str())).or_insert(0) += 1;
        }
    }
    let mut total = Duration::ZERO;
    for ((contract, method), count) in by_method {
        // A call that succeeds on the state before the block (a repay
        // may need the block's borrow first); failing calls are timed
        // only when no candidate succeeds.
        let candidates = txs.iter().filter(|tx| matches!(&tx.kind, TxKind::Call { contract: c, method: m, .. } if *c == contract && m == method));
        let mut chosen = None;
        for tx in candidates.take(32) {
            let TxKind::Call { args, .. } = &tx.kind else { continue };
            let mut warm = WarmInstance::new(&vm, contract, tx.sender, method, args.clone()).expect("warm instance");
            let succeeded = warm.call().is_ok();
            chosen = Some(warm);
            if succeeded {
                break;
            }
        }
        let Some(mut warm) = chosen else { continue };
        let started = Instant::now();
        for _ in 0..calls {
            let _ = warm.call();
        }
        total += started.elapsed() * count as u32 / calls as u32;
    }
    total
}

/// Planning `txs` alone on `one_thread`, in parts (medians of `rounds`,
/// after one round not counted: the executor's planner is a kept thread,
/// whose tables are warm): the predictions (templates filled in), then the
/// conflict graph and its ordered groups from them.
fn planning_parts(base: &SetUpWorld, txs: &[Transaction], rounds: usize, one_thread: &rayon::ThreadPool) -> (Duration, Duration) {
    let vm = base.fork();
    let (mut fill, mut graph) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        let started = Instant::now();
        let predicted = vm.predict_block(txs, 1).expect("predictions");
        fill.push(started.elapsed());
        let started = Instant::now();
        let plan = one_thread.install(|| ExecutionPlan::new(&predicted));
        graph.push(started.elapsed());
        assert_eq!(plan.len(), txs.len());
        if round == 0 {
            fill.clear();
            graph.clear();
        }
    }
    (median(fill), median(graph))
}

fn main() {
    chroma_alloc::tune();
    let full = std::env::args().any(|a| a == "--bench");
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let (users, sizes, rounds, floor_calls): (usize, &[usize], usize, usize) =
        if full { (10_000, &[1_000, 10_000], 5, 2_000) } else { (200, &[100], 1, 20) };
    let rounds = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(rounds).max(1);
    let threads = BlockOptions::default().threads;
    let all = [
        ("transfers", Workload::Transfers, 100),
        ("transfers-zipf", Workload::TransfersZipf, 100),
        ("swaps-1-pool", Workload::Swaps, 1),
        ("swaps-10-pools", Workload::Swaps, 10),
        ("swaps-100-pools", Workload::Swaps, 100),
        ("lending", Workload::Lending, 100),
        ("defi-mix", Workload::DefiMix, 100),
        ("chain", Workload::Chain, 100),
    ];
    if let Some(unknown) = only.iter().find(|o| !all.iter().any(|(name, ..)| name == o)) {
        let names: Vec<&str> = all.iter().map(|(name, ..)| *name).collect();
        eprintln!("unknown workload {unknown:?}; the workloads are: {}", names.join(", "));
        std::process::exit(2);
    }
    let workloads: Vec<(String, Workload, usize)> = all
        .into_iter()
        .filter(|(name, ..)| only.is_empty() || only.iter().any(|o| o == name))
        .map(|(name, workload, pools)| (name.to_string(), workload, pools))
        .collect();

    // Analysis time per example contract (what a deploy costs the analyzer).
    let mut analysis_ms = BTreeMap::new();
    for name in chroma_workloads::examples::NAMES {
        let wasm = chroma_workloads::examples::by_name(name).expect("example");
        let samples = (0..rounds.min(3))
            .map(|_| {
                let started = Instant::now();
                chroma_analyzer::analyze(wasm).expect("analyses");
                started.elapsed()
            })
            .collect();
        analysis_ms.insert(name.to_string(), median(samples).as_secs_f64() * 1e3);
    }

    // One thread for planning alone, kept for every row (as the executor keeps its planner's).
    let planner = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a planning thread");
    let mut bases: BTreeMap<usize, SetUpWorld> = BTreeMap::new();
    let mut rows = Vec::new();
    println!("{threads} threads; medians of {rounds} rounds; tx/s; ×floor is time per transaction over the floor's");
    println!("indep: one thread executing the block over {threads} threads each executing a part of it (split by sender) on a state copy of its own: what the host itself gives");
    println!("fill, graph: planning alone on one thread, µs per transaction: the templates filled in, then the conflict graph and its groups");
    println!(
        "{:<16} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7} {:>6} {:>6} {:>7} {:>7} {:>7} {:>7}",
        "workload", "txs", "floor", "serial", "par 1t", "parallel", "par exec", "e2e disk", "e2e behind", "speedup", "paired", "indep", "pred",
        "plan µs", "plan %", "fill", "graph", "ser ×f", "par ×f", "e2e ×f", "MiB"
    );
    for (name, workload, pools) in &workloads {
        let config = WorldConfig { users, pools: *pools, seed: 42, ..WorldConfig::default() };
        let base = bases.entry(*pools).or_insert_with(|| SetUpWorld::new(config));
        for &size in sizes {
            reset_peak_rss();
            let txs = base.world().block(*workload, size);
            let (mut serial, mut one, mut all, mut all_exec, mut planning) = (vec![], vec![], vec![], vec![], vec![]);
            let (mut whole, mut parts) = (vec![], vec![]);
            let split = split_by_sender(&txs, threads);
            let mut predicted = 0.0;
            for round in 0..rounds {
                let mut runs = [
                    (0, BlockOptions::serial()),
                    // The parallel machinery on one thread (not chosen adaptively).
                    (1, BlockOptions { threads: 1, adaptive: false, ..BlockOptions::default() }),
                    (2, BlockOptions::default()),
                ];
                // A different run first each round: a run right after
                // another measured slower than alone (the one-thread run
                // after serial did), so no run keeps one place.
                runs.rotate_left(round % 3);
                for (i, options) in &runs {
                    let mut vm = base.fork();
                    let started = Instant::now();
                    let done = vm.execute_block(&txs, options).expect("block");
                    let elapsed = started.elapsed();
                    assert!(done.report.mispredicted.is_empty(), "{name}: mispredicted");
                    match *i {
                        // Serial: the whole call, as for the parallel runs. Both
                        // move onto an execution thread first; a serial block's
                        // planning (for its report) runs beside it, off its path.
                        0 => serial.push(elapsed),
                        1 => one.push(elapsed),
                        _ => {
                            all.push(elapsed);
                            all_exec.push(done.report.execution);
                            planning.push(done.report.planning);
                            predicted = done.report.predicted_speedup(threads);
                        }
                    }
                }
                // The host's ceiling: the whole block on one thread and its
                // parts on a thread each, one transaction after another with
                // nothing planned (each first in every other round).
                for independent in [round % 2 == 1, round % 2 == 0] {
                    if independent {
                        let mut vms: Vec<_> = split.iter().map(|_| base.fork()).collect();
                        parts.push(run_independent_parts(&mut vms, &split));
                    } else {
                        whole.push(run_independent_parts(&mut [base.fork()], std::slice::from_ref(&txs)));
                    }
                }
            }
            let floor = floor(base, &txs, floor_calls);
            let (fill, graph) = planning_parts(base, &txs, rounds, &planner);

            // End to end on disk: a node with the same world, committing
            // fresh blocks of the workload (nonces move on, so each round
            // needs its own block), made beforehand and run back to back.
            // Once with each block synced before the call returns, once
            // with each synced while the next executes (the last one's sync
            // counted in its time).
            let (mut disk_world, setup) = World::new(base.config);
            let blocks: Vec<Vec<Transaction>> = (0..rounds).map(|_| disk_world.block(*workload, size)).collect();
            let mut end_to_end = [Vec::new(), Vec::new()];
            for (durability, times) in [Durability::EachBlock, Durability::SyncBehind].into_iter().zip(&mut end_to_end) {
                let dir = tempfile::tempdir().expect("temporary directory");
                let mut node = Node::create(dir.path()).expect("node");
                for block in &setup {
                    node.execute_block(block, &BlockOptions::default()).expect("set-up on disk");
                }
                node.set_durability(durability);
                for block in &blocks {
                    let started = Instant::now();
                    let committed = node.execute_block(block, &BlockOptions::default()).expect("block on disk");
                    times.push(started.elapsed());
                    assert_eq!(committed.receipts.len(), size);
                }
                let started = Instant::now();
                node.sync().expect("sync");
                if let Some(last) = times.last_mut() {
                    *last += started.elapsed();
                }
                drop(node);
            }
            let [end_to_end, end_to_end_behind] = end_to_end;

            let paired = median_ratio(&serial, &all);
            // Each block's planning over the execution it planned (the two
            // overlap, so the host's drift between rounds cancels).
            let planning_share = median_ratio(&planning, &all_exec);
            let independent = median_ratio(&whole, &parts);
            let (s, o, a, ae, p, e) = (median(serial), median(one), median(all), median(all_exec), median(planning), median(end_to_end));
            let eb = median(end_to_end_behind);
            let per_tx = |d: Duration| d.as_secs_f64() / size as f64;
            let row = Row {
                workload: name.clone(),
                txs: size,
                serial_tps: tps(size, s),
                parallel_1_thread_tps: tps(size, o),
                parallel_tps: tps(size, a),
                parallel_execution_tps: tps(size, ae),
                end_to_end_tps: tps(size, e),
                end_to_end_sync_behind_tps: tps(size, eb),
                floor_tps: tps(size, floor),
                speedup: s.as_secs_f64() / a.as_secs_f64(),
                speedup_paired: paired,
                independent_parts_speedup: independent,
                predicted_speedup: predicted,
                planning_us_per_tx: per_tx(p) * 1e6,
                fill_us_per_tx: per_tx(fill) * 1e6,
                graph_and_groups_us_per_tx: per_tx(graph) * 1e6,
                planning_share_of_execution: planning_share,
                serial_over_floor: s.as_secs_f64() / floor.as_secs_f64(),
                parallel_over_floor: a.as_secs_f64() / floor.as_secs_f64(),
                end_to_end_over_floor: e.as_secs_f64() / floor.as_secs_f64(),
                overhead_us_per_tx: (per_tx(s) - per_tx(floor)) * 1e6,
                peak_rss_mib: peak_rss_mib(),
            };
            let k = |v: f64| format!("{:.1}k", v / 1e3);
            println!(
                "{:<16} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>6.2}x {:>6.2}x {:>6.2}x {:>6.2}x {:>8.2} {:>6.1}% {:>6.2} {:>6.2} {:>6.1}x {:>6.1}x {:>6.1}x {:>7.0}",
                row.workload,
                row.txs,
                k(row.floor_tps),
                k(row.serial_tps),
                k(row.parallel_1_thread_tps),
                k(row.parallel_tps),
                k(row.parallel_execution_tps),
                k(row.end_to_end_tps),
                k(row.end_to_end_sync_behind_tps),
                row.speedup,
                row.speedup_paired,
                row.independent_parts_speedup,
                row.predicted_speedup,
                row.planning_us_per_tx,
                100.0 * row.planning_share_of_execution,
                row.fill_us_per_tx,
                row.graph_and_groups_us_per_tx,
                row.serial_over_floor,
                row.parallel_over_floor,
                row.end_to_end_over_floor,
                row.peak_rss_mib
            );
            rows.push(row);
        }
    }
    println!("analysis per contract (ms): {}", analysis_ms.iter().map(|(n, ms)| format!("{n} {ms:.1}")).collect::<Vec<_>>().join(", "));
    let report = Report { threads, rounds, analysis_ms, rows };
    let json = serde_json::to_string_pretty(&report).expect("json");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(std::path::Path::new("."));
    // The quick mode (under `cargo test`) keeps clear of a full run's file.
    let path = workspace.join("target").join(if full { "throughput.json" } else { "throughput-quick.json" });
    match std::fs::write(&path, json) {
        Ok(()) => println!("written: {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
