//! Templates in words: `write slot3[caller]`, `add slot3[arg.to]`,
//! `call token(value of slot0)[..].transfer_from(caller, self, arg.amount_in)`.

use std::collections::BTreeMap;

use chroma_host_api::abi::Method;

use crate::domain::Byte;
use crate::summary::{CallTemplate, KeyTemplate};

/// Names for input offsets (from the ABI) and slots (when known).
#[derive(Debug, Clone, Default)]
pub struct ArgNames {
    /// (name, first input byte, length) of each argument at a fixed offset.
    spans: Vec<(String, u32, Option<u32>)>,
    slots: BTreeMap<u32, String>,
}

impl ArgNames {
    /// Argument offsets of `method`: exact up to its first variable-length argument.
    pub fn from_method(method: &Method) -> ArgNames {
        let mut spans = Vec::new();
        let mut offset = 0u32;
        for arg in &method.args {
            match arg.ty.fixed_len() {
                Some(n) => {
                    spans.push((arg.name.clone(), offset, Some(n as u32)));
                    offset += n as u32;
                }
                None => {
                    spans.push((arg.name.clone(), offset, None));
                    break;
                }
            }
        }
        ArgNames { spans, slots: BTreeMap::new() }
    }

    pub fn with_slot_names(mut self, slots: BTreeMap<u32, String>) -> ArgNames {
        self.slots = slots;
        self
    }

    fn slot(&self, slot: u32) -> String {
        self.slots.get(&slot).cloned().unwrap_or_else(|| format!("slot{slot}"))
    }

    fn input(&self, first: u32, len: u32) -> String {
        // A run across argument boundaries reads as one part per argument.
        for (_, start, n) in &self.spans {
            if let Some(n) = n {
                let end = start + n;
                if first < end && first + len > end && first >= *start {
                    return format!("{} ‖ {}", self.input(first, end - first), self.input(end, first + len - end));
                }
            }
        }
        for (name, start, n) in &self.spans {
            let end = n.map(|n| start + n);
            if first >= *start && end.is_none_or(|e| first + len <= e) {
                if first == *start && Some(len) == *n {
                    return format!("arg.{name}");
                }
                return format!("arg.{name}[{}..{}]", first - start, first - start + len);
            }
        }
        format!("input[{first}..{}]", first + len)
    }
}

/// A run of bytes of one kind.
fn runs(bytes: &[Byte]) -> Vec<(Byte, u32)> {
    let mut out: Vec<(Byte, u32)> = Vec::new();
    for b in bytes {
        if let Some((first, len)) = out.last_mut() {
            let next = match (*first, *b) {
                (Byte::Input(a), Byte::Input(c)) => u32::from(a) + *len == u32::from(c),
                (Byte::Caller(a), Byte::Caller(c)) | (Byte::Contract(a), Byte::Contract(c)) => u32::from(a) + *len == u32::from(c),
                (Byte::Stored { read: r, offset: a }, Byte::Stored { read: s, offset: c }) => r == s && u32::from(a) + *len == u32::from(c),
                (Byte::Const(_), Byte::Const(_)) | (Byte::Unknown, Byte::Unknown) => true,
                _ => false,
            };
            if next {
                *len += 1;
                continue;
            }
        }
        out.push((*b, 1));
    }
    out
}

fn describe_bytes(bytes: &[Byte], reads: &[KeyTemplate], names: &ArgNames, depth: u32) -> String {
    let mut parts = Vec::new();
    let mut consumed = 0usize;
    for (first, len) in runs(bytes) {
        let whole = |start: u8, total: u32, word: &str| {
            if start == 0 && len == total {
                word.to_string()
            } else {
                format!("{word}[{start}..{}]", u32::from(start) + len)
            }
        };
        parts.push(match first {
            Byte::Const(_) => {
                let hex: String = bytes[consumed..consumed + len as usize]
                    .iter()
                    .map(|b| if let Byte::Const(c) = b { format!("{c:02x}") } else { String::new() })
                    .collect();
                format!("0x{hex}")
            }
            Byte::Input(o) => names.input(u32::from(o), len),
            Byte::Caller(i) => whole(i, 32, "caller"),
            Byte::Contract(i) => whole(i, 32, "self"),
            Byte::Stored { read, offset } => {
                let source = match reads.get(read as usize) {
                    Some(key) if depth < 3 => describe_key(key, reads, names, depth + 1),
                    _ => format!("read#{read}"),
                };
                format!("value({source})[{offset}..{}]", u32::from(offset) + len)
            }
            Byte::Flag { .. } | Byte::Choice { .. } | Byte::Unknown => "?".repeat(len.min(3) as usize),
        });
        consumed += len as usize;
    }
    parts.join(" ‖ ")
}

/// `slot3[caller]`, `slot4[arg.from ‖ caller]`, `slot0` (the empty key),
/// `slot5[arg.x ‖ …]` (a prefix), `*` (any key of the contract).
pub fn describe_key(key: &KeyTemplate, reads: &[KeyTemplate], names: &ArgNames, depth: u32) -> String {
    let Some(slot) = key.slot else { return "*".to_string() };
    let slot = names.slot(slot);
    match (key.bytes.is_empty(), key.exact) {
        (true, true) => slot,
        (true, false) => format!("{slot}[…]"),
        (false, true) => format!("{slot}[{}]", describe_bytes(&key.bytes, reads, names, depth)),
        (false, false) => format!("{slot}[{} ‖ …]", describe_bytes(&key.bytes, reads, names, depth)),
    }
}

/// `call <callee>.<method>(<args>)`.
pub fn describe_call(call: &CallTemplate, reads: &[KeyTemplate], names: &ArgNames) -> String {
    let callee = if call.callee.iter().any(|b| !b.is_nameable()) {
        "<any contract>".to_string()
    } else {
        describe_bytes(&call.callee, reads, names, 0)
    };
    let method = call.method.clone().unwrap_or_else(|| "<any method>".to_string());
    let args = match &call.args {
        Some(bytes) if bytes.is_empty() => String::new(),
        Some(bytes) => describe_bytes(bytes, reads, names, 0),
        None => "…".to_string(),
    };
    format!("{callee}.{method}({args})")
}
