//! Deploy-time validation: a module is refused, with a clear error and
//! nothing stored, unless it is a well-formed Chroma contract.
//!
//! Checked: size and count limits; Wasm features (no threads, SIMD, memory64,
//! multi-memory, exceptions, GC, tail calls); imports are exactly host
//! functions of [`IMPORT_MODULE`] with their signatures; no start function;
//! one defined memory, exported as `memory`, within the memory limit; an ABI
//! section that decodes; every ABI method exported as a `() -> ()` function
//! and no other function exported; no export under the VM's reserved prefix.

use std::collections::BTreeSet;

use chroma_host_api::abi::{Abi, AbiError, MethodKind, ABI_SECTION};
use chroma_host_api::host::{HostFn, ValType, HOST_FUNCTIONS, IMPORT_MODULE};
use chroma_host_api::limits::MAX_MEMORY_PAGES;
use wasmparser::{Parser, Payload, Validator};

use crate::instrument::RESERVED_EXPORT_PREFIX;

/// Largest module accepted, in bytes.
pub const MAX_MODULE_SIZE: usize = 512 * 1024;
/// Most functions (defined and imported) a module may have.
pub const MAX_FUNCTIONS: u32 = 10_000;
/// The export name of the contract's memory.
pub const MEMORY_EXPORT: &str = "memory";

/// The Wasm features contracts may use, defined once with the analyzer
/// that must understand them.
pub use chroma_analyzer::contract_features as allowed_features;

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatekeeperError {
    #[error("module is {size} bytes (limit {limit})")]
    ModuleTooLarge { size: usize, limit: usize },
    #[error("invalid or disallowed Wasm: {0}")]
    InvalidWasm(String),
    #[error("module has {count} functions (limit {limit})")]
    TooManyFunctions { count: u32, limit: u32 },
    #[error("import {module}::{name} is not a Chroma host function")]
    UnknownImport { module: String, name: String },
    #[error("import {name} has signature {found}, expected {expected}")]
    ImportSignature { name: String, found: String, expected: String },
    #[error("import {module}::{name} is not a function (only host functions may be imported)")]
    NonFunctionImport { module: String, name: String },
    #[error("module has a start function (contracts run only through entry points)")]
    StartFunction,
    #[error("module must define exactly one memory (not import it), found {count}")]
    MemoryCount { count: u32 },
    #[error("memory starts at {initial} pages (limit {limit})")]
    MemoryTooLarge { initial: u64, limit: u32 },
    #[error("memory is not exported as `memory`")]
    MemoryNotExported,
    #[error("no `{ABI_SECTION}` custom section: build the contract with chroma-sdk's #[contract]")]
    MissingAbi,
    #[error("more than one `{ABI_SECTION}` section")]
    DuplicateAbi,
    #[error("ABI section: {0}")]
    Abi(String),
    #[error("ABI method `{method}` is not exported as a function")]
    MissingExport { method: String },
    #[error("export `{name}` must have type () -> (), found {found}")]
    ExportSignature { name: String, found: String },
    #[error("function export `{name}` is not a method in the ABI")]
    UnlistedExport { name: String },
    #[error("export `{name}`: names starting with `{prefix}` are the VM's")]
    ReservedExport { name: String, prefix: &'static str },
}

impl From<AbiError> for GatekeeperError {
    fn from(e: AbiError) -> Self {
        GatekeeperError::Abi(e.to_string())
    }
}

/// A module that passed validation, with its decoded ABI.
#[derive(Debug, Clone)]
pub struct ValidatedModule {
    pub abi: Abi,
    /// blake3 of the module bytes.
    pub code_hash: [u8; 32],
    /// The host functions it imports, by name.
    pub imports: BTreeSet<String>,
}

fn signature(params: &[wasmparser::ValType], results: &[wasmparser::ValType]) -> String {
    let list = |types: &[wasmparser::ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(params), list(results))
}

fn host_signature(f: &HostFn) -> String {
    let name = |t: &ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    };
    let list = |types: &[ValType]| types.iter().map(name).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(f.params), list(f.results))
}

/// Validates `bytes` as a Chroma contract.
pub fn validate(bytes: &[u8]) -> Result<ValidatedModule, GatekeeperError> {
    if bytes.len() > MAX_MODULE_SIZE {
        return Err(GatekeeperError::ModuleTooLarge { size: bytes.len(), limit: MAX_MODULE_SIZE });
    }
    let mut validator = Validator::new_with_features(allowed_features());
    let types = validator.validate_all(bytes).map_err(|e| GatekeeperError::InvalidWasm(e.to_string()))?;
    let types = types.as_ref();

    let mut abi_section = None;
    let mut memory_count = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| GatekeeperError::InvalidWasm(e.to_string()))? {
            Payload::StartSection { .. } => return Err(GatekeeperError::StartFunction),
            Payload::CustomSection(section) if section.name() == ABI_SECTION => {
                if abi_section.replace(section.data()).is_some() {
                    return Err(GatekeeperError::DuplicateAbi);
                }
            }
            Payload::MemorySection(reader) => memory_count += reader.count(),
            _ => {}
        }
    }

    let function_count = types.function_count();
    if function_count > MAX_FUNCTIONS {
        return Err(GatekeeperError::TooManyFunctions { count: function_count, limit: MAX_FUNCTIONS });
    }
    let mut imports = BTreeSet::new();
    for (module, name, entity) in types.core_imports().into_iter().flatten() {
        let host = HOST_FUNCTIONS
            .iter()
            .find(|f| module == IMPORT_MODULE && f.name == name)
            .ok_or_else(|| GatekeeperError::UnknownImport { module: module.into(), name: name.into() })?;
        let wasmparser::types::EntityType::Func(id) = entity else {
            return Err(GatekeeperError::NonFunctionImport { module: module.into(), name: name.into() });
        };
        let func = types[id].unwrap_func();
        let found = signature(func.params(), func.results());
        let expected = host_signature(host);
        if found != expected {
            return Err(GatekeeperError::ImportSignature { name: name.into(), found, expected });
        }
        imports.insert(name.to_string());
    }

    if memory_count != 1 || types.memory_count() != 1 {
        return Err(GatekeeperError::MemoryCount { count: memory_count });
    }
    let memory = types.memory_at(0);
    if memory.initial > u64::from(MAX_MEMORY_PAGES) {
        return Err(GatekeeperError::MemoryTooLarge { initial: memory.initial, limit: MAX_MEMORY_PAGES });
    }

    let abi = Abi::decode(abi_section.ok_or(GatekeeperError::MissingAbi)?)?;
    let mut memory_exported = false;
    let mut exported_funcs = BTreeSet::new();
    for (name, entity) in types.core_exports().into_iter().flatten() {
        if name.starts_with(RESERVED_EXPORT_PREFIX) {
            return Err(GatekeeperError::ReservedExport { name: name.into(), prefix: RESERVED_EXPORT_PREFIX });
        }
        match entity {
            wasmparser::types::EntityType::Memory(_) if name == MEMORY_EXPORT => memory_exported = true,
            wasmparser::types::EntityType::Func(id) => {
                if abi.method(name).is_none() {
                    return Err(GatekeeperError::UnlistedExport { name: name.into() });
                }
                let func = types[id].unwrap_func();
                if !func.params().is_empty() || !func.results().is_empty() {
                    return Err(GatekeeperError::ExportSignature {
                        name: name.into(),
                        found: signature(func.params(), func.results()),
                    });
                }
                exported_funcs.insert(name);
            }
            // Globals (such as __heap_base), tables and other memories' names are inert.
            _ => {}
        }
    }
    if !memory_exported {
        return Err(GatekeeperError::MemoryNotExported);
    }
    if let Some(missing) = abi.methods.iter().find(|m| !exported_funcs.contains(m.name.as_str())) {
        return Err(GatekeeperError::MissingExport { method: missing.name.clone() });
    }
    debug_assert!(abi.methods.iter().filter(|m| m.kind == MethodKind::Init).count() <= 1);
    Ok(ValidatedModule { abi, code_hash: *blake3::hash(bytes).as_bytes(), imports })
}
