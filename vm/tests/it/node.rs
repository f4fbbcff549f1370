//! The persistent chain: atomic block commits, the state root, restarts.

use chroma_host_api::{Address, Encode};
use chroma_vm::{dev_account, BlockOptions, Durability, Node, NodeConfig, NodeError, Outcome, Transaction, TxKind};

use crate::support::{wasm, GAS};

fn deploy_tx(node: &Node, from: &str, contract: &str, args: impl Encode) -> Transaction {
    let sender = dev_account(from);
    let nonce = node.nonce(&sender).expect("nonce");
    Transaction { sender, nonce, kind: TxKind::Deploy { code: wasm(contract), init_args: args.encode() }, gas_limit: GAS }
}

fn call_tx(from: &str, nonce: u64, contract: Address, method: &str, args: impl Encode) -> Transaction {
    Transaction {
        sender: dev_account(from),
        nonce,
        kind: TxKind::Call { contract, method: method.into(), args: args.encode() },
        gas_limit: GAS,
    }
}

/// Deploys a token in block 1, then `blocks` blocks of transfers from alice.
fn run_blocks(node: &mut Node, blocks: std::ops::Range<u64>, token: Option<Address>) -> Address {
    let token = match token {
        Some(t) => t,
        None => {
            let tx = deploy_tx(node, "alice", "token", ("TOK".to_string(), 1_000_000u128));
            let block = node.execute_block(&[tx], &BlockOptions::serial()).expect("block 1");
            block.receipts[0].deployed.expect("deployed")
        }
    };
    for b in blocks {
        let base = node.nonce(&dev_account("alice")).expect("nonce");
        let txs: Vec<Transaction> = (0..5u64)
            .map(|i| call_tx("alice", base + i, token, "transfer", (dev_account(&format!("user{}", (b * 7 + i) % 11)), 10 + b as u128)))
            .collect();
        let committed = node.execute_block(&txs, &BlockOptions::serial()).expect("block");
        assert!(committed.receipts.iter().all(|r| r.outcome == Outcome::Success));
    }
    token
}

#[test]
fn blocks_commit_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, height, entries, token) = {
        let mut node = Node::create(dir.path()).expect("create");
        assert_eq!(node.height(), 0);
        let empty_root = node.root();
        let token = run_blocks(&mut node, 0..3, None);
        assert_eq!(node.height(), 4);
        assert_ne!(node.root(), empty_root);
        (node.root(), node.height(), node.db().entries().expect("entries"), token)
    };
    let node = Node::open(dir.path()).expect("reopen");
    assert_eq!(node.height(), height);
    assert_eq!(node.root(), root);
    assert_eq!(node.restored_from_cache, 1, "the compiled module comes from the cache");
    assert_eq!(node.db().entries().expect("entries"), entries);
    assert_eq!(node.db().recompute_state_hash().expect("recompute").root(), root, "incremental root = full recomputation");
    let balance = node.query(token, "balance_of", (dev_account("alice"),).encode(), GAS).expect("query");
    assert_eq!(balance.outcome, Outcome::Success);
    assert!(node.pending().is_empty());
}

/// Blocks synced while the next one executes commit exactly what blocks
/// synced one by one do, visible at once; the durable height trails by one
/// block until a sync; and a node dropped leaves its last block durable.
#[test]
fn blocks_synced_behind_commit_what_blocks_synced_each_do() {
    let (each_dir, behind_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut each = Node::create(each_dir.path()).expect("create");
    let (root, height, entries) = {
        let mut behind = Node::create(behind_dir.path()).expect("create");
        assert_eq!(behind.durability(), Durability::EachBlock, "the default");
        behind.set_durability(Durability::SyncBehind);
        assert_eq!(behind.durability(), Durability::SyncBehind);
        let token = run_blocks(&mut each, 0..0, None);
        assert_eq!(run_blocks(&mut behind, 0..0, None), token);
        for b in 0..4 {
            run_blocks(&mut each, b..b + 1, Some(token));
            run_blocks(&mut behind, b..b + 1, Some(token));
            assert_eq!((behind.height(), behind.root()), (each.height(), each.root()), "block {b}");
            assert_eq!(behind.db().entries().expect("entries"), each.db().entries().expect("entries"), "block {b}");
            assert_eq!(each.durable_height(), each.height());
            assert_eq!(behind.durable_height(), behind.height() - 1, "block {b}: the last block is being synced");
        }
        behind.sync().expect("sync");
        assert_eq!(behind.durable_height(), behind.height());
        behind.sync().expect("nothing left to sync");
        run_blocks(&mut behind, 4..5, Some(token));
        assert_eq!(behind.durable_height(), behind.height() - 1);
        // Dropped without a sync: the drop waits for it.
        (behind.root(), behind.height(), behind.db().entries().expect("entries"))
    };
    let reopened = Node::open(behind_dir.path()).expect("reopen");
    assert_eq!((reopened.height(), reopened.root()), (height, root));
    assert_eq!(reopened.durable_height(), height);
    assert_eq!(reopened.db().entries().expect("entries"), entries);
    assert_eq!(reopened.db().recompute_state_hash().expect("recompute").root(), root);
}

/// Each block's receipts are stored with it and read back in block order,
/// failures included, across a restart.
#[test]
fn a_blocks_receipts_are_stored_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::create(dir.path()).expect("create");
    let token = run_blocks(&mut node, 0..0, None);
    let alice = dev_account("alice");
    let base = node.nonce(&alice).expect("nonce");
    let txs: Vec<Transaction> = (0..6u64)
        .map(|i| {
            // The third asks for more than alice has: it reverts.
            let amount = if i == 2 { u128::MAX } else { 1 + i as u128 };
            call_tx("alice", base + i, token, "transfer", (dev_account(&format!("user{i}")), amount))
        })
        .collect();
    let committed = node.execute_block(&txs, &BlockOptions::default()).expect("block");
    assert!(matches!(committed.receipts[2].outcome, Outcome::Reverted(_)));
    let expected: Vec<Vec<u8>> = committed.receipts.iter().map(Encode::encode).collect();
    assert_eq!(node.db().receipts(committed.height).expect("read"), Some(expected.clone()));
    let deploy = node.db().receipts(1).expect("read").expect("block 1");
    assert_eq!(deploy.len(), 1);
    drop(node);
    let node = Node::open(dir.path()).expect("reopen");
    assert_eq!(node.db().receipts(committed.height).expect("read"), Some(expected));
    assert_eq!(node.db().receipts(committed.height + 1).expect("read"), None);
}

#[test]
fn the_same_blocks_give_the_same_roots_across_restarts() {
    let one = tempfile::tempdir().expect("tempdir");
    let two = tempfile::tempdir().expect("tempdir");
    let mut straight = Node::create(one.path()).expect("create");
    run_blocks(&mut straight, 0..4, None);
    let token = {
        let mut first = Node::create(two.path()).expect("create");
        run_blocks(&mut first, 0..2, None)
    };
    let mut resumed = Node::open(two.path()).expect("reopen");
    run_blocks(&mut resumed, 2..4, Some(token));
    assert_eq!(resumed.height(), straight.height());
    assert_eq!(resumed.root(), straight.root());
}

/// The database's cache changes no result: a node whose cache holds almost
/// nothing (every read of a page goes to the file) commits the same roots,
/// and reopens with another size.
#[test]
fn a_node_with_almost_no_database_cache_commits_the_same_roots() {
    let (one, two) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let mut default = Node::create(one.path()).expect("create");
    let tiny = NodeConfig { db_cache_bytes: 16 << 10 };
    assert_ne!(tiny, NodeConfig::default());
    let mut small = Node::create_with(two.path(), tiny).expect("create");
    let token = run_blocks(&mut default, 0..3, None);
    assert_eq!(run_blocks(&mut small, 0..3, None), token);
    assert_eq!((small.height(), small.root()), (default.height(), default.root()));
    drop(small);
    let mut reopened = Node::open_with(two.path(), NodeConfig { db_cache_bytes: 1 << 20 }).expect("reopen");
    run_blocks(&mut default, 3..5, Some(token));
    run_blocks(&mut reopened, 3..5, Some(token));
    assert_eq!((reopened.height(), reopened.root()), (default.height(), default.root()));
    assert_eq!(reopened.db().recompute_state_hash().expect("recompute").root(), reopened.root());
}

#[test]
fn failed_transactions_change_only_the_nonce_and_the_root_tracks_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::create(dir.path()).expect("create");
    let token = run_blocks(&mut node, 0..0, None);
    let before = node.db().entries().expect("entries");
    let nonce = node.nonce(&dev_account("bob")).expect("nonce");
    let block = node.execute_block(&[call_tx("bob", nonce, token, "transfer", (dev_account("alice"), 5u128))], &BlockOptions::serial()).expect("block");
    assert!(matches!(block.receipts[0].outcome, Outcome::Reverted(_)));
    let after = node.db().entries().expect("entries");
    assert_eq!(after.len(), before.len() + 1, "only bob's nonce record is new");
    assert_eq!(node.db().recompute_state_hash().expect("recompute").root(), node.root());
}

#[test]
fn missing_existing_and_corrupted_data_directories_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing-here");
    assert!(matches!(Node::open(&missing), Err(NodeError::NotInitialized(_))));
    Node::create(dir.path()).expect("create");
    assert!(matches!(Node::create(dir.path()), Err(NodeError::AlreadyInitialized(_))));

    let corrupt = tempfile::tempdir().expect("tempdir");
    std::fs::write(corrupt.path().join(chroma_vm::node::DB_FILE), b"this is not a redb file at all").expect("write");
    match Node::open(corrupt.path()) {
        Err(NodeError::Store(e)) => assert!(e.to_string().contains("corrupted"), "{e}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a corrupted file opened"),
    }
}

#[test]
fn access_summaries_are_computed_at_deploy_and_kept_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = {
        let mut node = Node::create(dir.path()).expect("create");
        let token = run_blocks(&mut node, 0..0, None);
        let summary = node.vm().contract(&token).expect("deployed").summary.clone();
        assert_eq!(*summary, chroma_analyzer::analyze(&wasm("token")).expect("analyses"));
        let stored = node.db().summary(&node.vm().contract(&token).expect("deployed").code_hash).expect("db");
        assert_eq!(stored.as_ref(), Some(&*summary), "stored with the block");
        token
    };
    let node = Node::open(dir.path()).expect("reopen");
    let restored = node.vm().contract(&token).expect("restored").summary.clone();
    assert!(restored.entry("transfer").is_some_and(|e| e.is_precise()));
}

/// The registry's `register` analysed for a name's length (`vm/src/shapes.rs`)
/// is stored with the block that needed it, and a reopened node predicts
/// names of that length exactly without analysing it again.
#[test]
fn analyses_by_input_shape_are_stored_and_survive_a_restart() {
    use chroma_vm::PredictionEnv;
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = {
        let mut node = Node::create(dir.path()).expect("create");
        let tx = deploy_tx(&node, "alice", "registry", ());
        let deployed = node.execute_block(&[tx], &BlockOptions::serial()).expect("deploy");
        let registry = deployed.receipts[0].deployed.expect("deployed");
        let nonce = node.nonce(&dev_account("alice")).expect("nonce");
        let block = node.execute_block(&[call_tx("alice", nonce, registry, "register", ("alice".to_string(),))], &BlockOptions::default()).expect("block");
        assert_eq!(block.receipts[0].outcome, Outcome::Success);
        let stored = node.db().shaped_summaries().expect("stored analyses");
        assert_eq!(stored.iter().map(|(_, method, shape, _)| (method.as_str(), shape.len)).collect::<Vec<_>>(), [("register", 9)]);
        registry
    };
    let node = Node::open(dir.path()).expect("reopen");
    let state = node.vm().state().clone();
    let env = PredictionEnv::new(node.vm().runtime(), state.as_ref());
    let predict = |name: &str| chroma_analyzer::predict(&env, &dev_account("bob"), &registry, "register", &(name.to_string(),).encode());
    // A name of the same length: the stored analysis, exact.
    let same = predict("bobby");
    assert!(same.is_exact() && same.writes().len() == 1 && same.writes().get(0).is_some_and(|w| w.bytes().ends_with(b"bobby")), "{same:?}");
    assert!(node.vm().runtime().take_shaped_made().is_empty(), "the stored analysis was used, none was made");
    // Another length: analysed now.
    assert!(predict("carol.x").is_exact());
    assert_eq!(node.vm().runtime().take_shaped_made().len(), 1);
}
