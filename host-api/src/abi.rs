//! The ABI description a contract embeds in its Wasm, in the custom section
//! [`ABI_SECTION`]: every entry point's name, kind (init / view / mutating),
//! argument names and types, and return type.
//!
//! Two forms:
//! - Compile-time descriptors ([`TypeDesc`], [`MethodDesc`]) that the SDK's
//!   `#[contract]` macro builds from the entry points' Rust types through
//!   [`AbiType`], and that [`encode_section`] turns into the section bytes in a
//!   `const` (so the section costs the contract no code).
//! - The owned form ([`Abi`], [`Type`]) that the host, the CLI and the analyzer
//!   decode from a module's section with [`Abi::decode`].
//!
//! Section layout (all integers little-endian, strings as in the codec):
//! `version: u8 = ABI_VERSION`, `count: u32`, then per method
//! `name: string, kind: u8, arg_count: u32, (arg_name: string, type)*, return: type`.
//! A type is a tag byte ([`type_tag`]) followed, for `Vec` and `Option`, by the
//! element type and, for tuples, by a `u8` arity and the field types.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::address::Address;
use crate::codec::{Decode, DecodeError, Reader};
use crate::limits::{MAX_METHOD_NAME_LEN, MAX_ZERO_SIZE_ELEMENTS};

/// Name of the Wasm custom section holding the ABI description.
pub const ABI_SECTION: &str = "chroma_abi";

/// Version byte at the start of the ABI section.
pub const ABI_VERSION: u8 = 1;

/// Deepest type nesting the decoder accepts (`Vec<Option<(u8, Vec<..>)>>`...).
pub const MAX_TYPE_DEPTH: usize = 8;

/// The tag byte of each type in the section.
pub mod type_tag {
    pub const UNIT: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const U8: u8 = 2;
    pub const U16: u8 = 3;
    pub const U32: u8 = 4;
    pub const U64: u8 = 5;
    pub const U128: u8 = 6;
    pub const I8: u8 = 7;
    pub const I16: u8 = 8;
    pub const I32: u8 = 9;
    pub const I64: u8 = 10;
    pub const I128: u8 = 11;
    pub const ADDRESS: u8 = 12;
    pub const STRING: u8 = 13;
    pub const VEC: u8 = 14;
    pub const OPTION: u8 = 15;
    pub const TUPLE: u8 = 16;
}

/// What an entry point may do; the host enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MethodKind {
    /// May read and write storage and emit events.
    Mutating,
    /// Read-only: a storage write, add, remove or event traps. `chroma query`
    /// runs views without a transaction.
    View,
    /// The constructor: run once, at deploy, and never callable afterwards.
    Init,
}

impl MethodKind {
    pub const fn to_byte(self) -> u8 {
        match self {
            MethodKind::Mutating => 0,
            MethodKind::View => 1,
            MethodKind::Init => 2,
        }
    }

    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(MethodKind::Mutating),
            1 => Some(MethodKind::View),
            2 => Some(MethodKind::Init),
            _ => None,
        }
    }

    pub const fn mutates(self) -> bool {
        !matches!(self, MethodKind::View)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            MethodKind::Mutating => "mutating",
            MethodKind::View => "view",
            MethodKind::Init => "init",
        }
    }
}

/// A type as the `#[contract]` macro describes it at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeDesc {
    /// A type with no data: `()`, bool and the integers, `Address`, `String`.
    Leaf(u8),
    Vec(&'static TypeDesc),
    Option(&'static TypeDesc),
    Tuple(&'static [&'static TypeDesc]),
}

/// Rust types that may appear in entry-point signatures.
pub trait AbiType {
    const TYPE: &'static TypeDesc;
}

macro_rules! leaf_abi_type {
    ($($t:ty => $tag:ident),* $(,)?) => {$(
        impl AbiType for $t {
            const TYPE: &'static TypeDesc = &TypeDesc::Leaf(type_tag::$tag);
        }
    )*};
}
leaf_abi_type!(
    () => UNIT, bool => BOOL, u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128, Address => ADDRESS, String => STRING,
);

impl<T: AbiType> AbiType for Vec<T> {
    const TYPE: &'static TypeDesc = &TypeDesc::Vec(T::TYPE);
}

impl<T: AbiType> AbiType for Option<T> {
    const TYPE: &'static TypeDesc = &TypeDesc::Option(T::TYPE);
}

macro_rules! tuple_abi_type {
    ($($name:ident),+) => {
        impl<$($name: AbiType),+> AbiType for ($($name,)+) {
            const TYPE: &'static TypeDesc = &TypeDesc::Tuple(&[$($name::TYPE),+]);
        }
    };
}
tuple_abi_type!(A);
tuple_abi_type!(A, B);
tuple_abi_type!(A, B, C);
tuple_abi_type!(A, B, C, D);
tuple_abi_type!(A, B, C, D, E);
tuple_abi_type!(A, B, C, D, E, F);

/// An entry-point argument, at compile time.
#[derive(Debug, Clone, Copy)]
pub struct ArgDesc {
    pub name: &'static str,
    pub ty: &'static TypeDesc,
}

/// An entry point, at compile time.
#[derive(Debug, Clone, Copy)]
pub struct MethodDesc {
    pub name: &'static str,
    pub kind: MethodKind,
    pub args: &'static [ArgDesc],
    pub returns: &'static TypeDesc,
}

const fn type_len(ty: &TypeDesc) -> usize {
    match ty {
        TypeDesc::Leaf(_) => 1,
        TypeDesc::Vec(inner) | TypeDesc::Option(inner) => 1 + type_len(inner),
        TypeDesc::Tuple(fields) => {
            let mut n = 2;
            let mut i = 0;
            while i < fields.len() {
                n += type_len(fields[i]);
                i += 1;
            }
            n
        }
    }
}

/// Length of the section [`encode_section`] produces for `methods`.
pub const fn section_len(methods: &[MethodDesc]) -> usize {
    let mut n = 1 + 4;
    let mut m = 0;
    while m < methods.len() {
        let method = &methods[m];
        n += 4 + method.name.len() + 1 + 4;
        let mut a = 0;
        while a < method.args.len() {
            n += 4 + method.args[a].name.len() + type_len(method.args[a].ty);
            a += 1;
        }
        n += type_len(method.returns);
        m += 1;
    }
    n
}

struct ConstWriter<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> ConstWriter<N> {
    const fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    const fn u32(&mut self, v: u32) {
        let bytes = v.to_le_bytes();
        let mut i = 0;
        while i < 4 {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    const fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        self.u32(bytes.len() as u32);
        let mut i = 0;
        while i < bytes.len() {
            self.byte(bytes[i]);
            i += 1;
        }
    }

    const fn ty(&mut self, ty: &TypeDesc) {
        match ty {
            TypeDesc::Leaf(tag) => self.byte(*tag),
            TypeDesc::Vec(inner) => {
                self.byte(type_tag::VEC);
                self.ty(inner);
            }
            TypeDesc::Option(inner) => {
                self.byte(type_tag::OPTION);
                self.ty(inner);
            }
            TypeDesc::Tuple(fields) => {
                self.byte(type_tag::TUPLE);
                self.byte(fields.len() as u8);
                let mut i = 0;
                while i < fields.len() {
                    self.ty(fields[i]);
                    i += 1;
                }
            }
        }
    }
}

/// The ABI section's bytes, computed at compile time. `N` must be
/// [`section_len`]`(methods)`; any other value fails compilation.
pub const fn encode_section<const N: usize>(methods: &[MethodDesc]) -> [u8; N] {
    let mut w = ConstWriter { buf: [0u8; N], len: 0 };
    w.byte(ABI_VERSION);
    w.u32(methods.len() as u32);
    let mut m = 0;
    while m < methods.len() {
        let method = &methods[m];
        w.str(method.name);
        w.byte(method.kind.to_byte());
        w.u32(method.args.len() as u32);
        let mut a = 0;
        while a < method.args.len() {
            w.str(method.args[a].name);
            w.ty(method.args[a].ty);
            a += 1;
        }
        w.ty(method.returns);
        m += 1;
    }
    assert!(w.len == N, "ABI section length mismatch");
    w.buf
}

/// A type in an ABI read from a module.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Type {
    Unit,
    Bool,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    Address,
    String,
    Vec(Box<Type>),
    Option(Box<Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn from_desc(desc: &TypeDesc) -> Type {
        match desc {
            TypeDesc::Leaf(tag) => Type::from_leaf_tag(*tag).unwrap_or(Type::Unit),
            TypeDesc::Vec(inner) => Type::Vec(Box::new(Type::from_desc(inner))),
            TypeDesc::Option(inner) => Type::Option(Box::new(Type::from_desc(inner))),
            TypeDesc::Tuple(fields) => Type::Tuple(fields.iter().map(|f| Type::from_desc(f)).collect()),
        }
    }

    fn from_leaf_tag(tag: u8) -> Option<Type> {
        use type_tag::*;
        Some(match tag {
            UNIT => Type::Unit,
            BOOL => Type::Bool,
            U8 => Type::U8,
            U16 => Type::U16,
            U32 => Type::U32,
            U64 => Type::U64,
            U128 => Type::U128,
            I8 => Type::I8,
            I16 => Type::I16,
            I32 => Type::I32,
            I64 => Type::I64,
            I128 => Type::I128,
            ADDRESS => Type::Address,
            STRING => Type::String,
            _ => return None,
        })
    }

    fn decode_from(reader: &mut Reader<'_>, depth: usize) -> Result<Type, AbiError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(AbiError::TypeTooDeep { limit: MAX_TYPE_DEPTH });
        }
        let tag = u8::decode_from(reader)?;
        if let Some(leaf) = Type::from_leaf_tag(tag) {
            return Ok(leaf);
        }
        match tag {
            type_tag::VEC => Ok(Type::Vec(Box::new(Type::decode_from(reader, depth + 1)?))),
            type_tag::OPTION => Ok(Type::Option(Box::new(Type::decode_from(reader, depth + 1)?))),
            type_tag::TUPLE => {
                let arity = u8::decode_from(reader)?;
                let fields = (0..arity)
                    .map(|_| Type::decode_from(reader, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Type::Tuple(fields))
            }
            other => Err(AbiError::UnknownTypeTag(other)),
        }
    }

    /// Fewest bytes a value of this type encodes to (the host bounds allocations with it).
    pub fn min_encoded_len(&self) -> usize {
        match self {
            Type::Unit => 0,
            Type::Bool | Type::U8 | Type::I8 | Type::Option(_) => 1,
            Type::U16 | Type::I16 => 2,
            Type::U32 | Type::I32 | Type::String | Type::Vec(_) => 4,
            Type::U64 | Type::I64 => 8,
            Type::U128 | Type::I128 => 16,
            Type::Address => 32,
            Type::Tuple(fields) => fields.iter().map(Type::min_encoded_len).sum(),
        }
    }

    /// Checks that `reader` holds a canonical value of this type, consuming it,
    /// without building the value (the host validates call input this way).
    pub fn skip_value(&self, reader: &mut Reader<'_>) -> Result<(), DecodeError> {
        match self {
            Type::Bool => bool::decode_from(reader).map(drop),
            Type::String => {
                let len = reader.length(1)?;
                core::str::from_utf8(reader.take(len)?).map(drop).map_err(|_| DecodeError::InvalidUtf8)
            }
            Type::Vec(inner) => {
                let len = reader.length(inner.min_encoded_len())?;
                if inner.fixed_len() == Some(0) {
                    // Zero-size elements occupy no bytes: nothing to check but their number.
                    if len > MAX_ZERO_SIZE_ELEMENTS {
                        return Err(DecodeError::LengthTooLarge { length: len as u32, remaining: reader.remaining() });
                    }
                    return Ok(());
                }
                for _ in 0..len {
                    inner.skip_value(reader)?;
                }
                Ok(())
            }
            Type::Option(inner) => match reader.take(1)?[0] {
                0 => Ok(()),
                1 => inner.skip_value(reader),
                tag => Err(DecodeError::InvalidOptionTag(tag)),
            },
            Type::Tuple(fields) => fields.iter().try_for_each(|f| f.skip_value(reader)),
            fixed => reader.take(fixed.min_encoded_len()).map(drop),
        }
    }

    /// The encoded size when every value of the type has the same size.
    pub fn fixed_len(&self) -> Option<usize> {
        match self {
            Type::String | Type::Vec(_) | Type::Option(_) => None,
            Type::Tuple(fields) => fields.iter().map(Type::fixed_len).sum(),
            leaf => Some(leaf.min_encoded_len()),
        }
    }
}

/// Rust-like names: `u128`, `Address`, `Vec<u8>`, `Option<String>`, `(u128, u128)`.
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Type::Unit => "()",
            Type::Bool => "bool",
            Type::U8 => "u8",
            Type::U16 => "u16",
            Type::U32 => "u32",
            Type::U64 => "u64",
            Type::U128 => "u128",
            Type::I8 => "i8",
            Type::I16 => "i16",
            Type::I32 => "i32",
            Type::I64 => "i64",
            Type::I128 => "i128",
            Type::Address => "Address",
            Type::String => "String",
            Type::Vec(inner) => return write!(f, "Vec<{inner}>"),
            Type::Option(inner) => return write!(f, "Option<{inner}>"),
            Type::Tuple(fields) => {
                f.write_str("(")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{field}")?;
                }
                if fields.len() == 1 {
                    f.write_str(",")?;
                }
                return f.write_str(")");
            }
        };
        f.write_str(name)
    }
}

/// One argument of an entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub ty: Type,
}

/// One entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub name: String,
    pub kind: MethodKind,
    pub args: Vec<Arg>,
    pub returns: Type,
}

impl Method {
    /// Checks that `input` is exactly a canonical encoding of the arguments.
    pub fn check_args(&self, input: &[u8]) -> Result<(), DecodeError> {
        let mut reader = Reader::new(input);
        for arg in &self.args {
            arg.ty.skip_value(&mut reader)?;
        }
        reader.finish()
    }

    /// The type of the whole call input: a tuple of the arguments in order.
    pub fn args_type(&self) -> Type {
        Type::Tuple(self.args.iter().map(|a| a.ty.clone()).collect())
    }
}

/// `transfer(to: Address, amount: u128) -> ()  [mutating]`
impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.name)?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", arg.name, arg.ty)?;
        }
        write!(f, ") -> {}  [{}]", self.returns, self.kind.as_str())
    }
}

/// A contract's ABI as decoded from its module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Abi {
    /// In the order the contract declares them.
    pub methods: Vec<Method>,
}

/// Why an ABI section was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbiError {
    Decode(DecodeError),
    UnsupportedVersion { found: u8, expected: u8 },
    UnknownTypeTag(u8),
    UnknownMethodKind(u8),
    TypeTooDeep { limit: usize },
    InvalidMethodName(String),
    MethodNameTooLong { length: usize, limit: usize },
    DuplicateMethod(String),
    DuplicateArgument { method: String, arg: String },
    MultipleInits,
}

impl From<DecodeError> for AbiError {
    fn from(e: DecodeError) -> Self {
        AbiError::Decode(e)
    }
}

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbiError::Decode(e) => write!(f, "malformed ABI section: {e}"),
            AbiError::UnsupportedVersion { found, expected } => {
                write!(f, "ABI version {found} is not supported (expected {expected})")
            }
            AbiError::UnknownTypeTag(t) => write!(f, "unknown type tag {t} in ABI"),
            AbiError::UnknownMethodKind(k) => write!(f, "unknown method kind {k} in ABI"),
            AbiError::TypeTooDeep { limit } => write!(f, "a type in the ABI nests deeper than {limit}"),
            AbiError::InvalidMethodName(n) => write!(f, "method name {n:?} is not an identifier"),
            AbiError::MethodNameTooLong { length, limit } => {
                write!(f, "method name is {length} bytes long (limit {limit})")
            }
            AbiError::DuplicateMethod(n) => write!(f, "method {n:?} is declared twice"),
            AbiError::DuplicateArgument { method, arg } => {
                write!(f, "method {method:?} declares argument {arg:?} twice")
            }
            AbiError::MultipleInits => f.write_str("more than one init method"),
        }
    }
}

/// Whether `name` is a valid entry-point (and Wasm export) name: an ASCII
/// identifier of at most [`MAX_METHOD_NAME_LEN`] bytes.
pub fn is_valid_method_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_METHOD_NAME_LEN
}

impl Abi {
    /// Builds the owned form from compile-time descriptors (used natively, where
    /// there is no Wasm section to read).
    pub fn from_descs(methods: &[MethodDesc]) -> Abi {
        Abi {
            methods: methods
                .iter()
                .map(|m| Method {
                    name: m.name.into(),
                    kind: m.kind,
                    args: m.args.iter().map(|a| Arg { name: a.name.into(), ty: Type::from_desc(a.ty) }).collect(),
                    returns: Type::from_desc(m.returns),
                })
                .collect(),
        }
    }

    /// Decodes and validates an ABI section.
    pub fn decode(section: &[u8]) -> Result<Abi, AbiError> {
        let mut reader = Reader::new(section);
        let version = u8::decode_from(&mut reader)?;
        if version != ABI_VERSION {
            return Err(AbiError::UnsupportedVersion { found: version, expected: ABI_VERSION });
        }
        // Bound the count before allocating, by the smallest method: a name
        // (4-byte length and at least 1 byte), a kind (1), an argument count
        // (4) and a return type (1). (This said 13 and refused short ABIs,
        // such as one method `a()`, until host-api/tests/fuzz.rs found it.)
        let count = reader.length(11)?;
        let mut methods: Vec<Method> = Vec::with_capacity(count);
        for _ in 0..count {
            let name = String::decode_from(&mut reader)?;
            let kind_byte = u8::decode_from(&mut reader)?;
            let kind = MethodKind::from_byte(kind_byte).ok_or(AbiError::UnknownMethodKind(kind_byte))?;
            let arg_count = reader.length(5)?;
            let mut args: Vec<Arg> = Vec::with_capacity(arg_count);
            for _ in 0..arg_count {
                let arg_name = String::decode_from(&mut reader)?;
                let ty = Type::decode_from(&mut reader, 0)?;
                if args.iter().any(|a| a.name == arg_name) {
                    return Err(AbiError::DuplicateArgument { method: name, arg: arg_name });
                }
                args.push(Arg { name: arg_name, ty });
            }
            let returns = Type::decode_from(&mut reader, 0)?;
            if name.len() > MAX_METHOD_NAME_LEN {
                return Err(AbiError::MethodNameTooLong { length: name.len(), limit: MAX_METHOD_NAME_LEN });
            }
            if !is_valid_method_name(&name) {
                return Err(AbiError::InvalidMethodName(name));
            }
            if methods.iter().any(|m| m.name == name) {
                return Err(AbiError::DuplicateMethod(name));
            }
            if kind == MethodKind::Init && methods.iter().any(|m| m.kind == MethodKind::Init) {
                return Err(AbiError::MultipleInits);
            }
            methods.push(Method { name, kind, args, returns });
        }
        reader.finish()?;
        Ok(Abi { methods })
    }

    /// The section bytes for this ABI ([`Abi::decode`]'s inverse); the SDK
    /// computes the same bytes at compile time with [`encode_section`].
    pub fn encode(&self) -> Vec<u8> {
        use crate::codec::Encode;
        fn encode_type(ty: &Type, out: &mut Vec<u8>) {
            let tag = match ty {
                Type::Unit => type_tag::UNIT,
                Type::Bool => type_tag::BOOL,
                Type::U8 => type_tag::U8,
                Type::U16 => type_tag::U16,
                Type::U32 => type_tag::U32,
                Type::U64 => type_tag::U64,
                Type::U128 => type_tag::U128,
                Type::I8 => type_tag::I8,
                Type::I16 => type_tag::I16,
                Type::I32 => type_tag::I32,
                Type::I64 => type_tag::I64,
                Type::I128 => type_tag::I128,
                Type::Address => type_tag::ADDRESS,
                Type::String => type_tag::STRING,
                Type::Vec(inner) | Type::Option(inner) => {
                    out.push(if matches!(ty, Type::Vec(_)) { type_tag::VEC } else { type_tag::OPTION });
                    return encode_type(inner, out);
                }
                Type::Tuple(fields) => {
                    out.push(type_tag::TUPLE);
                    out.push(fields.len() as u8);
                    return fields.iter().for_each(|f| encode_type(f, out));
                }
            };
            out.push(tag);
        }
        let mut out = alloc::vec![ABI_VERSION];
        (self.methods.len() as u32).encode_to(&mut out);
        for method in &self.methods {
            method.name.encode_to(&mut out);
            out.push(method.kind.to_byte());
            (method.args.len() as u32).encode_to(&mut out);
            for arg in &method.args {
                arg.name.encode_to(&mut out);
                encode_type(&arg.ty, &mut out);
            }
            encode_type(&method.returns, &mut out);
        }
        out
    }

    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.name == name)
    }

    pub fn init(&self) -> Option<&Method> {
        self.methods.iter().find(|m| m.kind == MethodKind::Init)
    }
}

// Input shapes are for the host's analyzer. They come after every line that
// contracts compile: a contract's Wasm holds the file and line of each
// possible panic, so code added above would change every example contract.

/// The layout of one encoded call input: its length and the bytes that
/// decide where each value lies (the length prefixes of strings and
/// vectors, the tags of options). Inputs of one shape differ only in the
/// values' own bytes: code that decodes them allocates the same sizes and
/// runs the same counted loops, which lets the analyzer follow a string
/// into a storage key exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputShape {
    pub len: u32,
    /// `(offset, byte)`, by increasing offset.
    pub fixed: Vec<(u32, u8)>,
}

impl InputShape {
    /// The offsets of the bytes the shape fixes, in order.
    pub fn fixed_offsets(&self) -> Vec<u32> {
        self.fixed.iter().map(|&(at, _)| at).collect()
    }
}

impl Method {
    /// The shape of `input` (see [`InputShape`]); `None` unless it is a
    /// canonical encoding of the arguments.
    pub fn input_shape(&self, input: &[u8]) -> Option<InputShape> {
        // One pass: `layout` checks each value as `check_args` does.
        let mut reader = Reader::new(input);
        let mut fixed = Vec::new();
        for arg in &self.args {
            arg.ty.layout(&mut reader, input.len(), &mut fixed).ok()?;
        }
        reader.finish().ok()?;
        Some(InputShape { len: u32::try_from(input.len()).ok()?, fixed })
    }

    /// Whether inputs of this method come in more than one shape: some
    /// argument is a string, a vector or an option.
    pub fn has_shapes(&self) -> bool {
        self.args.iter().any(|a| a.ty.fixed_len().is_none())
    }
}

impl Type {
    /// Adds to `fixed` the bytes of the value `reader` holds that decide
    /// its layout (see [`InputShape`]), consuming it and checking it as
    /// [`Type::skip_value`] does; `len` is the length of the whole input, to
    /// turn what is left into offsets.
    fn layout(&self, reader: &mut Reader<'_>, len: usize, fixed: &mut Vec<(u32, u8)>) -> Result<(), DecodeError> {
        let note = |reader: &Reader<'_>, n: usize, fixed: &mut Vec<(u32, u8)>| {
            let at = len - reader.remaining();
            (at..at + n).zip(reader.peek(n)).for_each(|(offset, byte)| fixed.push((offset as u32, *byte)));
        };
        match self {
            Type::String | Type::Vec(_) => {
                note(reader, 4, fixed);
                match self {
                    Type::Vec(inner) if inner.fixed_len().is_none() => {
                        let count = reader.length(inner.min_encoded_len())?;
                        (0..count).try_for_each(|_| inner.layout(reader, len, fixed))
                    }
                    _ => self.skip_value(reader),
                }
            }
            Type::Option(inner) => {
                note(reader, 1, fixed);
                match reader.take(1)?[0] {
                    0 => Ok(()),
                    1 => inner.layout(reader, len, fixed),
                    tag => Err(DecodeError::InvalidOptionTag(tag)),
                }
            }
            Type::Tuple(fields) => fields.iter().try_for_each(|f| f.layout(reader, len, fixed)),
            fixed_size => fixed_size.skip_value(reader),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const METHODS: &[MethodDesc] = &[
        MethodDesc {
            name: "init",
            kind: MethodKind::Init,
            args: &[ArgDesc { name: "supply", ty: <u128 as AbiType>::TYPE }],
            returns: <() as AbiType>::TYPE,
        },
        MethodDesc {
            name: "transfer",
            kind: MethodKind::Mutating,
            args: &[
                ArgDesc { name: "to", ty: <Address as AbiType>::TYPE },
                ArgDesc { name: "amounts", ty: <Vec<Option<(u8, String)>> as AbiType>::TYPE },
            ],
            returns: <(u128, bool) as AbiType>::TYPE,
        },
    ];
    const LEN: usize = section_len(METHODS);
    static SECTION: [u8; LEN] = encode_section::<LEN>(METHODS);

    #[test]
    fn const_section_decodes_to_the_same_abi() {
        let abi = Abi::decode(&SECTION).expect("valid section");
        assert_eq!(abi, Abi::from_descs(METHODS));
        assert_eq!(abi.encode(), SECTION.to_vec(), "runtime and compile-time encodings agree");
        let transfer = abi.method("transfer").expect("transfer present");
        assert_eq!(
            transfer.to_string(),
            "transfer(to: Address, amounts: Vec<Option<(u8, String)>>) -> (u128, bool)  [mutating]"
        );
        assert_eq!(abi.init().map(|m| m.name.as_str()), Some("init"));
    }

    #[test]
    fn bad_sections_are_refused() {
        let mut wrong_version = SECTION.to_vec();
        wrong_version[0] = 9;
        assert_eq!(Abi::decode(&wrong_version), Err(AbiError::UnsupportedVersion { found: 9, expected: 1 }));
        let mut trailing = SECTION.to_vec();
        trailing.push(0);
        assert!(matches!(Abi::decode(&trailing), Err(AbiError::Decode(DecodeError::TrailingBytes { count: 1 }))));
        for cut in 0..SECTION.len() {
            assert!(Abi::decode(&SECTION[..cut]).is_err(), "prefix of {cut} bytes accepted");
        }
        // Two methods with the same name.
        const DUP: &[MethodDesc] = &[METHODS[1], METHODS[1]];
        const DUP_LEN: usize = section_len(DUP);
        let dup = encode_section::<DUP_LEN>(DUP);
        assert_eq!(Abi::decode(&dup), Err(AbiError::DuplicateMethod("transfer".into())));
        // A type nested deeper than the limit.
        let mut deep = vec![ABI_VERSION, 1, 0, 0, 0, 1, 0, 0, 0, b'f', 0, 0, 0, 0, 0];
        deep.extend(core::iter::repeat(type_tag::VEC).take(MAX_TYPE_DEPTH + 2));
        deep.push(type_tag::U8);
        assert_eq!(Abi::decode(&deep), Err(AbiError::TypeTooDeep { limit: MAX_TYPE_DEPTH }));
    }

    #[test]
    fn method_names_are_identifiers() {
        assert!(is_valid_method_name("transfer_from"));
        assert!(is_valid_method_name("_x1"));
        assert!(!is_valid_method_name("1x"));
        assert!(!is_valid_method_name(""));
        assert!(!is_valid_method_name("a-b"));
        assert!(!is_valid_method_name(&"a".repeat(MAX_METHOD_NAME_LEN + 1)));
    }

    #[test]
    fn check_args_agrees_with_full_decoding() {
        use crate::codec::Encode;
        use crate::value::Value;
        let abi = Abi::from_descs(METHODS);
        let transfer = abi.method("transfer").expect("transfer");
        let good = (Address([1; 32]), alloc::vec![Some((7u8, "x".to_string())), None]).encode();
        assert_eq!(transfer.check_args(&good), Ok(()));
        for cut in 0..good.len() {
            let input = &good[..cut];
            assert_eq!(
                transfer.check_args(input).is_ok(),
                Value::decode_as(&transfer.args_type(), input).is_ok(),
                "prefix of {cut} bytes"
            );
        }
        let mut bad_tag = good.clone();
        bad_tag[36] = 5;
        assert_eq!(transfer.check_args(&bad_tag), Err(DecodeError::InvalidOptionTag(5)));
        // Zero-size elements are counted, not walked: up to the limit they are
        // accepted, past it refused, as the decoder does (found by host-api/tests/fuzz.rs).
        let units = Method { name: "u".into(), kind: MethodKind::Mutating, args: alloc::vec![Arg { name: "a".into(), ty: Type::Vec(Box::new(Type::Unit)) }], returns: Type::Unit };
        let at_limit = (MAX_ZERO_SIZE_ELEMENTS as u32).to_le_bytes();
        assert_eq!(units.check_args(&at_limit), Ok(()));
        assert!(Value::decode_as(&units.args_type(), &at_limit).is_ok());
        assert_eq!(units.check_args(&u32::MAX.to_le_bytes()), Err(DecodeError::LengthTooLarge { length: u32::MAX, remaining: 0 }));
    }

    #[test]
    fn an_input_shape_is_its_length_and_its_length_prefixes_and_option_tags() {
        use crate::codec::Encode;
        let arg = |name: &str, desc: &'static TypeDesc| Arg { name: name.into(), ty: Type::from_desc(desc) };
        let method = Method {
            name: "m".into(),
            kind: MethodKind::Mutating,
            args: alloc::vec![
                arg("name", <String as AbiType>::TYPE),
                arg("amount", <u128 as AbiType>::TYPE),
                arg("memo", <Option<String> as AbiType>::TYPE),
                arg("tags", <Vec<String> as AbiType>::TYPE),
                arg("ids", <Vec<u32> as AbiType>::TYPE),
            ],
            returns: Type::Unit,
        };
        assert!(method.has_shapes());
        let input = |name: &str, amount: u128, memo: Option<&str>, tags: &[&str], ids: &[u32]| {
            let tags: Vec<String> = tags.iter().map(|t| String::from(*t)).collect();
            (String::from(name), amount, memo.map(String::from), tags, ids.to_vec()).encode()
        };
        let a = input("alice", 7, None, &["x", "yz"], &[1, 2]);
        let shape = method.input_shape(&a).expect("a valid input has a shape");
        assert_eq!(shape.len as usize, a.len());
        // name's length at 0; the option's tag after name (9) and amount
        // (16); the vector's count, then each string's length; the ids'
        // count only (their elements have one size).
        let le = |v: u32, at: u32| (0..4).map(move |i| (at + i, v.to_le_bytes()[i as usize]));
        let expected: Vec<(u32, u8)> =
            le(5, 0).chain([(25, 0)]).chain(le(2, 26)).chain(le(1, 30)).chain(le(2, 35)).chain(le(2, 41)).collect();
        assert_eq!(shape.fixed, expected);
        // Other values, the same layout: the same shape.
        assert_eq!(method.input_shape(&input("bobby", 9, None, &["q", "rs"], &[5, 6])), Some(shape.clone()));
        // Another length, tag or count: another shape.
        for other in [input("bob", 7, None, &["x", "yz"], &[1, 2]), input("alice", 7, Some(""), &["x", "yz"], &[1, 2]), input("alice", 7, None, &["xy", "z"], &[1, 2]), input("alice", 7, None, &["x", "yz"], &[1])] {
            assert_ne!(method.input_shape(&other), Some(shape.clone()));
        }
        // Not an encoding of the arguments: no shape.
        assert_eq!(method.input_shape(&a[..a.len() - 1]), None);
        let fixed = Method { name: "t".into(), kind: MethodKind::Mutating, args: alloc::vec![arg("to", <Address as AbiType>::TYPE)], returns: Type::Unit };
        assert!(!fixed.has_shapes());
    }

    #[test]
    fn fixed_lengths() {
        assert_eq!(Type::from_desc(<(Address, u128) as AbiType>::TYPE).fixed_len(), Some(48));
        assert_eq!(Type::from_desc(<(Address, String) as AbiType>::TYPE).fixed_len(), None);
    }
}
