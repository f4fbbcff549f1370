//! `chroma demo`: the example contracts on an in-memory chain.
//!
//! Until the parallel block executor exists, the demo runs a short DeFi
//! session transaction by transaction and prints every receipt, typed by the
//! contracts' ABIs.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use chroma_host_api::abi::{Abi, Type};
use chroma_host_api::{Address, Encode, Value};
use chroma_vm::{dev_account, Outcome, Receipt, Transaction, TxKind, Vm};
use serde_json::json;

use crate::examples;

const GAS_LIMIT: u64 = 10_000_000;

struct Session {
    vm: Vm,
    names: BTreeMap<Address, String>,
    rows: Vec<serde_json::Value>,
    json: bool,
}

impl Session {
    fn name(&self, address: &Address) -> String {
        self.names.get(address).cloned().unwrap_or_else(|| format!("{address:?}"))
    }

    fn show(&self, value: &Value) -> String {
        match value {
            Value::Address(a) => self.name(a),
            Value::Tuple(items) | Value::List(items) => {
                let inner: Vec<String> = items.iter().map(|v| self.show(v)).collect();
                if matches!(value, Value::Tuple(_)) { format!("({})", inner.join(", ")) } else { format!("[{}]", inner.join(", ")) }
            }
            Value::Option(Some(v)) => self.show(v),
            Value::UInt(u128::MAX) => "u128::MAX".to_string(),
            other => other.to_string(),
        }
    }

    fn send(&mut self, from: &str, kind: TxKind) -> anyhow::Result<Receipt> {
        let sender = dev_account(from);
        self.names.insert(sender, from.to_string());
        let tx = Transaction { sender, nonce: self.vm.nonce(&sender)?, kind, gas_limit: GAS_LIMIT };
        Ok(self.vm.execute(&tx)?)
    }

    fn deploy(&mut self, from: &str, label: &str, code: &[u8], init_args: impl Encode) -> anyhow::Result<Address> {
        let receipt = self.send(from, TxKind::Deploy { code: code.to_vec(), init_args: init_args.encode() })?;
        let Some(address) = receipt.deployed else {
            bail!("deploying {label} failed: {}", receipt.outcome);
        };
        self.names.insert(address, label.to_string());
        if self.json {
            self.rows.push(json!({
                "kind": "deploy", "from": from, "contract": label, "address": address.to_string(),
                "code_bytes": code.len(), "outcome": receipt.outcome.to_string(), "gas_used": receipt.gas_used,
            }));
        } else {
            println!("deploy  {from:<6} {label:<9} {:>6} bytes  -> {address:?}  gas {}", code.len(), receipt.gas_used);
        }
        Ok(address)
    }

    fn abi(&self, contract: &Address) -> anyhow::Result<Abi> {
        Ok(self.vm.contract(contract).context("no contract at that address")?.abi.clone())
    }

    /// Calls `method` with `args` given as a tuple of values; returns the decoded result.
    fn call(&mut self, from: &str, contract: Address, method: &str, args: impl Encode) -> anyhow::Result<Option<Value>> {
        let abi = self.abi(&contract)?;
        let m = abi.method(method).with_context(|| format!("{} has no method {method}", self.name(&contract)))?.clone();
        let encoded = args.encode();
        let shown_args = match Value::decode_as(&m.args_type(), &encoded)? {
            Value::Tuple(values) => m
                .args
                .iter()
                .zip(values)
                .map(|(a, v)| format!("{}: {}", a.name, self.show(&v)))
                .collect::<Vec<_>>()
                .join(", "),
            other => self.show(&other),
        };
        let receipt = self.send(from, TxKind::Call { contract, method: method.into(), args: encoded })?;
        let result = match (&receipt.outcome, &m.returns) {
            (Outcome::Success, Type::Unit) => None,
            (Outcome::Success, ty) => Some(Value::decode_as(ty, &receipt.return_data)?),
            _ => None,
        };
        let call = format!("{}.{method}({shown_args})", self.name(&contract));
        let shown_result = result.as_ref().map(|v| self.show(v)).unwrap_or_default();
        if self.json {
            self.rows.push(json!({
                "kind": "call", "from": from, "call": call, "outcome": receipt.outcome.to_string(),
                "gas_used": receipt.gas_used, "result": shown_result,
                "events": receipt.events.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
                "keys_read": receipt.accesses.reads.len(), "keys_written": receipt.accesses.writes.len(),
                "keys_added": receipt.accesses.adds.len(),
            }));
        } else {
            let outcome = match &receipt.outcome {
                Outcome::Success if shown_result.is_empty() => "ok".to_string(),
                Outcome::Success => format!("ok -> {shown_result}"),
                other => other.to_string(),
            };
            println!("call    {from:<6} {call:<58} gas {:>7}  {outcome}", receipt.gas_used);
        }
        Ok(result)
    }
}

pub fn run(json: bool) -> anyhow::Result<()> {
    let vm = Vm::new().context("cannot start the VM")?;
    let mut s = Session { vm, names: BTreeMap::new(), rows: Vec::new(), json };
    if !json {
        println!("Chroma demo: the example contracts on an in-memory chain, one transaction after another.\n");
    }
    let (alice, bob, carol) = (dev_account("alice"), dev_account("bob"), dev_account("carol"));
    for (name, address) in [("alice", alice), ("bob", bob), ("carol", carol)] {
        s.names.insert(address, name.to_string());
    }

    let aaa = s.deploy("alice", "AAA", examples::TOKEN, ("AAA".to_string(), 1_000_000u128))?;
    let bbb = s.deploy("alice", "BBB", examples::TOKEN, ("BBB".to_string(), 1_000_000u128))?;
    let pool = s.deploy("alice", "pool", examples::AMM, (aaa, bbb))?;
    let market = s.deploy("alice", "market", examples::LENDING, (aaa, 7_500u32))?;
    let names = s.deploy("alice", "registry", examples::REGISTRY, ())?;
    let counter = s.deploy("alice", "counter", examples::COUNTER, ())?;
    if !json {
        println!();
    }

    for token in [aaa, bbb] {
        for who in [bob, carol] {
            s.call("alice", token, "transfer", (who, 20_000u128))?;
        }
        for who in ["alice", "bob", "carol"] {
            s.call(who, token, "approve", (pool, u128::MAX))?;
        }
    }
    s.call("alice", pool, "add_liquidity", (200_000u128, 100_000u128, 1u128))?;
    s.call("bob", pool, "swap", (aaa, 5_000u128, 2_000u128))?;
    s.call("carol", pool, "swap", (bbb, 3_000u128, 5_000u128))?;
    s.call("carol", pool, "swap", (bbb, 3_000u128, 99_999u128))?;
    s.call("bob", pool, "quote", (aaa, 1_000u128))?;

    s.call("bob", aaa, "approve", (market, u128::MAX))?;
    s.call("bob", market, "deposit", (10_000u128,))?;
    s.call("bob", market, "borrow", (8_000u128,))?;
    s.call("bob", market, "borrow", (7_500u128,))?;
    s.call("bob", market, "position", (bob,))?;

    s.call("carol", names, "register", ("carol.chroma".to_string(),))?;
    s.call("bob", names, "register", ("carol.chroma".to_string(),))?;
    s.call("bob", names, "resolve", ("carol.chroma".to_string(),))?;
    s.call("alice", counter, "increment", ())?;
    s.call("bob", counter, "add", (41u128,))?;
    s.call("carol", counter, "get", ())?;
    for who in [alice, bob, carol] {
        s.call("carol", aaa, "balance_of", (who,))?;
    }

    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Array(s.rows))?);
    } else {
        println!(
            "\n{} state entries. Next: the parallel block executor and its per-block report (see ARCHITECTURE.md).",
            s.vm.state().len()
        );
    }
    Ok(())
}
