//! Instances kept per thread and reset after each call, instead of a fresh
//! pooled instance per call (see `instrument` for why and how writes are
//! tracked).
//!
//! A call takes an instance of its contract's code from its thread's list
//! (or instantiates one), runs in it, and, if it returned normally and its
//! memory did not grow, resets it and puts it back. A reset restores exactly
//! what the call could have changed: the pages marked written (by the code
//! or by the host) from the image taken right after instantiation, and the
//! mutable globals. Tables and segments cannot change in a resettable module,
//! and an instance whose call trapped or reverted is dropped, not reset. So
//! every call starts from the state a fresh instance has, whichever thread
//! runs it and whatever ran there before.
//!
//! The instances kept are capped per thread and per runtime
//! ([`REUSED_INSTANCES_MAX`]), and the engine's pool has room for them on top
//! of the calls in flight, so a call never finds the pool full.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use thread_local::ThreadLocal;
use wasmtime::{
    Engine, Extern, Global, Instance, InstancePre, Memory, Module, ModuleExport, Store, TypedFunc, Val,
};

use crate::engine::{store_limits, REUSED_INSTANCES_MAX};
use crate::imports::{Frame, StoreData};
use crate::instrument::{WrittenPages, GLOBAL_EXPORT_PREFIX, WRITTEN_EXPORT};

/// Instances one thread keeps (a block touches a few contracts' code).
const REUSED_PER_THREAD: usize = 16;

/// How instances of one module are reset, shared by every contract with its code.
pub(crate) struct ResetPlan {
    written: ModuleExport,
    globals: Vec<ModuleExport>,
    /// The memory and the mutable globals' values right after
    /// instantiation (taken from the first instance: instantiation is
    /// deterministic and a contract has no start function).
    initial: OnceLock<InitialState>,
}

struct InitialState {
    memory: Box<[u8]>,
    globals: Vec<Val>,
}

impl ResetPlan {
    /// The plan for `module`, if the rewrite found it resettable (then it
    /// exported the bitmap and the mutable globals).
    pub(crate) fn of(module: &Module) -> Option<Arc<ResetPlan>> {
        let written = module.get_export_index(WRITTEN_EXPORT)?;
        let globals = module
            .exports()
            .filter(|export| export.name().starts_with(GLOBAL_EXPORT_PREFIX))
            .map(|export| module.get_export_index(export.name()))
            .collect::<Option<Vec<_>>>()?;
        Some(Arc::new(ResetPlan { written, globals, initial: OnceLock::new() }))
    }
}

/// An instance with its own store, between calls.
pub(crate) struct ReusableInstance {
    code_hash: [u8; 32],
    pub store: Store<StoreData>,
    pub instance: Instance,
    pub memory: Memory,
    written: Global,
    globals: Vec<Global>,
    plan: Arc<ResetPlan>,
    /// The entry points called so far, by their place in the ABI (made per
    /// call, a function's handle and type were 5% of a transfer).
    entries: Vec<Option<TypedFunc<(), ()>>>,
}

fn global(store: &mut Store<StoreData>, instance: &Instance, export: &ModuleExport) -> wasmtime::Result<Global> {
    instance
        .get_module_export(&mut *store, export)
        .and_then(Extern::into_global)
        .ok_or_else(|| wasmtime::Error::msg("a tracking export is missing"))
}

impl ReusableInstance {
    /// A new instance of `pre`'s module in a store of its own.
    pub(crate) fn new(
        engine: &Engine,
        code_hash: [u8; 32],
        pre: &InstancePre<StoreData>,
        memory_export: &ModuleExport,
        plan: &Arc<ResetPlan>,
    ) -> wasmtime::Result<ReusableInstance> {
        let limits = store_limits();
        let data = StoreData { tx: None, frame: Frame::empty(), limits, written: WrittenPages::default() };
        let mut store = Store::new(engine, data);
        store.limiter(|data| &mut data.limits);
        let instance = pre.instantiate(&mut store)?;
        let memory = instance
            .get_module_export(&mut store, memory_export)
            .and_then(Extern::into_memory)
            .ok_or_else(|| wasmtime::Error::msg("contract has no memory export"))?;
        let written = global(&mut store, &instance, &plan.written)?;
        let globals =
            plan.globals.iter().map(|export| global(&mut store, &instance, export)).collect::<wasmtime::Result<Vec<_>>>()?;
        if plan.initial.get().is_none() {
            let initial = InitialState {
                memory: memory.data(&store).into(),
                globals: globals.iter().map(|g| g.get(&mut store)).collect(),
            };
            let _ = plan.initial.set(initial);
        }
        let plan = plan.clone();
        Ok(ReusableInstance { code_hash, store, instance, memory, written, globals, plan, entries: Vec::new() })
    }

    /// Calls the entry point at `index` in the ABI, found by `entry_of` the
    /// first time (an index past the ABI's methods is looked up every time:
    /// `entry_of` then fails).
    pub(crate) fn call_entry(
        &mut self,
        index: usize,
        entry_of: impl FnOnce(&mut Store<StoreData>, &Instance) -> wasmtime::Result<TypedFunc<(), ()>>,
    ) -> wasmtime::Result<()> {
        let kept = self.entries.get(index).and_then(Option::as_ref);
        let entry = match kept {
            Some(entry) => entry,
            None => {
                let entry = entry_of(&mut self.store, &self.instance)?;
                if self.entries.len() <= index {
                    self.entries.resize_with(index + 1, || None);
                }
                self.entries[index].insert(entry)
            }
        };
        entry.call(&mut self.store, ())
    }

    /// Puts the instance back into the state it had right after
    /// instantiation; false if it cannot be (its memory grew), and then it
    /// must be dropped.
    pub(crate) fn reset(&mut self) -> bool {
        let Some(initial) = self.plan.initial.get() else { return false };
        let len = self.memory.data_size(&self.store);
        if len != initial.memory.len() {
            return false;
        }
        let Val::I64(by_code) = self.written.get(&mut self.store) else { return false };
        let written = WrittenPages(by_code as u64 | std::mem::take(&mut self.store.data_mut().written).0);
        let memory = self.memory.data_mut(&mut self.store);
        for range in written.ranges(len) {
            memory[range.clone()].copy_from_slice(&initial.memory[range]);
        }
        if self.written.set(&mut self.store, Val::I64(0)).is_err() {
            return false;
        }
        for (global, value) in self.globals.iter().zip(&initial.globals) {
            if global.set(&mut self.store, value.clone()).is_err() {
                return false;
            }
        }
        true
    }
}

/// The instances kept, per thread, for one runtime.
#[derive(Default)]
pub(crate) struct ReusableInstances {
    per_thread: ThreadLocal<RefCell<Vec<ReusableInstance>>>,
    /// Instances kept over all threads.
    kept: AtomicUsize,
    /// Instances made so far (kept or not).
    made: AtomicU64,
}

impl ReusableInstances {
    /// A kept instance of `code_hash` if this thread has one, else a new one.
    pub(crate) fn take_or_new(
        &self,
        engine: &Engine,
        code_hash: [u8; 32],
        pre: &InstancePre<StoreData>,
        memory_export: &ModuleExport,
        plan: &Arc<ResetPlan>,
    ) -> wasmtime::Result<ReusableInstance> {
        if let Some(kept) = self.take(&code_hash) {
            return Ok(kept);
        }
        self.made.fetch_add(1, Ordering::Relaxed);
        ReusableInstance::new(engine, code_hash, pre, memory_export, plan)
    }

    /// How many instances were made so far.
    pub(crate) fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// A kept instance of `code_hash`, if this thread has one.
    fn take(&self, code_hash: &[u8; 32]) -> Option<ReusableInstance> {
        let mut list = self.per_thread.get()?.borrow_mut();
        let at = list.iter().rposition(|instance| &instance.code_hash == code_hash)?;
        self.kept.fetch_sub(1, Ordering::Relaxed);
        Some(list.swap_remove(at))
    }

    /// Keeps `instance` (already reset) for this thread's next call of its code.
    pub(crate) fn put(&self, instance: ReusableInstance) {
        let mut list = self.per_thread.get_or_default().borrow_mut();
        if list.len() >= REUSED_PER_THREAD {
            // The least recently kept goes (its instance returns to the pool).
            list.remove(0);
            self.kept.fetch_sub(1, Ordering::Relaxed);
        }
        // Reserve a place under the cap, or drop the instance.
        if self.kept.fetch_add(1, Ordering::Relaxed) >= REUSED_INSTANCES_MAX {
            self.kept.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        list.push(instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_engine;
    use crate::instrument::{instrument, PAGE_BYTES};
    use arbitrary::Unstructured;
    use chroma_workloads::Rng;
    use wasmtime::{ExternType, Linker, ValType};
    // (Engine, Module, Val come from the module above.)

    /// Random modules with no imports, one memory, and everything exported.
    fn config() -> wasm_smith::Config {
        wasm_smith::Config {
            max_imports: 0,
            max_memories: 1,
            min_memories: 1,
            // Up to four pages (256 KiB): twice the bitmap's 64 pages of 2 KiB, so that bits stand for two.
            max_memory32_bytes: 4 << 16,
            max_tables: 2,
            // Within the pooling allocator's table limit.
            max_table_elements: 1_000,
            min_funcs: 1,
            max_funcs: 20,
            max_instructions: 1_000,
            // Code dense in memory operations (tables cannot change in a resettable module).
            allowed_instructions: wasm_smith::InstructionKinds::new(&[
                wasm_smith::InstructionKind::Memory,
                wasm_smith::InstructionKind::Numeric,
                wasm_smith::InstructionKind::Variable,
                wasm_smith::InstructionKind::Parametric,
                wasm_smith::InstructionKind::Control,
            ]),
            max_nesting_depth: 8,
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
            // Addresses kept inside the memory, so that stores land.
            disallow_traps: true,
            ..wasm_smith::Config::default()
        }
    }

    /// A global's value as bits (numeric globals only: the others make a
    /// module not resettable).
    fn bits(value: &Val) -> Option<u64> {
        match value {
            Val::I32(v) => Some(*v as u32 as u64),
            Val::I64(v) => Some(*v as u64),
            Val::F32(v) => Some(u64::from(*v)),
            Val::F64(v) => Some(*v),
            _ => None,
        }
    }

    fn argument(ty: &ValType, rng: &mut Rng) -> Option<Val> {
        // Mostly small values, so that addresses land inside the memory.
        let n = if rng.next_u64() % 8 != 0 { rng.next_u64() % 70_000 } else { rng.next_u64() };
        Some(match ty {
            ValType::I32 => Val::I32(n as i32),
            ValType::I64 => Val::I64(n as i64),
            ValType::F32 => Val::F32(n as u32),
            ValType::F64 => Val::F64(n),
            _ => return None,
        })
    }

    #[derive(Debug, Default)]
    struct Seen {
        modules: usize,
        calls: usize,
        writing_calls: usize,
        resets: usize,
    }

    /// Instruments `code` and calls its exported functions, round after
    /// round, on a kept instance with random arguments: after every call,
    /// each byte of memory that differs from the initial image lies in a page
    /// the tracking marked, and after every reset the memory and the globals
    /// are exactly those of a fresh instance. Modules that are not resettable
    /// or do not instantiate are skipped.
    fn check_kept_instance(engine: &Engine, code: &[u8], rounds: usize, rng: &mut Rng, seen: &mut Seen) {
        let tracked = instrument(code).expect("a valid module is instrumented");
        let module = Module::new(engine, &tracked.bytes).expect("the instrumented module is valid");
        let Some(plan) = ResetPlan::of(&module) else {
            assert!(!tracked.resettable);
            return;
        };
        let memory = module.exports().find(|e| matches!(e.ty(), ExternType::Memory(_))).map(|e| e.name().to_string());
        let memory = module.get_export_index(&memory.expect("the memory is exported")).expect("export");
        let pre = Linker::<StoreData>::new(engine).instantiate_pre(&module).expect("no imports");
        let functions: Vec<(String, Vec<ValType>, usize)> = module
            .exports()
            .filter_map(|e| match e.ty() {
                ExternType::Func(f) => Some((e.name().to_string(), f.params().collect(), f.results().len())),
                _ => None,
            })
            .collect();
        let new = || ReusableInstance::new(engine, [0; 32], &pre, &memory, &plan);
        // Out-of-bounds data segments fail instantiation: nothing to reuse.
        let Ok(mut instance) = new() else { return };
        seen.modules += 1;
        let initial = plan.initial.get().expect("taken at the first instantiation");
        for round in 0..rounds * functions.len() {
            let (name, params, results) = &functions[round % functions.len()];
            let Some(args) = params.iter().map(|t| argument(t, rng)).collect::<Option<Vec<_>>>() else { continue };
            let func = instance.instance.get_func(&mut instance.store, name).expect("exported function");
            let mut out = vec![Val::I32(0); *results];
            instance.store.set_fuel(20_000).expect("fuel");
            let ran = func.call(&mut instance.store, &args, &mut out);
            seen.calls += 1;

            let Val::I64(by_code) = instance.written.get(&mut instance.store) else { panic!("an i64 bitmap") };
            let written = WrittenPages(by_code as u64 | instance.store.data().written.0);
            let data = instance.memory.data(&instance.store);
            let mut covered = vec![false; initial.memory.len()];
            for range in written.ranges(initial.memory.len()) {
                covered[range].fill(true);
            }
            // Compared a page at a time (bytes only where a page differs): tests run unoptimised.
            let end = data.len().min(initial.memory.len());
            let page = |at: usize| at..end.min(at + PAGE_BYTES);
            let changed: Vec<usize> = (0..end)
                .step_by(PAGE_BYTES)
                .filter(|&at| data[page(at)] != initial.memory[page(at)])
                .flat_map(|at| page(at).filter(|&i| data[i] != initial.memory[i]))
                .collect();
            seen.writing_calls += usize::from(!changed.is_empty());
            if let Some(missed) = changed.iter().find(|&&i| !covered[i]) {
                panic!("{name} wrote byte {missed} of a page it did not mark (marked {:#x})", written.0);
            }
            if ran.is_ok() && instance.reset() {
                seen.resets += 1;
                assert!(instance.memory.data(&instance.store) == &initial.memory[..], "{name}: memory not restored");
                let globals: Vec<_> = instance.globals.iter().map(|g| bits(&g.get(&mut instance.store))).collect();
                let fresh: Vec<_> = initial.globals.iter().map(bits).collect();
                assert_eq!(globals, fresh, "{name}: globals not restored");
                assert!(matches!(instance.written.get(&mut instance.store), Val::I64(0)));
            } else {
                // As the runtime does: a failed call's or a grown instance is dropped.
                instance = new().expect("instantiated before");
            }
        }
    }

    /// Code no one wrote: wasm-smith modules (whose code rarely reaches a
    /// store) are instrumented into valid modules, and kept instances of
    /// them start every call fresh.
    #[test]
    fn smith_modules_stay_valid_and_are_reset() {
        let engine = new_engine().expect("engine");
        let mut rng = Rng::new(0x7f4a_7c15_9e37_79b9);
        let mut seen = Seen::default();
        for _ in 0..300 {
            let seed: Vec<u8> = (0..1024 + rng.next_u64() % 4096).map(|_| rng.next_u64() as u8).collect();
            let Ok(generated) = wasm_smith::Module::new(config(), &mut Unstructured::new(&seed)) else { continue };
            check_kept_instance(&engine, &generated.to_bytes(), 4, &mut rng, &mut seen);
        }
        println!("{seen:?}");
        assert!(seen.modules >= 100 && seen.resets >= 100, "most seeds give a resettable module that runs: {seen:?}");
    }

    /// A random program of writes: every store width at addresses near page
    /// boundaries (with offsets, some out of bounds), fills, copies and
    /// inits of random spans, global sets and now and then a `memory.grow`,
    /// over 1-5 pages of memory with data segments.
    fn write_program(rng: &mut Rng) -> Vec<u8> {
        let mut pick = |n: u64| rng.next_u64() % n;
        let pages = 1 + pick(5);
        let len = pages * 65_536;
        let mut text = format!("(module (memory (export \"memory\") {pages} 8)");
        text += " (global (mut i32) (i32.const 11)) (global (mut i64) (i64.const -3)) (global (mut f32) (f32.const 1.5)) (global (mut f64) (f64.const -2))";
        for _ in 0..pick(4) {
            let bytes: String = (0..1 + pick(64)).map(|_| format!("\\{:02x}", pick(256))).collect();
            text += &format!(" (data (i32.const {}) \"{bytes}\")", pick(len - 64));
        }
        text += " (data $passive \"passive segment bytes, copied by memory.init\")";
        for f in 0..4 {
            text += &format!(" (func (export \"f{f}\") (param $x i32)");
            for _ in 0..1 + pick(8) {
                // Near a page boundary, or anywhere; plus the argument.
                let near = (pick(len / 4096 + 2) * 4096).saturating_sub(pick(9));
                let address = if pick(2) == 0 { near } else { pick(len) };
                let at = format!("(i32.add (local.get $x) (i32.const {address}))");
                let offset = if pick(20) == 0 { 4096 * pick(80) } else { [0, pick(16), pick(8192)][pick(3) as usize] };
                let value = pick(u64::MAX);
                text += &match pick(14) {
                    0 => format!(" (i32.store offset={offset} {at} (i32.const {}))", value as i32),
                    1 => format!(" (i32.store8 offset={offset} {at} (i32.const {}))", value as i32),
                    2 => format!(" (i32.store16 offset={offset} {at} (i32.const {}))", value as i32),
                    3 => format!(" (i64.store offset={offset} {at} (i64.const {}))", value as i64),
                    4 => format!(" (i64.store8 offset={offset} {at} (i64.const {}))", value as i64),
                    5 => format!(" (i64.store16 offset={offset} {at} (i64.const {}))", value as i64),
                    6 => format!(" (i64.store32 offset={offset} {at} (i64.const {}))", value as i64),
                    7 => format!(" (f32.store offset={offset} {at} (f32.const {}))", value % 1000),
                    8 => format!(" (f64.store offset={offset} {at} (f64.const {}))", value % 1000),
                    9 => format!(" (memory.fill {at} (i32.const {}) (i32.const {}))", value % 256, pick(3 * 4096)),
                    10 => format!(" (memory.copy {at} (i32.const {}) (i32.const {}))", pick(len), pick(3 * 4096)),
                    11 => format!(" (memory.init $passive {at} (i32.const {}) (i32.const {}))", pick(10), pick(30)),
                    12 => format!(" (global.set {} (i64.const {}))", 1, value as i64),
                    _ if pick(4) == 0 => " (drop (memory.grow (i32.const 1)))".to_string(),
                    _ => format!(" (global.set 0 (i32.const {}))", value as i32),
                };
            }
            text += ")";
        }
        text += ")";
        wat::parse_str(&text).unwrap_or_else(|e| panic!("bad program: {e}\n{text}"))
    }

    /// Random programs of writes, run on kept instances (see `write_program`).
    #[test]
    fn random_writes_are_tracked_and_reset() {
        let engine = new_engine().expect("engine");
        let mut rng = Rng::new(0x2d35_8dcc_aa6c_78a5);
        let mut seen = Seen::default();
        for _ in 0..200 {
            let code = write_program(&mut rng);
            check_kept_instance(&engine, &code, 6, &mut rng, &mut seen);
        }
        println!("{seen:?}");
        assert!(seen.modules >= 150, "programs instantiate: {seen:?}");
        assert!(seen.writing_calls >= 1_000 && seen.resets >= 1_000, "calls write and are reset: {seen:?}");
    }
}
