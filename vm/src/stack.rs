//! The native stack contracts run on.
//!
//! wasmtime bounds the stack of each entry into Wasm by
//! [`MAX_WASM_STACK`], counted from where that entry starts. A nested call is
//! a new entry (a new store), so a transaction that recurses to just under
//! the bound and then calls a contract, [`MAX_CALL_DEPTH`] times, uses
//! `MAX_CALL_DEPTH × MAX_WASM_STACK` of native stack plus the host's own
//! frames between the levels. On a thread with less (a test thread has 2 MiB)
//! that overflowed the native stack and aborted the whole process (the
//! hostile contract's `stack_reenter` did it). So contracts only ever run on
//! threads with [`EXECUTION_STACK_BYTES`]: the executor's pools are built
//! with it, and every other entry ([`Vm::execute`](crate::Vm::execute),
//! queries, serial blocks) moves onto such a thread first. The bound is the
//! same on every thread, so where a call runs never changes its outcome.

use std::cell::Cell;

use chroma_host_api::limits::MAX_CALL_DEPTH;

use crate::engine::MAX_WASM_STACK;
use crate::runtime::VmError;

/// Native stack the host uses around each level of nested call (the host
/// function, instantiation, wasmtime's entry and exit): a generous bound,
/// checked by the hostile contract's tests at every nesting depth.
pub const HOST_STACK_PER_CALL: usize = 256 * 1024;

/// Native stack below the first call (the executor's own frames).
pub const BASE_STACK: usize = 1024 * 1024;

/// The stack of every thread that runs contracts: enough for the deepest
/// nesting with each level at the Wasm stack bound.
pub const EXECUTION_STACK_BYTES: usize = BASE_STACK + MAX_CALL_DEPTH as usize * (MAX_WASM_STACK + HOST_STACK_PER_CALL);

thread_local! {
    static EXECUTION_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one with [`EXECUTION_STACK_BYTES`] of stack
/// (for a thread that was created with it).
pub(crate) fn mark_execution_thread() {
    EXECUTION_THREAD.with(|flag| flag.set(true));
}

/// Runs `f` on a thread with [`EXECUTION_STACK_BYTES`] of stack: here if this
/// is one, otherwise on a new thread (tens of microseconds: callers that run
/// many transactions, such as blocks, move once for all of them). A panic in
/// `f` is resumed on the caller.
pub fn on_execution_thread<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, VmError> {
    if EXECUTION_THREAD.with(Cell::get) {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("chroma-exec".into())
            .stack_size(EXECUTION_STACK_BYTES)
            .spawn_scoped(scope, || {
                mark_execution_thread();
                f()
            })
            .map_err(|e| VmError::Engine(format!("cannot start an execution thread: {e}")))?;
        match handle.join() {
            Ok(result) => Ok(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_moves_to_a_marked_thread_once() {
        assert!(!EXECUTION_THREAD.with(Cell::get));
        let (marked, nested_same_thread) = on_execution_thread(|| {
            let outer = std::thread::current().id();
            let inner = on_execution_thread(|| std::thread::current().id()).expect("nested");
            (EXECUTION_THREAD.with(Cell::get), inner == outer)
        })
        .expect("thread");
        assert!(marked);
        assert!(nested_same_thread, "already on an execution thread: no second move");
    }
}
