//! Executing transactions: one wasmtime store and instance per call, a
//! journal per transaction, atomic calls.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use chroma_host_api::abi::{Abi, MethodKind};
use chroma_host_api::codec::{Decode, Encode};
use chroma_host_api::key::{storage_key, SYSTEM_SLOT};
use chroma_host_api::limits::MAX_CALL_DEPTH;
use chroma_host_api::{gas, Address, CallStatus};
use chroma_analyzer::ContractSummary;
use wasmtime::{Engine, InstancePre, Module, Store, StoreLimitsBuilder, Trap};

use crate::address::contract_address;
use crate::engine::{new_engine, MAX_MEMORY_BYTES};
use crate::gatekeeper::{self, MEMORY_EXPORT};
use crate::imports::{linker, Abort, Frame, StoreData};
use crate::state::{Journal, StateError, StateOverlay, StateRead};
use crate::tx::{Outcome, Receipt, Transaction, TxKind};

type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The system record (under [`SYSTEM_SLOT`]) holding a contract's code hash.
const CODE_HASH_RECORD: &[u8] = b"code_hash";
/// The system record holding an account's next nonce.
const NONCE_RECORD: &[u8] = b"nonce";

/// Errors setting up the VM (not transaction failures: those are receipts).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A deployed contract: its ABI and the code ready to instantiate.
pub struct Contract {
    pub address: Address,
    pub code_hash: [u8; 32],
    pub abi: Abi,
    /// What each entry point may access, inferred from the code at deploy.
    pub summary: Arc<ContractSummary>,
    pre: InstancePre<StoreData>,
}

impl Contract {
    pub(crate) fn instantiate(&self, store: &mut Store<StoreData>) -> wasmtime::Result<wasmtime::Instance> {
        self.pre.instantiate(store)
    }
}

/// Shared by every call: the engine, the host functions, the deployed contracts.
pub struct Runtime {
    engine: Engine,
    linker: wasmtime::Linker<StoreData>,
    contracts: RwLock<BTreeMap<Address, Arc<Contract>>>,
    modules: RwLock<BTreeMap<[u8; 32], Module>>,
    /// Access summaries by code hash.
    summaries: RwLock<BTreeMap<[u8; 32], Arc<ContractSummary>>>,
}

/// A transaction in progress.
pub(crate) struct TxState {
    pub runtime: Arc<Runtime>,
    pub journal: Journal,
    pub depth: u32,
}

/// One call to run.
pub(crate) struct Invocation {
    pub contract: Address,
    pub caller: Address,
    pub method: String,
    pub input: Vec<u8>,
    pub read_only: bool,
    pub fuel: u64,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallFailure {
    Reverted(String),
    OutOfGas,
    Trapped(String),
    BadInput(String),
    NoSuchContract(Address),
    NoSuchMethod(String),
    DepthExceeded,
}

impl CallFailure {
    pub fn status(&self) -> CallStatus {
        match self {
            CallFailure::Reverted(_) => CallStatus::Reverted,
            CallFailure::OutOfGas | CallFailure::Trapped(_) => CallStatus::Trapped,
            CallFailure::BadInput(_) => CallStatus::BadInput,
            CallFailure::NoSuchContract(_) => CallStatus::NoSuchContract,
            CallFailure::NoSuchMethod(_) => CallStatus::NoSuchMethod,
            CallFailure::DepthExceeded => CallStatus::DepthExceeded,
        }
    }

    fn into_outcome(self) -> Outcome {
        match self {
            CallFailure::Reverted(m) => Outcome::Reverted(m),
            CallFailure::OutOfGas => Outcome::OutOfGas,
            CallFailure::Trapped(m) => Outcome::Trapped(m),
            CallFailure::BadInput(m) => Outcome::BadInput(m),
            CallFailure::NoSuchContract(a) => Outcome::NoSuchContract(a),
            CallFailure::NoSuchMethod(m) => Outcome::NoSuchMethod(m),
            CallFailure::DepthExceeded => Outcome::Trapped(format!("call depth exceeds {MAX_CALL_DEPTH}")),
        }
    }
}

/// What a caller sees of a failed nested call: the revert message as it is,
/// anything else described.
impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::Reverted(m) => f.write_str(m),
            other => write!(f, "{}", other.clone().into_outcome()),
        }
    }
}

pub(crate) struct InvokeResult {
    pub outcome: Result<Vec<u8>, CallFailure>,
    pub fuel_left: u64,
}

fn classify(error: wasmtime::Error) -> CallFailure {
    if let Some(abort) = error.downcast_ref::<Abort>() {
        return match abort {
            Abort::Revert(message) => CallFailure::Reverted(message.clone()),
            Abort::OutOfGas => CallFailure::OutOfGas,
            Abort::Host(host) => CallFailure::Trapped(host.to_string()),
        };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => CallFailure::OutOfGas,
            other => CallFailure::Trapped(other.to_string()),
        };
    }
    CallFailure::Trapped(error.to_string())
}

impl Runtime {
    pub fn new() -> Result<Arc<Runtime>, VmError> {
        let engine = new_engine().map_err(|e| VmError::Engine(e.to_string()))?;
        let linker = linker(&engine).map_err(|e| VmError::Engine(e.to_string()))?;
        Ok(Arc::new(Runtime {
            engine,
            linker,
            contracts: RwLock::new(BTreeMap::new()),
            modules: RwLock::new(BTreeMap::new()),
            summaries: RwLock::new(BTreeMap::new()),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn contract(&self, address: &Address) -> Option<Arc<Contract>> {
        self.contracts.read().unwrap_or_else(|p| p.into_inner()).get(address).cloned()
    }

    /// Validates and compiles `code` (once per code hash) into a contract at `address`.
    pub fn prepare(&self, address: Address, code: &[u8]) -> Result<Contract, String> {
        let validated = gatekeeper::validate(code).map_err(|e| e.to_string())?;
        let cached = self.modules.read().unwrap_or_else(|p| p.into_inner()).get(&validated.code_hash).cloned();
        let module = match cached {
            Some(module) => module,
            None => {
                let module = Module::new(&self.engine, code).map_err(|e| format!("compilation failed: {e}"))?;
                self.modules.write().unwrap_or_else(|p| p.into_inner()).insert(validated.code_hash, module.clone());
                module
            }
        };
        let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("linking failed: {e}"))?;
        let summary = self.summary_of(&validated.code_hash, code, &validated.abi);
        Ok(Contract { address, code_hash: validated.code_hash, abi: validated.abi, summary, pre })
    }

    /// The access summary of `code` (analysed once per code hash). A module
    /// the analyzer cannot follow gets a summary that may access anything:
    /// deploying never fails because of the analysis.
    fn summary_of(&self, code_hash: &[u8; 32], code: &[u8], abi: &Abi) -> Arc<ContractSummary> {
        if let Some(known) = self.summaries.read().unwrap_or_else(|p| p.into_inner()).get(code_hash) {
            return known.clone();
        }
        let summary = Arc::new(chroma_analyzer::analyze(code).unwrap_or_else(|e| {
            ContractSummary::unbounded(abi.methods.iter().map(|m| (m.name.clone(), m.kind.into())), &e.to_string())
        }));
        self.summaries.write().unwrap_or_else(|p| p.into_inner()).insert(*code_hash, summary.clone());
        summary
    }

    /// Seeds the summary cache (a summary stored by an earlier run of the same analyzer).
    pub fn remember_summary(&self, code_hash: [u8; 32], summary: ContractSummary) {
        self.summaries.write().unwrap_or_else(|p| p.into_inner()).insert(code_hash, Arc::new(summary));
    }

    /// A stable id of this engine's compiled-code compatibility, for keying
    /// cached compiled modules.
    pub fn engine_id(&self) -> Vec<u8> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish().to_le_bytes().to_vec()
    }

    /// The compiled module of `code_hash`, serialized, for caching on disk.
    /// The access summary of every deployed contract, by address.
    pub fn summaries(&self) -> BTreeMap<Address, Arc<ContractSummary>> {
        self.contracts.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(a, c)| (*a, c.summary.clone())).collect()
    }

    pub fn summary(&self, code_hash: &[u8; 32]) -> Option<Arc<ContractSummary>> {
        self.summaries.read().unwrap_or_else(|p| p.into_inner()).get(code_hash).cloned()
    }

    pub fn serialized_module(&self, code_hash: &[u8; 32]) -> Option<Vec<u8>> {
        let module = self.modules.read().unwrap_or_else(|p| p.into_inner()).get(code_hash).cloned()?;
        module.serialize().ok()
    }

    /// Registers a contract that was deployed before (on restart), using a
    /// cached compiled module if it is usable; returns whether it was.
    pub fn restore(&self, address: Address, code: &[u8], artifact: Option<&[u8]>) -> Result<bool, String> {
        let validated = gatekeeper::validate(code).map_err(|e| e.to_string())?;
        // SAFETY: the artifact was produced by `Module::serialize` with an engine of
        // the same compatibility hash and is checked against its blake3 checksum
        // by the store before it gets here; wasmtime also checks its header.
        let restored = artifact.and_then(|bytes| unsafe { Module::deserialize(&self.engine, bytes) }.ok());
        let used_cache = restored.is_some();
        if let Some(module) = restored {
            self.modules.write().unwrap_or_else(|p| p.into_inner()).insert(validated.code_hash, module);
        }
        let contract = self.prepare(address, code)?;
        self.register(Arc::new(contract));
        Ok(used_cache)
    }

    fn register(&self, contract: Arc<Contract>) {
        self.contracts.write().unwrap_or_else(|p| p.into_inner()).insert(contract.address, contract);
    }

    /// Runs one call atomically: on failure its writes and events (and those
    /// of its callees) are rolled back. `init` runs a contract's constructor
    /// (and is the only way to).
    pub(crate) fn invoke(
        self: &Arc<Self>,
        mut state: Box<TxState>,
        call: Invocation,
        init: Option<&Arc<Contract>>,
    ) -> (Box<TxState>, InvokeResult) {
        let fail = |state, failure, fuel_left| (state, InvokeResult { outcome: Err(failure), fuel_left });
        let contract = match init {
            Some(contract) => contract.clone(),
            None => match self.contract(&call.contract) {
                Some(contract) => contract,
                None => return fail(state, CallFailure::NoSuchContract(call.contract), call.fuel),
            },
        };
        let Some(method) = contract.abi.method(&call.method).filter(|m| (m.kind == MethodKind::Init) == init.is_some())
        else {
            return fail(state, CallFailure::NoSuchMethod(call.method), call.fuel);
        };
        if let Err(e) = method.check_args(&call.input) {
            return fail(state, CallFailure::BadInput(e.to_string()), call.fuel);
        }
        if state.depth >= MAX_CALL_DEPTH {
            return fail(state, CallFailure::DepthExceeded, call.fuel);
        }
        let read_only = call.read_only || method.kind == MethodKind::View;
        let checkpoint = state.journal.checkpoint();
        state.depth += 1;

        let frame = Frame {
            contract: contract.address,
            caller: call.caller,
            input: call.input,
            output: Vec::new(),
            read_only,
            memory: None,
        };
        let limits = StoreLimitsBuilder::new().memory_size(MAX_MEMORY_BYTES).instances(1).memories(1).tables(1).build();
        let mut store = Store::new(&self.engine, StoreData { tx: Some(state), frame, limits });
        store.limiter(|data| &mut data.limits);
        let run = store.set_fuel(call.fuel).and_then(|()| {
            let instance = contract.pre.instantiate(&mut store)?;
            let memory = instance
                .get_memory(&mut store, MEMORY_EXPORT)
                .ok_or_else(|| wasmtime::Error::msg("contract has no memory export"))?;
            store.data_mut().frame.memory = Some(memory);
            let entry = instance.get_typed_func::<(), ()>(&mut store, &call.method)?;
            entry.call(&mut store, ())
        });
        let fuel_left = store.get_fuel().unwrap_or(0);
        let data = store.into_data();
        // The journal always comes back: nested calls return it before their caller resumes.
        let mut state = match data.tx {
            Some(state) => state,
            None => unreachable!("a nested call did not return the transaction state"),
        };
        state.depth -= 1;
        let outcome = match run {
            Ok(()) => Ok(data.frame.output),
            Err(error) => {
                state.journal.rollback(checkpoint);
                Err(classify(error))
            }
        };
        (state, InvokeResult { outcome, fuel_left })
    }
}

/// A VM over an in-memory state: executes transactions one after another,
/// committing each.
pub struct Vm {
    runtime: Arc<Runtime>,
    state: Arc<StateOverlay>,
    /// Code deployed since the last [`Vm::take_new_code`], by hash.
    new_code: BTreeMap<[u8; 32], Vec<u8>>,
}

impl Vm {
    /// A VM over an empty in-memory state.
    pub fn new() -> Result<Vm, VmError> {
        Ok(Vm { runtime: Runtime::new()?, state: StateOverlay::new(), new_code: BTreeMap::new() })
    }

    /// A VM over `state` with `runtime`'s contracts (for a node that persists both).
    pub fn with_state(runtime: Arc<Runtime>, state: Arc<StateOverlay>) -> Vm {
        Vm { runtime, state, new_code: BTreeMap::new() }
    }

    /// Takes the code of contracts deployed since the last call, for persisting.
    pub fn take_new_code(&mut self) -> BTreeMap<[u8; 32], Vec<u8>> {
        std::mem::take(&mut self.new_code)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn state(&self) -> &Arc<StateOverlay> {
        &self.state
    }

    /// The nonce the sender's next transaction must carry.
    pub fn nonce(&self, account: &Address) -> Result<u64, VmError> {
        let record = self.state.get(&storage_key(account, SYSTEM_SLOT, NONCE_RECORD))?;
        Ok(record.and_then(|v| u64::decode(&v).ok()).unwrap_or(0))
    }

    pub fn contract(&self, address: &Address) -> Option<Arc<Contract>> {
        self.runtime.contract(address)
    }

    /// Executes a transaction and applies its effects to the state if it
    /// succeeded (the sender's nonce advances either way, unless the nonce was
    /// wrong). An error means the state storage failed: nothing was applied.
    pub fn execute(&mut self, tx: &Transaction) -> Result<Receipt, VmError> {
        let expected = self.nonce(&tx.sender)?;
        if tx.nonce != expected {
            return Ok(receipt(Outcome::InvalidNonce { expected, found: tx.nonce }, 0));
        }
        let (mut receipt, writes) = match &tx.kind {
            TxKind::Call { contract, method, args } => {
                self.run(tx.sender, *contract, method.clone(), args.clone(), tx.gas_limit, false, None)?
            }
            TxKind::Deploy { code, init_args } => self.deploy(tx, code, init_args)?,
        };
        let mut writes = writes.unwrap_or_default();
        writes.insert(storage_key(&tx.sender, SYSTEM_SLOT, NONCE_RECORD), Some((expected + 1).encode()));
        self.state.apply(writes);
        if !receipt.outcome.is_success() {
            receipt.events.clear();
        }
        Ok(receipt)
    }

    /// Runs `method` read-only (writes trap) without committing anything.
    pub fn query(&self, contract: Address, method: &str, args: Vec<u8>, gas_limit: u64) -> Result<Receipt, VmError> {
        Ok(self.run(Address::ZERO, contract, method.to_string(), args, gas_limit, true, None)?.0)
    }

    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn run(
        &self,
        sender: Address,
        contract: Address,
        method: String,
        input: Vec<u8>,
        gas_limit: u64,
        read_only: bool,
        init: Option<&Arc<Contract>>,
    ) -> Result<(Receipt, Option<Writes>), VmError> {
        if gas_limit < gas::TRANSACTION {
            return Ok((receipt(Outcome::OutOfGas, gas_limit), None));
        }
        let state = Box::new(TxState {
            runtime: self.runtime.clone(),
            journal: Journal::new(self.state.clone() as Arc<dyn StateRead>),
            depth: 0,
        });
        let call = Invocation { contract, caller: sender, method, input, read_only, fuel: gas_limit - gas::TRANSACTION };
        let (state, result) = self.runtime.invoke(state, call, init);
        let (writes, events, accesses) = state.journal.finish()?;
        let gas_used = gas_limit - result.fuel_left;
        Ok(match result.outcome {
            Ok(return_data) => (
                Receipt { outcome: Outcome::Success, gas_used, return_data, events, deployed: None, accesses },
                Some(writes),
            ),
            Err(failure) => {
                let mut r = receipt(failure.into_outcome(), gas_used);
                r.accesses = accesses;
                (r, None)
            }
        })
    }

    fn deploy(&mut self, tx: &Transaction, code: &[u8], init_args: &[u8]) -> Result<(Receipt, Option<Writes>), VmError> {
        let deploy_cost = gas::TRANSACTION.saturating_add(gas::DEPLOY_PER_BYTE.saturating_mul(code.len() as u64));
        if tx.gas_limit < deploy_cost {
            return Ok((receipt(Outcome::OutOfGas, tx.gas_limit), None));
        }
        let address = contract_address(&tx.sender, tx.nonce);
        let contract = match self.runtime.prepare(address, code) {
            Ok(contract) => Arc::new(contract),
            Err(message) => return Ok((receipt(Outcome::InvalidModule(message), deploy_cost), None)),
        };
        let remaining = tx.gas_limit - deploy_cost + gas::TRANSACTION;
        let (mut receipt, writes) = match contract.abi.init() {
            Some(init) => {
                let name = init.name.clone();
                self.run(tx.sender, address, name, init_args.to_vec(), remaining, false, Some(&contract))?
            }
            None if init_args.is_empty() => (
                Receipt {
                    outcome: Outcome::Success,
                    gas_used: gas::TRANSACTION,
                    return_data: Vec::new(),
                    events: Vec::new(),
                    deployed: None,
                    accesses: Default::default(),
                },
                Some(BTreeMap::new()),
            ),
            None => (
                receipt(Outcome::BadInput("the contract has no init method but init arguments were given".into()), gas::TRANSACTION),
                None,
            ),
        };
        receipt.gas_used += deploy_cost - gas::TRANSACTION;
        let Some(mut writes) = writes else { return Ok((receipt, None)) };
        writes.insert(storage_key(&address, SYSTEM_SLOT, CODE_HASH_RECORD), Some(contract.code_hash.to_vec()));
        self.new_code.insert(contract.code_hash, code.to_vec());
        self.runtime.register(contract);
        receipt.deployed = Some(address);
        Ok((receipt, Some(writes)))
    }
}

fn receipt(outcome: Outcome, gas_used: u64) -> Receipt {
    Receipt { outcome, gas_used, return_data: Vec::new(), events: Vec::new(), deployed: None, accesses: Default::default() }
}
