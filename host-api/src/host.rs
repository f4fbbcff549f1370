//! The host functions a contract imports, their status codes and the errors
//! with which they trap.
//!
//! The list is written once, in [`for_each_host_function!`]; this module turns
//! it into the table the VM links and validates against ([`HOST_FUNCTIONS`],
//! [`host_fn`]) and, on `wasm32`, into the guest's `extern` imports ([`sys`]).
//!
//! Conventions: pointers and lengths are `u32` offsets into the calling
//! contract's linear memory (Wasm `i32`). A range outside memory traps with
//! [`HostError::MemoryOutOfBounds`]. Every call first charges
//! [`gas::HOST_CALL`](crate::gas::HOST_CALL) plus its own cost; running out
//! of gas aborts the whole transaction.

use core::fmt;

/// A Wasm value type in a host function signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
}

/// A host function's import name and Wasm signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFn {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
}

/// Calls `$callback! { module = "..."; fn name(params) -> result; ... }` with the
/// complete list of host functions and their documentation. The only place the
/// host ABI's names and signatures are written.
#[macro_export]
macro_rules! for_each_host_function {
    ($callback:ident) => {
        $callback! {
            module = "chroma";

            /// Copies the call input (the encoded arguments) to `dst_ptr` and
            /// returns its length, at most [`MAX_INPUT_LEN`](crate::limits::MAX_INPUT_LEN).
            ///
            /// Errors: `MemoryOutOfBounds`.
            /// Cost: `COPY_PER_BYTE` per input byte.
            fn input(dst_ptr: u32) -> u32;

            /// Writes the 32-byte address of the caller to `dst_ptr`: the
            /// transaction's sender for a top-level call, the calling contract
            /// for a nested one. It cannot be forged.
            ///
            /// Errors: `MemoryOutOfBounds`.
            /// Cost: `COPY_PER_BYTE` × 32.
            fn caller(dst_ptr: u32);

            /// Writes the 32-byte address of the running contract to `dst_ptr`.
            ///
            /// Errors: `MemoryOutOfBounds`.
            /// Cost: `COPY_PER_BYTE` × 32.
            fn self_address(dst_ptr: u32);

            /// Reads the value at (`slot`, key) of the running contract. Returns
            /// [`STORAGE_ABSENT`] if there is none, otherwise the value's full
            /// length; copies `min(length, dst_cap)` bytes to `dst_ptr`.
            ///
            /// Errors: `KeyLengthExceeded { length, limit: MAX_KEY_LEN }`, `ReservedSlot`, `MemoryOutOfBounds`.
            /// Cost: `STORAGE_READ` + `STORAGE_READ_PER_BYTE` × (key + value bytes).
            fn storage_read(slot: u32, key_ptr: u32, key_len: u32, dst_ptr: u32, dst_cap: u32) -> i32;

            /// Sets the value at (`slot`, key) of the running contract.
            ///
            /// Errors: `KeyLengthExceeded`, `ReservedSlot`, `ValueLengthExceeded { length, limit: MAX_VALUE_LEN }`,
            /// `WriteInView`, `MemoryOutOfBounds`.
            /// Cost: `STORAGE_WRITE` + `STORAGE_WRITE_PER_BYTE` × (key + value bytes).
            fn storage_write(slot: u32, key_ptr: u32, key_len: u32, val_ptr: u32, val_len: u32);

            /// Removes the value at (`slot`, key) of the running contract, if any.
            ///
            /// Errors: `KeyLengthExceeded`, `ReservedSlot`, `WriteInView`, `MemoryOutOfBounds`.
            /// Cost: `STORAGE_REMOVE` + `STORAGE_WRITE_PER_BYTE` × key bytes.
            fn storage_remove(slot: u32, key_ptr: u32, key_len: u32);

            /// Commutative add: adds the `u128` `amount_lo + amount_hi << 64` to the
            /// integer stored at (`slot`, key), saturating at `u128::MAX`. The value
            /// is read as a codec `u128` (16 bytes little-endian); an absent value
            /// or one of another length counts as 0. Returns nothing, so two adds
            /// to one key commute and need not be ordered: the parallel executor
            /// treats adds as conflicting only with reads and writes of the key.
            ///
            /// Errors: `KeyLengthExceeded`, `ReservedSlot`, `WriteInView`, `MemoryOutOfBounds`.
            /// Cost: `STORAGE_ADD` + `STORAGE_WRITE_PER_BYTE` × key bytes.
            fn storage_add(slot: u32, key_ptr: u32, key_len: u32, amount_lo: i64, amount_hi: i64);

            /// Sets the call's return value (replacing any earlier one).
            ///
            /// Errors: `ReturnLengthExceeded { length, limit: MAX_RETURN_LEN }`, `MemoryOutOfBounds`.
            /// Cost: `COPY_PER_BYTE` per byte.
            fn set_return(ptr: u32, len: u32);

            /// Emits an event: a UTF-8 name and encoded data. Events of a failed
            /// call are discarded with its writes.
            ///
            /// Errors: `EventNameLengthExceeded`, `EventDataLengthExceeded`,
            /// `TooManyEvents { limit: MAX_EVENTS_PER_TX }`, `InvalidUtf8`, `WriteInView`,
            /// `MemoryOutOfBounds`.
            /// Cost: `EVENT` + `EVENT_PER_BYTE` × (name + data bytes).
            fn emit(name_ptr: u32, name_len: u32, data_ptr: u32, data_len: u32);

            /// Fails the current call with a UTF-8 message (truncated to
            /// `MAX_REVERT_MSG_LEN`). Never returns: the call's writes and events
            /// are discarded and its caller sees [`CallStatus::Reverted`] (or, at
            /// the top level, the transaction fails with the message).
            ///
            /// Errors: `MemoryOutOfBounds`.
            /// Cost: `COPY_PER_BYTE` per message byte.
            fn revert(msg_ptr: u32, msg_len: u32);

            /// Calls `method` of the contract whose 32-byte address is at `addr_ptr`
            /// with encoded `args`, synchronously, in the same transaction. The
            /// callee sees this contract as its caller and shares the remaining
            /// gas. Returns [`pack_call_result`]`(status, length)`: on
            /// [`CallStatus::Ok`] the callee's return value, on `Reverted` its
            /// message, is the `length` bytes of which `min(length, dst_cap)` were
            /// copied to `dst_ptr`. A failed callee's writes and events are
            /// discarded; the caller may go on. A view's callees are read-only too.
            ///
            /// Errors (trap the caller): `MemoryOutOfBounds`, `InvalidUtf8`, out of gas.
            /// Cost: `CALL` + `COPY_PER_BYTE` × (args + return bytes), plus the callee's gas.
            fn call(addr_ptr: u32, method_ptr: u32, method_len: u32, args_ptr: u32, args_len: u32, dst_ptr: u32, dst_cap: u32) -> i64;

            /// The gas left to the transaction.
            ///
            /// Errors: none. Cost: only `HOST_CALL`.
            fn gas_left() -> i64;
        }
    };
}

macro_rules! val_type {
    (u32) => {
        ValType::I32
    };
    (i32) => {
        ValType::I32
    };
    (i64) => {
        ValType::I64
    };
    (u64) => {
        ValType::I64
    };
}

macro_rules! define_host_functions {
    (
        module = $module:literal;
        $( $(#[doc = $doc:literal])* fn $name:ident($($param:ident : $pty:ident),*) $(-> $ret:ident)?; )*
    ) => {
        /// The Wasm import module every host function lives in.
        pub const IMPORT_MODULE: &str = $module;

        /// One descriptor per host function, named as the import.
        #[allow(non_upper_case_globals)]
        pub mod host_fn {
            use super::{HostFn, ValType};
            $(
                $(#[doc = $doc])*
                pub const $name: HostFn = HostFn {
                    name: stringify!($name),
                    params: &[$(val_type!($pty)),*],
                    results: &[$(val_type!($ret))?],
                };
            )*
        }

        /// Every host function, in declaration order.
        pub const HOST_FUNCTIONS: &[HostFn] = &[$(host_fn::$name),*];

        /// The raw imports, for the guest SDK. Not for contract authors: use `chroma-sdk`.
        #[cfg(target_arch = "wasm32")]
        pub mod sys {
            #[link(wasm_import_module = $module)]
            extern "C" {
                $( $(#[doc = $doc])* pub fn $name($($param: $pty),*) $(-> $ret)?; )*
            }
        }
    };
}

for_each_host_function!(define_host_functions);

/// `storage_read`'s result when the key has no value.
pub const STORAGE_ABSENT: i32 = -1;

/// The outcome of a nested `call`, as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum CallStatus {
    /// The callee returned; the data is its return value.
    Ok = 0,
    /// The callee reverted; the data is its message.
    Reverted = 1,
    /// The callee trapped (a host error, a memory or stack limit, `unreachable`).
    Trapped = 2,
    /// No contract at the address.
    NoSuchContract = 3,
    /// The contract has no such method, or it is its init.
    NoSuchMethod = 4,
    /// The arguments do not decode as the method's ABI says.
    BadInput = 5,
    /// The call would exceed [`MAX_CALL_DEPTH`](crate::limits::MAX_CALL_DEPTH).
    DepthExceeded = 6,
}

impl CallStatus {
    pub const fn from_code(code: u32) -> Option<CallStatus> {
        Some(match code {
            0 => CallStatus::Ok,
            1 => CallStatus::Reverted,
            2 => CallStatus::Trapped,
            3 => CallStatus::NoSuchContract,
            4 => CallStatus::NoSuchMethod,
            5 => CallStatus::BadInput,
            6 => CallStatus::DepthExceeded,
            _ => return None,
        })
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::Reverted => "reverted",
            CallStatus::Trapped => "trapped",
            CallStatus::NoSuchContract => "no such contract",
            CallStatus::NoSuchMethod => "no such method",
            CallStatus::BadInput => "bad input",
            CallStatus::DepthExceeded => "call depth exceeded",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Packs `call`'s result: status in the high 32 bits, data length in the low.
pub const fn pack_call_result(status: CallStatus, len: u32) -> i64 {
    (((status as u32 as u64) << 32) | len as u64) as i64
}

/// Unpacks `call`'s result; `None` for a status code the host never returns.
pub const fn unpack_call_result(packed: i64) -> Option<(CallStatus, u32)> {
    let bits = packed as u64;
    match CallStatus::from_code((bits >> 32) as u32) {
        Some(status) => Some((status, bits as u32)),
        None => None,
    }
}

/// Why a host function trapped. The VM reports these in receipts; each carries
/// the length and limit involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    MemoryOutOfBounds { ptr: u32, len: u32, memory_size: u64 },
    KeyLengthExceeded { length: usize, limit: usize },
    ValueLengthExceeded { length: usize, limit: usize },
    ReturnLengthExceeded { length: usize, limit: usize },
    EventNameLengthExceeded { length: usize, limit: usize },
    EventDataLengthExceeded { length: usize, limit: usize },
    TooManyEvents { limit: usize },
    MethodNameLengthExceeded { length: usize, limit: usize },
    InvalidUtf8 { what: &'static str },
    /// A write, add, remove or event in a view (or in a call made from one).
    WriteInView { function: &'static str },
    /// A storage access to [`SYSTEM_SLOT`](crate::key::SYSTEM_SLOT).
    ReservedSlot { slot: u32 },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::MemoryOutOfBounds { ptr, len, memory_size } => {
                write!(f, "memory access out of bounds: {len} byte(s) at {ptr} in a memory of {memory_size} byte(s)")
            }
            HostError::KeyLengthExceeded { length, limit } => {
                write!(f, "storage key is {length} bytes long (limit {limit})")
            }
            HostError::ValueLengthExceeded { length, limit } => {
                write!(f, "storage value is {length} bytes long (limit {limit})")
            }
            HostError::ReturnLengthExceeded { length, limit } => {
                write!(f, "return value is {length} bytes long (limit {limit})")
            }
            HostError::EventNameLengthExceeded { length, limit } => {
                write!(f, "event name is {length} bytes long (limit {limit})")
            }
            HostError::EventDataLengthExceeded { length, limit } => {
                write!(f, "event data is {length} bytes long (limit {limit})")
            }
            HostError::TooManyEvents { limit } => write!(f, "more than {limit} events in one transaction"),
            HostError::MethodNameLengthExceeded { length, limit } => {
                write!(f, "method name is {length} bytes long (limit {limit})")
            }
            HostError::InvalidUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            HostError::WriteInView { function } => write!(f, "`{function}` is not allowed in a view call"),
            HostError::ReservedSlot { slot } => write!(f, "storage slot {slot} is reserved for the VM"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_list() {
        assert_eq!(IMPORT_MODULE, "chroma");
        let names: alloc::vec::Vec<&str> = HOST_FUNCTIONS.iter().map(|f| f.name).collect();
        for needed in [
            "input", "caller", "self_address", "storage_read", "storage_write", "storage_remove",
            "storage_add", "set_return", "emit", "revert", "call", "gas_left",
        ] {
            assert!(names.contains(&needed), "missing host function {needed}");
        }
        assert_eq!(host_fn::storage_read.params, &[ValType::I32; 5]);
        assert_eq!(host_fn::storage_read.results, &[ValType::I32]);
        assert_eq!(host_fn::storage_add.params, &[ValType::I32, ValType::I32, ValType::I32, ValType::I64, ValType::I64]);
        assert_eq!(host_fn::call.results, &[ValType::I64]);
        assert!(host_fn::revert.results.is_empty());
    }

    #[test]
    fn call_result_packing() {
        for status in [CallStatus::Ok, CallStatus::Reverted, CallStatus::DepthExceeded] {
            for len in [0u32, 1, 16384, u32::MAX] {
                assert_eq!(unpack_call_result(pack_call_result(status, len)), Some((status, len)));
            }
        }
        assert_eq!(unpack_call_result(99i64 << 32), None);
    }
}
