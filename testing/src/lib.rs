//! # chroma-testing
//!
//! An in-process chain for testing contracts from an ordinary `cargo test`:
//! the real VM (wasmtime, gas, the host functions, the parallel executor)
//! over an in-memory state, with named accounts, typed arguments and
//! results, events, reverts with their messages, and blocks.
//!
//! ```ignore
//! use chroma_testing::{TestChain, Failure};
//!
//! let wasm = chroma_testing::build(env!("CARGO_MANIFEST_DIR")).expect("the contract builds");
//! let mut chain = TestChain::new();
//! let counter = chain.deploy("alice", &wasm, ()).expect("deploys");
//! assert_eq!(chain.call::<u128>("alice", counter, "increment", ()), Ok(1));
//! assert_eq!(chain.view::<u128>(counter, "get", ()), Ok(1));
//! assert_eq!(chain.call::<()>("bob", counter, "nope", ()), Err(Failure::NoSuchMethod("nope".into())));
//! ```
//!
//! Arguments are tuples of the method's argument types, `()` for none;
//! results decode as the method's return type. Each `call` or `deploy` is
//! a block of its own; [`TestChain::queue`] and [`TestChain::next_block`]
//! run several transactions as one block, in parallel.

use std::path::Path;

pub use chroma_host_api::{Address, Decode, Encode};
use chroma_vm::{dev_account, BlockOptions, Transaction, TxKind, Vm};
pub use chroma_vm::{Event, Outcome, Receipt};

/// The gas limit of every transaction unless [`TestChain::set_gas`] changes it.
pub const DEFAULT_GAS: u64 = 10_000_000;

/// Why a call or deploy did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The contract reverted (`revert`, `require!`, a failed nested `call`, a panic).
    #[error("reverted: {0}")]
    Reverted(String),
    #[error("out of gas")]
    OutOfGas,
    /// A Wasm trap or a host-function error (a limit, a write in a view, ...).
    #[error("trapped: {0}")]
    Trapped(String),
    /// The arguments do not match the method's types.
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("no contract at {0}")]
    NoSuchContract(Address),
    #[error("no method `{0}`")]
    NoSuchMethod(String),
    /// The deployed module was refused (not a valid Chroma contract).
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The call succeeded, but its return value is not the type asked for.
    #[error("the return value does not decode as {expected}: {error}")]
    BadReturn { expected: &'static str, error: String },
    /// Anything else (a module file that cannot be read, a refused transaction).
    #[error("{0}")]
    Other(String),
}

impl Failure {
    fn of(outcome: Outcome) -> Failure {
        match outcome {
            Outcome::Reverted(m) => Failure::Reverted(m),
            Outcome::OutOfGas => Failure::OutOfGas,
            Outcome::Trapped(m) => Failure::Trapped(m),
            Outcome::BadInput(m) => Failure::BadInput(m),
            Outcome::NoSuchContract(a) => Failure::NoSuchContract(a),
            Outcome::NoSuchMethod(m) => Failure::NoSuchMethod(m),
            Outcome::InvalidModule(m) => Failure::InvalidModule(m),
            other => Failure::Other(other.to_string()),
        }
    }
}

/// Panics unless `result` is a revert whose message contains `message`.
#[track_caller]
pub fn assert_reverts<T: std::fmt::Debug>(result: Result<T, Failure>, message: &str) {
    match result {
        Err(Failure::Reverted(m)) if m.contains(message) => {}
        other => panic!("expected a revert with {message:?}, got {other:?}"),
    }
}

/// The data of `receipt`'s events named `name`, decoded as `T`, in order.
pub fn events<T: Decode>(receipt: &Receipt, name: &str) -> Result<Vec<T>, Failure> {
    receipt
        .events
        .iter()
        .filter(|e| e.name == name)
        .map(|e| {
            T::decode(&e.data).map_err(|error| Failure::BadReturn { expected: std::any::type_name::<T>(), error: error.to_string() })
        })
        .collect()
}

/// Builds the contract crate in `dir` to Wasm (see `chroma_build`) and
/// returns the module. In a contract's tests: `build(env!("CARGO_MANIFEST_DIR"))`.
pub fn build(dir: impl AsRef<Path>) -> Result<Vec<u8>, chroma_build::BuildError> {
    let built = chroma_build::build(dir.as_ref())?;
    std::fs::read(&built.wasm).map_err(|e| chroma_build::BuildError::Manifest { path: built.wasm.clone(), error: e.to_string() })
}

/// A chain in memory.
pub struct TestChain {
    vm: Vm,
    height: u64,
    gas: u64,
    queued: Vec<(Address, TxKind)>,
}

impl Default for TestChain {
    fn default() -> Self {
        TestChain::new()
    }
}

impl TestChain {
    /// An empty chain. Accounts need no set-up: any name is an account.
    pub fn new() -> TestChain {
        let vm = Vm::new().unwrap_or_else(|e| panic!("cannot start the VM: {e}"));
        TestChain { vm, height: 0, gas: DEFAULT_GAS, queued: Vec::new() }
    }

    /// The address of the account called `name`.
    pub fn account(name: &str) -> Address {
        dev_account(name)
    }

    /// The gas limit of later transactions.
    pub fn set_gas(&mut self, gas: u64) {
        self.gas = gas;
    }

    /// Blocks executed so far.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The VM, for what this harness does not cover.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Deploys `wasm` from `from`, running its constructor with `init_args`
    /// (`()` when it has none).
    pub fn deploy(&mut self, from: &str, wasm: &[u8], init_args: impl Encode) -> Result<Address, Failure> {
        let receipt = self.execute(from, TxKind::Deploy { code: wasm.to_vec(), init_args: init_args.encode() })?;
        match receipt.deployed {
            Some(address) if receipt.outcome.is_success() => Ok(address),
            _ => Err(Failure::of(receipt.outcome)),
        }
    }

    /// [`TestChain::deploy`] of a `.wasm` file.
    pub fn deploy_file(&mut self, from: &str, path: impl AsRef<Path>, init_args: impl Encode) -> Result<Address, Failure> {
        let path = path.as_ref();
        let wasm = std::fs::read(path).map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))?;
        self.deploy(from, &wasm, init_args)
    }

    /// Calls `method` of `contract` as `from` in a transaction of its own and
    /// decodes the result as `R`. Writes stay only if it succeeds.
    pub fn call<R: Decode>(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) -> Result<R, Failure> {
        let receipt = self.send(from, contract, method, args)?;
        decode(receipt)
    }

    /// Like [`TestChain::call`], but returns the whole receipt (events, gas,
    /// accesses) whatever the outcome.
    pub fn send(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) -> Result<Receipt, Failure> {
        self.execute(from, TxKind::Call { contract, method: method.to_string(), args: args.encode() })
    }

    /// Runs `method` read-only against the current state, without a transaction.
    pub fn view<R: Decode>(&self, contract: Address, method: &str, args: impl Encode) -> Result<R, Failure> {
        let receipt = self.vm.query(contract, method, args.encode(), self.gas).map_err(|e| Failure::Other(e.to_string()))?;
        decode(receipt)
    }

    /// Queues a call for the next block (see [`TestChain::next_block`]).
    pub fn queue(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) {
        self.queued.push((dev_account(from), TxKind::Call { contract, method: method.to_string(), args: args.encode() }));
    }

    /// Executes the queued calls as one block, in parallel as a node would
    /// (the result is that of running them in order), and returns their receipts.
    pub fn next_block(&mut self) -> Result<Vec<Receipt>, Failure> {
        let queued = std::mem::take(&mut self.queued);
        let mut nonces: std::collections::BTreeMap<Address, u64> = std::collections::BTreeMap::new();
        let mut txs = Vec::with_capacity(queued.len());
        for (sender, kind) in queued {
            let nonce = match nonces.get(&sender) {
                Some(n) => *n,
                None => self.vm.nonce(&sender).map_err(|e| Failure::Other(e.to_string()))?,
            };
            nonces.insert(sender, nonce + 1);
            txs.push(Transaction { sender, nonce, kind, gas_limit: self.gas });
        }
        let done = self.vm.execute_block(&txs, &BlockOptions::default()).map_err(|e| Failure::Other(e.to_string()))?;
        self.height += 1;
        Ok(done.receipts)
    }

    fn execute(&mut self, from: &str, kind: TxKind) -> Result<Receipt, Failure> {
        let sender = dev_account(from);
        let nonce = self.vm.nonce(&sender).map_err(|e| Failure::Other(e.to_string()))?;
        let tx = Transaction { sender, nonce, kind, gas_limit: self.gas };
        let receipt = self.vm.execute(&tx).map_err(|e| Failure::Other(e.to_string()))?;
        self.height += 1;
        Ok(receipt)
    }
}

fn decode<R: Decode>(receipt: Receipt) -> Result<R, Failure> {
    if !receipt.outcome.is_success() {
        return Err(Failure::of(receipt.outcome));
    }
    R::decode(&receipt.return_data).map_err(|error| Failure::BadReturn { expected: std::any::type_name::<R>(), error: error.to_string() })
}
