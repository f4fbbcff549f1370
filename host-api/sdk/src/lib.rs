//! # chroma-sdk
//!
//! Write a Chroma contract as a plain Rust module with no `unsafe`:
//!
//! ```ignore
//! #![no_std]
//! use chroma_sdk::prelude::*;
//!
//! #[contract]
//! pub mod counter {
//!     use super::*;
//!     const COUNT: Item<u128> = Item::new(0);
//!
//!     #[entry]
//!     pub fn increment() -> u128 {
//!         let next = COUNT.get_or_default() + 1;
//!         COUNT.set(&next);
//!         next
//!     }
//!
//!     #[entry(view)]
//!     pub fn get() -> u128 { COUNT.get_or_default() }
//! }
//! ```
//!
//! - `#[contract]` on a module exports every `#[entry]` function under its own
//!   name, decodes the typed arguments from the call input, encodes the return
//!   value, and embeds the ABI (names, argument and return types, kinds) in the
//!   Wasm custom section `chroma_abi`. `#[entry(init)]` marks the constructor,
//!   `#[entry(view)]` a read-only method.
//! - State is declared as [`Item`] / [`Map`] constants with a slot id each.
//! - [`caller`], [`self_address`], [`emit`], [`require!`], [`revert`],
//!   [`Contract::at`] for calls into other contracts.
//! - Natively (not `wasm32`) the same code runs against [`testing::MockChain`],
//!   so contract logic is tested with plain `cargo test`.
//!
//! Keys stay analyzable: they are a constant slot plus bytes encoded from
//! arguments, the caller, constants or stored values, never hashed in the
//! guest (see ARCHITECTURE.md, "Rules that keep keys analyzable").

#![no_std]

extern crate alloc;
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

mod call;
mod env;
pub mod math;
mod storage;

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
use wasm as backend;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
use testing::backend;

pub use call::{CallError, Contract};
pub use chroma_host_api as host_api;
pub use chroma_host_api::abi;
pub use chroma_host_api::{Address, CallStatus, Decode, Encode};
pub use chroma_sdk_macros::contract;
pub use env::{caller, emit, gas_left, revert, self_address};
pub use storage::{Item, Map};

/// What `#[contract]` generates for a contract module, as `<module>::CONTRACT`:
/// its name, its ABI, and (natively) the dispatcher the mock host calls.
#[derive(Clone, Copy)]
pub struct ContractDef {
    pub name: &'static str,
    pub methods: &'static [abi::MethodDesc],
    /// Runs `method` in the current call context; `false` if there is no such entry point.
    pub dispatch: fn(&str) -> bool,
}

impl ContractDef {
    pub fn abi(&self) -> abi::Abi {
        abi::Abi::from_descs(self.methods)
    }
}

/// Everything a contract usually needs.
pub mod prelude {
    pub use crate::{
        caller, contract, emit, gas_left, require, revert, self_address, Address, Contract, Decode, Encode,
        Item, Map,
    };
    pub use alloc::{boxed::Box, format, string::String, string::ToString, vec, vec::Vec};
}

/// Reverts the call with a message unless the condition holds.
///
/// `require!(amount > 0, "amount must be positive")`, or with format
/// arguments: `require!(x <= max, "{} exceeds {}", x, max)`.
#[macro_export]
macro_rules! require {
    ($cond:expr, $msg:literal $(,)?) => {
        if !$cond {
            $crate::revert($msg)
        }
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $crate::revert(&$crate::__private::format!($($fmt)+))
        }
    };
}

/// Used by the code `#[contract]` generates; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use alloc::format;
    pub use chroma_host_api::abi::{encode_section, section_len, AbiType, ArgDesc, MethodDesc, MethodKind, ABI_SECTION};

    use crate::{backend, revert, Decode, Encode};

    /// Runs an entry point: decodes the input as `Args`, calls `body`, sets the
    /// encoded result as the return value.
    pub fn run<Args: Decode, Ret: Encode>(body: impl FnOnce(Args) -> Ret) {
        backend::begin_call();
        let args = backend::with_input(|input| Args::decode(input));
        match args {
            Ok(args) => {
                let ret = body(args);
                let mut bytes = alloc::vec::Vec::new();
                ret.encode_to(&mut bytes);
                if !bytes.is_empty() {
                    backend::set_return(&bytes);
                }
            }
            Err(e) => revert(&alloc::format!("bad input: {e}")),
        }
    }
}
