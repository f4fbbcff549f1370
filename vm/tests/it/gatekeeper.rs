//! Modules the gatekeeper must refuse, each with its own error, and nothing
//! stored when it does.

use chroma_host_api::MethodKind::Mutating;
use chroma_vm::gatekeeper::{validate, GatekeeperError, MAX_FUNCTIONS, MAX_MODULE_SIZE};
use chroma_vm::Outcome;

use crate::support::{deploy_bytes, wat_contract, Chain};

const INPUT: &str = r#"(import "chroma" "input" (func (param i32) (result i32)))"#;
const MEMORY: &str = r#"(memory (export "memory") 1)"#;

fn refused(body: &str, methods: &[(&str, chroma_host_api::MethodKind)]) -> GatekeeperError {
    match validate(&wat_contract(body, methods)) {
        Ok(_) => panic!("accepted: {body}"),
        Err(e) => e,
    }
}

#[test]
fn a_minimal_contract_is_accepted() {
    let module = validate(&wat_contract(&format!(r#"{INPUT} {MEMORY} (func (export "run"))"#), &[("run", Mutating)]))
        .expect("valid");
    assert_eq!(module.abi.methods.len(), 1);
    assert!(module.imports.contains("input"));
}

#[test]
fn bad_imports() {
    let e = refused(&format!(r#"(import "env" "abort" (func)) {MEMORY} (func (export "run"))"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::UnknownImport { module: "env".into(), name: "abort".into() });
    let e = refused(&format!(r#"(import "chroma" "nope" (func)) {MEMORY} (func (export "run"))"#), &[("run", Mutating)]);
    assert!(matches!(e, GatekeeperError::UnknownImport { .. }));
    let e = refused(&format!(r#"(import "chroma" "input" (func (param i64))) {MEMORY} (func (export "run"))"#), &[("run", Mutating)]);
    assert_eq!(
        e,
        GatekeeperError::ImportSignature { name: "input".into(), found: "(i64) -> ()".into(), expected: "(i32) -> (i32)".into() }
    );
    let e = refused(r#"(import "chroma" "memory" (memory 1)) (export "memory" (memory 0)) (func (export "run"))"#, &[("run", Mutating)]);
    assert!(matches!(e, GatekeeperError::UnknownImport { .. }), "{e}");
    let e = refused(r#"(import "chroma" "input" (memory 1)) (export "memory" (memory 0)) (func (export "run"))"#, &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::NonFunctionImport { module: "chroma".into(), name: "input".into() });
}

#[test]
fn bad_structure() {
    let e = refused(&format!(r#"{MEMORY} (func $s) (start $s) (func (export "run"))"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::StartFunction);
    let e = refused(r#"(memory 1) (func (export "run"))"#, &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::MemoryNotExported);
    let e = refused(r#"(func (export "run"))"#, &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::MemoryCount { count: 0 });
    let e = refused(r#"(memory (export "memory") 100) (func (export "run"))"#, &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::MemoryTooLarge { initial: 100, limit: 64 });
    // Imported and defined functions count together.
    let many: String = (0..MAX_FUNCTIONS).map(|_| "(func)").collect();
    let e = refused(&format!(r#"{INPUT} {MEMORY} (func (export "run")) {many}"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::TooManyFunctions { count: MAX_FUNCTIONS + 2, limit: MAX_FUNCTIONS });
    let at_limit: String = (0..MAX_FUNCTIONS - 2).map(|_| "(func)").collect();
    assert!(validate(&wat_contract(&format!(r#"{INPUT} {MEMORY} (func (export "run")) {at_limit}"#), &[("run", Mutating)])).is_ok());
}

#[test]
fn abi_and_exports_must_agree() {
    let e = refused(&format!(r#"{MEMORY} (func (export "run"))"#), &[("run", Mutating), ("other", Mutating)]);
    assert_eq!(e, GatekeeperError::MissingExport { method: "other".into() });
    let e = refused(&format!(r#"{MEMORY} (func (export "run")) (func (export "hidden"))"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::UnlistedExport { name: "hidden".into() });
    // The VM exports its write tracking under a reserved prefix (see `instrument`).
    let e = refused(&format!(r#"{MEMORY} (func (export "run")) (global (export "chroma:written") i32 (i32.const 0))"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::ReservedExport { name: "chroma:written".into(), prefix: "chroma:" });
    let e = refused(&format!(r#"{MEMORY} (func (export "run") (param i32))"#), &[("run", Mutating)]);
    assert_eq!(e, GatekeeperError::ExportSignature { name: "run".into(), found: "(i32) -> ()".into() });
    let no_abi = wat::parse_str(&format!(r#"(module {MEMORY} (func (export "run")))"#)).expect("wat");
    assert_eq!(validate(&no_abi).err(), Some(GatekeeperError::MissingAbi));
}

#[test]
fn disallowed_features_and_garbage() {
    let simd = format!(r#"{MEMORY} (func (export "run") (drop (v128.const i64x2 0 0)))"#);
    assert!(matches!(refused(&simd, &[("run", Mutating)]), GatekeeperError::InvalidWasm(_)));
    let threads = r#"(memory (export "memory") 1 1 shared) (func (export "run"))"#;
    assert!(matches!(refused(threads, &[("run", Mutating)]), GatekeeperError::InvalidWasm(_)));
    assert!(matches!(validate(b"not wasm at all"), Err(GatekeeperError::InvalidWasm(_))));
    let huge = vec![0u8; MAX_MODULE_SIZE + 1];
    assert_eq!(validate(&huge).err(), Some(GatekeeperError::ModuleTooLarge { size: MAX_MODULE_SIZE + 1, limit: MAX_MODULE_SIZE }));
}

#[test]
fn a_refused_deploy_stores_nothing_but_the_nonce() {
    let mut chain = Chain::new();
    let before = chain.vm.state().len();
    let receipt = deploy_bytes(&mut chain, "alice", b"\0asm garbage".to_vec());
    assert!(matches!(receipt.outcome, Outcome::InvalidModule(_)), "{}", receipt.outcome);
    assert_eq!(receipt.deployed, None);
    assert_eq!(chain.vm.state().len(), before + 1, "only the sender's nonce is written");
}
