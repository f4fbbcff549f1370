//! Integration tests of the VM against the committed example contracts
//! (contracts/wasm/*.wasm). One binary, several modules.

mod support;

mod analyzer;
mod committed_wasm;
mod crash;
mod flows;
mod gatekeeper;
mod host_functions;
mod hostile;
mod node;
mod parallel;
mod programs;
mod reuse;
mod smith;
