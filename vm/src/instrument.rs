//! Write tracking: the module a contract runs as, rewritten so that an
//! instance can be reset to its initial state after a call and used again.
//!
//! Why: a fresh pooled instance per call cost about three fifths of a token
//! transfer (the store's creation, the instance's set-up, and a tear-down in
//! which the kernel finds and resets the pages the call wrote, one system
//! call per instance). Keeping an instance per thread and contract needs a
//! reset that provably restores what a fresh instance would hold, and Wasm
//! gives the host no way to know which bytes a call wrote. So every write to
//! memory is made to say so:
//!
//! - Memory is tracked in pages of [`PAGE_BYTES`] (2 KiB: a contract's usual
//!   128 KiB are 64 pages), one bit per page in a new mutable `i64` global
//!   ([`WRITTEN_EXPORT`]); page `n` has bit `n mod 64`, so in a larger memory
//!   a bit stands for every 64th page and a reset restores them all. The
//!   modulo is Wasm's own shift count, so marking is a shift and an or.
//! - Before each store (`i32.store` ... `i64.store32`), the code sets the bit
//!   of the page the store starts in. A store of up to 8 bytes may run into
//!   the next page: a reset restores [`SPILL_BYTES`] more after each page.
//! - Before `memory.fill`, `memory.copy` and `memory.init`, the code sets the
//!   bits of every page from the destination to its end (inclusive).
//! - The host marks what it writes into memory itself ([`WrittenPages`]).
//! - `memory.grow` is not tracked: an instance whose memory grew is dropped.
//!
//! A reset copies the marked pages back from the image taken right after
//! instantiation, and sets every mutable global back to its initial value
//! (each is exported for that under [`GLOBAL_EXPORT_PREFIX`]). Modules that
//! can change other instance state (tables, or dropped segments: `table.set`,
//! `table.grow`, `table.fill`, `table.copy`, `table.init`, `elem.drop`,
//! `data.drop`) or that have mutable globals of reference type are not
//! resettable ([`Instrumented::resettable`]): they still run the tracked code,
//! so that gas is the same for every module, on a fresh instance per call.
//!
//! Gas: fuel counts the tracking's operators like any others, so a store
//! costs [`STORE_TRACKING_OPS`] more ([`OFFSET_TRACKING_OPS`] more again
//! with a nonzero offset) and a bulk memory operation [`BULK_TRACKING_OPS`]
//! more. The rewrite is a pure function of the code, so
//! every node charges the same.

use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{ConstExpr, ExportKind, GlobalType, Instruction, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef};

/// Export name of the global holding the written-pages bitmap.
pub const WRITTEN_EXPORT: &str = "chroma:written";
/// Export names of the module's own mutable globals: this prefix, then the
/// global's index.
pub const GLOBAL_EXPORT_PREFIX: &str = "chroma:global:";
/// Exports under this prefix are the VM's; the gatekeeper refuses modules
/// that export names of their own there.
pub const RESERVED_EXPORT_PREFIX: &str = "chroma:";

/// log2 of the tracked page size: small pages copy back little (a transfer
/// writes a little stack, statics and heap), and 64 of them cover the
/// 128 KiB a contract usually starts with, so that no bit stands for two.
pub const PAGE_SHIFT: u32 = 11;
/// Bytes per tracked page.
pub const PAGE_BYTES: usize = 1 << PAGE_SHIFT;
/// Bits in the bitmap: page `n` is bit `n % BITS`.
pub const BITS: usize = 64;
/// The widest store is 8 bytes, so a store marked in one page writes at most
/// this many bytes of the next.
pub const SPILL_BYTES: usize = 7;

/// Operators the tracking adds before each store.
pub const STORE_TRACKING_OPS: u64 = 12;
/// Operators it adds besides when the store has a nonzero offset.
pub const OFFSET_TRACKING_OPS: u64 = 2;
/// Operators the tracking adds before each `memory.fill`, `memory.copy` and `memory.init`.
pub const BULK_TRACKING_OPS: u64 = 33;

/// Changes the rewrite's output: part of the compiled-code cache's key.
pub const INSTRUMENTATION_VERSION: u8 = 2;

/// A module rewritten with write tracking.
#[derive(Debug, Clone)]
pub struct Instrumented {
    pub bytes: Vec<u8>,
    /// Whether an instance can be reset after a call (then the bitmap and
    /// the mutable globals are exported).
    pub resettable: bool,
}

/// Why a module could not be rewritten (it passed the gatekeeper, so this
/// is a module the rewrite does not support, not a malformed one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot add write tracking: {0}")]
pub struct InstrumentError(String);

/// What the rewrite needs to know before it starts.
#[derive(Default)]
struct ModuleFacts {
    /// Parameter count of each type (non-function types count 0).
    type_params: Vec<u32>,
    /// Type index of each defined function (bodies come in this order).
    function_types: Vec<u32>,
    globals: u32,
    /// Indices of the mutable globals.
    mutable_globals: Vec<u32>,
    resettable: bool,
}

fn facts(code: &[u8]) -> Result<ModuleFacts, InstrumentError> {
    let err = |e: wasmparser::BinaryReaderError| InstrumentError(e.to_string());
    let mut facts = ModuleFacts { resettable: true, ..ModuleFacts::default() };
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(err)? {
            Payload::TypeSection(reader) => {
                for group in reader.into_iter_err_on_gc_types() {
                    facts.type_params.push(group.map_err(err)?.params().len() as u32);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    // Imported globals would shift the new global's index (the gatekeeper refuses them).
                    if let TypeRef::Global(_) = import.map_err(err)?.ty {
                        return Err(InstrumentError("imported globals".into()));
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    facts.function_types.push(ty.map_err(err)?);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(err)?;
                    if global.ty.mutable {
                        if !matches!(
                            global.ty.content_type,
                            wasmparser::ValType::I32
                                | wasmparser::ValType::I64
                                | wasmparser::ValType::F32
                                | wasmparser::ValType::F64
                        ) {
                            facts.resettable = false;
                        }
                        facts.mutable_globals.push(facts.globals);
                    }
                    facts.globals += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let name = export.map_err(err)?.name;
                    if name.starts_with(RESERVED_EXPORT_PREFIX) {
                        return Err(InstrumentError(format!("export name `{name}` is reserved")));
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut reader = body.get_operators_reader().map_err(err)?;
                while !reader.eof() {
                    if changes_other_state(&reader.read().map_err(err)?) {
                        facts.resettable = false;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(facts)
}

/// Operators that change instance state other than memory and globals.
fn changes_other_state(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::ElemDrop { .. }
            | Operator::DataDrop { .. }
    )
}

/// The locals the tracking adds to every function, after its own.
struct Scratch {
    /// The address (or a bulk operation's destination).
    address: u32,
    /// A bulk operation's second and third operands.
    second: u32,
    length: u32,
    /// A page number, and a count of pages.
    page: u32,
    pages: u32,
    /// The value being stored, by type.
    value_i32: u32,
    value_i64: u32,
    value_f32: u32,
    value_f64: u32,
}

impl Scratch {
    /// The added locals, declared from index `first`.
    const DECLARED: [(u32, ValType); 4] = [(4, ValType::I32), (3, ValType::I64), (1, ValType::F32), (1, ValType::F64)];

    fn at(first: u32) -> Scratch {
        Scratch {
            address: first,
            second: first + 1,
            length: first + 2,
            value_i32: first + 3,
            page: first + 4,
            pages: first + 5,
            value_i64: first + 6,
            value_f32: first + 7,
            value_f64: first + 8,
        }
    }
}

struct Tracker {
    facts: ModuleFacts,
    /// Index of the bitmap global.
    written: u32,
    global_emitted: bool,
    exports_emitted: bool,
    /// Index of the next defined function's body.
    next_body: usize,
}

impl Tracker {
    fn add_written_global(&mut self, globals: &mut wasm_encoder::GlobalSection) {
        globals.global(
            GlobalType { val_type: ValType::I64, mutable: true, shared: false },
            &ConstExpr::i64_const(0),
        );
        self.global_emitted = true;
    }

    fn add_exports(&mut self, exports: &mut wasm_encoder::ExportSection) {
        if self.facts.resettable {
            exports.export(WRITTEN_EXPORT, ExportKind::Global, self.written);
            for &global in &self.facts.mutable_globals {
                exports.export(&format!("{GLOBAL_EXPORT_PREFIX}{global}"), ExportKind::Global, global);
            }
        }
        self.exports_emitted = true;
    }

    /// Marks the page of `address + offset`; the stack holds `address, value`
    /// before and after.
    fn track_store(&self, f: &mut wasm_encoder::Function, s: &Scratch, value: u32, offset: u64) {
        f.instruction(&Instruction::LocalSet(value))
            .instruction(&Instruction::LocalTee(s.address))
            .instruction(&Instruction::GlobalGet(self.written))
            .instruction(&Instruction::I64Const(1))
            .instruction(&Instruction::LocalGet(s.address))
            .instruction(&Instruction::I64ExtendI32U);
        if offset != 0 {
            // The offset is a u32 for a 32-bit memory: the sum cannot overflow an i64.
            f.instruction(&Instruction::I64Const(offset as i64)).instruction(&Instruction::I64Add);
        }
        // 1 << page: Wasm takes the shift count modulo 64, which is the bit's number.
        f.instruction(&Instruction::I64Const(i64::from(PAGE_SHIFT)))
            .instruction(&Instruction::I64ShrU)
            .instruction(&Instruction::I64Shl)
            .instruction(&Instruction::I64Or)
            .instruction(&Instruction::GlobalSet(self.written))
            .instruction(&Instruction::LocalGet(value));
    }

    /// Marks the pages from the destination through destination + length;
    /// the stack holds `destination, second, length` before and after.
    fn track_bulk(&self, f: &mut wasm_encoder::Function, s: &Scratch) {
        let page_of = |f: &mut wasm_encoder::Function| {
            f.instruction(&Instruction::I64Const(i64::from(PAGE_SHIFT))).instruction(&Instruction::I64ShrU);
        };
        f.instruction(&Instruction::LocalSet(s.length))
            .instruction(&Instruction::LocalSet(s.second))
            .instruction(&Instruction::LocalTee(s.address))
            .instruction(&Instruction::GlobalGet(self.written))
            // All bits if the span covers 64 pages or more ...
            .instruction(&Instruction::I64Const(-1))
            // ... else `pages + 1` bits, from the first page's, wrapping around.
            .instruction(&Instruction::I64Const(2))
            .instruction(&Instruction::LocalGet(s.address))
            .instruction(&Instruction::I64ExtendI32U)
            .instruction(&Instruction::LocalGet(s.length))
            .instruction(&Instruction::I64ExtendI32U)
            .instruction(&Instruction::I64Add);
        page_of(f);
        f.instruction(&Instruction::LocalGet(s.address)).instruction(&Instruction::I64ExtendI32U);
        page_of(f);
        f.instruction(&Instruction::LocalTee(s.page))
            .instruction(&Instruction::I64Sub)
            .instruction(&Instruction::LocalTee(s.pages))
            .instruction(&Instruction::I64Shl)
            .instruction(&Instruction::I64Const(1))
            .instruction(&Instruction::I64Sub)
            .instruction(&Instruction::LocalGet(s.pages))
            .instruction(&Instruction::I64Const(BITS as i64 - 1))
            .instruction(&Instruction::I64GeU)
            .instruction(&Instruction::Select)
            .instruction(&Instruction::LocalGet(s.page))
            .instruction(&Instruction::I64Rotl)
            .instruction(&Instruction::I64Or)
            .instruction(&Instruction::GlobalSet(self.written))
            .instruction(&Instruction::LocalGet(s.second))
            .instruction(&Instruction::LocalGet(s.length));
    }
}

impl Reencode for Tracker {
    type Error = InstrumentError;

    fn parse_global_section(
        &mut self,
        globals: &mut wasm_encoder::GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        self.add_written_global(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        Ok(())
    }

    /// Adds the global and export sections where the module has none.
    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<wasm_encoder::SectionId>,
        before: Option<wasm_encoder::SectionId>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        use wasm_encoder::SectionId;
        let after_globals = |id: Option<SectionId>| {
            matches!(
                id,
                None | Some(
                    SectionId::Export
                        | SectionId::Start
                        | SectionId::Element
                        | SectionId::DataCount
                        | SectionId::Code
                        | SectionId::Data
                )
            )
        };
        if !self.global_emitted && after_globals(before) {
            let mut globals = wasm_encoder::GlobalSection::new();
            self.add_written_global(&mut globals);
            module.section(&globals);
        }
        if !self.exports_emitted && after_globals(before) && before != Some(SectionId::Export) {
            let mut exports = wasm_encoder::ExportSection::new();
            self.add_exports(&mut exports);
            module.section(&exports);
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        body: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let missing = || reencode::Error::UserError(InstrumentError("a body without a function".into()));
        let ty = *self.facts.function_types.get(self.next_body).ok_or_else(missing)?;
        let params = *self.facts.type_params.get(ty as usize).ok_or_else(missing)?;
        self.next_body += 1;
        let mut locals = Vec::new();
        let mut declared = 0u32;
        for pair in body.get_locals_reader()? {
            let (count, ty) = pair?;
            declared = declared.saturating_add(count);
            locals.push((count, self.val_type(ty)?));
        }
        let first = params.checked_add(declared).ok_or_else(missing)?;
        locals.extend(Scratch::DECLARED);
        let scratch = Scratch::at(first);
        let mut f = wasm_encoder::Function::new(locals);
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let store = match &op {
                Operator::I32Store { memarg } | Operator::I32Store8 { memarg } | Operator::I32Store16 { memarg } => {
                    Some((scratch.value_i32, memarg.offset))
                }
                Operator::I64Store { memarg }
                | Operator::I64Store8 { memarg }
                | Operator::I64Store16 { memarg }
                | Operator::I64Store32 { memarg } => Some((scratch.value_i64, memarg.offset)),
                Operator::F32Store { memarg } => Some((scratch.value_f32, memarg.offset)),
                Operator::F64Store { memarg } => Some((scratch.value_f64, memarg.offset)),
                _ => None,
            };
            if let Some((value, offset)) = store {
                self.track_store(&mut f, &scratch, value, offset);
            } else if matches!(op, Operator::MemoryFill { .. } | Operator::MemoryCopy { .. } | Operator::MemoryInit { .. })
            {
                self.track_bulk(&mut f, &scratch);
            }
            f.instruction(&self.instruction(op)?);
        }
        code.function(&f);
        Ok(())
    }
}

/// `code` with write tracking (see the module's documentation).
pub fn instrument(code: &[u8]) -> Result<Instrumented, InstrumentError> {
    let facts = facts(code)?;
    let resettable = facts.resettable;
    let mut tracker =
        Tracker { written: facts.globals, facts, global_emitted: false, exports_emitted: false, next_body: 0 };
    let mut module = wasm_encoder::Module::new();
    tracker.parse_core_module(&mut module, Parser::new(0), code).map_err(|e| match e {
        reencode::Error::UserError(e) => e,
        other => InstrumentError(other.to_string()),
    })?;
    Ok(Instrumented { bytes: module.finish(), resettable })
}

/// The pages the host wrote into a memory during a call, in the same bitmap
/// as the code's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WrittenPages(pub u64);

impl WrittenPages {
    /// Marks `len` bytes from `start` (as the code marks a bulk operation's span).
    pub fn mark(&mut self, start: usize, len: usize) {
        let first = start >> PAGE_SHIFT;
        let pages = (start.saturating_add(len) >> PAGE_SHIFT) - first;
        let bits = if pages >= BITS - 1 { u64::MAX } else { (2u64 << pages) - 1 };
        self.0 |= bits.rotate_left((first % BITS) as u32);
    }

    /// The byte ranges of a memory of `len` bytes that the marked pages
    /// cover, each bit's pages in order (a page's range includes the bytes a
    /// store marked in it may have spilled into the next page, so ranges may
    /// overlap).
    pub fn ranges(self, len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
        (0..BITS).filter(move |bit| self.0 & (1 << bit) != 0).flat_map(move |bit| {
            (bit..len.div_ceil(PAGE_BYTES)).step_by(BITS).map(move |page| {
                let start = page << PAGE_SHIFT;
                start..(start + PAGE_BYTES + SPILL_BYTES).min(len)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Config, Engine, Instance, Module, Store, Val};

    /// Runs `run` of the module in `body` (its memory has 8 pages),
    /// instrumented or not; returns the fuel it used and, when instrumented,
    /// the bitmap.
    fn run(body: &str, tracked: bool) -> (u64, u64) {
        let code = wat::parse_str(format!("(module (memory (export \"memory\") 8) {body})")).expect("valid text");
        let code = if tracked { instrument(&code).expect("instrumented").bytes } else { code };
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).expect("engine");
        let module = Module::new(&engine, &code).expect("valid module");
        let mut store = Store::new(&engine, ());
        store.set_fuel(1_000_000).expect("fuel");
        let instance = Instance::new(&mut store, &module, &[]).expect("instance");
        let func = instance.get_typed_func::<(), ()>(&mut store, "run").expect("run");
        func.call(&mut store, ()).expect("runs");
        let used = 1_000_000 - store.get_fuel().expect("fuel");
        let written = match instance.get_global(&mut store, WRITTEN_EXPORT).map(|g| g.get(&mut store)) {
            Some(Val::I64(bits)) => bits as u64,
            _ => 0,
        };
        (used, written)
    }

    fn bits(pages: &[u64]) -> u64 {
        pages.iter().fold(0, |acc, p| acc | 1 << p)
    }

    #[test]
    fn stores_mark_the_page_they_start_in() {
        let cases: [(&str, &[u64]); 7] = [
            ("(i32.store (i32.const 0) (i32.const 1))", &[0]),
            ("(i64.store offset=2047 (i32.const 0) (i64.const -1))", &[0]),
            ("(i32.store8 offset=2048 (i32.const 0) (i32.const 1))", &[1]),
            ("(f64.store offset=8 (i32.const 4088) (f64.const 1))", &[2]),
            ("(i64.store32 (i32.const 20000) (i64.const 1)) (f32.store (i32.const 1) (f32.const 2))", &[0, 9]),
            // Beyond 64 pages (128 KiB), page n is bit n % 64.
            ("(i32.store16 (i32.const 131072) (i32.const 1)) (i64.store8 (i32.const 264192) (i64.const 1))", &[0, 1]),
            ("(i64.store16 offset=260096 (i32.const 0) (i64.const 1))", &[63]),
        ];
        for (code, pages) in cases {
            let body = format!("(func (export \"run\") {code})");
            let (_, written) = run(&body, true);
            assert_eq!(written, bits(pages), "{code}");
        }
    }

    #[test]
    fn bulk_operations_mark_every_page_through_their_end() {
        let all: Vec<u64> = (0..64).collect();
        let cases: [(&str, &[u64]); 6] = [
            ("(memory.fill (i32.const 2000) (i32.const 7) (i32.const 4500))", &[0, 1, 2, 3]),
            ("(memory.fill (i32.const 4096) (i32.const 7) (i32.const 0))", &[2]),
            ("(memory.copy (i32.const 6144) (i32.const 0) (i32.const 2047))", &[3]),
            // From page 62 through page 66: the bits wrap around.
            ("(memory.copy (i32.const 126976) (i32.const 0) (i32.const 10239))", &[62, 63, 0, 1, 2]),
            ("(memory.fill (i32.const 100) (i32.const 0) (i32.const 200000))", &all),
            ("(memory.init $d (i32.const 5000) (i32.const 0) (i32.const 3))", &[2]),
        ];
        for (code, pages) in cases {
            let body = format!("(data $d \"abc\") (func (export \"run\") {code})");
            let (_, written) = run(&body, true);
            assert_eq!(written, bits(pages), "{code}");
            // The host marks a span as the code does.
            let mut host = WrittenPages::default();
            if let Some((start, len)) = span_of(code) {
                host.mark(start, len);
                assert_eq!(host.0, written, "{code}, marked by the host");
            }
        }
    }

    /// The destination and length of a bulk operation in the test's text.
    fn span_of(code: &str) -> Option<(usize, usize)> {
        let numbers: Vec<usize> = code
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .filter_map(|n| n.parse().ok())
            .collect();
        match numbers.as_slice() {
            [start, _, len] => Some((*start, *len)),
            _ => None,
        }
    }

    /// The gas of the tracking is what the engine's documentation says.
    #[test]
    fn tracking_costs_the_documented_operators() {
        let body = "(data $d \"abc\") (func (export \"run\")
            (i32.store (i32.const 0) (i32.const 1))
            (i64.store offset=64 (i32.const 0) (i64.const 1))
            (memory.fill (i32.const 0) (i32.const 0) (i32.const 16))
            (memory.copy (i32.const 0) (i32.const 16) (i32.const 16))
            (memory.init $d (i32.const 0) (i32.const 0) (i32.const 3)))";
        let (plain, _) = run(body, false);
        let (tracked, _) = run(body, true);
        assert_eq!(tracked - plain, 2 * STORE_TRACKING_OPS + OFFSET_TRACKING_OPS + 3 * BULK_TRACKING_OPS);
    }

    #[test]
    fn a_module_without_globals_or_exports_gets_both() {
        let code = wat::parse_str("(module (memory 1) (func (i32.store (i32.const 0) (i32.const 1))))").expect("text");
        let tracked = instrument(&code).expect("instrumented");
        assert!(tracked.resettable);
        let module = Module::new(&Engine::default(), &tracked.bytes).expect("valid module");
        assert!(module.get_export(WRITTEN_EXPORT).is_some());
    }

    #[test]
    fn mutable_globals_are_exported_and_table_changes_make_a_module_not_resettable() {
        let code = wat::parse_str(
            "(module (memory 1) (global $a (mut i32) (i32.const 1)) (global i64 (i64.const 2))
               (global $c (mut f64) (f64.const 3)) (export \"a\" (global $a)))",
        )
        .expect("text");
        let tracked = instrument(&code).expect("instrumented");
        assert!(tracked.resettable);
        let module = Module::new(&Engine::default(), &tracked.bytes).expect("valid module");
        let names: Vec<&str> = module.exports().map(|e| e.name()).collect();
        assert_eq!(names, ["a", WRITTEN_EXPORT, "chroma:global:0", "chroma:global:2"]);

        for op in ["(table.set (i32.const 0) (ref.null func))", "(elem.drop $e)", "(data.drop $d)"] {
            let text = format!(
                "(module (memory 1) (table 1 funcref) (elem $e func) (data $d \"x\") (func {op}))"
            );
            let tracked = instrument(&wat::parse_str(&text).expect("text")).expect("instrumented");
            assert!(!tracked.resettable, "{op}");
            let module = Module::new(&Engine::default(), &tracked.bytes).expect("valid module");
            assert!(module.get_export(WRITTEN_EXPORT).is_none(), "{op}");
        }
        let reserved = wat::parse_str("(module (memory (export \"chroma:x\") 1))").expect("text");
        assert!(instrument(&reserved).is_err());
    }

    #[test]
    fn written_pages_cover_what_was_marked_and_what_may_spill() {
        let mut pages = WrittenPages::default();
        pages.mark(2000, 200); // pages 0 and 1
        pages.mark(2 * 65_536 + 10, 1); // page 64: bit 0
        assert_eq!(pages.0, bits(&[0, 1]));
        let len = 3 * 65_536;
        let ranges: Vec<_> = pages.ranges(len).collect();
        let page = |n: usize| n * PAGE_BYTES..(n + 1) * PAGE_BYTES + SPILL_BYTES;
        // Each bit's pages: 0, 64 and 128 (the memory has 96 pages), then 1 and 65.
        assert_eq!(ranges, [page(0), page(64), page(1), page(65)]);
        // Ranges stop at the memory's end.
        let small: Vec<_> = WrittenPages(bits(&[1, 5])).ranges(2 * PAGE_BYTES).collect();
        assert_eq!(small, [PAGE_BYTES..2 * PAGE_BYTES]);
    }
}
