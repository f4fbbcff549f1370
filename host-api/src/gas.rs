//! The gas schedule: what every unit of work costs. The VM charges exactly
//! these amounts, so the gas of a transaction depends only on what it does,
//! never on timing, thread count or cache state.
//!
//! Wasm instructions are metered by the VM (one unit per instruction,
//! including those of the write tracking it adds before each store to memory,
//! see the VM's `engine` and `instrument` docs); host functions charge [`HOST_CALL`] plus the function's own
//! cost below, before doing the work, so a call that runs out of gas has had
//! no effect.

/// Every host function call, on top of its own cost.
pub const HOST_CALL: u64 = 50;
/// Per byte copied between the host and guest memory (input, caller, return data).
pub const COPY_PER_BYTE: u64 = 1;
/// `storage_read`: fixed part.
pub const STORAGE_READ: u64 = 200;
/// `storage_read`: per byte of key plus value.
pub const STORAGE_READ_PER_BYTE: u64 = 2;
/// `storage_write`: fixed part.
pub const STORAGE_WRITE: u64 = 500;
/// `storage_write`: per byte of key plus value.
pub const STORAGE_WRITE_PER_BYTE: u64 = 10;
/// `storage_remove`: fixed part (plus [`STORAGE_WRITE_PER_BYTE`] per key byte).
pub const STORAGE_REMOVE: u64 = 300;
/// `storage_add`: fixed part (plus [`STORAGE_WRITE_PER_BYTE`] per key byte).
pub const STORAGE_ADD: u64 = 300;
/// Deploying a module: per byte of code (validation and compilation).
pub const DEPLOY_PER_BYTE: u64 = 20;
/// `emit`: fixed part.
pub const EVENT: u64 = 200;
/// `emit`: per byte of name plus data.
pub const EVENT_PER_BYTE: u64 = 5;
/// `call`: fixed part, covering the callee's instantiation.
pub const CALL: u64 = 2_000;
/// Every transaction, before its first instruction.
pub const TRANSACTION: u64 = 1_000;
/// The largest gas limit a transaction may carry: gas bounds every
/// contract's running time only if the limit itself is bounded (an infinite
/// loop with a `u64::MAX` limit would run for years). About a second of Wasm
/// on one core; a transaction asking for more is refused without executing.
pub const MAX_TX_GAS: u64 = 1_000_000_000;
