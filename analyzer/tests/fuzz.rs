//! Random valid modules from wasm-smith, restricted to the contract feature
//! set: the analyzer returns a summary or a clean error, never panics, and
//! stays within its time budget.

use std::time::{Duration, Instant};

use arbitrary::Unstructured;

/// A module importing every Chroma host function, so that generated code
/// calls them (with whatever arguments it happens to compute).
fn host_imports() -> Vec<u8> {
    use chroma_host_api::host::{ValType, HOST_FUNCTIONS, IMPORT_MODULE};
    let ty = |t: &ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    };
    let funcs: String = HOST_FUNCTIONS
        .iter()
        .map(|f| {
            let params: Vec<&str> = f.params.iter().map(ty).collect();
            let results: Vec<&str> = f.results.iter().map(ty).collect();
            format!(
                "(import \"{IMPORT_MODULE}\" \"{}\" (func (param {}) (result {})))",
                f.name,
                params.join(" "),
                results.join(" ")
            )
        })
        .collect();
    wat::parse_str(format!("(module {funcs})")).expect("import list")
}

fn config() -> wasm_smith::Config {
    wasm_smith::Config {
        available_imports: Some(host_imports()),
        max_memories: 1,
        min_memories: 1,
        max_memory32_bytes: 4 << 20,
        max_tables: 2,
        min_funcs: 1,
        max_funcs: 40,
        max_instructions: 2_000,
        max_nesting_depth: 10,
        export_everything: true,
        bulk_memory_enabled: true,
        reference_types_enabled: false,
        multi_value_enabled: true,
        saturating_float_to_int_enabled: true,
        sign_extension_ops_enabled: true,
        simd_enabled: false,
        relaxed_simd_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        tail_call_enabled: false,
        gc_enabled: false,
        memory64_enabled: false,
        wide_arithmetic_enabled: false,
        custom_page_sizes_enabled: false,
        extended_const_enabled: false,
        allow_start_export: false,
        ..wasm_smith::Config::default()
    }
}

/// Generous: the interpreter's step budget bounds the work; this catches a hang.
const TIME_LIMIT: Duration = Duration::from_secs(30);
const MODULES: usize = 150;

#[test]
fn smith_modules_analyse_without_panicking() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut analysed, mut refused, mut entries, mut skipped) = (0, 0, 0, 0);
    let mut slowest = Duration::ZERO;
    for _ in 0..MODULES {
        let seed: Vec<u8> = (0..2048 + next() % 8192).map(|_| next() as u8).collect();
        let Ok(module) = wasm_smith::Module::new(config(), &mut Unstructured::new(&seed)) else {
            skipped += 1;
            continue;
        };
        let bytes = module.to_bytes();
        let started = Instant::now();
        let result = chroma_analyzer::analyze(&bytes);
        slowest = slowest.max(started.elapsed());
        assert!(started.elapsed() < TIME_LIMIT, "analysis took {:?}", started.elapsed());
        match result {
            Ok(summary) => {
                analysed += 1;
                entries += summary.entries.len();
            }
            Err(e) => {
                refused += 1;
                if refused < 6 {
                    println!("refused: {e}");
                }
            }
        }
    }
    println!("{MODULES} seeds: {skipped} not generated, {analysed} analysed ({entries} entry points), {refused} refused; slowest {slowest:?}");
    assert!(analysed >= MODULES / 2, "most generated modules are analysable ({analysed}/{MODULES})");
    assert!(entries >= MODULES / 2, "the modules export functions to analyse ({entries})");
}
