//! The memory allocator of Chroma's binaries (the `chroma` command, the
//! benches): mimalloc, tuned for executing blocks.
//!
//! - **mimalloc, not glibc's malloc**: glibc's serialises threads that
//!   allocate and free each other's memory (a transaction's writes are made
//!   on one thread and applied on another); with it, parallel blocks ran
//!   slower than serial ones.
//! - **Freed memory stays committed for [`PURGE_DELAY_MS`]** instead of
//!   mimalloc's default second. A node executes block after block, each
//!   freeing what the next one needs again. With the default, mimalloc
//!   handed much of it back to the system in between, and every block
//!   faulted it in again (as transparent huge pages, zeroed 2 MiB at a
//!   time): 15 blocks of 10,000 swaps (`exec_profile parallel swaps`) took
//!   38,570 page faults, and zeroing pages was a third of planning's
//!   samples. With 5 s or more, 1,000 (those of the first blocks), and the
//!   largest resident set grew from 242 to 266 MiB. The same binary with
//!   and without (`MIMALLOC_PURGE_DELAY=1000`), alternating, medians of six
//!   or eight runs: planning a swap block 2.26 → 2.11 µs per transaction;
//!   the whole parallel call 19.7 → 18.7 µs for swaps and 7.14 → 6.95 µs for
//!   transfers; serial 9.11 → 8.66 µs for transfers.

use std::os::raw::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// The allocator: `#[global_allocator] static ALLOCATOR: Allocator = Allocator;`
/// (and call [`tune`] first thing in `main`).
pub use mimalloc::MiMalloc as Allocator;

/// How long memory freed stays committed before mimalloc purges it, in
/// milliseconds.
pub const PURGE_DELAY_MS: c_long = 10_000;

/// mimalloc's environment variable for its purge delay: set, it wins over
/// [`PURGE_DELAY_MS`].
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// `mi_option_purge_delay` in `mimalloc.h`'s `mi_option_t` (the same in
/// mimalloc 2 and 3), which `libmimalloc-sys` does not name.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Sets the allocator's options. Call it first thing in `main`, before any
/// thread starts: mimalloc's options are plain variables.
pub fn tune() {
    if std::env::var_os(PURGE_DELAY_VAR).is_none() {
        // SAFETY: sets one of mimalloc's options (an index it checks), which
        // it reads whenever it considers purging; no other thread runs yet.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// The purge delay in effect, in milliseconds.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: reads one option (an index mimalloc checks).
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOCATOR: Allocator = Allocator;

    /// The option index is the purge delay's: mimalloc's default (one
    /// second) before, ours after.
    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os(PURGE_DELAY_VAR).is_some() {
            eprintln!("{PURGE_DELAY_VAR} is set: nothing to check");
            return;
        }
        let before = purge_delay_ms();
        assert!(before == 1_000 || before == PURGE_DELAY_MS, "the option read is not mimalloc's purge delay: {before}");
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
