//! The `chroma` binary as a user runs it: a chain in a temporary data
//! directory, commands in separate processes.

use std::path::Path;
use std::process::{Command, Output};

fn chroma(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chroma"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("the chroma binary runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = chroma(dir, args);
    assert!(out.status.success(), "chroma {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> (String, String) {
    let out = chroma(dir, args);
    assert!(!out.status.success(), "chroma {args:?} succeeded");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(dir, &all)).expect("valid JSON")
}

#[test]
fn deploy_call_query_across_processes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let init = json(dir, &["init"]);
    assert_eq!(init["height"], 0);
    let deployed = json(dir, &["deploy", "example:token", "--arg", "symbol=TOK", "--arg", "supply=1000", "--name", "tok"]);
    assert_eq!(deployed["success"], true);
    assert_eq!(deployed["block"], 1);

    let transfer = json(dir, &["call", "tok", "transfer", "--arg", "to=bob", "--arg", "amount=250"]);
    assert_eq!(transfer["success"], true);
    assert_eq!(transfer["events"][0]["name"], "Transfer");
    assert_eq!(json(dir, &["query", "tok", "balance_of", "--arg", "owner=bob"])["returns"], 250);
    assert_eq!(json(dir, &["query", "tok", "symbol"])["returns"], "TOK");

    // The pool takes a tuple return and addresses by label.
    json(dir, &["deploy", "example:token", "--arg", "symbol=BBB", "--arg", "supply=1000", "--name", "bbb"]);
    json(dir, &["deploy", "example:amm", "--arg", "token_a=tok", "--arg", "token_b=bbb", "--name", "pool"]);
    assert_eq!(json(dir, &["query", "pool", "tokens"])["returns"][0], deployed["deployed"]);

    let state = json(dir, &["state"]);
    assert_eq!(state["height"], 4);
    assert_eq!(state["contracts"].as_array().map(Vec::len), Some(3));
    let alice = state["accounts"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "alice")).cloned();
    assert_eq!(alice.map(|a| a["nonce"].clone()), Some(serde_json::json!(4)));
    // Text output for people.
    let text = ok(dir, &["query", "tok", "balance_of", "--arg", "owner=alice"]);
    assert!(text.contains("returns   750"), "{text}");
}

#[test]
fn failed_transactions_print_the_receipt_and_exit_nonzero() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(dir, &["init"]);
    ok(dir, &["deploy", "example:token", "--arg", "symbol=TOK", "--arg", "supply=10", "--name", "tok"]);
    let (stdout, _) = fails(dir, &["call", "tok", "transfer", "--from", "bob", "--arg", "to=alice", "--arg", "amount=1"]);
    assert!(stdout.contains("reverted: insufficient balance: 0 available, 1 requested"), "{stdout}");
    let (stdout, _) = fails(dir, &["call", "tok", "transfer", "--arg", "to=bob", "--arg", "amount=1", "--gas", "2000"]);
    assert!(stdout.contains("out of gas"), "{stdout}");
    // Both committed as blocks: bob's and alice's nonces moved.
    let state = json(dir, &["state"]);
    assert_eq!(state["height"], 3);
}

#[test]
fn bad_input_is_a_clear_error_without_a_transaction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (_, err) = fails(dir, &["state"]);
    assert!(err.contains("no chain at") && err.contains("chroma init"), "{err}");
    ok(dir, &["init"]);
    let (_, err) = fails(dir, &["init"]);
    assert!(err.contains("already exists"), "{err}");
    ok(dir, &["deploy", "example:token", "--arg", "symbol=TOK", "--arg", "supply=10", "--name", "tok"]);
    let cases: &[(&[&str], &str)] = &[
        (&["call", "tok", "transfer", "--arg", "to=bob"], "missing --arg amount=<u128>"),
        (&["call", "tok", "transfer", "--arg", "to=zed", "--arg", "amount=1"], "not an account name"),
        (&["call", "tok", "transfer", "--arg", "to=bob", "--arg", "amount=-1"], "cannot read \"-1\" as u128"),
        (&["call", "tok", "transfer", "--arg", "to=bob", "--arg", "amount=1", "--arg", "memo=hi"], "has no argument \"memo\""),
        (&["call", "tok", "transfr"], "has no method \"transfr\""),
        (&["call", "tok", "init", "--arg", "symbol=X", "--arg", "supply=1"], "has no method \"init\""),
        (&["call", "nothing", "transfer"], "unknown contract \"nothing\""),
        (&["call", "tok", "transfer", "--from", "mallory", "--arg", "to=bob", "--arg", "amount=1"], "unknown account \"mallory\""),
        (&["deploy", "example:nope"], "no example contract"),
        (&["deploy", "/nonexistent.wasm"], "cannot read"),
        (&["deploy", "example:token", "--arg", "symbol=T", "--arg", "supply=1", "--name", "tok"], "already in the keyring"),
    ];
    for (args, expected) in cases {
        let (_, err) = fails(dir, args);
        assert!(err.contains(expected), "chroma {args:?}: expected {expected:?} in {err:?}");
        assert!(!err.contains("panicked"), "chroma {args:?} panicked: {err}");
    }
    // None of those reached the chain.
    assert_eq!(json(dir, &["state"])["height"], 1);
}

#[test]
fn corrupted_data_directories_are_clear_errors_and_are_not_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(dir, &["init"]);
    ok(dir, &["deploy", "example:counter", "--name", "c"]);
    let db = dir.join("chroma.redb");
    let keyring = dir.join("keyring.json");

    // A damaged keyring: named, not replaced.
    std::fs::write(&keyring, "{ not json").expect("write");
    for args in [&["state"][..], &["call", "c", "increment"][..]] {
        let (_, err) = fails(dir, args);
        assert!(err.contains("keyring") && err.contains("corrupted"), "chroma {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&keyring).expect("read"), "{ not json", "left as it was");

    // A damaged database: the same.
    let garbage = b"this is not a redb database, but it is where one should be".repeat(100);
    std::fs::write(&db, &garbage).expect("write");
    std::fs::write(&keyring, r#"{"accounts": ["alice"], "contracts": {}}"#).expect("write");
    for args in [&["state"][..], &["call", "c", "increment"][..], &["init"][..]] {
        let (_, err) = fails(dir, args);
        assert!(err.contains("corrupted") || err.contains("already exists"), "chroma {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(std::fs::read(&db).expect("read"), garbage, "a failed command never rewrites the database");

    // A database cut short (a disk that filled up, a bad copy).
    let tmp2 = tempfile::tempdir().expect("tempdir");
    ok(tmp2.path(), &["init"]);
    let db2 = tmp2.path().join("chroma.redb");
    let bytes = std::fs::read(&db2).expect("read");
    std::fs::write(&db2, &bytes[..bytes.len() / 3]).expect("truncate");
    let (_, err) = fails(tmp2.path(), &["state"]);
    assert!(!err.contains("panicked") && err.starts_with("error"), "{err}");
}

#[test]
fn a_module_that_is_not_a_contract_is_refused_and_nothing_is_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(dir, &["init"]);
    let bogus = dir.join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm\x01\0\0\0garbage").expect("write");
    let (_, err) = fails(dir, &["deploy", bogus.to_str().expect("utf-8 path")]);
    assert!(err.contains("cannot be deployed") && err.contains("invalid or disallowed Wasm"), "{err}");
    assert_eq!(json(dir, &["state"])["height"], 0);
}

#[test]
fn accounts_and_abi() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(dir, &["init"]);
    let added = json(dir, &["account", "new", "zed"]);
    assert_eq!(added["name"], "zed");
    let (_, err) = fails(dir, &["account", "new", "zed"]);
    assert!(err.contains("already in the keyring"), "{err}");
    assert_eq!(json(dir, &["account", "list"]).as_array().map(Vec::len), Some(6));
    let abi = json(dir, &["abi", "example:amm"]);
    let swap = abi["methods"].as_array().and_then(|m| m.iter().find(|x| x["name"] == "swap")).cloned().expect("swap");
    assert_eq!(swap["returns"], "u128");
    assert_eq!(swap["args"][0]["type"], "Address");
}

#[test]
fn the_demo_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dot = tmp.path().join("block.dot");
    let html = tmp.path().join("block.html");
    let dot_arg = dot.to_string_lossy().into_owned();
    let html_arg = html.to_string_lossy().into_owned();
    let out = ok(tmp.path(), &["demo", "--txs", "300", "--users", "60", "--dot", &dot_arg, "--html", &html_arg]);
    assert!(out.contains("all receipts and the state root also equal serial execution"), "{out}");
    assert!(out.contains("The last of the 3 blocks, a defi-mix block: 300 transactions"), "{out}");
    assert!(out.contains("hottest keys"), "{out}");
    let graph = std::fs::read_to_string(&dot).expect("the DOT file");
    assert!(graph.starts_with("digraph block {") && graph.contains("t0 [label=\"#0 "), "{graph}");
    let page = std::fs::read_to_string(&html).expect("the HTML file");
    assert!(page.contains("<svg") && page.contains("Hottest keys"));

    let report = json(tmp.path(), &["demo", "--txs", "200", "--users", "40", "--threads", "2", "--strategy", "barrier", "--blocks", "2"]);
    assert_eq!(report["matches_serial"], true);
    let blocks = report["blocks"].as_array().expect("a list of blocks");
    assert_eq!(blocks.len(), 2);
    for block in blocks {
        assert_eq!(block["transactions"], 200);
        assert_eq!(block["matches_serial"], true);
        assert!(block["planning_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{block}");
    }
    assert_eq!(report["report"]["transactions"], 200);
    assert_eq!(report["report"]["strategy"], "barrier");
    let sizes: u64 = report["report"]["group_sizes"].as_array().expect("sizes").iter().filter_map(|s| s.as_u64()).sum();
    assert_eq!(sizes, 200, "every transaction is in one group");

    let (_, err) = fails(tmp.path(), &["demo", "--workload", "nonsense"]);
    assert!(err.contains("unknown workload \"nonsense\""), "{err}");
    let (_, err) = fails(tmp.path(), &["demo", "--threads", "0"]);
    assert!(err.contains("--threads"), "{err}");
    let (_, err) = fails(tmp.path(), &["demo", "--blocks", "0"]);
    assert!(err.contains("--blocks"), "{err}");
}

#[test]
fn block_run_executes_a_block_file_in_parallel() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    ok(dir, &["init"]);
    let file = dir.join("block.json");
    let block = serde_json::json!([
        {"from": "alice", "deploy": "example:token", "args": {"symbol": "TOK", "supply": 1000000}, "name": "tok"},
        {"from": "alice", "call": "tok", "method": "transfer", "args": {"to": "bob", "amount": 500}},
        {"from": "alice", "call": "tok", "method": "transfer", "args": {"to": "carol", "amount": 300}},
        {"from": "bob", "call": "tok", "method": "transfer", "args": {"to": "dave", "amount": 100}},
        {"from": "carol", "call": "tok", "method": "transfer", "args": {"to": "eve", "amount": 100}},
        {"from": "dave", "call": "tok", "method": "balance_of", "args": {"owner": "dave"}}
    ]);
    std::fs::write(&file, block.to_string()).expect("write the block");
    let path = file.to_string_lossy().into_owned();
    let run = json(dir, &["block", "run", &path, "--threads", "2"]);
    assert_eq!(run["block"], 1);
    assert_eq!(run["receipts"].as_array().map(Vec::len), Some(6));
    assert!(run["receipts"].as_array().expect("receipts").iter().all(|r| r["outcome"] == "success"), "{run}");
    assert_eq!(run["report"]["plans"], 1, "the deploy runs alone, the calls after it are planned together");
    // The deploy; alice to bob; alice to carol with bob to dave; carol to eve with dave reading.
    assert_eq!(run["report"]["group_sizes"], serde_json::json!([1, 1, 2, 2]));
    assert_eq!(json(dir, &["query", "tok", "balance_of", "--arg", "owner=dave"])["returns"], 100);
    assert_eq!(json(dir, &["query", "tok", "balance_of", "--arg", "owner=bob"])["returns"], 400);
    // Serial gives the same next block from the same state (the nonces continue).
    let again = serde_json::json!([{"from": "bob", "call": "tok", "method": "transfer", "args": {"to": "eve", "amount": 1}}]);
    std::fs::write(&file, again.to_string()).expect("write the block");
    let text = ok(dir, &["block", "run", &path, "--serial"]);
    assert!(text.contains("executed serial"), "{text}");

    // Bad block files: a clear message, a failure status, no block.
    for (contents, message) in [
        ("not json", "is not valid JSON"),
        ("[]", "the block has no transactions"),
        ("[{\"from\": \"alice\"}]", "give either \"call\""),
        ("[{\"from\": \"mallory\", \"call\": \"tok\", \"method\": \"transfer\"}]", "unknown account \"mallory\""),
        ("[{\"call\": \"tok\", \"method\": \"steal\"}]", "has no method \"steal\""),
        ("[{\"call\": \"tok\", \"method\": \"transfer\", \"args\": {\"to\": \"bob\"}}]", "missing --arg amount"),
        ("[{\"call\": \"tok\", \"method\": \"transfer\", \"colour\": 1}]", "unknown field \"colour\""),
    ] {
        std::fs::write(&file, contents).expect("write the block");
        let (_, err) = fails(dir, &["block", "run", &path]);
        assert!(err.contains(message), "{contents}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(json(dir, &["state"])["height"], 2);
    let (_, err) = fails(dir, &["block", "run", "/nonexistent/block.json"]);
    assert!(err.contains("cannot read /nonexistent/block.json"), "{err}");
}

#[test]
fn analyze_a_file_an_example_and_a_deployed_contract() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let text = ok(dir, &["analyze", "example:token"]);
    assert!(text.contains("transfer (mutating):\n    read slot3[caller]\n    write slot3[caller]\n    add slot3[arg.to]"), "{text}");
    let parsed = json(dir, &["analyze", "example:counter"]);
    assert_eq!(parsed["entries"]["add"]["adds"][0], "slot0");
    ok(dir, &["init"]);
    ok(dir, &["deploy", "example:token", "--arg", "symbol=TOK", "--arg", "supply=1000", "--name", "tok"]);
    let deployed = ok(dir, &["analyze", "tok"]);
    assert!(deployed.contains("add slot3[arg.to]"), "{deployed}");
    let (_, err) = fails(dir, &["analyze", "nothing-here"]);
    assert!(err.contains("unknown contract \"nothing-here\""), "{err}");
}
