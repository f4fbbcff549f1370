//! Executing transactions: one wasmtime store and instance per call, a
//! journal per transaction, atomic calls.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use chroma_host_api::abi::{Abi, MethodKind};
use chroma_host_api::codec::{Decode, Encode};
use chroma_host_api::key::{storage_key, SYSTEM_SLOT};
/// The state key of an account's nonce (read and written by every transaction it sends).
pub use chroma_host_api::key::nonce_key;
use chroma_host_api::limits::MAX_CALL_DEPTH;
use chroma_host_api::{gas, Address, CallStatus};
use chroma_analyzer::{ContractSummary, PredictedAccess};
use rustc_hash::FxHashMap;
use wasmtime::{Engine, Extern, ExternType, Instance, InstancePre, Module, ModuleExport, Store, Trap, TypedFunc};

use crate::address::contract_address;
use crate::engine::{new_engine, store_limits};
use crate::gatekeeper::{self, MEMORY_EXPORT};
use crate::imports::{linker, Abort, Frame, StoreData};
use crate::instrument::{instrument, INSTRUMENTATION_VERSION};
use crate::reuse::{ResetPlan, ReusableInstance, ReusableInstances};
use crate::shapes::{ShapeAnalysisTime, ShapedAnalysis, ShapedContract, ShapedSummaries};
use crate::stack::on_execution_thread;
use crate::state::{Journal, StateError, StateOverlay, StateRead, TxWrites, WriteOp};
use crate::tx::{Outcome, Receipt, Transaction, TxKind};

/// The system record (under [`SYSTEM_SLOT`]) holding a contract's code hash.
const CODE_HASH_RECORD: &[u8] = b"code_hash";

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
    /// The memory's and the entry points' places among the module's exports,
    /// found by name once, here, instead of in every call (looking them up by
    /// name and type-checking the entry point was 4% of a transfer).
    exports: Exports,
    /// The code, when an entry is analysed again per input shape (see `shapes`).
    shaped: Option<Arc<ShapedContract>>,
    /// How its instances are reset for reuse; none if they cannot be.
    reset: Option<Arc<ResetPlan>>,
}

/// A compiled module (of the code with write tracking) and how its instances are reset.
#[derive(Clone)]
struct Compiled {
    module: Module,
    reset: Option<Arc<ResetPlan>>,
}

impl Compiled {
    fn new(module: Module) -> Compiled {
        let reset = ResetPlan::of(&module);
        Compiled { module, reset }
    }
}

struct Exports {
    memory: ModuleExport,
    /// Every ABI method's function, each checked to be `() -> ()`, with its
    /// place in the ABI (where a kept instance keeps the function).
    entries: BTreeMap<String, (usize, ModuleExport)>,
}

impl Exports {
    fn of(module: &Module, abi: &Abi) -> Result<Exports, String> {
        let memory = match module.get_export(MEMORY_EXPORT) {
            Some(ExternType::Memory(_)) => module.get_export_index(MEMORY_EXPORT),
            _ => None,
        }
        .ok_or("the module exports no memory")?;
        let mut entries = BTreeMap::new();
        for (index, method) in abi.methods.iter().enumerate() {
            let entry = match module.get_export(&method.name) {
                Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {
                    module.get_export_index(&method.name)
                }
                _ => None,
            }
            .ok_or_else(|| format!("method {} is not exported as a () -> () function", method.name))?;
            entries.insert(method.name.clone(), (index, entry));
        }
        Ok(Exports { memory, entries })
    }
}

impl Contract {
    /// A new instance in `store`, its memory, and its entry point `method`.
    pub(crate) fn instantiate_for(
        &self,
        store: &mut Store<StoreData>,
        method: &str,
    ) -> wasmtime::Result<(wasmtime::Memory, TypedFunc<(), ()>)> {
        let instance = self.pre.instantiate(&mut *store)?;
        let memory = instance
            .get_module_export(&mut *store, &self.exports.memory)
            .and_then(Extern::into_memory)
            .ok_or_else(|| wasmtime::Error::msg("contract has no memory export"))?;
        Ok((memory, self.entry_of(store, &instance, method)?))
    }

    /// The entry point `method` of `instance` (an instance of this contract's module).
    fn entry_of(
        &self,
        store: &mut Store<StoreData>,
        instance: &Instance,
        method: &str,
    ) -> wasmtime::Result<TypedFunc<(), ()>> {
        let func = self
            .exports
            .entries
            .get(method)
            .and_then(|(_, export)| instance.get_module_export(&mut *store, export))
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmtime::Error::msg(format!("contract exports no function {method}")))?;
        // SAFETY: `Exports::of` checked that this export of this instance's
        // module is a function of type `() -> ()`, which is what
        // `TypedFunc::<(), ()>` assumes.
        Ok(unsafe { TypedFunc::<(), ()>::new_unchecked(&*store, func) })
    }
}

/// Shared by every call: the engine, the host functions, the deployed contracts.
pub struct Runtime {
    engine: Engine,
    linker: wasmtime::Linker<StoreData>,
    contracts: RwLock<Contracts>,
    modules: RwLock<BTreeMap<[u8; 32], Compiled>>,
    /// Instances kept between calls, per thread.
    reused: ReusableInstances,
    /// Access summaries by code hash.
    summaries: RwLock<BTreeMap<[u8; 32], Arc<ContractSummary>>>,
    /// The contracts whose entries are analysed again per input shape.
    shapes: Arc<ShapedSummaries>,
    /// Whether receipts carry the keys their transaction accessed
    /// ([`Runtime::set_recording_accesses`]).
    record_accesses: AtomicBool,
}

/// The deployed contracts' summaries by address (looked up only, never
/// iterated, so a hash map's order cannot leak).
pub(crate) type SummariesByAddress = FxHashMap<Address, Arc<ContractSummary>>;

/// The deployed contracts, and their summaries by address as the planner
/// wants them: built once and shared until the next deploy, instead of
/// at every segment of every block, with their generation (see
/// [`PredictionEnv`](crate::PredictionEnv)).
#[derive(Default)]
struct Contracts {
    by_address: BTreeMap<Address, Arc<Contract>>,
    summaries: Option<(Arc<SummariesByAddress>, u64)>,
}

/// A transaction in progress.
pub(crate) struct TxState {
    pub runtime: Arc<Runtime>,
    pub journal: Journal,
    pub depth: u32,
}

/// One call to run.
pub(crate) struct Invocation<'m> {
    pub contract: Address,
    pub caller: Address,
    /// Borrowed: a transaction's method outlives its call (no copy per call).
    pub method: &'m str,
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
            contracts: RwLock::default(),
            modules: RwLock::new(BTreeMap::new()),
            reused: ReusableInstances::default(),
            summaries: RwLock::new(BTreeMap::new()),
            shapes: Arc::default(),
            record_accesses: AtomicBool::new(true),
        }))
    }

    /// Whether each receipt's [`accesses`](crate::Receipt::accesses) lists the
    /// keys its transaction read, wrote and added to (the default), or is
    /// left empty. The list is the ground truth the analyzer's predictions
    /// are checked against in tests and by contract authors; a node does not
    /// keep it (receipts are stored without it), and recording it cost about 15%
    /// of a transfer. Gas, results, events and state are the same either way.
    pub fn set_recording_accesses(&self, record: bool) {
        self.record_accesses.store(record, Ordering::Relaxed);
    }

    /// See [`Runtime::set_recording_accesses`].
    pub fn records_accesses(&self) -> bool {
        self.record_accesses.load(Ordering::Relaxed)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Instances made so far for calls that reuse them (contracts whose
    /// instances are reset after a call; see `reuse`): a call that finds one
    /// kept on its thread makes none.
    pub fn instances_made_for_reuse(&self) -> u64 {
        self.reused.made()
    }

    pub fn contract(&self, address: &Address) -> Option<Arc<Contract>> {
        self.contracts.read().unwrap_or_else(|p| p.into_inner()).by_address.get(address).cloned()
    }

    /// Validates and compiles `code` (once per code hash) into a contract at `address`.
    pub fn prepare(&self, address: Address, code: &[u8]) -> Result<Contract, String> {
        let validated = gatekeeper::validate(code).map_err(|e| e.to_string())?;
        let cached = self.modules.read().unwrap_or_else(|p| p.into_inner()).get(&validated.code_hash).cloned();
        let Compiled { module, reset } = match cached {
            Some(compiled) => compiled,
            None => {
                let tracked = instrument(code).map_err(|e| e.to_string())?;
                let module =
                    Module::new(&self.engine, &tracked.bytes).map_err(|e| format!("compilation failed: {e}"))?;
                let compiled = Compiled::new(module);
                self.modules.write().unwrap_or_else(|p| p.into_inner()).insert(validated.code_hash, compiled.clone());
                compiled
            }
        };
        let pre = self.linker.instantiate_pre(&module).map_err(|e| format!("linking failed: {e}"))?;
        let exports = Exports::of(&module, &validated.abi)?;
        let summary = self.summary_of(&validated.code_hash, code, &validated.abi);
        let shaped = summary.entries.iter().any(|e| e.by_shape).then(|| {
            Arc::new(ShapedContract { code_hash: validated.code_hash, code: code.into(), abi: validated.abi.clone() })
        });
        Ok(Contract { address, code_hash: validated.code_hash, abi: validated.abi, summary, pre, exports, shaped, reset })
    }

    /// The access summary of `code` (analysed once per code hash). A module
    /// the analyzer cannot follow gets a summary that may access anything:
    /// deploying never fails because of the analysis.
    fn summary_of(&self, code_hash: &[u8; 32], code: &[u8], abi: &Abi) -> Arc<ContractSummary> {
        if let Some(known) = self.summaries.read().unwrap_or_else(|p| p.into_inner()).get(code_hash) {
            return known.clone();
        }
        // The analysis is a pure function of the code: runtimes of one
        // process (several VMs in tests and benches) share it.
        static ANALYSED: OnceLock<Mutex<BTreeMap<[u8; 32], Arc<ContractSummary>>>> = OnceLock::new();
        let analysed = ANALYSED.get_or_init(Mutex::default);
        let known = analysed.lock().unwrap_or_else(|p| p.into_inner()).get(code_hash).cloned();
        let summary = known.unwrap_or_else(|| {
            let summary = Arc::new(chroma_analyzer::analyze(code).unwrap_or_else(|e| {
                ContractSummary::unbounded(abi.methods.iter().map(|m| (m.name.clone(), m.kind.into())), &e.to_string())
            }));
            analysed.lock().unwrap_or_else(|p| p.into_inner()).insert(*code_hash, summary.clone());
            summary
        });
        self.summaries.write().unwrap_or_else(|p| p.into_inner()).insert(*code_hash, summary.clone());
        summary
    }

    /// Seeds the summary cache (a summary stored by an earlier run of the same analyzer).
    pub fn remember_summary(&self, code_hash: [u8; 32], summary: ContractSummary) {
        self.summaries.write().unwrap_or_else(|p| p.into_inner()).insert(code_hash, Arc::new(summary));
    }

    /// A stable id of this engine's compiled-code compatibility and of the
    /// rewrite the code is compiled from, for keying cached compiled modules.
    pub fn engine_id(&self) -> Vec<u8> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let mut id = hasher.finish().to_le_bytes().to_vec();
        id.push(INSTRUMENTATION_VERSION);
        id
    }

    /// The access summary of every deployed contract, by address, shared
    /// until the next deploy (see `Contracts`).
    pub(crate) fn shapes(&self) -> Arc<ShapedSummaries> {
        self.shapes.clone()
    }

    /// Seeds an analysis by input shape made before (see `shapes`).
    pub fn remember_shaped(&self, analysis: ShapedAnalysis) {
        self.shapes.remember(analysis);
    }

    /// The analyses by input shape made in this runtime so far, and the
    /// time they took.
    pub fn shape_analysis(&self) -> ShapeAnalysisTime {
        self.shapes.analysing()
    }

    /// The analyses by input shape made since the last call, for storing.
    pub fn take_shaped_made(&self) -> Vec<ShapedAnalysis> {
        self.shapes.take_made()
    }

    /// The deployed contracts' summaries by address, and their generation:
    /// the same until the next deploy.
    pub(crate) fn summaries_by_address(&self) -> (Arc<SummariesByAddress>, u64) {
        if let Some(summaries) = &self.contracts.read().unwrap_or_else(|p| p.into_inner()).summaries {
            return summaries.clone();
        }
        let mut contracts = self.contracts.write().unwrap_or_else(|p| p.into_inner());
        let Contracts { by_address, summaries } = &mut *contracts;
        summaries
            .get_or_insert_with(|| (Arc::new(by_address.iter().map(|(a, c)| (*a, c.summary.clone())).collect()), crate::prediction::next_generation()))
            .clone()
    }

    pub fn summary(&self, code_hash: &[u8; 32]) -> Option<Arc<ContractSummary>> {
        self.summaries.read().unwrap_or_else(|p| p.into_inner()).get(code_hash).cloned()
    }

    /// The compiled module of `code_hash`, serialized, for caching on disk.
    pub fn serialized_module(&self, code_hash: &[u8; 32]) -> Option<Vec<u8>> {
        let compiled = self.modules.read().unwrap_or_else(|p| p.into_inner()).get(code_hash).cloned()?;
        compiled.module.serialize().ok()
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
            self.modules.write().unwrap_or_else(|p| p.into_inner()).insert(validated.code_hash, Compiled::new(module));
        }
        let contract = self.prepare(address, code)?;
        self.register(Arc::new(contract));
        Ok(used_cache)
    }

    pub(crate) fn register(&self, contract: Arc<Contract>) {
        if let Some(shaped) = &contract.shaped {
            self.shapes.register(contract.address, shaped.clone());
        }
        let mut contracts = self.contracts.write().unwrap_or_else(|p| p.into_inner());
        contracts.by_address.insert(contract.address, contract);
        contracts.summaries = None;
    }

    /// Runs one call atomically: on failure its writes and events (and those
    /// of its callees) are rolled back (a top-level call's by `run`, which
    /// drops them). `init` runs a contract's constructor (and is the only
    /// way to).
    pub(crate) fn invoke(
        self: &Arc<Self>,
        mut state: Box<TxState>,
        call: Invocation<'_>,
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
        let Some(method) = contract.abi.method(call.method).filter(|m| (m.kind == MethodKind::Init) == init.is_some())
        else {
            return fail(state, CallFailure::NoSuchMethod(call.method.to_string()), call.fuel);
        };
        if let Err(e) = method.check_args(&call.input) {
            return fail(state, CallFailure::BadInput(e.to_string()), call.fuel);
        }
        if state.depth >= MAX_CALL_DEPTH {
            return fail(state, CallFailure::DepthExceeded, call.fuel);
        }
        let read_only = call.read_only || method.kind == MethodKind::View;
        // A nested call's effects are undone if it fails; a top-level call's
        // are dropped whole by `run`, so it needs no checkpoint.
        let checkpoint = (state.depth > 0).then(|| state.journal.checkpoint());
        state.depth += 1;

        let frame = Frame {
            contract: contract.address,
            caller: call.caller,
            input: call.input,
            output: Vec::new(),
            read_only,
            memory: None,
        };
        let (run, fuel_left, mut state, output) = match &contract.reset {
            Some(plan) => {
                let reused =
                    self.reused.take_or_new(&self.engine, contract.code_hash, &contract.pre, &contract.exports.memory, plan);
                match reused {
                    Ok(instance) => self.call_reused(instance, state, frame, &contract, call.method, call.fuel),
                    // Instantiating failed before anything ran: the call fails with all its gas left.
                    Err(error) => (Err(error), call.fuel, state, Vec::new()),
                }
            }
            None => {
                let data = StoreData { tx: Some(state), frame, limits: store_limits(), written: Default::default() };
                let mut store = Store::new(&self.engine, data);
                store.limiter(|data| &mut data.limits);
                let run = store.set_fuel(call.fuel).and_then(|()| {
                    let (memory, entry) = contract.instantiate_for(&mut store, call.method)?;
                    store.data_mut().frame.memory = Some(memory);
                    entry.call(&mut store, ())
                });
                let fuel_left = store.get_fuel().unwrap_or(0);
                let data = store.into_data();
                // The journal always comes back: nested calls return it before their caller resumes.
                let Some(state) = data.tx else {
                    unreachable!("a nested call did not return the transaction state")
                };
                (run, fuel_left, state, data.frame.output)
            }
        };
        state.depth -= 1;
        let outcome = match run {
            Ok(()) => {
                if let Some(checkpoint) = checkpoint {
                    state.journal.release(checkpoint);
                }
                Ok(output)
            }
            Err(error) => {
                if let Some(checkpoint) = checkpoint {
                    state.journal.rollback(checkpoint);
                }
                Err(classify(error))
            }
        };
        (state, InvokeResult { outcome, fuel_left })
    }

    /// Runs `method` of `contract` in a kept `instance`, then resets it and
    /// keeps it again, unless the call failed or the reset cannot restore it
    /// (see `reuse`). Returns what `invoke` needs: the run, the fuel left,
    /// the transaction state and the call's output.
    fn call_reused(
        &self,
        mut instance: ReusableInstance,
        state: Box<TxState>,
        mut frame: Frame,
        contract: &Contract,
        method: &str,
        fuel: u64,
    ) -> (wasmtime::Result<()>, u64, Box<TxState>, Vec<u8>) {
        frame.memory = Some(instance.memory);
        let data = instance.store.data_mut();
        data.tx = Some(state);
        data.frame = frame;
        let run = instance.store.set_fuel(fuel).and_then(|()| {
            let index = contract.exports.entries.get(method).map_or(usize::MAX, |(index, _)| *index);
            instance.call_entry(index, |store, kept| contract.entry_of(store, kept, method))
        });
        let fuel_left = instance.store.get_fuel().unwrap_or(0);
        let data = instance.store.data_mut();
        let output = std::mem::take(&mut data.frame.output);
        data.frame = Frame::empty();
        // The journal always comes back: nested calls return it before their caller resumes.
        let Some(state) = data.tx.take() else {
            unreachable!("a nested call did not return the transaction state")
        };
        if run.is_ok() && instance.reset() {
            self.reused.put(instance);
        }
        (run, fuel_left, state, output)
    }
}

/// What one transaction did, before its writes are applied.
pub(crate) struct Executed {
    pub receipt: Receipt,
    /// The writes to apply: the call's (if it succeeded) and the sender's nonce.
    pub writes: TxWrites,
    /// Whether an access fell outside the plan's prediction (then nothing of
    /// it may be applied).
    pub mispredicted: bool,
    /// A deployed contract to register, with its code.
    pub deployed: Option<(Arc<Contract>, Vec<u8>)>,
}

/// The nonce `account`'s next transaction must carry, in `state`.
pub(crate) fn nonce_in(state: &dyn StateRead, account: &Address) -> Result<u64, StateError> {
    nonce_at(state, &nonce_key(account))
}

/// The nonce stored at `key` (an account's [`nonce_key`]), 0 if none.
/// Decoded where it is stored (read as a copy, every transaction's nonce
/// cost an allocation and a free).
fn nonce_at(state: &dyn StateRead, key: &[u8]) -> Result<u64, StateError> {
    let mut nonce = 0;
    state.read_with(key, &mut |record| nonce = record.and_then(|v| u64::decode(v).ok()).unwrap_or(0))?;
    Ok(nonce)
}


/// Executes `tx` over `state` without applying anything. With `allowed`, every
/// storage access is checked against it.
pub(crate) fn execute_in(
    runtime: &Arc<Runtime>,
    state: &Arc<dyn StateRead>,
    tx: &Transaction,
    allowed: Option<PredictedAccess>,
) -> Result<Executed, VmError> {
    let nonce_record = nonce_key(&tx.sender);
    let expected = nonce_at(&**state, &nonce_record)?;
    if tx.nonce != expected {
        let receipt = receipt(Outcome::InvalidNonce { expected, found: tx.nonce }, 0);
        return Ok(Executed { receipt, writes: TxWrites::new(), mispredicted: false, deployed: None });
    }
    if tx.gas_limit > gas::MAX_TX_GAS {
        let receipt = receipt(Outcome::GasLimitTooHigh { limit: tx.gas_limit, max: gas::MAX_TX_GAS }, 0);
        return Ok(Executed { receipt, writes: TxWrites::new(), mispredicted: false, deployed: None });
    }
    let mut executed = match &tx.kind {
        TxKind::Call { contract, method, args } => {
            let call = Call { sender: tx.sender, contract: *contract, method, input: args.clone(), read_only: false };
            run(runtime, state, call, tx.gas_limit, None, allowed)?
        }
        TxKind::Deploy { code, init_args } => deploy(runtime, state, tx, code, init_args)?,
    };
    executed.writes.insert(nonce_record, WriteOp::Set(Some((expected + 1).encode())));
    if !executed.receipt.outcome.is_success() {
        executed.receipt.events.clear();
    }
    Ok(executed)
}

/// A top-level call.
struct Call<'m> {
    sender: Address,
    contract: Address,
    method: &'m str,
    input: Vec<u8>,
    read_only: bool,
}

/// Runs a top-level call in a fresh journal over `state`; the writes are
/// empty unless it succeeded.
fn run(
    runtime: &Arc<Runtime>,
    state: &Arc<dyn StateRead>,
    call: Call<'_>,
    gas_limit: u64,
    init: Option<&Arc<Contract>>,
    allowed: Option<PredictedAccess>,
) -> Result<Executed, VmError> {
    let executed = |receipt, writes, mispredicted| Executed { receipt, writes, mispredicted, deployed: None };
    if gas_limit < gas::TRANSACTION {
        return Ok(executed(receipt(Outcome::OutOfGas, gas_limit), TxWrites::new(), false));
    }
    let journal = match allowed {
        Some(allowed) => Journal::enforcing(state.clone(), allowed),
        None => Journal::new(state.clone()),
    }
    .recording_accesses(runtime.records_accesses());
    let tx_state = Box::new(TxState { runtime: runtime.clone(), journal, depth: 0 });
    let invocation = Invocation {
        contract: call.contract,
        caller: call.sender,
        method: call.method,
        input: call.input,
        read_only: call.read_only,
        fuel: gas_limit - gas::TRANSACTION,
    };
    let (tx_state, result) = runtime.invoke(tx_state, invocation, init);
    let mispredicted = tx_state.journal.mispredicted();
    let (writes, events, accesses) = tx_state.journal.finish()?;
    let gas_used = gas_limit - result.fuel_left;
    Ok(match result.outcome {
        Ok(return_data) => executed(
            Receipt { outcome: Outcome::Success, gas_used, return_data, events, deployed: None, accesses },
            writes,
            mispredicted,
        ),
        Err(failure) => {
            let mut r = receipt(failure.into_outcome(), gas_used);
            r.accesses = accesses;
            executed(r, TxWrites::new(), mispredicted)
        }
    })
}

fn deploy(runtime: &Arc<Runtime>, state: &Arc<dyn StateRead>, tx: &Transaction, code: &[u8], init_args: &[u8]) -> Result<Executed, VmError> {
    let failed = |receipt| Executed { receipt, writes: TxWrites::new(), mispredicted: false, deployed: None };
    let deploy_cost = gas::TRANSACTION.saturating_add(gas::DEPLOY_PER_BYTE.saturating_mul(code.len() as u64));
    if tx.gas_limit < deploy_cost {
        return Ok(failed(receipt(Outcome::OutOfGas, tx.gas_limit)));
    }
    let address = contract_address(&tx.sender, tx.nonce);
    let contract = match runtime.prepare(address, code) {
        Ok(contract) => Arc::new(contract),
        Err(message) => return Ok(failed(receipt(Outcome::InvalidModule(message), deploy_cost))),
    };
    let remaining = tx.gas_limit - deploy_cost + gas::TRANSACTION;
    let mut executed = match contract.abi.init() {
        Some(init) => {
            let call = Call { sender: tx.sender, contract: address, method: &init.name, input: init_args.to_vec(), read_only: false };
            run(runtime, state, call, remaining, Some(&contract), None)?
        }
        None if init_args.is_empty() => Executed {
            receipt: receipt(Outcome::Success, gas::TRANSACTION),
            writes: TxWrites::new(),
            mispredicted: false,
            deployed: None,
        },
        None => {
            let message = "the contract has no init method but init arguments were given";
            failed(receipt(Outcome::BadInput(message.into()), gas::TRANSACTION))
        }
    };
    executed.receipt.gas_used += deploy_cost - gas::TRANSACTION;
    if executed.receipt.outcome.is_success() {
        executed.writes.insert(storage_key(&address, SYSTEM_SLOT, CODE_HASH_RECORD), WriteOp::Set(Some(contract.code_hash.to_vec())));
        executed.receipt.deployed = Some(address);
        executed.deployed = Some((contract, code.to_vec()));
    }
    Ok(executed)
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
        Ok(nonce_in(&*self.state, account)?)
    }

    pub fn contract(&self, address: &Address) -> Option<Arc<Contract>> {
        self.runtime.contract(address)
    }

    /// Executes a transaction and applies its effects to the state if it
    /// succeeded (the sender's nonce advances either way, unless the nonce was
    /// wrong). An error means the state storage failed: nothing was applied.
    pub fn execute(&mut self, tx: &Transaction) -> Result<Receipt, VmError> {
        let state = self.state.clone() as Arc<dyn StateRead>;
        let executed = on_execution_thread(|| execute_in(&self.runtime, &state, tx, None))??;
        self.commit(executed)
    }

    /// Applies an executed transaction's writes and registers what it deployed.
    pub(crate) fn commit(&mut self, executed: Executed) -> Result<Receipt, VmError> {
        self.state.apply(executed.writes)?;
        if let Some((contract, code)) = executed.deployed {
            self.new_code.insert(contract.code_hash, code);
            self.runtime.register(contract);
        }
        Ok(executed.receipt)
    }

    /// Runs `method` read-only (writes trap) without committing anything.
    pub fn query(&self, contract: Address, method: &str, args: Vec<u8>, gas_limit: u64) -> Result<Receipt, VmError> {
        let state = self.state.clone() as Arc<dyn StateRead>;
        if gas_limit > gas::MAX_TX_GAS {
            return Ok(receipt(Outcome::GasLimitTooHigh { limit: gas_limit, max: gas::MAX_TX_GAS }, 0));
        }
        let call = Call { sender: Address::ZERO, contract, method, input: args, read_only: true };
        Ok(on_execution_thread(|| run(&self.runtime, &state, call, gas_limit, None, None))??.receipt)
    }
}

fn receipt(outcome: Outcome, gas_used: u64) -> Receipt {
    Receipt { outcome, gas_used, return_data: Vec::new(), events: Vec::new(), deployed: None, accesses: Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chroma_host_api::abi::{Method, Type};

    fn abi(names: &[&str]) -> Abi {
        let method = |name: &&str| Method { name: name.to_string(), kind: MethodKind::Mutating, args: Vec::new(), returns: Type::Unit };
        Abi { methods: names.iter().map(method).collect() }
    }

    /// Entry points are called without a type check per call: the one here
    /// must refuse anything but a `() -> ()` function, whatever the
    /// gatekeeper let through.
    #[test]
    fn exports_are_found_once_and_entry_points_must_take_and_return_nothing() {
        let engine = Engine::default();
        let wat = r#"(module
            (memory (export "memory") 1)
            (func (export "ok"))
            (func (export "takes") (param i32))
            (func (export "gives") (result i32) i32.const 0)
            (global (export "not_a_function") i32 (i32.const 0)))"#;
        let module = Module::new(&engine, wat::parse_str(wat).expect("valid text")).expect("valid module");
        let exports = Exports::of(&module, &abi(&["ok"])).expect("a () -> () entry point");
        assert_eq!(exports.entries.keys().collect::<Vec<_>>(), ["ok"]);
        for bad in ["takes", "gives", "not_a_function", "missing"] {
            let refused = Exports::of(&module, &abi(&["ok", bad])).err();
            assert_eq!(refused, Some(format!("method {bad} is not exported as a () -> () function")));
        }
        let no_memory = Module::new(&engine, wat::parse_str(r#"(module (func (export "ok")))"#).expect("text")).expect("module");
        assert_eq!(Exports::of(&no_memory, &abi(&["ok"])).err(), Some("the module exports no memory".to_string()));
    }
}
