//! A mock host for testing contract logic natively with `cargo test`.
//!
//! [`MockChain`] keeps storage, deployed contracts and events in memory and
//! runs contract code as ordinary Rust, with the same semantics the VM gives
//! the Wasm: calls are atomic (a revert or trap discards the call's writes and
//! events, including those of contracts it called), views are read-only, the
//! caller cannot be forged, arguments are checked against the ABI, limits are
//! enforced with the same errors. It does not meter gas (`gas_left()` is
//! `u64::MAX`): gas is tested against the real VM.
//!
//! ```ignore
//! let mut chain = MockChain::new();
//! let alice = MockChain::account("alice");
//! let token = chain.deploy(&token::token::CONTRACT, alice, ("TOK".to_string(), 1_000u128))?;
//! chain.call::<()>(alice, token, "transfer", (bob, 10u128))?;
//! assert_eq!(chain.query::<u128>(token, "balance_of", (bob,))?, 10);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::string::{String, ToString};
use std::vec::Vec;

use chroma_host_api::abi::MethodKind;
use chroma_host_api::codec::Encode;
use chroma_host_api::key::storage_key;
use chroma_host_api::limits::*;
use chroma_host_api::{Address, CallStatus, Decode, DecodeError, HostError, Value};

use crate::ContractDef;

/// An event emitted by a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub contract: Address,
    pub name: String,
    pub data: Vec<u8>,
}

impl Event {
    /// Decodes the event's data as `T`.
    pub fn decode<T: Decode>(&self) -> Result<T, DecodeError> {
        T::decode(&self.data)
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The contract reverted (or panicked) with this message.
    Reverted(String),
    /// A host function trapped: a limit, a write in a view, ...
    Trapped(String),
    NoSuchContract(Address),
    NoSuchMethod(String),
    /// The arguments (or the return value) do not match the ABI.
    BadInput(String),
    DepthExceeded,
}

impl Failure {
    pub fn status(&self) -> CallStatus {
        match self {
            Failure::Reverted(_) => CallStatus::Reverted,
            Failure::Trapped(_) => CallStatus::Trapped,
            Failure::NoSuchContract(_) => CallStatus::NoSuchContract,
            Failure::NoSuchMethod(_) => CallStatus::NoSuchMethod,
            Failure::BadInput(_) => CallStatus::BadInput,
            Failure::DepthExceeded => CallStatus::DepthExceeded,
        }
    }

    /// The revert message, if the call reverted.
    pub fn revert_message(&self) -> Option<&str> {
        match self {
            Failure::Reverted(m) => Some(m),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Reverted(m) => write!(f, "reverted: {m}"),
            Failure::Trapped(m) => write!(f, "trapped: {m}"),
            Failure::NoSuchContract(a) => write!(f, "no contract at {a}"),
            Failure::NoSuchMethod(m) => write!(f, "no method {m:?}"),
            Failure::BadInput(m) => write!(f, "bad input: {m}"),
            Failure::DepthExceeded => write!(f, "call depth exceeds {MAX_CALL_DEPTH}"),
        }
    }
}

impl std::error::Error for Failure {}

struct RevertSignal(String);
struct TrapSignal(HostError);

struct Frame {
    contract: Address,
    caller: Address,
    input: Vec<u8>,
    output: Vec<u8>,
    read_only: bool,
}

#[derive(Default)]
struct State {
    storage: BTreeMap<Vec<u8>, Vec<u8>>,
    contracts: BTreeMap<Address, ContractDef>,
    frames: Vec<Frame>,
    events: Vec<Event>,
    tx_events_start: usize,
    deployed: u64,
}

std::thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let state = guard.as_mut().unwrap_or_else(|| {
            panic!("contract code ran natively outside a chroma_sdk::testing::MockChain (create one first)")
        });
        f(state)
    })
}

fn with_frame<R>(f: impl FnOnce(&mut Frame) -> R) -> R {
    with_state(|s| match s.frames.last_mut() {
        Some(frame) => f(frame),
        None => panic!("contract code ran outside a call (use MockChain::call or MockChain::run_as)"),
    })
}

fn trap(error: HostError) -> ! {
    panic::panic_any(TrapSignal(error))
}

fn check_len(length: usize, limit: usize, error: fn(usize, usize) -> HostError) {
    if length > limit {
        trap(error(length, limit))
    }
}

fn check_key(key: &[u8]) {
    check_len(key.len(), MAX_KEY_LEN, |length, limit| HostError::KeyLengthExceeded { length, limit });
}

fn check_writable(function: &'static str) {
    if with_frame(|f| f.read_only) {
        trap(HostError::WriteInView { function })
    }
}

fn full_key(slot: u32, key: &[u8]) -> Vec<u8> {
    check_key(key);
    storage_key(&with_frame(|f| f.contract), slot, key)
}

/// The backend the SDK uses natively; mirrors `wasm.rs`.
pub(crate) mod backend {
    use super::*;

    /// Natively the heap is the process's: nothing to reset.
    pub fn begin_call() {}

    pub fn with_input<R>(f: impl FnOnce(&[u8]) -> R) -> R {
        let input = with_frame(|frame| frame.input.clone());
        f(&input)
    }

    pub fn caller() -> Address {
        with_frame(|f| f.caller)
    }

    pub fn self_address() -> Address {
        with_frame(|f| f.contract)
    }

    pub fn storage_read<R>(slot: u32, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let full = full_key(slot, key);
        let value = with_state(|s| s.storage.get(&full).cloned());
        f(value.as_deref())
    }

    pub fn storage_write(slot: u32, key: &[u8], value: &[u8]) {
        check_writable("storage_write");
        check_len(value.len(), MAX_VALUE_LEN, |length, limit| HostError::ValueLengthExceeded { length, limit });
        let full = full_key(slot, key);
        with_state(|s| s.storage.insert(full, value.to_vec()));
    }

    pub fn storage_remove(slot: u32, key: &[u8]) {
        check_writable("storage_remove");
        let full = full_key(slot, key);
        with_state(|s| s.storage.remove(&full));
    }

    pub fn storage_add(slot: u32, key: &[u8], amount: u128) {
        check_writable("storage_add");
        let full = full_key(slot, key);
        with_state(|s| {
            let current = s.storage.get(&full).and_then(|v| u128::decode(v).ok()).unwrap_or(0);
            s.storage.insert(full, current.saturating_add(amount).encode());
        });
    }

    pub fn set_return(bytes: &[u8]) {
        check_len(bytes.len(), MAX_RETURN_LEN, |length, limit| HostError::ReturnLengthExceeded { length, limit });
        with_frame(|f| f.output = bytes.to_vec());
    }

    pub fn emit(name: &str, data: &[u8]) {
        check_writable("emit");
        check_len(name.len(), MAX_EVENT_NAME_LEN, |length, limit| HostError::EventNameLengthExceeded { length, limit });
        check_len(data.len(), MAX_EVENT_DATA_LEN, |length, limit| HostError::EventDataLengthExceeded { length, limit });
        let too_many = with_state(|s| s.events.len() - s.tx_events_start >= MAX_EVENTS_PER_TX);
        if too_many {
            trap(HostError::TooManyEvents { limit: MAX_EVENTS_PER_TX });
        }
        let contract = with_frame(|f| f.contract);
        with_state(|s| s.events.push(Event { contract, name: name.to_string(), data: data.to_vec() }));
    }

    pub fn revert(message: &str) -> ! {
        let mut end = message.len().min(MAX_REVERT_MSG_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        panic::panic_any(RevertSignal(message[..end].to_string()))
    }

    pub fn call<R>(address: &Address, method: &str, args: &[u8], f: impl FnOnce(CallStatus, &[u8]) -> R) -> R {
        let (caller, read_only) = with_frame(|frame| (frame.contract, frame.read_only));
        match invoke(*address, caller, method, args.to_vec(), read_only, false) {
            Ok(output) => f(CallStatus::Ok, &output),
            Err(Failure::Reverted(message)) => f(CallStatus::Reverted, message.as_bytes()),
            Err(other) => f(other.status(), other.to_string().as_bytes()),
        }
    }

    pub fn gas_left() -> u64 {
        u64::MAX
    }
}

/// Runs `method` of `contract` in a new frame; atomic.
fn invoke(
    contract: Address,
    caller: Address,
    method: &str,
    input: Vec<u8>,
    read_only: bool,
    is_deploy: bool,
) -> Result<Vec<u8>, Failure> {
    let def = with_state(|s| s.contracts.get(&contract).copied()).ok_or(Failure::NoSuchContract(contract))?;
    let abi = def.abi();
    let entry = abi
        .method(method)
        .filter(|m| (m.kind == MethodKind::Init) == is_deploy)
        .ok_or_else(|| Failure::NoSuchMethod(method.to_string()))?;
    Value::decode_as(&entry.args_type(), &input).map_err(|e| Failure::BadInput(e.to_string()))?;
    let depth = with_state(|s| s.frames.len());
    if depth >= MAX_CALL_DEPTH as usize {
        return Err(Failure::DepthExceeded);
    }
    let (storage_before, events_before) = with_state(|s| (s.storage.clone(), s.events.len()));
    let read_only = read_only || entry.kind == MethodKind::View;
    with_state(|s| s.frames.push(Frame { contract, caller, input, output: Vec::new(), read_only }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| (def.dispatch)(method)));
    let frame = with_state(|s| s.frames.pop());
    let output = frame.map(|f| f.output).unwrap_or_default();
    let failure = match outcome {
        Ok(true) => return Ok(output),
        Ok(false) => Failure::NoSuchMethod(method.to_string()),
        Err(payload) => {
            if let Some(RevertSignal(message)) = payload.downcast_ref::<RevertSignal>() {
                Failure::Reverted(message.clone())
            } else if let Some(TrapSignal(error)) = payload.downcast_ref::<TrapSignal>() {
                Failure::Trapped(error.to_string())
            } else if let Some(message) = payload.downcast_ref::<&str>() {
                Failure::Reverted(std::format!("panicked: {message}"))
            } else if let Some(message) = payload.downcast_ref::<String>() {
                Failure::Reverted(std::format!("panicked: {message}"))
            } else {
                Failure::Reverted("panicked".to_string())
            }
        }
    };
    with_state(|s| {
        s.storage = storage_before;
        s.events.truncate(events_before);
    });
    Err(failure)
}

fn quiet_signal_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(std::boxed::Box::new(move |info| {
            let payload = info.payload();
            if !(payload.is::<RevertSignal>() || payload.is::<TrapSignal>()) {
                default(info)
            }
        }));
    });
}

/// An in-memory chain on the current thread. Dropping it clears the state.
pub struct MockChain {
    _not_send: PhantomData<*const ()>,
}

impl Default for MockChain {
    fn default() -> Self {
        Self::new()
    }
}

impl MockChain {
    /// A fresh chain for this thread (replacing any earlier one).
    pub fn new() -> MockChain {
        quiet_signal_panics();
        STATE.with(|cell| *cell.borrow_mut() = Some(State::default()));
        MockChain { _not_send: PhantomData }
    }

    /// A deterministic test account named `name` (its first 32 bytes).
    pub fn account(name: &str) -> Address {
        let mut bytes = [0u8; 32];
        let n = name.len().min(32);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        Address(bytes)
    }

    /// Deploys `contract` from `from`, running its init method with `init_args`
    /// (`()` if it has none). On failure nothing is deployed.
    pub fn deploy(&mut self, contract: &ContractDef, from: Address, init_args: impl Encode) -> Result<Address, Failure> {
        let address = with_state(|s| {
            s.deployed += 1;
            let mut bytes = [0xc0; 32];
            bytes[24..].copy_from_slice(&s.deployed.to_be_bytes());
            let address = Address(bytes);
            s.contracts.insert(address, *contract);
            s.tx_events_start = s.events.len();
            address
        });
        let input = init_args.encode();
        let result = match contract.abi().init() {
            Some(init) => invoke(address, from, &init.name, input, false, true).map(drop),
            None if input.is_empty() => Ok(()),
            None => Err(Failure::BadInput("the contract has no init method but init arguments were given".into())),
        };
        if result.is_err() {
            with_state(|s| s.contracts.remove(&address));
        }
        result.map(|()| address)
    }

    /// Calls `method` as a transaction from `from` and decodes its result.
    pub fn call<R: Decode>(&mut self, from: Address, contract: Address, method: &str, args: impl Encode) -> Result<R, Failure> {
        with_state(|s| s.tx_events_start = s.events.len());
        let output = invoke(contract, from, method, args.encode(), false, false)?;
        R::decode(&output).map_err(|e| Failure::BadInput(std::format!("return value of {method}: {e}")))
    }

    /// Runs `method` read-only (writes and events trap) and decodes its result.
    pub fn query<R: Decode>(&self, contract: Address, method: &str, args: impl Encode) -> Result<R, Failure> {
        let output = invoke(contract, Address::ZERO, method, args.encode(), true, false)?;
        R::decode(&output).map_err(|e| Failure::BadInput(std::format!("return value of {method}: {e}")))
    }

    /// Runs `f` as if it were code of `contract` called by `caller`, so entry
    /// functions and storage can be used directly. Atomic like a call.
    pub fn run_as<R>(&mut self, caller: Address, contract: Address, f: impl FnOnce() -> R) -> Result<R, Failure> {
        let before = with_state(|s| {
            s.frames.push(Frame { contract, caller, input: Vec::new(), output: Vec::new(), read_only: false });
            (s.storage.clone(), s.events.len())
        });
        let outcome = panic::catch_unwind(AssertUnwindSafe(f));
        with_state(|s| s.frames.pop());
        outcome.map_err(|payload| {
            with_state(|s| {
                s.storage = before.0;
                s.events.truncate(before.1);
            });
            match payload.downcast::<RevertSignal>() {
                Ok(signal) => Failure::Reverted(signal.0),
                Err(payload) => match payload.downcast::<TrapSignal>() {
                    Ok(signal) => Failure::Trapped(signal.0.to_string()),
                    Err(payload) => panic::resume_unwind(payload),
                },
            }
        })
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        with_state(|s| s.events.clone())
    }

    /// Takes the events emitted so far, leaving none.
    pub fn take_events(&mut self) -> Vec<Event> {
        with_state(|s| {
            s.tx_events_start = 0;
            std::mem::take(&mut s.events)
        })
    }

    /// Number of storage entries over all contracts.
    pub fn storage_len(&self) -> usize {
        with_state(|s| s.storage.len())
    }
}

impl Drop for MockChain {
    fn drop(&mut self) {
        STATE.with(|cell| *cell.borrow_mut() = None);
    }
}
