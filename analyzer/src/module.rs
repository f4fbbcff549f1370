//! The parts of a Wasm module the analysis needs, decoded once: function
//! types, host imports, tables, globals, the initial memory image, exports,
//! the ABI and every function body as a list of [`Op`]s with its block
//! structure resolved.

use std::collections::BTreeMap;

use chroma_host_api::abi::{Abi, ABI_SECTION};
use chroma_host_api::host::{host_fn, HostFn, ValType as HostValType, IMPORT_MODULE};
use wasmparser::{
    BlockType, CompositeInnerType, ConstExpr, DataKind, ElementItems, ElementKind, ExternalKind, FuncType, ModuleArity,
    Operator, Parser, Payload, SubType, TypeRef, ValType, Validator, WasmFeatures,
};

use crate::summary::Comparison;
use crate::AnalyzeError;

/// The Wasm features contracts may use: what Rust's `wasm32-unknown-unknown`
/// target emits by default. The VM's gatekeeper refuses anything else, and the
/// analysis only has to understand these.
pub fn contract_features() -> WasmFeatures {
    WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::REFERENCE_TYPES
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::FLOATS
}

/// Block nesting the divergence scan follows.
const MAX_SCAN_NESTING: usize = 1000;

/// Largest span of initialised data the analysis models (the VM's memory
/// limit is far below it).
const MAX_IMAGE_SPAN: u64 = 64 << 20;

/// A host function the analysis knows the meaning of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostCall {
    Input,
    Caller,
    SelfAddress,
    StorageRead,
    StorageWrite,
    StorageRemove,
    StorageAdd,
    SetReturn,
    Emit,
    Revert,
    Call,
    GasLeft,
}

impl HostCall {
    const ALL: [(HostCall, HostFn); 12] = [
        (HostCall::Input, host_fn::input),
        (HostCall::Caller, host_fn::caller),
        (HostCall::SelfAddress, host_fn::self_address),
        (HostCall::StorageRead, host_fn::storage_read),
        (HostCall::StorageWrite, host_fn::storage_write),
        (HostCall::StorageRemove, host_fn::storage_remove),
        (HostCall::StorageAdd, host_fn::storage_add),
        (HostCall::SetReturn, host_fn::set_return),
        (HostCall::Emit, host_fn::emit),
        (HostCall::Revert, host_fn::revert),
        (HostCall::Call, host_fn::call),
        (HostCall::GasLeft, host_fn::gas_left),
    ];

    fn lookup(module: &str, name: &str, ty: &FuncType) -> Option<HostCall> {
        if module != IMPORT_MODULE {
            return None;
        }
        let (call, f) = Self::ALL.iter().find(|(_, f)| f.name == name)?;
        let same = |ours: &[HostValType], theirs: &[ValType]| {
            ours.len() == theirs.len()
                && ours.iter().zip(theirs).all(|(a, b)| {
                    matches!((a, b), (HostValType::I32, ValType::I32) | (HostValType::I64, ValType::I64))
                })
        };
        (same(f.params, ty.params()) && same(f.results, ty.results())).then_some(*call)
    }
}

/// What a function index refers to.
#[derive(Debug, Clone)]
pub(crate) enum Function {
    /// A host function the analysis models.
    Host(HostCall),
    /// An import the analysis does not know: it may do anything.
    Opaque(String),
    /// A function defined in the module: index into [`Module::bodies`].
    Defined(usize),
}

/// Effects a function may have, directly or through anything it calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reach {
    pub reads: bool,
    pub writes: bool,
    pub adds: bool,
    pub calls: bool,
    pub opaque: bool,
}

impl Reach {
    fn union(self, other: Reach) -> Reach {
        Reach {
            reads: self.reads || other.reads,
            writes: self.writes || other.writes,
            adds: self.adds || other.adds,
            calls: self.calls || other.calls,
            opaque: self.opaque || other.opaque,
        }
    }

    fn of_host(call: HostCall) -> Reach {
        let mut reach = Reach::default();
        match call {
            HostCall::StorageRead => reach.reads = true,
            HostCall::StorageWrite | HostCall::StorageRemove => reach.writes = true,
            HostCall::StorageAdd => reach.adds = true,
            HostCall::Call => reach.calls = true,
            _ => {}
        }
        reach
    }
}

/// Integer operations the analysis evaluates (on constants, and on symbolic
/// bytes where they only move bytes around).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    DivU,
    DivS,
    RemU,
    RemS,
    And,
    Or,
    Xor,
    Shl,
    ShrU,
    ShrS,
    Rotl,
    Rotr,
    Compare(Comparison),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Eqz,
    Clz,
    Ctz,
    Popcnt,
    /// i32.wrap_i64
    Wrap,
    /// i64.extend_i32_u
    ExtendU,
    /// i64.extend_i32_s
    ExtendS,
    /// iN.extendM_s
    SignExtend(u8),
}

/// One instruction, with block structure resolved to positions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Unreachable,
    Nop,
    Block { params: u32, results: u32, end: usize },
    Loop { params: u32, results: u32, end: usize },
    If { params: u32, results: u32, else_at: Option<usize>, end: usize },
    Else,
    End,
    Br(u32),
    BrIf(u32),
    BrTable { targets: Box<[u32]>, default: u32 },
    Return,
    Call(u32),
    CallIndirect { type_index: u32, table: u32 },
    Drop,
    Select,
    LocalGet(u32),
    LocalSet(u32),
    LocalTee(u32),
    GlobalGet(u32),
    GlobalSet(u32),
    /// A load of `bytes` bytes, zero- or sign-extended to a `wide` (i64/f64) or i32 value.
    Load { bytes: u8, signed: bool, wide: bool, offset: u64 },
    Store { bytes: u8, offset: u64 },
    MemorySize,
    MemoryGrow,
    MemoryFill,
    MemoryCopy,
    MemoryInit(u32),
    Const(u64),
    Binary { op: BinOp, wide: bool },
    Unary { op: UnOp, wide: bool },
    /// Anything else: pops and pushes values the analysis does not track.
    Other { pops: u32, pushes: u32 },
}

/// One function body.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    /// Number of declared locals after the parameters.
    pub extra_locals: u32,
    pub ops: Vec<Op>,
}

/// A table's initial contents (function indices; `None` is a null entry).
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub entries: Vec<Option<u32>>,
}

/// A decoded module.
#[derive(Debug)]
pub(crate) struct Module {
    pub types: Vec<SubType>,
    pub functions: Vec<(u32, Function)>,
    pub bodies: Vec<Body>,
    pub tables: Vec<Table>,
    /// False when code can change a table (table.set, grow, fill, copy, init),
    /// so a table's initial contents say nothing about indirect calls.
    pub tables_fixed: bool,
    /// Each global's initial value (`None` when not a constant) and mutability.
    pub globals: Vec<(Option<u64>, bool)>,
    pub memory_pages: u64,
    /// Initial memory: `image[i]` is the byte at `image_base + i`; zero elsewhere.
    pub image_base: u64,
    pub image: Vec<u8>,
    /// Passive data segments by index (active ones are empty here).
    pub data: Vec<Vec<u8>>,
    pub exports: BTreeMap<String, u32>,
    pub abi: Option<Abi>,
    /// What each function may reach, by function index.
    pub reach: Vec<Reach>,
    /// Functions that never return normally (they revert, trap or loop).
    pub diverges: Vec<bool>,
    /// rustc's shadow-stack pointer (the first mutable global, when the stack
    /// lies below the data). Only used to forget dead stack bytes, which is
    /// sound whichever global this is.
    pub stack_pointer: Option<u32>,
}

impl Module {
    pub fn func_type(&self, type_index: u32) -> Option<&FuncType> {
        match &self.types.get(type_index as usize)?.composite_type.inner {
            CompositeInnerType::Func(f) => Some(f),
            _ => None,
        }
    }

    /// Whether functions `a`'s and `b`'s types are the same signature.
    pub fn same_signature(&self, type_a: u32, type_b: u32) -> bool {
        match (self.func_type(type_a), self.func_type(type_b)) {
            (Some(a), Some(b)) => a.params() == b.params() && a.results() == b.results(),
            _ => false,
        }
    }

    /// The functions an indirect call through `table` with signature
    /// `type_index` may reach: the table's entries of that signature when
    /// no code changes tables, else every function of that signature.
    pub fn indirect_candidates(&self, table: u32, type_index: u32) -> Vec<u32> {
        let matches = |f: u32| self.functions.get(f as usize).is_some_and(|(t, _)| self.same_signature(*t, type_index));
        match self.tables.get(table as usize) {
            Some(t) if self.tables_fixed => {
                let mut funcs: Vec<u32> = t.entries.iter().flatten().copied().filter(|f| matches(*f)).collect();
                funcs.sort_unstable();
                funcs.dedup();
                funcs
            }
            _ => (0..self.functions.len() as u32).filter(|f| matches(*f)).collect(),
        }
    }

    /// Union of what the candidates of an unresolved indirect call may reach.
    pub fn reach_of_indirect(&self, table: u32, type_index: u32) -> Reach {
        self.indirect_candidates(table, type_index)
            .into_iter()
            .fold(Reach::default(), |r, f| r.union(self.reach[f as usize]))
    }

    pub fn parse(bytes: &[u8]) -> Result<Module, AnalyzeError> {
        let invalid = |e: wasmparser::BinaryReaderError| AnalyzeError::InvalidWasm(e.to_string());
        Validator::new_with_features(contract_features()).validate_all(bytes).map_err(invalid)?;

        let mut module = Module {
            types: Vec::new(),
            functions: Vec::new(),
            bodies: Vec::new(),
            tables: Vec::new(),
            tables_fixed: true,
            globals: Vec::new(),
            memory_pages: 0,
            image_base: 0,
            image: Vec::new(),
            data: Vec::new(),
            exports: BTreeMap::new(),
            abi: None,
            reach: Vec::new(),
            diverges: Vec::new(),
            stack_pointer: None,
        };
        let mut memories = 0;
        let mut active_data: Vec<(u64, &[u8])> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        module.types.extend(group.map_err(invalid)?.into_types());
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(invalid)?;
                        let TypeRef::Func(type_index) = import.ty else {
                            return Err(AnalyzeError::Unsupported(format!(
                                "imports something other than a function ({}::{})",
                                import.module, import.name
                            )));
                        };
                        let ty = module
                            .func_type(type_index)
                            .ok_or_else(|| AnalyzeError::Unsupported("import of a non-function type".into()))?;
                        let function = match HostCall::lookup(import.module, import.name, ty) {
                            Some(call) => Function::Host(call),
                            None => Function::Opaque(format!("{}::{}", import.module, import.name)),
                        };
                        module.functions.push((type_index, function));
                    }
                }
                Payload::FunctionSection(reader) => {
                    for type_index in reader {
                        let defined = module.functions.iter().filter(|f| matches!(f.1, Function::Defined(_))).count();
                        module.functions.push((type_index.map_err(invalid)?, Function::Defined(defined)));
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        let table = table.map_err(invalid)?;
                        let size = usize::try_from(table.ty.initial).unwrap_or(usize::MAX).min(1 << 20);
                        module.tables.push(Table { entries: vec![None; size] });
                        if !matches!(table.init, wasmparser::TableInit::RefNull) {
                            // Tables initialised by an expression: not produced by rustc.
                            module.tables_fixed = false;
                        }
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        memories += 1;
                        module.memory_pages = memory.map_err(invalid)?.initial;
                    }
                }
                Payload::GlobalSection(reader) => {
                    for global in reader {
                        let global = global.map_err(invalid)?;
                        let value = const_value(&global.init_expr, &module.globals);
                        module.globals.push((value, global.ty.mutable));
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export.map_err(invalid)?;
                        if export.kind == ExternalKind::Func {
                            module.exports.insert(export.name.to_string(), export.index);
                        }
                    }
                }
                Payload::StartSection { .. } => {
                    return Err(AnalyzeError::Unsupported("has a start function".into()));
                }
                Payload::ElementSection(reader) => {
                    for element in reader {
                        let element = element.map_err(invalid)?;
                        let items: Vec<Option<u32>> = match element.items {
                            ElementItems::Functions(funcs) => {
                                funcs.into_iter().map(|f| f.map(Some)).collect::<Result<_, _>>().map_err(invalid)?
                            }
                            ElementItems::Expressions(_, exprs) => {
                                let mut items = Vec::new();
                                for expr in exprs {
                                    items.push(ref_func(&expr.map_err(invalid)?));
                                }
                                items
                            }
                        };
                        if let ElementKind::Active { table_index, offset_expr } = element.kind {
                            let table = table_index.unwrap_or(0) as usize;
                            let offset = const_value(&offset_expr, &module.globals);
                            match (module.tables.get_mut(table), offset) {
                                (Some(t), Some(offset)) if (offset as usize).saturating_add(items.len()) <= t.entries.len() => {
                                    for (i, item) in items.into_iter().enumerate() {
                                        t.entries[offset as usize + i] = item;
                                    }
                                }
                                _ => module.tables_fixed = false,
                            }
                        }
                    }
                }
                Payload::DataSection(reader) => {
                    for data in reader {
                        let data = data.map_err(invalid)?;
                        match data.kind {
                            DataKind::Passive => module.data.push(data.data.to_vec()),
                            DataKind::Active { offset_expr, .. } => {
                                let offset = const_value(&offset_expr, &module.globals).ok_or_else(|| {
                                    AnalyzeError::Unsupported("a data segment's offset is not a constant".into())
                                })?;
                                active_data.push((offset, data.data));
                                module.data.push(Vec::new());
                            }
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let index = module.bodies.len();
                    if !module.functions.iter().any(|f| matches!(f.1, Function::Defined(i) if i == index)) {
                        return Err(AnalyzeError::InvalidWasm("more bodies than functions".into()));
                    }
                    let (body, writes_tables) = decode_body(&module, &body)?;
                    module.tables_fixed &= !writes_tables;
                    module.bodies.push(body);
                }
                Payload::CustomSection(section) if section.name() == ABI_SECTION => {
                    module.abi = Abi::decode(section.data()).ok();
                }
                _ => {}
            }
        }
        if memories != 1 {
            return Err(AnalyzeError::Unsupported(format!("defines {memories} memories (contracts have exactly one)")));
        }
        module.build_image(&active_data)?;
        module.reach = module.compute_reach();
        module.diverges = module.compute_diverges();
        module.stack_pointer = module.globals.iter().position(|(v, mutable)| *mutable && v.is_some()).and_then(|i| {
            let top = module.globals[i].0?;
            (module.image.is_empty() || top <= module.image_base).then_some(i as u32)
        });
        Ok(module)
    }

    fn build_image(&mut self, active: &[(u64, &[u8])]) -> Result<(), AnalyzeError> {
        let nonempty = active.iter().filter(|(_, d)| !d.is_empty());
        let Some(start) = nonempty.clone().map(|(o, _)| *o).min() else { return Ok(()) };
        let end = nonempty.map(|(o, d)| o + d.len() as u64).max().unwrap_or(start);
        if end - start > MAX_IMAGE_SPAN {
            return Err(AnalyzeError::Unsupported(format!("data segments span {} bytes", end - start)));
        }
        self.image_base = start;
        self.image = vec![0; (end - start) as usize];
        for (offset, data) in active {
            if data.is_empty() {
                continue;
            }
            let at = (offset - start) as usize;
            self.image[at..at + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    /// Whether a call of `func` can have no effect on storage or calls.
    pub fn is_pure(&self, func: u32) -> bool {
        self.reach.get(func as usize).is_some_and(|r| *r == Reach::default())
    }

    /// Whether the ops of `body` at `start..end` (a loop's body) may touch
    /// storage or call a contract, directly or through the functions they call.
    pub fn reaches_in(&self, body: &Body, start: usize, end: usize) -> bool {
        body.ops.get(start..end).is_none_or(|ops| {
            ops.iter().any(|op| match op {
                Op::Call(f) => !self.is_pure(*f),
                Op::CallIndirect { type_index, table } => self.reach_of_indirect(*table, *type_index) != Reach::default(),
                _ => false,
            })
        })
    }

    /// Whether the rest of `body` after position `pc` surely ends the call
    /// (revert, trap) without reaching storage or another contract: the
    /// straight-line code there only computes, calls pure functions and ends
    /// in `unreachable` or a diverging call. Typical of `require!`: format a
    /// message, then revert with it.
    pub fn dead_end_after(&self, body: &Body, pc: usize) -> bool {
        for op in body.ops.iter().skip(pc + 1) {
            match op {
                Op::Unreachable => return true,
                Op::Call(f) => {
                    if !self.is_pure(*f) {
                        return false;
                    }
                    if self.diverges.get(*f as usize).copied().unwrap_or(false) {
                        return true;
                    }
                }
                Op::Nop
                | Op::Drop
                | Op::Select
                | Op::LocalGet(_)
                | Op::LocalSet(_)
                | Op::LocalTee(_)
                | Op::GlobalGet(_)
                | Op::GlobalSet(_)
                | Op::Load { .. }
                | Op::Store { .. }
                | Op::MemorySize
                | Op::Const(_)
                | Op::Binary { .. }
                | Op::Unary { .. } => {}
                _ => return false,
            }
        }
        false
    }

    /// Greatest fixpoint: a function diverges unless some path reaches its
    /// end or a `return` without passing a call to a diverging function.
    fn compute_diverges(&self) -> Vec<bool> {
        let mut diverges: Vec<bool> = self
            .functions
            .iter()
            .map(|(_, f)| matches!(f, Function::Defined(_) | Function::Host(HostCall::Revert)))
            .collect();
        loop {
            let mut changed = false;
            for (index, (_, f)) in self.functions.iter().enumerate() {
                let Function::Defined(body) = f else { continue };
                if !diverges[index] {
                    continue;
                }
                let ops = &self.bodies[*body].ops;
                let mut returns = false;
                let mut marks = Vec::new();
                let end = ops.len().saturating_sub(1);
                let falls = falls_through(ops, 0, end, &diverges, &mut marks, &mut returns, 0);
                if falls || returns {
                    diverges[index] = false;
                    changed = true;
                }
            }
            if !changed {
                return diverges;
            }
        }
    }

    /// Fixpoint over the call graph; an indirect call may reach any function
    /// of its signature.
    fn compute_reach(&self) -> Vec<Reach> {
        let mut reach: Vec<Reach> = self
            .functions
            .iter()
            .map(|(_, f)| match f {
                Function::Host(call) => Reach::of_host(*call),
                Function::Opaque(_) => Reach { opaque: true, ..Reach::default() },
                Function::Defined(_) => Reach::default(),
            })
            .collect();
        loop {
            let mut changed = false;
            for (index, (_, f)) in self.functions.iter().enumerate() {
                let Function::Defined(body) = f else { continue };
                let mut r = reach[index];
                for op in &self.bodies[*body].ops {
                    match op {
                        Op::Call(callee) => r = r.union(reach.get(*callee as usize).copied().unwrap_or_default()),
                        Op::CallIndirect { type_index, table } => {
                            for f in self.indirect_candidates(*table, *type_index) {
                                r = r.union(reach[f as usize]);
                            }
                        }
                        _ => {}
                    }
                }
                if r != reach[index] {
                    reach[index] = r;
                    changed = true;
                }
            }
            if !changed {
                return reach;
            }
        }
    }
}

/// Whether the end of `ops[start..end]` is reachable. `marks` holds, per
/// enclosing label (innermost last), whether a branch reaches it.
fn falls_through(ops: &[Op], start: usize, end: usize, diverges: &[bool], marks: &mut Vec<bool>, returns: &mut bool, depth: usize) -> bool {
    if depth > MAX_SCAN_NESTING {
        // Too deep to look into: say it may fall through (never wrongly "diverges").
        *returns = true;
        return true;
    }
    let mut pc = start;
    while pc < end {
        match &ops[pc] {
            Op::Unreachable => return false,
            Op::Br(d) => {
                mark(marks, *d, returns);
                return false;
            }
            Op::BrIf(d) => mark(marks, *d, returns),
            Op::BrTable { targets, default } => {
                for d in targets.iter().chain([default]) {
                    mark(marks, *d, returns);
                }
                return false;
            }
            Op::Return => {
                *returns = true;
                return false;
            }
            Op::Call(f) if diverges.get(*f as usize).copied().unwrap_or(false) => return false,
            Op::Block { end: e, .. } | Op::Loop { end: e, .. } => {
                let is_loop = matches!(ops[pc], Op::Loop { .. });
                marks.push(false);
                let inner = falls_through(ops, pc + 1, *e, diverges, marks, returns, depth + 1);
                let branched = marks.pop().unwrap_or(true);
                if !(inner || (branched && !is_loop)) {
                    return false;
                }
                pc = *e;
            }
            Op::If { else_at, end: e, .. } => {
                marks.push(false);
                let then_falls = falls_through(ops, pc + 1, else_at.unwrap_or(*e), diverges, marks, returns, depth + 1);
                let else_falls = match else_at {
                    Some(at) => falls_through(ops, at + 1, *e, diverges, marks, returns, depth + 1),
                    None => true,
                };
                let branched = marks.pop().unwrap_or(true);
                if !(then_falls || else_falls || branched) {
                    return false;
                }
                pc = *e;
            }
            _ => {}
        }
        pc += 1;
    }
    true
}

/// Records a branch `depth` labels out; past the outermost label it returns.
fn mark(marks: &mut [bool], depth: u32, returns: &mut bool) {
    match marks.len().checked_sub(1 + depth as usize) {
        Some(i) => marks[i] = true,
        None => *returns = true,
    }
}

/// The value of a constant expression, when it is a plain integer constant
/// or an immutable global with one.
fn const_value(expr: &ConstExpr<'_>, globals: &[(Option<u64>, bool)]) -> Option<u64> {
    let mut reader = expr.get_operators_reader();
    let value = match reader.read().ok()? {
        Operator::I32Const { value } => value as u32 as u64,
        Operator::I64Const { value } => value as u64,
        Operator::F32Const { value } => value.bits() as u64,
        Operator::F64Const { value } => value.bits(),
        Operator::GlobalGet { global_index } => match globals.get(global_index as usize) {
            Some((Some(v), false)) => *v,
            _ => return None,
        },
        _ => return None,
    };
    matches!(reader.read().ok()?, Operator::End).then_some(value)
}

fn ref_func(expr: &ConstExpr<'_>) -> Option<u32> {
    let mut reader = expr.get_operators_reader();
    match reader.read().ok()? {
        Operator::RefFunc { function_index } => Some(function_index),
        _ => None,
    }
}

/// Arity of operators the decoder passes through as [`Op::Other`].
struct Arity<'m> {
    module: &'m Module,
}

impl ModuleArity for Arity<'_> {
    fn sub_type_at(&self, type_idx: u32) -> Option<&SubType> {
        self.module.types.get(type_idx as usize)
    }
    fn tag_type_arity(&self, _: u32) -> Option<(u32, u32)> {
        None
    }
    fn type_index_of_function(&self, function_idx: u32) -> Option<u32> {
        self.module.functions.get(function_idx as usize).map(|f| f.0)
    }
    fn func_type_of_cont_type(&self, _: &wasmparser::ContType) -> Option<&FuncType> {
        None
    }
    fn sub_type_of_ref_type(&self, _: &wasmparser::RefType) -> Option<&SubType> {
        None
    }
    fn control_stack_height(&self) -> u32 {
        0
    }
    fn label_block(&self, _: u32) -> Option<(BlockType, wasmparser::FrameKind)> {
        None
    }
}

fn block_arity(module: &Module, ty: BlockType) -> Result<(u32, u32), AnalyzeError> {
    Ok(match ty {
        BlockType::Empty => (0, 0),
        BlockType::Type(_) => (0, 1),
        BlockType::FuncType(t) => {
            let f = module.func_type(t).ok_or_else(|| AnalyzeError::InvalidWasm("bad block type".into()))?;
            (f.params().len() as u32, f.results().len() as u32)
        }
    })
}

/// Decodes one body; also says whether it may change a table.
fn decode_body(module: &Module, body: &wasmparser::FunctionBody<'_>) -> Result<(Body, bool), AnalyzeError> {
    let invalid = |e: wasmparser::BinaryReaderError| AnalyzeError::InvalidWasm(e.to_string());
    let mut extra_locals = 0u32;
    for local in body.get_locals_reader().map_err(invalid)? {
        let (count, _) = local.map_err(invalid)?;
        extra_locals = extra_locals.saturating_add(count);
    }
    if extra_locals > 50_000 {
        return Err(AnalyzeError::Unsupported(format!("a function declares {extra_locals} locals")));
    }
    let mut ops = Vec::new();
    // Positions of open blocks (Block, Loop, If), to patch their `end` (and `else_at`).
    let mut open: Vec<usize> = Vec::new();
    let arity = Arity { module };
    let mut tables_written = false;
    let mut reader = body.get_operators_reader().map_err(invalid)?;
    while !reader.eof() {
        let op = reader.read().map_err(invalid)?;
        let here = ops.len();
        use Operator as O;
        let decoded = match &op {
            O::Unreachable => Op::Unreachable,
            O::Nop => Op::Nop,
            O::Block { blockty } => {
                let (params, results) = block_arity(module, *blockty)?;
                open.push(here);
                Op::Block { params, results, end: 0 }
            }
            O::Loop { blockty } => {
                let (params, results) = block_arity(module, *blockty)?;
                open.push(here);
                Op::Loop { params, results, end: 0 }
            }
            O::If { blockty } => {
                let (params, results) = block_arity(module, *blockty)?;
                open.push(here);
                Op::If { params, results, else_at: None, end: 0 }
            }
            O::Else => {
                if let Some(Op::If { else_at, .. }) = open.last().and_then(|i| ops.get_mut(*i)) {
                    *else_at = Some(here);
                }
                Op::Else
            }
            O::End => {
                if let Some(start) = open.pop() {
                    match &mut ops[start] {
                        Op::Block { end, .. } | Op::Loop { end, .. } | Op::If { end, .. } => *end = here,
                        _ => {}
                    }
                }
                Op::End
            }
            O::Br { relative_depth } => Op::Br(*relative_depth),
            O::BrIf { relative_depth } => Op::BrIf(*relative_depth),
            O::BrTable { targets } => {
                let list = targets.targets().collect::<Result<Vec<u32>, _>>().map_err(invalid)?;
                Op::BrTable { targets: list.into_boxed_slice(), default: targets.default() }
            }
            O::Return => Op::Return,
            O::Call { function_index } => Op::Call(*function_index),
            O::CallIndirect { type_index, table_index } => {
                Op::CallIndirect { type_index: *type_index, table: *table_index }
            }
            O::Drop => Op::Drop,
            O::Select | O::TypedSelect { .. } => Op::Select,
            O::LocalGet { local_index } => Op::LocalGet(*local_index),
            O::LocalSet { local_index } => Op::LocalSet(*local_index),
            O::LocalTee { local_index } => Op::LocalTee(*local_index),
            O::GlobalGet { global_index } => Op::GlobalGet(*global_index),
            O::GlobalSet { global_index } => Op::GlobalSet(*global_index),
            O::I32Load { memarg } | O::F32Load { memarg } => load(4, false, false, memarg),
            O::I64Load { memarg } | O::F64Load { memarg } => load(8, false, true, memarg),
            O::I32Load8S { memarg } => load(1, true, false, memarg),
            O::I32Load8U { memarg } => load(1, false, false, memarg),
            O::I32Load16S { memarg } => load(2, true, false, memarg),
            O::I32Load16U { memarg } => load(2, false, false, memarg),
            O::I64Load8S { memarg } => load(1, true, true, memarg),
            O::I64Load8U { memarg } => load(1, false, true, memarg),
            O::I64Load16S { memarg } => load(2, true, true, memarg),
            O::I64Load16U { memarg } => load(2, false, true, memarg),
            O::I64Load32S { memarg } => load(4, true, true, memarg),
            O::I64Load32U { memarg } => load(4, false, true, memarg),
            O::I32Store { memarg } | O::F32Store { memarg } | O::I64Store32 { memarg } => store(4, memarg),
            O::I64Store { memarg } | O::F64Store { memarg } => store(8, memarg),
            O::I32Store8 { memarg } | O::I64Store8 { memarg } => store(1, memarg),
            O::I32Store16 { memarg } | O::I64Store16 { memarg } => store(2, memarg),
            O::MemorySize { .. } => Op::MemorySize,
            O::MemoryGrow { .. } => Op::MemoryGrow,
            O::MemoryFill { .. } => Op::MemoryFill,
            O::MemoryCopy { .. } => Op::MemoryCopy,
            O::MemoryInit { data_index, .. } => Op::MemoryInit(*data_index),
            O::I32Const { value } => Op::Const(*value as u32 as u64),
            O::I64Const { value } => Op::Const(*value as u64),
            O::F32Const { value } => Op::Const(value.bits() as u64),
            O::F64Const { value } => Op::Const(value.bits()),
            O::I32Eqz => Op::Unary { op: UnOp::Eqz, wide: false },
            O::I64Eqz => Op::Unary { op: UnOp::Eqz, wide: true },
            O::I32Clz => Op::Unary { op: UnOp::Clz, wide: false },
            O::I64Clz => Op::Unary { op: UnOp::Clz, wide: true },
            O::I32Ctz => Op::Unary { op: UnOp::Ctz, wide: false },
            O::I64Ctz => Op::Unary { op: UnOp::Ctz, wide: true },
            O::I32Popcnt => Op::Unary { op: UnOp::Popcnt, wide: false },
            O::I64Popcnt => Op::Unary { op: UnOp::Popcnt, wide: true },
            O::I32WrapI64 => Op::Unary { op: UnOp::Wrap, wide: false },
            O::I64ExtendI32U => Op::Unary { op: UnOp::ExtendU, wide: true },
            O::I64ExtendI32S => Op::Unary { op: UnOp::ExtendS, wide: true },
            O::I32Extend8S => Op::Unary { op: UnOp::SignExtend(8), wide: false },
            O::I32Extend16S => Op::Unary { op: UnOp::SignExtend(16), wide: false },
            O::I64Extend8S => Op::Unary { op: UnOp::SignExtend(8), wide: true },
            O::I64Extend16S => Op::Unary { op: UnOp::SignExtend(16), wide: true },
            O::I64Extend32S => Op::Unary { op: UnOp::SignExtend(32), wide: true },
            other => match binary(other) {
                Some((op, wide)) => Op::Binary { op, wide },
                None => {
                    if matches!(
                        other,
                        O::TableSet { .. } | O::TableGrow { .. } | O::TableFill { .. } | O::TableCopy { .. } | O::TableInit { .. }
                    ) {
                        tables_written = true;
                    }
                    let (pops, pushes) = other.operator_arity(&arity).ok_or_else(|| {
                        AnalyzeError::Unsupported(format!("operator {other:?} is outside the contract feature set"))
                    })?;
                    Op::Other { pops, pushes }
                }
            },
        };
        ops.push(decoded);
    }
    Ok((Body { extra_locals, ops }, tables_written))
}

fn load(bytes: u8, signed: bool, wide: bool, memarg: &wasmparser::MemArg) -> Op {
    Op::Load { bytes, signed, wide, offset: memarg.offset }
}

fn store(bytes: u8, memarg: &wasmparser::MemArg) -> Op {
    Op::Store { bytes, offset: memarg.offset }
}

fn binary(op: &Operator<'_>) -> Option<(BinOp, bool)> {
    use BinOp as B;
    use Operator as O;
    Some(match op {
        O::I32Add => (B::Add, false),
        O::I32Sub => (B::Sub, false),
        O::I32Mul => (B::Mul, false),
        O::I32DivU => (B::DivU, false),
        O::I32DivS => (B::DivS, false),
        O::I32RemU => (B::RemU, false),
        O::I32RemS => (B::RemS, false),
        O::I32And => (B::And, false),
        O::I32Or => (B::Or, false),
        O::I32Xor => (B::Xor, false),
        O::I32Shl => (B::Shl, false),
        O::I32ShrU => (B::ShrU, false),
        O::I32ShrS => (B::ShrS, false),
        O::I32Rotl => (B::Rotl, false),
        O::I32Rotr => (B::Rotr, false),
        O::I32Eq => (B::Compare(Comparison::Eq), false),
        O::I32Ne => (B::Compare(Comparison::Ne), false),
        O::I32LtU => (B::Compare(Comparison::LtU), false),
        O::I32LtS => (B::Compare(Comparison::LtS), false),
        O::I32GtU => (B::Compare(Comparison::GtU), false),
        O::I32GtS => (B::Compare(Comparison::GtS), false),
        O::I32LeU => (B::Compare(Comparison::LeU), false),
        O::I32LeS => (B::Compare(Comparison::LeS), false),
        O::I32GeU => (B::Compare(Comparison::GeU), false),
        O::I32GeS => (B::Compare(Comparison::GeS), false),
        O::I64Add => (B::Add, true),
        O::I64Sub => (B::Sub, true),
        O::I64Mul => (B::Mul, true),
        O::I64DivU => (B::DivU, true),
        O::I64DivS => (B::DivS, true),
        O::I64RemU => (B::RemU, true),
        O::I64RemS => (B::RemS, true),
        O::I64And => (B::And, true),
        O::I64Or => (B::Or, true),
        O::I64Xor => (B::Xor, true),
        O::I64Shl => (B::Shl, true),
        O::I64ShrU => (B::ShrU, true),
        O::I64ShrS => (B::ShrS, true),
        O::I64Rotl => (B::Rotl, true),
        O::I64Rotr => (B::Rotr, true),
        O::I64Eq => (B::Compare(Comparison::Eq), true),
        O::I64Ne => (B::Compare(Comparison::Ne), true),
        O::I64LtU => (B::Compare(Comparison::LtU), true),
        O::I64LtS => (B::Compare(Comparison::LtS), true),
        O::I64GtU => (B::Compare(Comparison::GtU), true),
        O::I64GtS => (B::Compare(Comparison::GtS), true),
        O::I64LeU => (B::Compare(Comparison::LeU), true),
        O::I64LeS => (B::Compare(Comparison::LeS), true),
        O::I64GeU => (B::Compare(Comparison::GeU), true),
        O::I64GeS => (B::Compare(Comparison::GeS), true),
        _ => return None,
    })
}
