//! Shared set-up for Chroma's benchmarks.

use std::path::PathBuf;

use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, Outcome, Transaction, TxKind, Vm};

pub const GAS: u64 = 10_000_000;

/// The committed Wasm of an example contract.
pub fn example_wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/wasm").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A VM with a token deployed by alice holding the whole supply.
pub fn vm_with_token() -> (Vm, Address) {
    let mut vm = Vm::new().expect("engine");
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
