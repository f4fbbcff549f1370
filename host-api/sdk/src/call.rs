//! Synchronous calls into other contracts.

use core::fmt;

use alloc::string::String;
use alloc::vec::Vec;

use crate::{backend, revert, Address, CallStatus, Decode, Encode};
use chroma_host_api::DecodeError;

/// A handle on another contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    address: Address,
}

/// Why a call into another contract failed.
///
/// Nothing is formatted until the error is displayed: a contract that
/// handles the failure pays no formatting gas, and the analyzer does not
/// have to follow formatting code on paths that go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub status: CallStatus,
    /// The callee's revert message as it sent it (empty for other failures).
    pub data: Vec<u8>,
    /// Set when the callee returned but its value did not decode as expected.
    pub bad_return: Option<DecodeError>,
}

impl CallError {
    /// The callee's revert message (invalid UTF-8 replaced).
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.bad_return, self.data.is_empty()) {
            (Some(e), _) => write!(f, "cannot decode the return value: {e}"),
            (None, true) => write!(f, "{}", self.status),
            (None, false) => write!(f, "{}: {}", self.status, String::from_utf8_lossy(&self.data)),
        }
    }
}

#[cold]
fn call_failed(method: &str, e: &CallError) -> ! {
    revert(&alloc::format!("call to {method} failed: {e}"))
}

impl Contract {
    pub const fn at(address: Address) -> Contract {
        Contract { address }
    }

    pub const fn address(&self) -> Address {
        self.address
    }

    /// Calls `method` with `args` (a tuple of the arguments, `()` for none) and
    /// decodes its result as `R`. If the callee fails, this call reverts too,
    /// with the callee's message.
    ///
    /// The failure reverts right where it is seen, without building a
    /// [`CallError`] first: nothing of unknown size is copied on a path that
    /// goes on, which keeps the analyzer's view of memory intact.
    pub fn call<R: Decode>(&self, method: &str, args: impl Encode) -> R {
        let mut encoded = alloc::vec::Vec::new();
        args.encode_to(&mut encoded);
        backend::call(&self.address, method, &encoded, |status, data| match status {
            CallStatus::Ok => match R::decode(data) {
                Ok(value) => value,
                Err(e) => call_failed(method, &CallError { status: CallStatus::BadInput, data: Vec::new(), bad_return: Some(e) }),
            },
            _ => call_failed(method, &CallError { status, data: data.to_vec(), bad_return: None }),
        })
    }

    /// Like [`Contract::call`], but returns the failure instead of reverting.
    /// The failed callee's writes and events are discarded either way.
    pub fn try_call<R: Decode>(&self, method: &str, args: impl Encode) -> Result<R, CallError> {
        let mut encoded = alloc::vec::Vec::new();
        args.encode_to(&mut encoded);
        backend::call(&self.address, method, &encoded, |status, data| match status {
            CallStatus::Ok => {
                R::decode(data).map_err(|e| CallError { status: CallStatus::BadInput, data: Vec::new(), bad_return: Some(e) })
            }
            _ => Err(CallError { status, data: data.to_vec(), bad_return: None }),
        })
    }
}
