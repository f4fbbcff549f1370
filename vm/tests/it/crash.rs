//! Crash safety: a child process commits blocks to a data directory and is
//! killed (SIGKILL) at random moments, over and over (every other child
//! syncing each block while the next executes, `Durability::SyncBehind`). After every kill the
//! directory must open, hold exactly the state of its last committed block
//! (the same entries as replaying blocks 1..=height in memory), and its
//! stored root must equal the root recomputed from every entry.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chroma_host_api::{Address, Encode};
use chroma_vm::{contract_address, dev_account, BlockOptions, Durability, Node, Outcome, Transaction, TxKind, Vm};
use chroma_workloads::Rng;

use crate::support::{wasm, GAS};

/// Set (to the data directory) when this test binary runs as the child.
const CHILD_DIR: &str = "CHROMA_CRASH_CHILD_DIR";
/// Set when the child syncs each block while the next one executes
/// (`Durability::SyncBehind`); it then reports the durable height.
const CHILD_SYNCS_BEHIND: &str = "CHROMA_CRASH_CHILD_SYNCS_BEHIND";
const TRANSFERS_PER_BLOCK: u64 = 150;

/// Block `height` of the crash-test chain, a pure function of the height so
/// that the parent can replay what the child committed: block 1 deploys a
/// token, every later block is alice's next transfers to 40 users, in
/// parallel-friendly and conflicting mixes.
fn block(height: u64) -> Vec<Transaction> {
    let alice = dev_account("alice");
    if height == 1 {
        let kind = TxKind::Deploy { code: wasm("token"), init_args: ("TOK".to_string(), u128::MAX / 2).encode() };
        return vec![Transaction { sender: alice, nonce: 0, kind, gas_limit: GAS }];
    }
    let token = token();
    let first_nonce = 1 + (height - 2) * TRANSFERS_PER_BLOCK;
    (0..TRANSFERS_PER_BLOCK)
        .map(|i| {
            let to = dev_account(&format!("user{}", (height * 13 + i * 7) % 40));
            let kind = TxKind::Call { contract: token, method: "transfer".into(), args: (to, 1 + height as u128).encode() };
            Transaction { sender: alice, nonce: first_nonce + i, kind, gas_limit: GAS }
        })
        .collect()
}

fn token() -> Address {
    contract_address(&dev_account("alice"), 0)
}

/// The child: commits blocks until killed, printing each committed height.
/// Run by hand (without the variable) it commits three blocks to a
/// temporary directory.
#[test]
#[ignore = "the child process of killed_while_committing_the_data_directory_holds_the_last_committed_block"]
fn child_commits_blocks_until_killed() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let (mut node, last) = match std::env::var_os(CHILD_DIR) {
        Some(dir) => (Node::open(Path::new(&dir)).expect("open the data directory"), u64::MAX),
        None => (Node::create(temporary.path()).expect("create"), 3),
    };
    if std::env::var_os(CHILD_SYNCS_BEHIND).is_some() {
        node.set_durability(Durability::SyncBehind);
    }
    while node.height() < last {
        let height = node.height() + 1;
        let committed = node.execute_block(&block(height), &BlockOptions::default()).expect("commit");
        assert!(committed.receipts.iter().all(|r| r.outcome == Outcome::Success), "block {height}");
        // What is on disk for good (the block itself unless it syncs behind).
        println!("committed {}", node.durable_height());
    }
}

/// Replays blocks 1..=height in memory and returns the state entries.
fn replayed_entries(replay: &mut (Vm, u64), height: u64) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let (vm, done) = replay;
    while *done < height {
        *done += 1;
        vm.execute_block(&block(*done), &BlockOptions::serial()).expect("replay");
    }
    vm.state().snapshot()
}

#[test]
fn killed_while_committing_the_data_directory_holds_the_last_committed_block() {
    const KILLS: usize = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    drop(Node::create(dir.path()).expect("create"));
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = Rng::new(0xdead);
    let mut replay = (Vm::new().expect("engine"), 0u64);
    let mut last_height = 0;
    let mut killed_between_blocks = 0;
    for kill in 0..KILLS {
        // Every other child syncs each block behind the next one.
        let behind = kill % 2 == 1;
        let mut command = Command::new(&exe);
        if behind {
            command.env(CHILD_SYNCS_BEHIND, "1");
        }
        let mut child = command
            .args(["crash::child_commits_blocks_until_killed", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        // Wait for the child's first commit, then let it run a random time.
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut heights = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The harness may print the test's name on the same line first.
                let reported = line.find("committed ").and_then(|at| line[at + "committed ".len()..].trim().parse::<u64>().ok());
                if let Some(h) = reported {
                    heights.push((Instant::now(), h));
                }
            }
            heights
        });
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(150 + rng.below(450)));
        child.kill().expect("SIGKILL");
        let killed_at = Instant::now();
        let status = child.wait().expect("wait");
        assert!(!status.success(), "kill {kill}: the child was killed, not finished");
        let printed = reader.join().expect("reader");
        let reported = printed.last().map_or(last_height, |(_, h)| *h);

        let node = Node::open(dir.path()).unwrap_or_else(|e| panic!("kill {kill}: the data directory does not open: {e}"));
        let height = node.height();
        // Every height the child reported is committed; at most one more
        // (committed, but killed before it could print) may be. A child
        // syncing behind reports the block before its last: two more.
        let unreported = if behind { 2 } else { 1 };
        assert!(height >= reported && height <= reported + unreported, "kill {kill}: height {height}, child reported {reported}");
        assert!(height >= last_height, "kill {kill}: committed blocks were lost");
        if height == reported {
            killed_between_blocks += 1;
        }
        let recomputed = node.db().recompute_state_hash().expect("recompute").root();
        assert_eq!(recomputed, node.root(), "kill {kill}: the stored root matches the stored entries");
        let entries = node.db().entries().expect("entries");
        assert_eq!(entries, replayed_entries(&mut replay, height), "kill {kill}: state at height {height} equals the replay");
        eprintln!(
            "kill {kill}{}: after {:?} (blocks {:?} to {reported} reported, the last {:?} before the kill) reopened at height {height}",
            if behind { " (syncing behind)" } else { "" },
            killed_at - started,
            printed.first().map(|(_, h)| *h),
            printed.last().map(|(t, _)| killed_at - *t),
        );
        last_height = height;
    }
    assert!(last_height > KILLS as u64, "the children made progress: height {last_height}");
    eprintln!("{KILLS} kills; {killed_between_blocks} landed where the reported height was the last committed one");
}
