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
/// is one, otherwise on one of a few such threads kept for the whole process
/// (see [`execution_threads`]). A panic in `f` is resumed on the caller.
pub fn on_execution_thread<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, VmError> {
    if EXECUTION_THREAD.with(Cell::get) {
        return Ok(f());
    }
    match execution_threads() {
        // `install` runs `f` on a worker, waits, and resumes its panic here.
        Some(threads) => Ok(threads.install(f)),
        None => on_new_thread(f),
    }
}

/// Most threads kept for [`on_execution_thread`]: callers on more threads at
/// once wait for one.
const MAX_EXECUTION_THREADS: usize = 8;

/// The threads [`on_execution_thread`] moves work onto, one per core (up to
/// [`MAX_EXECUTION_THREADS`]), started on first use and kept. A new thread for
/// each block cost about 0.3 ms of a 1,000-transaction block (its creation,
/// its first Wasm call, and at its end handing back what its allocator held),
/// and 40 µs of every single transaction run outside a block. Not one of the
/// executor's pools: a block running on one of those would wait on itself
/// when its planner asks that pool for work. `None` if they cannot be
/// started: each call then gets a thread of its own.
fn execution_threads() -> Option<&'static rayon::ThreadPool> {
    static THREADS: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    THREADS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            rayon::ThreadPoolBuilder::new()
                .num_threads(cores.clamp(1, MAX_EXECUTION_THREADS))
                .thread_name(|i| format!("chroma-exec-main-{i}"))
                .stack_size(EXECUTION_STACK_BYTES)
                .start_handler(|_| mark_execution_thread())
                .build()
                .ok()
        })
        .as_ref()
}

fn on_new_thread<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, VmError> {
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
        assert!(!EXECUTION_THREAD.with(Cell::get), "the caller's thread is not marked");
    }

    #[test]
    fn panics_come_back_to_the_caller_and_the_threads_stay_usable() {
        let caught = std::panic::catch_unwind(|| on_execution_thread(|| panic!("contract host bug")));
        assert!(caught.is_err(), "the panic reaches the caller");
        let again = on_execution_thread(|| EXECUTION_THREAD.with(Cell::get)).expect("thread");
        assert!(again, "work still runs on a marked thread after a panic");
    }

    #[test]
    fn a_new_thread_is_marked_too() {
        assert!(on_new_thread(|| EXECUTION_THREAD.with(Cell::get)).expect("thread"));
    }
}
