//! The committed Wasm (contracts/wasm/registry.wasm) through the test harness.

use chroma_testing::{assert_reverts, Address, TestChain};

const WASM: &[u8] = include_bytes!("../../wasm/registry.wasm");

#[test]
fn register_resolve_and_transfer_names() {
    let mut chain = TestChain::new();
    let r = chain.deploy("alice", WASM, ()).expect("deploys");
    let bob = TestChain::account("bob");
    chain.call::<()>("alice", r, "register", ("chroma".to_string(),)).expect("free");
    assert_reverts(chain.call::<()>("bob", r, "register", ("chroma".to_string(),)), "already registered");
    assert_reverts(chain.call::<()>("bob", r, "register", ("Not Valid".to_string(),)), "may contain only");
    assert_reverts(chain.call::<()>("bob", r, "transfer", ("chroma".to_string(), bob)), "only the owner");
    chain.call::<()>("alice", r, "transfer", ("chroma".to_string(), bob)).expect("owner transfers");
    assert_eq!(chain.view::<Option<Address>>(r, "resolve", ("chroma".to_string(),)), Ok(Some(bob)));
    assert_eq!(chain.view::<Option<Address>>(r, "resolve", ("nobody".to_string(),)), Ok(None));
    assert_eq!(chain.view::<u128>(r, "count", ()), Ok(1));
}
