//! # chroma-vm
//!
//! Chroma's execution engine:
//! - [`gatekeeper`]: deploy-time validation of contract modules;
//! - [`engine`]: the deterministic, fuel-metered wasmtime configuration;
//! - `imports`: the host functions defined in `chroma_host_api::host`;
//! - [`instrument`]: write tracking, so an instance is reset and reused;
//! - [`state`]: committed state and the per-transaction journal;
//! - [`runtime`]: calls, transactions, deploys ([`Vm`]);
//! - [`store`], [`root`], [`node`]: the on-disk state, its root, and a
//!   persistent chain that commits blocks ([`Node`]).

pub mod address;
pub mod block;
pub mod engine;
pub mod floor;
pub mod root;
pub mod gatekeeper;
mod imports;
pub mod instrument;
pub mod runtime;
mod reuse;
mod shapes;
pub mod stack;
pub mod state;
pub mod store;
pub mod node;
pub mod prediction;
pub mod tx;

pub use address::{contract_address, dev_account};
pub use block::{AccessPredictor, AnalyzerPredictor, BlockExecution, BlockOptions, BlockReport, ContractShare};
pub use chroma_analyzer::{ExecutionPlan, Strategy};
pub use node::{CommittedBlock, Durability, Node, NodeConfig, NodeError, DB_CACHE_BYTES};
pub use prediction::{EnvParts, PredictionEnv};
pub use shapes::{ShapeAnalysisTime, ShapedAnalysis, MAX_SHAPED_ANALYSES, MAX_SHAPES_PER_ENTRY};
pub use runtime::{nonce_key, Contract, Runtime, Vm, VmError};
pub use stack::on_execution_thread;
pub use state::{AccessSet, StateError, StateOverlay, StateRead, TxWrites, WriteOp};
pub use tx::{Event, Outcome, Receipt, Transaction, TxKind};
