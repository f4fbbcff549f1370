//! The analyzer on the committed example contracts and on broken modules.

use chroma_analyzer::{analyze, describe_key, ArgNames, Byte, ContractSummary, KeyTemplate};
use chroma_host_api::Abi;
use proptest::prelude::*;

fn wasm(name: &str) -> Vec<u8> {
    let path = format!("{}/../contracts/wasm/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The ABI the SDK embeds (the custom section is the module's last).
fn abi(bytes: &[u8]) -> Abi {
    let name = chroma_host_api::abi::ABI_SECTION.as_bytes();
    let at = bytes.windows(name.len()).rposition(|w| w == name).expect("ABI section");
    Abi::decode(&bytes[at + name.len()..]).expect("ABI decodes")
}

fn describe(summary: &ContractSummary, abi: &Abi, entry: &str) -> Vec<String> {
    let e = summary.entry(entry).unwrap_or_else(|| panic!("no entry {entry}"));
    let names = abi.method(entry).map(ArgNames::from_method).unwrap_or_default();
    let mut out = Vec::new();
    out.extend(e.reads.iter().map(|k| format!("read {}", describe_key(k, &e.reads, &names, 0))));
    out.extend(e.writes.iter().map(|k| format!("write {}", describe_key(k, &e.reads, &names, 0))));
    out.extend(e.adds.iter().map(|k| format!("add {}", describe_key(k, &e.reads, &names, 0))));
    out
}

#[test]
fn token_transfer_is_exact() {
    let bytes = wasm("token");
    let summary = analyze(&bytes).expect("analyses");
    let abi = abi(&bytes);
    assert_eq!(describe(&summary, &abi, "transfer"), ["read slot3[caller]", "write slot3[caller]", "add slot3[arg.to]"]);
    assert_eq!(describe(&summary, &abi, "approve"), ["write slot4[caller ‖ arg.spender]"]);
    assert_eq!(describe(&summary, &abi, "balance_of"), ["read slot3[arg.owner]"]);
    let transfer = summary.entry("transfer").expect("transfer");
    assert!(transfer.is_precise() && transfer.calls.is_empty());
    // The key bytes are the caller's 32 address bytes, in order.
    assert_eq!(transfer.reads[0].bytes, (0..32).map(Byte::Caller).collect::<Vec<_>>());
}

#[test]
fn registering_a_name_is_exact_for_each_length_of_name() {
    use chroma_analyzer::{analyze_for_shape, AccessSummary};
    use chroma_host_api::Encode;
    let bytes = wasm("registry");
    let summary = analyze(&bytes).expect("analyses");
    let abi = abi(&bytes);
    // Not knowing the name's length, the analysis loses the key.
    let register = summary.entry("register").expect("register");
    assert!(register.by_shape && !register.is_precise());
    // Entries that take no string, vector or option never ask for a shape.
    let token = analyze(&wasm("token")).expect("analyses");
    assert!(token.entries.iter().all(|e| !e.by_shape));
    let slot = |n: usize| -> Vec<Byte> {
        (n as u32).to_le_bytes().into_iter().map(Byte::Const).chain((4..4 + n as u16).map(Byte::Input)).collect()
    };
    let key = |k: &KeyTemplate| (k.slot, k.bytes.to_vec(), k.exact);
    for n in [1usize, 7, 12, 22, 33, 64] {
        let name = "n".repeat(n);
        let input = (name,).encode();
        for method in ["register", "transfer", "resolve"] {
            let method_abi = abi.method(method).expect("in the ABI");
            let mut input = input.clone();
            if method == "transfer" {
                input.extend_from_slice(&[9; 32]);
            }
            let shape = method_abi.input_shape(&input).expect("a valid input");
            let shaped: AccessSummary = analyze_for_shape(&bytes, method, &shape).unwrap_or_else(|e| panic!("{method}, {n} bytes: {e}"));
            assert!(shaped.is_precise(), "{method}, a name of {n} bytes: {shaped:?}");
            // The owner of the name: its length prefix, then its bytes from the input.
            let owner = (Some(0), slot(n), true);
            assert_eq!(shaped.reads.iter().map(key).collect::<Vec<_>>(), [owner.clone()], "{method}, {n} bytes: reads");
            let writes: Vec<_> = shaped.writes.iter().map(key).collect();
            let adds: Vec<_> = shaped.adds.iter().map(key).collect();
            match method {
                "register" => {
                    assert_eq!(writes, [owner.clone()]);
                    assert_eq!(adds, [(Some(1), Vec::new(), true)], "the count");
                }
                "transfer" => assert_eq!((writes, adds), (vec![owner.clone()], Vec::new())),
                _ => assert_eq!((writes, adds), (Vec::new(), Vec::new())),
            }
        }
    }
    // Too long an input is refused, not analysed for minutes.
    let long = abi.method("register").and_then(|m| m.input_shape(&("n".repeat(200),).encode())).expect("valid");
    assert!(analyze_for_shape(&bytes, "register", &long).is_err());
    assert!(analyze_for_shape(&bytes, "no_such_entry", &long).is_err());
}

#[test]
fn every_example_contract_analyses_within_its_budget() {
    for name in ["token", "amm", "lending", "registry", "counter"] {
        let summary = analyze(&wasm(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!summary.entries.is_empty(), "{name} has entry points");
        for entry in &summary.entries {
            assert!(entry.unbounded.is_none(), "{name}.{} is unbounded: {:?}", entry.name, entry.unbounded);
            assert!(entry.steps < chroma_analyzer::MODULE_BUDGET, "{name}.{} took {} steps", entry.name, entry.steps);
        }
    }
}

#[test]
fn calls_name_their_callee_and_method() {
    let summary = analyze(&wasm("lending")).expect("analyses");
    let deposit = summary.entry("deposit").expect("deposit");
    assert!(
        deposit.calls.iter().any(|c| c.method.as_deref() == Some("transfer_from")
            && c.args.as_ref().is_some_and(|a| a[..32] == (0..32).map(Byte::Caller).collect::<Vec<_>>()[..])),
        "deposit pulls tokens from the caller: {:?}",
        deposit.calls
    );
    let abi_lending = abi(&wasm("lending"));
    assert_eq!(describe(&summary, &abi_lending, "deposit"), ["read slot0", "add slot4[caller]", "add slot2"]);
}

#[test]
fn no_wildcards_in_the_defi_entry_points() {
    let any = KeyTemplate::any();
    for (name, entries) in [
        ("token", &["transfer", "transfer_from", "approve", "mint"][..]),
        ("amm", &["swap", "remove_liquidity"][..]),
        ("lending", &["deposit", "borrow", "withdraw"][..]),
    ] {
        let summary = analyze(&wasm(name)).expect("analyses");
        for entry in entries {
            let e = summary.entry(entry).expect("entry");
            for key in e.reads.iter().chain(&e.writes).chain(&e.adds) {
                assert!(*key != any && key.slot.is_some(), "{name}.{entry} has a contract-wide key");
            }
            for call in &e.calls {
                assert!(call.method.is_some() && !call.callee.contains(&Byte::Unknown), "{name}.{entry}: unresolved call {call:?}");
            }
        }
    }
    let token = analyze(&wasm("token")).expect("analyses");
    let from = token.entry("transfer_from").expect("transfer_from");
    assert!(from.is_precise(), "transfer_from: every key exact: {from:?}");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(analyze(b"").is_err());
    assert!(analyze(b"\0asm\x01\0\0\0garbage").is_err());
    let mut truncated = wasm("counter");
    truncated.truncate(truncated.len() / 2);
    assert!(analyze(&truncated).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Mutated contracts: either refused or analysed; never a panic or a hang
    /// (the interpreter's budget bounds the time).
    #[test]
    fn mutated_modules_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = wasm("counter");
        let len = bytes.len();
        for (at, value) in flips {
            bytes[at % len] = value;
        }
        let _ = analyze(&bytes);
    }

    /// An analysis by shape with any shape, even one no valid input has
    /// (a length prefix past the input's end, an option tag of 7), of any
    /// entry of any example contract: a summary within the budget or an
    /// error; never a panic or a hang.
    #[test]
    fn analyses_by_any_shape_never_panic(
        contract in 0usize..5,
        entry in any::<usize>(),
        len in 0u32..=chroma_analyzer::MAX_SHAPED_INPUT_LEN + 8,
        fixed in proptest::collection::vec((any::<u32>(), any::<u8>()), 0..6),
    ) {
        let bytes = wasm(["token", "amm", "lending", "registry", "counter"][contract]);
        let abi = abi(&bytes);
        let method = &abi.methods[entry % abi.methods.len()];
        let mut fixed: Vec<(u32, u8)> = fixed.into_iter().map(|(at, b)| (at % len.max(1), b)).collect();
        fixed.sort();
        fixed.dedup_by_key(|(at, _)| *at);
        let shape = chroma_host_api::InputShape { len, fixed };
        match chroma_analyzer::analyze_for_shape(&bytes, &method.name, &shape) {
            Ok(summary) => prop_assert!(summary.steps <= chroma_analyzer::SHAPED_BUDGET + 1_000, "{} steps", summary.steps),
            Err(_) => prop_assert!(len > chroma_analyzer::MAX_SHAPED_INPUT_LEN || method.kind == chroma_host_api::MethodKind::Init),
        }
    }
}

/// Entry points share the module's budget in export order, whichever
/// threads analyse them: each counted loop below would take millions of
/// steps, so the first entries spend the module budget and the last is
/// left with none, in every run.
#[test]
fn entries_share_the_module_budget_in_order_on_any_thread() {
    let entry = |name: &str| {
        format!(
            r#"(func (export "{name}") (local i32)
                 (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                       (br_if 0 (i32.lt_u (local.get 0) (i32.const 5000000)))))"#
        )
    };
    let names = ["e0", "e1", "e2", "e3", "e4", "e5"];
    let module = format!("(module (memory 1) {})", names.map(entry).join(" "));
    let bytes = wat::parse_str(&module).expect("valid module");
    let first = analyze(&bytes).expect("analyses");
    let steps: Vec<u64> = first.entries.iter().map(|e| e.steps).collect();
    let total: u64 = steps.iter().sum();
    assert!(total <= chroma_analyzer::MODULE_BUDGET + names.len() as u64, "steps {steps:?} exceed the module budget");
    assert!(steps[0] > chroma_analyzer::MODULE_BUDGET / 6, "the first entry ran until its own budget: {steps:?}");
    // The fourth gets what the first three left, a little less than its own
    // budget: its first run, with a whole entry's budget, cannot stand.
    assert!(steps[3] < steps[0] && steps[3] > steps[0] - 100, "the fourth entry ran on what was left: {steps:?}");
    assert!(steps[4] <= 1 && steps[5] <= 1, "nothing was left for the last entries: {steps:?}");
    for _ in 0..3 {
        assert_eq!(analyze(&bytes).expect("analyses"), first, "the same summaries in every run");
    }
}

/// A loop that writes storage runs its first iterations exactly, so a short
/// batch of keys is predicted key by key; a loop that only computes does not
/// (`PURE_UNROLL_LIMIT`), and must not cost the other loop its precision.
#[test]
fn a_loop_over_keys_is_unrolled_and_a_computing_loop_before_it_is_not() {
    let module = r#"(module
        (import "chroma" "input" (func $input (param i32) (result i32)))
        (import "chroma" "storage_write" (func $write (param i32 i32 i32 i32 i32)))
        (memory 1)
        (func (export "batch") (local $n i32) (local $i i32) (local $x i32)
          (local.set $n (call $input (i32.const 1024)))
          ;; Only computes, as many times as the input is long.
          (block (loop
            (br_if 1 (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 3)) (i32.const 1)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br 0)))
          ;; Writes key i for i below the input's first byte.
          (local.set $i (i32.const 0))
          (block (loop
            (br_if 1 (i32.ge_u (local.get $i) (i32.load8_u (i32.const 1024))))
            (i32.store (i32.const 0) (local.get $i))
            (call $write (i32.const 7) (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 4))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br 0)))))"#;
    let bytes = wat::parse_str(module).expect("valid module");
    let summary = analyze(&bytes).expect("analyses");
    let writes = describe(&summary, &Abi::default(), "batch");
    for key in ["slot7[0x00000000]", "slot7[0x01000000]", "slot7[0x02000000]", "slot7[0x03000000]"] {
        assert!(writes.contains(&format!("write {key}")), "{key} is predicted exactly: {writes:?}");
    }
    assert!(writes.iter().any(|w| w.starts_with("write slot7[") && !w.contains("0x")), "later keys stay covered: {writes:?}");
}
