//! Values of ABI types known only at run time: what the CLI and test tools use
//! to encode `--arg amount=100` by the method's ABI and to show results typed.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::abi::Type;
use crate::address::Address;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

pub use crate::limits::MAX_ZERO_SIZE_ELEMENTS;

/// A value of some [`Type`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Unit,
    Bool(bool),
    /// Any unsigned integer type.
    UInt(u128),
    /// Any signed integer type.
    Int(i128),
    Address(Address),
    String(String),
    List(Vec<Value>),
    Option(Option<Box<Value>>),
    Tuple(Vec<Value>),
}

/// Why a value does not fit a type, or text does not parse as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// The value is not of the expected type.
    Mismatch { expected: String },
    /// An integer outside the type's range.
    OutOfRange { ty: String, value: String },
    /// Text that is not a value of the type.
    Parse { ty: String, text: String, reason: String },
    Decode(DecodeError),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Mismatch { expected } => write!(f, "expected a value of type {expected}"),
            ValueError::OutOfRange { ty, value } => write!(f, "{value} is out of range for {ty}"),
            ValueError::Parse { ty, text, reason } => write!(f, "cannot read {text:?} as {ty}: {reason}"),
            ValueError::Decode(e) => write!(f, "{e}"),
        }
    }
}

impl From<DecodeError> for ValueError {
    fn from(e: DecodeError) -> Self {
        ValueError::Decode(e)
    }
}

fn uint_bits(ty: &Type) -> Option<u32> {
    Some(match ty {
        Type::U8 => 8,
        Type::U16 => 16,
        Type::U32 => 32,
        Type::U64 => 64,
        Type::U128 => 128,
        _ => return None,
    })
}

fn int_bits(ty: &Type) -> Option<u32> {
    Some(match ty {
        Type::I8 => 8,
        Type::I16 => 16,
        Type::I32 => 32,
        Type::I64 => 64,
        Type::I128 => 128,
        _ => return None,
    })
}

impl Value {
    /// Encodes the value as `ty`.
    pub fn encode_as(&self, ty: &Type) -> Result<Vec<u8>, ValueError> {
        let mut out = Vec::new();
        self.encode_as_to(ty, &mut out)?;
        Ok(out)
    }

    fn encode_as_to(&self, ty: &Type, out: &mut Vec<u8>) -> Result<(), ValueError> {
        let mismatch = || ValueError::Mismatch { expected: ty.to_string() };
        match (ty, self) {
            (Type::Unit, Value::Unit) => {}
            (Type::Bool, Value::Bool(b)) => b.encode_to(out),
            (_, Value::UInt(v)) if uint_bits(ty).is_some() => {
                let bits = uint_bits(ty).unwrap_or(128);
                if bits < 128 && *v >> bits != 0 {
                    return Err(ValueError::OutOfRange { ty: ty.to_string(), value: v.to_string() });
                }
                out.write(&v.to_le_bytes()[..(bits / 8) as usize]);
            }
            (_, Value::Int(v)) if int_bits(ty).is_some() => {
                let bits = int_bits(ty).unwrap_or(128);
                let min = if bits == 128 { i128::MIN } else { -(1i128 << (bits - 1)) };
                let max = if bits == 128 { i128::MAX } else { (1i128 << (bits - 1)) - 1 };
                if *v < min || *v > max {
                    return Err(ValueError::OutOfRange { ty: ty.to_string(), value: v.to_string() });
                }
                out.write(&v.to_le_bytes()[..(bits / 8) as usize]);
            }
            (Type::Address, Value::Address(a)) => a.encode_to(out),
            (Type::String, Value::String(s)) => s.encode_to(out),
            (Type::Vec(inner), Value::List(items)) => {
                (items.len() as u32).encode_to(out);
                for item in items {
                    item.encode_as_to(inner, out)?;
                }
            }
            (Type::Option(_), Value::Option(None)) => out.push(0),
            (Type::Option(inner), Value::Option(Some(v))) => {
                out.push(1);
                v.encode_as_to(inner, out)?;
            }
            (Type::Tuple(fields), Value::Tuple(values)) if fields.len() == values.len() => {
                for (field, value) in fields.iter().zip(values) {
                    value.encode_as_to(field, out)?;
                }
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    /// Decodes a whole buffer as a value of `ty`.
    pub fn decode_as(ty: &Type, bytes: &[u8]) -> Result<Value, ValueError> {
        let mut reader = Reader::new(bytes);
        let value = Value::decode_from(ty, &mut reader)?;
        reader.finish()?;
        Ok(value)
    }

    fn decode_from(ty: &Type, r: &mut Reader<'_>) -> Result<Value, ValueError> {
        Ok(match ty {
            Type::Unit => Value::Unit,
            Type::Bool => Value::Bool(bool::decode_from(r)?),
            Type::U8 => Value::UInt(u8::decode_from(r)?.into()),
            Type::U16 => Value::UInt(u16::decode_from(r)?.into()),
            Type::U32 => Value::UInt(u32::decode_from(r)?.into()),
            Type::U64 => Value::UInt(u64::decode_from(r)?.into()),
            Type::U128 => Value::UInt(u128::decode_from(r)?),
            Type::I8 => Value::Int(i8::decode_from(r)?.into()),
            Type::I16 => Value::Int(i16::decode_from(r)?.into()),
            Type::I32 => Value::Int(i32::decode_from(r)?.into()),
            Type::I64 => Value::Int(i64::decode_from(r)?.into()),
            Type::I128 => Value::Int(i128::decode_from(r)?),
            Type::Address => Value::Address(Address::decode_from(r)?),
            Type::String => Value::String(String::decode_from(r)?),
            Type::Vec(inner) => {
                let len = r.length(inner.min_encoded_len())?;
                // Zero-size elements cost no input bytes; do not let a length
                // prefix alone materialise billions of them.
                if inner.fixed_len() == Some(0) && len > MAX_ZERO_SIZE_ELEMENTS {
                    return Err(DecodeError::LengthTooLarge { length: len as u32, remaining: r.remaining() }.into());
                }
                let mut items = Vec::with_capacity(if inner.min_encoded_len() == 0 { 0 } else { len });
                for _ in 0..len {
                    items.push(Value::decode_from(inner, r)?);
                }
                Value::List(items)
            }
            Type::Option(inner) => match r.take(1)?[0] {
                0 => Value::Option(None),
                1 => Value::Option(Some(Box::new(Value::decode_from(inner, r)?))),
                tag => return Err(DecodeError::InvalidOptionTag(tag).into()),
            },
            Type::Tuple(fields) => {
                Value::Tuple(fields.iter().map(|f| Value::decode_from(f, r)).collect::<Result<_, _>>()?)
            }
        })
    }

    /// Parses text as a value of `ty`. `resolve` turns names (such as `alice`)
    /// into addresses; 64 hex digits are always accepted.
    ///
    /// Syntax: integers in decimal (`_` allowed) or `0x` hex; `true` / `false`;
    /// strings as they are; lists `[a, b]` (a `Vec<u8>` also as `0x` hex);
    /// options `none` or the value; tuples `(a, b)`.
    pub fn parse(ty: &Type, text: &str, resolve: &dyn Fn(&str) -> Option<Address>) -> Result<Value, ValueError> {
        let text = if matches!(ty, Type::String) { text } else { text.trim() };
        let fail = |reason: &str| ValueError::Parse { ty: ty.to_string(), text: text.into(), reason: reason.into() };
        match ty {
            Type::Unit => match text {
                "" | "()" => Ok(Value::Unit),
                _ => Err(fail("expected () or nothing")),
            },
            Type::Bool => match text {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(fail("expected true or false")),
            },
            _ if uint_bits(ty).is_some() => {
                let value = parse_u128(text).ok_or_else(|| fail("expected an unsigned integer"))?;
                let v = Value::UInt(value);
                v.encode_as(ty)?;
                Ok(v)
            }
            _ if int_bits(ty).is_some() => {
                let (negative, digits) = match text.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, text),
                };
                let magnitude = parse_u128(digits).ok_or_else(|| fail("expected an integer"))?;
                let value = if negative {
                    0i128.checked_sub_unsigned(magnitude)
                } else {
                    i128::try_from(magnitude).ok()
                }
                .ok_or_else(|| ValueError::OutOfRange { ty: ty.to_string(), value: text.into() })?;
                let v = Value::Int(value);
                v.encode_as(ty)?;
                Ok(v)
            }
            Type::Address => Address::from_hex(text)
                .or_else(|| resolve(text))
                .map(Value::Address)
                .ok_or_else(|| fail("not an account name or a 64-digit hex address")),
            Type::String => Ok(Value::String(text.into())),
            Type::Vec(inner) => {
                if **inner == Type::U8 {
                    if let Some(hex) = text.strip_prefix("0x") {
                        return parse_hex_bytes(hex)
                            .map(|b| Value::List(b.into_iter().map(|x| Value::UInt(x.into())).collect()))
                            .ok_or_else(|| fail("invalid hex"));
                    }
                }
                let body = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .ok_or_else(|| fail("expected [a, b, ...]"))?;
                split_top_level(body)
                    .into_iter()
                    .map(|part| Value::parse(inner, part, resolve))
                    .collect::<Result<_, _>>()
                    .map(Value::List)
            }
            Type::Option(inner) => match text {
                "none" | "None" | "null" => Ok(Value::Option(None)),
                _ => Ok(Value::Option(Some(Box::new(Value::parse(inner, text, resolve)?)))),
            },
            Type::Tuple(fields) => {
                let body = text
                    .strip_prefix('(')
                    .and_then(|t| t.strip_suffix(')'))
                    .ok_or_else(|| fail("expected (a, b, ...)"))?;
                let parts = split_top_level(body);
                if parts.len() != fields.len() {
                    return Err(fail(&format!("expected {} field(s), found {}", fields.len(), parts.len())));
                }
                fields
                    .iter()
                    .zip(parts)
                    .map(|(f, p)| Value::parse(f, p, resolve))
                    .collect::<Result<_, _>>()
                    .map(Value::Tuple)
            }
            _ => Err(fail("unsupported type")),
        }
    }
}

fn parse_u128(text: &str) -> Option<u128> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(hex) = cleaned.strip_prefix("0x") {
        return u128::from_str_radix(hex, 16).ok();
    }
    if cleaned.is_empty() || !cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    cleaned.parse().ok()
}

fn parse_hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Splits on commas that are not inside brackets or parentheses.
fn split_top_level(body: &str) -> Vec<&str> {
    if body.trim().is_empty() {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(body[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(body[start..].trim());
    parts
}

/// The syntax [`Value::parse`] reads (strings are quoted here for clarity).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unit => f.write_str("()"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::UInt(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Address(a) => write!(f, "{a}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Option(None) => f.write_str("none"),
            Value::Option(Some(v)) => write!(f, "{v}"),
            Value::List(items) | Value::Tuple(items) => {
                let (open, close) = if matches!(self, Value::List(_)) { ("[", "]") } else { ("(", ")") };
                f.write_str(open)?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str(close)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::AbiType;
    use alloc::vec;

    fn no_names(_: &str) -> Option<Address> {
        None
    }

    #[test]
    fn parse_encode_matches_static_encoding() {
        let alice = Address([0xaa; 32]);
        let resolve = |name: &str| (name == "alice").then_some(alice);
        let ty = Type::from_desc(<(Address, u128, Vec<u16>, Option<String>, i32) as AbiType>::TYPE);
        let value = Value::parse(&ty, "(alice, 1_000, [1, 2,3], none, -7)", &resolve).expect("parses");
        let bytes = value.encode_as(&ty).expect("encodes");
        assert_eq!(bytes, (alice, 1000u128, vec![1u16, 2, 3], None::<String>, -7i32).encode());
        assert_eq!(Value::decode_as(&ty, &bytes), Ok(value));
    }

    #[test]
    fn range_and_syntax_errors() {
        assert!(matches!(Value::parse(&Type::U8, "256", &no_names), Err(ValueError::OutOfRange { .. })));
        assert!(matches!(Value::parse(&Type::I8, "-129", &no_names), Err(ValueError::OutOfRange { .. })));
        assert_eq!(Value::parse(&Type::I8, "-128", &no_names), Ok(Value::Int(-128)));
        assert!(matches!(Value::parse(&Type::U128, "12x", &no_names), Err(ValueError::Parse { .. })));
        assert!(matches!(Value::parse(&Type::U128, "-1", &no_names), Err(ValueError::Parse { .. })));
        assert!(matches!(Value::parse(&Type::Address, "bob", &no_names), Err(ValueError::Parse { .. })));
        assert!(matches!(Value::parse(&Type::Bool, "yes", &no_names), Err(ValueError::Parse { .. })));
        let pair = Type::Tuple(vec![Type::U8, Type::U8]);
        assert!(matches!(Value::parse(&pair, "(1)", &no_names), Err(ValueError::Parse { .. })));
        assert_eq!(Value::UInt(300).encode_as(&Type::U8), Err(ValueError::OutOfRange { ty: "u8".into(), value: "300".into() }));
        assert!(matches!(Value::Bool(true).encode_as(&Type::U8), Err(ValueError::Mismatch { .. })));
    }

    #[test]
    fn huge_zero_size_lists_are_refused() {
        let ty = Type::Vec(Box::new(Type::Unit));
        assert!(matches!(Value::decode_as(&ty, &u32::MAX.to_le_bytes()), Err(ValueError::Decode(DecodeError::LengthTooLarge { .. }))));
        assert_eq!(Value::decode_as(&ty, &3u32.to_le_bytes()), Ok(Value::List(vec![Value::Unit; 3])));
    }

    #[test]
    fn bytes_as_hex_and_display() {
        let ty = Type::Vec(alloc::boxed::Box::new(Type::U8));
        let v = Value::parse(&ty, "0x0aff", &no_names).expect("hex bytes");
        assert_eq!(v.encode_as(&ty).expect("encodes"), vec![2, 0, 0, 0, 0x0a, 0xff]);
        assert_eq!(v.to_string(), "[10, 255]");
        assert_eq!(Value::Option(Some(Box::new(Value::String("x".into())))).to_string(), "\"x\"");
    }
}
