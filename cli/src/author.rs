//! `chroma new` and `chroma build`: a contract crate from nothing, and its Wasm.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::json;

/// This checkout's SDK and test harness, which new crates depend on by path
/// (the crates are not published).
fn checkout_crate(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// A crate name cargo accepts and a Rust module name can be made from.
fn valid_crate_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64
}

fn manifest(name: &str, sdk: &Path, testing: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

# A contract builds on its own, outside any workspace.
[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
chroma-sdk = {{ path = "{sdk}" }}

[dev-dependencies]
chroma-testing = {{ path = "{testing}" }}

# `chroma build` uses the release profile: small, deterministic, and
# overflow-checked (contracts move money).
[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
overflow-checks = true
strip = "symbols"

# The tests run the real VM; its compiler is slow when not optimised.
[profile.dev.package."*"]
opt-level = 2
"#,
        sdk = sdk.display(),
        testing = testing.display()
    )
}

fn source(module: &str) -> String {
    format!(
        r#"//! A counter with an owner-only reset: a starting point.

#![no_std]

use chroma_sdk::prelude::*;

#[contract]
pub mod {module} {{
    use super::*;

    const COUNT: Item<u128> = Item::new(0);
    const OWNER: Item<Address> = Item::new(1);

    /// Runs once, at deploy: the deployer owns the counter.
    #[entry(init)]
    pub fn init() {{
        OWNER.set(&caller());
    }}

    /// Adds `by` and returns the new count.
    #[entry]
    pub fn increment(by: u128) -> u128 {{
        let Some(next) = COUNT.get_or_default().checked_add(by) else {{ revert("counter overflow") }};
        COUNT.set(&next);
        emit("Incremented", &(caller(), next));
        next
    }}

    /// Back to zero; only the owner may.
    #[entry]
    pub fn reset() {{
        require!(caller() == OWNER.get().unwrap_or_default(), "only the owner can reset");
        COUNT.set(&0);
    }}

    #[entry(view)]
    pub fn get() -> u128 {{
        COUNT.get_or_default()
    }}
}}
"#
    )
}

fn test_source(name: &str) -> String {
    format!(
        r#"//! The built contract in the real VM, in memory (chroma-testing).
//! `cargo test` builds the Wasm first (as `chroma build` does).

use chroma_testing::{{assert_reverts, events, Address, TestChain}};

fn wasm() -> Vec<u8> {{
    chroma_testing::build(env!("CARGO_MANIFEST_DIR")).unwrap_or_else(|e| panic!("{{e}}"))
}}

#[test]
fn increments_emit_and_only_the_owner_resets() {{
    let mut chain = TestChain::new();
    let counter = chain.deploy("alice", &wasm(), ()).expect("{name} deploys");
    assert_eq!(chain.call::<u128>("bob", counter, "increment", (5u128,)), Ok(5));
    let receipt = chain.send("carol", counter, "increment", (2u128,)).expect("runs");
    assert_eq!(events::<(Address, u128)>(&receipt, "Incremented"), Ok(vec![(TestChain::account("carol"), 7)]));
    assert_eq!(chain.view::<u128>(counter, "get", ()), Ok(7));
    assert_reverts(chain.call::<()>("bob", counter, "reset", ()), "only the owner can reset");
    chain.call::<()>("alice", counter, "reset", ()).expect("the owner resets");
    assert_eq!(chain.view::<u128>(counter, "get", ()), Ok(0));
}}
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A Chroma contract.

```sh
chroma build                 # the Wasm, its entry points and their inferred storage accesses
cargo test                   # builds the Wasm and runs it in an in-memory chain (tests/contract.rs)
chroma init                  # a local chain in ./chroma-data
chroma deploy target/chroma/wasm32-unknown-unknown/release/{module}.wasm --name {name}
chroma call {name} increment --arg by=5
chroma query {name} get
```

`src/lib.rs` is the contract; the SDK's rules for keys the analyzer can follow are in
Chroma's ARCHITECTURE.md ("Rules that keep keys analyzable").
"#,
        module = name.replace('-', "_")
    )
}

/// `chroma new NAME`: a contract crate in ./NAME.
pub fn new(name: &str, sdk: Option<PathBuf>, as_json: bool) -> anyhow::Result<()> {
    if !valid_crate_name(name) {
        bail!("{name:?} is not a valid contract name: use lowercase letters, digits, '-' and '_', starting with a letter");
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or remove it", dir.display());
    }
    let sdk = match sdk {
        Some(path) => path,
        None => checkout_crate("host-api/sdk"),
    };
    let testing = sdk.join("../../testing");
    let (sdk, testing) = match (sdk.canonicalize(), testing.canonicalize()) {
        (Ok(sdk), Ok(testing)) if sdk.join("Cargo.toml").is_file() && testing.join("Cargo.toml").is_file() => (sdk, testing),
        _ => bail!(
            "cannot find Chroma's SDK at {} (this chroma was built from a checkout that moved?); \
             give the checkout's host-api/sdk with --sdk",
            sdk.display()
        ),
    };
    let module = name.replace('-', "_");
    // The checkout's lock file: the new crate starts from the dependency
    // versions Chroma is tested with (cargo drops what it does not use).
    let lock = std::fs::read_to_string(sdk.join("../../Cargo.lock")).unwrap_or_default();
    let files = [
        ("Cargo.lock", lock),
        ("Cargo.toml", manifest(name, &sdk, &testing)),
        ("src/lib.rs", source(&module)),
        ("tests/contract.rs", test_source(name)),
        ("README.md", readme(name)),
        (".gitignore", "/target\n/chroma-data\n".to_string()),
    ];
    // Written into a temporary directory, then renamed: never half a crate.
    let staging = PathBuf::from(format!(".{name}.chroma-new"));
    let write_all = || -> anyhow::Result<()> {
        for (path, contents) in files.iter().filter(|(_, contents)| !contents.is_empty()) {
            let path = staging.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        }
        std::fs::rename(&staging, &dir).with_context(|| format!("cannot create {}", dir.display()))
    };
    if let Err(e) = write_all() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if as_json {
        println!("{}", json!({ "created": dir, "files": files.iter().map(|(p, _)| *p).collect::<Vec<_>>() }));
    } else {
        println!("created contract crate {name}/ (src/lib.rs, tests/contract.rs, README.md)");
        println!("next:  cd {name} && chroma build && cargo test");
    }
    Ok(())
}

/// `chroma build [PATH]`: the crate's Wasm, checked and analysed.
pub fn build(path: Option<PathBuf>, as_json: bool) -> anyhow::Result<()> {
    let dir = path.unwrap_or_else(|| PathBuf::from("."));
    if !as_json {
        eprintln!("building {} to Wasm ...", dir.display());
    }
    let built = chroma_build::build(&dir)?;
    let bytes = std::fs::read(&built.wasm).with_context(|| format!("cannot read {}", built.wasm.display()))?;
    let shown = built.wasm.strip_prefix(std::env::current_dir().unwrap_or_default()).unwrap_or(&built.wasm).display().to_string();
    if as_json {
        let abi = chroma_vm::gatekeeper::validate(&bytes).with_context(|| format!("{shown} is not a valid Chroma contract"))?.abi;
        let methods: Vec<String> = abi.methods.iter().map(|m| m.to_string()).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "wasm": built.wasm, "size": bytes.len(), "toolchain": built.toolchain.to_string(), "methods": methods,
            }))?
        );
        return Ok(());
    }
    println!("built {shown}  ({} bytes, {})", bytes.len(), built.toolchain);
    crate::analyze::print(&shown, &bytes, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names() {
        for good in ["counter", "my-token", "amm_v2"] {
            assert!(valid_crate_name(good), "{good}");
        }
        for bad in ["", "Token", "9lives", "has space", "../escape", "a/b"] {
            assert!(!valid_crate_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_checkout_has_the_crates_new_projects_depend_on() {
        assert!(checkout_crate("host-api/sdk/Cargo.toml").is_file());
        assert!(checkout_crate("testing/Cargo.toml").is_file());
    }
}
