//! A persistent chain: the VM over the on-disk store, committing blocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chroma_host_api::abi::Abi;
use chroma_host_api::codec::Encode;
use chroma_host_api::Address;

use crate::block::{BlockExecution, BlockOptions, BlockReport};
use crate::runtime::{Runtime, Vm, VmError};
use crate::state::StateOverlay;
use crate::store::{BackgroundSync, BlockCommit, ReceiptsRecord, StateDb, StoreError};
use crate::tx::{Receipt, Transaction};

/// About the encoded size of a call transaction and of its receipt, for
/// sizing a block's buffers (an estimate: the buffers grow past it if need be).
const ENCODED_TX_ESTIMATE: usize = 160;
const ENCODED_RECEIPT_ESTIMATE: usize = 192;

/// Blocks of at least this many transactions are encoded on a thread of
/// their own while their writes are sorted (see `Node::execute_block`);
/// for fewer, starting the thread would cost more than it saves.
const ENCODED_APART_MIN: usize = 256;

/// The database file inside a data directory.
pub const DB_FILE: &str = "chroma.redb";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no chain at {0} (create one with `chroma init`)")]
    NotInitialized(PathBuf),
    #[error("a chain already exists at {0}")]
    AlreadyInitialized(PathBuf),
    #[error("cannot use {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("contract {address} cannot be restored: {reason}")]
    Restore { address: Address, reason: String },
    /// Syncing block `height` to disk failed after it was committed: a
    /// crash may lose it (and nothing after it was committed).
    #[error("block {height} could not be synced to disk: {error}")]
    Sync { height: u64, error: StoreError },
    /// Block `height` was committed, but the state in memory could not be
    /// moved onto it: the node refuses to go on from an older state. The
    /// data directory holds the block; opening it again goes on from there.
    #[error("block {height} was committed but could not be read back: open the data directory again")]
    Stale { height: u64 },
}

/// When a committed block is on disk for good (survives a crash of the
/// process or of the machine).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// [`Node::execute_block`] returns once its block is synced to disk.
    #[default]
    EachBlock,
    /// Each block is synced to disk on another thread while the next one
    /// executes (the sync, about a millisecond per thousand transfers here,
    /// then costs no time of its own). [`Node::execute_block`] returns once
    /// its block is committed: atomically, and visible to everything that
    /// reads the node. It is durable once the next block's commit begins,
    /// at [`Node::sync`], or when the node is dropped; a crash before that
    /// loses it whole (the directory reopens at the block before), never a
    /// part of it. [`Node::durable_height`] tells which blocks are durable.
    SyncBehind,
}

/// A block after commit.
#[derive(Debug, Clone)]
pub struct CommittedBlock {
    pub height: u64,
    pub root: [u8; 32],
    pub receipts: Vec<Receipt>,
    /// How the block was planned and executed.
    pub report: BlockReport,
    /// Writing the block to disk (state, root, receipts), after execution.
    pub commit: Duration,
}

/// The VM over a data directory.
pub struct Node {
    db: StateDb,
    vm: Vm,
    height: u64,
    root: [u8; 32],
    /// How many contracts were restored from the compiled-module cache at open.
    pub restored_from_cache: usize,
    durability: Durability,
    /// The sync of block `.0` running in the background ([`Durability::SyncBehind`]).
    syncing: Option<(u64, BackgroundSync)>,
    durable_height: u64,
    /// Whether the last block's writes stay in memory ([`Node::set_last_block_in_memory`]).
    last_block_in_memory: bool,
    /// The block committed whose state could not be read back ([`NodeError::Stale`]).
    stale: Option<u64>,
}

/// How a node uses its machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    /// How much of the database its page cache may hold in memory
    /// ([`DB_CACHE_BYTES`] by default).
    pub db_cache_bytes: usize,
}

/// The database's page cache by default: 64 MiB. redb's own default is
/// 1 GiB, and a node fills it with what it writes: every block's pages of
/// blocks, receipts and changed state, the first two never read again. A
/// node committing 10,000-transfer blocks grew by 6-7 MiB a block, in
/// memory the system first had to give the process (on this host, memory
/// not touched for a while cost about 6 ms per 2 MiB to fault in, against
/// 0.1 ms reused), and zeroing those pages was a tenth of its samples.
/// Bounded, the cache reaches its size within about ten such blocks and
/// then reuses its memory. `exec_profile node`, blocks synced behind, the
/// whole call per transaction, alternating runs: transfers 8.00 → 7.17 µs
/// (medians of five runs each); a swap's commit 5.8-8.4 → 4.0-4.4 µs and a
/// defi-mix transaction's 3.7-4.7 → 2.4-3.8 µs (three runs each).
/// The keys the next block reads most are kept in memory apart from it
/// (`StateOverlay::rebase_committed`).
pub const DB_CACHE_BYTES: usize = 64 << 20;

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig { db_cache_bytes: DB_CACHE_BYTES }
    }
}

impl Node {
    /// Creates a new, empty chain in `dir` (created if missing).
    pub fn create(dir: &Path) -> Result<Node, NodeError> {
        Node::create_with(dir, NodeConfig::default())
    }

    /// [`Node::create`] with `config`.
    pub fn create_with(dir: &Path, config: NodeConfig) -> Result<Node, NodeError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(NodeError::AlreadyInitialized(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|error| NodeError::Io { path: dir.to_path_buf(), error })?;
        let db = StateDb::create(&path, config.db_cache_bytes)?;
        Node::load(db)
    }

    /// Opens the chain in `dir`.
    pub fn open(dir: &Path) -> Result<Node, NodeError> {
        Node::open_with(dir, NodeConfig::default())
    }

    /// [`Node::open`] with `config`.
    pub fn open_with(dir: &Path, config: NodeConfig) -> Result<Node, NodeError> {
        let path = dir.join(DB_FILE);
        if !path.is_file() {
            return Err(NodeError::NotInitialized(dir.to_path_buf()));
        }
        Node::load(StateDb::open(&path, config.db_cache_bytes)?)
    }

    fn load(db: StateDb) -> Result<Node, NodeError> {
        let runtime = Runtime::new()?;
        // Receipts are stored without the keys accessed: not recorded.
        runtime.set_recording_accesses(false);
        let engine_id = runtime.engine_id();
        let mut restored_from_cache = 0;
        for (address, code_hash) in db.contracts()? {
            let code = db
                .code(&code_hash)?
                .ok_or_else(|| NodeError::Restore { address, reason: "its code is missing".into() })?;
            let artifact = db.module_artifact(&code_hash, &engine_id)?;
            let stored_summary = db.summary(&code_hash)?;
            let had_summary = stored_summary.is_some();
            if let Some(summary) = stored_summary {
                runtime.remember_summary(code_hash, summary);
            }
            let used_cache = runtime
                .restore(address, &code, artifact.as_deref())
                .map_err(|reason| NodeError::Restore { address, reason })?;
            if used_cache {
                restored_from_cache += 1;
            } else if let Some(bytes) = runtime.serialized_module(&code_hash) {
                db.put_module_artifact(&code_hash, &engine_id, &bytes)?;
            }
            if !had_summary {
                if let Some(summary) = runtime.summary(&code_hash) {
                    db.put_summary(&code_hash, &summary)?;
                }
            }
        }
        for analysis in db.shaped_summaries()? {
            runtime.remember_shaped(analysis);
        }
        let height = db.height()?;
        let root = db.state_hash()?.root();
        let state = StateOverlay::over(Arc::new(db.snapshot()?));
        let durable_height = height;
        Ok(Node {
            vm: Vm::with_state(runtime, state),
            db,
            height,
            root,
            restored_from_cache,
            durability: Durability::default(),
            syncing: None,
            durable_height,
            last_block_in_memory: true,
            stale: None,
        })
    }

    pub fn height(&self) -> u64 {
        self.height
    }

    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// When committed blocks become durable (by default, before
    /// [`Node::execute_block`] returns).
    pub fn set_durability(&mut self, durability: Durability) {
        self.durability = durability;
    }

    /// Whether the writes of the last block committed stay in memory, where
    /// the next block reads them instead of reading the database (on by
    /// default; it holds one block's writes). Results never depend on it.
    pub fn set_last_block_in_memory(&mut self, keep: bool) {
        self.last_block_in_memory = keep;
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The last block known to be on disk for good (blocks after it are
    /// committed and being synced, see [`Durability::SyncBehind`]).
    pub fn durable_height(&self) -> u64 {
        self.durable_height
    }

    /// Makes every committed block durable: waits for the sync running in
    /// the background, if any.
    pub fn sync(&mut self) -> Result<(), NodeError> {
        if let Some((height, syncing)) = self.syncing.take() {
            syncing.wait().map_err(|error| NodeError::Sync { height, error })?;
            self.durable_height = height;
        }
        Ok(())
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Deployed contracts with their code hash and ABI, by address.
    pub fn contracts(&self) -> Result<Vec<(Address, [u8; 32], Abi)>, NodeError> {
        let mut out = Vec::new();
        for (address, hash) in self.db.contracts()? {
            let abi = self.vm.contract(&address).map(|c| c.abi.clone()).unwrap_or_default();
            out.push((address, hash, abi));
        }
        Ok(out)
    }

    /// Executes `txs` in order as the next block (in parallel unless
    /// `options.serial`; the result is the same) and commits it atomically:
    /// the state, the new code, the block and its receipts, durable as
    /// [`Node::durability`] says. On error nothing of the block is
    /// committed, and the node should be reopened.
    pub fn execute_block(&mut self, txs: &[Transaction], options: &BlockOptions) -> Result<CommittedBlock, NodeError> {
        self.fresh()?;
        // The previous block's sync, if it runs behind, goes on meanwhile.
        let BlockExecution { receipts, report } = self.vm.execute_block(txs, options)?;
        let started = Instant::now();
        self.sync()?;
        let height = self.height + 1;
        let code = self.vm.take_new_code();
        let contracts: Vec<(Address, [u8; 32])> = receipts
            .iter()
            .filter_map(|r| r.deployed)
            .filter_map(|address| self.vm.contract(&address).map(|c| (address, c.code_hash)))
            .collect();
        // The block and its receipts are encoded on another thread while
        // this one takes and sorts the state's changes (each was about 3 ms
        // of a 10,000-transfer block's commit). Sized up front, and the
        // receipts encoded into one buffer: growing a buffer per receipt and
        // the block's own was a tenth of a commit.
        let previous_root = self.root;
        let encode = || {
            let mut block = Vec::with_capacity(txs.len() * ENCODED_TX_ESTIMATE);
            height.encode_to(&mut block);
            previous_root.encode_to(&mut block);
            (txs.len() as u32).encode_to(&mut block);
            for tx in txs {
                tx.encode_to(&mut block);
            }
            let receipts = ReceiptsRecord::of(&receipts, ENCODED_RECEIPT_ESTIMATE, |receipt, out| receipt.encode_to(out));
            (block, receipts)
        };
        // Taken, not copied: if the commit fails, the state in memory holds
        // none of the block's writes, like the database. Sorted (borrowed)
        // while the block is encoded.
        let pending = self.vm.state().take_pending_entries();
        let (writes, (block, encoded_receipts)) = if txs.len() < ENCODED_APART_MIN {
            (pending.sorted(), encode())
        } else {
            std::thread::scope(|scope| {
                let encoding = scope.spawn(encode);
                let writes = pending.sorted();
                (writes, encoding.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            })
        };
        let known = self.vm.state().known_in_base();
        let root = self.db.commit_block(BlockCommit {
            height,
            block: &block,
            receipts: &encoded_receipts,
            writes: &writes,
            code: &code,
            contracts: &contracts,
            // The last block's writes, still known in memory (below).
            known_before: &|key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)| known.read_with(key, with),
            durable: self.durability == Durability::EachBlock,
        })?;
        drop((writes, known));
        // The block is committed: the state in memory goes over it at once
        // (before anything below can fail). Its writes stay known in memory,
        // where the next block reads them rather than through the database.
        // The previous block's are dropped when this call returns.
        self.height = height;
        self.root = root;
        let snapshot = match self.snapshot_after_commit() {
            Ok(snapshot) => Arc::new(snapshot),
            Err(error) => {
                self.stale = Some(height);
                return Err(error.into());
            }
        };
        let _previous = if self.last_block_in_memory {
            self.vm.state().rebase_committed(snapshot, pending)
        } else {
            self.vm.state().rebase(snapshot);
            pending
        };
        let engine_id = self.vm.runtime().engine_id();
        for hash in code.keys() {
            if let Some(artifact) = self.vm.runtime().serialized_module(hash) {
                self.db.put_module_artifact(hash, &engine_id, &artifact)?;
            }
            if let Some(summary) = self.vm.runtime().summary(hash) {
                self.db.put_summary(hash, &summary)?;
            }
        }
        // The analyses by input shape this block's planning made (like the
        // summaries above, made again at the next open if a crash loses them).
        let shaped = self.vm.runtime().take_shaped_made();
        if !shaped.is_empty() {
            self.db.put_shaped_summaries(&shaped)?;
        }
        match self.durability {
            Durability::EachBlock => self.durable_height = height,
            Durability::SyncBehind => match self.db.sync_in_background() {
                Ok(syncing) => self.syncing = Some((height, syncing)),
                // No thread for it: synced here, as each block is.
                Err(_) => {
                    self.db.sync().map_err(|error| NodeError::Sync { height, error })?;
                    self.durable_height = height;
                }
            },
        }
        Ok(CommittedBlock { height, root, receipts, report, commit: started.elapsed() })
    }

    /// Runs a read-only call against the committed state.
    pub fn query(&self, contract: Address, method: &str, args: Vec<u8>, gas_limit: u64) -> Result<Receipt, NodeError> {
        self.fresh()?;
        Ok(self.vm.query(contract, method, args, gas_limit)?)
    }

    /// The nonce `account`'s next transaction must carry.
    pub fn nonce(&self, account: &Address) -> Result<u64, NodeError> {
        self.fresh()?;
        Ok(self.vm.nonce(account)?)
    }

    /// Refuses to go on from a state in memory older than the database's.
    fn fresh(&self) -> Result<(), NodeError> {
        match self.stale {
            Some(height) => Err(NodeError::Stale { height }),
            None => Ok(()),
        }
    }

    /// A snapshot of the database right after a commit.
    fn snapshot_after_commit(&self) -> Result<crate::store::Snapshot, StoreError> {
        #[cfg(test)]
        if tests::FAIL_SNAPSHOT.with(|fail| fail.replace(false)) {
            return Err(StoreError::Db("a read that fails (test)".into()));
        }
        self.db.snapshot()
    }

    /// The pending writes of the current block (empty between blocks).
    pub fn pending(&self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.vm.state().pending()
    }
}

impl Drop for Node {
    /// Waits for a block being synced behind, so that a node dropped (a
    /// program that ends) leaves every committed block durable. A failure
    /// can only be reported: the block may be lost in a crash.
    fn drop(&mut self) {
        if let Err(error) = self.sync() {
            eprintln!("chroma: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Makes the next snapshot after a commit fail, on this thread.
        pub(super) static FAIL_SNAPSHOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A block committed whose state cannot be read back leaves the node
    /// refusing to go on (from the state before it); opened again, the
    /// data directory goes on from the block.
    #[test]
    fn a_block_that_cannot_be_read_back_stops_the_node_until_it_is_opened_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = Node::create(dir.path()).expect("create");
        node.execute_block(&[], &BlockOptions::serial()).expect("block 1");
        FAIL_SNAPSHOT.with(|fail| fail.set(true));
        assert!(matches!(node.execute_block(&[], &BlockOptions::serial()), Err(NodeError::Store(_))));
        assert_eq!(node.height(), 2, "the block is committed");
        assert!(matches!(node.execute_block(&[], &BlockOptions::serial()), Err(NodeError::Stale { height: 2 })));
        assert!(matches!(node.nonce(&Address([1; 32])), Err(NodeError::Stale { height: 2 })));
        assert_eq!(node.height(), 2, "nothing more was committed");
        drop(node);
        let mut reopened = Node::open(dir.path()).expect("reopen");
        assert_eq!(reopened.height(), 2);
        reopened.execute_block(&[], &BlockOptions::serial()).expect("block 3");
        assert_eq!(reopened.height(), 3);
    }
}
