//! Synchronous calls into other contracts.

use core::fmt;

use alloc::string::String;

use crate::{backend, revert, Address, CallStatus, Decode, Encode};

/// A handle on another contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contract {
    address: Address,
}

/// Why a call into another contract failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub status: CallStatus,
    /// The callee's revert message, or a description of the failure.
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
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
    pub fn call<R: Decode>(&self, method: &str, args: impl Encode) -> R {
        match self.try_call(method, args) {
            Ok(value) => value,
            Err(e) => revert(&alloc::format!("call to {method} failed: {e}")),
        }
    }

    /// Like [`Contract::call`], but returns the failure instead of reverting.
    /// The failed callee's writes and events are discarded either way.
    pub fn try_call<R: Decode>(&self, method: &str, args: impl Encode) -> Result<R, CallError> {
        let mut encoded = alloc::vec::Vec::new();
        args.encode_to(&mut encoded);
        backend::call(&self.address, method, &encoded, |status, data| match status {
            CallStatus::Ok => R::decode(data).map_err(|e| CallError {
                status: CallStatus::BadInput,
                message: alloc::format!("cannot decode the return value of {method}: {e}"),
            }),
            _ => Err(CallError { status, message: String::from_utf8_lossy(data).into_owned() }),
        })
    }
}
