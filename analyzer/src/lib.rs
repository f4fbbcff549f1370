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
mod module;
pub mod plan;
mod predict;
mod render;
mod summary;

use std::collections::BTreeSet;

pub use domain::Byte;
pub use module::contract_features;
pub use plan::{ConflictGraph, ExecutionPlan, Strategy};
pub use predict::{predict, Environment, KeyPattern, PredictedAccess};
pub use render::{describe_call, describe_key, ArgNames};
pub use summary::{AccessKind, AccessSummary, ByteTemplate, CallTemplate, Comparison, Condition, ContractSummary, EntryKind, Guard, KeyTemplate, Literal, Run};

use crate::interp::{Interpreter, ENTRY_BUDGET};
use crate::module::Module;

/// Instructions the analysis of one module may interpret in all (bounds its time).
pub const MODULE_BUDGET: u64 = 12_000_000;

/// Bumped whenever summaries of the same code may change, so stored
/// summaries from an older analyzer are recomputed.
pub const ANALYZER_VERSION: u32 = 4;

/// Why a module could not be analysed. Callers that must go on (the VM at
/// deploy) use [`ContractSummary::unbounded`] instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyzeError {
    #[error("invalid Wasm: {0}")]
    InvalidWasm(String),
    #[error("module is not analysable: {0}")]
    Unsupported(String),
}

/// Analyses every exported entry point of `wasm`.
///
/// Entry points are the ABI's methods when the module embeds an ABI, else
/// every exported function. Never panics; time is bounded by
/// [`MODULE_BUDGET`].
pub fn analyze(wasm: &[u8]) -> Result<ContractSummary, AnalyzeError> {
    // The interpreter recurses once per nested block and inlined call; a
    // dedicated thread gives it a known stack whatever the caller's is.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chroma-analyzer".into())
            .stack_size(64 << 20)
            .spawn_scoped(scope, || analyze_on_this_thread(wasm))
            .map_err(|e| AnalyzeError::Unsupported(format!("cannot start the analysis thread: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(AnalyzeError::Unsupported("the analysis failed unexpectedly".into())))
    })
}

fn analyze_on_this_thread(wasm: &[u8]) -> Result<ContractSummary, AnalyzeError> {
    let module = Module::parse(wasm)?;
    let entries: Vec<(String, EntryKind, u32)> = match &module.abi {
        Some(abi) => abi
            .methods
            .iter()
            .filter_map(|m| module.exports.get(&m.name).map(|f| (m.name.clone(), EntryKind::from(m.kind), *f)))
            .collect(),
        None => module.exports.iter().map(|(name, f)| (name.clone(), EntryKind::Mutating, *f)).collect(),
    };
    let mut summaries = Vec::with_capacity(entries.len());
    let mut spent = 0u64;
    for (name, kind, func) in entries {
        let mut interpreter = Interpreter::new(&module, kind != EntryKind::Init);
        let budget = ENTRY_BUDGET.min(MODULE_BUDGET.saturating_sub(spent));
        interpreter.run_entry(func, budget);
        spent += interpreter.steps;
        let (conditions, guards) = interpreter.flags.export(&interpreter.effects.guards);
        let effects = interpreter.effects;
        let unbounded = effects.opaque.clone();
        summaries.push(AccessSummary {
            name,
            kind,
            reads: effects.reads,
            writes: effects.writes,
            adds: effects.adds,
            calls: effects.calls,
            conditions,
            guards,
            unbounded,
            steps: interpreter.steps,
        });
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let fixed_slots: BTreeSet<u32> = ContractSummary::compute_fixed_slots(&summaries);
    Ok(ContractSummary { entries: summaries, fixed_slots })
}
