//! # chroma-analyzer
//!
//! Reads a compiled contract and infers, for every entry point, which storage
//! keys it may read, write or add to, and which contracts it may call, as
//! templates over the call's input, caller and contract address
//! ([`analyze`] → [`ContractSummary`]). Filling the templates in for one
//! transaction ([`predict`]) gives its predicted access set, from which the
//! block planner builds the conflict graph.
//!
//! The analysis is an abstract interpretation of the Wasm itself
//! ([`interp`](crate::interp) over the byte-level domain of
//! [`domain`](crate::domain)); it is *sound*: every key an execution touches
//! is inside the prediction. Whatever the analysis cannot follow widens the
//! prediction (to a key prefix, a whole slot, the whole contract, or
//! everything), never narrows it.

mod bytemap;
mod domain;
mod interp;
mod locals;
mod module;
pub mod plan;
mod predict;
mod render;
mod summary;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use domain::Byte;
pub use module::contract_features;
pub use plan::{ConflictGraph, ExecutionPlan, Strategy};
pub use predict::{predict, Environment, KeyBytes, KeyPattern, PredictedAccess, INLINE_KEY_LEN};
pub use render::{describe_call, describe_key, ArgNames};
pub use summary::{AccessKind, AccessSummary, ByteTemplate, CallTemplate, Comparison, Condition, ContractSummary, EntryKind, Guard, KeyTemplate, Literal, Run};

use crate::interp::{Interpreter, ENTRY_BUDGET};
use crate::module::Module;

/// Instructions the analysis of one module may interpret in all (bounds its time).
pub const MODULE_BUDGET: u64 = 12_000_000;

/// Bumped whenever summaries of the same code may change, so stored
/// summaries from an older analyzer are recomputed.
pub const ANALYZER_VERSION: u32 = 5;

/// Why a module could not be analysed. Callers that must go on (the VM at
/// deploy) use [`ContractSummary::unbounded`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    #[error("invalid Wasm: {0}")]
    InvalidWasm(String),
    #[error("module is not analysable: {0}")]
    Unsupported(String),
}

/// Stack of each analysis thread: the interpreter recurses once per nested
/// block and inlined call.
const ANALYSIS_STACK: usize = 64 << 20;

/// A small deterministic generator for the crate's tests: each call gives a
/// number below its argument (xorshift).
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// Most threads one module's analysis uses (entry points are analysed
/// independently, each on one thread).
const MAX_ANALYSIS_THREADS: usize = 8;

/// Analyses every exported entry point of `wasm`.
///
/// Entry points are the ABI's methods when the module embeds an ABI, else
/// every exported function. Never panics; the work is bounded by
/// [`MODULE_BUDGET`]. Entry points are analysed on up to one thread per
/// core; the result is that of analysing them one after another.
pub fn analyze(wasm: &[u8]) -> Result<ContractSummary, AnalyzeError> {
    // A dedicated thread gives the interpreter a known stack whatever the caller's is.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chroma-analyzer".into())
            .stack_size(ANALYSIS_STACK)
            .spawn_scoped(scope, || analyze_on_this_thread(wasm))
            .map_err(|e| AnalyzeError::Unsupported(format!("cannot start the analysis thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(AnalyzeError::Unsupported("the analysis failed unexpectedly".into())))
    })
}

/// One entry point to analyse: its name, kind and function index.
type EntryPoint = (String, EntryKind, u32);

fn analyze_entry(module: &Module, (name, kind, func): &EntryPoint, budget: u64) -> AccessSummary {
    let mut interpreter = Interpreter::new(module, *kind != EntryKind::Init);
    interpreter.run_entry(*func, budget);
    let (conditions, guards) = interpreter.flags.export(&interpreter.effects.guards);
    let effects = interpreter.effects;
    let unbounded = effects.opaque.clone();
    AccessSummary {
        name: name.clone(),
        kind: *kind,
        reads: effects.reads,
        writes: effects.writes,
        adds: effects.adds,
        calls: effects.calls,
        conditions,
        guards,
        unbounded,
        steps: interpreter.steps,
    }
}

fn analyze_on_this_thread(wasm: &[u8]) -> Result<ContractSummary, AnalyzeError> {
    let module = Module::parse(wasm)?;
    let entries: Vec<EntryPoint> = match &module.abi {
        Some(abi) => abi
            .methods
            .iter()
            .filter_map(|m| module.exports.get(&m.name).map(|f| (m.name.clone(), EntryKind::from(m.kind), *f)))
            .collect(),
        None => module.exports.iter().map(|(name, f)| (name.clone(), EntryKind::Mutating, *f)).collect(),
    };

    // Entries one after another share MODULE_BUDGET: each may use what the
    // ones before it left, up to ENTRY_BUDGET. Run in parallel, each gets
    // ENTRY_BUDGET, and the loop below keeps a result only where it is the
    // sequential one: an analysis that used no more steps than the
    // sequential budget never met that budget, so it ran exactly as it
    // would have with it. The others (rare: modules near the budget) run
    // again with their sequential budget. Workers stop taking entries once
    // the steps done reach MODULE_BUDGET, which bounds the work as before
    // (plus one entry per thread).
    let parallel: Vec<OnceLock<AccessSummary>> = entries.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let worker = || loop {
        if done.load(Ordering::Relaxed) >= MODULE_BUDGET {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(entry) = entries.get(i) else { break };
        let summary = analyze_entry(&module, entry, ENTRY_BUDGET);
        done.fetch_add(summary.steps, Ordering::Relaxed);
        let _ = parallel[i].set(summary);
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, MAX_ANALYSIS_THREADS).min(entries.len().max(1));
    std::thread::scope(|scope| {
        for t in 1..threads {
            // Fewer threads if one cannot start: this one does the rest.
            let _ = std::thread::Builder::new()
                .name(format!("chroma-analyzer-{t}"))
                .stack_size(ANALYSIS_STACK)
                .spawn_scoped(scope, worker);
        }
        worker();
    });
    let mut parallel: Vec<Option<AccessSummary>> = parallel.into_iter().map(OnceLock::into_inner).collect();
    let mut summaries = Vec::with_capacity(entries.len());
    let mut spent = 0u64;
    for (entry, ran) in entries.iter().zip(parallel.iter_mut()) {
        let budget = ENTRY_BUDGET.min(MODULE_BUDGET.saturating_sub(spent));
        let summary = match ran.take() {
            Some(summary) if budget == ENTRY_BUDGET || summary.steps <= budget => summary,
            _ => analyze_entry(&module, entry, budget),
        };
        spent += summary.steps;
        summaries.push(summary);
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let fixed_slots: BTreeSet<u32> = ContractSummary::compute_fixed_slots(&summaries);
    Ok(ContractSummary { entries: summaries, fixed_slots })
}
