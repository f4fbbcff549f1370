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
//! - **mimalloc's plain entry points where its alignment is enough**: the
//!   `mimalloc` crate asks for every block through `mi_malloc_aligned`,
//!   whose fast path takes only blocks of up to 1 KiB. Above that, a block
//!   whose size class is not a power of two was over-allocated by its
//!   alignment less one and aligned by hand
//!   (`mi_theap_malloc_zero_aligned_at_overalloc`), though every mimalloc
//!   block is aligned to 8 bytes anyway. Asked for plainly, filling a swap's
//!   prediction in (over 1 KiB) takes 2,032 instructions instead of 2,142,
//!   and executing blocks of transfers or of lending calls took about 7%
//!   less time (medians of three rounds, by turns; `BENCHMARKS.md`,
//!   session 32).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::os::raw::c_long;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_option_get, mi_option_set, mi_option_t, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// The allocator: `#[global_allocator] static ALLOCATOR: Allocator = Allocator;`
/// (and call [`tune`] first thing in `main`).
pub struct Allocator;

/// The alignment of every block mimalloc hands out: its size classes are
/// multiples of a word, and a page's first block is aligned to 16 bytes
/// (`MI_PAGE_MIN_START_BLOCK_ALIGN`).
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// A block of `layout` from `plain(size)` when a word's alignment is
/// enough, else from `aligned(size, alignment)`.
#[inline(always)]
unsafe fn block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: the caller passes mimalloc's functions, which take any size.
    unsafe {
        if layout.align() <= BLOCK_ALIGN {
            plain(layout.size()) as *mut u8
        } else {
            aligned(layout.size(), layout.align()) as *mut u8
        }
    }
}

// SAFETY: every block comes from mimalloc, aligned as asked (by its
// alignment, or through the aligned entry points), and goes back to it;
// `mi_free` frees blocks of either kind.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions take any size (null when out of memory).
        unsafe { block(layout, mi_malloc, mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { block(layout, mi_zalloc, mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (the caller's contract).
        unsafe { mi_free(ptr as *mut c_void) }
    }

    /// `mi_realloc_aligned` takes mimalloc's plain path itself for an
    /// alignment of a word or less.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator with `layout` (the
        // caller's contract); the block keeps that alignment.
        unsafe { mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
    }
}

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

    /// Blocks of every size class and alignment come back aligned as asked
    /// (those aligned to a word through mimalloc's plain entry points), keep
    /// their bytes when they grow or shrink, and zeroed ones are zeroed.
    #[test]
    fn blocks_are_aligned_as_asked_and_keep_their_bytes() {
        let sizes = (1..=64).chain((65..=5000).step_by(37)).chain([8191, 65_536, 1 << 20, 3 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).expect("a layout");
                // SAFETY: a layout of non-zero size; each block is freed with it.
                unsafe {
                    let block = Allocator.alloc(layout);
                    assert!(!block.is_null() && block as usize % align == 0, "{size} bytes aligned to {align}");
                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null() && zeroed as usize % align == 0, "{size} zeroed bytes aligned to {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0), "{size} bytes zeroed");
                    Allocator.dealloc(zeroed, layout);
                    for i in 0..size {
                        *block.add(i) = i as u8;
                    }
                    // Grown, then shrunk below its first size.
                    let grown_size = size * 3 + 5;
                    let grown = Allocator.realloc(block, layout, grown_size);
                    assert!(!grown.is_null() && grown as usize % align == 0, "{size} → {grown_size} bytes aligned to {align}");
                    assert!((0..size).all(|i| *grown.add(i) == i as u8), "{size} → {grown_size} bytes kept");
                    let shrunk_size = size / 2 + 1;
                    let shrunk = Allocator.realloc(grown, Layout::from_size_align(grown_size, align).expect("a layout"), shrunk_size);
                    assert!(!shrunk.is_null() && shrunk as usize % align == 0, "{grown_size} → {shrunk_size} bytes aligned to {align}");
                    assert!((0..shrunk_size).all(|i| *shrunk.add(i) == i as u8), "{grown_size} → {shrunk_size} bytes kept");
                    Allocator.dealloc(shrunk, Layout::from_size_align(shrunk_size, align).expect("a layout"));
                }
            }
        }
    }

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
