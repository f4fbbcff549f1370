//! Showing values, receipts and addresses to people and to scripts.

use chroma_host_api::abi::Type;
use chroma_host_api::{Address, Value};
use chroma_vm::{Outcome, Receipt};
use serde_json::{json, Value as Json};

/// Renders `value` in `Value::parse` syntax, with named addresses shown by name.
pub fn value(v: &Value, name_of: &dyn Fn(&Address) -> Option<String>) -> String {
    match v {
        Value::Address(a) => name_of(a).unwrap_or_else(|| a.to_string()),
        Value::Tuple(items) | Value::List(items) => {
            let inner: Vec<String> = items.iter().map(|i| value(i, name_of)).collect();
            if matches!(v, Value::Tuple(_)) { format!("({})", inner.join(", ")) } else { format!("[{}]", inner.join(", ")) }
        }
        Value::Option(Some(inner)) => value(inner, name_of),
        Value::UInt(u128::MAX) => "u128::MAX".to_string(),
        other => other.to_string(),
    }
}

/// JSON for `value`: integers beyond 2^53 as strings (JSON numbers lose them).
pub fn value_json(v: &Value) -> Json {
    const EXACT: u128 = 1 << 53;
    match v {
        Value::Unit => Json::Null,
        Value::Bool(b) => json!(b),
        Value::UInt(n) if *n <= EXACT => json!(*n as u64),
        Value::UInt(n) => json!(n.to_string()),
        Value::Int(n) if n.unsigned_abs() <= EXACT => json!(*n as i64),
        Value::Int(n) => json!(n.to_string()),
        Value::Address(a) => json!(a.to_string()),
        Value::String(s) => json!(s),
        Value::List(items) | Value::Tuple(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Option(None) => Json::Null,
        Value::Option(Some(inner)) => value_json(inner),
    }
}

/// `0x`-prefixed lowercase hex, as addresses are shown.
pub fn hex(bytes: &[u8]) -> String {
    format!("0x{}", chroma_vm::root::hex(bytes))
}

/// A receipt as text lines and as JSON, its return value typed by `returns`.
pub fn receipt(r: &Receipt, returns: Option<&Type>, name_of: &dyn Fn(&Address) -> Option<String>) -> (String, Json) {
    let returned = match (&r.outcome, returns) {
        (Outcome::Success, Some(ty)) if *ty != Type::Unit => Value::decode_as(ty, &r.return_data).ok(),
        _ => None,
    };
    let mut text = format!("outcome   {}\ngas used  {}", r.outcome, r.gas_used);
    if let Some(v) = &returned {
        text.push_str(&format!("\nreturns   {}", value(v, name_of)));
    }
    if let Some(address) = &r.deployed {
        text.push_str(&format!("\naddress   {address}"));
    }
    for event in &r.events {
        let contract = name_of(&event.contract).unwrap_or_else(|| format!("{:?}", event.contract));
        text.push_str(&format!("\nevent     {contract}.{} ({} bytes of data)", event.name, event.data.len()));
    }
    let json = json!({
        "outcome": r.outcome.to_string(),
        "success": r.outcome.is_success(),
        "gas_used": r.gas_used,
        "returns": returned.as_ref().map(value_json),
        "return_data": hex(&r.return_data),
        "deployed": r.deployed.map(|a| a.to_string()),
        "events": r.events.iter().map(|e| json!({
            "contract": e.contract.to_string(), "name": e.name, "data": hex(&e.data),
        })).collect::<Vec<_>>(),
    });
    (text, json)
}
