//! Summaries of an entry point for one input shape, made when a prediction
//! first needs them and kept.
//!
//! An entry point that takes a string, a vector or an option may build its
//! keys from bytes whose place depends on a length the deploy-time analysis
//! cannot know: the registry's `register(name)` reads and writes the key
//! `name`, and its summary says "any key". Its summary then says
//! [`by_shape`](chroma_analyzer::AccessSummary::by_shape), and a prediction
//! of a call of it asks for the entry analysed again for the call's
//! [`InputShape`] (its length and its length prefixes and option tags),
//! which gives the exact key. Every input of that shape gets the same
//! summary, so one analysis serves every later call of the shape. A runtime
//! keeps its analyses (at most [`MAX_SHAPES_PER_ENTRY`] per entry and
//! [`MAX_SHAPED_ANALYSES`] in all); a node stores them with the contracts'
//! summaries, after each block, and gives them back to its runtime when it
//! opens.
//!
//! A prediction is only a plan: a wider one (no shaped summary, the table
//! full, the analysis failed) costs parallelism, never correctness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use chroma_analyzer::{analyze_for_shape, AccessSummary, MAX_SHAPED_INPUT_LEN};
use chroma_host_api::{Abi, Address, InputShape};

/// Most shaped analyses a runtime keeps. Past it, calls of shapes not yet
/// analysed are predicted from the entry's general summary.
pub const MAX_SHAPED_ANALYSES: usize = 4096;

/// Most shapes analysed for one entry of one code. An analysis runs while a
/// block is planned, at the node's expense, so a contract whose callers send
/// inputs of ever new lengths must not cost more than this many analyses
/// (each bounded by [`SHAPED_BUDGET`](chroma_analyzer::SHAPED_BUDGET)).
/// 64 covers every name the registry accepts.
pub const MAX_SHAPES_PER_ENTRY: usize = 64;

/// A deployed contract with an entry analysed by shape.
pub(crate) struct ShapedContract {
    pub code_hash: [u8; 32],
    pub code: Arc<[u8]>,
    pub abi: Abi,
}

/// One analysis: the entry's summary for the shape, or `None` when the
/// analysis failed or left the entry unbounded (the general summary is used).
type Analysis = Arc<OnceLock<Option<Arc<AccessSummary>>>>;

/// Code hash, entry, shape.
type AnalysisKey = ([u8; 32], String, InputShape);

/// The contracts with entries analysed by shape, by address, and the
/// analyses made so far.
#[derive(Default)]
pub(crate) struct ShapedSummaries {
    contracts: RwLock<BTreeMap<Address, Arc<ShapedContract>>>,
    analyses: Mutex<BTreeMap<AnalysisKey, Analysis>>,
    /// Analyses made since [`ShapedSummaries::take_made`] was last called,
    /// for a node to store.
    made: Mutex<Vec<(AnalysisKey, Arc<AccessSummary>)>>,
    /// Analyses made so far, and the time they took: reports tell this
    /// one-time cost apart from planning proper.
    analysing: Mutex<ShapeAnalysisTime>,
}

/// Analyses by input shape made, and the time they took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShapeAnalysisTime {
    pub analyses: usize,
    pub time: Duration,
}

impl ShapeAnalysisTime {
    /// What was made since `earlier`.
    pub fn since(self, earlier: ShapeAnalysisTime) -> ShapeAnalysisTime {
        ShapeAnalysisTime { analyses: self.analyses.saturating_sub(earlier.analyses), time: self.time.saturating_sub(earlier.time) }
    }
}

/// One stored analysis by shape: code hash, entry, shape, summary.
pub type ShapedAnalysis = ([u8; 32], String, InputShape, AccessSummary);

impl ShapedSummaries {
    pub fn register(&self, address: Address, contract: Arc<ShapedContract>) {
        self.contracts.write().unwrap_or_else(|p| p.into_inner()).insert(address, contract);
    }

    /// Entry `method` of the contract at `address` analysed for `input`'s
    /// shape; `None` when there is none to have (see the module's doc).
    /// The first call for a shape analyses it (milliseconds: 2-40 ms for the
    /// registry's names); calls for the same shape on other threads
    /// meanwhile wait for that analysis instead of repeating it. Whether a
    /// shape was analysed depends on the calls seen before (the bounds
    /// above): it changes a prediction's width, never a block's result.
    pub fn entry(&self, address: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        let contract = self.contracts.read().unwrap_or_else(|p| p.into_inner()).get(address).cloned()?;
        let shape = contract.abi.method(method)?.input_shape(input).filter(|s| s.len <= MAX_SHAPED_INPUT_LEN)?;
        let analysis: Analysis = {
            let mut analyses = self.analyses.lock().unwrap_or_else(|p| p.into_inner());
            let key = (contract.code_hash, method.to_string(), shape.clone());
            if let Some(known) = analyses.get(&key) {
                known.clone()
            } else if analyses.len() >= MAX_SHAPED_ANALYSES {
                return None;
            } else if shapes_of(&analyses, &contract.code_hash, method) >= MAX_SHAPES_PER_ENTRY {
                return None;
            } else {
                analyses.entry(key).or_default().clone()
            }
        };
        analysis
            .get_or_init(|| {
                let started = Instant::now();
                let made = analyze_for_shape(&contract.code, method, &shape).ok().filter(|s| s.unbounded.is_none()).map(Arc::new);
                let mut analysing = self.analysing.lock().unwrap_or_else(|p| p.into_inner());
                analysing.analyses += 1;
                analysing.time += started.elapsed();
                drop(analysing);
                if let Some(summary) = &made {
                    let key = (contract.code_hash, method.to_string(), shape.clone());
                    self.made.lock().unwrap_or_else(|p| p.into_inner()).push((key, summary.clone()));
                }
                made
            })
            .clone()
    }

    /// Seeds an analysis made before (stored by a node), within the bounds.
    pub fn remember(&self, (code_hash, method, shape, mut summary): ShapedAnalysis) {
        // Stored before summaries said which bytes their shape fixes.
        if summary.shape_fixed.is_none() {
            summary.shape_fixed = Some(shape.fixed_offsets());
        }
        let mut analyses = self.analyses.lock().unwrap_or_else(|p| p.into_inner());
        if analyses.len() >= MAX_SHAPED_ANALYSES || shapes_of(&analyses, &code_hash, &method) >= MAX_SHAPES_PER_ENTRY {
            return;
        }
        let analysis = Analysis::default();
        let _ = analysis.set(Some(Arc::new(summary)));
        analyses.insert((code_hash, method, shape), analysis);
    }

    /// The analyses by shape made in this runtime so far, and their time.
    pub fn analysing(&self) -> ShapeAnalysisTime {
        *self.analysing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The analyses made since the last call, oldest first.
    pub fn take_made(&self) -> Vec<ShapedAnalysis> {
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(|p| p.into_inner()));
        made.into_iter().map(|((hash, method, shape), summary)| (hash, method, shape, Arc::unwrap_or_clone(summary))).collect()
    }
}

/// Shapes of entry `method` of `code_hash` analysed (or being analysed) so far.
fn shapes_of(analyses: &BTreeMap<AnalysisKey, Analysis>, code_hash: &[u8; 32], method: &str) -> usize {
    let first = (*code_hash, method.to_string(), InputShape::default());
    analyses.range(first..).take_while(|((hash, m, _), _)| hash == code_hash && m == method).count()
}
