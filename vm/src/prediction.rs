//! The analyzer's view of a chain at one moment: the access summaries of the
//! deployed contracts and the committed state, for
//! [`chroma_analyzer::predict`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chroma_analyzer::{ContractSummary, Environment};
use chroma_host_api::Address;

use crate::runtime::Runtime;
use crate::state::StateRead;

pub struct PredictionEnv<'s> {
    summaries: BTreeMap<Address, Arc<ContractSummary>>,
    state: &'s dyn StateRead,
}

impl<'s> PredictionEnv<'s> {
    /// The contracts deployed in `runtime` now, over `state`.
    pub fn new(runtime: &Runtime, state: &'s dyn StateRead) -> PredictionEnv<'s> {
        PredictionEnv { summaries: runtime.summaries(), state }
    }

    /// Adds a contract that will exist when later transactions run (one
    /// deployed earlier in the same block).
    pub fn add_contract(&mut self, address: Address, summary: Arc<ContractSummary>) {
        self.summaries.insert(address, summary);
    }
}

impl Environment for PredictionEnv<'_> {
    fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
        self.summaries.get(contract).map(|s| &**s)
    }

    /// A storage error reads as "no value": the prediction then stays wide
    /// (the key cannot be resolved), never wrong.
    fn storage(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.get(key).ok().flatten()
    }
}
