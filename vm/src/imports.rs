//! The host functions, as the contract's imports. Their names, signatures,
//! errors and costs are defined in `chroma_host_api::host`; this is the
//! implementation. Every function charges gas before it does anything.

use std::sync::Arc;

use chroma_host_api::gas;
use chroma_host_api::host::{host_fn, pack_call_result, CallStatus, HostError, IMPORT_MODULE, STORAGE_ABSENT};
use chroma_host_api::key::{slot_prefix, KEY_PREFIX_LEN, SYSTEM_SLOT};
use chroma_host_api::limits::*;
use chroma_host_api::{Address, ADDRESS_LEN};
use smallvec::SmallVec;
use wasmtime::{Caller, Linker, Memory, StoreLimits};

use crate::instrument::WrittenPages;
use crate::runtime::{CallFailure, Invocation, Runtime, TxState};
use crate::tx::Event;

/// Why execution stopped, carried through wasmtime as the trap's error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abort {
    #[error("reverted: {0}")]
    Revert(String),
    #[error("out of gas")]
    OutOfGas,
    #[error("{0}")]
    Host(HostError),
}

impl From<HostError> for Abort {
    fn from(e: HostError) -> Self {
        Abort::Host(e)
    }
}

/// One call's frame.
pub(crate) struct Frame {
    pub contract: Address,
    pub caller: Address,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub read_only: bool,
    pub memory: Option<Memory>,
}

impl Frame {
    /// The frame of a store between calls.
    pub fn empty() -> Frame {
        Frame {
            contract: Address::ZERO,
            caller: Address::ZERO,
            input: Vec::new(),
            output: Vec::new(),
            read_only: true,
            memory: None,
        }
    }
}

/// What a call's wasmtime store holds.
pub(crate) struct StoreData {
    /// The transaction's journal and shared runtime; moved into a callee's
    /// store for the duration of a nested call.
    pub tx: Option<Box<TxState>>,
    pub frame: Frame,
    pub limits: StoreLimits,
    /// The pages of the memory the host wrote during the call (the code marks its own).
    pub written: WrittenPages,
}

type Ctx<'a> = Caller<'a, StoreData>;
type HostResult<T> = wasmtime::Result<T>;

fn charge(caller: &mut Ctx<'_>, amount: u64) -> HostResult<()> {
    let fuel = caller.get_fuel()?;
    if fuel < amount {
        caller.set_fuel(0)?;
        return Err(Abort::OutOfGas.into());
    }
    caller.set_fuel(fuel - amount)?;
    Ok(())
}

fn memory(caller: &Ctx<'_>) -> HostResult<Memory> {
    caller.data().frame.memory.ok_or_else(|| wasmtime::Error::msg("contract memory is not set up"))
}

fn read_bytes(caller: &mut Ctx<'_>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let mem = memory(caller)?;
    Ok(span(mem.data(&*caller), ptr, len)?.to_vec())
}

/// `len` bytes of `data` from `ptr`, or the out-of-bounds error.
fn span(data: &[u8], ptr: u32, len: u32) -> HostResult<&[u8]> {
    let start = ptr as usize;
    start
        .checked_add(len as usize)
        .and_then(|end| data.get(start..end))
        .ok_or_else(|| Abort::from(HostError::MemoryOutOfBounds { ptr, len, memory_size: data.len() as u64 }).into())
}

fn write_bytes(caller: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> HostResult<()> {
    let mem = memory(caller)?;
    let (data, store) = mem.data_and_store_mut(&mut *caller);
    copy_into(data, &mut store.written, ptr, bytes)
}

/// Copies `bytes` into `data` at `ptr` and marks them `written`, or fails
/// with the out-of-bounds error.
fn copy_into(data: &mut [u8], written: &mut WrittenPages, ptr: u32, bytes: &[u8]) -> HostResult<()> {
    let size = data.len() as u64;
    let start = ptr as usize;
    match start.checked_add(bytes.len()).and_then(|end| data.get_mut(start..end)) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            written.mark(start, bytes.len());
            Ok(())
        }
        None => Err(Abort::from(HostError::MemoryOutOfBounds { ptr, len: bytes.len() as u32, memory_size: size }).into()),
    }
}

fn check_len(length: u32, limit: usize, error: fn(usize, usize) -> HostError) -> HostResult<()> {
    if length as usize > limit {
        return Err(Abort::from(error(length as usize, limit)).into());
    }
    Ok(())
}

fn utf8(bytes: Vec<u8>, what: &'static str) -> HostResult<String> {
    String::from_utf8(bytes).map_err(|_| Abort::from(HostError::InvalidUtf8 { what }).into())
}

fn tx<'a>(caller: &'a mut Ctx<'_>) -> HostResult<&'a mut TxState> {
    caller.data_mut().tx.as_deref_mut().ok_or_else(|| wasmtime::Error::msg("no transaction context"))
}

fn check_writable(caller: &Ctx<'_>, function: &'static str) -> HostResult<()> {
    if caller.data().frame.read_only {
        return Err(Abort::from(HostError::WriteInView { function }).into());
    }
    Ok(())
}

/// Key bytes kept on the stack: a key by one address and more.
const STATE_KEY_INLINE: usize = KEY_PREFIX_LEN + 64;

/// A full state key, on the stack when short.
type StateKey = SmallVec<[u8; STATE_KEY_INLINE]>;

/// The full state key of the contract's key at (`key_ptr`, `key_len`),
/// made straight from memory (no copy of the contract's key on the way),
/// laid out as `chroma_host_api::key` lays keys out.
fn state_key(caller: &Ctx<'_>, slot: u32, key_ptr: u32, key_len: u32) -> HostResult<StateKey> {
    if slot == SYSTEM_SLOT {
        return Err(Abort::from(HostError::ReservedSlot { slot }).into());
    }
    check_len(key_len, MAX_KEY_LEN, |length, limit| HostError::KeyLengthExceeded { length, limit })?;
    let mem = memory(caller)?;
    let key = span(mem.data(caller), key_ptr, key_len)?;
    let mut full = StateKey::new();
    full.extend_from_slice(&slot_prefix(&caller.data().frame.contract, slot));
    full.extend_from_slice(key);
    Ok(full)
}

fn input(mut caller: Ctx<'_>, dst_ptr: u32) -> HostResult<u32> {
    let len = caller.data().frame.input.len();
    charge(&mut caller, gas::HOST_CALL + gas::COPY_PER_BYTE * len as u64)?;
    // Memory and frame borrowed at once: the input is copied once, into memory.
    let mem = memory(&caller)?;
    let (data, store) = mem.data_and_store_mut(&mut caller);
    copy_into(data, &mut store.written, dst_ptr, &store.frame.input)?;
    Ok(len as u32)
}

fn caller_address(mut caller: Ctx<'_>, dst_ptr: u32) -> HostResult<()> {
    charge(&mut caller, gas::HOST_CALL + gas::COPY_PER_BYTE * ADDRESS_LEN as u64)?;
    let address = caller.data().frame.caller;
    write_bytes(&mut caller, dst_ptr, address.as_bytes())
}

fn self_address(mut caller: Ctx<'_>, dst_ptr: u32) -> HostResult<()> {
    charge(&mut caller, gas::HOST_CALL + gas::COPY_PER_BYTE * ADDRESS_LEN as u64)?;
    let address = caller.data().frame.contract;
    write_bytes(&mut caller, dst_ptr, address.as_bytes())
}

fn storage_read(mut caller: Ctx<'_>, slot: u32, key_ptr: u32, key_len: u32, dst_ptr: u32, dst_cap: u32) -> HostResult<i32> {
    charge(&mut caller, gas::HOST_CALL + gas::STORAGE_READ + gas::STORAGE_READ_PER_BYTE * u64::from(key_len))?;
    // The key on the stack and the value copied into memory where the
    // state lends it: a read allocated both (two of a transfer's 19
    // allocations).
    let key = state_key(&caller, slot, key_ptr, key_len)?;
    let mem = memory(&caller)?;
    let (data, store) = mem.data_and_store_mut(&mut caller);
    let StoreData { tx, written, .. } = store;
    let journal = &mut tx.as_deref_mut().ok_or_else(|| wasmtime::Error::msg("no transaction context"))?.journal;
    // The copy is made before the charge for the value's length: a
    // transaction out of gas fails all the same, and its memory is not
    // seen again.
    let (mut length, mut copied) = (None, Ok(()));
    journal.read_with(&key, &mut |value| {
        if let Some(value) = value {
            length = Some(value.len());
            copied = copy_into(data, written, dst_ptr, &value[..value.len().min(dst_cap as usize)]);
        }
    });
    let Some(length) = length else {
        return Ok(STORAGE_ABSENT);
    };
    charge(&mut caller, gas::STORAGE_READ_PER_BYTE * length as u64)?;
    copied?;
    Ok(length as i32)
}

fn storage_write(mut caller: Ctx<'_>, slot: u32, key_ptr: u32, key_len: u32, val_ptr: u32, val_len: u32) -> HostResult<()> {
    check_writable(&caller, host_fn::storage_write.name)?;
    check_len(val_len, MAX_VALUE_LEN, |length, limit| HostError::ValueLengthExceeded { length, limit })?;
    charge(
        &mut caller,
        gas::HOST_CALL + gas::STORAGE_WRITE + gas::STORAGE_WRITE_PER_BYTE * (u64::from(key_len) + u64::from(val_len)),
    )?;
    let key = state_key(&caller, slot, key_ptr, key_len)?.into_vec();
    let value = read_bytes(&mut caller, val_ptr, val_len)?;
    tx(&mut caller)?.journal.write(key, Some(value));
    Ok(())
}

fn storage_remove(mut caller: Ctx<'_>, slot: u32, key_ptr: u32, key_len: u32) -> HostResult<()> {
    check_writable(&caller, host_fn::storage_remove.name)?;
    charge(&mut caller, gas::HOST_CALL + gas::STORAGE_REMOVE + gas::STORAGE_WRITE_PER_BYTE * u64::from(key_len))?;
    let key = state_key(&caller, slot, key_ptr, key_len)?.into_vec();
    tx(&mut caller)?.journal.write(key, None);
    Ok(())
}

fn storage_add(mut caller: Ctx<'_>, slot: u32, key_ptr: u32, key_len: u32, lo: i64, hi: i64) -> HostResult<()> {
    check_writable(&caller, host_fn::storage_add.name)?;
    charge(&mut caller, gas::HOST_CALL + gas::STORAGE_ADD + gas::STORAGE_WRITE_PER_BYTE * u64::from(key_len))?;
    let key = state_key(&caller, slot, key_ptr, key_len)?.into_vec();
    let amount = u128::from(lo as u64) | (u128::from(hi as u64) << 64);
    tx(&mut caller)?.journal.add(key, amount);
    Ok(())
}

fn set_return(mut caller: Ctx<'_>, ptr: u32, len: u32) -> HostResult<()> {
    check_len(len, MAX_RETURN_LEN, |length, limit| HostError::ReturnLengthExceeded { length, limit })?;
    charge(&mut caller, gas::HOST_CALL + gas::COPY_PER_BYTE * u64::from(len))?;
    let bytes = read_bytes(&mut caller, ptr, len)?;
    caller.data_mut().frame.output = bytes;
    Ok(())
}

fn emit(mut caller: Ctx<'_>, name_ptr: u32, name_len: u32, data_ptr: u32, data_len: u32) -> HostResult<()> {
    check_writable(&caller, host_fn::emit.name)?;
    check_len(name_len, MAX_EVENT_NAME_LEN, |length, limit| HostError::EventNameLengthExceeded { length, limit })?;
    check_len(data_len, MAX_EVENT_DATA_LEN, |length, limit| HostError::EventDataLengthExceeded { length, limit })?;
    charge(&mut caller, gas::HOST_CALL + gas::EVENT + gas::EVENT_PER_BYTE * (u64::from(name_len) + u64::from(data_len)))?;
    if tx(&mut caller)?.journal.event_count() >= MAX_EVENTS_PER_TX {
        return Err(Abort::from(HostError::TooManyEvents { limit: MAX_EVENTS_PER_TX }).into());
    }
    let name = utf8(read_bytes(&mut caller, name_ptr, name_len)?, "event name")?;
    let data = read_bytes(&mut caller, data_ptr, data_len)?;
    let contract = caller.data().frame.contract;
    tx(&mut caller)?.journal.emit(Event { contract, name, data });
    Ok(())
}

fn revert(mut caller: Ctx<'_>, msg_ptr: u32, msg_len: u32) -> HostResult<()> {
    let kept = msg_len.min(MAX_REVERT_MSG_LEN as u32);
    charge(&mut caller, gas::HOST_CALL + gas::COPY_PER_BYTE * u64::from(kept))?;
    let bytes = read_bytes(&mut caller, msg_ptr, kept)?;
    // Truncation may split a character; keep the valid prefix.
    let message = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned()
        }
    };
    Err(Abort::Revert(message).into())
}

#[allow(clippy::too_many_arguments)]
fn call(
    mut caller: Ctx<'_>,
    addr_ptr: u32,
    method_ptr: u32,
    method_len: u32,
    args_ptr: u32,
    args_len: u32,
    dst_ptr: u32,
    dst_cap: u32,
) -> HostResult<i64> {
    check_len(method_len, MAX_METHOD_NAME_LEN, |length, limit| HostError::MethodNameLengthExceeded { length, limit })?;
    charge(&mut caller, gas::HOST_CALL + gas::CALL + gas::COPY_PER_BYTE * u64::from(args_len))?;
    let mut address = [0u8; ADDRESS_LEN];
    let mem = memory(&caller)?;
    address.copy_from_slice(span(mem.data(&caller), addr_ptr, ADDRESS_LEN as u32)?);
    // The name on the stack (the invocation borrows it): an allocation
    // per call less.
    let method: SmallVec<[u8; MAX_METHOD_NAME_LEN]> = SmallVec::from_slice(span(mem.data(&caller), method_ptr, method_len)?);
    let method = std::str::from_utf8(&method).map_err(|_| Abort::from(HostError::InvalidUtf8 { what: "method name" }))?;
    let args = read_bytes(&mut caller, args_ptr, args_len)?;

    let fuel = caller.get_fuel()?;
    let (from, read_only) = (caller.data().frame.contract, caller.data().frame.read_only);
    let state = caller.data_mut().tx.take().ok_or_else(|| wasmtime::Error::msg("no transaction context"))?;
    let runtime: Arc<Runtime> = state.runtime.clone();
    let invocation = Invocation { contract: Address(address), caller: from, method, input: args, read_only, fuel };
    let (state, result) = runtime.invoke(state, invocation, None);
    caller.data_mut().tx = Some(state);
    caller.set_fuel(result.fuel_left)?;

    let (status, data) = match result.outcome {
        Ok(output) => (CallStatus::Ok, output),
        Err(CallFailure::OutOfGas) => return Err(Abort::OutOfGas.into()),
        Err(failure) => (failure.status(), failure.to_string().into_bytes()),
    };
    charge(&mut caller, gas::COPY_PER_BYTE * data.len() as u64)?;
    let copied = data.len().min(dst_cap as usize);
    write_bytes(&mut caller, dst_ptr, &data[..copied])?;
    Ok(pack_call_result(status, data.len() as u32))
}

fn gas_left(mut caller: Ctx<'_>) -> HostResult<i64> {
    charge(&mut caller, gas::HOST_CALL)?;
    Ok(caller.get_fuel()? as i64)
}

/// A linker with every host function of `chroma_host_api::host` defined.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    let m = IMPORT_MODULE;
    linker.func_wrap(m, host_fn::input.name, input)?;
    linker.func_wrap(m, host_fn::caller.name, caller_address)?;
    linker.func_wrap(m, host_fn::self_address.name, self_address)?;
    linker.func_wrap(m, host_fn::storage_read.name, storage_read)?;
    linker.func_wrap(m, host_fn::storage_write.name, storage_write)?;
    linker.func_wrap(m, host_fn::storage_remove.name, storage_remove)?;
    linker.func_wrap(m, host_fn::storage_add.name, storage_add)?;
    linker.func_wrap(m, host_fn::set_return.name, set_return)?;
    linker.func_wrap(m, host_fn::emit.name, emit)?;
    linker.func_wrap(m, host_fn::revert.name, revert)?;
    linker.func_wrap(m, host_fn::call.name, call)?;
    linker.func_wrap(m, host_fn::gas_left.name, gas_left)?;
    Ok(linker)
}
