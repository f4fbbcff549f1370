//! The call's context and side effects.

use crate::backend;
use crate::{Address, Encode};
use chroma_host_api::limits::{MAX_EVENT_DATA_LEN, MAX_EVENT_NAME_LEN};

/// Who called this method: the transaction's sender, or the contract that
/// called this one. Cannot be forged.
pub fn caller() -> Address {
    backend::caller()
}

/// This contract's own address.
pub fn self_address() -> Address {
    backend::self_address()
}

/// Emits an event named `name` with encoded `data`, for example
/// `emit("Transfer", &(from, to, amount))`. Events of a call that fails are
/// discarded. Reverts if the name or data exceeds its limit.
pub fn emit<T: Encode + ?Sized>(name: &str, data: &T) {
    let mut bytes = alloc::vec::Vec::new();
    data.encode_to(&mut bytes);
    if name.len() > MAX_EVENT_NAME_LEN {
        revert(&alloc::format!("event name is {} bytes long (limit {MAX_EVENT_NAME_LEN})", name.len()));
    }
    if bytes.len() > MAX_EVENT_DATA_LEN {
        revert(&alloc::format!("event data is {} bytes long (limit {MAX_EVENT_DATA_LEN})", bytes.len()));
    }
    backend::emit(name, &bytes)
}

/// Fails the call with a message: its writes and events are discarded and its
/// caller sees the message.
pub fn revert(message: &str) -> ! {
    backend::revert(message)
}

/// Gas left to the transaction.
pub fn gas_left() -> u64 {
    backend::gas_left()
}
