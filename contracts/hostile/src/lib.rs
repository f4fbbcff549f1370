//! A hostile contract, for the VM's reliability tests (not an example: it is
//! not embedded in the CLI). Each entry point attacks one limit of the host,
//! or hides its keys from the analyzer, and the tests in
//! `vm/tests/it/hostile.rs` check that the VM stops it with a typed failure,
//! that the block goes on, and that parallel execution still equals serial.
//!
//! Entry points that break the SDK's own checks go through the raw host
//! imports (`raw`), as a contract written without the SDK would.

#![no_std]

use chroma_sdk::prelude::*;

/// The raw host imports, where the SDK would refuse first.
#[cfg(target_arch = "wasm32")]
mod raw {
    use chroma_sdk::host_api::host::sys;

    fn ptr(bytes: &[u8]) -> u32 {
        bytes.as_ptr() as usize as u32
    }

    pub fn storage_write(slot: u32, key: &[u8], value: &[u8]) {
        // SAFETY: the pointers and lengths describe live slices.
        unsafe { sys::storage_write(slot, ptr(key), key.len() as u32, ptr(value), value.len() as u32) }
    }

    pub fn set_return(bytes: &[u8]) {
        // SAFETY: as above.
        unsafe { sys::set_return(ptr(bytes), bytes.len() as u32) }
    }

    pub fn emit(name: &[u8], data: &[u8]) {
        // SAFETY: as above.
        unsafe { sys::emit(ptr(name), name.len() as u32, ptr(data), data.len() as u32) }
    }

    /// Grows linear memory one page at a time until the host refuses;
    /// returns the pages it ended with.
    pub fn grow_until_refused() -> usize {
        while core::arch::wasm32::memory_grow(0, 1) != usize::MAX {}
        core::arch::wasm32::memory_size(0)
    }
}

/// Natively (the mock host) the raw imports do not exist.
#[cfg(not(target_arch = "wasm32"))]
mod raw {
    use chroma_sdk::revert;

    pub fn storage_write(_slot: u32, _key: &[u8], _value: &[u8]) {
        revert("raw host calls exist only on wasm32")
    }
    pub fn set_return(_bytes: &[u8]) {
        revert("raw host calls exist only on wasm32")
    }
    pub fn emit(_name: &[u8], _data: &[u8]) {
        revert("raw host calls exist only on wasm32")
    }
    pub fn grow_until_refused() -> usize {
        revert("raw host calls exist only on wasm32")
    }
}

/// Recursion in Wasm locals only (no shadow-stack memory), so it uses the
/// native stack: the work after the call is not associative, so the
/// optimiser cannot turn it into a loop.
#[inline(never)]
fn descend(frames: u32, x: u64) -> u64 {
    if frames == 0 {
        return x;
    }
    let below = descend(frames - 1, x.rotate_left(5) ^ frames as u64);
    below.rotate_right(3) ^ (frames as u64).wrapping_mul(7)
}

/// Recursion `left` deep, then a nested call into this contract at the
/// bottom, `levels` times: each nested call starts a fresh Wasm stack on the
/// same native thread.
#[inline(never)]
fn descend_then_reenter(frames: u32, left: u32, levels: u32, x: u64) -> u64 {
    if left == 0 {
        if levels == 0 {
            return x;
        }
        return reenter(frames, levels - 1);
    }
    let below = descend_then_reenter(frames, left - 1, levels, x.rotate_left(5) ^ left as u64);
    below.rotate_right(3) ^ (left as u64).wrapping_mul(7)
}

/// Out of line, so the call's buffers on the shadow stack are not part of
/// every recursion frame.
#[inline(never)]
fn reenter(frames: u32, levels: u32) -> u64 {
    Contract::at(self_address()).call::<u64>("stack_reenter", (frames, levels))
}

/// FNV-1a: a key hashed in the guest, which the analyzer cannot follow.
fn fnv(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[contract]
pub mod hostile {
    use super::*;

    const COUNT: Item<u128> = Item::new(0);
    const HASHED: Map<u64, u128> = Map::new(1);
    const LOOPED: Map<u32, u128> = Map::new(2);
    const POINTER: Item<u64> = Item::new(3);
    const POINTED: Map<u64, u128> = Map::new(4);

    /// Never returns: only gas stops it.
    #[entry]
    pub fn spin() {
        COUNT.set(&1);
        let mut i: u64 = 0;
        loop {
            i = core::hint::black_box(i.wrapping_add(1));
        }
    }

    /// Recurses `frames` deep in Wasm (and writes first, to show the write
    /// is rolled back when the stack runs out).
    #[entry]
    pub fn recurse(frames: u32) -> u64 {
        COUNT.set(&2);
        descend(frames, 1)
    }

    /// Recurses `frames` deep, then calls itself at the bottom, `levels`
    /// times: tries to exhaust the native stack across nested calls.
    #[entry]
    pub fn stack_reenter(frames: u32, levels: u32) -> u64 {
        descend_then_reenter(frames, frames, levels, 1)
    }

    /// Allocates `chunk` bytes at a time and keeps them, forever (touching
    /// one byte of each, so the allocation is real).
    #[entry]
    pub fn allocate(chunk: u32) -> u32 {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block: Vec<u8> = Vec::with_capacity(chunk as usize);
            block.push(0xAB);
            kept.push(block);
            core::hint::black_box(&kept);
        }
    }

    /// `memory.grow` in a loop; reverts with the page count once refused.
    #[entry]
    pub fn grow() -> u32 {
        let pages = raw::grow_until_refused();
        if pages > 0 {
            revert("memory.grow refused at the limit")
        }
        pages as u32
    }

    /// Returns `len` bytes through the raw import (past the limit if asked).
    #[entry]
    pub fn huge_return(len: u32) {
        let bytes = vec![7u8; len as usize];
        raw::set_return(&bytes);
    }

    /// Emits one event with `len` bytes of data through the raw import.
    #[entry]
    pub fn huge_event(len: u32) {
        let bytes = vec![7u8; len as usize];
        raw::emit(b"Huge", &bytes);
    }

    /// Emits `count` small events.
    #[entry]
    pub fn many_events(count: u32) {
        for i in 0..count {
            emit("Tick", &i);
        }
    }

    /// Writes a value under a key of `key_len` bytes through the raw import.
    #[entry]
    pub fn huge_key(key_len: u32) {
        let key = vec![1u8; key_len as usize];
        raw::storage_write(5, &key, &[1]);
    }

    /// Writes a value of `value_len` bytes through the raw import.
    #[entry]
    pub fn huge_value(value_len: u32) {
        let value = vec![1u8; value_len as usize];
        raw::storage_write(5, &[1], &value);
    }

    /// Writes into the VM's reserved slot (nonces live there).
    #[entry]
    pub fn write_reserved() {
        raw::storage_write(u32::MAX, &[0], &[1]);
    }

    /// Panics with a message.
    #[entry]
    pub fn panic_now() {
        COUNT.set(&3);
        panic!("hostile panic")
    }

    /// Reentrancy: increments this contract's counter (read-modify-write),
    /// then calls `other.ping(self, rounds - 1)`; with two instances the call
    /// comes back into this one while it is still running.
    #[entry]
    pub fn ping(other: Address, rounds: u32) -> u128 {
        let next = COUNT.get_or_default().wrapping_add(1);
        COUNT.set(&next);
        if rounds == 0 {
            return next;
        }
        let deeper: u128 = Contract::at(other).call("ping", (self_address(), rounds - 1));
        next.wrapping_add(deeper)
    }

    /// The caller the host reports.
    #[entry(view)]
    pub fn whoami() -> Address {
        caller()
    }

    /// Asks `target.whoami()`: the callee sees this contract, never the
    /// transaction's sender.
    #[entry(view)]
    pub fn relay_whoami(target: Address) -> Address {
        Contract::at(target).call("whoami", ())
    }

    /// Adds `value` under a key hashed from `seed` in the guest.
    #[entry]
    pub fn hashed_set(seed: u64, value: u128) {
        let key = fnv(&seed.to_le_bytes());
        let old = HASHED.get_or_default(&key);
        HASHED.set(&key, &old.wrapping_add(value));
    }

    /// Writes `value` under the keys `0..count`.
    #[entry]
    pub fn loop_set(count: u32, value: u128) {
        for i in 0..count {
            LOOPED.set(&i, &value);
        }
    }

    /// Moves the pointer that `pointed_set` follows.
    #[entry]
    pub fn set_pointer(to: u64) {
        POINTER.set(&to);
    }

    /// Adds `value` under the key the stored pointer names (a key read from
    /// storage that a non-constructor entry point can change).
    #[entry]
    pub fn pointed_set(value: u128) {
        let key = POINTER.get_or_default();
        let old = POINTED.get_or_default(&key);
        POINTED.set(&key, &old.wrapping_add(value));
    }

    #[entry(view)]
    pub fn count() -> u128 {
        COUNT.get_or_default()
    }

    #[entry(view)]
    pub fn hashed(seed: u64) -> u128 {
        HASHED.get_or_default(&fnv(&seed.to_le_bytes()))
    }

    #[entry(view)]
    pub fn pointed(key: u64) -> u128 {
        POINTED.get_or_default(&key)
    }
}
