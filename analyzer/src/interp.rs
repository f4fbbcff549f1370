//! The abstract interpreter: runs an entry point over the [`domain`](crate::domain)
//! and records every storage access and cross-contract call it may make.
//!
//! - Structured control flow is interpreted directly. A branch whose condition
//!   is known takes one way; otherwise both ways run and their states are
//!   joined where they meet.
//! - Loops are unrolled exactly while their state keeps changing (up to
//!   [`UNROLL_LIMIT`] iterations for a loop that may touch storage, else
//!   [`PURE_UNROLL_LIMIT`]), then iterated to a fixpoint with joins,
//!   and after [`FIXPOINT_LIMIT`] more rounds widened to "know nothing".
//! - Calls are inlined (full context sensitivity). A call that runs past its
//!   budget, nests too deep or cannot be resolved is replaced by its worst
//!   case: memory and globals forgotten, results unknown, and a wildcard
//!   access for each kind of host call it can reach.
//!
//! Soundness rests on one rule: whatever is not understood becomes unknown,
//! and an unknown address or length makes the affected memory unknown.

use chroma_host_api::key::SYSTEM_SLOT;
use chroma_host_api::limits::{MAX_INPUT_LEN, MAX_KEY_LEN, MAX_METHOD_NAME_LEN};
use chroma_host_api::{InputShape, ADDRESS_LEN};

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::domain::{add_state, bound_paths, join_all, Byte, Frame, Image, Memory, Paths, RangeContent, State, Value, DECIDABLE_FLAG, MAX_DISJUNCTS};
use crate::locals::Locals;
use crate::module::{BinOp, Body, Function, HostCall, Module, Op, Reach, UnOp};
use crate::summary::{AccessKind, CallTemplate, Comparison, Condition, Guard, KeyTemplate, Literal};

/// Iterations of a loop that may also have exited, run exactly before
/// states are joined, when the loop may touch storage or call a contract:
/// a short loop over keys (say, the first few of a batch) then predicts
/// each key. Iterations whose continuation was certain (a counted loop over
/// constants) are always run exactly, within the budget.
const UNROLL_LIMIT: u32 = 4;
/// The same for a loop that only computes (the 128-bit division and
/// multiplication helpers, a square root): its exact iterations told no
/// access apart in the example contracts (the same predictions for 4,000
/// calls) and took a third of the AMM's analysis.
const PURE_UNROLL_LIMIT: u32 = 1;
/// Joined iterations before the loop state is widened to unknown.
const FIXPOINT_LIMIT: u32 = 12;

/// Most guards whose paths a loop iterates apart (see `run_loop`).
const MAX_LOOP_GUARDS: usize = 4;
/// Instructions one entry point may interpret.
pub(crate) const ENTRY_BUDGET: u64 = 3_000_000;
/// Instructions one inlined call may interpret.
const CALL_BUDGET: u64 = 300_000;
/// Inlined calls in progress at once.
const MAX_INLINE_DEPTH: usize = 40;
/// Blocks and calls in progress at once (bounds the interpreter's own stack).
const MAX_NESTING: usize = 400;

/// What an entry point may do.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub reads: Vec<KeyTemplate>,
    pub writes: Vec<KeyTemplate>,
    pub adds: Vec<KeyTemplate>,
    pub calls: Vec<CallTemplate>,
    /// Why the entry may touch anything at all (an import the analysis does not know).
    pub opaque: Option<String>,
    /// For each template, the branch outcomes (defined flags) of every path
    /// that recorded it; `None` once some path recorded it unconditionally.
    pub guards: BTreeMap<(AccessKind, usize), Option<Vec<Vec<(u32, bool)>>>>,
}


fn insert<T: PartialEq>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

impl Effects {
    /// The storage template list of `kind` (calls have their own).
    fn keys_mut(&mut self, kind: AccessKind) -> Option<&mut Vec<KeyTemplate>> {
        match kind {
            AccessKind::Read => Some(&mut self.reads),
            AccessKind::Write => Some(&mut self.writes),
            AccessKind::Add => Some(&mut self.adds),
            AccessKind::Call => None,
        }
    }

    fn add_reach(&mut self, reach: Reach, why: &str) {
        for (reached, kind) in [(reach.reads, AccessKind::Read), (reach.writes, AccessKind::Write), (reach.adds, AccessKind::Add)] {
            if let Some(list) = self.keys_mut(kind).filter(|_| reached) {
                let i = insert(list, KeyTemplate::any());
                self.guards.insert((kind, i), None);
            }
        }
        if reach.calls {
            let i = insert(&mut self.calls, CallTemplate::unknown());
            self.guards.insert((AccessKind::Call, i), None);
        }
        if reach.opaque && self.opaque.is_none() {
            self.opaque = Some(why.to_string());
        }
    }
}

/// What a flag (an unknown comparison outcome) was computed from, when the
/// predictor may be able to evaluate it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlagDef {
    Compare { op: Comparison, wide: bool, lhs: [Byte; 8], rhs: [Byte; 8] },
    /// (flag, negated) pairs.
    And((u32, bool), (u32, bool)),
    Or((u32, bool), (u32, bool)),
}

/// Fresh flag ids and the definitions of those the predictor can evaluate.
///
/// A flag is the outcome of one comparison on the current path. The states
/// that execute one instruction together are alternative paths, so they
/// share its flag (one per definition): each path still has exactly one
/// outcome, and paths that learnt the same outcome keep that fact when they
/// are joined, where separate flags would have been forgotten.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    next: u32,
    pub defs: BTreeMap<u32, FlagDef>,
    /// The flags the current instruction has made so far, by definition.
    this_instruction: Vec<(Option<FlagDef>, u32)>,
    /// Off: no flag is decidable, so no access gets a guard.
    guards: bool,
}

impl Flags {
    fn fresh(&mut self) -> Value {
        let id = self.next & !DECIDABLE_FLAG;
        self.next = self.next.wrapping_add(1);
        Value::Flag { id, negated: false }
    }

    /// Called before each instruction: its flags are new ones.
    fn next_instruction(&mut self) {
        self.this_instruction.clear();
    }

    /// The current instruction's flag with definition `def`, made on first use.
    fn flag_for(&mut self, def: Option<FlagDef>) -> Value {
        if let Some((_, id)) = self.this_instruction.iter().find(|(d, _)| *d == def) {
            return Value::Flag { id: *id, negated: false };
        }
        let Value::Flag { id, .. } = self.fresh() else { return Value::Top };
        let id = if def.is_some() { id | DECIDABLE_FLAG } else { id };
        if let Some(def) = &def {
            self.defs.insert(id, def.clone());
        }
        self.this_instruction.push((def, id));
        Value::Flag { id, negated: false }
    }

    /// A flag for `a op b`, defined when both sides are nameable bytes.
    fn compare(&mut self, op: Comparison, wide: bool, a: Value, b: Value) -> Value {
        let width = if wide { 8 } else { 4 };
        let (lhs, rhs) = (a.bytes(width), b.bytes(width));
        let bytes = || lhs[..width].iter().chain(&rhs[..width]);
        // A comparison of stored values with constants alone (a string's
        // length against its size classes) tells calls apart only by state
        // the predictor can rarely read: not worth keeping paths apart for.
        let per_call = bytes().any(|b| matches!(b, Byte::Input(_) | Byte::Caller(_)));
        let decidable = self.guards && per_call && bytes().all(Byte::is_nameable);
        self.flag_for(decidable.then_some(FlagDef::Compare { op, wide, lhs, rhs }))
    }

    /// A flag for a logical combination of two flags.
    fn combine(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        let def = match (a, b) {
            (Value::Flag { id: x, negated: nx }, Value::Flag { id: y, negated: ny })
                if self.defs.contains_key(&x) && self.defs.contains_key(&y) =>
            {
                match op {
                    BinOp::And => Some(FlagDef::And((x, nx), (y, ny))),
                    BinOp::Or => Some(FlagDef::Or((x, nx), (y, ny))),
                    _ => None,
                }
            }
            _ => None,
        };
        self.flag_for(def)
    }


    /// The condition index of flag `id` in `out`, adding it (and the flags it
    /// combines) on first use.
    fn intern(&self, id: u32, index: &mut BTreeMap<u32, u32>, out: &mut Vec<Condition>) -> Option<u32> {
        if let Some(i) = index.get(&id) {
            return Some(*i);
        }
        let condition = match self.defs.get(&id)? {
            FlagDef::Compare { op, wide, lhs, rhs } => {
                let width = if *wide { 8 } else { 4 };
                Condition::Compare { op: *op, width: width as u8, lhs: lhs[..width].to_vec(), rhs: rhs[..width].to_vec() }
            }
            FlagDef::And((a, na), (b, nb)) | FlagDef::Or((a, na), (b, nb)) => {
                // Definitions only refer to older flags, so this recursion ends.
                let la = Literal { condition: self.intern(*a, index, out)?, value: !na };
                let lb = Literal { condition: self.intern(*b, index, out)?, value: !nb };
                match self.defs.get(&id)? {
                    FlagDef::And(..) => Condition::And(la, lb),
                    _ => Condition::Or(la, lb),
                }
            }
        };
        out.push(condition);
        let i = (out.len() - 1) as u32;
        index.insert(id, i);
        Some(i)
    }

    /// The guards of `effects`, with the conditions they use.
    pub fn export(&self, guards: &BTreeMap<(AccessKind, usize), Option<Vec<Vec<(u32, bool)>>>>) -> (Vec<Condition>, Vec<Guard>) {
        let mut index = BTreeMap::new();
        let mut conditions = Vec::new();
        let mut out = Vec::new();
        for ((kind, i), paths) in guards {
            let Some(paths) = paths else { continue };
            let any_of: Option<Vec<Vec<Literal>>> = paths
                .iter()
                .map(|path| {
                    path.iter()
                        .map(|(id, value)| Some(Literal { condition: self.intern(*id, &mut index, &mut conditions)?, value: *value }))
                        .collect()
                })
                .collect();
            // A path whose condition cannot be exported: unconditional.
            if let Some(any_of) = any_of.filter(|a| !a.is_empty()) {
                out.push(Guard { kind: *kind, index: *i as u32, any_of });
            }
        }
        (conditions, out)
    }
}


/// What a call's fallback keeps of a calling state.
struct Caller {
    frames: Vec<Rc<Frame>>,
    facts: Vec<(u32, bool)>,
    alternatives: Vec<Vec<(u32, bool)>>,
}

impl Caller {
    fn of(state: &State) -> Caller {
        Caller { frames: state.frames.clone(), facts: state.facts.clone(), alternatives: state.alternatives.clone() }
    }
}

/// Why interpretation of a call stopped early.
#[derive(Debug)]
enum Stop {
    /// The budget of inlined frame `frame` (and of all frames inside it) ran out.
    Budget { frame: usize },
    /// Validated code cannot get here; treated like a budget stop.
    Malformed,
}

/// The states (a bounded disjunction) that reach a point; empty: none does.
type Flow = Result<Vec<State>, Stop>;

struct Label {
    height: usize,
    arity: usize,
    /// The states that branch here.
    incoming: Paths,
}

pub(crate) struct Interpreter<'m> {
    module: &'m Module,
    pub effects: Effects,
    /// Instructions interpreted so far (once per state).
    pub steps: u64,
    /// Deadline (in steps) of each inlined frame, outermost first.
    deadlines: Vec<u64>,
    nesting: usize,
    mutable_globals: Vec<bool>,
    /// Lowest label index branched to since it was last reset (loops use it
    /// to see whether an iteration could leave them).
    lowest_target: usize,
    /// Comparison outcomes.
    pub flags: Flags,
    /// When analysing for inputs of one shape: that shape.
    input_shape: Option<InputShape>,
    /// Most states kept apart at one program point.
    max_disjuncts: usize,
    /// Joined iterations of a loop before its state is widened.
    fixpoint_limit: u32,
}

impl<'m> Interpreter<'m> {
    /// `guards`: whether to track which comparisons guard each access. A
    /// constructor runs alone at deploy, so its guards would not be used.
    pub fn new(module: &'m Module, guards: bool) -> Self {
        Interpreter {
            module,
            effects: Effects::default(),
            steps: 0,
            deadlines: Vec::new(),
            nesting: 0,
            lowest_target: usize::MAX,
            flags: Flags { guards, ..Flags::default() },
            mutable_globals: module.globals.iter().map(|(_, mutable)| *mutable).collect(),
            input_shape: None,
            max_disjuncts: MAX_DISJUNCTS,
            fixpoint_limit: FIXPOINT_LIMIT,
        }
    }

    /// An interpreter for calls whose input has `shape`: the input's length
    /// and its layout bytes are constants, so a string's length prefix, the
    /// allocation that holds it and the loops over it are exact, and a key
    /// built from it is followed byte by byte.
    ///
    /// Checking a string leaves one path per byte that may fail its check
    /// (each dies at its revert): one more state per input byte is kept
    /// apart, so that none of them is joined into the path that goes on;
    /// and a loop over the string may run one more joined iteration per
    /// input byte before it is widened. (Found on the registry's names: with
    /// less of either, names of 22 and of 31 bytes and more lost their key.)
    pub fn for_shape(module: &'m Module, shape: InputShape) -> Self {
        let max_disjuncts = MAX_DISJUNCTS + shape.len as usize;
        let fixpoint_limit = FIXPOINT_LIMIT + shape.len;
        Interpreter { input_shape: Some(shape), max_disjuncts, fixpoint_limit, ..Interpreter::new(module, true) }
    }

    fn image(&self) -> Image<'m> {
        Image { base: self.module.image_base, bytes: &self.module.image, max_disjuncts: self.max_disjuncts }
    }

    fn initial_globals(&self) -> Vec<Value> {
        self.module.globals.iter().map(|(v, _)| v.map_or(Value::Top, Value::Const)).collect()
    }

    /// Interprets exported function `func` from the initial state of a fresh instance.
    pub fn run_entry(&mut self, func: u32, budget: u64) {
        let state = State {
            frames: vec![Rc::default()],
            globals: self.initial_globals(),
            memory: Memory::default(),
            pages: Value::Const(self.module.memory_pages),
            facts: Vec::new(),
            alternatives: Vec::new(),
        };
        self.deadlines.clear();
        self.deadlines.push(self.steps.saturating_add(budget));
        let module = self.module;
        match module.functions.get(func as usize) {
            Some((_, Function::Defined(body))) => {
                let reach = module.reach[func as usize];
                // Frame 0 is the entry itself; a stop there degrades to its reach.
                let _ = self.inline(*body, 0, 0, vec![state], reach, true);
            }
            Some((_, Function::Host(_) | Function::Opaque(_))) | None => {
                self.effects.add_reach(Reach { opaque: true, ..Reach::default() }, "the export is an import");
            }
        }
        self.deadlines.clear();
    }

    fn tick(&mut self, states: usize) -> Result<(), Stop> {
        self.steps += states as u64;
        match self.deadlines.last() {
            Some(deadline) if self.steps > *deadline => {
                let frame = self.deadlines.iter().position(|d| self.steps > *d).unwrap_or(0);
                Err(Stop::Budget { frame })
            }
            _ => Ok(()),
        }
    }

    /// The worst case of a call that was not (fully) interpreted, from the
    /// callers' states (arguments already popped): memory and mutable
    /// globals forgotten, the outcomes the callers branched on kept.
    fn fallback(&mut self, callers: Vec<Caller>, results: usize, reach: Reach) -> Vec<State> {
        self.effects.add_reach(reach, "calls an import the analysis does not know");
        let mut globals = self.initial_globals();
        for (g, mutable) in globals.iter_mut().zip(&self.mutable_globals) {
            if *mutable {
                *g = Value::Top;
            }
        }
        let mut memory = Memory::default();
        memory.forget();
        let image = self.image();
        let mut out = Vec::new();
        for caller in callers {
            let mut frames = caller.frames;
            if let Some(top) = frames.last_mut() {
                Rc::make_mut(top).stack.extend(std::iter::repeat_n(Value::Top, results));
            }
            // What the path decided before the call still holds after it.
            let state = State {
                frames,
                globals: globals.clone(),
                memory: memory.clone(),
                pages: Value::Top,
                facts: caller.facts,
                alternatives: caller.alternatives,
            };
            add_state(&mut out, state, &image);
        }
        out
    }

    /// Inlines defined function `body_index`, whose arguments are on top of
    /// each state's stack.
    fn inline(&mut self, body_index: usize, params: usize, results: usize, mut states: Vec<State>, reach: Reach, entry: bool) -> Flow {
        let module = self.module;
        let body = module.bodies.get(body_index).ok_or(Stop::Malformed)?;
        let mut args = Vec::with_capacity(states.len());
        for state in &mut states {
            let stack = &mut state.top().stack;
            if stack.len() < params {
                return Err(Stop::Malformed);
            }
            args.push(stack.split_off(stack.len() - params));
        }
        // The callers, for the worst case if the callee is not followed to
        // its end: their frames and what their paths decided.
        let callers: Vec<Caller> = states.iter().map(Caller::of).collect();
        if !entry && (self.deadlines.len() >= MAX_INLINE_DEPTH || self.nesting >= MAX_NESTING) {
            return Ok(self.fallback(callers, results, reach));
        }
        for (state, args) in states.iter_mut().zip(args) {
            let locals = Locals::new(args.into_iter().chain(std::iter::repeat_n(Value::Const(0), body.extra_locals as usize)));
            state.frames.push(Rc::new(Frame { stack: Vec::new(), locals }));
        }
        if !entry {
            let parent = self.deadlines.last().copied().unwrap_or(u64::MAX);
            self.deadlines.push(parent.min(self.steps.saturating_add(CALL_BUDGET)));
        }
        let frame = self.deadlines.len() - 1;
        self.nesting += 1;
        let outcome = self.run_body(body, results, states);
        self.nesting -= 1;
        if !entry {
            self.deadlines.pop();
        }
        match outcome {
            Ok(returned) => {
                let mut outs = Vec::with_capacity(returned.len());
                for mut out in returned {
                    let callee = out.frames.pop().map(Rc::unwrap_or_clone).unwrap_or_default();
                    // A returned comparison this path has decided is a
                    // constant: paths that return the same answer by
                    // different comparisons can then go on as one.
                    let returned: Vec<Value> = callee.stack.into_iter().map(|v| out.decided(v)).collect();
                    out.top().stack.extend(returned);
                    // The callee's frame is below the stack pointer now: dead.
                    if let Some(Value::Const(sp)) = module.stack_pointer.and_then(|g| out.globals.get(g as usize)) {
                        out.memory.forget_below(*sp & 0xffff_ffff);
                    }
                    out.forget_dead_facts();
                    let image = self.image();
                    add_state(&mut outs, out, &image);
                }
                Ok(outs)
            }
            Err(Stop::Budget { frame: f }) if f >= frame => Ok(self.fallback(callers, results, reach)),
            Err(Stop::Malformed) => Ok(self.fallback(callers, results, reach)),
            Err(stop) => Err(stop),
        }
    }

    fn run_body(&mut self, body: &Body, results: usize, states: Vec<State>) -> Flow {
        let mut labels = vec![Label { height: 0, arity: results, incoming: Paths::default() }];
        let end = body.ops.len().checked_sub(1).ok_or(Stop::Malformed)?;
        let fall = self.exec(body, 0, end, states, &mut labels)?;
        let image = self.image();
        let mut out = labels.pop().map(|l| l.incoming).unwrap_or_default();
        for mut s in fall {
            let stack = &mut s.top().stack;
            if stack.len() < results {
                return Err(Stop::Malformed);
            }
            *stack = stack.split_off(stack.len() - results);
            out.add(s, &image);
        }
        Ok(out.into_states())
    }

    fn branch(&mut self, mut state: State, labels: &mut [Label], depth: u32) -> Result<(), Stop> {
        let index = labels.len().checked_sub(1 + depth as usize).ok_or(Stop::Malformed)?;
        self.lowest_target = self.lowest_target.min(index);
        let label = &mut labels[index];
        let stack = &mut state.top().stack;
        if stack.len() < label.height + label.arity {
            return Err(Stop::Malformed);
        }
        let values = stack.split_off(stack.len() - label.arity);
        stack.truncate(label.height);
        stack.extend(values);
        let image = self.image();
        label.incoming.add(state, &image);
        Ok(())
    }

    /// Runs `body.ops[start..end]` (a block's contents, without its `end`).
    fn exec(&mut self, body: &Body, start: usize, end: usize, states: Vec<State>, labels: &mut Vec<Label>) -> Flow {
        if self.nesting >= MAX_NESTING {
            return Err(Stop::Budget { frame: self.deadlines.len().saturating_sub(1) });
        }
        self.nesting += 1;
        let result = self.exec_inner(body, start, end, states, labels);
        self.nesting -= 1;
        result
    }

    fn exec_inner(&mut self, body: &Body, start: usize, end: usize, mut cur: Vec<State>, labels: &mut Vec<Label>) -> Flow {
        let image = self.image();
        let mut pc = start;
        while pc < end && !cur.is_empty() {
            self.tick(cur.len())?;
            self.flags.next_instruction();
            let op = body.ops.get(pc).ok_or(Stop::Malformed)?;
            match op {
                Op::Unreachable => return Ok(Vec::new()),
                Op::Nop | Op::Else | Op::End => {}
                Op::Block { params, results, end: block_end } => {
                    let height = cur[0].top().stack.len().checked_sub(*params as usize).ok_or(Stop::Malformed)?;
                    labels.push(Label { height, arity: *results as usize, incoming: Paths::default() });
                    let fall = self.exec(body, pc + 1, *block_end, cur, labels);
                    let label = labels.pop().ok_or(Stop::Malformed)?;
                    cur = merge(fall?, label.incoming.into_states(), &image);
                    pc = *block_end;
                }
                Op::Loop { params, end: loop_end, .. } => {
                    let height = cur[0].top().stack.len().checked_sub(*params as usize).ok_or(Stop::Malformed)?;
                    cur = self.run_loop(body, pc + 1, *loop_end, cur, height, *params as usize, labels)?;
                    pc = *loop_end;
                }
                Op::If { params, results, else_at, end: if_end } => {
                    let mut then_in = Vec::new();
                    let mut else_in = Vec::new();
                    for mut s in cur {
                        let condition = pop(&mut s)?;
                        match s.truth(&condition) {
                            Some(true) => then_in.push(s),
                            Some(false) => else_in.push(s),
                            None => {
                                let mut t = s.clone();
                                t.assume(&condition, true);
                                s.assume(&condition, false);
                                then_in.push(t);
                                else_in.push(s);
                            }
                        }
                    }
                    let any = then_in.first().or(else_in.first()).ok_or(Stop::Malformed)?;
                    let height = any.frames.last().map_or(0, |f| f.stack.len()).checked_sub(*params as usize).ok_or(Stop::Malformed)?;
                    labels.push(Label { height, arity: *results as usize, incoming: Paths::default() });
                    let then_end = else_at.unwrap_or(*if_end);
                    let then_out = if then_in.is_empty() { Ok(Vec::new()) } else { self.exec(body, pc + 1, then_end, then_in, labels) };
                    let else_out = match (then_out, else_at) {
                        (Err(e), _) => Err(e),
                        (Ok(t), _) if else_in.is_empty() => Ok((t, Vec::new())),
                        (Ok(t), Some(at)) => self.exec(body, at + 1, *if_end, else_in, labels).map(|e| (t, e)),
                        (Ok(t), None) => Ok((t, else_in)),
                    };
                    let label = labels.pop().ok_or(Stop::Malformed)?;
                    let (t, e) = else_out?;
                    cur = merge(merge(t, e, &image), label.incoming.into_states(), &image);
                    pc = *if_end;
                }
                Op::Br(depth) => {
                    for s in cur.drain(..) {
                        self.branch(s, labels, *depth)?;
                    }
                    return Ok(Vec::new());
                }
                Op::BrIf(depth) => {
                    let mut stay = Vec::new();
                    for mut s in cur {
                        let condition = pop(&mut s)?;
                        match s.truth(&condition) {
                            Some(true) => self.branch(s, labels, *depth)?,
                            Some(false) => stay.push(s),
                            None => {
                                let mut taken = s.clone();
                                taken.assume(&condition, true);
                                self.branch(taken, labels, *depth)?;
                                s.assume(&condition, false);
                                stay.push(s);
                            }
                        }
                    }
                    cur = stay;
                }
                Op::BrTable { targets, default } => {
                    for mut s in cur.drain(..) {
                        let index = pop(&mut s)?;
                        match index.constants() {
                            Some(indices) => {
                                let mut chosen: Vec<u32> =
                                    indices.iter().map(|i| targets.get((*i as u32) as usize).copied().unwrap_or(*default)).collect();
                                chosen.sort_unstable();
                                chosen.dedup();
                                for target in chosen {
                                    self.branch(s.clone(), labels, target)?;
                                }
                            }
                            None => {
                                let mut all: Vec<u32> = targets.iter().copied().chain([*default]).collect();
                                all.sort_unstable();
                                all.dedup();
                                for target in all {
                                    self.branch(s.clone(), labels, target)?;
                                }
                            }
                        }
                    }
                    return Ok(Vec::new());
                }
                Op::Return => {
                    let depth = labels.len().checked_sub(1).ok_or(Stop::Malformed)?;
                    for s in cur.drain(..) {
                        self.branch(s, labels, depth as u32)?;
                    }
                    return Ok(Vec::new());
                }
                Op::Select => {
                    let mut out = Vec::new();
                    for mut s in cur {
                        let condition = pop(&mut s)?;
                        let b = pop(&mut s)?;
                        let a = pop(&mut s)?;
                        match s.truth(&condition) {
                            Some(outcome) => {
                                push(&mut s, if outcome { a } else { b });
                                add_state(&mut out, s, &image);
                            }
                            None if a == b => {
                                push(&mut s, a);
                                add_state(&mut out, s, &image);
                            }
                            None if !matches!(condition, Value::Flag { .. }) || a.as_const().is_none() || b.as_const().is_none() => {
                                // Choosing between unknowns (say, comparisons
                                // of a u128's halves): one unknown, no split.
                                let both_flags = matches!((a, b), (Value::Flag { .. } | Value::Const(0 | 1), Value::Flag { .. } | Value::Const(0 | 1)));
                                push(&mut s, if both_flags { self.flags.fresh() } else { a.join(b) });
                                add_state(&mut out, s, &image);
                            }
                            None => {
                                // Keep both outcomes apart: later choices on
                                // the same comparison then agree with this one.
                                let mut t = s.clone();
                                t.assume(&condition, true);
                                push(&mut t, a);
                                add_state(&mut out, t, &image);
                                s.assume(&condition, false);
                                push(&mut s, b);
                                add_state(&mut out, s, &image);
                            }
                        }
                    }
                    cur = out;
                }
                Op::Call(func) if self.module.is_pure(*func) && self.module.dead_end_after(body, pc) => {
                    // Formatting a revert message, say: nothing after it can
                    // touch storage, so these paths end here.
                    return Ok(Vec::new());
                }
                Op::Call(func) => cur = self.call(*func, cur)?,
                Op::CallIndirect { type_index, table } => {
                    let mut out = Vec::new();
                    for s in cur {
                        for r in self.call_indirect(*type_index, *table, s)? {
                            add_state(&mut out, r, &image);
                        }
                    }
                    cur = out;
                }
                _ => {
                    // In place: most instructions run here, and moving every
                    // state to a new vector each time cost a tenth of the
                    // analysis. A path that traps (rare) is removed; the
                    // others keep their order.
                    let mut i = 0;
                    while i < cur.len() {
                        if self.simple(op, &mut cur[i], &image)? {
                            i += 1;
                        } else {
                            cur.remove(i);
                        }
                    }
                }
            }
            pc += 1;
        }
        Ok(cur)
    }

    /// Applies an instruction without control flow; false when it traps.
    fn simple(&mut self, op: &Op, st: &mut State, image: &Image<'_>) -> Result<bool, Stop> {
        match op {
            Op::Drop => {
                pop(st)?;
            }
            Op::LocalGet(i) => {
                let top = st.top();
                let v = top.locals.get(*i as usize).ok_or(Stop::Malformed)?;
                top.stack.push(v);
            }
            Op::LocalSet(i) => {
                let v = pop(st)?;
                st.top().locals.set(*i as usize, v).ok_or(Stop::Malformed)?;
            }
            Op::LocalTee(i) => {
                let top = st.top();
                let v = *top.stack.last().ok_or(Stop::Malformed)?;
                top.locals.set(*i as usize, v).ok_or(Stop::Malformed)?;
            }
            Op::GlobalGet(i) => {
                let v = *st.globals.get(*i as usize).ok_or(Stop::Malformed)?;
                push(st, v);
            }
            Op::GlobalSet(i) => {
                let v = pop(st)?;
                *st.globals.get_mut(*i as usize).ok_or(Stop::Malformed)? = v;
            }
            Op::Load { bytes, signed, wide, offset } => {
                let address = pop(st)?;
                let load = |ea: u64| {
                    let mut raw = st.memory.read(image, ea, *bytes as usize);
                    let width = if *wide { 8 } else { 4 };
                    let fill = match (signed, raw.last()) {
                        (false, _) => Byte::Const(0),
                        (true, Some(Byte::Const(top))) => Byte::Const(if top & 0x80 != 0 { 0xff } else { 0 }),
                        (true, _) => Byte::Unknown,
                    };
                    raw.resize(width, fill);
                    Value::from_bytes(&raw)
                };
                let value = match address.constants() {
                    Some(addresses) => {
                        // Addresses past 4 GiB trap: those choices end there.
                        let loads: Vec<Value> = addresses
                            .iter()
                            .map(|a| (a & 0xffff_ffff) + offset)
                            .filter(|ea| ea + u64::from(*bytes) <= 1 << 32)
                            .map(load)
                            .collect();
                        match loads.split_first() {
                            None => return Ok(false),
                            Some((first, rest)) => rest.iter().fold(*first, |acc, v| acc.join(*v)),
                        }
                    }
                    None => Value::Top,
                };
                push(st, value);
            }
            Op::Store { bytes, offset } => {
                let value = pop(st)?;
                let address = pop(st)?;
                let n = *bytes as usize;
                match address.constants().map(|a| a.to_vec()) {
                    Some(addresses) if addresses.len() > 1 => {
                        // One of several places: each may keep its old bytes.
                        let new = value.bytes(n);
                        let mut stored = false;
                        for ea in addresses.iter().map(|a| (a & 0xffff_ffff) + offset).filter(|ea| ea + n as u64 <= 1 << 32) {
                            let old = st.memory.read(image, ea, n);
                            let joined: Vec<Byte> = old.iter().zip(&new[..n]).map(|(o, b)| o.join(*b)).collect();
                            st.memory.write(ea, &joined);
                            stored = true;
                        }
                        if !stored {
                            return Ok(false);
                        }
                    }
                    _ => match address.as_const().map(|a| (a & 0xffff_ffff) + offset) {
                    Some(ea) if ea + u64::from(*bytes) > 1 << 32 => return Ok(false),
                    Some(ea) => st.memory.write(ea, &value.bytes(*bytes as usize)[..*bytes as usize]),
                    None => st.memory.forget(),
                    },
                }
            }
            Op::MemorySize => {
                let pages = st.pages;
                push(st, pages);
            }
            Op::MemoryGrow => {
                let delta = pop(st)?;
                if delta.as_const() == Some(0) {
                    let pages = st.pages;
                    push(st, pages);
                } else {
                    st.pages = Value::Top;
                    push(st, Value::Top);
                }
            }
            Op::MemoryFill => {
                let len = pop(st)?;
                let value = pop(st)?;
                let dst = pop(st)?;
                let content = match value.as_const() {
                    Some(v) => RangeContent::Fill(v as u8),
                    None => RangeContent::Unknown,
                };
                write_range(st, image, dst, len, content);
            }
            Op::MemoryCopy => {
                let len = pop(st)?;
                let src = pop(st)?;
                let dst = pop(st)?;
                match (dst.as_const(), src.as_const(), len.as_const()) {
                    (Some(d), Some(s), Some(n)) => st.memory.copy(image, d & 0xffff_ffff, s & 0xffff_ffff, n & 0xffff_ffff),
                    _ => write_range(st, image, dst, len, RangeContent::Unknown),
                }
            }
            Op::MemoryInit(segment) => {
                let len = pop(st)?;
                let src = pop(st)?;
                let dst = pop(st)?;
                let data = self.module.data.get(*segment as usize).ok_or(Stop::Malformed)?;
                match (dst.as_const(), src.as_const(), len.as_const()) {
                    (Some(d), Some(s), Some(n)) => {
                        let Some(bytes) = data.get(s as usize..(s + n) as usize) else { return Ok(false) };
                        let bytes: Vec<Byte> = bytes.iter().map(|b| Byte::Const(*b)).collect();
                        st.memory.write(d & 0xffff_ffff, &bytes);
                    }
                    _ => write_range(st, image, dst, len, RangeContent::Unknown),
                }
            }
            Op::Const(c) => push(st, Value::Const(*c)),
            Op::Binary { op, wide } => {
                let b = pop(st)?;
                let a = pop(st)?;
                match binary(*op, *wide, a, b, &mut self.flags) {
                    Some(v) => push(st, v),
                    None => return Ok(false), // traps (division by zero)
                }
            }
            Op::Unary { op, wide } => {
                let a = pop(st)?;
                push(st, unary(*op, *wide, a, &mut self.flags));
            }
            Op::Other { pops, pushes } => {
                for _ in 0..*pops {
                    pop(st)?;
                }
                st.top().stack.extend(std::iter::repeat_n(Value::Top, *pushes as usize));
            }
            _ => return Err(Stop::Malformed),
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_loop(&mut self, body: &Body, start: usize, end: usize, states: Vec<State>, height: usize, params: usize, labels: &mut Vec<Label>) -> Flow {
        let image = self.image();
        let mut entry = states;
        let mut exits: Vec<State> = Vec::new();
        let mut iteration = 0u32;
        let index = labels.len();
        let unroll = if self.module.reaches_in(body, start, end) { UNROLL_LIMIT } else { PURE_UNROLL_LIMIT };
        loop {
            labels.push(Label { height, arity: params, incoming: Paths::default() });
            let outer_lowest = std::mem::replace(&mut self.lowest_target, usize::MAX);
            let fall = self.exec(body, start, end, entry.clone(), labels);
            let escaped = self.lowest_target < index;
            self.lowest_target = self.lowest_target.min(outer_lowest);
            let label = labels.pop().ok_or(Stop::Malformed)?;
            let fall = fall?;
            let certain = fall.is_empty() && !escaped;
            exits = merge(exits, fall, &image);
            let back = label.incoming.into_states();
            if back.is_empty() || back == entry {
                break;
            }
            if certain && iteration < unroll {
                // Nothing left the loop: this is plain execution, not a guess.
                entry = back;
                continue;
            }
            iteration += 1;
            if iteration < unroll {
                entry = back;
                continue;
            }
            let mut all = entry.clone();
            all.extend(back);
            // One state per guard: paths that decided the predictor's
            // comparisons differently (the direction of a swap) stay apart
            // through loops such as the u256 arithmetic's. Many guards (a
            // string's length compared with every size class) are not worth
            // iterating apart: then all are joined.
            let mut groups: Vec<(Vec<Vec<(u32, bool)>>, Vec<State>)> = Vec::new();
            let guarded = all.iter().any(|s| !s.alternatives.is_empty() || s.decided_facts().next().is_some());
            for state in all {
                let guard = if guarded { state.guard_paths() } else { Vec::new() };
                match groups.iter_mut().find(|(g, _)| *g == guard) {
                    Some((_, members)) => members.push(state),
                    None => groups.push((guard, vec![state])),
                }
            }
            if groups.len() > MAX_LOOP_GUARDS {
                let members = groups.into_iter().flat_map(|(_, members)| members).collect();
                groups = vec![(Vec::new(), members)];
            }
            let mut joined_states: Vec<State> = Vec::new();
            for (_, members) in groups {
                let Some(mut joined) = join_all(&members, &image) else { continue };
                if iteration >= unroll + self.fixpoint_limit {
                    joined.widen_to_top(&self.mutable_globals);
                }
                add_state(&mut joined_states, joined, &image);
            }
            if joined_states.is_empty() {
                break;
            }
            if joined_states.len() == entry.len() && joined_states.iter().all(|s| entry.contains(s)) {
                break;
            }
            entry = joined_states;
        }
        Ok(exits)
    }

    fn call(&mut self, func: u32, mut states: Vec<State>) -> Flow {
        let module = self.module;
        let (type_index, function) = module.functions.get(func as usize).ok_or(Stop::Malformed)?;
        let ty = module.func_type(*type_index).ok_or(Stop::Malformed)?;
        let (params, results) = (ty.params().len(), ty.results().len());
        match function {
            Function::Host(call) => {
                let mut out = Vec::new();
                for s in states {
                    if let Some(s) = self.host(*call, s)? {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            Function::Opaque(name) => {
                let mut callers = Vec::new();
                for s in &mut states {
                    let stack = &mut s.top().stack;
                    if stack.len() < params {
                        return Err(Stop::Malformed);
                    }
                    stack.truncate(stack.len() - params);
                    callers.push(Caller::of(s));
                }
                let why = format!("calls {name}, an import the analysis does not know");
                self.effects.add_reach(Reach { opaque: true, ..Reach::default() }, &why);
                Ok(self.fallback(callers, results, Reach::default()))
            }
            Function::Defined(body) => self.inline(*body, params, results, states, module.reach[func as usize], false),
        }
    }

    fn call_indirect(&mut self, type_index: u32, table: u32, mut st: State) -> Flow {
        let module = self.module;
        let index = pop(&mut st)?;
        let ty = module.func_type(type_index).ok_or(Stop::Malformed)?;
        let (params, results) = (ty.params().len(), ty.results().len());
        if module.tables_fixed {
            if let Some(indices) = index.constants() {
                let image = self.image();
                let mut out = Vec::new();
                // Owned: `st` is cloned for each target below.
                let indices: Vec<u64> = indices.to_vec();
                for i in indices {
                    let entry = module.tables.get(table as usize).and_then(|t| t.entries.get(i as usize)).copied().flatten();
                    match entry {
                        Some(func) if module.functions.get(func as usize).is_some_and(|(t, _)| module.same_signature(*t, type_index)) => {
                            for r in self.call(func, vec![st.clone()])? {
                                add_state(&mut out, r, &image);
                            }
                        }
                        // Null entry, out of bounds or wrong signature: traps.
                        _ => {}
                    }
                }
                return Ok(out);
            }
        }
        let stack = &mut st.top().stack;
        if stack.len() < params {
            return Err(Stop::Malformed);
        }
        stack.truncate(stack.len() - params);
        let reach = module.reach_of_indirect(table, type_index);
        Ok(self.fallback(vec![Caller::of(&st)], results, reach))
    }

    /// Adds storage access templates of `kind` seen on the path of `st`;
    /// returns their indices.
    fn record(&mut self, kind: AccessKind, keys: Vec<KeyTemplate>, st: &State) -> Vec<usize> {
        let Some(list) = self.effects.keys_mut(kind) else { return Vec::new() };
        let indices: Vec<usize> = keys.into_iter().map(|key| insert(list, key)).collect();
        for i in &indices {
            self.note_guard(kind, *i, st);
        }
        indices
    }

    /// Records that template `index` of `kind` happens on the path of `st`,
    /// under the outcomes it branched on that the predictor can evaluate.
    fn note_guard(&mut self, kind: AccessKind, index: usize, st: &State) {
        let entry = self.effects.guards.entry((kind, index)).or_insert_with(|| Some(Vec::new()));
        let Some(paths) = entry else { return };
        for guard in st.guard_paths() {
            if !paths.contains(&guard) {
                paths.push(guard);
            }
        }
        if !bound_paths(paths) {
            *entry = None;
        }
    }

    /// The keys a storage host call may name (several when the slot or
    /// pointer is one of a few constants); empty when the host surely traps.
    fn keys(&self, st: &State, slot: Value, key_ptr: Value, key_len: Value) -> Vec<KeyTemplate> {
        let image = self.image();
        let slots: Vec<Option<u32>> = match slot.constants() {
            // The reserved slot traps: that choice accesses nothing.
            Some(values) => values.iter().map(|s| *s as u32).filter(|s| *s != SYSTEM_SLOT).map(Some).collect(),
            None => vec![None],
        };
        let contents: Vec<Vec<Byte>> = match (key_ptr.constants(), key_len.as_const()) {
            (_, Some(n)) if n > MAX_KEY_LEN as u64 => return Vec::new(),
            (Some(pointers), Some(n)) => pointers.iter().map(|p| st.memory.read(&image, p & 0xffff_ffff, n as usize)).collect(),
            (None, Some(n)) => vec![vec![Byte::Unknown; n as usize]],
            (_, None) => vec![vec![Byte::Unknown]],
        };
        let mut keys = Vec::new();
        for slot in &slots {
            for bytes in &contents {
                let key = KeyTemplate::from_bytes(*slot, bytes);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// One host call on one state; `None` when the path ends there.
    fn host(&mut self, call: HostCall, mut st: State) -> Result<Option<State>, Stop> {
        let image = self.image();
        match call {
            HostCall::Input => {
                let dst = pop(&mut st)?;
                match &self.input_shape {
                    Some(shape) => {
                        let len = Value::Const(u64::from(shape.len));
                        write_range(&mut st, &image, dst, len, RangeContent::Input { first: 0 });
                        if let Some(d) = dst.as_const() {
                            for (offset, byte) in &shape.fixed {
                                st.memory.write((d + u64::from(*offset)) & 0xffff_ffff, &[Byte::Const(*byte)]);
                            }
                        }
                        push(&mut st, len);
                    }
                    None => {
                        write_range(&mut st, &image, dst, Value::Const(MAX_INPUT_LEN as u64), RangeContent::Input { first: 0 });
                        push(&mut st, Value::Top);
                    }
                }
            }
            HostCall::Caller | HostCall::SelfAddress => {
                let dst = pop(&mut st)?;
                let bytes: Vec<Byte> = (0..ADDRESS_LEN as u8)
                    .map(|i| if call == HostCall::Caller { Byte::Caller(i) } else { Byte::Contract(i) })
                    .collect();
                match dst.as_const() {
                    Some(d) => st.memory.write(d & 0xffff_ffff, &bytes),
                    None => st.memory.forget(),
                }
            }
            HostCall::StorageRead => {
                let cap = pop(&mut st)?;
                let dst = pop(&mut st)?;
                let key_len = pop(&mut st)?;
                let key_ptr = pop(&mut st)?;
                let slot = pop(&mut st)?;
                let keys = self.keys(&st, slot, key_ptr, key_len);
                if keys.is_empty() {
                    return Ok(None);
                }
                let reads = self.record(AccessKind::Read, keys, &st);
                let content = match (reads.as_slice(), reads.first().map(|r| u16::try_from(*r))) {
                    ([_], Some(Ok(read))) => RangeContent::Stored { read, first: 0 },
                    // One of several keys: the value's source is not one read.
                    _ => RangeContent::Unknown,
                };
                write_range(&mut st, &image, dst, cap, content);
                push(&mut st, Value::Top);
            }
            HostCall::StorageWrite | HostCall::StorageRemove | HostCall::StorageAdd => {
                // After the key: a write's value (pointer, length), an add's
                // amount (low, high); a remove has nothing.
                if call != HostCall::StorageRemove {
                    pop(&mut st)?;
                    pop(&mut st)?;
                }
                let key_len = pop(&mut st)?;
                let key_ptr = pop(&mut st)?;
                let slot = pop(&mut st)?;
                let keys = self.keys(&st, slot, key_ptr, key_len);
                if keys.is_empty() {
                    return Ok(None);
                }
                let kind = if call == HostCall::StorageAdd { AccessKind::Add } else { AccessKind::Write };
                self.record(kind, keys, &st);
            }
            HostCall::SetReturn => {
                pop(&mut st)?;
                pop(&mut st)?;
            }
            HostCall::Emit => {
                for _ in 0..4 {
                    pop(&mut st)?;
                }
            }
            HostCall::Revert => return Ok(None),
            HostCall::Call => {
                let cap = pop(&mut st)?;
                let dst = pop(&mut st)?;
                let args_len = pop(&mut st)?;
                let args_ptr = pop(&mut st)?;
                let method_len = pop(&mut st)?;
                let method_ptr = pop(&mut st)?;
                let address = pop(&mut st)?;
                let callees: Vec<Vec<Byte>> = match address.constants() {
                    Some(pointers) => pointers.iter().map(|a| st.memory.read(&image, a & 0xffff_ffff, ADDRESS_LEN)).collect(),
                    None => vec![vec![Byte::Unknown; ADDRESS_LEN]],
                };
                let method = match (method_ptr.as_const(), method_len.as_const()) {
                    (Some(p), Some(n)) if n <= MAX_METHOD_NAME_LEN as u64 => {
                        let bytes = st.memory.read(&image, p & 0xffff_ffff, n as usize);
                        let known: Option<Vec<u8>> =
                            bytes.iter().map(|b| if let Byte::Const(c) = b { Some(*c) } else { None }).collect();
                        known.and_then(|k| String::from_utf8(k).ok())
                    }
                    _ => None,
                };
                let args = match (args_ptr.as_const(), args_len.as_const()) {
                    (Some(p), Some(n)) if n <= MAX_INPUT_LEN as u64 => Some(st.memory.read(&image, p & 0xffff_ffff, n as usize)),
                    _ => None,
                };
                let public = |bytes: Vec<Byte>| -> Vec<Byte> {
                    bytes.into_iter().map(|b| if b.is_nameable() { b } else { Byte::Unknown }).collect()
                };
                for callee in callees {
                    let call = CallTemplate { callee: public(callee).into(), method: method.clone(), args: args.clone().map(|a| public(a).into()) };
                    let i = insert(&mut self.effects.calls, call);
                    self.note_guard(AccessKind::Call, i, &st);
                }
                write_range(&mut st, &image, dst, cap, RangeContent::Unknown);
                push(&mut st, Value::Top);
            }
            HostCall::GasLeft => push(&mut st, Value::Top),
        }
        Ok(Some(st))
    }
}

fn merge(a: Vec<State>, b: Vec<State>, image: &Image<'_>) -> Vec<State> {
    if b.is_empty() {
        return a;
    }
    let mut paths = Paths::new(a);
    for s in b {
        paths.add(s, image);
    }
    paths.into_states()
}

fn pop(st: &mut State) -> Result<Value, Stop> {
    st.top().stack.pop().ok_or(Stop::Malformed)
}

fn push(st: &mut State, v: Value) {
    st.top().stack.push(v);
}

/// Writes `content` over `len` bytes at `dst`, as far as they are known.
fn write_range(st: &mut State, image: &Image<'_>, dst: Value, len: Value, content: RangeContent) {
    match (dst.as_const(), len.as_const()) {
        (Some(d), Some(n)) => st.memory.write_range(image, d & 0xffff_ffff, n & 0xffff_ffff, content),
        // Unknown length: everything from `dst` up may change (memory operations do not wrap).
        (Some(d), None) => st.memory.clobber_from(image, d & 0xffff_ffff),
        (None, _) => st.memory.forget(),
    }
}

fn mask(v: u64, wide: bool) -> u64 {
    if wide {
        v
    } else {
        v & 0xffff_ffff
    }
}


/// Evaluates a binary operation; `None` when it traps. An unknown
/// comparison outcome (or a logical combination of outcomes) gets a fresh flag.
fn binary(op: BinOp, wide: bool, a: Value, b: Value, flags: &mut Flags) -> Option<Value> {
    let width = if wide { 8 } else { 4 };
    if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
        return constant_binary(op, wide, mask(x, wide), mask(y, wide)).map(|v| Value::Const(mask(v, wide)));
    }
    if let (Some(xs), Some(ys)) = (a.constants(), b.constants()) {
        // Every combination; those that trap are paths that end.
        let results: Vec<u64> = xs
            .iter()
            .flat_map(|x| ys.iter().map(move |y| (*x, *y)))
            .filter_map(|(x, y)| constant_binary(op, wide, mask(x, wide), mask(y, wide)))
            .map(|v| mask(v, wide))
            .collect();
        if results.is_empty() {
            return None;
        }
        let v = Value::one_of(results);
        return Some(match op {
            BinOp::Compare(c) if v == Value::Top => flags.compare(c, wide, a, b),
            _ => v,
        });
    }
    let flag = |v: &Value| matches!(v, Value::Flag { .. });
    match (op, a, b) {
        (BinOp::And, Value::Flag { .. }, Value::Const(1)) | (BinOp::Or | BinOp::Xor, Value::Flag { .. }, Value::Const(0)) => return Some(a),
        (BinOp::And, Value::Const(1), Value::Flag { .. }) | (BinOp::Or | BinOp::Xor, Value::Const(0), Value::Flag { .. }) => return Some(b),
        (BinOp::Xor, Value::Flag { id, negated }, Value::Const(1)) | (BinOp::Xor, Value::Const(1), Value::Flag { id, negated }) => {
            return Some(Value::Flag { id, negated: !negated })
        }
        (BinOp::And | BinOp::Or | BinOp::Xor, _, _) if flag(&a) && flag(&b) => return Some(flags.combine(op, a, b)),
        _ => {}
    }
    // Operations that only move or keep bytes.
    let (ab, bb) = (a.bytes(width), b.bytes(width));
    let keep = |bytes: [Byte; 8]| Value::from_bytes(&bytes[..width]);
    Some(match (op, a.as_const(), b.as_const()) {
        (BinOp::Add | BinOp::Sub | BinOp::Or | BinOp::Xor | BinOp::Shl | BinOp::ShrU | BinOp::ShrS | BinOp::Rotl | BinOp::Rotr, _, Some(0)) => a,
        (BinOp::Add | BinOp::Or | BinOp::Xor, Some(0), _) => b,
        (BinOp::Mul, _, Some(1)) => a,
        (BinOp::Mul, Some(1), _) => b,
        (BinOp::And, _, Some(m)) | (BinOp::And, Some(m), _) => {
            let other = if b.as_const().is_some() { ab } else { bb };
            let mut out = [Byte::Unknown; 8];
            for i in 0..width {
                out[i] = match (m >> (8 * i)) as u8 {
                    0 => Byte::Const(0),
                    0xff => other[i],
                    _ => match other[i] {
                        Byte::Const(c) => Byte::Const(c & (m >> (8 * i)) as u8),
                        _ => Byte::Unknown,
                    },
                };
            }
            keep(out)
        }
        (BinOp::Or, _, _) => {
            let mut out = [Byte::Unknown; 8];
            for i in 0..width {
                out[i] = match (ab[i], bb[i]) {
                    (Byte::Const(0), x) | (x, Byte::Const(0)) => x,
                    (Byte::Const(x), Byte::Const(y)) => Byte::Const(x | y),
                    _ => Byte::Unknown,
                };
            }
            keep(out)
        }
        (BinOp::Shl, _, Some(s)) if s % 8 == 0 => {
            let k = (s as usize % (width * 8)) / 8;
            let mut out = [Byte::Const(0); 8];
            out[k..width].copy_from_slice(&ab[..width - k]);
            keep(out)
        }
        (BinOp::ShrU, _, Some(s)) if s % 8 == 0 => {
            let k = (s as usize % (width * 8)) / 8;
            let mut out = [Byte::Const(0); 8];
            out[..width - k].copy_from_slice(&ab[k..width]);
            keep(out)
        }
        (BinOp::Compare(c @ (Comparison::Eq | Comparison::Ne)), _, _) if a == b && !ab[..width].contains(&Byte::Unknown) => {
            Value::Const(u64::from(c == Comparison::Eq))
        }
        (BinOp::Compare(c), _, _) => flags.compare(c, wide, a, b),
        _ => Value::Top,
    })
}

fn constant_binary(op: BinOp, wide: bool, x: u64, y: u64) -> Option<u64> {
    let bits = if wide { 64 } else { 32 };
    let signed = |v: u64| if wide { v as i64 } else { v as u32 as i32 as i64 };
    Some(match op {
        BinOp::Add => x.wrapping_add(y),
        BinOp::Sub => x.wrapping_sub(y),
        BinOp::Mul => x.wrapping_mul(y),
        BinOp::DivU => x.checked_div(y)?,
        BinOp::RemU => x.checked_rem(y)?,
        BinOp::DivS => {
            let (a, b) = (signed(x), signed(y));
            let min = if wide { i64::MIN } else { i32::MIN as i64 };
            if b == 0 || (a == min && b == -1) {
                return None;
            }
            (a / b) as u64
        }
        BinOp::RemS => {
            let (a, b) = (signed(x), signed(y));
            if b == 0 {
                return None;
            }
            a.wrapping_rem(b) as u64
        }
        BinOp::And => x & y,
        BinOp::Or => x | y,
        BinOp::Xor => x ^ y,
        BinOp::Shl => x << (y % bits),
        BinOp::ShrU => x >> (y % bits),
        BinOp::ShrS => (signed(x) >> (y % bits)) as u64,
        BinOp::Rotl => {
            if wide {
                x.rotate_left((y % 64) as u32)
            } else {
                u64::from((x as u32).rotate_left((y % 32) as u32))
            }
        }
        BinOp::Rotr => {
            if wide {
                x.rotate_right((y % 64) as u32)
            } else {
                u64::from((x as u32).rotate_right((y % 32) as u32))
            }
        }
        BinOp::Compare(c) => u64::from(c.eval(if wide { 8 } else { 4 }, x, y)),
    })
}

fn unary(op: UnOp, wide: bool, a: Value, flags: &mut Flags) -> Value {
    if let Some(values) = a.constants() {
        return Value::one_of(values.iter().map(|v| constant_unary(op, wide, *v)));
    }
    match (op, a) {
        (UnOp::Eqz, Value::Flag { id, negated }) => return Value::Flag { id, negated: !negated },
        (UnOp::Wrap | UnOp::ExtendU, Value::Flag { .. }) => return a,
        _ => {}
    }
    match op {
        UnOp::Wrap => Value::from_bytes(&a.bytes(4)[..4]),
        UnOp::ExtendU => {
            let mut b = a.bytes(4);
            b[4..].fill(Byte::Const(0));
            Value::from_bytes(&b)
        }
        UnOp::Eqz if nonzero(&a) => Value::Const(0),
        UnOp::Eqz => flags.compare(Comparison::Eq, wide, a, Value::Const(0)),
        _ => Value::Top,
    }
}

fn constant_unary(op: UnOp, wide: bool, v: u64) -> u64 {
    let v = mask(v, wide);
    let r = match op {
        UnOp::Eqz => u64::from(v == 0),
        UnOp::Clz => u64::from(if wide { v.leading_zeros() } else { (v as u32).leading_zeros() }),
        UnOp::Ctz => u64::from(if wide { v.trailing_zeros() } else { (v as u32).trailing_zeros() }),
        UnOp::Popcnt => u64::from(v.count_ones()),
        UnOp::Wrap | UnOp::ExtendU => v & 0xffff_ffff,
        UnOp::ExtendS => v as u32 as i32 as i64 as u64,
        UnOp::SignExtend(8) => v as u8 as i8 as i64 as u64,
        UnOp::SignExtend(16) => v as u16 as i16 as i64 as u64,
        UnOp::SignExtend(_) => v as u32 as i32 as i64 as u64,
    };
    mask(r, wide)
}

/// Whether a value is surely non-zero whatever path it is on.
fn nonzero(v: &Value) -> bool {
    match v {
        Value::Const(c) => *c != 0,
        Value::Bytes { bytes, len } => bytes[..*len as usize].iter().any(|b| matches!(b, Byte::Const(c) if *c != 0)),
        Value::Set { values, len } => values[..*len as usize].iter().all(|v| *v != 0),
        Value::Flag { .. } | Value::Top => false,
    }
}
