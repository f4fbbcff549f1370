//! The `wasm32` backend: the host imports, static buffers, the allocator and
//! the panic handler.
//!
//! The call input lives in a static buffer (a fixed address in linear
//! memory), which is what lets the analyzer name argument bytes. Stored values
//! and call results are read into a second static buffer. Both are sized to
//! the host's limits, so one host call always suffices.

use core::cell::{Cell, UnsafeCell};

use chroma_host_api::host::{sys, unpack_call_result, CallStatus, STORAGE_ABSENT};
use chroma_host_api::limits::{MAX_INPUT_LEN, MAX_RETURN_LEN, MAX_REVERT_MSG_LEN, MAX_VALUE_LEN};
use chroma_host_api::{Address, ADDRESS_LEN};

const SCRATCH_LEN: usize = if MAX_VALUE_LEN > MAX_RETURN_LEN { MAX_VALUE_LEN } else { MAX_RETURN_LEN };

/// A buffer at a fixed address. Wasm contracts are single-threaded and each
/// call has its own instance; `in_use` guards against nested use (which falls
/// back to the heap).
struct StaticBuf<const N: usize> {
    bytes: UnsafeCell<[u8; N]>,
    in_use: Cell<bool>,
}

// SAFETY: wasm32-unknown-unknown contracts run without threads.
unsafe impl<const N: usize> Sync for StaticBuf<N> {}

impl<const N: usize> StaticBuf<N> {
    const fn new() -> Self {
        StaticBuf { bytes: UnsafeCell::new([0; N]), in_use: Cell::new(false) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        if self.in_use.replace(true) {
            let mut heap = alloc::vec![0u8; N];
            return f(&mut heap);
        }
        // SAFETY: `in_use` was false, so no other reference to the buffer exists.
        let result = f(unsafe { &mut *self.bytes.get() });
        self.in_use.set(false);
        result
    }
}

static INPUT: StaticBuf<MAX_INPUT_LEN> = StaticBuf::new();
static SCRATCH: StaticBuf<SCRATCH_LEN> = StaticBuf::new();

fn ptr(bytes: &[u8]) -> u32 {
    bytes.as_ptr() as usize as u32
}

fn len(bytes: &[u8]) -> u32 {
    bytes.len() as u32
}

pub fn with_input<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    INPUT.with(|buf| {
        // SAFETY: the buffer holds MAX_INPUT_LEN bytes, the most the host writes.
        let n = unsafe { sys::input(buf.as_mut_ptr() as usize as u32) } as usize;
        match buf.get(..n) {
            Some(input) => f(input),
            None => revert("call input exceeds the input buffer"),
        }
    })
}

pub fn caller() -> Address {
    let mut out = [0u8; ADDRESS_LEN];
    // SAFETY: the host writes exactly 32 bytes.
    unsafe { sys::caller(out.as_mut_ptr() as usize as u32) };
    Address(out)
}

pub fn self_address() -> Address {
    let mut out = [0u8; ADDRESS_LEN];
    // SAFETY: the host writes exactly 32 bytes.
    unsafe { sys::self_address(out.as_mut_ptr() as usize as u32) };
    Address(out)
}

pub fn storage_read<R>(slot: u32, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
    SCRATCH.with(|buf| {
        // SAFETY: the host writes at most `dst_cap` bytes into the buffer.
        let n = unsafe { sys::storage_read(slot, ptr(key), len(key), buf.as_mut_ptr() as usize as u32, len(buf)) };
        if n == STORAGE_ABSENT {
            return f(None);
        }
        match buf.get(..n as usize) {
            Some(value) => f(Some(value)),
            None => revert("stored value exceeds the value buffer"),
        }
    })
}

pub fn storage_write(slot: u32, key: &[u8], value: &[u8]) {
    // SAFETY: pointers and lengths describe live slices.
    unsafe { sys::storage_write(slot, ptr(key), len(key), ptr(value), len(value)) }
}

pub fn storage_remove(slot: u32, key: &[u8]) {
    // SAFETY: as above.
    unsafe { sys::storage_remove(slot, ptr(key), len(key)) }
}

pub fn storage_add(slot: u32, key: &[u8], amount: u128) {
    // SAFETY: as above.
    unsafe { sys::storage_add(slot, ptr(key), len(key), amount as u64 as i64, (amount >> 64) as u64 as i64) }
}

pub fn set_return(bytes: &[u8]) {
    // SAFETY: as above.
    unsafe { sys::set_return(ptr(bytes), len(bytes)) }
}

pub fn emit(name: &str, data: &[u8]) {
    // SAFETY: as above.
    unsafe { sys::emit(ptr(name.as_bytes()), len(name.as_bytes()), ptr(data), len(data)) }
}

pub fn revert(message: &str) -> ! {
    let bytes = &message.as_bytes()[..message.len().min(MAX_REVERT_MSG_LEN)];
    // SAFETY: as above; the host never returns from `revert`.
    unsafe { sys::revert(ptr(bytes), len(bytes)) };
    core::arch::wasm32::unreachable()
}

pub fn call<R>(address: &Address, method: &str, args: &[u8], f: impl FnOnce(CallStatus, &[u8]) -> R) -> R {
    SCRATCH.with(|buf| {
        // SAFETY: the host writes at most `dst_cap` bytes into the buffer.
        let packed = unsafe {
            sys::call(
                ptr(&address.0),
                ptr(method.as_bytes()),
                len(method.as_bytes()),
                ptr(args),
                len(args),
                buf.as_mut_ptr() as usize as u32,
                len(buf),
            )
        };
        match unpack_call_result(packed) {
            Some((status, n)) => f(status, &buf[..(n as usize).min(buf.len())]),
            None => revert("the host returned an unknown call status"),
        }
    })
}

pub fn gas_left() -> u64 {
    // SAFETY: no memory is involved.
    unsafe { sys::gas_left() as u64 }
}

/// A panic reverts the call with the panic's message, when it is a constant
/// string (formatting would pull `core::fmt` into every contract).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    const PREFIX: &[u8] = b"panicked: ";
    let message = info.message().as_str().unwrap_or("(formatted message)");
    let mut buf = [0u8; 256];
    let n = PREFIX.len() + message.len().min(buf.len() - PREFIX.len());
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    buf[PREFIX.len()..n].copy_from_slice(&message.as_bytes()[..n - PREFIX.len()]);
    // SAFETY: as above; the host never returns from `revert`.
    unsafe { sys::revert(buf.as_ptr() as usize as u32, n as u32) };
    core::arch::wasm32::unreachable()
}

/// A bump allocator. Every call runs in a fresh instance whose memory is thrown
/// away afterwards, so freeing is pointless: `dealloc` does nothing and the
/// memory limit bounds the total. Deterministic and a few instructions long.
struct BumpAllocator {
    next: Cell<usize>,
}

// SAFETY: no threads on wasm32-unknown-unknown.
unsafe impl Sync for BumpAllocator {}

const PAGE: usize = 65_536;

extern "C" {
    static __heap_base: u8;
}

/// Grows linear memory so it covers `end`; false if the host refuses (the
/// memory limit), which makes the allocation fail and the contract revert.
fn memory_reaches(end: usize) -> bool {
    let memory_end = core::arch::wasm32::memory_size(0) * PAGE;
    if end <= memory_end {
        return true;
    }
    let pages = (end - memory_end).div_ceil(PAGE);
    core::arch::wasm32::memory_grow(0, pages) != usize::MAX
}

unsafe impl core::alloc::GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        let mut next = self.next.get();
        if next == 0 {
            // SAFETY: the linker defines __heap_base; only its address is used.
            next = core::ptr::addr_of!(__heap_base) as usize;
        }
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !memory_reaches(end) {
            return core::ptr::null_mut();
        }
        self.next.set(end);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, new_size: usize) -> *mut u8 {
        // Growing the most recent allocation (a Vec being pushed to) happens in place.
        if ptr as usize + layout.size() == self.next.get() && new_size >= layout.size() {
            let end = ptr as usize + new_size;
            if !memory_reaches(end) {
                return core::ptr::null_mut();
            }
            self.next.set(end);
            return ptr;
        }
        // SAFETY: as GlobalAlloc::realloc's default.
        unsafe {
            let new_layout = core::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
            let new_ptr = self.alloc(new_layout);
            if !new_ptr.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
            }
            new_ptr
        }
    }
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator { next: Cell::new(0) };

/// Called first by every entry point: nothing allocated by an earlier call on
/// this instance is live (a nested call always gets a new instance), so the
/// heap starts over. Keeps an instance reusable for any number of calls.
pub fn begin_call() {
    ALLOCATOR.next.set(0);
}
