//! The measuring floor: a contract method called again and again on one warm
//! instance, with no per-transaction VM work (no nonce, no gas accounting
//! beyond fuel, no instantiation, no receipt, no commit). Benchmarks report
//! the full transaction path as a multiple of it.
//!
//! Calls run on the caller's thread (moving threads per call would be
//! measured too): for the example contracts it measures, which neither
//! recurse deeply nor nest calls, any thread's stack is enough. Anything
//! else runs through [`Vm::execute`], which moves to a thread with the
//! contract stack (`crate::stack`).

use std::sync::Arc;

use chroma_host_api::Address;
use wasmtime::{Store, TypedFunc};

use crate::engine::store_limits;
use crate::imports::{Frame, StoreData};
use crate::runtime::{TxState, Vm};
use crate::state::{Journal, StateRead};

/// Fuel given before each call: far more than one call uses.
const FUEL_PER_CALL: u64 = 1 << 40;

/// One instance of a contract, kept warm.
pub struct WarmInstance {
    store: Store<StoreData>,
    entry: TypedFunc<(), ()>,
    base: Arc<dyn StateRead>,
}

/// A fresh store with `contract` instantiated in it, ready to run `method`,
/// as the full path makes per call (`Contract::instantiate_for`).
fn instantiate(
    vm: &Vm,
    contract: Address,
    caller: Address,
    method: &str,
    input: Vec<u8>,
) -> Result<(Store<StoreData>, TypedFunc<(), ()>, Arc<dyn StateRead>), String> {
    let deployed = vm.contract(&contract).ok_or("no such contract")?;
    let base: Arc<dyn StateRead> = vm.state().clone();
    let journal = Journal::new(base.clone()).recording_accesses(vm.runtime().records_accesses());
    let tx = Box::new(TxState { runtime: vm.runtime().clone(), journal, depth: 1 });
    let frame = Frame { contract, caller, input, output: Vec::new(), read_only: false, memory: None };
    let limits = store_limits();
    let mut store = Store::new(vm.runtime().engine(), StoreData { tx: Some(tx), frame, limits, written: Default::default() });
    store.limiter(|data| &mut data.limits);
    let (memory, entry) = deployed.instantiate_for(&mut store, method).map_err(|e| e.to_string())?;
    store.data_mut().frame.memory = Some(memory);
    Ok((store, entry, base))
}

impl WarmInstance {
    /// Instantiates `contract` once, ready to run `method` with `input` as `caller`.
    pub fn new(vm: &Vm, contract: Address, caller: Address, method: &str, input: Vec<u8>) -> Result<WarmInstance, String> {
        let (store, entry, base) = instantiate(vm, contract, caller, method, input)?;
        Ok(WarmInstance { store, entry, base })
    }

    /// Calls the method once more. Each call starts from the same state: the
    /// journal is reset, so repeated calls do not accumulate writes.
    pub fn call(&mut self) -> Result<(), String> {
        if let Some(tx) = self.store.data_mut().tx.as_deref_mut() {
            tx.journal = Journal::new(self.base.clone()).recording_accesses(tx.runtime.records_accesses());
        }
        self.store.set_fuel(FUEL_PER_CALL).map_err(|e| e.to_string())?;
        self.entry.call(&mut self.store, ()).map_err(|e| e.to_string())
    }
}

/// Instantiates `contract` for `method` in a fresh store and drops it: the
/// per-call set-up cost of the full path.
pub fn instantiate_once(vm: &Vm, contract: Address, method: &str) -> Result<(), String> {
    instantiate(vm, contract, Address::ZERO, method, Vec::new()).map(drop)
}
