//! Transactions, receipts and events.

use std::fmt;

use chroma_host_api::Address;

use crate::state::AccessSet;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxKind {
    /// Deploys `code`, running its init method with `init_args` (encoded).
    Deploy { code: Vec<u8>, init_args: Vec<u8> },
    /// Calls `method` of `contract` with encoded `args`.
    Call { contract: Address, method: String, args: Vec<u8> },
}

/// A signed-for (in this dev VM: named-for) unit of work from an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub sender: Address,
    /// Must equal the sender's current nonce; a transaction that executes
    /// (whatever its outcome) increments it.
    pub nonce: u64,
    pub kind: TxKind,
    pub gas_limit: u64,
}

/// An event emitted by a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub contract: Address,
    pub name: String,
    pub data: Vec<u8>,
}

/// How a transaction ended. Every failure discards all the transaction's
/// writes and events, including those of the contracts it called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The contract reverted (or panicked) with this message.
    Reverted(String),
    /// Gas ran out.
    OutOfGas,
    /// A Wasm trap or a host function error, described.
    Trapped(String),
    /// The arguments do not match the method's ABI.
    BadInput(String),
    NoSuchContract(Address),
    NoSuchMethod(String),
    /// The transaction's nonce is not the sender's next nonce; it did not execute.
    InvalidNonce { expected: u64, found: u64 },
    /// The transaction's gas limit is above `max` ([`gas::MAX_TX_GAS`](chroma_host_api::gas::MAX_TX_GAS)); it did not execute.
    GasLimitTooHigh { limit: u64, max: u64 },
    /// A deploy's module was refused by the gatekeeper.
    InvalidModule(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Reverted(m) => write!(f, "reverted: {m}"),
            Outcome::OutOfGas => f.write_str("out of gas"),
            Outcome::Trapped(m) => write!(f, "trapped: {m}"),
            Outcome::BadInput(m) => write!(f, "bad input: {m}"),
            Outcome::NoSuchContract(a) => write!(f, "no contract at {a}"),
            Outcome::NoSuchMethod(m) => write!(f, "no method `{m}`"),
            Outcome::InvalidNonce { expected, found } => write!(f, "invalid nonce {found} (expected {expected})"),
            Outcome::GasLimitTooHigh { limit, max } => write!(f, "gas limit {limit} exceeds the maximum {max}"),
            Outcome::InvalidModule(m) => write!(f, "invalid module: {m}"),
        }
    }
}

/// The result of executing a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub outcome: Outcome,
    pub gas_used: u64,
    /// The encoded return value on success.
    pub return_data: Vec<u8>,
    /// Events, in emission order; empty unless the transaction succeeded.
    pub events: Vec<Event>,
    /// For a successful deploy, the new contract's address.
    pub deployed: Option<Address>,
    /// Every state key the transaction read, wrote or added to, including in
    /// calls that failed: the ground truth the analyzer is checked against.
    /// Empty when the runtime does not record them (a node does not; see
    /// `Runtime::set_recording_accesses`). Not part of the stored receipt.
    pub accesses: AccessSet,
}

use chroma_host_api::codec::{encode_bytes, Encode, Writer};

/// The canonical encoding of a transaction (as stored in blocks).
impl Encode for Transaction {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        self.sender.encode_to(out);
        self.nonce.encode_to(out);
        self.gas_limit.encode_to(out);
        match &self.kind {
            TxKind::Deploy { code, init_args } => {
                0u8.encode_to(out);
                blake3::hash(code).as_bytes().encode_to(out);
                encode_bytes(init_args, out);
            }
            TxKind::Call { contract, method, args } => {
                1u8.encode_to(out);
                contract.encode_to(out);
                method.encode_to(out);
                encode_bytes(args, out);
            }
        }
    }
}

/// The canonical encoding of a receipt (as stored): outcome, gas, return
/// value, events, deployed address. Access sets are not stored.
impl Encode for Receipt {
    fn encode_to<W: Writer + ?Sized>(&self, out: &mut W) {
        self.outcome.to_string().encode_to(out);
        self.gas_used.encode_to(out);
        encode_bytes(&self.return_data, out);
        (self.events.len() as u32).encode_to(out);
        for event in &self.events {
            event.contract.encode_to(out);
            event.name.encode_to(out);
            encode_bytes(&event.data, out);
        }
        self.deployed.encode_to(out);
    }
}
