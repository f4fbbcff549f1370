//! `chroma analyze`: each entry point's inferred storage accesses and calls.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use chroma_analyzer::{analyze, describe_call, describe_key, AccessKind, ArgNames, ContractSummary};
use chroma_host_api::Abi;
use chroma_vm::{gatekeeper, Node};
use serde_json::json;

use crate::chain::Ctx;
use crate::keyring::Keyring;

/// The module bytes for a file, `example:NAME`, or a deployed contract (label or 0x address).
fn module_bytes(ctx: &Ctx, source: &str) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("example:") || std::path::Path::new(source).is_file() {
        return crate::chain::read_module(source);
    }
    let node = Node::open(&ctx.data_dir)
        .with_context(|| format!("{source:?} is neither a file, example:NAME, nor a contract of the chain in {}", ctx.data_dir.display()))?;
    let keyring = Keyring::load(&ctx.data_dir)?;
    let Some(address) = keyring.resolve(source) else {
        bail!("unknown contract {source:?}: give a .wasm file, example:NAME, a label from `chroma state` or a 0x address");
    };
    let Some((_, code_hash, _)) = node.contracts()?.into_iter().find(|(a, _, _)| *a == address) else {
        bail!("no contract at {source} ({address})");
    };
    node.db().code(&code_hash)?.with_context(|| format!("the code of {address} is missing from the database"))
}

pub fn run(ctx: &Ctx, source: &str) -> anyhow::Result<()> {
    let bytes = module_bytes(ctx, source)?;
    print(source, &bytes, ctx.json)
}

/// Validates `bytes` as a deploy would, analyses it, and prints each entry
/// point's summary (as JSON with `as_json`).
pub fn print(source: &str, bytes: &[u8], as_json_output: bool) -> anyhow::Result<()> {
    let bytes = bytes.to_vec();
    let abi: Abi = gatekeeper::validate(&bytes).with_context(|| format!("{source} is not a valid Chroma contract"))?.abi;
    let started = std::time::Instant::now();
    let summary = analyze(&bytes).with_context(|| format!("cannot analyse {source}"))?;
    let elapsed = started.elapsed();
    if as_json_output {
        println!("{}", serde_json::to_string_pretty(&as_json(&abi, &summary))?);
        return Ok(());
    }
    println!("{source}: {} entry points analysed in {:.1} ms", summary.entries.len(), elapsed.as_secs_f64() * 1e3);
    if !summary.fixed_slots.is_empty() {
        let slots: Vec<String> = summary.fixed_slots.iter().map(|s| format!("slot{s}")).collect();
        println!("  written only by init (resolved from state when keys use them): {}", slots.join(", "));
    }
    for entry in &summary.entries {
        let names = abi.method(&entry.name).map(ArgNames::from_method).unwrap_or_default();
        // Templates that happen only under conditions the predictor checks per transaction.
        let when = |kind: AccessKind, i: usize| match entry.guard(kind, i) {
            Some(g) => format!("  (on {} guarded path(s))", g.any_of.len()),
            None => String::new(),
        };
        let mut parts: Vec<String> = Vec::new();
        let key = |k| describe_key(k, &entry.reads, &names, 0);
        parts.extend(entry.reads.iter().enumerate().map(|(i, k)| format!("read {}{}", key(k), when(AccessKind::Read, i))));
        parts.extend(entry.writes.iter().enumerate().map(|(i, k)| format!("write {}{}", key(k), when(AccessKind::Write, i))));
        parts.extend(entry.adds.iter().enumerate().map(|(i, k)| format!("add {}{}", key(k), when(AccessKind::Add, i))));
        parts.extend(
            entry.calls.iter().enumerate().map(|(i, c)| format!("call {}{}", describe_call(c, &entry.reads, &names), when(AccessKind::Call, i))),
        );
        if let Some(why) = &entry.unbounded {
            parts.push(format!("ANYTHING ({why})"));
        }
        if entry.by_shape {
            // The keys above hold for every input; a prediction does better.
            parts.push("predicted per call from this entry analysed again for the input's shape (its lengths): exact keys".into());
        }
        let kind = format!("{:?}", entry.kind).to_lowercase();
        if parts.is_empty() {
            parts.push("no storage access".into());
        }
        println!("  {} ({kind}):\n    {}", entry.name, parts.join("\n    "));
    }
    Ok(())
}

fn as_json(abi: &Abi, summary: &ContractSummary) -> serde_json::Value {
    let entries: BTreeMap<&str, serde_json::Value> = summary
        .entries
        .iter()
        .map(|e| {
            let names = abi.method(&e.name).map(ArgNames::from_method).unwrap_or_default();
            let keys = |list: &[chroma_analyzer::KeyTemplate]| -> Vec<String> {
                list.iter().map(|k| describe_key(k, &e.reads, &names, 0)).collect()
            };
            (
                e.name.as_str(),
                json!({
                    "kind": e.kind,
                    "reads": keys(&e.reads),
                    "writes": keys(&e.writes),
                    "adds": keys(&e.adds),
                    "calls": e.calls.iter().map(|c| describe_call(c, &e.reads, &names)).collect::<Vec<_>>(),
                    "unbounded": e.unbounded,
                    "by_shape": e.by_shape,
                    "templates": e,
                }),
            )
        })
        .collect();
    json!({ "fixed_slots": summary.fixed_slots, "entries": entries })
}
