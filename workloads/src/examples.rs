//! The example contracts' committed Wasm, embedded so `chroma demo` and
//! `chroma deploy example:NAME` need no files and no Wasm toolchain.

pub const TOKEN: &[u8] = include_bytes!("../../contracts/wasm/token.wasm");
pub const AMM: &[u8] = include_bytes!("../../contracts/wasm/amm.wasm");
pub const LENDING: &[u8] = include_bytes!("../../contracts/wasm/lending.wasm");
pub const REGISTRY: &[u8] = include_bytes!("../../contracts/wasm/registry.wasm");
pub const COUNTER: &[u8] = include_bytes!("../../contracts/wasm/counter.wasm");

pub const NAMES: [&str; 5] = ["token", "amm", "lending", "registry", "counter"];

pub fn by_name(name: &str) -> Option<&'static [u8]> {
    Some(match name {
        "token" => TOKEN,
        "amm" => AMM,
        "lending" => LENDING,
        "registry" => REGISTRY,
        "counter" => COUNTER,
        _ => return None,
    })
}
