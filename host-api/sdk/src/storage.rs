//! Typed storage: [`Item`] (one value) and [`Map`] (values by key).
//!
//! Each is a constant with a slot id, unique within the contract. A value is
//! stored in its codec encoding under the key `slot ‖ encode(key)`; the host
//! prefixes the contract's address. Keys are encoded into a fixed stack buffer
//! (never hashed, never heap-allocated), which keeps them visible to the
//! analyzer.

use core::marker::PhantomData;

use chroma_host_api::codec::FixedWriter;
use chroma_host_api::limits::{MAX_KEY_LEN, MAX_VALUE_LEN};
use chroma_host_api::Slot;

use crate::{backend, revert, Decode, Encode};

fn decode_stored<T: Decode>(slot: Slot, bytes: &[u8]) -> T {
    match T::decode(bytes) {
        Ok(value) => value,
        Err(e) => revert(&alloc::format!("corrupt value in storage slot {slot}: {e}")),
    }
}

fn write_value<T: Encode + ?Sized>(slot: Slot, key: &[u8], value: &T) {
    let mut bytes = alloc::vec::Vec::new();
    value.encode_to(&mut bytes);
    if bytes.len() > MAX_VALUE_LEN {
        revert(&alloc::format!("storage value is {} bytes long (limit {MAX_VALUE_LEN})", bytes.len()));
    }
    backend::storage_write(slot, key, &bytes);
}

/// Encodes `key` into a stack buffer and runs `f` with the bytes.
fn with_key<K: Encode + ?Sized, R>(key: &K, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; MAX_KEY_LEN];
    let mut writer = FixedWriter::new(&mut buf);
    key.encode_to(&mut writer);
    let length = writer.len();
    match writer.finish() {
        Some(bytes) => f(bytes),
        None => revert(&alloc::format!("storage key is {length} bytes long (limit {MAX_KEY_LEN})")),
    }
}

/// A single value at a slot.
pub struct Item<T> {
    slot: Slot,
    _value: PhantomData<fn() -> T>,
}

impl<T> Item<T> {
    pub const fn new(slot: Slot) -> Self {
        Item { slot, _value: PhantomData }
    }

    pub const fn slot(&self) -> Slot {
        self.slot
    }
}

impl<T: Encode + Decode> Item<T> {
    /// The value, if one was set.
    pub fn get(&self) -> Option<T> {
        backend::storage_read(self.slot, &[], |bytes| bytes.map(|b| decode_stored(self.slot, b)))
    }

    /// The value, or `T::default()` if none was set.
    pub fn get_or_default(&self) -> T
    where
        T: Default,
    {
        self.get().unwrap_or_default()
    }

    pub fn set(&self, value: &T) {
        write_value(self.slot, &[], value)
    }

    pub fn remove(&self) {
        backend::storage_remove(self.slot, &[])
    }
}

impl Item<u128> {
    /// Commutative add (saturating): does not read the value, so adds from
    /// different transactions do not conflict with each other.
    pub fn add(&self, amount: u128) {
        backend::storage_add(self.slot, &[], amount)
    }
}

/// Values of type `V` by key `K`, in one slot.
pub struct Map<K, V> {
    slot: Slot,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> Map<K, V> {
    pub const fn new(slot: Slot) -> Self {
        Map { slot, _types: PhantomData }
    }

    pub const fn slot(&self) -> Slot {
        self.slot
    }
}

impl<K: Encode, V: Encode + Decode> Map<K, V> {
    pub fn get(&self, key: &K) -> Option<V> {
        with_key(key, |k| backend::storage_read(self.slot, k, |bytes| bytes.map(|b| decode_stored(self.slot, b))))
    }

    pub fn get_or_default(&self, key: &K) -> V
    where
        V: Default,
    {
        self.get(key).unwrap_or_default()
    }

    pub fn contains(&self, key: &K) -> bool {
        with_key(key, |k| backend::storage_read(self.slot, k, |bytes| bytes.is_some()))
    }

    pub fn set(&self, key: &K, value: &V) {
        with_key(key, |k| write_value(self.slot, k, value))
    }

    pub fn remove(&self, key: &K) {
        with_key(key, |k| backend::storage_remove(self.slot, k))
    }
}

impl<K: Encode> Map<K, u128> {
    /// Commutative add (saturating) to the value at `key`: does not read it, so
    /// adds from different transactions do not conflict with each other.
    pub fn add(&self, key: &K, amount: u128) {
        with_key(key, |k| backend::storage_add(self.slot, k, amount))
    }
}
