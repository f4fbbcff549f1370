//! `chroma abi`.

use anyhow::Context;
use chroma_vm::gatekeeper;
use serde_json::json;

pub fn abi(source: &str, as_json: bool) -> anyhow::Result<()> {
    let bytes = crate::chain::read_module(source)?;
    let module = gatekeeper::validate(&bytes).with_context(|| format!("{source} is not a valid Chroma contract"))?;
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
        let hash = crate::render::hex(&module.code_hash);
        println!("{}", serde_json::to_string_pretty(&json!({ "code_hash": hash, "size": bytes.len(), "methods": methods }))?);
    } else {
        println!("{source} ({} bytes)", bytes.len());
        for method in &module.abi.methods {
            println!("  {method}");
        }
    }
    Ok(())
}
