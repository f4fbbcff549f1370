//! The committed Wasm of every example contract is a valid Chroma module whose
//! ABI is exactly the one its source declares.

use std::collections::BTreeSet;

use chroma_host_api::abi::Abi;
use chroma_host_api::HOST_FUNCTIONS;
use chroma_vm::gatekeeper;

use crate::support::{wasm, CONTRACTS};

fn native_abi(name: &str) -> Abi {
    match name {
        "token" => token::token::CONTRACT.abi(),
        "amm" => amm::amm::CONTRACT.abi(),
        "lending" => lending::lending::CONTRACT.abi(),
        "registry" => registry::registry::CONTRACT.abi(),
        "counter" => counter::counter::CONTRACT.abi(),
        other => panic!("unknown contract {other}"),
    }
}

#[test]
fn every_contract_passes_the_gatekeeper_with_its_source_abi() {
    let host: BTreeSet<&str> = HOST_FUNCTIONS.iter().map(|f| f.name).collect();
    for name in CONTRACTS {
        let module = gatekeeper::validate(&wasm(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(module.abi, native_abi(name), "{name}: the embedded ABI differs from the source");
        assert!(!module.abi.methods.is_empty());
        for import in &module.imports {
            assert!(host.contains(import.as_str()), "{name} imports {import}");
        }
        // Every contract uses at least the input and storage.
        for needed in ["input", "storage_read"] {
            assert!(module.imports.contains(needed), "{name} does not import {needed}");
        }
    }
}

#[test]
fn exports_are_exactly_memory_and_the_abi_methods() {
    for name in CONTRACTS {
        let bytes = wasm(name);
        let abi = native_abi(name);
        let mut funcs = BTreeSet::new();
        let mut memories = BTreeSet::new();
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            if let wasmparser::Payload::ExportSection(reader) = payload.expect("parses") {
                for export in reader {
                    let export = export.expect("export");
                    match export.kind {
                        wasmparser::ExternalKind::Func => funcs.insert(export.name.to_string()),
                        wasmparser::ExternalKind::Memory => memories.insert(export.name.to_string()),
                        _ => false,
                    };
                }
            }
        }
        let methods: BTreeSet<String> = abi.methods.iter().map(|m| m.name.clone()).collect();
        assert_eq!(funcs, methods, "{name}");
        assert_eq!(memories, BTreeSet::from(["memory".to_string()]), "{name}");
    }
}
