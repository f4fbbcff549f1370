//! The encoding of call arguments, return values, event data and typed storage
//! values: compact, deterministic and canonical.
//!
//! - Integers are fixed-width little-endian (`u128` is 16 bytes). Fixed width
//!   keeps every argument at a fixed byte offset of the call input whenever the
//!   arguments before it are fixed-size, which is what lets the analyzer name a
//!   key as "bytes 0..32 of the input" (see ARCHITECTURE.md).
//! - `bool` is one byte, 0 or 1; anything else is an error.
//! - `String` and `Vec<T>` are a `u32` element count followed by the elements
//!   (`String` as UTF-8 bytes, validated).
//! - `Option<T>` is a tag byte 0 (None) or 1 (Some) followed by the value.
//! - Tuples are their fields in order; `()` is nothing.
//! - [`Address`] is its 32 raw bytes.
//!
//! Every value has exactly one encoding and decoding a whole buffer rejects
//! trailing bytes, so equal values always produce equal bytes (and state roots).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::address::{Address, ADDRESS_LEN};

/// Where encoded bytes go: a `Vec<u8>`, or a fixed buffer ([`FixedWriter`]) for
/// code that must not allocate, such as storage-key building in the guest.
pub trait Writer {
    fn write(&mut self, bytes: &[u8]);
}

impl Writer for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A writer over a fixed buffer that records, instead of panicking, when the
/// buffer is too small.
pub struct FixedWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> FixedWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedWriter { buf, len: 0, overflowed: false }
    }

    /// The bytes written, or `None` if they did not fit.
    pub fn finish(self) -> Option<&'a [u8]> {
        if self.overflowed {
            None
        } else {
            Some(&self.buf[..self.len])
        }
    }

    /// Bytes written so far (or that would have been, on overflow).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Writer for FixedWriter<'_> {
    fn write(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) if !self.overflowed => dst.copy_from_slice(bytes),
            _ => self.overflowed = true,
        }
        self.len = end;
    }
}

/// Why bytes could not be decoded as the expected type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended `needed` bytes short.
    UnexpectedEnd { needed: usize },
    /// A `bool` byte other than 0 or 1.
    InvalidBool(u8),
    /// An `Option` tag other than 0 or 1.
    InvalidOptionTag(u8),
    /// A `String` that is not UTF-8.
    InvalidUtf8,
    /// The value was decoded but `count` bytes were left over.
    TrailingBytes { count: usize },
    /// A length prefix larger than the bytes that follow could hold.
    LengthTooLarge { length: u32, remaining: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnexpectedEnd { needed } => write!(f, "input ended {needed} byte(s) early"),
            DecodeError::InvalidBool(b) => write!(f, "invalid bool byte {b} (expected 0 or 1)"),
            DecodeError::InvalidOptionTag(b) => write!(f, "invalid option tag {b} (expected 0 or 1)"),
            DecodeError::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            DecodeError::TrailingBytes { count } => write!(f, "{count} unexpected trailing byte(s)"),
            DecodeError::LengthTooLarge { length, remaining } => {
                write!(f, "length prefix {length} exceeds the {remaining} byte(s) left")
            }
        }
    }
}

/// Reads encoded values from a byte slice.
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::UnexpectedEnd { needed: n - self.bytes.len() });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a `u32` length prefix and checks that at least `length * min_elem_size`
    /// bytes follow, so a hostile prefix cannot make the decoder allocate.
    pub fn length(&mut self, min_elem_size: usize) -> Result<usize, DecodeError> {
        let length = u32::from_le_bytes(self.take_array()?);
        let needed = (length as usize).saturating_mul(min_elem_size);
        if needed > self.bytes.len() {
            return Err(DecodeError::LengthTooLarge { length, remaining: self.bytes.len() });
        }
        Ok(length as usize)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { count: self.bytes.len() })
        }
    }
}

/// A type with a canonical encoding.
pub trait Encode {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W);

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// A type that can be decoded from its canonical encoding.
pub trait Decode: Sized {
    /// The fewest bytes an encoded value takes; bounds the allocation a length
    /// prefix can cause.
    const MIN_ENCODED_LEN: usize;

    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer, rejecting trailing bytes.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        (**self).encode_to(out)
    }
}

macro_rules! int_codec {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
                out.write(&self.to_le_bytes());
            }
        }
        impl Decode for $t {
            const MIN_ENCODED_LEN: usize = core::mem::size_of::<$t>();
            fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(reader.take_array()?))
            }
        }
    )*};
}
int_codec!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl Encode for bool {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        out.write(&[*self as u8]);
    }
}

impl Decode for bool {
    const MIN_ENCODED_LEN: usize = 1;
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match reader.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::InvalidBool(other)),
        }
    }
}

impl Encode for Address {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        out.write(&self.0);
    }
}

impl Decode for Address {
    const MIN_ENCODED_LEN: usize = ADDRESS_LEN;
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Address(reader.take_array()?))
    }
}

fn encode_len<W: Writer + ?Sized>(len: usize, out: &mut W) {
    // Lengths are bounded far below u32::MAX by the host's limits.
    out.write(&(len as u32).to_le_bytes());
}

/// The encoding of a byte vector (the same bytes as `[u8]`'s), written at
/// once instead of byte by byte: for the host's blocks and receipts (their
/// arguments, return values and event data, encoded one byte per call, made
/// encoding a sixth of a block's commit).
pub fn encode_bytes<W: Writer + ?Sized>(bytes: &[u8], out: &mut W) {
    encode_len(bytes.len(), out);
    out.write(bytes);
}

impl Encode for str {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        encode_len(self.len(), out);
        out.write(self.as_bytes());
    }
}

impl Encode for String {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        self.as_str().encode_to(out)
    }
}

impl Decode for String {
    const MIN_ENCODED_LEN: usize = 4;
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = reader.length(1)?;
        let bytes = reader.take(len)?;
        core::str::from_utf8(bytes).map(String::from).map_err(|_| DecodeError::InvalidUtf8)
    }
}

impl<T: Encode> Encode for [T] {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        encode_len(self.len(), out);
        for item in self {
            item.encode_to(out);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        self.as_slice().encode_to(out)
    }
}

impl<T: Decode> Decode for Vec<T> {
    const MIN_ENCODED_LEN: usize = 4;
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // A zero-sized element type (`()`) still costs nothing to allocate.
        let len = reader.length(T::MIN_ENCODED_LEN)?;
        let mut out = Vec::with_capacity(if T::MIN_ENCODED_LEN == 0 { 0 } else { len });
        for _ in 0..len {
            out.push(T::decode_from(reader)?);
        }
        Ok(out)
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        match self {
            None => out.write(&[0]),
            Some(value) => {
                out.write(&[1]);
                value.encode_to(out);
            }
        }
    }
}

impl<T: Decode> Decode for Option<T> {
    const MIN_ENCODED_LEN: usize = 1;
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match reader.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(reader)?)),
            other => Err(DecodeError::InvalidOptionTag(other)),
        }
    }
}

macro_rules! tuple_codec {
    ($($name:ident),*) => {
        impl<$($name: Encode),*> Encode for ($($name,)*) {
            #[allow(non_snake_case, unused_variables)]
            fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
                let ($($name,)*) = self;
                $($name.encode_to(out);)*
            }
        }
        impl<$($name: Decode),*> Decode for ($($name,)*) {
            const MIN_ENCODED_LEN: usize = 0 $(+ $name::MIN_ENCODED_LEN)*;
            #[allow(unused_variables)]
            fn decode_from(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(($($name::decode_from(reader)?,)*))
            }
        }
    };
}
tuple_codec!();
tuple_codec!(A);
tuple_codec!(A, B);
tuple_codec!(A, B, C);
tuple_codec!(A, B, C, D);
tuple_codec!(A, B, C, D, E);
tuple_codec!(A, B, C, D, E, F);
tuple_codec!(A, B, C, D, E, F, G);
tuple_codec!(A, B, C, D, E, F, G, H);

// After every line that contracts compile (see `InputShape` in `abi.rs`).
impl<'a> Reader<'a> {
    /// The next `n` bytes (fewer if fewer are left), without consuming them.
    pub fn peek(&self, n: usize) -> &'a [u8] {
        &self.bytes[..n.min(self.bytes.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn fixed_width_layout() {
        let to = Address([7; 32]);
        let bytes = (to, 5u128).encode();
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[..32], &[7; 32]);
        assert_eq!(&bytes[32..], &5u128.to_le_bytes());
        assert_eq!("ab".encode(), vec![2, 0, 0, 0, b'a', b'b']);
        assert_eq!(Some(1u8).encode(), vec![1, 1]);
        assert_eq!(None::<u8>.encode(), vec![0]);
        assert_eq!(().encode(), Vec::<u8>::new());
    }

    proptest! {
        #[test]
        fn bytes_written_at_once_encode_as_a_byte_vector(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut at_once = Vec::new();
            encode_bytes(&bytes, &mut at_once);
            prop_assert_eq!(at_once, bytes.encode());
        }
    }

    #[test]
    fn non_canonical_input_is_rejected() {
        assert_eq!(bool::decode(&[2]), Err(DecodeError::InvalidBool(2)));
        assert_eq!(Option::<u8>::decode(&[3, 0]), Err(DecodeError::InvalidOptionTag(3)));
        assert_eq!(u32::decode(&[1, 0, 0, 0, 9]), Err(DecodeError::TrailingBytes { count: 1 }));
        assert_eq!(u32::decode(&[1, 0]), Err(DecodeError::UnexpectedEnd { needed: 2 }));
        assert_eq!(String::decode(&[1, 0, 0, 0, 0xff]), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn hostile_length_prefix_does_not_allocate() {
        let bytes = u32::MAX.to_le_bytes();
        assert_eq!(
            Vec::<u128>::decode(&bytes),
            Err(DecodeError::LengthTooLarge { length: u32::MAX, remaining: 0 })
        );
        // Zero-sized elements: a huge count of () decodes without allocating memory.
        let units = Vec::<()>::decode(&1000u32.to_le_bytes()).expect("units decode");
        assert_eq!(units.len(), 1000);
    }

    #[test]
    fn fixed_writer_reports_overflow() {
        let mut buf = [0u8; 4];
        let mut w = FixedWriter::new(&mut buf);
        1u16.encode_to(&mut w);
        assert_eq!(w.finish(), Some(&[1u8, 0][..]));
        let mut w = FixedWriter::new(&mut buf);
        1u64.encode_to(&mut w);
        assert_eq!(w.len(), 8);
        assert_eq!(w.finish(), None);
    }

    proptest! {
        #[test]
        fn round_trip(a in any::<u128>(), b in any::<i64>(), s in ".{0,40}", v in proptest::collection::vec(any::<u32>(), 0..20), o in any::<Option<bool>>(), addr in any::<[u8; 32]>()) {
            let value = (a, b, s.to_string(), v, o, Address(addr));
            let bytes = value.encode();
            prop_assert_eq!(<(u128, i64, String, Vec<u32>, Option<bool>, Address)>::decode(&bytes), Ok(value));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = <(String, Vec<Option<u64>>, bool)>::decode(&bytes);
            let _ = Vec::<Vec<Address>>::decode(&bytes);
        }
    }
}
