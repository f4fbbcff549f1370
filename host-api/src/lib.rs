//! # chroma-host-api
//!
//! The one definition of the interface between Chroma's VM (the host) and
//! contracts (guests): host function names and signatures ([`host`]), the
//! storage key layout ([`key`]), size limits ([`limits`]), the gas schedule
//! ([`gas`]), the encoding of arguments, return values and stored values
//! ([`codec`]) and the ABI description contracts embed ([`abi`]).
//!
//! The VM and the guest SDK both build on these definitions; nothing here is
//! restated elsewhere. The crate is `no_std` + `alloc` so guests can use it.

#![no_std]

extern crate alloc;

pub mod abi;
pub mod address;
pub mod codec;
pub mod gas;
pub mod host;
pub mod key;
pub mod limits;
pub mod value;

pub use abi::{Abi, AbiType, InputShape, Method, MethodKind, Type};
pub use address::{Address, ADDRESS_LEN};
pub use codec::{Decode, DecodeError, Encode};
pub use host::{CallStatus, HostError, HostFn, ValType, HOST_FUNCTIONS, IMPORT_MODULE};
pub use key::Slot;
pub use value::{Value, ValueError};

impl core::error::Error for codec::DecodeError {}
impl core::error::Error for abi::AbiError {}
impl core::error::Error for host::HostError {}
impl core::error::Error for value::ValueError {}
