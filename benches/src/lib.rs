//! Shared set-up for Chroma's benchmarks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, BlockOptions, Outcome, StateOverlay, Transaction, TxKind, Vm};
use chroma_workloads::{World, WorldConfig};

pub const GAS: u64 = 10_000_000;

/// The committed Wasm of an example contract.
pub fn example_wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/wasm").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A VM with a token deployed by alice holding the whole supply, not
/// recording receipts' accesses (as a node).
pub fn vm_with_token() -> (Vm, Address) {
    let mut vm = Vm::new().expect("engine");
    // As a node runs: receipts without the keys accessed.
    vm.runtime().set_recording_accesses(false);
    let alice = dev_account("alice");
    let tx = Transaction {
        sender: alice,
        nonce: 0,
        kind: TxKind::Deploy { code: example_wasm("token"), init_args: ("TOK".to_string(), u128::MAX / 2).encode() },
        gas_limit: GAS,
    };
    let receipt = vm.execute(&tx).expect("storage");
    assert_eq!(receipt.outcome, Outcome::Success);
    (vm, receipt.deployed.expect("address"))
}

/// A transfer of 1 from alice to bob with the given nonce.
pub fn transfer(token: Address, nonce: u64) -> Transaction {
    Transaction {
        sender: dev_account("alice"),
        nonce,
        kind: TxKind::Call { contract: token, method: "transfer".into(), args: (dev_account("bob"), 1u128).encode() },
        gas_limit: GAS,
    }
}

/// The median of some timings.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median over rounds of `before[i] / after[i]`: each ratio is of two
/// runs made moments apart, so a host whose speed drifts over seconds moves
/// it less than it moves the ratio of two medians taken over all rounds.
/// 0 without rounds.
pub fn median_ratio(before: &[Duration], after: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = before.iter().zip(after).map(|(b, a)| b.as_secs_f64() / a.as_secs_f64().max(1e-9)).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

/// `txs` split into `parts` lists, each sender's transactions in one list
/// in block order (split anywhere else, a list would start with nonces its
/// fork has not reached, and those transactions would be refused unrun).
/// A sender not seen before goes to the list with the fewest transactions
/// so far, so that the lists come out about as long.
pub fn split_by_sender(txs: &[Transaction], parts: usize) -> Vec<Vec<Transaction>> {
    let mut lists: Vec<Vec<Transaction>> = vec![Vec::new(); parts.max(1)];
    let mut part_of: std::collections::BTreeMap<Address, usize> = std::collections::BTreeMap::new();
    for tx in txs {
        let part = *part_of.entry(tx.sender).or_insert_with(|| {
            (0..lists.len()).min_by_key(|&i| lists[i].len()).unwrap_or(0)
        });
        lists[part].push(tx.clone());
    }
    lists
}

/// Runs `parts` at once, each on a thread of its own over a VM of its own
/// (`vms`, one per part), one transaction after another with
/// [`Vm::execute`] (what a serial block does per transaction, without the
/// block around it: no planning beside it, no receipts kept): work with no
/// coordination at all between the threads. With one part, the same on one
/// thread. The time of many parts over that of one, for the same
/// transactions, is what the host gives that many threads: about the best
/// a parallel executor can do on it. Returns how long the slowest took.
pub fn run_independent_parts(vms: &mut [Vm], parts: &[Vec<Transaction>]) -> Duration {
    assert_eq!(vms.len(), parts.len(), "one VM per part");
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for (vm, part) in vms.iter_mut().zip(parts) {
            // Moved onto an execution thread once, for the whole part.
            scope.spawn(move || {
                chroma_vm::on_execution_thread(|| {
                    for tx in part {
                        vm.execute(tx).expect("the state in memory");
                    }
                })
                .expect("an execution thread")
            });
        }
    });
    started.elapsed()
}

/// A world of `chroma-workloads` set up once, frozen, and forked for each
/// run: every run of a block starts from the same state.
pub struct SetUpWorld {
    pub vm: Vm,
    pub config: WorldConfig,
    frozen: Arc<StateOverlay>,
}

impl SetUpWorld {
    /// Runs the world's set-up blocks and freezes the resulting state.
    pub fn new(config: WorldConfig) -> SetUpWorld {
        let (_, setup) = World::new(config);
        let mut vm = Vm::new().expect("engine");
        // As a node runs: receipts without the keys accessed.
        vm.runtime().set_recording_accesses(false);
        for block in &setup {
            let done = vm.execute_block(block, &BlockOptions::default()).expect("set-up");
            assert!(done.receipts.iter().all(|r| r.outcome.is_success()), "set-up failed");
        }
        let frozen = StateOverlay::new();
        frozen.apply_values(vm.state().snapshot().into_iter().map(|(k, v)| (k, Some(v))));
        SetUpWorld { vm, config, frozen }
    }

    /// A VM over a copy of the set-up state, sharing the deployed contracts.
    pub fn fork(&self) -> Vm {
        Vm::with_state(self.vm.runtime().clone(), StateOverlay::over(self.frozen.clone()))
    }

    /// A generator of blocks whose nonces continue from the set-up.
    pub fn world(&self) -> World {
        World::new(self.config).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round by round, not medians over all rounds: a host that slowed down
    /// for the last round slows both of its runs, and the ratio keeps it out.
    #[test]
    fn a_median_ratio_pairs_the_runs_of_each_round() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        let (before, after) = (ms(&[10, 12, 100]), ms(&[5, 6, 50]));
        assert_eq!(median_ratio(&before, &after), 2.0);
        // There the medians agree (12 over 6). Here they do not (30 over 50),
        // while two rounds of three ran twice as fast after.
        let (before, after) = (ms(&[10, 100, 30]), ms(&[5, 50, 60]));
        assert_eq!(median_ratio(&before, &after), 2.0);
        assert_eq!(median(before).as_millis() as f64 / median(after).as_millis() as f64, 0.6);
        assert_eq!(median_ratio(&[], &[]), 0.0);
    }

    /// Each sender's transactions stay together and in order (so that
    /// every part's nonces follow on from the state it starts from), and
    /// new senders go to the shorter part.
    #[test]
    fn a_split_by_sender_keeps_each_senders_transactions_together_and_in_order() {
        let tx = |sender: u8, nonce: u64| Transaction { sender: Address([sender; chroma_host_api::ADDRESS_LEN]), nonce, kind: TxKind::Deploy { code: Vec::new(), init_args: Vec::new() }, gas_limit: 1 };
        let block = [tx(1, 0), tx(2, 0), tx(1, 1), tx(1, 2), tx(3, 0), tx(2, 1), tx(4, 0), tx(3, 1)];
        let parts = split_by_sender(&block, 2);
        let senders_nonces = |part: &[Transaction]| part.iter().map(|t| (t.sender.0[0], t.nonce)).collect::<Vec<_>>();
        // 1 goes to part 0, 2 to part 1, 3 to the shorter part 1 (part 0 holds three then), 4 to part 0 (3 against 3: the first).
        assert_eq!(senders_nonces(&parts[0]), [(1, 0), (1, 1), (1, 2), (4, 0)]);
        assert_eq!(senders_nonces(&parts[1]), [(2, 0), (3, 0), (2, 1), (3, 1)]);
        assert_eq!(split_by_sender(&block, 1)[0].len(), block.len());
        assert_eq!(split_by_sender(&[], 3).iter().map(Vec::len).collect::<Vec<_>>(), [0, 0, 0]);
    }
}
