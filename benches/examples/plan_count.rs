//! Planning counted in instructions instead of timed: on this host a time
//! moves by 15-50% from run to run, which hides a change of a tenth; a count
//! under valgrind does not move.
//!
//! ```sh
//! cargo run --release -p chroma-benches --example plan_count -- record swaps 10000 /tmp/swaps.json
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/plan_count count /tmp/swaps.json 0
//! valgrind --tool=cachegrind --cache-sim=no target/release/examples/plan_count count /tmp/swaps.json 3
//! ```
//!
//! `record` saves a block of the workload with what filling its templates
//! in reads: the summaries of the contracts its transactions reach (and of
//! entries analysed for an input's shape) and the stored values the
//! predictor resolves. `count FILE N` loads that (no
//! engine is made, so it runs under valgrind) and then fills the block's
//! templates in N times (as the executor does: each call's and the write of
//! its sender's nonce) (`plan` instead of `count`: and builds its plan each
//! time; `graph` instead: fills them in once and builds the plan N times,
//! on the current rayon pool: `RAYON_NUM_THREADS=1` for the planner's
//! one pass); the difference of the instructions counted with N and with 0,
//! over N and the block's size, is the instructions per transaction.
//! Predictions follow recipes as the VM's do (`RECIPES=0`: every call is
//! filled in); the first round records them, so counts with 1 and N + 1
//! rounds give the rounds that follow them. Each mode also prints the
//! median time of a round; `COLD=1` evicts the caches before each round (a
//! 64 MiB write), as a block's execution does before the executor's
//! planner starts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use chroma_analyzer::{AccessSummary, Collected, ContractSummary, Decisions, Environment, ExecutionPlan, PredictedAccess, Recipes};
use chroma_benches::SetUpWorld;
use chroma_host_api::{Address, ADDRESS_LEN};
use chroma_vm::{PredictionEnv, TxKind};
use chroma_workloads::{Workload, WorldConfig};
use serde::{Deserialize, Serialize};

/// The binaries' allocator, whose instructions count as the VM's do.
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

/// What `record` saves: hex strings for bytes.
#[derive(Serialize, Deserialize)]
struct Recorded {
    summaries: Vec<(String, ContractSummary)>,
    stored: Vec<(String, Option<String>)>,
    /// Sender, contract, method, input.
    calls: Vec<(String, String, String, String)>,
    /// Entries analysed for an input's shape: contract, method, input.
    #[serde(default)]
    shaped: Vec<(String, String, String, AccessSummary)>,
}

/// The median of `took` over `txs` transactions, in µs per transaction (0
/// for no rounds, which `count FILE 0` runs).
fn median_micros_per_tx(mut took: Vec<std::time::Duration>, txs: usize) -> f64 {
    took.sort();
    took.get(took.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6 / txs.max(1) as f64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

fn address(text: &str) -> Address {
    Address(<[u8; ADDRESS_LEN]>::try_from(unhex(text)).expect("an address"))
}

/// The VM's environment, noting what the predictor asks of it.
struct Recording<'e> {
    inner: &'e PredictionEnv<'e>,
    contracts: RefCell<BTreeMap<[u8; ADDRESS_LEN], ()>>,
    stored: RefCell<BTreeMap<Vec<u8>, Option<Vec<u8>>>>,
    shaped: RefCell<BTreeMap<(Address, String, Vec<u8>), AccessSummary>>,
}

impl Environment for Recording<'_> {
    fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
        self.contracts.borrow_mut().insert(contract.0, ());
        self.inner.summary(contract)
    }

    fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        let value = self.inner.storage(key);
        self.stored.borrow_mut().insert(key.to_vec(), value.as_deref().map(<[u8]>::to_vec));
        value
    }

    fn shaped_entry(&self, contract: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        let shaped = self.inner.shaped_entry(contract, method, input);
        if let Some(summary) = &shaped {
            self.shaped.borrow_mut().insert((*contract, method.to_string(), input.to_vec()), (**summary).clone());
        }
        shaped
    }
}

/// The recorded environment, as `count` reads it.
struct Replay {
    summaries: BTreeMap<Address, ContractSummary>,
    stored: BTreeMap<Vec<u8>, Option<Arc<[u8]>>>,
    /// As the VM's environment keeps them (`DECISIONS=0`: not kept).
    decisions: Option<Decisions>,
    /// As the VM's environment keeps them (`RECIPES=0`: not kept).
    recipes: Option<Recipes>,
    shaped: BTreeMap<(Address, String, Vec<u8>), Arc<AccessSummary>>,
}

impl Environment for Replay {
    fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
        self.summaries.get(contract)
    }

    fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        self.stored.get(key).cloned().flatten()
    }

    fn decisions(&self) -> Option<&Decisions> {
        self.decisions.as_ref()
    }

    fn recipes(&self) -> Option<&Recipes> {
        self.recipes.as_ref()
    }

    fn shaped_entry(&self, contract: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        self.shaped.get(&(*contract, method.to_string(), input.to_vec())).cloned()
    }
}

/// With `COLD=1`, a buffer larger than the caches written before each
/// round, so that a round starts as the executor's planner does after a
/// block's execution: with the caches holding other data.
struct Cold(Vec<u8>);

impl Cold {
    fn from_env() -> Cold {
        Cold(if std::env::var("COLD").as_deref() == Ok("1") { vec![0; 64 << 20] } else { Vec::new() })
    }

    fn evict(&mut self, round: usize) {
        for byte in self.0.iter_mut().step_by(64) {
            *byte = byte.wrapping_add(round as u8 | 1);
        }
        std::hint::black_box(&self.0);
    }
}

fn main() {
    chroma_alloc::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["record", workload, size, file] => {
            let workload: Workload = workload.parse().unwrap_or_else(|e| panic!("{e}"));
            let size: usize = size.parse().expect("a block size");
            let world = SetUpWorld::new(WorldConfig { users: 10_000, pools: 100, seed: 42, ..WorldConfig::default() });
            let block = world.world().block(workload, size);
            let vm = world.fork();
            let env = PredictionEnv::new(vm.runtime(), &**vm.state());
            let recording = Recording { inner: &env, contracts: RefCell::default(), stored: RefCell::default(), shaped: RefCell::default() };
            let mut calls = Vec::new();
            let mut collected = Collected::default();
            for tx in &block {
                let TxKind::Call { contract, method, args } = &tx.kind else { panic!("{workload}: a block of calls only") };
                chroma_analyzer::predict_transaction_into(&recording, &tx.sender, contract, method, args, &mut collected);
                calls.push((hex(&tx.sender.0), hex(&contract.0), method.clone(), hex(args)));
            }
            let summaries = recording.contracts.borrow().keys().filter_map(|a| env.summary(&Address(*a)).map(|s| (hex(a), s.clone()))).collect();
            let stored = recording.stored.borrow().iter().map(|(k, v)| (hex(k), v.as_deref().map(hex))).collect();
            let shaped = recording.shaped.borrow().iter().map(|((c, m, i), s)| (hex(&c.0), m.clone(), hex(i), s.clone())).collect();
            let recorded = Recorded { summaries, stored, calls, shaped };
            std::fs::write(file, serde_json::to_vec(&recorded).expect("serializable")).expect("writable");
            println!("{workload}: {size} transactions recorded to {file}");
        }
        [mode @ ("count" | "plan" | "graph"), file, rounds] => {
            let recorded: Recorded = serde_json::from_slice(&std::fs::read(file).expect("readable")).expect("a recording");
            let rounds: usize = rounds.parse().expect("a number of rounds");
            let env = Replay {
                summaries: recorded.summaries.into_iter().map(|(a, s)| (address(&a), s)).collect(),
                stored: recorded.stored.into_iter().map(|(k, v)| (unhex(&k), v.map(|v| unhex(&v).into()))).collect(),
                decisions: (std::env::var("DECISIONS").as_deref() != Ok("0")).then(Decisions::default),
                recipes: (std::env::var("RECIPES").as_deref() != Ok("0")).then(Recipes::default),
                shaped: recorded.shaped.into_iter().map(|(c, m, i, s)| ((address(&c), m, unhex(&i)), Arc::new(s))).collect(),
            };
            let calls: Vec<(Address, Address, String, Vec<u8>)> =
                recorded.calls.into_iter().map(|(s, c, m, a)| (address(&s), address(&c), m, unhex(&a))).collect();
            let mut collected = Collected::default();
            let mut predict = || -> Vec<PredictedAccess> {
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, (sender, contract, method, input))| {
                        // As the executor fills them in (`predict_with`).
                        if let Some((_, _, method, input)) = calls.get(i + chroma_analyzer::PREFETCH_CALLS_AHEAD) {
                            chroma_analyzer::prefetch_call(method, input);
                        }
                        chroma_analyzer::predict_transaction_into(&env, sender, contract, method, input, &mut collected);
                        collected.finish()
                    })
                    .collect()
            };
            let mut cold = Cold::from_env();
            let mut patterns = 0;
            if mode == "graph" {
                // The predictions once, then the graph `rounds` times.
                let predictions = predict();
                let took: Vec<std::time::Duration> = (0..rounds)
                    .map(|round| {
                        cold.evict(round);
                        let started = std::time::Instant::now();
                        std::hint::black_box(ExecutionPlan::new(&predictions));
                        started.elapsed()
                    })
                    .collect();
                let median = median_micros_per_tx(took, calls.len());
                println!("{} transactions, their graph {rounds} time(s): median {median:.3} µs per transaction", calls.len());
                return;
            }
            // Filling in timed alone (freeing the predictions is not), or
            // with the plan made after (`plan`; on the global pool: with more
            // than one thread, the sharded build, unless `RAYON_NUM_THREADS=1`).
            let mut took = Vec::with_capacity(rounds);
            for round in 0..rounds {
                cold.evict(round);
                let started = std::time::Instant::now();
                let predictions = predict();
                if mode == "plan" {
                    std::hint::black_box(ExecutionPlan::new(&predictions));
                }
                took.push(started.elapsed());
                patterns = predictions.iter().map(|p| p.patterns().len()).sum::<usize>();
            }
            let median = median_micros_per_tx(took, calls.len());
            let what = if mode == "count" { "filling in" } else { "filling in and planning" };
            println!("{} transactions, {patterns} patterns, {rounds} round(s): {what}, median {median:.3} µs per transaction", calls.len());
            if let Some(recipes) = env.recipes() {
                let made = (rounds * calls.len()) as u64;
                println!("recipes: {} kept; of {made} predictions {} followed one, {} packed from its template", recipes.len(), recipes.followed(), recipes.packed());
            }
        }
        _ => {
            eprintln!("usage: plan_count record WORKLOAD SIZE FILE | plan_count (count|plan|graph) FILE ROUNDS");
            std::process::exit(2);
        }
    }
}
