//! # chroma-workloads
//!
//! Deterministic DeFi blocks over the example contracts, for `chroma demo`,
//! the parallel-execution tests and the benchmarks. A [`World`] is a set of
//! deployed contracts and funded users, described as plain data: its set-up
//! blocks (deploys, funding, approvals, liquidity) and then blocks of a
//! [`Workload`], all generated from a seed, with the nonces each
//! transaction needs. Contract addresses follow from the deployer and its
//! nonce, so no execution is needed to generate blocks.
//!
//! Also holds the example contracts' committed Wasm ([`examples`]).

pub mod examples;
mod rng;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chroma_host_api::{Address, Encode};
use chroma_vm::{contract_address, dev_account, Transaction, TxKind};

pub use rng::{Rng, Zipf};

/// Gas limit of generated transactions.
pub const GAS: u64 = 10_000_000;

/// Each token's supply, all minted to the deployer.
const SUPPLY: u128 = 1_000_000_000_000_000_000_000_000;
/// What each user receives of the tokens it uses.
const USER_FUNDS: u128 = 1_000_000_000_000;
/// Each side of each pool's initial liquidity.
const POOL_LIQUIDITY: u128 = 1_000_000_000_000_000;
/// Each user's initial deposit in the lending market.
const USER_DEPOSIT: u128 = 1_000_000_000;
/// Basis points of a deposit that may be borrowed.
const COLLATERAL_FACTOR_BPS: u32 = 7_500;

/// What a block is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// Token transfers between users chosen uniformly.
    Transfers,
    /// Token transfers with Zipf-skewed (s = 1) senders and receivers.
    TransfersZipf,
    /// AMM swaps, each user on its own pool, moving real token balances.
    Swaps,
    /// Deposits, borrows and repays on one lending market.
    Lending,
    /// 60% transfers, 25% swaps, 10% lending, 5% registry and counter; Zipf users.
    DefiMix,
    /// Every transaction increments one counter: nothing can run in parallel.
    Chain,
}

impl Workload {
    pub const ALL: [Workload; 6] =
        [Workload::Transfers, Workload::TransfersZipf, Workload::Swaps, Workload::Lending, Workload::DefiMix, Workload::Chain];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Transfers => "transfers",
            Workload::TransfersZipf => "transfers-zipf",
            Workload::Swaps => "swaps",
            Workload::Lending => "lending",
            Workload::DefiMix => "defi-mix",
            Workload::Chain => "chain",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload {s:?}; workloads: {}", names.join(", "))
        })
    }
}

/// The size of a world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldConfig {
    pub users: usize,
    /// AMM pools, each over its own pair of tokens.
    pub pools: usize,
    pub seed: u64,
    /// Share of generated transactions, in per mille, made to fail in one of
    /// the ways a chain sees (reverts, out of gas, bad input, wrong nonce,
    /// missing contract or method).
    pub failures_per_mille: u32,
    /// Share of generated transactions, in per mille, that call a view
    /// (a balance, the counter, the market's totals, a pool's reserves): its
    /// return value shows exactly what state the transaction saw.
    pub observations_per_mille: u32,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig { users: 1_000, pools: 4, seed: 1, failures_per_mille: 0, observations_per_mille: 0 }
    }
}

/// An AMM pool and its two tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub address: Address,
    pub token_a: Address,
    pub token_b: Address,
}

/// The example contracts deployed and in use, as the generator knows them.
pub struct World {
    pub config: WorldConfig,
    pub deployer: Address,
    pub users: Vec<Address>,
    /// The token users transfer and lend.
    pub usd: Address,
    pub pools: Vec<Pool>,
    pub market: Address,
    pub registry: Address,
    pub counter: Address,
    /// A readable name for every account and contract.
    pub labels: BTreeMap<Address, String>,
    nonces: BTreeMap<Address, u64>,
    /// What each user has borrowed, as far as the generator knows.
    debts: BTreeMap<Address, u128>,
    names_registered: u64,
    rng: Rng,
    zipf: Zipf,
}

impl World {
    /// A world and the blocks that set it up on an empty chain, in order.
    pub fn new(config: WorldConfig) -> (World, Vec<Vec<Transaction>>) {
        let config = WorldConfig { users: config.users.max(2), pools: config.pools.max(1), ..config };
        let deployer = dev_account("alice");
        let users: Vec<Address> = (0..config.users).map(|u| dev_account(&format!("user{u}"))).collect();
        let mut world = World {
            config,
            deployer,
            users: users.clone(),
            usd: Address::ZERO,
            pools: Vec::new(),
            market: Address::ZERO,
            registry: Address::ZERO,
            counter: Address::ZERO,
            labels: BTreeMap::new(),
            nonces: BTreeMap::new(),
            debts: BTreeMap::new(),
            names_registered: 0,
            rng: Rng::new(config.seed),
            zipf: Zipf::new(config.users),
        };
        world.labels.insert(deployer, "alice".into());
        for (u, user) in users.iter().enumerate() {
            world.labels.insert(*user, format!("user{u}"));
        }

        let mut deploys = Vec::new();
        let mut deploy = |world: &mut World, label: String, code: &[u8], init_args: Vec<u8>| {
            let nonce = world.next_nonce(deployer);
            let address = contract_address(&deployer, nonce);
            world.labels.insert(address, label);
            let kind = TxKind::Deploy { code: code.to_vec(), init_args };
            deploys.push(Transaction { sender: deployer, nonce, kind, gas_limit: GAS });
            address
        };
        world.usd = deploy(&mut world, "USD".into(), examples::TOKEN, ("USD".to_string(), SUPPLY).encode());
        for p in 0..config.pools {
            let token_a = deploy(&mut world, format!("A{p}"), examples::TOKEN, (format!("A{p}"), SUPPLY).encode());
            let token_b = deploy(&mut world, format!("B{p}"), examples::TOKEN, (format!("B{p}"), SUPPLY).encode());
            let address = deploy(&mut world, format!("pool{p}"), examples::AMM, (token_a, token_b).encode());
            world.pools.push(Pool { address, token_a, token_b });
        }
        let market_args = (world.usd, COLLATERAL_FACTOR_BPS).encode();
        world.market = deploy(&mut world, "market".into(), examples::LENDING, market_args);
        world.registry = deploy(&mut world, "registry".into(), examples::REGISTRY, ().encode());
        world.counter = deploy(&mut world, "counter".into(), examples::COUNTER, ().encode());

        let mut funding = Vec::new();
        for pool in world.pools.clone() {
            for token in [pool.token_a, pool.token_b] {
                funding.push(world.call(deployer, token, "approve", (pool.address, u128::MAX).encode()));
            }
            funding.push(world.call(deployer, pool.address, "add_liquidity", (POOL_LIQUIDITY, POOL_LIQUIDITY, 0u128).encode()));
        }
        for (u, user) in users.iter().enumerate() {
            let pool = world.pools[u % world.pools.len()];
            for token in [world.usd, pool.token_a, pool.token_b] {
                funding.push(world.call(deployer, token, "transfer", (*user, USER_FUNDS).encode()));
            }
        }

        let mut approvals = Vec::new();
        for (u, user) in users.iter().enumerate() {
            let pool = world.pools[u % world.pools.len()];
            for token in [pool.token_a, pool.token_b] {
                approvals.push(world.call(*user, token, "approve", (pool.address, u128::MAX).encode()));
            }
            approvals.push(world.call(*user, world.usd, "approve", (world.market, u128::MAX).encode()));
            approvals.push(world.call(*user, world.market, "deposit", (USER_DEPOSIT,).encode()));
        }
        (world, vec![deploys, funding, approvals])
    }

    fn next_nonce(&mut self, sender: Address) -> u64 {
        let nonce = self.nonces.entry(sender).or_insert(0);
        *nonce += 1;
        *nonce - 1
    }

    /// A call from `sender` with its next nonce (as if every earlier
    /// generated transaction executed).
    pub fn call(&mut self, sender: Address, contract: Address, method: &str, args: Vec<u8>) -> Transaction {
        let nonce = self.next_nonce(sender);
        Transaction { sender, nonce, kind: TxKind::Call { contract, method: method.into(), args }, gas_limit: GAS }
    }

    /// The name of an account or contract of this world.
    pub fn label(&self, address: &Address) -> Option<&str> {
        self.labels.get(address).map(String::as_str)
    }

    fn user(&mut self, skewed: bool) -> usize {
        if skewed {
            self.zipf.sample(&mut self.rng)
        } else {
            self.rng.below(self.users.len() as u64) as usize
        }
    }

    fn pick(&mut self, skewed: bool) -> Address {
        let u = self.user(skewed);
        self.users[u]
    }

    /// A block of `size` transactions of `workload`.
    pub fn block(&mut self, workload: Workload, size: usize) -> Vec<Transaction> {
        (0..size).map(|_| self.transaction(workload)).collect()
    }

    fn transaction(&mut self, workload: Workload) -> Transaction {
        if self.config.failures_per_mille > 0 && self.rng.below(1000) < u64::from(self.config.failures_per_mille) {
            return self.failing(workload);
        }
        if self.config.observations_per_mille > 0 && self.rng.below(1000) < u64::from(self.config.observations_per_mille) {
            return self.observation();
        }
        match workload {
            Workload::Transfers => self.transfer(false),
            Workload::TransfersZipf => self.transfer(true),
            Workload::Swaps => self.swap(false),
            Workload::Lending => self.lending(false),
            Workload::Chain => {
                let user = self.pick(false);
                self.call(user, self.counter, "increment", ().encode())
            }
            Workload::DefiMix => match self.rng.below(100) {
                0..60 => self.transfer(true),
                60..85 => self.swap(true),
                85..95 => self.lending(true),
                _ => self.registry_or_counter(),
            },
        }
    }

    fn transfer(&mut self, skewed: bool) -> Transaction {
        let from = self.user(skewed);
        let mut to = self.user(skewed);
        if to == from {
            to = (from + 1) % self.users.len();
        }
        let amount = 1 + u128::from(self.rng.below(1_000));
        self.call(self.users[from], self.usd, "transfer", (self.users[to], amount).encode())
    }

    fn swap(&mut self, skewed: bool) -> Transaction {
        let u = self.user(skewed);
        let pool = self.pools[u % self.pools.len()];
        let token_in = if self.rng.below(2) == 0 { pool.token_a } else { pool.token_b };
        let amount_in = 1_000 + u128::from(self.rng.below(1_000_000));
        self.call(self.users[u], pool.address, "swap", (token_in, amount_in, 1u128).encode())
    }

    fn lending(&mut self, skewed: bool) -> Transaction {
        let user = self.pick(skewed);
        let debt = self.debts.get(&user).copied().unwrap_or(0);
        let amount = 1_000 + u128::from(self.rng.below(100_000));
        match self.rng.below(100) {
            0..40 => self.call(user, self.market, "deposit", (amount,).encode()),
            40..75 => {
                *self.debts.entry(user).or_insert(0) += amount;
                self.call(user, self.market, "borrow", (amount,).encode())
            }
            _ if debt > 0 => {
                let repaid = 1 + self.rng.below(u64::try_from(debt).unwrap_or(u64::MAX)) as u128;
                self.debts.insert(user, debt - repaid);
                self.call(user, self.market, "repay", (repaid,).encode())
            }
            _ => self.call(user, self.market, "deposit", (amount,).encode()),
        }
    }

    fn registry_or_counter(&mut self) -> Transaction {
        let user = self.pick(true);
        match self.rng.below(3) {
            0 => {
                self.names_registered += 1;
                let name = format!("name-{}-{}", self.config.seed, self.names_registered);
                self.call(user, self.registry, "register", (name,).encode())
            }
            1 => {
                let amount = 1 + u128::from(self.rng.below(100));
                self.call(user, self.counter, "add", (amount,).encode())
            }
            _ => self.call(user, self.counter, "increment", ().encode()),
        }
    }

    /// A transaction calling a view of state other transactions change.
    fn observation(&mut self) -> Transaction {
        let user = self.pick(true);
        let observed = self.pick(true);
        let pool = self.pools[self.rng.below(self.pools.len() as u64) as usize];
        match self.rng.below(4) {
            0 => self.call(user, self.usd, "balance_of", (observed,).encode()),
            1 => self.call(user, self.counter, "get", ().encode()),
            2 => self.call(user, self.market, "totals", ().encode()),
            _ => self.call(user, pool.address, "reserves", ().encode()),
        }
    }

    /// A transaction that fails, in one of the ways transactions fail.
    fn failing(&mut self, workload: Workload) -> Transaction {
        let user = self.pick(workload == Workload::DefiMix);
        let pool = self.pools[self.rng.below(self.pools.len() as u64) as usize];
        match self.rng.below(9) {
            // More than the balance: the token reverts.
            0 => self.call(user, self.usd, "transfer", (self.deployer, u128::MAX / 3).encode()),
            // A swap whose slippage bound cannot be met: reverts after the pool read its reserves.
            1 => self.call(user, pool.address, "swap", (pool.token_a, 1_000u128, u128::MAX).encode()),
            // Out of gas half-way (a nested call may already have written).
            2 => {
                let mut tx = self.call(user, self.market, "deposit", (1_000u128,).encode());
                tx.gas_limit = 20_000 + self.rng.below(60_000);
                tx
            }
            // Borrowing far beyond the collateral.
            3 => self.call(user, self.market, "borrow", (u128::MAX / 5,).encode()),
            // A name that is taken (or registered twice in this block).
            4 => {
                let name = format!("name-{}-{}", self.config.seed, self.names_registered.max(1));
                self.call(user, self.registry, "register", (name,).encode())
            }
            // Arguments that do not match the method.
            5 => self.call(user, self.usd, "transfer", vec![1, 2, 3]),
            6 => self.call(user, self.counter, "no_such_method", ().encode()),
            7 => self.call(user, Address([0xEE; 32]), "transfer", (user, 1u128).encode()),
            // A nonce from the future: rejected before running, the sender's nonce stays.
            _ => {
                let nonce = self.nonces.get(&user).copied().unwrap_or(0) + 5;
                Transaction { sender: user, nonce, kind: TxKind::Call { contract: self.counter, method: "add".into(), args: (1u128,).encode() }, gas_limit: GAS }
            }
        }
    }
}
