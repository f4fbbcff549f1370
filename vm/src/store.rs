//! The on-disk state (redb): contract storage, code by hash, compiled-module
//! cache, deployed contracts, blocks and receipts, and the state accumulator.
//! A block commits in one redb write transaction: after a crash the database
//! holds exactly the last committed block.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chroma_analyzer::{ContractSummary, ANALYZER_VERSION};
use chroma_host_api::{Address, Decode, Encode, InputShape, ADDRESS_LEN};
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use crate::root::StateHash;
use crate::shapes::ShapedAnalysis;
use crate::state::{StateError, StateRead};

const STORAGE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("storage");
/// code hash -> Wasm.
const CODE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("code");
/// code hash ‖ engine id -> blake3(artifact) ‖ wasmtime's serialized module.
const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
/// code hash -> analyzer version (u32 LE) ‖ the access summary as JSON.
const SUMMARIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("summaries");
/// code hash ‖ encoded (entry, input length, layout bytes) -> analyzer
/// version (u32 LE) ‖ the entry's summary for that input shape as JSON
/// (`vm/src/shapes.rs`).
const SHAPED_SUMMARIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("shaped_summaries");
/// contract address -> code hash.
const CONTRACTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("contracts");
/// height -> encoded block.
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
/// height -> the block's receipts ([`ReceiptsRecord`]): one record per
/// block, as one insert (a record per receipt was a sixth of a commit).
const BLOCK_RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("block_receipts");
/// height (BE) ‖ index (BE) -> encoded receipt: how blocks committed before
/// `BLOCK_RECEIPTS` keep theirs (read, never written).
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_HEIGHT: &str = "height";
const META_STATE_HASH: &str = "state_hash";
/// Bumped when the layout changes incompatibly.
const FORMAT: &[u8] = b"chroma-store-1";

/// Errors of the on-disk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("the data directory is corrupted: {0}")]
    Corrupt(String),
}

fn db_err<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// What one block changes, for [`StateDb::commit_block`].
pub struct BlockCommit<'a> {
    pub height: u64,
    pub block: &'a [u8],
    /// The block's receipts, encoded, in block order ([`ReceiptsRecord`]).
    pub receipts: &'a ReceiptsRecord,
    /// The state's changes, in key order, each key once (`None`: removed).
    pub writes: &'a [(&'a [u8], Option<&'a [u8]>)],
    pub code: &'a BTreeMap<[u8; 32], Vec<u8>>,
    pub contracts: &'a [(Address, [u8; 32])],
    /// The values before the block that are known in memory: called with a
    /// key, it calls its argument with the key's value (`None`: absent) and
    /// returns `true`, or returns `false` for a key it does not know, which
    /// is then read from the database. The state hash's change needs every
    /// written key's value before the block.
    pub known_before: &'a KnownBefore<'a>,
    /// Whether the commit is on disk for good when `commit_block` returns
    /// (fsync). Otherwise it is committed (atomic, visible to reads) but
    /// made durable only by a later durable commit or [`StateDb::sync`]; a
    /// crash before that reopens the database at the last durable commit.
    pub durable: bool,
}

/// See [`BlockCommit::known_before`].
pub type KnownBefore<'a> = dyn Fn(&[u8], &mut dyn FnMut(Option<&[u8]>)) -> bool + Sync + 'a;

/// Knows no value: every one is read from the database.
pub fn nothing_known(_key: &[u8], _with: &mut dyn FnMut(Option<&[u8]>)) -> bool {
    false
}

/// The database (shared with the thread of a [`StateDb::sync_in_background`]).
pub struct StateDb {
    db: Arc<Database>,
}

/// A read-only view of the committed state at one moment.
pub struct Snapshot {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl StateRead for Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.table.get(key) {
            Ok(value) => Ok(value.map(|v| v.value().to_vec())),
            Err(e) => Err(StateError(e.to_string())),
        }
    }

    fn read_with(&self, key: &[u8], with: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StateError> {
        let value = self.table.get(key).map_err(|e| StateError(e.to_string()))?;
        with(value.as_ref().map(|v| v.value()));
        Ok(())
    }
}

impl StateDb {
    /// Creates a new database at `path` (which must not exist), caching up
    /// to `cache_bytes` of it in memory.
    pub fn create(path: &Path, cache_bytes: usize) -> Result<StateDb, StoreError> {
        let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(META_FORMAT, FORMAT).map_err(db_err)?;
            meta.insert(META_HEIGHT, &0u64.to_le_bytes()[..]).map_err(db_err)?;
            meta.insert(META_STATE_HASH, &StateHash::default().to_bytes()[..]).map_err(db_err)?;
            for table in [STORAGE, CODE, MODULES, SUMMARIES, CONTRACTS, RECEIPTS] {
                tx.open_table(table).map_err(db_err)?;
            }
            tx.open_table(BLOCKS).map_err(db_err)?;
            tx.open_table(BLOCK_RECEIPTS).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(StateDb { db: Arc::new(db) })
    }

    /// Opens an existing database, caching up to `cache_bytes` of it in memory.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<StateDb, StoreError> {
        let db = Database::builder().set_cache_size(cache_bytes).open(path).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = StateDb { db: Arc::new(db) };
        match store.meta(META_FORMAT)? {
            Some(format) if format == FORMAT => Ok(store),
            Some(other) => Err(StoreError::Corrupt(format!(
                "unknown store format {:?} (this build reads {:?})",
                String::from_utf8_lossy(&other),
                String::from_utf8_lossy(FORMAT)
            ))),
            None => Err(StoreError::Corrupt("no format record".into())),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let meta = tx.open_table(META).map_err(db_err)?;
        Ok(meta.get(name).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    pub fn height(&self) -> Result<u64, StoreError> {
        let bytes = self.meta(META_HEIGHT)?.ok_or_else(|| StoreError::Corrupt("no height record".into()))?;
        let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt("malformed height record".into()))?;
        Ok(u64::from_le_bytes(array))
    }

    pub fn state_hash(&self) -> Result<StateHash, StoreError> {
        let bytes = self.meta(META_STATE_HASH)?.ok_or_else(|| StoreError::Corrupt("no state hash record".into()))?;
        StateHash::from_bytes(&bytes).ok_or_else(|| StoreError::Corrupt("malformed state hash record".into()))
    }

    /// A view of the state as of the last committed block.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        Ok(Snapshot { table: tx.open_table(STORAGE).map_err(db_err)? })
    }

    /// Every deployed contract and its code hash, by address.
    pub fn contracts(&self) -> Result<Vec<(Address, [u8; 32])>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CONTRACTS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (address, hash) = entry.map_err(db_err)?;
            let address: [u8; ADDRESS_LEN] =
                address.value().try_into().map_err(|_| StoreError::Corrupt("malformed contract address".into()))?;
            let hash: [u8; 32] = hash.value().try_into().map_err(|_| StoreError::Corrupt("malformed code hash".into()))?;
            out.push((Address(address), hash));
        }
        Ok(out)
    }

    pub fn code(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(CODE).map_err(db_err)?;
        Ok(table.get(&hash[..]).map_err(db_err)?.map(|v| v.value().to_vec()))
    }

    /// A cached compiled module, if one was stored for this engine and its
    /// checksum holds.
    pub fn module_artifact(&self, hash: &[u8; 32], engine_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(MODULES).map_err(db_err)?;
        let key = [&hash[..], engine_id].concat();
        let Some(stored) = table.get(&key[..]).map_err(db_err)? else { return Ok(None) };
        let stored = stored.value();
        if stored.len() < 32 || blake3::hash(&stored[32..]).as_bytes() != &stored[..32] {
            return Ok(None);
        }
        Ok(Some(stored[32..].to_vec()))
    }

    pub fn put_module_artifact(&self, hash: &[u8; 32], engine_id: &[u8], artifact: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(MODULES).map_err(db_err)?;
            let key = [&hash[..], engine_id].concat();
            let value = [blake3::hash(artifact).as_bytes(), artifact].concat();
            table.insert(&key[..], &value[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The stored access summary of a code hash, if one was stored by this
    /// analyzer version and still parses (otherwise it is recomputed).
    pub fn summary(&self, hash: &[u8; 32]) -> Result<Option<ContractSummary>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(SUMMARIES) {
            Ok(table) => table,
            // A store created before summaries were kept: nothing stored.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let Some(stored) = table.get(&hash[..]).map_err(db_err)? else { return Ok(None) };
        let stored = stored.value();
        let version = ANALYZER_VERSION.to_le_bytes();
        if stored.len() < version.len() || stored[..version.len()] != version {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&stored[version.len()..]).ok())
    }

    /// Every stored analysis by input shape made by this analyzer version
    /// that still parses (the others are made again when needed).
    pub fn shaped_summaries(&self) -> Result<Vec<ShapedAnalysis>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(SHAPED_SUMMARIES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db_err(e)),
        };
        let version = ANALYZER_VERSION.to_le_bytes();
        let mut out = Vec::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            let (key, value) = (key.value(), value.value());
            let Some((hash, shape)) = key.split_first_chunk::<32>() else { continue };
            let Ok((method, len, fixed)) = <(String, u32, Vec<(u32, u8)>)>::decode(shape) else { continue };
            let Some(json) = value.strip_prefix(&version[..]) else { continue };
            if let Ok(summary) = serde_json::from_slice(json) {
                out.push((*hash, method, InputShape { len, fixed }, summary));
            }
        }
        Ok(out)
    }

    /// Stores analyses by input shape, in one write transaction.
    pub fn put_shaped_summaries(&self, analyses: &[ShapedAnalysis]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(SHAPED_SUMMARIES).map_err(db_err)?;
            for (hash, method, shape, summary) in analyses {
                let key = [&hash[..], &(method.clone(), shape.len, shape.fixed.clone()).encode()].concat();
                let json = serde_json::to_vec(summary).map_err(db_err)?;
                let value = [&ANALYZER_VERSION.to_le_bytes()[..], &json].concat();
                table.insert(&key[..], &value[..]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    pub fn put_summary(&self, hash: &[u8; 32], summary: &ContractSummary) -> Result<(), StoreError> {
        let json = serde_json::to_vec(summary).map_err(db_err)?;
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(SUMMARIES).map_err(db_err)?;
            let value = [&ANALYZER_VERSION.to_le_bytes()[..], &json].concat();
            table.insert(&hash[..], &value[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Commits a block atomically and returns the new state root.
    pub fn commit_block(&self, commit: BlockCommit<'_>) -> Result<[u8; 32], StoreError> {
        let mut hash = self.state_hash()?;
        let mut tx = self.db.begin_write().map_err(db_err)?;
        if !commit.durable {
            tx.set_durability(redb::Durability::None).map_err(db_err)?;
        }
        // The state this write transaction starts from: no other writer can
        // commit while it is open, so a read begun now sees exactly that.
        let before = self.db.begin_read().map_err(db_err)?;
        let before = before.open_table(STORAGE).map_err(db_err)?;
        // The state hash's change (a blake3 XOF of 2 KiB per old and new
        // entry) is summed on another thread while this one writes to the
        // database, which then helps sum the rest: the writes took about as
        // long as the sum, so each thread ends up with about half of the
        // two. The change is a sum, so where it is computed cannot alter it.
        let (writes, known) = (commit.writes, commit.known_before);
        let next = AtomicUsize::new(0);
        let change = std::thread::scope(|scope| {
            let theirs = scope.spawn(|| state_hash_change(&before, known, writes, &next));
            let written = Self::write_block(&tx, &commit);
            let mine = written.and_then(|()| state_hash_change(&before, known, writes, &next));
            let theirs = theirs.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let mut change = mine?;
            change.merge(&theirs?);
            Ok::<_, StoreError>(change)
        })?;
        hash.merge(&change);
        {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert(META_HEIGHT, &commit.height.to_le_bytes()[..]).map_err(db_err)?;
            meta.insert(META_STATE_HASH, &hash.to_bytes()[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(hash.root())
    }

    /// Makes every commit so far durable: an empty write transaction
    /// committed durably, which writes out what earlier non-durable commits
    /// left (redb's documented way) and syncs the file.
    pub fn sync(&self) -> Result<(), StoreError> {
        sync(&self.db)
    }

    /// [`StateDb::sync`] on a thread of its own, so that the caller can go
    /// on (a node executes its next block meanwhile). Writes wait for it.
    pub fn sync_in_background(&self) -> Result<BackgroundSync, StoreError> {
        let db = self.db.clone();
        std::thread::Builder::new()
            .name("chroma-sync".into())
            .spawn(move || sync(&db))
            .map(|thread| BackgroundSync { thread })
            .map_err(|e| StoreError::Db(format!("cannot start the sync thread: {e}")))
    }

    /// Everything of a block but its meta records, into `tx`.
    fn write_block(tx: &redb::WriteTransaction, commit: &BlockCommit<'_>) -> Result<(), StoreError> {
        let mut storage = tx.open_table(STORAGE).map_err(db_err)?;
        for &(key, value) in commit.writes {
            match value {
                Some(new) => storage.insert(key, new).map_err(db_err)?,
                None => storage.remove(key).map_err(db_err)?,
            };
        }
        let mut code = tx.open_table(CODE).map_err(db_err)?;
        for (code_hash, wasm) in commit.code {
            code.insert(&code_hash[..], &wasm[..]).map_err(db_err)?;
        }
        let mut contracts = tx.open_table(CONTRACTS).map_err(db_err)?;
        for (address, code_hash) in commit.contracts {
            contracts.insert(&address.0[..], &code_hash[..]).map_err(db_err)?;
        }
        tx.open_table(BLOCKS).map_err(db_err)?.insert(commit.height, commit.block).map_err(db_err)?;
        tx.open_table(BLOCK_RECEIPTS).map_err(db_err)?.insert(commit.height, commit.receipts.bytes()).map_err(db_err)?;
        Ok(())
    }

    /// The encoded receipts of block `height`, in block order (`None`: no
    /// such block).
    pub fn receipts(&self, height: u64) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        if height == 0 || height > self.height()? {
            return Ok(None);
        }
        let tx = self.db.begin_read().map_err(db_err)?;
        match tx.open_table(BLOCK_RECEIPTS) {
            Ok(table) => {
                if let Some(record) = table.get(height).map_err(db_err)? {
                    let receipts = ReceiptsRecord::parse(record.value());
                    return receipts.map(Some).ok_or_else(|| StoreError::Corrupt(format!("malformed receipts of block {height}")));
                }
            }
            // A database from before the table: every block's receipts are in the old one.
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db_err(e)),
        }
        let table = tx.open_table(RECEIPTS).map_err(db_err)?;
        let (first, last) = (legacy_receipt_key(height, 0), legacy_receipt_key(height, u64::MAX));
        let mut receipts = Vec::new();
        for entry in table.range(&first[..]..=&last[..]).map_err(db_err)? {
            receipts.push(entry.map_err(db_err)?.1.value().to_vec());
        }
        Ok(Some(receipts))
    }

    /// Recomputes the state hash from every stored entry (for checking).
    pub fn recompute_state_hash(&self) -> Result<StateHash, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(STORAGE).map_err(db_err)?;
        let mut hash = StateHash::default();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            hash.insert(key.value(), value.value());
        }
        Ok(hash)
    }

    /// Every stored entry of the state, in key order.
    pub fn entries(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = tx.open_table(STORAGE).map_err(db_err)?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, value) = entry.map_err(db_err)?;
            out.insert(key.value().to_vec(), value.value().to_vec());
        }
        Ok(out)
    }
}
/// A receipt's key in `RECEIPTS`.
fn legacy_receipt_key(height: u64, index: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&height.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

fn sync(db: &Database) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(db_err)?;
    tx.commit().map_err(db_err)
}

/// A [`StateDb::sync`] running on another thread.
#[must_use = "a sync's failure is known only when it is waited for"]
pub struct BackgroundSync {
    thread: std::thread::JoinHandle<Result<(), StoreError>>,
}

impl BackgroundSync {
    /// Waits for the sync to end.
    pub fn wait(self) -> Result<(), StoreError> {
        self.thread.join().unwrap_or_else(|_| Err(StoreError::Db("the sync thread panicked".into())))
    }
}

/// Writes whose state hash change one thread sums at a time.
const HASH_CHUNK: usize = 128;

/// What `writes` change in the state hash of the state `before` them (the
/// values `known` in memory taken from there): the part of the chunks this
/// thread takes (from `next`, shared with the other threads summing them).
fn state_hash_change(
    before: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    known: &KnownBefore<'_>,
    writes: &[(&[u8], Option<&[u8]>)],
    next: &AtomicUsize,
) -> Result<StateHash, StoreError> {
    let mut change = StateHash::default();
    loop {
        let start = next.fetch_add(HASH_CHUNK, Ordering::Relaxed);
        let Some(chunk) = writes.get(start..writes.len().min(start + HASH_CHUNK)) else { return Ok(change) };
        for &(key, value) in chunk {
            let mut old_removed = |old: Option<&[u8]>| {
                if let Some(old) = old {
                    change.remove(key, old);
                }
            };
            if !known(key, &mut old_removed) {
                if let Some(old) = before.get(key).map_err(db_err)? {
                    change.remove(key, old.value());
                }
            }
            if let Some(new) = value {
                change.insert(key, new);
            }
        }
    }
}

/// A block's receipts, encoded as stored: their number (u32 LE), then each
/// one's length (u32 LE) and bytes.
pub struct ReceiptsRecord {
    bytes: Vec<u8>,
}

impl ReceiptsRecord {
    /// The record of `receipts`, encoded by `encode`, with room for about
    /// `estimate` bytes each.
    pub fn of<T>(receipts: &[T], estimate: usize, mut encode: impl FnMut(&T, &mut Vec<u8>)) -> ReceiptsRecord {
        let mut bytes = Vec::with_capacity(4 + receipts.len() * (4 + estimate));
        bytes.extend_from_slice(&(receipts.len() as u32).to_le_bytes());
        for receipt in receipts {
            let at = bytes.len();
            bytes.extend_from_slice(&[0; 4]);
            encode(receipt, &mut bytes);
            let len = (bytes.len() - at - 4) as u32;
            bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        ReceiptsRecord { bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded receipts of a record.
    fn parse(record: &[u8]) -> Option<Vec<Vec<u8>>> {
        let (count, mut rest) = record.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count) as usize;
        // Each receipt takes at least its length's four bytes.
        let mut receipts = Vec::with_capacity(count.min(rest.len() / 4));
        for _ in 0..count {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let (receipt, tail) = tail.split_at_checked(len)?;
            receipts.push(receipt.to_vec());
            rest = tail;
        }
        rest.is_empty().then_some(receipts)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn commit(db: &StateDb, height: u64, receipts: &[&[u8]]) {
        let key = height.to_le_bytes();
        let writes = [(&key[..], Some(&[1, 2, 3][..]))];
        let receipts = ReceiptsRecord::of(receipts, 8, |r, out| out.extend_from_slice(r));
        let (code, contracts) = (BTreeMap::new(), Vec::new());
        let block = BlockCommit { height, block: b"block", receipts: &receipts, writes: &writes, code: &code, contracts: &contracts, known_before: &nothing_known, durable: true };
        db.commit_block(block).expect("commit");
    }

    /// A record holds each receipt's bytes, in order, and nothing else: a
    /// record cut short or followed by more bytes is refused.
    #[test]
    fn a_receipts_record_gives_back_its_receipts_and_refuses_malformed_bytes() {
        let receipts: Vec<Vec<u8>> = vec![b"first".to_vec(), Vec::new(), vec![7; 300]];
        let record = ReceiptsRecord::of(&receipts, 8, |r, out| out.extend_from_slice(r));
        assert_eq!(ReceiptsRecord::parse(record.bytes()), Some(receipts));
        let bytes = record.bytes();
        for cut in 0..bytes.len() {
            assert_eq!(ReceiptsRecord::parse(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(ReceiptsRecord::parse(&[bytes, &[0][..]].concat()), None);
        assert_eq!(ReceiptsRecord::parse(&ReceiptsRecord::of::<u8>(&[], 0, |_, _| {}).bytes), Some(Vec::new()));
    }

    /// A snapshot lends what it reads: the same value `get` copies, and
    /// `None` for a key never written.
    #[test]
    fn a_snapshot_lends_what_it_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::create(&dir.path().join("db"), 1 << 20).expect("create");
        commit(&db, 1, &[]);
        let snapshot = db.snapshot().expect("snapshot");
        for key in [1u64.to_le_bytes().to_vec(), b"absent".to_vec()] {
            let mut lent = Vec::new();
            snapshot.read_with(&key, &mut |value| lent.push(value.map(<[u8]>::to_vec))).expect("read");
            assert_eq!(lent, vec![snapshot.get(&key).expect("read")], "{key:?}");
        }
    }

    /// Blocks committed now keep their receipts in one record; blocks of a
    /// database from before that keep one record per receipt, and read the
    /// same way, whether or not the database has the new table yet.
    #[test]
    fn receipts_are_read_back_from_either_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::create(&dir.path().join("db"), 1 << 20).expect("create");
        // Block 1 as the first layout wrote it, without the new table (and
        // a stray record of block 2).
        let tx = db.db.begin_write().expect("write");
        {
            assert!(tx.delete_table(BLOCK_RECEIPTS).expect("delete"));
            let mut old = tx.open_table(RECEIPTS).expect("table");
            for (height, index, receipt) in [(1, 1, &b"b"[..]), (1, 0, b"a"), (2, 0, b"stray")] {
                old.insert(&legacy_receipt_key(height, index)[..], receipt).expect("insert");
            }
            tx.open_table(META).expect("meta").insert(META_HEIGHT, &1u64.to_le_bytes()[..]).expect("height");
        }
        tx.commit().expect("commit");
        assert_eq!(db.receipts(1).expect("read"), Some(vec![b"a".to_vec(), b"b".to_vec()]), "in index order");
        assert_eq!(db.receipts(0).expect("read"), None);
        assert_eq!(db.receipts(2).expect("read"), None, "past the last block");
        commit(&db, 2, &[]);
        assert_eq!(db.receipts(2).expect("read"), Some(Vec::new()), "an empty block's record, not the stray one");
        commit(&db, 3, &[b"one", b"two"]);
        assert_eq!(db.receipts(3).expect("read"), Some(vec![b"one".to_vec(), b"two".to_vec()]));
        assert_eq!(db.receipts(1).expect("read"), Some(vec![b"a".to_vec(), b"b".to_vec()]));
    }
}
