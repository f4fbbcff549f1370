//! The analyzer's view of a chain at one moment: the access summaries of the
//! deployed contracts and the committed state, for
//! [`chroma_analyzer::predict`].

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chroma_analyzer::{AccessSummary, ContractSummary, Decisions, Environment, Recipes};
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
    /// Which deployed contracts the view sees: views of one generation (of
    /// one runtime between two deploys, and their forks) see the same
    /// summaries and the same fixed stored values, so they may take over
    /// each other's [`Kept`], from one segment or block to the next.
    generation: u64,
    kept: Kept,
    /// Whether predictions may follow recipes (see [`Recipes`]).
    recipes: bool,
}

/// What a view learns as it predicts, valid for its whole generation.
#[derive(Default)]
struct Kept {
    /// Values read so far. The predictor reads only slots that no entry
    /// point but the constructor writes, so they do not change once the
    /// contract is deployed: a runtime registers a contract after its
    /// constructor's writes are applied, so every state a view of its
    /// generation reads holds them (every swap of a pool reads the same
    /// token addresses).
    cache: RefCell<FxHashMap<Vec<u8>, Option<Arc<[u8]>>>>,
    /// Which guarded templates of entries may happen, by what decides it
    /// (a block's swaps of one pool in one direction decide alike).
    decisions: Decisions,
    /// How transactions' predictions are made from their senders and
    /// inputs, by entry and contract (a block's swaps of one pool in one
    /// direction follow one recipe).
    recipes: Recipes,
}

/// Generations of views (see [`PredictionEnv::generation`]).
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// A generation no view has had yet.
pub(crate) fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

thread_local! {
    /// What the views dropped on this thread had learnt, by generation. A
    /// planner's pool assembles a view per task (of a few
    /// hundred transactions), several per thread and block; each would
    /// otherwise read the same values and decide the same guards again (a
    /// block of swaps over 100 pools has 200 decisions to make).
    ///
    /// Kept for the last few generations (a process may run several chains
    /// on one pool: the benchmarks, the tests, a node beside a scratch VM),
    /// the most recent first.
    static KEPT: RefCell<Vec<(u64, Kept)>> = const { RefCell::new(Vec::new()) };
}

/// Generations a thread keeps what its views learnt for, at most.
const KEPT_GENERATIONS: usize = 4;

impl<'s> PredictionEnv<'s> {
    /// The contracts deployed in `runtime` now, over `state` (a state of
    /// `runtime`'s chain: one that holds the constructors' writes of its
    /// contracts), with what the last view of the same contracts dropped on
    /// this thread had learnt.
    pub fn new(runtime: &Runtime, state: &'s dyn StateRead) -> PredictionEnv<'s> {
        let (summaries, generation) = runtime.summaries_by_address();
        PredictionEnv::assemble(&EnvParts { summaries, shapes: runtime.shapes(), state, generation })
    }

    /// The same view with a cache of its own, for another thread.
    pub fn fork(&self) -> PredictionEnv<'s> {
        PredictionEnv::assemble(&self.parts())
    }

    /// The parts another thread needs to [`PredictionEnv::assemble`] its own view.
    pub fn parts(&self) -> EnvParts<'s> {
        EnvParts { summaries: self.summaries.clone(), shapes: self.shapes.clone(), state: self.state, generation: self.generation }
    }

    /// A view of `parts`, with what the last view of the same generation
    /// dropped on this thread had learnt.
    pub fn assemble(parts: &EnvParts<'s>) -> PredictionEnv<'s> {
        let EnvParts { summaries, shapes, state, generation } = parts;
        let kept = KEPT.with(|kept| {
            let mut kept = kept.borrow_mut();
            match kept.iter().position(|(of, _)| of == generation) {
                Some(at) => kept.remove(at).1,
                None => Kept::default(),
            }
        });
        PredictionEnv { summaries: summaries.clone(), shapes: shapes.clone(), state: *state, generation: *generation, kept, recipes: true }
    }

    /// The same view, but filling every call's templates in instead of
    /// following recipes: the reference the recipes are checked against,
    /// and the baseline they are measured against.
    pub fn without_recipes(mut self) -> PredictionEnv<'s> {
        self.recipes = false;
        self
    }

    /// Adds a contract that will exist when later transactions run (one
    /// deployed earlier in the same block).
    pub fn add_contract(&mut self, address: Address, summary: Arc<ContractSummary>) {
        Arc::make_mut(&mut self.summaries).insert(address, summary);
        // Other summaries now: a generation of its own. Decisions are kept
        // by where an entry's summary is, and one replaced may be dropped
        // and its place reused.
        self.generation = next_generation();
        self.kept.decisions.clear();
        self.kept.recipes.clear();
    }
}

impl Drop for PredictionEnv<'_> {
    fn drop(&mut self) {
        let kept = std::mem::take(&mut self.kept);
        // A thread being torn down has no table left: nothing to keep.
        let _ = KEPT.try_with(|slot| {
            let mut slot = slot.borrow_mut();
            // A view that learnt nothing (one whose views assembled on this
            // thread did the predicting, dropped after them) leaves what
            // they learnt.
            if kept.is_empty() && slot.iter().any(|(of, _)| *of == self.generation) {
                return;
            }
            slot.retain(|(of, _)| *of != self.generation);
            slot.insert(0, (self.generation, kept));
            slot.truncate(KEPT_GENERATIONS);
        });
    }
}

impl Kept {
    fn is_empty(&self) -> bool {
        self.cache.borrow().is_empty() && self.decisions.is_empty() && self.recipes.is_empty()
    }
}

/// A [`PredictionEnv`] without its cache: what threads share to assemble their own.
#[derive(Clone)]
pub struct EnvParts<'s> {
    summaries: Arc<Summaries>,
    shapes: Arc<ShapedSummaries>,
    state: &'s dyn StateRead,
    generation: u64,
}

impl Environment for PredictionEnv<'_> {
    fn summary(&self, contract: &Address) -> Option<&ContractSummary> {
        self.summaries.get(contract).map(|s| &**s)
    }

    /// A storage error reads as "no value": the prediction then stays wide
    /// (the key cannot be resolved), never wrong.
    fn storage(&self, key: &[u8]) -> Option<Arc<[u8]>> {
        if let Some(known) = self.kept.cache.borrow().get(key) {
            return known.clone();
        }
        let value: Option<Arc<[u8]>> = self.state.get(key).ok().flatten().map(Into::into);
        self.kept.cache.borrow_mut().insert(key.to_vec(), value.clone());
        value
    }

    fn shaped_entry(&self, contract: &Address, method: &str, input: &[u8]) -> Option<Arc<AccessSummary>> {
        self.shapes.entry(contract, method, input)
    }

    fn decisions(&self) -> Option<&Decisions> {
        Some(&self.kept.decisions)
    }

    fn recipes(&self) -> Option<&Recipes> {
        self.recipes.then_some(&self.kept.recipes)
    }
}

#[cfg(test)]
mod tests {
    use chroma_analyzer::predict;
    use chroma_host_api::{Encode, ADDRESS_LEN};

    use super::*;
    use crate::address::contract_address;
    use crate::runtime::Vm;
    use crate::tx::{Transaction, TxKind};

    const TOKEN: &[u8] = include_bytes!("../../contracts/wasm/token.wasm");

    /// A view assembled on a thread takes over what the last view of its
    /// generation dropped there had learnt (the decisions of `mint`'s
    /// guards), and predicts the same, and so does a later view of the same
    /// deployed contracts (the next segment or block); a view of other
    /// contracts (one deployed since, or added to a view) starts afresh.
    #[test]
    fn views_of_one_generation_take_over_what_the_last_one_learnt() {
        let owner = Address([7; ADDRESS_LEN]);
        let mut vm = Vm::new().expect("engine");
        let deploy = TxKind::Deploy { code: TOKEN.to_vec(), init_args: ("USD".to_string(), 1_000u128).encode() };
        let receipt = vm.execute(&Transaction { sender: owner, nonce: 0, kind: deploy, gas_limit: 10_000_000 }).expect("deployed");
        assert!(receipt.outcome.is_success());
        let token = contract_address(&owner, 0);
        let mint = (Address([3; ADDRESS_LEN]), 5u128).encode();

        let env = PredictionEnv::new(vm.runtime(), &**vm.state());
        let parts = env.parts();
        let first = PredictionEnv::assemble(&parts);
        assert!(first.kept.decisions.is_empty());
        let predicted = predict(&first, &owner, &token, "mint", &mint);
        assert_eq!(first.kept.decisions.len(), 1, "mint's guards decided once");
        drop(first);
        let second = PredictionEnv::assemble(&parts);
        assert_eq!(second.kept.decisions.len(), 1, "taken over");
        assert!(!second.kept.cache.borrow().is_empty(), "the stored values read, too");
        assert_eq!(predict(&second, &owner, &token, "mint", &mint), predicted);
        assert_eq!(second.kept.decisions.len(), 1, "the same decision, not another");
        drop(second);

        drop(env);
        // A later view of the same contracts takes it over too.
        let later = PredictionEnv::new(vm.runtime(), &**vm.state());
        assert_eq!(later.kept.decisions.len(), 1, "taken over by the next view of the same contracts");
        drop(later);
        // A view of another chain on this thread leaves it there.
        let mut elsewhere = Vm::new().expect("engine");
        let deploy = TxKind::Deploy { code: TOKEN.to_vec(), init_args: ("USD".to_string(), 1_000u128).encode() };
        assert!(elsewhere.execute(&Transaction { sender: owner, nonce: 0, kind: deploy, gas_limit: 10_000_000 }).expect("deployed").outcome.is_success());
        let there = PredictionEnv::new(elsewhere.runtime(), &**elsewhere.state());
        assert!(there.kept.decisions.is_empty(), "another chain's contracts: afresh");
        assert_eq!(predict(&there, &owner, &token, "mint", &mint), predicted);
        drop(there);
        let again = PredictionEnv::new(vm.runtime(), &**vm.state());
        assert_eq!(again.kept.decisions.len(), 1, "still kept beside the other chain's");
        drop(again);
        // After a deploy, another generation does not take it.
        let deploy = TxKind::Deploy { code: TOKEN.to_vec(), init_args: ("EUR".to_string(), 1_000u128).encode() };
        let receipt = vm.execute(&Transaction { sender: owner, nonce: 1, kind: deploy, gas_limit: 10_000_000 }).expect("deployed");
        assert!(receipt.outcome.is_success());
        let other = PredictionEnv::new(vm.runtime(), &**vm.state());
        assert!(other.kept.decisions.is_empty() && other.kept.cache.borrow().is_empty(), "a deploy since: afresh");
        let view = PredictionEnv::assemble(&other.parts());
        assert!(view.kept.decisions.is_empty() && view.kept.cache.borrow().is_empty());
        drop(view);
        // Nor does a view whose contracts changed after it learnt.
        let mut changed = PredictionEnv::assemble(&other.parts());
        assert_eq!(predict(&changed, &owner, &token, "mint", &mint), predicted);
        let summary = changed.summary(&token).cloned().map(Arc::new).expect("deployed");
        changed.add_contract(Address([4; ADDRESS_LEN]), summary);
        assert!(changed.kept.decisions.is_empty(), "forgotten when a contract is added");
        drop(changed);
        assert!(PredictionEnv::assemble(&other.parts()).kept.decisions.is_empty(), "kept under the changed view's generation");
    }
}
