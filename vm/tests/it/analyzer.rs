//! The analyzer against the VM's ground truth: for thousands of random calls
//! of every example contract (random methods, arguments, senders and states,
//! reverts included), the accesses the VM records must lie inside the
//! prediction made *before* the call from the analyzer's summaries and the
//! state at that moment. Also prints the precision: the share of calls whose
//! prediction is exactly the set of keys touched.

use std::collections::BTreeMap;

use chroma_analyzer::{analyze, PredictedAccess};
use chroma_host_api::{Address, Encode};
use chroma_vm::{AccessSet, Outcome};

use crate::support::{call_within_prediction, wasm, Chain, GAS};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn amount(&mut self) -> u128 {
        match self.below(6) {
            0 => 0,
            1 => u128::from(self.below(10)),
            2 => u128::from(self.below(1_000)),
            3 => u128::from(self.below(100_000)),
            4 => u128::MAX - u128::from(self.below(3)),
            _ => u128::from(self.next()),
        }
    }
}

const USERS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

struct Deployed {
    token_a: Address,
    token_b: Address,
    amm: Address,
    lending: Address,
    registry: Address,
    counter: Address,
}

fn setup(chain: &mut Chain) -> Deployed {
    let token_a = chain.deploy("alice", "token", ("AAA".to_string(), 1_000_000_000u128));
    let token_b = chain.deploy("alice", "token", ("BBB".to_string(), 1_000_000_000u128));
    let amm = chain.deploy("alice", "amm", (token_a, token_b));
    let lending = chain.deploy("alice", "lending", (token_a, 7_500u32));
    let registry = chain.deploy("alice", "registry", ());
    let counter = chain.deploy("alice", "counter", ());
    for user in USERS {
        let who = Chain::account(user);
        for token in [token_a, token_b] {
            chain.call("alice", token, "transfer", (who, 10_000_000u128));
            // Half the users approve finitely (the allowance is written back),
            // half without limit (it is not).
            let limit = if user.len() % 2 == 0 { 5_000_000u128 } else { u128::MAX };
            chain.call(user, token, "approve", (amm, limit));
            chain.call(user, token, "approve", (lending, limit));
        }
    }
    chain.call("alice", amm, "add_liquidity", (1_000_000u128, 2_000_000u128, 0u128));
    Deployed { token_a, token_b, amm, lending, registry, counter }
}

/// A random call: (contract, method, encoded args).
fn random_call(rng: &mut Rng, d: &Deployed) -> (Address, &'static str, Vec<u8>) {
    let user = |rng: &mut Rng| {
        if rng.below(8) == 0 {
            Address([rng.below(256) as u8; 32])
        } else {
            Chain::account(USERS[rng.below(USERS.len() as u64) as usize])
        }
    };
    let token = |rng: &mut Rng| match rng.below(10) {
        0 => Address([7; 32]),
        n if n % 2 == 0 => d.token_a,
        _ => d.token_b,
    };
    match rng.below(16) {
        0 => (token(rng), "transfer", (user(rng), rng.amount()).encode()),
        1 => (token(rng), "approve", (user(rng), rng.amount()).encode()),
        2 => (token(rng), "transfer_from", (user(rng), user(rng), rng.amount()).encode()),
        3 => (token(rng), "mint", (user(rng), rng.amount()).encode()),
        4 => (token(rng), "balance_of", (user(rng),).encode()),
        5 | 6 => (d.amm, "swap", (token(rng), rng.amount() % 100_000, rng.amount() % 1_000).encode()),
        7 => (d.amm, "add_liquidity", (rng.amount() % 100_000, rng.amount() % 100_000, 0u128).encode()),
        8 => (d.amm, "remove_liquidity", (rng.amount() % 10_000, 0u128, 0u128).encode()),
        9 => (d.amm, "collect_fees", ().encode()),
        10 => (d.lending, "deposit", (rng.amount() % 1_000_000,).encode()),
        11 => (d.lending, "borrow", (rng.amount() % 100_000,).encode()),
        12 => (d.lending, if rng.below(2) == 0 { "repay" } else { "withdraw" }, (rng.amount() % 100_000,).encode()),
        13 => {
            // Names of every length (each length is analysed by shape), a few
            // invalid ones, and some past the registry's 64 bytes and past
            // the 128-byte inputs analysed by shape.
            let names = ["alice", "bob", "x", "a-very-long-name.chroma", "UPPER", ""];
            let name = match rng.below(3) {
                0 => names[rng.below(names.len() as u64) as usize].to_string(),
                _ => {
                    let len = if rng.below(8) == 0 { 60 + rng.below(80) } else { 1 + rng.below(40) };
                    let chars = b"abcdefghijklmnopqrstuvwxyz0123456789-.";
                    (0..len).map(|_| if rng.below(50) == 0 { 'Z' } else { chars[rng.below(chars.len() as u64) as usize] as char }).collect()
                }
            };
            if rng.below(3) == 0 {
                (d.registry, "transfer", (name, user(rng)).encode())
            } else {
                (d.registry, "register", (name,).encode())
            }
        }
        14 if rng.below(2) == 0 => (d.counter, "increment", ().encode()),
        14 => (d.counter, "add", (rng.amount() % 1_000,).encode()),
        _ => (d.amm, "quote", (token(rng), rng.amount()).encode()),
    }
}

/// Whether `p` is exactly the keys accessed: a prediction lists the keys
/// it reads or adds to and does not write (a write allows both).
fn equals(p: &PredictedAccess, a: &AccessSet) -> bool {
    let same = |mut patterns: chroma_analyzer::Patterns<'_>, keys: &std::collections::BTreeSet<Vec<u8>>| {
        patterns.len() == keys.len() && patterns.all(|p| p.is_exact() && keys.contains(p.bytes()))
    };
    let unwritten = |keys: &std::collections::BTreeSet<Vec<u8>>| keys.difference(&a.writes).cloned().collect();
    !p.is_unbounded() && same(p.reads(), &unwritten(&a.reads)) && same(p.writes(), &a.writes) && same(p.adds(), &unwritten(&a.adds))
}

#[test]
fn predictions_cover_every_recorded_access() {
    let mut chain = Chain::new();
    let d = setup(&mut chain);
    // The predictions use the summaries the VM computed when the contracts
    // were deployed; they are the analyzer's for the committed Wasm.
    for (address, name) in [
        (d.token_a, "token"),
        (d.token_b, "token"),
        (d.amm, "amm"),
        (d.lending, "lending"),
        (d.registry, "registry"),
        (d.counter, "counter"),
    ] {
        let summary = chain.vm.contract(&address).expect("deployed").summary.clone();
        assert_eq!(*summary, analyze(&wasm(name)).expect("example contracts analyse"), "{name}: deploy-time summary");
    }

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // (calls, exact, succeeded) per method.
    let mut precision: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let calls = 3_000;
    for i in 0..calls {
        let (contract, method, args) = random_call(&mut rng, &d);
        let sender = USERS[rng.below(USERS.len() as u64) as usize];
        // Small gas limits now and then, to cut calls off midway.
        let gas = if rng.below(10) == 0 { 20_000 + rng.below(200_000) } else { GAS };
        let (predicted, receipt) = call_within_prediction(&mut chain, sender, contract, method, args, gas, &format!("call {i}"));
        let a = &receipt.accesses;
        let entry = precision.entry(method.to_string()).or_default();
        entry.0 += 1;
        entry.1 += u32::from(equals(&predicted, a));
        entry.2 += u32::from(receipt.outcome == Outcome::Success);
    }

    println!("prediction equals the accessed set (share of calls), {calls} random calls:");
    let (mut all, mut exact) = (0, 0);
    for (method, (n, e, ok)) in &precision {
        println!("  {method:<18} {e:>5}/{n:<5} exact  ({ok} succeeded)");
        all += n;
        exact += e;
    }
    println!("  {:<18} {exact:>5}/{all:<5} exact ({:.1}%)", "all", 100.0 * f64::from(exact) / f64::from(all));
}

/// A DeFi mix as a block of real users would send it: funded accounts,
/// finite approvals, valid tokens, amounts within balances, collateral in
/// the lending pool. Reverts are rare.
fn realistic_call(rng: &mut Rng, d: &Deployed) -> (Address, &'static str, Vec<u8>) {
    let other = Chain::account(USERS[rng.below(USERS.len() as u64) as usize]);
    let token = if rng.below(2) == 0 { d.token_a } else { d.token_b };
    let small = 1 + u128::from(rng.below(1_000));
    match rng.below(17) {
        // Names of many lengths: each is a shape of its own.
        16 => {
            let name: String = (0..3 + rng.below(30)).map(|_| (b'a' + rng.below(26) as u8) as char).collect();
            (d.registry, "register", (name,).encode())
        }
        0..=3 => (token, "transfer", (other, small).encode()),
        4..=6 => (d.amm, "swap", (token, small, 0u128).encode()),
        7 => (d.lending, "deposit", (small,).encode()),
        8 => (token, "approve", (d.amm, 5_000_000u128).encode()),
        9 => (d.counter, "add", (small,).encode()),
        10 => (token, "transfer_from", (Chain::account("alice"), other, small).encode()),
        11 | 12 => (d.lending, "borrow", (small,).encode()),
        13 => (d.lending, "repay", (1 + u128::from(rng.below(10)),).encode()),
        14 => (d.amm, "add_liquidity", (small * 10, small * 10, 0u128).encode()),
        _ => (d.amm, "remove_liquidity", (small, 0u128, 0u128).encode()),
    }
}

#[test]
fn precision_on_a_realistic_defi_mix() {
    let mut chain = Chain::new();
    let d = setup(&mut chain);
    for user in ["dave", "erin"] {
        // Collateral to borrow against, pool shares, and a finite allowance
        // from alice to spend with transfer_from.
        chain.call(user, d.lending, "deposit", (1_000_000u128,));
        chain.call(user, d.amm, "add_liquidity", (1_000_000u128, 2_000_000u128, 0u128));
        for token in [d.token_a, d.token_b] {
            chain.call("alice", token, "approve", (Chain::account(user), 1_000_000_000u128));
        }
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // (calls, exact, successful calls that were not exact) per method.
    let mut precision: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
    let calls = 1_000;
    let mut succeeded = 0;
    for _ in 0..calls {
        // Finitely-approving users only: their allowance is written back, as predicted.
        let sender = ["dave", "erin"][rng.below(2) as usize];
        let (contract, method, args) = realistic_call(&mut rng, &d);
        let (predicted, receipt) = call_within_prediction(&mut chain, sender, contract, method, args, GAS, "realistic mix");
        let a = &receipt.accesses;
        let success = receipt.outcome == Outcome::Success;
        succeeded += u32::from(success);
        let exact = equals(&predicted, a);
        let entry = precision.entry(method).or_default();
        entry.0 += 1;
        entry.1 += u32::from(exact);
        entry.2 += u32::from(success && !exact);
    }
    println!("realistic DeFi mix, {calls} calls ({succeeded} succeeded): prediction equals the accessed set");
    let (mut all, mut exact) = (0, 0);
    for (method, (n, e, _)) in &precision {
        println!("  {method:<16} {e:>4}/{n}  ({missed} successful calls not exact)", missed = precision[method].2);
        all += n;
        exact += e;
    }
    println!("  {:<16} {exact:>4}/{all} ({:.1}%)", "all", 100.0 * f64::from(exact) / f64::from(all));
    assert!(succeeded > calls * 9 / 10, "the mix is realistic: {succeeded}/{calls} succeed");
    // The targets: every successful token transfer, transfer_from
    // and approve, AMM swap (with the token transfers it calls) and lending
    // deposit, borrow and repay predicted exactly, and at least 99% of the
    // mix. (A call that reverts stops short of the accesses predicted for it.)
    // Adding and removing liquidity too: they call both tokens, whose
    // addresses the analysis must not join with the zero address of
    // `unwrap_or_default`.
    // Registering a name too: predicted from the entry analysed for the
    // name's length (`vm/src/shapes.rs`).
    for method in ["transfer", "transfer_from", "approve", "swap", "add_liquidity", "remove_liquidity", "deposit", "borrow", "repay", "register"] {
        let (n, _, missed) = precision.get(method).copied().unwrap_or_default();
        assert!(n > 0 && missed == 0, "{method}: {missed} of {n} successful calls not predicted exactly");
    }
    assert!(exact * 100 >= all * 99, "{exact}/{all} predicted exactly, below 99%");
}

/// A name is predicted exactly from the registry's `register` analysed for
/// the name's length, for up to `MAX_SHAPES_PER_ENTRY` lengths; a length
/// past those is predicted from the entry's general summary, wide but sound.
#[test]
fn names_are_exact_per_length_up_to_the_bound_on_shapes() {
    use chroma_vm::{dev_account, PredictionEnv, MAX_SHAPES_PER_ENTRY};
    let mut chain = Chain::new();
    let registry = chain.deploy("alice", "registry", ());
    let state = chain.vm.state().clone();
    let env = PredictionEnv::new(chain.vm.runtime(), state.as_ref());
    let sender = dev_account("alice");
    let predict = |n: usize| chroma_analyzer::predict(&env, &sender, &registry, "register", &("a".repeat(n),).encode());
    let exact = |p: &PredictedAccess| !p.is_unbounded() && p.patterns().all(|k| k.is_exact());
    for n in 1..=MAX_SHAPES_PER_ENTRY {
        let p = predict(n);
        assert!(exact(&p) && p.writes().len() == 1 && p.writes().get(0).is_some_and(|w| w.bytes().ends_with("a".repeat(n).as_bytes())), "a name of {n} bytes: {p:?}");
    }
    let past = predict(MAX_SHAPES_PER_ENTRY + 1);
    assert!(!exact(&past), "past the bound, the general summary: {past:?}");
    // The shapes analysed before stay exact.
    assert!(exact(&predict(7)));
}
