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
