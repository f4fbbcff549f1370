//! The shared wasmtime engine, configured for deterministic, metered execution.
//!
//! - Gas is wasmtime fuel: one unit per Wasm operator (wasmtime's default
//!   operator costs; `memory.copy` / `memory.fill` / `memory.init` one per
//!   byte), plus the host-function costs of `chroma_host_api::gas`, charged by
//!   taking fuel from the store. Fuel depends only on the instructions
//!   executed, so the gas of a transaction is the same on every run, machine
//!   and thread count. wasmtime checks fuel at function entries and loop
//!   back-edges (host functions check exactly), so the last straight-line
//!   stretch of a call may run a few instructions past the limit; the gas
//!   charged never exceeds the limit.
//! - NaNs are canonicalised; threads (not compiled into wasmtime here), SIMD, relaxed SIMD, memory64,
//!   multi-memory, tail calls, exceptions and GC are off (the gatekeeper
//!   refuses modules that use them).
//! - The Wasm stack is bounded ([`MAX_WASM_STACK`]) and memory growth is capped
//!   at `MAX_MEMORY_PAGES` by the store's limiter.
//! - Instances come from the pooling allocator with copy-on-write memory
//!   images. A resettable contract's instances are kept per thread and
//!   reset after each call (`reuse`); the others are instantiated per call.
//! - Contracts run rewritten with write tracking (`instrument`), whose
//!   operators are metered like the contract's own: a store to memory costs
//!   [`STORE_TRACKING_OPS`] more ([`OFFSET_TRACKING_OPS`] more again with an
//!   offset), a bulk memory operation [`BULK_TRACKING_OPS`] more.

use chroma_host_api::limits::{MAX_CALL_DEPTH, MAX_MEMORY_PAGES};
#[cfg(doc)]
use crate::instrument::{BULK_TRACKING_OPS, OFFSET_TRACKING_OPS, STORE_TRACKING_OPS};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits, StoreLimitsBuilder,
};

/// Native stack the Wasm of one call may use.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Linear memory one instance may use, in bytes.
pub const MAX_MEMORY_BYTES: usize = MAX_MEMORY_PAGES as usize * 65_536;

/// Bytes of each pooled linear memory reset by memset instead of madvise.
pub const KEEP_RESIDENT_BYTES: usize = 2 * 65_536;

/// Instances a runtime keeps between calls, over all threads, to reuse them
/// (see `reuse`).
pub const REUSED_INSTANCES_MAX: usize = 128;

/// Instances the pool holds: enough for every thread to be at the deepest call
/// nesting at once, besides the instances kept for reuse, so a full pool
/// (which would be nondeterministic) cannot happen.
pub const POOLED_INSTANCES: u32 = 64 * MAX_CALL_DEPTH + REUSED_INSTANCES_MAX as u32;

/// The engine configuration every node must share: it decides what code does
/// and what it costs.
pub fn engine_config() -> Config {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_core_instances(POOLED_INSTANCES)
        .total_memories(POOLED_INSTANCES)
        .total_tables(POOLED_INSTANCES)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Contracts start with two pages (64 KiB of stack, then statics and
        // heap) and every call touches both: resetting them with memset keeps
        // the pages resident and saves a page fault per page per call.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        // Where Linux has the PAGEMAP_SCAN ioctl (6.7+), reset only the
        // pages a call wrote instead of memset over all of them: the memset
        // was 10% of a serial block of transfers, and blocks of transfers
        // ran 8-20% faster without it. Elsewhere wasmtime falls back to the
        // memset; either way the memory is back to its initial image.
        .pagemap_scan(Enabled::Auto)
        .table_keep_resident(4096);
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .wasm_simd(false)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_tail_call(false)
        .wasm_wide_arithmetic(false)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    config
}

/// The limits of every store: one instance, one memory of at most
/// [`MAX_MEMORY_BYTES`], one table.
pub fn store_limits() -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(MAX_MEMORY_BYTES).instances(1).memories(1).tables(1).build()
}

/// A new engine with [`engine_config`].
pub fn new_engine() -> Result<Engine, wasmtime::Error> {
    Engine::new(&engine_config())
}
