//! The analyzer's view of a chain at one moment: the access summaries of the
//! deployed contracts and the committed state, for
//! [`chroma_analyzer::predict`].

use std::cell::RefCell;
use std::sync::Arc;

use chroma_analyzer::{AccessSummary, ContractSummary, Environment};
use chroma_host_api::Address;
use rustc_hash::FxHashMap;

use crate::runtime::{Runtime, SummariesByAddress as Summaries};
use crate::shapes::ShapedSummaries;
use crate::state::StateRead;

/// One thread's view (it caches what it reads, so it is not shared between
/// threads: make one per thread with [`PredictionEnv::fork`]).
pub struct PredictionEnv<'s> {
    summaries: Arc<Summaries>,
    shapes: Arc<ShapedSummaries>,
    state: &'s dyn StateRead,
    /// Values read so far. The predictor reads only slots that no entry
    /// point but the constructor writes, so they cannot change while a block
    /// is planned; every swap of a pool reads the same token addresses.
    cache: RefCell<FxHashMap<Vec<u8>, Option<Arc<[u8]>>>>,
}

impl<'s> PredictionEnv<'s> {
    /// The contracts deployed in `runtime` now, over `state`.
    pub fn new(runtime: &Runtime, state: &'s dyn StateRead) -> PredictionEnv<'s> {
        PredictionEnv { summaries: runtime.summaries_by_address(), shapes: runtime.shapes(), state, cache: RefCell::default() }
    }

    /// The same view with a cache of its own, for another thread.
    pub fn fork(&self) -> PredictionEnv<'s> {
        PredictionEnv::assemble(&self.parts())
    }

    /// The parts another thread needs to [`PredictionEnv::assemble`] its own view.
    pub fn parts(&self) -> EnvParts<'s> {
        EnvParts { summaries: self.summaries.clone(), shapes: self.shapes.clone(), state: self.state }
    }

    pub fn assemble(parts: &EnvParts<'s>) -> PredictionEnv<'s> {
        let EnvParts { summaries, shapes, state } = parts;
        PredictionEnv { summaries: summaries.clone(), shapes: shapes.clone(), state: *state, cache: RefCell::default() }
    }

    /// Adds a contract that will exist when later transactions run (one
    /// deployed earlier in the same block).
    pub fn add_contract(&mut self, address: Address, summary: Arc<ContractSummary>) {
        Arc::make_mut(&mut self.summaries).insert(address, summary);
    }
}

/// A [`PredictionEnv`] without its cache: what threads share to assemble their own.
#[derive(Clone)]
pub struct EnvParts<'s> {
    summaries: Arc<Summaries>,
    shapes: Arc<ShapedSummaries>,
    state: &'s dyn StateRead,
}

impl Environment for PredictionEnv<'_> {
    fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
        self.summaries.get(contract).map(|s| &**s)
    }

    /// A storage error reads as "no value": the prediction then stays wide
    /// (the key cannot be resolved), never wrong.
    fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        if let Some(known) = self.cache.borrow().get(key) {
            return known.clone();
        }
        let value: Option<Arc<[u8]>> = self.state.get(key).ok().flatten().map(Into::into);
        self.cache.borrow_mut().insert(key.to_vec(), value.clone());
        value
    }

    fn shaped_entry(&self, contract: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        self.shapes.entry(contract, method, input)
    }
}
