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
//!    transaction runs in its own store and journal over the block's overlay
//!    (the state before the block plus the writes of the transactions done so
//!    far). Its journal checks every access against its prediction. Its
//!    writes go to the overlay when it finishes; adds are kept as deltas
//!    (`WriteOp::Add`), so transactions adding to one key can run together.
//! 4. **Check.** A transaction whose accesses left its prediction is a
//!    *misprediction*: its effects are not applied, and no later transaction
//!    of the segment can be trusted (it may have missed the mispredicted
//!    one's writes). The transactions before the first misprediction are
//!    correct: each saw exactly the writes of the earlier transactions it
//!    conflicts with, and only writes it does not touch from others. Their
//!    effects are applied in block order; the mispredicted transaction runs
//!    again alone, on the exact state, and the rest of the segment is planned
//!    again. After [`MAX_REPLANS`] mispredictions in a block the rest runs
//!    serially. Either way the result is the serial one.
//!
//! Receipts, gas and events are those of serial execution: each transaction
//! sees the state the serial order would show it, and gas depends only on
//! the instructions executed and the bytes read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chroma_analyzer::{Collected, ExecutionPlan, KeyPattern, PredictedAccess, Prediction, Strategy};
use chroma_host_api::Address;
use rayon::prelude::*;
use rayon::ThreadPool;

use crate::prediction::PredictionEnv;
use crate::runtime::{execute_in, nonce_pattern, Executed, Runtime, Vm, VmError};
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

    /// [`AccessPredictor::predict`] into `out`, with its patterns'
    /// fingerprints (made here, from the prediction, unless overridden).
    fn collect(&self, env: &PredictionEnv<'_>, tx: &Transaction, out: &mut Collected) {
        out.set(self.predict(env, tx));
    }
}

/// The analyzer's prediction from the contracts' summaries.
pub struct AnalyzerPredictor;

impl AccessPredictor for AnalyzerPredictor {
    fn predict(&self, env: &PredictionEnv<'_>, tx: &Transaction) -> PredictedAccess {
        match &tx.kind {
            TxKind::Call { contract, method, args } => chroma_analyzer::predict(env, &tx.sender, contract, method, args),
            TxKind::Deploy { .. } => PredictedAccess { unbounded: true, ..PredictedAccess::default() },
        }
    }

    fn collect(&self, env: &PredictionEnv<'_>, tx: &Transaction, out: &mut Collected) {
        match &tx.kind {
            TxKind::Call { contract, method, args } => chroma_analyzer::predict_into(env, &tx.sender, contract, method, args, out),
            TxKind::Deploy { .. } => out.set(self.predict(env, tx)),
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
    pub predictions: Vec<Prediction>,
    /// The contract each transaction called (`None` for a deploy).
    pub targets: Vec<Option<Address>>,
    /// Gas used by each transaction.
    pub gas: Vec<u64>,
    /// Transactions whose accesses left their prediction, in block order.
    pub mispredicted: Vec<usize>,
    /// Filling templates in and building plans. When a segment turns out to
    /// be a chain after its first transactions are planned, it runs serially
    /// while the rest is planned on another thread: then planning and
    /// execution overlap.
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
    pub fn hottest_keys(&self, limit: usize) -> Vec<(&KeyPattern, u32)> {
        self.plan.graph.hottest(limit, &self.predictions)
    }

    /// The key pattern of resource `resource` (an edge's weight).
    pub fn resource(&self, resource: u32) -> Option<&KeyPattern> {
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

/// Transactions planned before deciding whether a segment runs in parallel:
/// enough to tell a chain from a parallel block, few enough that a chain
/// pays little before it runs serially (a 2,000-transaction chain ran at
/// 0.93-0.96x of serial with 256, 0.95-0.99x with 64).
const PROBE_LEN: usize = 64;

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
        // Both are filled in block order: segments and deploys end in order,
        // and a misprediction ends its segment's part at the transaction it
        // re-executes. A block of one segment takes its segment's vectors as
        // they are (a 10,000-transaction chain spent 1.5% of its time moving
        // receipts and predictions through slots and back).
        let mut receipts: Vec<Receipt> = Vec::new();
        let mut predictions: Vec<Prediction> = Vec::new();
        let mut mispredicted = Vec::new();
        let (mut planning, mut execution, mut plans, mut serial_segments) = (Duration::ZERO, Duration::ZERO, 0, 0);
        let analysed_before = self.runtime().shape_analysis();
        let mut segment_plan: Option<ExecutionPlan> = None;
        let mut next = 0;
        while next < txs.len() {
            if let TxKind::Deploy { .. } = txs[next].kind {
                predictions.push(Prediction::new(PredictedAccess { unbounded: true, ..PredictedAccess::default() }));
                let started = Instant::now();
                receipts.push(self.execute(&txs[next])?);
                execution += started.elapsed();
                next += 1;
                continue;
            }
            let end = txs[next..].iter().position(|tx| matches!(tx.kind, TxKind::Deploy { .. })).map_or(txs.len(), |p| next + p);
            let segment = &txs[next..end];

            // Plan a first stretch: if even that is a chain, the segment runs
            // serially at once, and the rest is planned (for the report) on
            // another thread meanwhile, so that a block with no parallelism
            // costs no more than serial execution. Serial execution needs no
            // probe: all of its planning is for the report, off its path.
            let started = Instant::now();
            let probe = if pool.is_some() { segment.len().min(PROBE_LEN) } else { 0 };
            let mut predicted = predict_with(self.runtime(), self.state(), &segment[..probe], predictor, pool.as_deref());
            let probe_plan = plan_on(pool.as_deref(), &predicted)?;
            planning += started.elapsed();
            plans += 1;
            let serially = pool.is_none() || mispredicted.len() >= MAX_REPLANS || !worth_parallel(&probe_plan, options);
            let (plan, run) = if serially && probe < segment.len() {
                let (runtime, state) = (self.runtime().clone(), self.state().clone());
                let probe_predictions = std::mem::take(&mut predicted);
                if pool.is_some() {
                    serial_segments += 1;
                }
                let started = Instant::now();
                // The planner runs on the kept one-thread pool (where
                // `plan_on(None, ..)` plans anyway), not on a thread started
                // for the block (its creation, and at its end handing back
                // what its allocator held; see `stack.rs`).
                let planner_pool = self::pool(1)?;
                let mut planned = None;
                let done = planner_pool.in_place_scope(|scope| {
                    scope.spawn(|_| {
                        planned = Some(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let started = Instant::now();
                            let mut all = probe_predictions;
                            all.extend(predict_with(&runtime, &state, &segment[probe..], predictor, None));
                            // On one thread: the other core runs the segment.
                            let plan = plan_on(None, &all);
                            (all, plan, started.elapsed())
                        })));
                    });
                    self.execute_serially(segment)
                });
                execution += started.elapsed();
                let (all, plan, took) = match planned {
                    Some(Ok(planned)) => planned,
                    _ => return Err(VmError::Engine("the planner panicked".into())),
                };
                let plan = plan?;
                planning += took;
                predicted = all;
                (plan, SegmentRun::Applied(done?))
            } else {
                let plan = if probe < segment.len() {
                    let started = Instant::now();
                    predicted.extend(predict_with(self.runtime(), self.state(), &segment[probe..], predictor, pool.as_deref()));
                    let plan = plan_on(pool.as_deref(), &predicted)?;
                    planning += started.elapsed();
                    plan
                } else {
                    probe_plan
                };
                let started = Instant::now();
                let run = match &pool {
                    Some(pool) if !serially && worth_parallel(&plan, options) => {
                        self.run_parallel(pool, segment, &predicted, &plan, options.strategy)?
                    }
                    _ => {
                        if pool.is_some() {
                            serial_segments += 1;
                        }
                        SegmentRun::Applied(self.execute_serially(segment)?)
                    }
                };
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
    pub fn predict_block(&self, txs: &[Transaction], threads: usize) -> Result<Vec<Prediction>, VmError> {
        let pool = pool(threads.clamp(1, MAX_THREADS))?;
        Ok(predict_with(self.runtime(), self.state(), txs, &AnalyzerPredictor, Some(&pool)))
    }

    /// Executes `segment` one transaction after another, applying each.
    fn execute_serially(&mut self, segment: &[Transaction]) -> Result<Vec<Receipt>, VmError> {
        segment.iter().map(|tx| self.execute(tx)).collect()
    }

    /// Runs a planned segment on `pool`. Applies the effects of the
    /// transactions before the first misprediction (all of them if none).
    fn run_parallel(
        &mut self,
        pool: &ThreadPool,
        segment: &[Transaction],
        predicted: &[Prediction],
        plan: &ExecutionPlan,
        strategy: Strategy,
    ) -> Result<SegmentRun, VmError> {
        let expected_writes = predicted.iter().map(|p| p.writes.len() + p.adds.len()).sum();
        let overlay = BlockOverlay::over(self.state().clone(), expected_writes);
        let run = Parallel {
            runtime: self.runtime().clone(),
            view: overlay.clone(),
            overlay,
            segment,
            predicted,
            plan,
            results: (0..segment.len()).map(|_| OnceLock::new()).collect(),
            first_bad: AtomicUsize::new(usize::MAX),
        };
        match strategy {
            Strategy::Barrier => run.barrier(pool),
            Strategy::Dataflow => run.dataflow(pool),
        }
        let Parallel { overlay, results, first_bad, .. } = run;
        let first_bad = first_bad.into_inner();
        let mut executed = Vec::with_capacity(segment.len().min(first_bad));
        for (i, slot) in results.into_iter().enumerate() {
            match slot.into_inner() {
                Some(Err(error)) => return Err(error),
                Some(Ok(done)) if i < first_bad => executed.push(done),
                _ => {}
            }
        }
        let receipts = executed.into_iter().map(|e| e.receipt).collect();
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

/// The plan of `predicted`: on this thread when it is small, otherwise on
/// `threads` (on one pool thread without a pool).
fn plan_on(threads: Option<&ThreadPool>, predicted: &[Prediction]) -> Result<ExecutionPlan, VmError> {
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
) -> Vec<Prediction> {
    let env = PredictionEnv::new(runtime, &**state);
    let one = |(env, collected): &mut (PredictionEnv<'_>, Collected), tx: &Transaction| {
        predictor.collect(env, tx, collected);
        // The executor reads and writes the nonce outside the journal;
        // as a plain write it orders the sender's transactions.
        collected.write(nonce_pattern(&tx.sender));
        // Fingerprinted as it was collected, on this thread, while its
        // keys were in its cache.
        Prediction::collected(collected)
    };
    match pool {
        Some(pool) if segment.len() >= PARALLEL_PREDICTION_MIN => {
            let parts = env.parts();
            pool.install(|| {
                segment
                    .par_iter()
                    .with_min_len(PREDICTION_TASK_MIN)
                    .map_init(|| (PredictionEnv::assemble(&parts), Collected::default()), one)
                    .collect()
            })
        }
        _ => {
            let mut working = (env, Collected::default());
            segment.iter().map(|tx| one(&mut working, tx)).collect()
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
    /// The block's state so far, as transactions read it.
    view: Arc<dyn StateRead>,
    overlay: Arc<BlockOverlay>,
    segment: &'a [Transaction],
    predicted: &'a [Prediction],
    plan: &'a ExecutionPlan,
    results: Vec<OnceLock<Result<Executed, VmError>>>,
    /// The first transaction that mispredicted or failed; later ones are skipped.
    first_bad: AtomicUsize,
}

impl Parallel<'_> {
    /// Runs transaction `i` unless an earlier one already went wrong, and
    /// applies its writes if it stayed within its prediction.
    fn run(&self, i: usize) {
        if i > self.first_bad.load(Ordering::Acquire) {
            return;
        }
        let result = match execute_in(&self.runtime, &self.view, &self.segment[i], Some(self.predicted[i].shared().clone())) {
            Ok(mut done) if !done.mispredicted => {
                // Moved into the overlay, which keeps them by transaction.
                self.overlay.apply(i, std::mem::take(&mut done.writes));
                Ok(done)
            }
            other => other,
        };
        if result.as_ref().map_or(true, |done| done.mispredicted) {
            self.first_bad.fetch_min(i, Ordering::AcqRel);
        }
        // Each transaction runs once; the slot is empty until now.
        let _ = self.results[i].set(result);
    }

    fn barrier(&self, pool: &ThreadPool) {
        for group in &self.plan.groups {
            pool.install(|| group.par_iter().for_each(|&i| self.run(i as usize)));
        }
    }

    fn dataflow(&self, pool: &ThreadPool) {
        let waiting: Vec<AtomicU32> =
            (0..self.segment.len()).map(|i| AtomicU32::new(self.plan.graph.predecessors(i).count() as u32)).collect();
        let waiting = &waiting;
        pool.scope(|scope| {
            // Ready transactions in block order: workers take them from the
            // front, and successors are pushed as they become ready.
            for i in (0..self.segment.len()).rev().filter(|&i| waiting[i].load(Ordering::Relaxed) == 0) {
                scope.spawn(move |scope| self.run_then_release(scope, waiting, i));
            }
        });
    }

    fn run_then_release<'s>(&'s self, scope: &rayon::Scope<'s>, waiting: &'s [AtomicU32], i: usize) {
        self.run(i);
        for next in self.plan.graph.successors(i) {
            if waiting[next].fetch_sub(1, Ordering::AcqRel) == 1 {
                scope.spawn(move |scope| self.run_then_release(scope, waiting, next));
            }
        }
    }
}
