//! Bounded fuzzing (proptest) of everything that decodes untrusted bytes or
//! text at the host's edge: ABI sections (from deployed modules), call
//! arguments (from transactions) and typed values (from the CLI). Nothing
//! may panic, the VM's argument check must agree with the decoder, and
//! whatever decodes must re-encode to the same bytes.

use chroma_host_api::abi::{Abi, Arg, Method, MethodKind, Type};
use chroma_host_api::value::Value;
use chroma_host_api::Address;
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = Type> {
    prop_oneof![
        Just(Type::Unit),
        Just(Type::Bool),
        Just(Type::U8),
        Just(Type::U16),
        Just(Type::U32),
        Just(Type::U64),
        Just(Type::U128),
        Just(Type::I8),
        Just(Type::I16),
        Just(Type::I32),
        Just(Type::I64),
        Just(Type::I128),
        Just(Type::Address),
        Just(Type::String),
    ]
}

fn any_type() -> impl Strategy<Value = Type> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Type::Vec(Box::new(t))),
            inner.clone().prop_map(|t| Type::Option(Box::new(t))),
            prop::collection::vec(inner, 0..4).prop_map(Type::Tuple),
        ]
    })
}

/// Bytes biased towards what decoders branch on: small lengths, tags 0/1.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![3 => 0u8..3, 1 => any::<u8>()], 0..96)
}

/// Text for `Value::parse`: arbitrary printable text, text made of the
/// grammar's characters, and well-formed atoms.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "[\\[\\](), 0-9a-fx_-]{0,24}",
        "(none|true|false|alice|\\(\\)|0x[0-9a-f]{0,66}|-?[0-9]{1,40}|\\[[0-9, ]{0,12}\\]|\\([0-9a-z, ]{0,16}\\))",
    ]
}

fn method_with(ty: Type) -> Method {
    Method { name: "m".into(), kind: MethodKind::Mutating, args: vec![Arg { name: "a".into(), ty }], returns: Type::Unit }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn argument_check_agrees_with_the_decoder_and_decoded_values_reencode(ty in any_type(), bytes in input_bytes()) {
        let checked = method_with(ty.clone()).check_args(&bytes);
        let decoded = Value::decode_as(&ty, &bytes);
        prop_assert_eq!(checked.is_ok(), decoded.is_ok(), "check_args {:?} vs decode_as {:?}", checked, decoded);
        if let Ok(value) = decoded {
            prop_assert_eq!(value.encode_as(&ty).expect("a decoded value encodes"), bytes, "canonical encoding");
        }
    }

    #[test]
    fn abi_sections_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(abi) = Abi::decode(&bytes) {
            prop_assert_eq!(Abi::decode(&abi.encode()).expect("re-decodes"), abi);
        }
    }

    #[test]
    fn every_valid_abi_round_trips(
        methods in prop::collection::vec(("[a-z][a-z0-9_]{0,6}", 0..3usize, prop::collection::vec(any_type(), 0..3), any_type()), 0..5),
    ) {
        let mut abi = Abi { methods: Vec::new() };
        for (name, kind, types, returns) in methods {
            if abi.methods.iter().any(|m| m.name == name) {
                continue;
            }
            let kind = [MethodKind::Mutating, MethodKind::View, MethodKind::Mutating][kind];
            let args = types.into_iter().enumerate().map(|(i, ty)| Arg { name: format!("a{i}"), ty }).collect();
            abi.methods.push(Method { name, kind, args, returns });
        }
        prop_assert_eq!(Abi::decode(&abi.encode()), Ok(abi));
    }

    #[test]
    fn mutated_abi_sections_decode_or_fail_cleanly(
        types in prop::collection::vec(any_type(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let abi = Abi {
            methods: types
                .into_iter()
                .enumerate()
                .map(|(i, ty)| Method { name: format!("m{i}"), kind: MethodKind::View, args: vec![Arg { name: "x".into(), ty: ty.clone() }], returns: ty })
                .collect(),
        };
        let mut bytes = abi.encode();
        prop_assert_eq!(Abi::decode(&bytes).expect("a valid section"), abi);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Abi::decode(&bytes);
        let _ = Abi::decode(&bytes[..cut.index(bytes.len() + 1)]);
    }

    #[test]
    fn typed_values_parse_or_fail_cleanly(ty in any_type(), text in value_text()) {
        let resolve = |name: &str| (name == "alice").then_some(Address([1; 32]));
        if let Ok(value) = Value::parse(&ty, &text, &resolve) {
            let encoded = value.encode_as(&ty);
            prop_assert!(encoded.is_ok(), "{:?} parsed from {:?} does not encode as {}", value, text, ty);
            let decoded = Value::decode_as(&ty, &encoded.expect("checked"));
            prop_assert_eq!(decoded.ok(), Some(value), "parse, encode, decode round trip of {:?} as {}", text, ty);
        }
    }
}
