//! Size limits the host enforces. A host call that exceeds one traps with an
//! error naming the length and the limit (for example
//! `KeyLengthExceeded { length, limit }`); the SDK checks them first where it
//! can, to revert with a clear message.

/// Bytes of a storage key after the slot id (the part a contract chooses).
pub const MAX_KEY_LEN: usize = 256;
/// Bytes of a stored value.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Bytes of a call's input (its encoded arguments).
pub const MAX_INPUT_LEN: usize = 16 * 1024;
/// Bytes of a call's return value.
pub const MAX_RETURN_LEN: usize = 16 * 1024;
/// Bytes of an event name.
pub const MAX_EVENT_NAME_LEN: usize = 64;
/// Bytes of an event's data.
pub const MAX_EVENT_DATA_LEN: usize = 4 * 1024;
/// Events one transaction may emit, over all the contracts it calls.
pub const MAX_EVENTS_PER_TX: usize = 256;
/// Bytes of a revert message kept; a longer message is truncated (at a UTF-8
/// character boundary), not refused, since the call is failing anyway.
pub const MAX_REVERT_MSG_LEN: usize = 1024;
/// Bytes of a method name.
pub const MAX_METHOD_NAME_LEN: usize = 64;
/// Elements of a zero-size type (`Vec<()>`) a call argument may declare.
/// They occupy no input bytes, so without a bound a 4-byte length would
/// stand for billions of values; the host refuses more (as `BadInput`), and
/// the CLI's typed values never hold more.
pub const MAX_ZERO_SIZE_ELEMENTS: usize = 1 << 16;
/// Nested synchronous calls: the transaction's own call is depth 1.
pub const MAX_CALL_DEPTH: u32 = 8;
/// Linear memory one contract instance may grow to, in 64 KiB pages (4 MiB).
/// A `memory.grow` past it fails (returns -1), so allocation fails and the
/// contract reverts.
pub const MAX_MEMORY_PAGES: u32 = 64;
