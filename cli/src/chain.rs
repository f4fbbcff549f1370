//! `chroma init | deploy | call | query | state | account`: the persistent chain
//! in a data directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use chroma_host_api::abi::{Method, MethodKind, Type};
use chroma_host_api::{Address, Value};
use chroma_vm::{gatekeeper, BlockOptions, CommittedBlock, Node, Transaction, TxKind};
use serde_json::json;

use chroma_workloads::examples;
use crate::keyring::Keyring;
use crate::render;

/// Gas limit when `--gas` is not given.
pub const DEFAULT_GAS: u64 = 10_000_000;

pub struct Ctx {
    pub data_dir: PathBuf,
    pub json: bool,
}

pub fn open(ctx: &Ctx) -> anyhow::Result<(Node, Keyring)> {
    let node = Node::open(&ctx.data_dir)?;
    let keyring = Keyring::load(&ctx.data_dir)?;
    Ok((node, keyring))
}

pub fn print(ctx: &Ctx, text: &str, json: serde_json::Value) -> anyhow::Result<()> {
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

pub fn init(ctx: &Ctx) -> anyhow::Result<()> {
    let node = Node::create(&ctx.data_dir)?;
    let keyring = Keyring::create(&ctx.data_dir)?;
    let accounts: Vec<_> = keyring.accounts.iter().map(|a| json!({"name": a, "address": chroma_vm::dev_account(a).to_string()})).collect();
    print(
        ctx,
        &format!(
            "created a chain in {} (height {}); dev accounts: {}",
            ctx.data_dir.display(),
            node.height(),
            keyring.accounts.join(", ")
        ),
        json!({"data_dir": ctx.data_dir, "height": node.height(), "root": render::hex(&node.root()), "accounts": accounts}),
    )
}

/// Reads a module: a file, or `example:NAME` for an embedded example contract.
pub fn read_module(source: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(name) = source.strip_prefix("example:") {
        return examples::by_name(name)
            .map(<[u8]>::to_vec)
            .with_context(|| format!("no example contract {name:?}; examples: {}", examples::NAMES.join(", ")));
    }
    std::fs::read(source).with_context(|| format!("cannot read {source}"))
}

/// Encodes `--arg name=value` pairs as the method's arguments, in ABI order.
pub fn encode_args(method: &Method, pairs: &[String], keyring: &Keyring) -> anyhow::Result<Vec<u8>> {
    encode_args_with(method, pairs, &|name| keyring.resolve(name))
}

/// [`encode_args`] with names resolved by `resolve`.
pub fn encode_args_with(method: &Method, pairs: &[String], resolve: &dyn Fn(&str) -> Option<Address>) -> anyhow::Result<Vec<u8>> {
    let signature = method.to_string();
    let mut given: Vec<(&str, &str)> = Vec::new();
    for pair in pairs {
        let Some((name, text)) = pair.split_once('=') else {
            bail!("--arg {pair:?} must be name=value; {signature}");
        };
        if !method.args.iter().any(|a| a.name == name) {
            bail!("{} has no argument {name:?}; {signature}", method.name);
        }
        if given.iter().any(|(n, _)| *n == name) {
            bail!("argument {name:?} is given twice");
        }
        given.push((name, text));
    }
    let mut values = Vec::new();
    for arg in &method.args {
        let Some((_, text)) = given.iter().find(|(n, _)| *n == arg.name) else {
            bail!("missing --arg {}=<{}>; {signature}", arg.name, arg.ty);
        };
        let value = Value::parse(&arg.ty, text, resolve).with_context(|| format!("argument {}", arg.name))?;
        values.push(value);
    }
    Ok(Value::Tuple(values).encode_as(&method.args_type())?)
}

pub fn contract_address(keyring: &Keyring, reference: &str) -> anyhow::Result<Address> {
    keyring
        .resolve(reference)
        .with_context(|| format!("unknown contract {reference:?}: give a label from `chroma state` or a 0x address"))
}

fn method_of(node: &Node, contract: Address, reference: &str, name: &str) -> anyhow::Result<Method> {
    let Some(deployed) = node.vm().contract(&contract) else {
        bail!("no contract at {reference} ({contract})");
    };
    match deployed.abi.method(name) {
        Some(m) if m.kind != MethodKind::Init => Ok(m.clone()),
        _ => {
            let methods: Vec<String> =
                deployed.abi.methods.iter().filter(|m| m.kind != MethodKind::Init).map(|m| m.to_string()).collect();
            bail!("{reference} has no method {name:?}; its methods:\n  {}", methods.join("\n  "))
        }
    }
}

/// Submits one transaction as the next block.
fn submit(node: &mut Node, keyring: &Keyring, from: &str, kind: TxKind, gas: u64) -> anyhow::Result<CommittedBlock> {
    let sender = keyring.account(from)?;
    let tx = Transaction { sender, nonce: node.nonce(&sender)?, kind, gas_limit: gas };
    Ok(node.execute_block(std::slice::from_ref(&tx), &BlockOptions::serial())?)
}

/// Prints a one-transaction block's receipt, its height and root; returns whether it succeeded.
fn print_block(ctx: &Ctx, keyring: &Keyring, block: &CommittedBlock, returns: Option<&Type>, headline: &str) -> anyhow::Result<bool> {
    let receipt = &block.receipts[0];
    let name_of = |a: &Address| keyring.name_of(a);
    let (text, mut json) = render::receipt(receipt, returns, &name_of);
    json["block"] = json!(block.height);
    json["root"] = json!(render::hex(&block.root));
    print(ctx, &format!("{headline}{text}\nblock     {}  root {}", block.height, render::hex(&block.root)), json)?;
    Ok(receipt.outcome.is_success())
}

pub struct DeployArgs {
    pub module: String,
    pub from: String,
    pub args: Vec<String>,
    pub name: Option<String>,
    pub gas: u64,
}

/// Returns whether the deploy succeeded.
pub fn deploy(ctx: &Ctx, a: DeployArgs) -> anyhow::Result<bool> {
    let (mut node, mut keyring) = open(ctx)?;
    let code = read_module(&a.module)?;
    let validated = gatekeeper::validate(&code).with_context(|| format!("{} cannot be deployed", a.module))?;
    let init_args = match validated.abi.init() {
        Some(init) => encode_args(init, &a.args, &keyring)?,
        None if a.args.is_empty() => Vec::new(),
        None => bail!("this contract has no init method, so it takes no --arg"),
    };
    if let Some(label) = &a.name {
        if keyring.resolve(label).is_some() {
            bail!("the name {label:?} is already in the keyring; choose another --name");
        }
    }
    let block = submit(&mut node, &keyring, &a.from, TxKind::Deploy { code, init_args }, a.gas)?;
    let headline = match (&a.name, block.receipts[0].deployed) {
        (Some(label), Some(address)) => {
            keyring.add_contract(label, address)?;
            format!("deployed as {label} at {address}\n")
        }
        (None, Some(address)) => format!("deployed at {address}\n"),
        (_, None) => String::new(),
    };
    print_block(ctx, &keyring, &block, None, &headline)
}

pub struct CallArgs {
    pub contract: String,
    pub method: String,
    pub args: Vec<String>,
    pub from: String,
    pub gas: u64,
}

/// Returns whether the call succeeded.
pub fn call(ctx: &Ctx, a: CallArgs) -> anyhow::Result<bool> {
    let (mut node, keyring) = open(ctx)?;
    let contract = contract_address(&keyring, &a.contract)?;
    let method = method_of(&node, contract, &a.contract, &a.method)?;
    let args = encode_args(&method, &a.args, &keyring)?;
    let kind = TxKind::Call { contract, method: method.name.clone(), args };
    let block = submit(&mut node, &keyring, &a.from, kind, a.gas)?;
    print_block(ctx, &keyring, &block, Some(&method.returns), "")
}

/// Runs a method read-only against the committed state; returns whether it succeeded.
pub fn query(ctx: &Ctx, contract_ref: &str, method_name: &str, pairs: &[String], gas: u64) -> anyhow::Result<bool> {
    let (node, keyring) = open(ctx)?;
    let contract = contract_address(&keyring, contract_ref)?;
    let method = method_of(&node, contract, contract_ref, method_name)?;
    let args = encode_args(&method, pairs, &keyring)?;
    let receipt = node.query(contract, &method.name, args, gas)?;
    let name_of = |x: &Address| keyring.name_of(x);
    let (text, json) = render::receipt(&receipt, Some(&method.returns), &name_of);
    print(ctx, &text, json)?;
    Ok(receipt.outcome.is_success())
}

pub fn state(ctx: &Ctx) -> anyhow::Result<()> {
    let (node, keyring) = open(ctx)?;
    let contracts = node.contracts()?;
    let mut text = format!(
        "data dir   {}\nheight     {}\nroot       {}\ncontracts  {}",
        ctx.data_dir.display(),
        node.height(),
        render::hex(&node.root()),
        contracts.len()
    );
    let mut contracts_json = Vec::new();
    for (address, hash, abi) in &contracts {
        let label = keyring.name_of(address).unwrap_or_else(|| "-".into());
        text.push_str(&format!("\n  {label:<12} {address}  code {}  {} methods", &render::hex(hash)[..16], abi.methods.len()));
        contracts_json.push(json!({"label": keyring.name_of(address), "address": address.to_string(), "code_hash": render::hex(hash),
            "methods": abi.methods.iter().map(|m| m.to_string()).collect::<Vec<_>>()}));
    }
    text.push_str("\naccounts");
    let mut accounts_json = Vec::new();
    for name in &keyring.accounts {
        let address = chroma_vm::dev_account(name);
        let nonce = node.nonce(&address)?;
        text.push_str(&format!("\n  {name:<12} {address}  nonce {nonce}"));
        accounts_json.push(json!({"name": name, "address": address.to_string(), "nonce": nonce}));
    }
    print(
        ctx,
        &text,
        json!({"data_dir": ctx.data_dir, "height": node.height(), "root": render::hex(&node.root()),
               "contracts": contracts_json, "accounts": accounts_json}),
    )
}

pub fn account_new(ctx: &Ctx, name: &str) -> anyhow::Result<()> {
    let (_, mut keyring) = open(ctx)?;
    let address = keyring.add_account(name)?;
    print(ctx, &format!("added {name}: {address}"), json!({"name": name, "address": address.to_string()}))
}

pub fn account_list(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, keyring) = open(ctx)?;
    let rows: Vec<_> = keyring.accounts.iter().map(|n| (n.clone(), chroma_vm::dev_account(n))).collect();
    let text = rows.iter().map(|(n, a)| format!("{n:<12} {a}")).collect::<Vec<_>>().join("\n");
    let json = json!(rows.iter().map(|(n, a)| json!({"name": n, "address": a.to_string()})).collect::<Vec<_>>());
    print(ctx, &text, json)
}
