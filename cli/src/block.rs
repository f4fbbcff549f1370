//! `chroma block run <block.json>`: executes a block file as the next block,
//! in parallel (or `--serial`), and prints the parallelism report.
//!
//! A block file is a JSON array of transactions (or an object with a
//! `transactions` array). Each transaction is one of
//!
//! ```json
//! {"from": "alice", "call": "tok", "method": "transfer", "args": {"to": "bob", "amount": 250}}
//! {"from": "alice", "deploy": "example:token", "args": {"symbol": "TOK", "supply": 1000}, "name": "tok"}
//! ```
//!
//! with optional `"gas"` and `"nonce"` (by default the sender's next nonce,
//! counting its earlier transactions in the block). Arguments are written as
//! for `--arg`; calls may name a contract deployed earlier in the same block.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chroma_host_api::abi::{Abi, MethodKind};
use chroma_host_api::Address;
use chroma_vm::{gatekeeper, BlockOptions, Outcome, Strategy, Transaction, TxKind};
use serde_json::{json, Value as Json};

use crate::chain::{self, encode_args_with, read_module, Ctx, DEFAULT_GAS};
use crate::report::{self, Extras};

pub struct RunArgs {
    pub file: PathBuf,
    pub execution: ExecutionArgs,
}

/// How to execute, shared with `chroma demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutionArgs {
    /// Execute one transaction after another (the reference); the plan is still reported.
    #[arg(long)]
    pub serial: bool,
    /// Threads for parallel execution [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=chroma_vm::block::MAX_THREADS as u64))]
    pub threads: Option<u64>,
    /// dataflow: each transaction starts when those it conflicts with are done;
    /// barrier: groups run one after another.
    #[arg(long, default_value = "dataflow")]
    pub strategy: Strategy,
    /// Also write the conflict graph, colored by group, as Graphviz DOT to this file.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl ExecutionArgs {
    pub fn options(&self) -> BlockOptions {
        let default = BlockOptions::default();
        BlockOptions {
            threads: self.threads.map_or(default.threads, |t| t as usize),
            strategy: self.strategy,
            serial: self.serial,
            adaptive: true,
        }
    }

    /// Writes the `--dot` and `--html` files asked for.
    pub fn write_files(&self, report: &chroma_vm::BlockReport, names: report::Names<'_>, labels: &[String], extras: &Extras) -> anyhow::Result<()> {
        if let Some(path) = &self.dot {
            write(path, &report::dot(report, names, labels))?;
        }
        if let Some(path) = &self.html {
            write(path, &report::html(report, names, extras))?;
        }
        Ok(())
    }
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// A short description of a transaction for the graph: `alice: tok.transfer`.
pub fn describe_tx(tx: &Transaction, names: report::Names<'_>) -> String {
    let who = names(&tx.sender).unwrap_or_else(|| format!("{:?}", tx.sender));
    match &tx.kind {
        TxKind::Call { contract, method, .. } => {
            format!("{who}: {}.{method}", names(contract).unwrap_or_else(|| format!("{contract:?}")))
        }
        TxKind::Deploy { .. } => format!("{who}: deploy"),
    }
}

/// The block file, parsed against the chain: transactions and the labels to
/// give contracts it deploys.
struct ParsedBlock {
    txs: Vec<Transaction>,
    labels: Vec<(usize, String)>,
}

fn text_of(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_block(node: &chroma_vm::Node, keyring: &crate::keyring::Keyring, file: &Json) -> anyhow::Result<ParsedBlock> {
    let entries = match file {
        Json::Array(entries) => entries,
        Json::Object(map) => match map.get("transactions") {
            Some(Json::Array(entries)) => entries,
            _ => bail!("expected an array of transactions, or an object with a \"transactions\" array"),
        },
        _ => bail!("expected an array of transactions, or an object with a \"transactions\" array"),
    };
    if entries.is_empty() {
        bail!("the block has no transactions");
    }
    let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
    let mut deployed_here: BTreeMap<String, Address> = BTreeMap::new();
    let mut abis_here: BTreeMap<Address, Abi> = BTreeMap::new();
    let mut parsed = ParsedBlock { txs: Vec::new(), labels: Vec::new() };
    for (i, entry) in entries.iter().enumerate() {
        let context = || format!("transaction {i} of the block");
        let Json::Object(fields) = entry else { bail!("transaction {i} of the block is not an object") };
        for key in fields.keys() {
            if !["from", "call", "method", "deploy", "name", "args", "gas", "nonce"].contains(&key.as_str()) {
                bail!("transaction {i}: unknown field {key:?} (fields: from, call, method, deploy, name, args, gas, nonce)");
            }
        }
        let from = fields.get("from").map(text_of).unwrap_or_else(|| "alice".into());
        let sender = keyring.account(&from).with_context(context)?;
        let gas = match fields.get("gas") {
            None => DEFAULT_GAS,
            Some(g) => g.as_u64().with_context(|| format!("transaction {i}: gas must be a whole number"))?,
        };
        let args: Vec<String> = match fields.get("args") {
            None => Vec::new(),
            Some(Json::Object(args)) => args.iter().map(|(k, v)| format!("{k}={}", text_of(v))).collect(),
            Some(_) => bail!("transaction {i}: args must be an object of name: value"),
        };
        let resolve = |name: &str| deployed_here.get(name).copied().or_else(|| keyring.resolve(name));
        let next = match nonces.get(&sender) {
            Some(n) => *n,
            None => node.nonce(&sender)?,
        };
        let nonce = match fields.get("nonce") {
            None => next,
            Some(n) => n.as_u64().with_context(|| format!("transaction {i}: nonce must be a whole number"))?,
        };
        // Saturating: a nonce of u64::MAX is refused by the VM anyway (no
        // account gets there), and the next one defaults to it too.
        nonces.insert(sender, nonce.saturating_add(1));
        let kind = match (fields.get("call"), fields.get("deploy")) {
            (Some(contract_ref), None) => {
                let reference = text_of(contract_ref);
                let Some(method_name) = fields.get("method").map(text_of) else {
                    bail!("transaction {i}: a call needs a \"method\"");
                };
                let contract = resolve(&reference)
                    .with_context(|| format!("transaction {i}: unknown contract {reference:?}: give a label from `chroma state`, one deployed earlier in the block, or a 0x address"))?;
                let abi = match abis_here.get(&contract) {
                    Some(abi) => abi.clone(),
                    None => match node.vm().contract(&contract) {
                        Some(deployed) => deployed.abi.clone(),
                        None => bail!("transaction {i}: no contract at {reference} ({contract})"),
                    },
                };
                let Some(method) = abi.method(&method_name).filter(|m| m.kind != MethodKind::Init) else {
                    let methods: Vec<String> = abi.methods.iter().filter(|m| m.kind != MethodKind::Init).map(|m| m.to_string()).collect();
                    bail!("transaction {i}: {reference} has no method {method_name:?}; its methods:\n  {}", methods.join("\n  "));
                };
                let args = encode_args_with(method, &args, &resolve).with_context(context)?;
                TxKind::Call { contract, method: method.name.clone(), args }
            }
            (None, Some(module)) => {
                let module = text_of(module);
                let code = read_module(&module).with_context(context)?;
                let validated = gatekeeper::validate(&code).with_context(|| format!("transaction {i}: {module} cannot be deployed"))?;
                let init_args = match validated.abi.init() {
                    Some(init) => encode_args_with(init, &args, &resolve).with_context(context)?,
                    None if args.is_empty() => Vec::new(),
                    None => bail!("transaction {i}: this contract has no init method, so it takes no args"),
                };
                let address = chroma_vm::contract_address(&sender, nonce);
                if let Some(label) = fields.get("name").map(text_of) {
                    if resolve(&label).is_some() {
                        bail!("transaction {i}: the name {label:?} is already taken");
                    }
                    deployed_here.insert(label.clone(), address);
                    parsed.labels.push((i, label));
                }
                abis_here.insert(address, validated.abi);
                TxKind::Deploy { code, init_args }
            }
            _ => bail!("transaction {i}: give either \"call\" (with \"method\") or \"deploy\""),
        };
        parsed.txs.push(Transaction { sender, nonce, kind, gas_limit: gas });
    }
    Ok(parsed)
}

/// Returns whether every transaction succeeded.
pub fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<bool> {
    let (mut node, mut keyring) = chain::open(ctx)?;
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let file: Json = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", a.file.display()))?;
    let parsed = parse_block(&node, &keyring, &file).with_context(|| format!("in {}", a.file.display()))?;
    let options = a.execution.options();
    let block = node.execute_block(&parsed.txs, &options)?;
    for (i, label) in &parsed.labels {
        if let Some(address) = block.receipts[*i].deployed {
            keyring.add_contract(label, address)?;
        }
    }
    let names = |x: &Address| keyring.name_of(x);
    let extras = Extras { commit: Some(block.commit), check: None };
    let labels: Vec<String> = parsed.txs.iter().map(|tx| describe_tx(tx, &names)).collect();
    a.execution.write_files(&block.report, &names, &labels, &extras)?;

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for receipt in &block.receipts {
        let kind = match &receipt.outcome {
            Outcome::Success => "success".to_string(),
            other => other.to_string().split(':').next().unwrap_or_default().to_string(),
        };
        *outcomes.entry(kind).or_default() += 1;
    }
    let all_ok = block.receipts.iter().all(|r| r.outcome.is_success());
    if ctx.json {
        let receipts: Vec<Json> = block
            .receipts
            .iter()
            .map(|r| json!({"outcome": r.outcome.to_string(), "gas_used": r.gas_used, "deployed": r.deployed.map(|d| d.to_string())}))
            .collect();
        let out = json!({
            "block": block.height, "root": crate::render::hex(&block.root),
            "report": report::json(&block.report, &names, &extras), "receipts": receipts,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let counts: Vec<String> = outcomes.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("block {}  root {}\noutcomes       {}", block.height, crate::render::hex(&block.root), counts.join(", "));
        print!("{}", report::text(&block.report, &names, &extras));
        for (i, receipt) in block.receipts.iter().enumerate().filter(|(_, r)| !r.outcome.is_success()).take(5) {
            println!("failed #{i} {}: {}", labels[i], receipt.outcome);
        }
    }
    Ok(all_ok)
}

/// Bounded fuzzing of block files: any JSON, shaped like a block or not,
/// is either refused with an error or parsed into transactions that the
/// node then executes as a block without a VM error. Never a panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::keyring::Keyring;
    use proptest::prelude::{any, prop, prop_assert, prop_assert_eq, prop_oneof, Just};
    use proptest::strategy::Strategy as Generator;

    const WORDS: &[&str] = &[
        "alice", "bob", "mallory", "", "tok", "nothing", "0x00", "example:token", "example:counter", "example:nope",
        "/nonexistent.wasm", "transfer", "approve", "balance_of", "increment", "init", "to", "amount", "owner",
    ];
    const FIELDS: &[&str] = &["from", "call", "method", "deploy", "name", "args", "gas", "nonce", "colour"];

    fn scalar() -> impl Generator<Value = Json> {
        prop_oneof![
            4 => prop::sample::select(WORDS).prop_map(|w| json!(w)),
            2 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()].prop_map(|n| json!(n)),
            1 => any::<i64>().prop_map(|n| json!(n)),
            1 => any::<f64>().prop_map(|n| json!(n)),
            1 => Just(Json::Null),
            1 => any::<bool>().prop_map(|b| json!(b)),
            1 => "[ -~]{0,12}".prop_map(|s| json!(s)),
        ]
    }

    fn value() -> impl Generator<Value = Json> {
        scalar().prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Json::Array),
                prop::collection::btree_map(prop::sample::select(WORDS).prop_map(String::from), inner, 0..3)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    fn transaction() -> impl Generator<Value = Json> {
        prop::collection::btree_map(prop::sample::select(FIELDS).prop_map(String::from), value(), 0..6)
            .prop_map(|m| Json::Object(m.into_iter().collect()))
    }

    /// A well-formed transaction with some fields replaced by arbitrary values.
    fn plausible_transaction() -> impl Generator<Value = Json> {
        let sender = prop::sample::select(&["alice", "bob", "carol"][..]);
        let small = prop_oneof![8 => 0u64..2_000, 1 => Just(u64::MAX)];
        (sender, 0..5usize, small.clone(), prop::sample::select(&["bob", "dave", "eve", "tok", "mallory"][..]), prop::option::weighted(0.2, small.clone()), prop::option::weighted(0.2, small), prop::option::weighted(0.15, (prop::sample::select(FIELDS), value())))
            .prop_map(|(from, kind, amount, to, gas, nonce, replaced)| {
                let mut tx = match kind {
                    0 => json!({"from": from, "call": "tok", "method": "transfer", "args": {"to": to, "amount": amount}}),
                    1 => json!({"from": from, "call": "tok", "method": "approve", "args": {"spender": to, "amount": amount}}),
                    2 => json!({"from": from, "call": "tok", "method": "balance_of", "args": {"owner": to}}),
                    3 => json!({"from": from, "deploy": "example:counter"}),
                    _ => json!({"from": from, "deploy": "example:token", "args": {"symbol": "T", "supply": amount}, "name": to}),
                };
                if let Json::Object(fields) = &mut tx {
                    if let Some(gas) = gas {
                        fields.insert("gas".into(), json!(gas));
                    }
                    if let Some(nonce) = nonce {
                        fields.insert("nonce".into(), json!(nonce));
                    }
                    if let Some((field, value)) = replaced {
                        fields.insert(field.to_string(), value);
                    }
                }
                tx
            })
    }

    fn block_file() -> impl Generator<Value = Json> {
        prop_oneof![
            6 => prop::collection::vec(prop_oneof![6 => plausible_transaction(), 1 => transaction()], 0..5).prop_map(Json::Array),
            1 => prop::collection::vec(transaction(), 0..3).prop_map(|t| json!({ "transactions": t })),
            1 => value(),
        ]
    }

    #[test]
    fn block_files_parse_or_fail_cleanly_and_parsed_blocks_execute() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = chroma_vm::Node::create(dir.path()).expect("node");
        let mut keyring = Keyring::create(dir.path()).expect("keyring");
        let deploy = json!([{"from": "alice", "deploy": "example:token", "args": {"symbol": "TOK", "supply": 1000}, "name": "tok"}]);
        let parsed = parse_block(&node, &keyring, &deploy).expect("the set-up block parses");
        let done = node.execute_block(&parsed.txs, &BlockOptions::serial()).expect("the set-up block runs");
        keyring.add_contract("tok", done.receipts[0].deployed.expect("deployed")).expect("label");

        let node = std::cell::RefCell::new(node);
        let (parsed_blocks, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        let config = proptest::test_runner::Config { cases: 500, failure_persistence: None, ..Default::default() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        runner
            .run(&block_file(), |file| {
                let outcome = parse_block(&node.borrow(), &keyring, &file);
                match outcome {
                    Ok(parsed) => {
                        prop_assert!(!parsed.txs.is_empty());
                        let done = node.borrow_mut().execute_block(&parsed.txs, &BlockOptions::default());
                        prop_assert!(done.is_ok(), "{}: {:?}", file, done.err());
                        prop_assert_eq!(done.expect("checked").receipts.len(), parsed.txs.len());
                        parsed_blocks.set(parsed_blocks.get() + 1);
                    }
                    Err(e) => {
                        let message = format!("{e:#}");
                        prop_assert!(!message.is_empty());
                        refused.set(refused.get() + 1);
                    }
                }
                Ok(())
            })
            .expect("no block file panics the parser or the node");
        let (parsed_blocks, refused) = (parsed_blocks.get(), refused.get());
        eprintln!("{parsed_blocks} generated block files parsed and executed, {refused} refused");
        assert!(parsed_blocks > 0 && refused > 0, "the generator reaches both sides");
    }
}
