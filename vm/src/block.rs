//! Executing a block in parallel, with the result of executing it serially.
//!
//! 1. **Predict.** Each transaction's access templates are filled in
//!    ([`AccessPredictor`], by default the analyzer's [`chroma_analyzer::predict`])
//!    and the sender's nonce key is added as a write (every transaction reads and writes
//!    it). A deploy may access anything and changes which contracts exist, so
//!    the block is cut into *segments* at deploys; deploys run alone.
//! 2. **Plan.** The segment's [`ExecutionPlan`]: the conflict graph and its
//!    ordered groups (`chroma_analyzer::plan`).
//! 3. **Execute.** On a rayon pool, by [`Strategy`]: group after group, or
//!    each transaction as soon as the ones it conflicts with are done. Every
//!    transaction runs in its own store and journal, which checks every
//!    access against its prediction. Under the dataflow strategy (the
//!    default) transactions read the state itself, and each one's writes are
//!    applied to it in block order once it and every transaction before it
//!    have run; a transaction's successors become ready when its writes are
//!    applied. Under the barrier strategy they read the block's overlay (the
//!    state before the segment plus the writes of the transactions done so
//!    far), where each transaction's writes go when it finishes, adds kept
//!    as deltas (`WriteOp::Add`) so that transactions adding to one key can
//!    run together.
//! 4. **Check.** A transaction whose accesses left its prediction is a
//!    *misprediction*: its effects are not applied, and no later transaction
//!    of the segment can be trusted (it may have missed the mispredicted
//!    one's writes). The transactions before the first misprediction are
//!    correct: each saw exactly the writes of the earlier transactions it
//!    conflicts with, and only writes it does not touch from others. Their
//!    effects are applied in block order (under the dataflow strategy they
//!    already are: nothing after a misprediction ever is); the mispredicted
//!    transaction runs again alone, on the exact state, and the rest of the
//!    segment is planned again. After [`MAX_REPLANS`] mispredictions in a
//!    block the rest runs serially. Either way the result is the serial one.
//!
//! Receipts, gas and events are those of serial execution: each transaction
//! sees the state the serial order would show it, and gas depends only on
//! the instructions executed and the bytes read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chroma_analyzer::{nonce_pattern, prefetch_call, Collected, ExecutionPlan, PatternRef, PredictedAccess, Strategy, Successors, PREFETCH_CALLS_AHEAD};
use chroma_host_api::Address;
use rayon::prelude::*;
use rayon::ThreadPool;

use crate::prediction::PredictionEnv;
use crate::runtime::{execute_in, Executed, Runtime, Vm, VmError};
use crate::shapes::ShapeAnalysisTime;
use crate::stack::{mark_execution_thread, on_execution_thread, EXECUTION_STACK_BYTES};
use crate::state::{BlockOverlay, StateOverlay, StateRead};
use crate::tx::{Receipt, Transaction, TxKind};

/// Mispredictions after which the rest of a block runs serially: each one
/// costs a re-plan and the re-execution of what ran after it.
pub const MAX_REPLANS: usize = 8;

/// The most threads a block runs on (the instance pool is sized for it, see
/// `engine::POOLED_INSTANCES`).
pub const MAX_THREADS: usize = 64;

/// How to execute a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOptions {
    /// Threads for parallel execution (1 ..= [`MAX_THREADS`]).
    pub threads: usize,
    pub strategy: Strategy,
    /// Execute one transaction after another (the reference), still planning
    /// the block for its report.
    pub serial: bool,
    /// Run a segment serially when its plan has almost no parallelism
    /// (`false`: always on the pool, as tests of the parallel path want).
    pub adaptive: bool,
}

impl Default for BlockOptions {
    /// Parallel, dataflow, on every core.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BlockOptions { threads: cores.min(MAX_THREADS), strategy: Strategy::default(), serial: false, adaptive: true }
    }
}

impl BlockOptions {
    pub fn serial() -> BlockOptions {
        BlockOptions { serial: true, threads: 1, ..BlockOptions::default() }
    }
}

/// Predicts what a transaction may access. The planner trusts it only as far
/// as execution confirms it: a wrong prediction costs time, never correctness.
pub trait AccessPredictor: Sync {
    /// The accesses of the call transaction `tx` (deploys are never asked).
    fn predict(&self, env: &PredictionEnv<'_>, tx: &Transaction) -> PredictedAccess;

    /// The accesses the executor plans `tx` with, into `out`: its
    /// prediction and the write of its sender's nonce (the executor reads
    /// and writes it outside the journal; as a plain write it orders the
    /// sender's transactions), with their fingerprints (made here, from the
    /// prediction, unless overridden).
    fn collect(&self, env: &PredictionEnv<'_>, tx: &Transaction, out: &mut Collected) {
        out.set(self.predict(env, tx));
        out.write(nonce_pattern(&tx.sender));
    }
}

/// The analyzer's prediction from the contracts' summaries.
pub struct AnalyzerPredictor;

impl AccessPredictor for AnalyzerPredictor {
    fn predict(&self, env: &PredictionEnv<'_>, tx: &Transaction) -> PredictedAccess {
        match &tx.kind {
            TxKind::Call { contract, method, args } => chroma_analyzer::predict(env, &tx.sender, contract, method, args),
            TxKind::Deploy { .. } => PredictedAccess::unbounded(),
        }
    }

    fn collect(&self, env: &PredictionEnv<'_>, tx: &Transaction, out: &mut Collected) {
        match &tx.kind {
            TxKind::Call { contract, method, args } => chroma_analyzer::predict_transaction_into(env, &tx.sender, contract, method, args, out),
            TxKind::Deploy { .. } => {
                out.set(self.predict(env, tx));
                out.write(nonce_pattern(&tx.sender));
            }
        }
    }
}

/// A block's receipts and what happened while executing it.
#[derive(Debug, Clone)]
pub struct BlockExecution {
    pub receipts: Vec<Receipt>,
    pub report: BlockReport,
}

/// What the planner predicted and how execution went.
#[derive(Debug, Clone)]
pub struct BlockReport {
    pub options: BlockOptions,
    /// The plan of the whole block, from the predictions execution used
    /// (deploys as transactions that may access anything).
    pub plan: ExecutionPlan,
    /// Each transaction's prediction, nonce key included.
    pub predictions: Vec<PredictedAccess>,
    /// The contract each transaction called (`None` for a deploy).
    pub targets: Vec<Option<Address>>,
    /// Gas used by each transaction.
    pub gas: Vec<u64>,
    /// Transactions whose accesses left their prediction, in block order.
    pub mispredicted: Vec<usize>,
    /// Filling templates in and building plans. A segment of more than a few
    /// transactions is planned on another thread while it starts executing
    /// serially: then planning and execution overlap.
    pub planning: Duration,
    /// Within `planning`: the analyses of entry points for input shapes
    /// first seen in this block (each made once per runtime, then kept),
    /// and their time summed over the threads that made them (so it can
    /// exceed `planning`, a wall time). A concurrent block on the same
    /// runtime may add its own.
    pub shape_analysis: ShapeAnalysisTime,
    /// Running transactions and applying their writes to the block's state.
    pub execution: Duration,
    /// Plans made (one per segment between deploys, plus one per misprediction).
    pub plans: usize,
    /// Planned segments run serially because their plan had almost no
    /// parallelism (a chain): running them on threads would only add the
    /// cost of handing transactions between threads.
    pub serial_segments: usize,
    /// Transactions executed serially while their segment was planned, in
    /// segments whose plan then ran the rest on threads (those of segments
    /// that ran serially as a whole are not counted here).
    pub executed_while_planning: usize,
}

impl BlockReport {
    pub fn transactions(&self) -> usize {
        self.gas.len()
    }

    /// Transactions whose prediction was a set of single keys.
    pub fn exact_predictions(&self) -> usize {
        self.predictions.iter().filter(|p| p.is_exact()).count()
    }

    /// The gas on the heaviest chain of conflicting transactions.
    pub fn critical_path_gas(&self) -> u64 {
        self.plan.critical_path(&self.gas)
    }

    /// Serial time over the time of the plan's schedule on `threads` threads,
    /// both measured in gas: the speedup the plan allows if time follows gas.
    pub fn predicted_speedup(&self, threads: usize) -> f64 {
        let total: u64 = self.gas.iter().sum();
        let makespan = self.plan.makespan(self.options.strategy, threads, &self.gas);
        if makespan == 0 {
            return 1.0;
        }
        total as f64 / makespan as f64
    }

    /// The `limit` keys that caused the most conflict edges, most first,
    /// with how many.
    pub fn hottest_keys(&self, limit: usize) -> Vec<(PatternRef<'_>, u32)> {
        self.plan.graph.hottest(limit, &self.predictions)
    }

    /// The key pattern of resource `resource` (an edge's weight).
    pub fn resource(&self, resource: u32) -> Option<PatternRef<'_>> {
        self.plan.graph.pattern(resource, &self.predictions)
    }

    /// Per contract called: transactions, gas, conflict edges into its
    /// transactions, exact predictions; deploys under `None`.
    pub fn by_contract(&self) -> BTreeMap<Option<Address>, ContractShare> {
        let mut shares: BTreeMap<Option<Address>, ContractShare> = BTreeMap::new();
        for (tx, target) in self.targets.iter().enumerate() {
            let share = shares.entry(*target).or_default();
            share.transactions += 1;
            share.gas += self.gas[tx];
            share.conflicts += self.plan.graph.predecessors(tx).count();
            share.exact += usize::from(self.predictions[tx].is_exact());
            share.mispredicted += usize::from(self.mispredicted.binary_search(&tx).is_ok());
        }
        shares
    }
}

/// One contract's part of a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContractShare {
    pub transactions: usize,
    pub gas: u64,
    /// Conflict edges ending at its transactions.
    pub conflicts: usize,
    pub exact: usize,
    pub mispredicted: usize,
}

/// Segments of at most this many transactions are planned before they are
/// executed (on this thread, see `SEQUENTIAL_MAX`); longer ones while they
/// start executing (see `execute_block_here`).
const PLANNED_FIRST_MAX: usize = 64;

/// What a segment's planner, running beside its serial execution, decided
/// (see `execute_block_here`).
const UNDECIDED: u8 = 0;
const SERIALLY: u8 = 1;
const IN_PARALLEL: u8 = 2;

/// Where the tests of planning beside execution hold it: in this crate's
/// tests, the serial execution beside a planner runs
/// [`PREFIX`](overlap_seam::PREFIX) transactions (unless 0), then waits for
/// the planner's decision, so that a segment found parallel runs in
/// parallel after a serial stretch of a known length (by itself, the length
/// is whatever planning took). Elsewhere it does nothing.
mod overlap_seam {
    use std::sync::atomic::AtomicU8;

    #[cfg(test)]
    pub(super) static PREFIX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Transactions to execute before the planner's decision may stop them.
    pub(super) fn prefix() -> usize {
        #[cfg(test)]
        return PREFIX.load(std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(test))]
        0
    }

    /// Waits until the planner has decided (in tests).
    pub(super) fn await_decision(decision: &AtomicU8) {
        #[cfg(test)]
        while decision.load(std::sync::atomic::Ordering::Acquire) == super::UNDECIDED {
            std::thread::yield_now();
        }
        let _ = decision;
    }
}

/// Least speedup, in transactions per schedule step, worth running a plan
/// in parallel for (per mille: 1500 = 1.5x). Handing transactions between
/// threads has a cost: the lending workload, whose plan allows 1.3x on two
/// threads, ran at 0.90x of serial in parallel; plans allowing 2x ran at
/// 1.1-1.5x.
const MIN_PARALLEL_SPEEDUP_PER_MILLE: usize = 1_500;

/// Whether `plan` on `options.threads` threads would run meaningfully
/// faster than one transaction after another, counting transactions (gas
/// is not known before execution).
fn worth_parallel(plan: &ExecutionPlan, options: BlockOptions) -> bool {
    if !options.adaptive {
        return true;
    }
    let threads = options.threads.max(2);
    let worth = |steps: usize| plan.len() * 1_000 >= steps.max(1) * MIN_PARALLEL_SPEEDUP_PER_MILLE;
    // Both strategies schedule greedily, so they take at most n/threads
    // steps plus one per group (Graham's bound; a group is a step of the
    // longest chain). When even that is fast enough, the schedule need not
    // be simulated (which took a millisecond of a 10,000-transfer block).
    if worth(plan.len().div_ceil(threads) + plan.groups.len()) {
        return true;
    }
    // Nor is any schedule shorter than its longest chain (a step per
    // group) or than an even share per thread: when even that is too slow,
    // so is the schedule. A fully dependent block is decided here (its
    // schedule, simulated, was a sixth of a 10,000-transaction chain's
    // planning: 0.20 against 0.165 µs per transaction, medians of 15).
    if !worth(plan.len().div_ceil(threads).max(plan.groups.len())) {
        return false;
    }
    let unit = vec![1u64; plan.len()];
    worth(plan.makespan(options.strategy, threads, &unit) as usize)
}

/// A rayon pool per thread count, shared by every block of the process:
/// creating threads per block would cost more than small blocks take.
fn pool(threads: usize) -> Result<Arc<ThreadPool>, VmError> {
    static POOLS: OnceLock<Mutex<BTreeMap<usize, Arc<ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pool) = pools.get(&threads) {
        return Ok(pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("chroma-exec-{i}"))
        .stack_size(EXECUTION_STACK_BYTES)
        .start_handler(|_| mark_execution_thread())
        .build()
        .map_err(|e| VmError::Engine(format!("cannot start {threads} threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.insert(threads, pool.clone());
    Ok(pool)
}

impl Vm {
    /// Executes `txs` in order as one block with the analyzer's predictions,
    /// applying their effects to the state. The receipts and the resulting
    /// state are those of [`Vm::execute`] on each transaction in turn.
    pub fn execute_block(&mut self, txs: &[Transaction], options: &BlockOptions) -> Result<BlockExecution, VmError> {
        self.execute_block_with(txs, options, &AnalyzerPredictor)
    }

    /// [`Vm::execute_block`] with another predictor (for fault injection and experiments).
    pub fn execute_block_with(
        &mut self,
        txs: &[Transaction],
        options: &BlockOptions,
        predictor: &dyn AccessPredictor,
    ) -> Result<BlockExecution, VmError> {
        // Serial stretches run on this thread: move once, for the whole block.
        on_execution_thread(|| self.execute_block_here(txs, options, predictor))?
    }

    fn execute_block_here(
        &mut self,
        txs: &[Transaction],
        options: &BlockOptions,
        predictor: &dyn AccessPredictor,
    ) -> Result<BlockExecution, VmError> {
        let threads = options.threads.clamp(1, MAX_THREADS);
        let options = BlockOptions { threads, ..*options };
        let pool = if options.serial { None } else { Some(pool(threads)?) };
        // Every transaction that runs writes its sender's nonce, and most
        // at least one key more: room for twice that many pending keys at
        // once, before the block's first write (a node's state hands its
        // table over at each commit, so this sizes each block's anew). With
        // room for one key per transaction, the table of a block of 10,000
        // transfers (15,000 keys) was rehashed once as it filled: 1.3-2% of
        // the samples of serial and parallel blocks. At most
        // `PENDING_RESERVE_MAX`: a huge block grows its table as it goes
        // rather than claiming all of it up front.
        self.state().reserve((2 * txs.len()).min(PENDING_RESERVE_MAX));
        // Both are filled in block order: segments and deploys end in order,
        // and a misprediction ends its segment's part at the transaction it
        // re-executes. A block of one segment takes its segment's vectors as
        // they are (a 10,000-transaction chain spent 1.5% of its time moving
        // receipts and predictions through slots and back).
        let mut receipts: Vec<Receipt> = Vec::new();
        let mut predictions: Vec<PredictedAccess> = Vec::new();
        let mut mispredicted = Vec::new();
        let (mut planning, mut execution, mut plans, mut serial_segments, mut executed_while_planning) = (Duration::ZERO, Duration::ZERO, 0, 0, 0);
        let analysed_before = self.runtime().shape_analysis();
        let mut segment_plan: Option<ExecutionPlan> = None;
        let mut next = 0;
        while next < txs.len() {
            if let TxKind::Deploy { .. } = txs[next].kind {
                predictions.push(PredictedAccess::unbounded());
                let started = Instant::now();
                receipts.push(self.execute(&txs[next])?);
                execution += started.elapsed();
                next += 1;
                continue;
            }
            let end = txs[next..].iter().position(|tx| matches!(tx.kind, TxKind::Deploy { .. })).map_or(txs.len(), |p| next + p);
            let segment = &txs[next..end];

            // A segment is planned on another thread (with the threads that
            // execution leaves: one, on two cores) while this one already
            // executes it serially. When the plan is made, if it is worth
            // running in parallel, execution stops after the transaction it
            // is at and the rest runs on the pool; otherwise it just goes on.
            // Planned first (on both cores) and executed after, a block had
            // all of its planning on its path; overlapped, a 10,000-transfer
            // block's whole call took 3.67 / 3.74 instead of 4.24 / 4.55 µs
            // per transaction, and a block with no parallelism costs what
            // serial execution costs (its planning, for the report, is off
            // its path). Serial
            // execution plans beside itself the same way; short segments,
            // and the pool forced (`adaptive: false`), are planned first.
            let mut predicted: Vec<PredictedAccess>;
            let serial_only = pool.is_none() || mispredicted.len() >= MAX_REPLANS;
            let overlapped = !serial_only && options.adaptive && segment.len() > PLANNED_FIRST_MAX;
            let (plan, run) = if serial_only || overlapped {
                let (runtime, state) = (self.runtime().clone(), self.state().clone());
                let decision = AtomicU8::new(if overlapped { UNDECIDED } else { SERIALLY });
                let started = Instant::now();
                // The planner runs on the kept one-thread pool (where
                // `plan_on(None, ..)` plans anyway), not on a thread started
                // for the block (its creation, and at its end handing back
                // what its allocator held; see `stack.rs`).
                let planner_pool = self::pool(1)?;
                // The planner has the threads execution leaves: on two
                // cores, one.
                let planner_threads = if threads > 2 { Some(self::pool(threads - 1)?) } else { None };
                let mut planned = None;
                let ran = planner_pool.in_place_scope(|scope| {
                    scope.spawn(|_| {
                        planned = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let started = Instant::now();
                            let all = predict_with(&runtime, &state, segment, predictor, planner_threads.as_deref());
                            let plan = plan_on(planner_threads.as_deref(), &all);
                            if overlapped {
                                let parallel = matches!(&plan, Ok(plan) if worth_parallel(plan, options));
                                decision.store(if parallel { IN_PARALLEL } else { SERIALLY }, Ordering::Release);
                            }
                            (all, plan, started.elapsed())
                        })));
                    });
                    let mut ran = Vec::with_capacity(segment.len());
                    let at_least = overlap_seam::prefix();
                    for tx in segment {
                        if decision.load(Ordering::Acquire) == IN_PARALLEL && ran.len() >= at_least {
                            break;
                        }
                        ran.push(self.execute(tx)?);
                        if ran.len() == at_least {
                            overlap_seam::await_decision(&decision);
                        }
                    }
                    Ok::<_, VmError>(ran)
                });
                execution += started.elapsed();
                let (all, plan, took) = match planned {
                    Some(Ok(planned)) => planned,
                    _ => return Err(VmError::Engine("the planner panicked".into())),
                };
                planning += took;
                plans += 1;
                let ran = ran?;
                let plan = plan?;
                predicted = all;
                if decision.load(Ordering::Acquire) == IN_PARALLEL && ran.len() < segment.len() {
                    // `ran` are done, the rest runs on the pool.
                    executed_while_planning += ran.len();
                    let started = Instant::now();
                    let run = self.run_rest(pool.as_deref(), segment, ran, &predicted, &plan, options, &mut serial_segments)?;
                    execution += started.elapsed();
                    (plan, run)
                } else {
                    if pool.is_some() {
                        serial_segments += 1;
                    }
                    (plan, SegmentRun::Applied(ran))
                }
            } else {
                let started = Instant::now();
                predicted = predict_with(self.runtime(), self.state(), segment, predictor, pool.as_deref());
                let plan = plan_on(pool.as_deref(), &predicted)?;
                planning += started.elapsed();
                plans += 1;
                let started = Instant::now();
                let run = self.run_rest(pool.as_deref(), segment, Vec::new(), &predicted, &plan, options, &mut serial_segments)?;
                execution += started.elapsed();
                (plan, run)
            };
            let whole_block = next == 0 && end == txs.len();
            match run {
                SegmentRun::Applied(done) => {
                    append(&mut predictions, predicted);
                    append(&mut receipts, done);
                    if whole_block {
                        segment_plan = Some(plan);
                    }
                    next = end;
                }
                SegmentRun::Mispredicted { done, at } => {
                    // The mispredicted transaction keeps the prediction it
                    // failed; the ones after it are predicted again.
                    predicted.truncate(at + 1);
                    append(&mut predictions, predicted);
                    append(&mut receipts, done);
                    let index = next + at;
                    mispredicted.push(index);
                    let started = Instant::now();
                    receipts.push(self.execute(&txs[index])?);
                    execution += started.elapsed();
                    next = index + 1;
                }
            }
            debug_assert_eq!((receipts.len(), predictions.len()), (next, next));
        }
        debug_assert_eq!(receipts.len(), txs.len());
        let plan = match segment_plan {
            Some(plan) => plan,
            None => plan_on(pool.as_deref(), &predictions)?,
        };
        let report = BlockReport {
            options,
            plan,
            targets: txs
                .iter()
                .map(|tx| match &tx.kind {
                    TxKind::Call { contract, .. } => Some(*contract),
                    TxKind::Deploy { .. } => None,
                })
                .collect(),
            gas: receipts.iter().map(|r| r.gas_used).collect(),
            predictions,
            mispredicted,
            planning,
            shape_analysis: self.runtime().shape_analysis().since(analysed_before),
            execution,
            plans,
            serial_segments,
            executed_while_planning,
        };
        Ok(BlockExecution { receipts, report })
    }

    /// The plan the executor would make for `txs` now (for benchmarks and
    /// tools): predictions over the current state, then the conflict graph.
    pub fn plan(&self, txs: &[Transaction], threads: usize) -> Result<ExecutionPlan, VmError> {
        let pool = pool(threads.clamp(1, MAX_THREADS))?;
        let predicted = predict_with(self.runtime(), self.state(), txs, &AnalyzerPredictor, Some(&pool));
        plan_on(Some(&pool), &predicted)
    }

    /// The analyzer's predictions for `txs` now, nonce keys included, filled
    /// in on `threads` threads.
    pub fn predict_block(&self, txs: &[Transaction], threads: usize) -> Result<Vec<PredictedAccess>, VmError> {
        let pool = pool(threads.clamp(1, MAX_THREADS))?;
        Ok(predict_with(self.runtime(), self.state(), txs, &AnalyzerPredictor, Some(&pool)))
    }

    /// Runs the rest of a planned segment, after `ran` (the receipts of its
    /// first transactions, executed serially and applied): on `pool` if
    /// its plan is worth it, otherwise serially.
    #[allow(clippy::too_many_arguments)]
    fn run_rest(
        &mut self,
        pool: Option<&ThreadPool>,
        segment: &[Transaction],
        mut ran: Vec<Receipt>,
        predicted: &[PredictedAccess],
        plan: &ExecutionPlan,
        options: BlockOptions,
        serial_segments: &mut usize,
    ) -> Result<SegmentRun, VmError> {
        match pool {
            _ if ran.len() == segment.len() => Ok(SegmentRun::Applied(ran)),
            Some(pool) if worth_parallel(plan, options) => self.run_parallel(pool, segment, ran, predicted, plan, options.strategy),
            _ => {
                if pool.is_some() {
                    *serial_segments += 1;
                }
                for tx in &segment[ran.len()..] {
                    ran.push(self.execute(tx)?);
                }
                Ok(SegmentRun::Applied(ran))
            }
        }
    }

    /// Runs a planned segment on `pool`, after `ran` (the receipts of its
    /// first transactions, already executed and applied). Applies the
    /// effects of the transactions before the first misprediction (all of
    /// them if none).
    fn run_parallel(
        &mut self,
        pool: &ThreadPool,
        segment: &[Transaction],
        ran: Vec<Receipt>,
        predicted: &[PredictedAccess],
        plan: &ExecutionPlan,
        strategy: Strategy,
    ) -> Result<SegmentRun, VmError> {
        let first = ran.len();
        let (view, applying): (Arc<dyn StateRead>, _) = match strategy {
            Strategy::Barrier => {
                let expected_writes = predicted[first..].iter().map(|p| p.writes().len() + p.adds().len()).sum();
                let overlay = BlockOverlay::over(self.state().clone(), expected_writes);
                (overlay.clone(), Applying::Overlay(overlay))
            }
            Strategy::Dataflow => {
                let in_order = Mutex::new(InOrder { next: first, ..InOrder::default() });
                let receipts = Mutex::new(Vec::with_capacity(segment.len() - first));
                (self.state().clone(), Applying::InOrder { state: self.state().clone(), in_order, receipts })
            }
        };
        let run = Parallel {
            runtime: self.runtime().clone(),
            view,
            applying,
            segment,
            first,
            predicted,
            plan,
            results: (0..segment.len()).map(|_| Mutex::new(None)).collect(),
            first_bad: AtomicUsize::new(usize::MAX),
        };
        match strategy {
            Strategy::Barrier => run.barrier(pool),
            Strategy::Dataflow => run.dataflow(pool),
        }
        let Parallel { applying, results, first_bad, .. } = run;
        debug_assert!(results[..first].iter().all(|slot| lock(slot).is_none()), "a transaction of the serial stretch ran again");
        let mut receipts = ran;
        match applying {
            Applying::InOrder { in_order, receipts: applied, .. } => {
                let InOrder { next, error, .. } = in_order.into_inner().unwrap_or_else(|p| p.into_inner());
                let applied = applied.into_inner().unwrap_or_else(|p| p.into_inner());
                if let Some(error) = error {
                    return Err(error);
                }
                append(&mut receipts, applied);
                if next == segment.len() {
                    return Ok(SegmentRun::Applied(receipts));
                }
                // Applying stopped at `next`: it left its prediction (or,
                // were anything else to stop it, it runs again alone, on
                // the exact state, as a misprediction does).
                debug_assert!(next == first_bad.load(Ordering::Acquire), "applying stopped at {next}, not at a misprediction");
                Ok(SegmentRun::Mispredicted { done: receipts, at: next })
            }
            Applying::Overlay(overlay) => {
                let first_bad = first_bad.into_inner();
                receipts.reserve(segment.len().min(first_bad).saturating_sub(first));
                for (i, slot) in results.into_iter().enumerate().skip(first) {
                    match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                        Some(Err(error)) => return Err(error),
                        Some(Ok(done)) if i < first_bad => receipts.push(done.receipt),
                        _ => {}
                    }
                }
                if first_bad == usize::MAX {
                    // The overlay holds exactly the segment's effects.
                    self.state().apply_values(overlay.take_before(usize::MAX, Some(pool))?);
                    return Ok(SegmentRun::Applied(receipts));
                }
                // The effects of the transactions before the first bad one; those
                // of later ones that ran are dropped.
                self.state().apply_values(overlay.take_before(first_bad, Some(pool))?);
                Ok(SegmentRun::Mispredicted { done: receipts, at: first_bad })
            }
        }
    }
}

/// The plan of `predicted`: on this thread when it is small, otherwise on
/// `threads` (on one pool thread without a pool).
fn plan_on(threads: Option<&ThreadPool>, predicted: &[PredictedAccess]) -> Result<ExecutionPlan, VmError> {
    match threads {
        // A small plan is made on this thread without any pool (see `SEQUENTIAL_MAX`).
        _ if predicted.len() <= chroma_analyzer::plan::SEQUENTIAL_MAX => Ok(ExecutionPlan::new(predicted)),
        Some(threads) => Ok(threads.install(|| ExecutionPlan::new(predicted))),
        None => Ok(pool(1)?.install(|| ExecutionPlan::new(predicted))),
    }
}

/// Appends `more` to `all`, taking it whole when `all` is empty.
fn append<T>(all: &mut Vec<T>, mut more: Vec<T>) {
    if all.is_empty() {
        *all = more;
    } else {
        all.append(&mut more);
    }
}

/// The most pending keys a block makes room for before it runs: 2^17 keys,
/// a table of about 30 MiB (262,144 slots of 121 bytes: an entry is 120, and
/// the table keeps an eighth of its slots free, in a power of two).
const PENDING_RESERVE_MAX: usize = 1 << 17;

/// Transactions predicted by one task of the pool at least.
const PREDICTION_TASK_MIN: usize = 256;

/// Segments shorter than this are predicted on the calling thread: below
/// two tasks' worth, a pool only adds its hand-over.
const PARALLEL_PREDICTION_MIN: usize = 2 * PREDICTION_TASK_MIN;

/// Each transaction's predicted accesses over `state`, with its nonce key,
/// filled in on `pool` when there is one and the segment is long enough.
fn predict_with(
    runtime: &Runtime,
    state: &Arc<StateOverlay>,
    segment: &[Transaction],
    predictor: &dyn AccessPredictor,
    pool: Option<&ThreadPool>,
) -> Vec<PredictedAccess> {
    let env = PredictionEnv::new(runtime, &**state);
    let one = |(env, collected): &mut (PredictionEnv<'_>, Collected), (i, tx): (usize, &Transaction)| {
        if let Some(Transaction { kind: TxKind::Call { method, args, .. }, .. }) = segment.get(i + PREFETCH_CALLS_AHEAD) {
            prefetch_call(method, args);
        }
        predictor.collect(env, tx, collected);
        // Fingerprinted as it was collected, on this thread, while its
        // keys were in its cache.
        collected.finish()
    };
    match pool {
        Some(pool) if segment.len() >= PARALLEL_PREDICTION_MIN => {
            let parts = env.parts();
            pool.install(|| {
                segment
                    .par_iter()
                    .enumerate()
                    .with_min_len(PREDICTION_TASK_MIN)
                    .map_init(|| (PredictionEnv::assemble(&parts), Collected::default()), one)
                    .collect()
            })
        }
        _ => {
            let mut working = (env, Collected::default());
            segment.iter().enumerate().map(|indexed| one(&mut working, indexed)).collect()
        }
    }
}

/// How a planned segment went.
enum SegmentRun {
    /// Every transaction ran within its prediction; effects applied.
    Applied(Vec<Receipt>),
    /// Transaction `at` (of the segment) left its prediction: the receipts of
    /// those before it, whose effects are applied.
    Mispredicted { done: Vec<Receipt>, at: usize },
}

/// One segment being executed on a pool.
struct Parallel<'a> {
    runtime: Arc<Runtime>,
    /// What its transactions read: the state (under [`Applying::InOrder`])
    /// or the block overlay over it.
    view: Arc<dyn StateRead>,
    applying: Applying,
    segment: &'a [Transaction],
    /// Transactions before this one ran serially before the rest was
    /// planned: their effects are in the state.
    first: usize,
    predicted: &'a [PredictedAccess],
    plan: &'a ExecutionPlan,
    /// Each transaction's result once it ran (its writes still in it under
    /// [`Applying::InOrder`], until they are applied). A lock each: the
    /// thread that ran it and the one applying it meet on it only.
    results: Vec<Mutex<Option<Result<Executed, VmError>>>>,
    /// The first transaction that mispredicted or failed; later ones are skipped.
    first_bad: AtomicUsize,
}

/// Where a parallel segment's writes go.
enum Applying {
    /// Group after group ([`Strategy::Barrier`]): into a block overlay as
    /// each transaction finishes, read through by the later groups, and
    /// applied to the state at the segment's end.
    Overlay(Arc<BlockOverlay>),
    /// Each transaction as soon as the earlier ones it conflicts with are
    /// applied ([`Strategy::Dataflow`]): into the state itself, in block order,
    /// and a transaction's successors are released when its writes are
    /// applied. The transactions read the state: a transaction sees the
    /// writes of every earlier one it conflicts with (applied before it
    /// started) and never a later one's (applied after its own). Nothing
    /// after a misprediction is ever applied, so no overlay has to keep
    /// writes apart: on one thread, reading through an overlay, applying
    /// to it and folding it into the state at the end cost a 10,000-transfer
    /// block about a fifth of its execution.
    InOrder { state: Arc<StateOverlay>, in_order: Mutex<InOrder>, receipts: Mutex<Vec<Receipt>> },
}

/// A dataflow run's schedule under [`Applying::InOrder`]: what is ready to
/// run, what ran, and what is applied.
#[derive(Default)]
struct InOrder {
    /// For each transaction, its predecessors not applied yet.
    waiting: Vec<u32>,
    /// The transactions ready to run (all their predecessors applied).
    ready: ReadySet,
    /// Which transactions ran (their results are in [`Parallel::results`]).
    done: Vec<bool>,
    /// The next transaction to apply.
    next: usize,
    /// Set at the first transaction that mispredicted or failed: nothing
    /// from it on is applied.
    stopped: bool,
    /// Why a transaction failed (an engine or state error, not a revert).
    error: Option<VmError>,
    /// Whether a thread is applying results (one at a time, in order).
    applying: bool,
    /// Threads waiting for a transaction to become ready.
    asleep: usize,
}

/// A set of transactions (by index in the segment) that yields the
/// earliest first. As bits, searched from the earliest one that can be set:
/// ready transactions cluster just after the ones being applied, so the
/// search is short (a binary heap's pop was 2% of a two-thread transfer
/// block, a cache miss at each of its levels).
#[derive(Default)]
struct ReadySet {
    words: Vec<u64>,
    /// No member is below this word.
    from: usize,
}

impl ReadySet {
    fn with_len(len: usize) -> ReadySet {
        ReadySet { words: vec![0; len.div_ceil(64)], from: 0 }
    }

    fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
        self.from = self.from.min(i / 64);
    }

    fn pop_earliest(&mut self) -> Option<usize> {
        while let Some(&word) = self.words.get(self.from) {
            if word != 0 {
                let bit = word.trailing_zeros() as usize;
                self.words[self.from] &= word - 1;
                return Some(self.from * 64 + bit);
            }
            self.from += 1;
        }
        None
    }
}

/// `mutex`'s contents, even after a panic elsewhere (every writer leaves them whole).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Parallel<'_> {
    /// Runs transaction `i` unless an earlier one already went wrong, and
    /// applies its writes to the block overlay if it stayed within its
    /// prediction ([`Applying::Overlay`]).
    fn run(&self, i: usize) {
        if i > self.first_bad.load(Ordering::Acquire) {
            return;
        }
        let mut result = self.execute(i);
        if let (Applying::Overlay(overlay), Ok(done)) = (&self.applying, &mut result) {
            if !done.mispredicted {
                // Moved into the overlay, which keeps them by transaction.
                overlay.apply(i, std::mem::take(&mut done.writes));
            }
        }
        // Each transaction runs once; the slot is empty until now.
        *lock(&self.results[i]) = Some(result);
    }

    /// Executes transaction `i` against its prediction.
    fn execute(&self, i: usize) -> Result<Executed, VmError> {
        // In this crate's tests, a transaction with this gas limit panics
        // here (nothing else can make the executor panic on purpose).
        #[cfg(test)]
        if self.segment[i].gas_limit == tests::PANICKING_GAS_LIMIT {
            panic!("transaction {i} panics, as the test asked");
        }
        let result = execute_in(&self.runtime, &self.view, &self.segment[i], Some(self.predicted[i].clone()));
        if result.as_ref().map_or(true, |done| done.mispredicted) {
            self.first_bad.fetch_min(i, Ordering::AcqRel);
        }
        result
    }

    fn barrier(&self, pool: &ThreadPool) {
        for group in self.plan.groups.iter() {
            pool.install(|| group.par_iter().filter(|&&i| i as usize >= self.first).for_each(|&i| self.run(i as usize)));
        }
    }

    fn dataflow(&self, pool: &ThreadPool) {
        let Applying::InOrder { state, in_order, receipts } = &self.applying else {
            unreachable!("a dataflow run applies in block order");
        };
        // Each transaction's successors in one array (walked while the
        // schedule is locked: a graph's edge lists are a cache miss each),
        // and how many predecessors each waits for. Those that ran before
        // are done: only later ones are waited for.
        let len = self.segment.len();
        let mut successors = Successors::of_graph(&self.plan.graph, self.first);
        let waiting = std::mem::take(&mut successors.waiting);
        {
            let mut held = lock(in_order);
            held.ready = ReadySet::with_len(len);
            (self.first..len).filter(|&i| waiting[i] == 0).for_each(|i| held.ready.insert(i));
            held.waiting = waiting;
            held.done = vec![false; len];
        }
        let woken = Condvar::new();
        let threads = pool.current_num_threads();
        let work = Work { state, in_order, receipts, successors: &successors, woken: &woken };
        pool.scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|_| self.work(&work));
            }
        });
    }

    /// One thread's part of a dataflow run: the earliest ready transaction,
    /// again and again, until every one is applied or applying stopped.
    /// Both threads take transactions in block order from one set, as
    /// applying does: taken from the two ends of a work-stealing deque, a
    /// thread ran the end of the block while the other ran its start, and
    /// the transactions waiting on both were released only when applying
    /// reached the end.
    fn work(&self, work: &Work<'_>) {
        let mut held = lock(work.in_order);
        loop {
            if held.stopped || held.next == self.segment.len() {
                return;
            }
            let Some(i) = held.ready.pop_earliest() else {
                // Everything left waits on transactions running elsewhere.
                held.asleep += 1;
                held = work.woken.wait(held).unwrap_or_else(|p| p.into_inner());
                held.asleep -= 1;
                continue;
            };
            drop(held);
            // Past a misprediction nothing is applied: not worth running.
            let ran = i <= self.first_bad.load(Ordering::Acquire);
            if ran {
                // A panic here would leave the other threads waiting for
                // this transaction forever: it fails the block instead.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.execute(i)))
                    .unwrap_or_else(|_| Err(VmError::Engine(format!("executing transaction {i} of a parallel segment panicked"))));
                *lock(&self.results[i]) = Some(result);
            }
            held = lock(work.in_order);
            held.done[i] = ran;
            if !held.applying {
                held.applying = true;
                held = self.apply_ready(work, held);
                held.applying = false;
            }
        }
    }

    /// Applies the transactions done from the next one to apply on, in
    /// block order, and makes each one's successors ready once it is
    /// applied. Only the schedule's bookkeeping is done under its lock:
    /// held while applying, it kept the other thread waiting at every
    /// transaction that thread finished, and two threads ran a transfer
    /// block at 0.7-0.85x of serial.
    fn apply_ready<'g>(&self, work: &Work<'g>, mut held: MutexGuard<'g, InOrder>) -> MutexGuard<'g, InOrder> {
        loop {
            let from = held.next;
            let mut to = from;
            while to < self.segment.len() && held.done[to] {
                to += 1;
            }
            if held.stopped || to == from {
                return held;
            }
            drop(held);
            let mut stop = None;
            let mut applied = from;
            {
                let mut receipts = lock(work.receipts);
                for i in from..to {
                    // Marked done after its result was stored, so always
                    // there; were it not, it would run again alone, as a
                    // misprediction does.
                    let Some(result) = lock(&self.results[i]).take() else {
                        debug_assert!(false, "transaction {i} marked done without a result");
                        stop = Some(None);
                        break;
                    };
                    match result {
                        Ok(done) if !done.mispredicted => {
                            if let Err(error) = work.state.apply(done.writes) {
                                stop = Some(Some(error.into()));
                                break;
                            }
                            receipts.push(done.receipt);
                            applied += 1;
                        }
                        Ok(_) => {
                            stop = Some(None);
                            break;
                        }
                        Err(error) => {
                            stop = Some(Some(error));
                            break;
                        }
                    }
                }
            }
            held = lock(work.in_order);
            for i in from..applied {
                for &next in work.successors.of(i) {
                    let next = next as usize;
                    held.waiting[next] -= 1;
                    if held.waiting[next] == 0 {
                        held.ready.insert(next);
                    }
                }
            }
            held.next = applied;
            if let Some(error) = stop {
                held.stopped = true;
                held.error = error;
                self.first_bad.fetch_min(applied, Ordering::AcqRel);
            }
            // A wake-up is a system call even with no one asleep (the
            // standard library's condition variable): not one per batch.
            if held.asleep > 0 {
                work.woken.notify_all();
            }
        }
    }
}

/// What the threads of a dataflow run share.
struct Work<'a> {
    state: &'a StateOverlay,
    in_order: &'a Mutex<InOrder>,
    /// The applied transactions' receipts, in block order (taken by the
    /// thread applying, one at a time).
    receipts: &'a Mutex<Vec<Receipt>>,
    successors: &'a Successors,
    woken: &'a Condvar,
}

#[cfg(test)]
mod tests {
    use chroma_host_api::{Encode, ADDRESS_LEN};

    use super::*;
    use crate::address::contract_address;
    use crate::root::StateHash;
    use crate::state::StateOverlay;

    const TOKEN: &[u8] = include_bytes!("../../contracts/wasm/token.wasm");
    const GAS: u64 = 10_000_000;

    fn root(vm: &Vm) -> [u8; 32] {
        let entries = vm.state().snapshot();
        StateHash::of(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).root()
    }

    fn user(i: u64) -> Address {
        let mut bytes = [0u8; ADDRESS_LEN];
        bytes.copy_from_slice(&blake3::hash(&i.to_le_bytes()).as_bytes()[..ADDRESS_LEN]);
        Address(bytes)
    }

    /// Drops the key patterns of about one transaction in five (by sender),
    /// so that some of those run in parallel leave their predictions.
    struct Dropping;

    impl AccessPredictor for Dropping {
        fn predict(&self, env: &PredictionEnv<'_>, tx: &Transaction) -> PredictedAccess {
            let honest = AnalyzerPredictor.predict(env, tx);
            if tx.sender.0[0] % 5 == 0 { PredictedAccess::default() } else { honest }
        }
    }

    /// A token deployed and `users` users funded with 1,000 each, executed
    /// serially; the next nonce of each sender.
    struct TokenWorld {
        vm: Vm,
        token: Address,
        nonces: BTreeMap<Address, u64>,
    }

    impl TokenWorld {
        fn new(users: u64) -> TokenWorld {
            let deployer = user(u64::MAX);
            let mut world = TokenWorld { vm: Vm::new().expect("engine"), token: contract_address(&deployer, 0), nonces: BTreeMap::new() };
            let deploy = TxKind::Deploy { code: TOKEN.to_vec(), init_args: ("USD".to_string(), u128::MAX / 2).encode() };
            let mut setup = vec![Transaction { sender: deployer, nonce: world.next_nonce(deployer), kind: deploy, gas_limit: GAS }];
            for u in 0..users {
                setup.push(world.transfer(deployer, user(u), 1_000));
            }
            let set_up = world.vm.execute_block(&setup, &BlockOptions::serial()).expect("set-up");
            assert!(set_up.receipts.iter().all(|r| r.outcome.is_success()));
            world
        }

        fn next_nonce(&mut self, sender: Address) -> u64 {
            let nonce = self.nonces.entry(sender).or_insert(0);
            *nonce += 1;
            *nonce - 1
        }

        fn transfer(&mut self, sender: Address, to: Address, amount: u128) -> Transaction {
            let kind = TxKind::Call { contract: self.token, method: "transfer".into(), args: (to, amount).encode() };
            Transaction { sender, nonce: self.next_nonce(sender), kind, gas_limit: GAS }
        }

        /// A VM over a copy of the set-up state: the copy alone, or under
        /// `wrap` (given the copy, it makes the VM's base).
        fn fork(&self, wrap: Option<&dyn Fn(Arc<StateOverlay>) -> Arc<dyn StateRead>>) -> Vm {
            let copy = StateOverlay::new();
            copy.apply_values(self.vm.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
            match wrap {
                None => Vm::with_state(self.vm.runtime().clone(), copy),
                Some(wrap) => Vm::with_state(self.vm.runtime().clone(), StateOverlay::over(wrap(copy))),
            }
        }
    }

    /// A state whose reads of any key holding `address` fail (a disk that
    /// lost one account's pages).
    struct FailingFor {
        inner: Arc<StateOverlay>,
        address: Address,
    }

    impl StateRead for FailingFor {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::state::StateError> {
            if key.windows(ADDRESS_LEN).any(|w| w == self.address.0) {
                return Err(crate::state::StateError(format!("cannot read {}", self.address)));
            }
            self.inner.get(key)
        }
    }

    /// A transfer to an account whose balance cannot be read executes (a
    /// transfer only adds to the receiver) and fails where its add is
    /// applied. A dataflow run then stops there like serial execution: the
    /// block fails with the state error, and the state holds exactly the
    /// writes of the transactions before it, as serially. (A barrier run
    /// fails too, with nothing of the segment applied.)
    #[test]
    fn a_failed_apply_stops_a_dataflow_run_where_serial_execution_stops() {
        let users = 40u64;
        let mut world = TokenWorld::new(users);
        let unreadable = user(users - 1);
        // Transfers among the other users, one to `unreadable` in the middle.
        let block: Vec<Transaction> = (0..120)
            .map(|i| match i {
                70 => world.transfer(user(5), unreadable, 1),
                i => world.transfer(user(i % (users - 1)), user((i * 7 + 3) % (users - 1)), 1),
            })
            .collect();
        let failing = |copy: Arc<StateOverlay>| Arc::new(FailingFor { inner: copy, address: unreadable }) as Arc<dyn StateRead>;

        let mut serial = world.fork(Some(&failing));
        let serially = serial.execute_block(&block, &BlockOptions::serial());
        assert!(matches!(serially, Err(VmError::State(_))), "serially: {:?}", serially.map(|done| done.receipts.len()));
        let applied = serial.state().pending();
        assert!(!applied.is_empty(), "the transactions before the failing one are applied");

        for threads in [1, 2, 4] {
            let options = BlockOptions { threads, strategy: Strategy::Dataflow, serial: false, adaptive: false };
            let mut vm = world.fork(Some(&failing));
            let result = vm.execute_block(&block, &options);
            assert!(matches!(result, Err(VmError::State(_))), "{threads} threads: {:?}", result.map(|done| done.receipts.len()));
            assert_eq!(vm.state().pending(), applied, "{threads} threads: the state is serial execution's at the failure");

            let options = BlockOptions { strategy: Strategy::Barrier, ..options };
            let result = world.fork(Some(&failing)).execute_block(&block, &options);
            assert!(matches!(result, Err(VmError::State(_))), "barrier, {threads} threads");
        }
    }

    /// The gas limit that makes a transaction panic in a parallel run.
    pub(super) const PANICKING_GAS_LIMIT: u64 = GAS - 1;

    /// A panic while a dataflow run executes a transaction fails the block
    /// with an engine error, on any number of threads, instead of leaving
    /// the other threads waiting for that transaction.
    #[test]
    fn a_panic_in_a_dataflow_run_fails_the_block() {
        let users = 40u64;
        let mut world = TokenWorld::new(users);
        let mut block: Vec<Transaction> = (0..120).map(|i| world.transfer(user(i % users), user((i * 7 + 3) % users), 1)).collect();
        block[30].gas_limit = PANICKING_GAS_LIMIT;
        for threads in [1, 2, 4] {
            let options = BlockOptions { threads, strategy: Strategy::Dataflow, serial: false, adaptive: false };
            let result = world.fork(None).execute_block(&block, &options);
            assert!(
                matches!(&result, Err(VmError::Engine(message)) if message.contains("transaction 30")),
                "{threads} threads: {:?}",
                result.map(|done| done.receipts.len())
            );
        }
    }

    /// Whether a plan is worth running in parallel is what its simulated
    /// schedule says, also where the bounds decide without simulating:
    /// blocks from independent to fully dependent (a few hot keys among
    /// many cold ones, in every mode), on 2 to 8 threads, both strategies.
    #[test]
    fn the_parallel_decision_is_the_simulated_schedules() {
        let mut rng = chroma_workloads::Rng::new(0x5eed);
        let (mut fast_enough, mut too_slow, mut simulated, mut parallel) = (0, 0, 0, 0);
        for case in 0..300 {
            let len = 1 + rng.below(400) as usize;
            // The share of accesses to one or two hot keys: none to all.
            let hot_per_mille = [0, 300, 800, 950, 1_000][rng.below(5) as usize];
            let hot_keys = 1 + rng.below(2);
            let block: Vec<PredictedAccess> = (0..len)
                .map(|_| {
                    let key = if rng.below(1_000) < hot_per_mille { rng.below(hot_keys) } else { 1_000 + rng.below(1 << 40) };
                    let pattern = vec![chroma_analyzer::KeyPattern::exact(&key.to_le_bytes())];
                    match rng.below(3) {
                        0 => PredictedAccess::new(pattern, Vec::new(), Vec::new()),
                        1 => PredictedAccess::new(Vec::new(), pattern, Vec::new()),
                        _ => PredictedAccess::new(Vec::new(), Vec::new(), pattern),
                    }
                })
                .collect();
            let plan = ExecutionPlan::new(&block);
            for threads in [2, 3, 4, 8] {
                for strategy in [Strategy::Barrier, Strategy::Dataflow] {
                    let options = BlockOptions { threads, strategy, ..BlockOptions::default() };
                    let worth = |steps: usize| len * 1_000 >= steps.max(1) * MIN_PARALLEL_SPEEDUP_PER_MILLE;
                    let expected = worth(plan.makespan(strategy, threads, &vec![1; len]) as usize);
                    assert_eq!(worth_parallel(&plan, options), expected, "case {case}: {len} transactions, {} groups, {threads} threads, {strategy:?}", plan.groups.len());
                    let lower = len.div_ceil(threads).max(plan.groups.len());
                    let upper = len.div_ceil(threads) + plan.groups.len();
                    if worth(upper) {
                        fast_enough += 1;
                    } else if !worth(lower) {
                        too_slow += 1;
                    } else {
                        simulated += 1;
                    }
                    parallel += usize::from(expected);
                }
            }
        }
        // Each way of deciding, and each decision, taken many times.
        let counts = format!("{fast_enough} fast enough by the upper bound, {too_slow} too slow by the lower one, {simulated} simulated, {parallel} of 2,400 parallel");
        assert!(fast_enough > 300 && too_slow > 100 && simulated > 100, "{counts}");
        assert!(parallel > 300 && parallel < 2_100, "{counts}");
    }

    /// The ready set yields its members earliest first, also after members
    /// are added below the last one taken, and each once.
    #[test]
    fn the_ready_set_yields_the_earliest_first() {
        let mut ready = ReadySet::with_len(300);
        for i in [299, 5, 64, 63, 128, 200] {
            ready.insert(i);
        }
        assert_eq!(ready.pop_earliest(), Some(5));
        assert_eq!(ready.pop_earliest(), Some(63));
        ready.insert(0);
        ready.insert(65);
        let rest: Vec<usize> = std::iter::from_fn(|| ready.pop_earliest()).collect();
        assert_eq!(rest, [0, 64, 65, 128, 200, 299]);
        assert_eq!(ready.pop_earliest(), None);
        ready.insert(7);
        assert_eq!(ready.pop_earliest(), Some(7));
    }

    /// A segment whose plan is parallel runs on threads after the
    /// transactions executed serially while it was planned: whatever their
    /// number (held here by the seam), under both strategies, with sound and
    /// with wrong predictions, the receipts and state are those of serial
    /// execution, and the report counts the serial stretch.
    #[test]
    fn the_rest_of_a_segment_runs_in_parallel_after_what_ran_while_it_was_planned() {
        let users = 300u64;
        let mut world = TokenWorld::new(users);
        // Transfers among the users, an eighth of them for more than the
        // sender can have (they revert).
        let mut state = 7u64;
        let mut below = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let block: Vec<Transaction> = (0..200)
            .map(|_| {
                let amount = if below(8) == 0 { 1_000_000 } else { 1 + u128::from(below(50)) };
                world.transfer(user(below(users)), user(below(users)), amount)
            })
            .collect();
        let fresh = || world.fork(None);
        let mut serial = fresh();
        let expected = serial.execute_block(&block, &BlockOptions::serial()).expect("serial");
        let expected_root = root(&serial);
        assert!(expected.receipts.iter().any(|r| !r.outcome.is_success()), "some transfers revert");
        let (mut runs, mut mispredicted_after_prefix) = (0, 0);
        for prefix in [1, 2, 17, PLANNED_FIRST_MAX - 1, PLANNED_FIRST_MAX, PLANNED_FIRST_MAX + 9, block.len() - 1, block.len()] {
            for strategy in Strategy::ALL {
                for wrong in [false, true] {
                    let options = BlockOptions { threads: 2, strategy, serial: false, adaptive: true };
                    let predictor: &dyn AccessPredictor = if wrong { &Dropping } else { &AnalyzerPredictor };
                    let mut vm = fresh();
                    overlap_seam::PREFIX.store(prefix, Ordering::SeqCst);
                    let done = vm.execute_block_with(&block, &options, predictor);
                    overlap_seam::PREFIX.store(0, Ordering::SeqCst);
                    let done = done.expect("block");
                    let context = format!("prefix {prefix}, {strategy:?}, wrong predictions {wrong}");
                    assert_eq!(done.receipts, expected.receipts, "{context}");
                    assert_eq!(root(&vm), expected_root, "{context}");
                    assert_eq!(done.report.predictions.len(), block.len(), "{context}");
                    if wrong {
                        // After a misprediction the rest of the block is a
                        // segment of its own, planned again beside execution.
                        if prefix < block.len() {
                            assert!(done.report.executed_while_planning >= prefix, "{context}");
                        }
                        assert!(done.report.mispredicted.iter().all(|&i| i >= prefix), "{context}: serial transactions are not checked");
                        mispredicted_after_prefix += done.report.mispredicted.len();
                    } else {
                        assert!(done.report.mispredicted.is_empty(), "{context}");
                        if prefix < block.len() {
                            assert_eq!(done.report.executed_while_planning, prefix, "{context}");
                            assert_eq!(done.report.serial_segments, 0, "{context}: the plan is parallel");
                        } else {
                            // Executed whole before its plan was made: a serial segment.
                            assert_eq!(done.report.executed_while_planning, 0, "{context}");
                            assert_eq!(done.report.serial_segments, 1, "{context}");
                        }
                    }
                    runs += 1;
                }
            }
        }
        assert_eq!(runs, 32);
        assert!(mispredicted_after_prefix > 10, "wrong predictions were caught after the serial stretch: {mispredicted_after_prefix}");
    }
}
