//! `chroma abi`.

use std::path::Path;

use anyhow::Context;
use chroma_vm::gatekeeper;
use serde_json::json;

pub fn abi(file: &Path, as_json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let module = gatekeeper::validate(&bytes).with_context(|| format!("{} is not a valid Chroma contract", file.display()))?;
    if as_json {
        let methods: Vec<_> = module
            .abi
            .methods
            .iter()
            .map(|m| {
                json!({
                    "name": m.name,
                    "kind": m.kind.as_str(),
                    "args": m.args.iter().map(|a| json!({"name": a.name, "type": a.ty.to_string()})).collect::<Vec<_>>(),
                    "returns": m.returns.to_string(),
                })
            })
            .collect();
        let hash: String = module.code_hash.iter().map(|b| format!("{b:02x}")).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "code_hash": hash, "size": bytes.len(), "methods": methods }))?);
    } else {
        println!("{} ({} bytes)", file.display(), bytes.len());
        for method in &module.abi.methods {
            println!("  {method}");
        }
    }
    Ok(())
}
