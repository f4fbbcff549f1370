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
//! summary, so one analysis serves every later call of the shape.
//!
//! A prediction is only a plan: a wider one (no shaped summary, the table
//! full, the analysis failed) costs parallelism, never correctness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chroma_analyzer::{analyze_for_shape, AccessSummary, MAX_SHAPED_INPUT_LEN};
use chroma_host_api::{Abi, Address, InputShape};

/// Most shaped analyses a process keeps. Past it, calls of shapes not yet
/// analysed are predicted from the entry's general summary.
pub const MAX_SHAPED_ANALYSES: usize = 4096;

/// A deployed contract with an entry analysed by shape.
pub(crate) struct ShapedContract {
    pub code_hash: [u8; 32],
    pub code: Arc<[u8]>,
    pub abi: Abi,
}

/// One analysis: the entry's summary for the shape, or `None` when the
/// analysis failed or left the entry unbounded (the general summary is used).
type Analysis = Arc<OnceLock<Option<Arc<AccessSummary>>>>;

/// The contracts with entries analysed by shape, by address.
#[derive(Default)]
pub(crate) struct ShapedSummaries {
    contracts: RwLock<BTreeMap<Address, Arc<ShapedContract>>>,
}

impl ShapedSummaries {
    pub fn register(&self, address: Address, contract: Arc<ShapedContract>) {
        self.contracts.write().unwrap_or_else(|p| p.into_inner()).insert(address, contract);
    }

    /// Entry `method` of the contract at `address` analysed for `input`'s
    /// shape; `None` when there is none to have (see the module's doc).
    /// The first call for a shape analyses it (milliseconds: 2-40 ms for the
    /// registry's names); calls for the same shape on other threads
    /// meanwhile wait for that analysis instead of repeating it.
    pub fn entry(&self, address: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        let contract = self.contracts.read().unwrap_or_else(|p| p.into_inner()).get(address).cloned()?;
        let shape = contract.abi.method(method)?.input_shape(input).filter(|s| s.len <= MAX_SHAPED_INPUT_LEN)?;
        // The analysis is a pure function of the code and the shape: every
        // runtime of the process (several in tests and benches) shares it.
        static ANALYSES: OnceLock<Mutex<BTreeMap<([u8; 32], String, InputShape), Analysis>>> = OnceLock::new();
        let analysis: Analysis = {
            let mut analyses = ANALYSES.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
            let key = (contract.code_hash, method.to_string(), shape.clone());
            if let Some(known) = analyses.get(&key) {
                known.clone()
            } else if analyses.len() >= MAX_SHAPED_ANALYSES {
                return None;
            } else {
                analyses.entry(key).or_default().clone()
            }
        };
        analysis
            .get_or_init(|| analyze_for_shape(&contract.code, method, &shape).ok().filter(|s| s.unbounded.is_none()).map(Arc::new))
            .clone()
    }
}
