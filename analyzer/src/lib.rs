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

mod arena;
mod bytemap;
mod domain;
mod fingerprint;
mod guards;
mod interp;
mod locals;
mod module;
pub mod plan;
mod predict;
mod recipe;
mod render;
mod summary;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use chroma_host_api::InputShape;

pub use domain::Byte;
pub use guards::Decisions;
pub use module::contract_features;
pub use plan::{ConflictGraph, ExecutionPlan, Groups, PatternAt, Planned, Strategy, Successors};
pub use recipe::Recipes;
pub use predict::{nonce_pattern, predict, predict_into, predict_transaction_into, prefetch_call, PREFETCH_CALLS_AHEAD, Collected, Environment, KeyBytes, KeyPattern, PatternRef, Patterns, PredictedAccess, INLINE_KEY_LEN};
pub use render::{describe_call, describe_key, ArgNames};
pub use summary::{AccessKind, AccessSummary, ByteTemplate, CallTemplate, Comparison, Condition, ContractSummary, EntryKind, Guard, KeyTemplate, Literal, Run};

use crate::interp::{Interpreter, ENTRY_BUDGET};
use crate::module::Module;

/// Instructions the analysis of one module may interpret in all (bounds its time).
pub const MODULE_BUDGET: u64 = 12_000_000;

/// Bumped whenever summaries of the same code may change, so stored
/// summaries from an older analyzer are recomputed.
pub const ANALYZER_VERSION: u32 = 6;

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
    on_analysis_thread(|| analyze_on_this_thread(wasm))
}

/// Runs `analysis` on a thread of its own: that gives the interpreter a
/// known stack whatever the caller's is.
fn on_analysis_thread<T: Send>(analysis: impl FnOnce() -> Result<T, AnalyzeError> + Send) -> Result<T, AnalyzeError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chroma-analyzer".into())
            .stack_size(ANALYSIS_STACK)
            .spawn_scoped(scope, analysis)
            .map_err(|e| AnalyzeError::Unsupported(format!("cannot start the analysis thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(AnalyzeError::Unsupported("the analysis failed unexpectedly".into())))
    })
}

/// One entry point to analyse: its name, kind, function index, and whether
/// its inputs come in several shapes ([`Method::has_shapes`]).
type EntryPoint = (String, EntryKind, u32, bool);

fn analyze_entry(module: &Module, (name, kind, func, has_shapes): &EntryPoint, budget: u64) -> AccessSummary {
    let mut interpreter = Interpreter::new(module, *kind != EntryKind::Init);
    interpreter.run_entry(*func, budget);
    let mut summary = summary_of(name, *kind, interpreter);
    summary.by_shape = *has_shapes && *kind != EntryKind::Init && !summary.is_precise();
    summary
}

fn summary_of(name: &str, kind: EntryKind, interpreter: Interpreter<'_>) -> AccessSummary {
    let (conditions, guards) = interpreter.flags.export(&interpreter.effects.guards);
    let steps = interpreter.steps;
    let effects = interpreter.effects;
    AccessSummary {
        name: name.to_string(),
        kind,
        reads: effects.reads,
        writes: effects.writes,
        adds: effects.adds,
        calls: effects.calls,
        conditions,
        guards,
        unbounded: effects.opaque,
        steps,
        by_shape: false,
        shape_fixed: None,
        compiled: Default::default(),
    }
}

/// Longest input [`analyze_for_shape`] analyses: its work grows with the
/// input's length (one path kept apart per byte), and a longer input falls
/// back to the entry's general summary.
pub const MAX_SHAPED_INPUT_LEN: u32 = 128;

/// Instructions the analysis for one input shape may interpret.
pub const SHAPED_BUDGET: u64 = 300_000;

/// Analyses entry point `entry` of `wasm` again for calls whose input has
/// `shape` (see [`InputShape`]): sound for every input of that shape, and
/// exact where the general summary lost a key to a length it did not know
/// (a name registry's `register(name: String)`). The VM does this for an
/// entry whose summary says [`AccessSummary::by_shape`], once per shape
/// met, and keeps the result.
///
/// Errors when the module cannot be analysed, `entry` is not one of its
/// entry points, or the input is longer than [`MAX_SHAPED_INPUT_LEN`].
/// Never panics; the work is bounded by [`SHAPED_BUDGET`].
pub fn analyze_for_shape(wasm: &[u8], entry: &str, shape: &InputShape) -> Result<AccessSummary, AnalyzeError> {
    if shape.len > MAX_SHAPED_INPUT_LEN {
        return Err(AnalyzeError::Unsupported(format!("input of {} bytes, above the {MAX_SHAPED_INPUT_LEN} analysed by shape", shape.len)));
    }
    on_analysis_thread(|| {
        let module = Module::parse(wasm)?;
        let (kind, func) = module
            .abi
            .as_ref()
            .and_then(|abi| abi.methods.iter().find(|m| m.name == entry))
            .and_then(|m| Some((EntryKind::from(m.kind), *module.exports.get(entry)?)))
            .filter(|(kind, _)| *kind != EntryKind::Init)
            .ok_or_else(|| AnalyzeError::Unsupported(format!("{entry} is not an entry point of the module")))?;
        let mut interpreter = Interpreter::for_shape(&module, shape.clone());
        interpreter.run_entry(func, SHAPED_BUDGET);
        let mut summary = summary_of(entry, kind, interpreter);
        summary.shape_fixed = Some(shape.fixed_offsets());
        Ok(summary)
    })
}

fn analyze_on_this_thread(wasm: &[u8]) -> Result<ContractSummary, AnalyzeError> {
    let module = Module::parse(wasm)?;
    let entries: Vec<EntryPoint> = match &module.abi {
        Some(abi) => abi
            .methods
            .iter()
            .filter_map(|m| module.exports.get(&m.name).map(|f| (m.name.clone(), EntryKind::from(m.kind), *f, m.has_shapes())))
            .collect(),
        None => module.exports.iter().map(|(name, f)| (name.clone(), EntryKind::Mutating, *f, false)).collect(),
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
    let fixed_slots: BTreeSet<u32> = ContractSummary::compute_fixed_slots(&summaries);
    Ok(ContractSummary::new(summaries, fixed_slots))
}
