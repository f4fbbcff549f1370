//! A small chain over the VM for tests: named accounts, automatic nonces.

use std::path::PathBuf;

use chroma_host_api::{Address, Decode, Encode};
use chroma_vm::{dev_account, Outcome, Receipt, Transaction, TxKind, Vm};

pub const GAS: u64 = 50_000_000;
pub const CONTRACTS: [&str; 5] = ["token", "amm", "lending", "registry", "counter"];

pub fn wasm(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/wasm").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub struct Chain {
    pub vm: Vm,
}

impl Chain {
    pub fn new() -> Chain {
        Chain { vm: Vm::new().expect("engine") }
    }

    pub fn account(name: &str) -> Address {
        dev_account(name)
    }

    pub fn send(&mut self, from: &str, kind: TxKind, gas_limit: u64) -> Receipt {
        let sender = dev_account(from);
        let tx = Transaction { sender, nonce: self.vm.nonce(&sender).expect("nonce"), kind, gas_limit };
        self.vm.execute(&tx).expect("storage works")
    }

    pub fn deploy(&mut self, from: &str, contract: &str, init_args: impl Encode) -> Address {
        let receipt = self.send(from, TxKind::Deploy { code: wasm(contract), init_args: init_args.encode() }, GAS);
        assert_eq!(receipt.outcome, Outcome::Success, "deploying {contract}");
        receipt.deployed.expect("deployed address")
    }

    pub fn call(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) -> Receipt {
        self.call_with_gas(from, contract, method, args, GAS)
    }

    pub fn call_with_gas(&mut self, from: &str, contract: Address, method: &str, args: impl Encode, gas: u64) -> Receipt {
        self.send(from, TxKind::Call { contract, method: method.into(), args: args.encode() }, gas)
    }

    /// Calls and expects success, decoding the result.
    pub fn ok<R: Decode>(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) -> R {
        let receipt = self.call(from, contract, method, args);
        assert_eq!(receipt.outcome, Outcome::Success, "{method}");
        R::decode(&receipt.return_data).expect("return value decodes")
    }

    pub fn view<R: Decode>(&self, contract: Address, method: &str, args: impl Encode) -> R {
        let receipt = self.vm.query(contract, method, args.encode(), GAS).expect("storage works");
        assert_eq!(receipt.outcome, Outcome::Success, "query {method}");
        R::decode(&receipt.return_data).expect("return value decodes")
    }
}

/// A WAT module text with the ABI section for `methods` (name, kind, no
/// arguments, no return) appended, compiled to Wasm.
pub fn wat_contract(body: &str, methods: &[(&str, chroma_host_api::MethodKind)]) -> Vec<u8> {
    use chroma_host_api::abi::{Abi, Method, Type};
    let abi = Abi {
        methods: methods
            .iter()
            .map(|(name, kind)| Method { name: name.to_string(), kind: *kind, args: vec![], returns: Type::Unit })
            .collect(),
    };
    wat_contract_with_abi(body, &abi)
}

/// A WAT module text with `abi` appended as its ABI section, compiled to Wasm.
pub fn wat_contract_with_abi(body: &str, abi: &chroma_host_api::abi::Abi) -> Vec<u8> {
    let escaped: String = abi.encode().iter().map(|b| format!("\\{b:02x}")).collect();
    let text = format!("(module {body} (@custom \"chroma_abi\" \"{escaped}\"))");
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}

/// Deploys raw module bytes, returning the receipt.
pub fn deploy_bytes(chain: &mut Chain, from: &str, code: Vec<u8>) -> Receipt {
    chain.send(from, TxKind::Deploy { code, init_args: Vec::new() }, GAS)
}

/// Predicts `method`'s accesses from the analyzer's summaries and the state
/// now, runs the call, and asserts that every access the VM recorded lies
/// inside the prediction (`what` names the call in the failure).
pub fn call_within_prediction(
    chain: &mut Chain,
    sender: &str,
    contract: Address,
    method: &str,
    args: Vec<u8>,
    gas: u64,
    what: &str,
) -> (chroma_analyzer::PredictedAccess, Receipt) {
    let state = chain.vm.state().clone();
    let env = chroma_vm::PredictionEnv::new(chain.vm.runtime(), state.as_ref());
    let predicted = chroma_analyzer::predict(&env, &dev_account(sender), &contract, method, &args);
    let receipt = chain.send(sender, TxKind::Call { contract, method: method.into(), args }, gas);
    let a = &receipt.accesses;
    assert!(
        predicted.covers(a.reads.iter().map(Vec::as_slice), a.writes.iter().map(Vec::as_slice), a.adds.iter().map(Vec::as_slice)),
        "{what}: {method} by {sender} ({}) touched keys outside its prediction\npredicted: {predicted:#?}\nactual: {a:#?}",
        receipt.outcome
    );
    (predicted, receipt)
}

/// WAT import declarations of every host function with its signature,
/// each named `$name` so that code can call it by name.
pub fn host_imports_wat() -> String {
    use chroma_host_api::host::{ValType, HOST_FUNCTIONS, IMPORT_MODULE};
    let ty = |t: &ValType| match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    };
    HOST_FUNCTIONS
        .iter()
        .map(|f| {
            let params: Vec<&str> = f.params.iter().map(ty).collect();
            let results: Vec<&str> = f.results.iter().map(ty).collect();
            format!("(import \"{IMPORT_MODULE}\" \"{0}\" (func ${0} (param {1}) (result {2})))", f.name, params.join(" "), results.join(" "))
        })
        .collect()
}
