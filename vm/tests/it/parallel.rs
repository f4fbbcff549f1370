//! Parallel block execution against serial execution: random blocks over the
//! example contracts (every workload, Zipf-skewed users, hot pools, reverts,
//! out-of-gas, bad input, wrong nonces, missing contracts and methods,
//! cross-contract calls) run with 1, 2, 4 and 8 threads under both
//! strategies must give the receipts (gas, events, return values, accesses)
//! and the state root of serial execution, block after block. The same must
//! hold when the predictions are deliberately wrong.

use std::sync::atomic::{AtomicUsize, Ordering};

use chroma_analyzer::{predict, Collected, Environment, ExecutionPlan, KeyPattern, PredictedAccess};
use chroma_vm::root::StateHash;
use chroma_vm::{
    AccessPredictor, AnalyzerPredictor, BlockExecution, BlockOptions, Outcome, PredictionEnv, Receipt, Strategy, Transaction, TxKind,
    Vm,
};
use chroma_workloads::{Rng, Workload, World, WorldConfig};

pub(crate) fn root(vm: &Vm) -> [u8; 32] {
    let entries = vm.state().snapshot();
    StateHash::of(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).root()
}

/// A VM with the world's set-up blocks executed.
fn set_up(setup: &[Vec<Transaction>]) -> Vm {
    let mut vm = Vm::new().expect("engine");
    for block in setup {
        let done = vm.execute_block(block, &BlockOptions::serial()).expect("storage works");
        for (tx, receipt) in block.iter().zip(&done.receipts) {
            assert_eq!(receipt.outcome, Outcome::Success, "set-up transaction {tx:?}");
        }
    }
    vm
}

/// The configurations compared with serial execution.
pub(crate) fn configurations() -> Vec<BlockOptions> {
    let mut all = Vec::new();
    for threads in [1, 2, 4, 8] {
        for strategy in Strategy::ALL {
            all.push(BlockOptions { threads, strategy, serial: false, adaptive: false });
        }
    }
    all
}

/// Runs `blocks` blocks on a serial VM and on one VM per configuration,
/// asserting after each block that everything equals serial. Returns the
/// total number of mispredictions.
fn compare(seed: u64, blocks: usize, predictor: &dyn AccessPredictor) -> (usize, usize) {
    let config = WorldConfig { users: 40, pools: 3, seed, failures_per_mille: 80, observations_per_mille: 80 };
    let (mut world, setup) = World::new(config);
    let mut serial = set_up(&setup);
    let configurations = configurations();
    let mut parallel: Vec<Vm> = configurations.iter().map(|_| set_up(&setup)).collect();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let (mut mispredictions, mut transactions) = (0, 0);
    for b in 0..blocks {
        let workload = Workload::ALL[rng.below(Workload::ALL.len() as u64) as usize];
        let size = 1 + rng.below(48) as usize;
        let block = world.block(workload, size);
        transactions += block.len();
        let expected = serial.execute_block(&block, &BlockOptions::serial()).expect("storage works");
        let expected_root = root(&serial);
        for (options, vm) in configurations.iter().zip(&mut parallel) {
            let BlockExecution { receipts, report } = vm.execute_block_with(&block, options, predictor).expect("storage works");
            assert_same(&expected.receipts, &receipts, &block, &format!("seed {seed}, block {b} ({workload}), {options:?}"));
            assert_eq!(root(vm), expected_root, "seed {seed}, block {b} ({workload}), {options:?}: state root");
            assert_eq!(report.transactions(), block.len());
            mispredictions += report.mispredicted.len();
        }
    }
    (mispredictions, transactions)
}

pub(crate) fn assert_same(expected: &[Receipt], actual: &[Receipt], block: &[Transaction], context: &str) {
    assert_eq!(expected.len(), actual.len(), "{context}: receipts");
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        assert_eq!(e, a, "{context}: transaction {i} {:?}", block[i]);
    }
}

#[test]
fn random_blocks_in_parallel_equal_serial() {
    let blocks = 1000;
    let (mispredictions, transactions) = compare(11, blocks, &AnalyzerPredictor);
    eprintln!("{blocks} blocks, {transactions} transactions, each run in {} configurations: {mispredictions} mispredictions", configurations().len());
    assert_eq!(mispredictions, 0, "the analyzer's predictions are sound, so nothing may be mispredicted");
}

/// A wrong analyzer: drops about a third of each prediction's key patterns
/// (never the nonce, which the executor adds itself).
struct DroppingPredictor {
    calls: AtomicUsize,
}

impl AccessPredictor for DroppingPredictor {
    fn predict(&self, env: &PredictionEnv<'_>, tx: &Transaction) -> PredictedAccess {
        let honest = AnalyzerPredictor.predict(env, tx);
        let mut rng = Rng::new(tx.nonce.wrapping_mul(31) ^ u64::from(tx.sender.0[0]) ^ self.calls.fetch_add(1, Ordering::Relaxed) as u64);
        let mut keep = |_: &KeyPattern| rng.below(3) != 0;
        let (reads, writes, adds) = honest.into_lists();
        let mut kept = |list: Vec<KeyPattern>| list.into_iter().filter(&mut keep).collect();
        PredictedAccess::new(kept(reads), kept(writes), kept(adds))
    }
}

#[test]
fn wrong_predictions_are_caught_and_the_result_still_equals_serial() {
    let predictor = DroppingPredictor { calls: AtomicUsize::new(0) };
    let (mispredictions, transactions) = compare(23, 200, &predictor);
    eprintln!("fault injection: {transactions} transactions, {mispredictions} mispredictions caught");
    assert!(mispredictions > 0, "dropping accesses must cause mispredictions");
}

/// A runtime that does not record receipts' accesses (as a node runs)
/// gives the same receipts but for their empty access sets, and the same
/// state, in parallel against serial execution with recording; wrong
/// predictions are still caught, since checking an access against its
/// prediction does not depend on recording it.
#[test]
fn receipts_without_accesses_equal_those_with_them_but_for_the_accesses() {
    let config = WorldConfig { users: 40, pools: 3, seed: 5, failures_per_mille: 80, observations_per_mille: 80 };
    let (mut world, setup) = World::new(config);
    let mut recording = set_up(&setup);
    let mut quiet = set_up(&setup);
    quiet.runtime().set_recording_accesses(false);
    assert!(recording.runtime().records_accesses() && !quiet.runtime().records_accesses());
    let predictor = DroppingPredictor { calls: AtomicUsize::new(0) };
    let options = BlockOptions { threads: 2, strategy: Strategy::Dataflow, serial: false, adaptive: false };
    let (mut recorded, mut mispredictions) = (0, 0);
    for (b, workload) in Workload::ALL.iter().cycle().take(24).enumerate() {
        let block = world.block(*workload, 40);
        let expected = recording.execute_block(&block, &BlockOptions::serial()).expect("storage works");
        let actual = if b % 2 == 0 {
            quiet.execute_block(&block, &options).expect("storage works")
        } else {
            quiet.execute_block_with(&block, &options, &predictor).expect("storage works")
        };
        mispredictions += actual.report.mispredicted.len();
        for (e, a) in expected.receipts.iter().zip(&actual.receipts) {
            assert_eq!(a.accesses, Default::default(), "block {b} ({workload}): a quiet runtime records nothing");
            recorded += usize::from(e.accesses != Default::default());
        }
        let without = |receipts: &[Receipt]| -> Vec<Receipt> {
            receipts.iter().map(|r| Receipt { accesses: Default::default(), ..r.clone() }).collect()
        };
        assert_same(&without(&expected.receipts), &without(&actual.receipts), &block, &format!("block {b} ({workload})"));
        assert_eq!(root(&quiet), root(&recording), "block {b} ({workload}): state root");
    }
    assert!(recorded > 500, "the recording runtime recorded accesses ({recorded} receipts)");
    assert!(mispredictions > 0, "wrong predictions are caught without recording");
}

#[test]
fn a_block_with_deploys_and_calls_to_what_it_deploys_equals_serial() {
    let config = WorldConfig { users: 8, pools: 1, seed: 5, ..WorldConfig::default() };
    let (world, mut setup) = World::new(config);
    // The deploys, the funding and some transfers as one block: calls to
    // contracts deployed earlier in the same block, and one to a contract
    // deployed later in it (which must fail as it does serially).
    let deploys = setup.remove(0);
    let late_contract = deploys.last().and_then(|tx| match &tx.kind {
        TxKind::Deploy { .. } => Some(chroma_vm::contract_address(&tx.sender, tx.nonce)),
        TxKind::Call { .. } => None,
    });
    let mut block = Vec::new();
    let early_call = Transaction {
        sender: world.users[0],
        nonce: 0,
        kind: TxKind::Call { contract: late_contract.expect("a deploy"), method: "add".into(), args: chroma_host_api::Encode::encode(&(1u128,)) },
        gas_limit: chroma_workloads::GAS,
    };
    block.push(early_call);
    block.extend(deploys);
    block.extend(setup.remove(0));
    let mut serial = Vm::new().expect("engine");
    let expected = serial.execute_block(&block, &BlockOptions::serial()).expect("storage works");
    assert!(matches!(expected.receipts[0].outcome, Outcome::NoSuchContract(_)));
    for options in configurations() {
        let mut vm = Vm::new().expect("engine");
        let done = vm.execute_block(&block, &options).expect("storage works");
        assert_same(&expected.receipts, &done.receipts, &block, &format!("{options:?}"));
        assert_eq!(root(&vm), root(&serial));
        assert!(done.report.plans >= 2, "deploys cut the block into segments");
    }
}

#[test]
fn a_fully_dependent_block_is_one_chain_and_still_correct() {
    let (mut world, setup) = World::new(WorldConfig { users: 30, pools: 1, seed: 9, ..WorldConfig::default() });
    let mut serial = set_up(&setup);
    let mut parallel = set_up(&setup);
    let block = world.block(Workload::Chain, 400);
    let expected = serial.execute_block(&block, &BlockOptions::serial()).expect("storage works");
    let done = parallel.execute_block(&block, &BlockOptions { threads: 4, ..BlockOptions::default() }).expect("storage works");
    assert_same(&expected.receipts, &done.receipts, &block, "chain");
    assert_eq!(root(&parallel), root(&serial));
    assert_eq!(done.report.plan.groups.len(), 400, "every increment depends on the one before");
    assert_eq!(done.report.serial_segments, 1, "a chain runs serially: threads could only add hand-over costs");
    assert!(done.report.predicted_speedup(8) < 1.0001);
}

/// The executor's predictions carry fingerprints made while each was filled
/// in (or followed from a recipe); they equal those made from the finished
/// prediction's patterns, whose lists hold no pattern twice.
#[test]
fn fingerprints_made_while_predicting_equal_those_made_afterwards() {
    let (mut world, setup) = World::new(WorldConfig { users: 200, pools: 4, seed: 5, ..WorldConfig::default() });
    let vm = set_up(&setup);
    let mut patterns = 0;
    for workload in [Workload::DefiMix, Workload::Swaps, Workload::Lending] {
        let block = world.block(workload, 300);
        for threads in [1, 2] {
            for (tx, prediction) in block.iter().zip(vm.predict_block(&block, threads).expect("storage works")) {
                let (reads, writes, adds) = prediction.clone().into_lists();
                let again = PredictedAccess::new(reads, writes, adds).with_unbounded(prediction.is_unbounded());
                assert_eq!(prediction, again.with_fixed_reads(prediction.fixed_reads()), "{tx:?}");
                for list in [prediction.reads(), prediction.writes(), prediction.adds()] {
                    let list = list.to_vec();
                    patterns += list.len();
                    assert!(list.iter().enumerate().all(|(i, p)| !list[..i].contains(p)), "a pattern twice: {list:?}");
                }
            }
        }
    }
    assert!(patterns > 6 * 300 * 4, "only {patterns} patterns");
}

/// The executor's predictions name their reads of fixed slots (a swap's
/// of its pool's tokens, a lending call's of its market's settings), and
/// the planner leaves them out: the plan is the one made of the same
/// predictions with every read taken, edge for edge, group for group.
#[test]
fn reads_of_fixed_slots_are_left_out_of_the_plan_and_change_no_edge() {
    let (mut world, setup) = World::new(WorldConfig { users: 300, pools: 3, seed: 12, failures_per_mille: 40, ..WorldConfig::default() });
    let vm = set_up(&setup);
    for workload in [Workload::DefiMix, Workload::Swaps, Workload::Lending] {
        let block = world.block(workload, 2_000);
        let predictions = vm.predict_block(&block, 1).expect("storage works");
        let fixed: u32 = predictions.iter().map(|p| p.fixed_reads().count_ones()).sum();
        let every_read: Vec<PredictedAccess> = predictions
            .iter()
            .map(|p| {
                let (reads, writes, adds) = p.clone().into_lists();
                PredictedAccess::new(reads, writes, adds).with_unbounded(p.is_unbounded())
            })
            .collect();
        assert!(every_read.iter().all(|p| p.fixed_reads() == 0));
        // A swap reads two fixed keys; a defi-mix block is a third swaps.
        assert!(fixed as usize > block.len() / 2, "{workload}: only {fixed} fixed reads in {} transactions", block.len());
        let (left_out, taken) = (ExecutionPlan::new(&predictions), ExecutionPlan::new(&every_read));
        let edges = |plan: &ExecutionPlan| plan.graph.edges().collect::<Vec<_>>();
        assert!(!edges(&taken).is_empty(), "{workload}: no conflicts to compare");
        assert_eq!(edges(&left_out), edges(&taken), "{workload}");
        assert_eq!(left_out.group_of, taken.group_of, "{workload}");
        assert_eq!(left_out.graph.edges_by_resource, taken.graph.edges_by_resource, "{workload}");
    }
}

/// Predictions that follow recipes (see `chroma_analyzer::Recipes`) equal
/// those made by filling every call's templates in: every workload's
/// transactions (failing calls and observations among them), twice over,
/// so that the second time most follow recipes learnt the first time. The
/// same for the executor's predictions of the transactions (the call's,
/// and the sender's nonce), most of them packed whole from a template.
#[test]
fn predictions_following_recipes_equal_those_filled_in() {
    let config = WorldConfig { users: 60, pools: 5, seed: 31, failures_per_mille: 80, observations_per_mille: 80 };
    let (mut world, setup) = World::new(config);
    let vm = set_up(&setup);
    let (mut followed_out, mut filled_out) = (Collected::default(), Collected::default());
    for workload in Workload::ALL {
        let block = world.block(workload, 1_000);
        let env = PredictionEnv::new(vm.runtime(), &**vm.state());
        let filling = env.fork().without_recipes();
        assert!(filling.recipes().is_none());
        let count = |env: &PredictionEnv<'_>| env.recipes().map_or((0, 0), |r| (r.followed(), r.packed()));
        let before = count(&env);
        for pass in 0..2 {
            for tx in &block {
                let TxKind::Call { contract, method, args } = &tx.kind else { continue };
                let filled = predict(&filling, &tx.sender, contract, method, args);
                assert_eq!(predict(&env, &tx.sender, contract, method, args), filled, "{workload}, pass {pass}: {tx:?}");
                AnalyzerPredictor.collect(&filling, tx, &mut filled_out);
                let filled = filled_out.finish();
                assert_eq!(filled.writes().last(), Some(chroma_analyzer::nonce_pattern(&tx.sender).as_ref()), "{tx:?}");
                AnalyzerPredictor.collect(&env, tx, &mut followed_out);
                assert_eq!(followed_out.finish(), filled, "{workload}, pass {pass}, as a transaction: {tx:?}");
            }
        }
        let (followed, packed) = (count(&env).0 - before.0, count(&env).1 - before.1);
        // Every workload's calls follow recipes, whether they call other
        // contracts (a swap, a deposit) or not (a transfer), and nearly
        // all are packed from a template.
        assert!(followed > 3_000, "{workload}: {followed} of 4,000 followed a recipe");
        assert!(packed * 10 > followed * 9, "{workload}: {packed} of {followed} packed from a template");
    }
}

/// A registration (an entry analysed by input shape) follows the recipe of
/// its input's shape: a name of a length seen before follows the recipe the
/// first made and is predicted as if filled in, its own key exactly. An
/// input of that length whose length prefix says another length (no
/// canonical encoding, so no shape: filled in, it gets the entry's general
/// summary) does not fit that recipe.
#[test]
fn registrations_follow_the_recipe_of_their_inputs_shape_and_only_that() {
    let (world, setup) = World::new(WorldConfig { users: 40, pools: 1, seed: 8, ..WorldConfig::default() });
    let vm = set_up(&setup);
    let env = PredictionEnv::new(vm.runtime(), &**vm.state());
    let filling = env.fork().without_recipes();
    let followed = || env.recipes().map_or(0, |r| r.followed());
    let name = |name: &str| chroma_host_api::Encode::encode(&(name.to_string(),));
    let user = world.users[0];
    let predicted = |input: &[u8]| {
        let filled = predict(&filling, &user, &world.registry, "register", input);
        assert_eq!(predict(&env, &user, &world.registry, "register", input), filled, "{input:?}");
        filled
    };
    let first = predicted(&name("alice-01"));
    assert!(first.is_exact() && !first.is_unbounded(), "{first:?}");
    assert_eq!(followed(), 0, "the first of its shape records a recipe");
    let second = predicted(&name("bobby-02"));
    assert_eq!(followed(), 1, "a name of the same length follows it");
    assert!(second.is_exact() && second != first, "its own key: {second:?}");
    // The same length, its prefix saying one byte fewer (and one byte left over).
    let mut odd = name("carol-03");
    odd[0] -= 1;
    let wide = predicted(&odd);
    assert_eq!(followed(), 1, "a prefix the recipe's shape does not have does not fit it");
    assert!(!wide.is_exact(), "no shape, the general summary: {wide:?}");
    // Another length: another recipe.
    predicted(&name("dave-4"));
    predicted(&name("erin-5"));
    assert_eq!(followed(), 2);
}

/// A block's report counts the analyses by input shape its planning made:
/// registrations of names of new lengths make one per length, once; the
/// same lengths again make none.
#[test]
fn a_report_counts_the_analyses_of_new_input_shapes() {
    let (mut world, setup) = World::new(WorldConfig { users: 40, pools: 1, seed: 8, ..WorldConfig::default() });
    let mut vm = set_up(&setup);
    let register = |world: &mut World, names: &[&str]| -> Vec<Transaction> {
        names
            .iter()
            .enumerate()
            .map(|(i, name)| world.call(world.users[i], world.registry, "register", chroma_host_api::Encode::encode(&(name.to_string(),))))
            .collect()
    };
    let first = register(&mut world, &["abcdefghijklmnopq", "abcdefghijklmnopqr", "rstuvwxyzabcdefgh"]);
    let done = vm.execute_block(&first, &BlockOptions::default()).expect("storage works");
    assert_eq!(done.report.shape_analysis.analyses, 2, "two new lengths");
    assert!(done.report.shape_analysis.time > std::time::Duration::ZERO);
    let again = register(&mut world, &["zyxwvutsrqponmlkj", "zyxwvutsrqponmlkji"]);
    let done = vm.execute_block(&again, &BlockOptions::default()).expect("storage works");
    assert_eq!(done.report.shape_analysis, chroma_vm::ShapeAnalysisTime::default(), "known lengths");
}

#[test]
fn independent_transfers_form_one_group() {
    let (mut world, setup) = World::new(WorldConfig { users: 400, pools: 1, seed: 3, ..WorldConfig::default() });
    let mut vm = set_up(&setup);
    // Disjoint pairs: user 2i sends to user 2i+1.
    let block: Vec<Transaction> = (0..200)
        .map(|i| {
            let (from, to) = (world.users[2 * i], world.users[2 * i + 1]);
            world.call(from, world.usd, "transfer", chroma_host_api::Encode::encode(&(to, 5u128)))
        })
        .collect();
    let done = vm.execute_block(&block, &BlockOptions { threads: 2, ..BlockOptions::default() }).expect("storage works");
    assert!(done.receipts.iter().all(|r| r.outcome == Outcome::Success), "{:?}", done.receipts[0].outcome);
    assert_eq!(done.report.plan.graph.edge_count(), 0);
    assert_eq!(done.report.plan.groups.len(), 1);
    assert_eq!(done.report.exact_predictions(), 200);
    assert!(done.report.predicted_speedup(2) > 1.9);
}

/// The same block, run 100 times with each of 1, 2, 4 and 8 threads (and
/// serially), from the same state: identical receipts, gas and root every
/// time, whatever the scheduling.
#[test]
fn the_same_block_gives_the_same_result_every_time_on_any_thread_count() {
    let (mut world, setup) = World::new(WorldConfig { users: 60, pools: 2, seed: 31, failures_per_mille: 60, ..WorldConfig::default() });
    let start = set_up(&setup);
    let block = world.block(Workload::DefiMix, 120);
    let fresh = || {
        let vm = Vm::with_state(start.runtime().clone(), chroma_vm::StateOverlay::new());
        vm.state().apply_values(start.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
        vm
    };
    let mut serial = fresh();
    let expected = serial.execute_block(&block, &BlockOptions::serial()).expect("storage works");
    let expected_root = root(&serial);
    assert!(expected.receipts.iter().any(|r| !r.outcome.is_success()), "the block includes failures");
    let mut runs = 0;
    for threads in [1, 2, 4, 8] {
        for run in 0..100 {
            let strategy = Strategy::ALL[run % Strategy::ALL.len()];
            let options = BlockOptions { threads, strategy, serial: false, adaptive: run % 3 == 0 };
            let mut vm = fresh();
            let done = vm.execute_block(&block, &options).expect("storage works");
            assert_same(&expected.receipts, &done.receipts, &block, &format!("run {run}, {options:?}"));
            assert_eq!(root(&vm), expected_root, "run {run}, {options:?}: state root");
            runs += 1;
        }
    }
    assert_eq!(runs, 400);
}
