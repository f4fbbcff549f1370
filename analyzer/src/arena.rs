//! Where predictions keep their bytes: chunks of the thread that makes
//! them, each prediction a range of one, written once and shared after.
//!
//! A prediction's bytes were an allocation of their own. With the planner
//! on one core beside execution on the other, copying a template into it
//! was a ninth of the planner's samples in a profile of defi-mix blocks
//! (61 of 559), and the allocator another fourteenth, for three percent
//! of its instructions: the copies wrote to lines that other threads had
//! freed, in no order. A thread writes its predictions one after another
//! into a chunk instead, and writes a chunk again once nothing holds a
//! range of it. Beside execution (`exec_profile`, medians of 15, by turns)
//! planning a defi-mix block took 0.465 instead of 0.545 µs per
//! transaction, and a transfer block 0.26 instead of 0.36.
//!
//! A range held pins its whole chunk: a prediction kept long after its
//! block keeps `CHUNK_BYTES` alive, not its own few hundred bytes.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

/// Bytes of a chunk (a longer prediction takes a chunk of its length).
const CHUNK_BYTES: usize = 64 << 10;

/// Bytes of chunks a thread keeps to write again, at most: a few blocks'
/// predictions (a 10,000-transaction defi-mix block's 54,046 patterns, 12
/// bytes and a key of up to 68 each, are about 4 MB).
const KEPT_BYTES_MAX: usize = 16 << 20;

/// Where a range starts in its chunk: on a word, for its fingerprints.
const RANGE_ALIGN: usize = 8;

/// Bytes owned through a pointer, so that ranges of them can be written by
/// one holder while others read other ranges.
struct Chunk {
    start: NonNull<u8>,
    len: usize,
}

// A chunk's bytes are written only through a `FreshBytes`, whose range no
// other handle covers, and only read through a `SharedBytes`, whose range
// is never written again.
unsafe impl Send for Chunk {}
unsafe impl Sync for Chunk {}

impl Chunk {
    fn new(len: usize) -> Chunk {
        let bytes: &'static mut [u8] = Box::leak(vec![0u8; len].into_boxed_slice());
        Chunk { start: NonNull::from(bytes).cast(), len }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // Leaked from a boxed slice of `len` bytes in `Chunk::new`, and no
        // range of it is held (each holds the chunk).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.start.as_ptr(), self.len)) });
    }
}

/// A range of a chunk that is written no more: a prediction's bytes.
/// Cloning it is a reference count.
#[derive(Clone)]
pub(crate) struct SharedBytes {
    /// Held, not read: the chunk lives as long as a range of it does.
    _chunk: Arc<Chunk>,
    /// Where the range starts (in the chunk). Read through the chunk, its
    /// start was a load more before every read of a prediction: planning a
    /// defi-mix block took 2,627 instructions per transaction, 2,600 this
    /// way, and a transfer block 1,862 against 1,844.
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: it only reads its range of a chunk, which no one writes any
// more, and holds the chunk (an `Arc`) for as long as it lives.
unsafe impl Send for SharedBytes {}
unsafe impl Sync for SharedBytes {}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // In the chunk (checked when the range was taken), and never
        // written again.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &SharedBytes) -> bool {
        **self == **other
    }
}

impl Eq for SharedBytes {}

/// A range of a chunk no one else holds yet, to be written, then shared.
pub(crate) struct FreshBytes {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl FreshBytes {
    /// `len` bytes (zeroes, or what a prediction that held them last left),
    /// from this thread's chunks.
    pub(crate) fn new(len: usize) -> FreshBytes {
        ARENA.with_borrow_mut(|arena| arena.take(len))
    }

    /// Its bytes, shared from now on.
    pub(crate) fn share(self) -> SharedBytes {
        // In the chunk: `start + len` is at most its length.
        let start = unsafe { self.chunk.start.add(self.start) };
        SharedBytes { _chunk: self.chunk, start, len: self.len }
    }
}

impl Deref for FreshBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // In the chunk, and written only through `self`.
        unsafe { std::slice::from_raw_parts(self.chunk.start.as_ptr().add(self.start), self.len) }
    }
}

impl std::ops::DerefMut for FreshBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        // In the chunk, and no other handle covers the range: the arena
        // hands each range out once, and only a chunk no handle holds is
        // taken back.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.start.as_ptr().add(self.start), self.len) }
    }
}

/// A thread's chunks: the one being filled, and the ones filled before,
/// oldest first, to be filled again once no range of them is held.
#[derive(Default)]
struct Arena {
    current: Option<Arc<Chunk>>,
    used: usize,
    filled: VecDeque<Arc<Chunk>>,
    filled_bytes: usize,
}

thread_local! {
    static ARENA: RefCell<Arena> = RefCell::default();
}

impl Arena {
    /// `len` bytes after the last range taken, on a word, or at the start
    /// of the next chunk.
    fn take(&mut self, len: usize) -> FreshBytes {
        let after = self.used.next_multiple_of(RANGE_ALIGN);
        let (chunk, start) = match &self.current {
            Some(chunk) if after + len <= chunk.len => (chunk.clone(), after),
            _ => {
                let chunk = self.next_chunk(len);
                self.current = Some(chunk.clone());
                (chunk, 0)
            }
        };
        self.used = start + len;
        FreshBytes { chunk, start, len }
    }

    /// A chunk of at least `len` bytes no range of which is held: the
    /// oldest filled one if it is free, else a new one.
    fn next_chunk(&mut self, len: usize) -> Arc<Chunk> {
        if let Some(filled) = self.current.take() {
            self.filled_bytes += filled.len;
            self.filled.push_back(filled);
        }
        if self.filled.front_mut().is_some_and(|oldest| oldest.len >= len && Arc::get_mut(oldest).is_some()) {
            if let Some(chunk) = self.filled.pop_front() {
                self.filled_bytes -= chunk.len;
                return chunk;
            }
        }
        while self.filled_bytes > KEPT_BYTES_MAX {
            let Some(dropped) = self.filled.pop_front() else {
                break;
            };
            self.filled_bytes -= dropped.len;
        }
        Arc::new(Chunk::new(len.max(CHUNK_BYTES)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a test writes into its `i`th range.
    fn filled(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|at| (i * 31 + at * 7) as u8).collect()
    }

    fn chunk_of(bytes: &SharedBytes) -> *const Chunk {
        Arc::as_ptr(&bytes._chunk)
    }

    /// Ranges of random lengths (some longer than a chunk), each written
    /// with bytes of its own and shared; a third are held, the rest
    /// dropped as more are taken, through many chunks and reuses: every
    /// range held still has its bytes at the end, so no range was handed
    /// out twice, nor a held chunk written again.
    #[test]
    fn a_range_held_keeps_its_bytes_while_chunks_are_written_again() {
        std::thread::spawn(|| {
            let mut next = crate::test_rng(0x5eed_a7e4a);
            let mut held = Vec::new();
            let mut chunks = std::collections::BTreeSet::new();
            for i in 0..20_000 {
                let len = if i % 4_000 == 3 { CHUNK_BYTES + next(100) as usize } else { next(700) as usize };
                let mut fresh = FreshBytes::new(len);
                assert_eq!(fresh.len(), len);
                fresh.copy_from_slice(&filled(i, len));
                let shared = fresh.share();
                assert_eq!(shared.as_ptr() as usize % RANGE_ALIGN, 0);
                chunks.insert(chunk_of(&shared));
                if i % 3 == 0 {
                    held.push((i, shared));
                }
            }
            for (i, shared) in &held {
                assert_eq!(&shared[..], &filled(*i, shared.len())[..], "range {i}");
            }
            // Many chunks were made and written (a run of one chunk would
            // prove nothing).
            assert!(chunks.len() > 20, "{} chunks", chunks.len());
        })
        .join()
        .expect("the test's thread");
    }

    /// A filled chunk is written again once nothing holds a range of it,
    /// even when its last range was dropped on another thread, and not
    /// while a range of it is held.
    #[test]
    fn a_chunk_is_written_again_once_no_range_of_it_is_held() {
        std::thread::spawn(|| {
            // Fills a chunk and starts the next: the first is then filled.
            let fill = |count: usize| -> Vec<SharedBytes> { (0..count).map(|_| FreshBytes::new(CHUNK_BYTES / 4).share()).collect() };
            let first = fill(4);
            let first_chunk = chunk_of(&first[0]);
            assert!(first.iter().all(|bytes| chunk_of(bytes) == first_chunk));
            let second = fill(4);
            assert_ne!(chunk_of(&second[0]), first_chunk);
            // The first chunk is held (by `first`), so a third is made.
            let third = fill(4);
            assert!(third.iter().all(|bytes| chunk_of(bytes) != first_chunk));
            // Its ranges dropped on another thread, it is taken back.
            std::thread::spawn(move || drop(first)).join().expect("the dropping thread");
            let fourth = fill(1);
            assert_eq!(chunk_of(&fourth[0]), first_chunk);
            drop((second, third));
        })
        .join()
        .expect("the test's thread");
    }
}
