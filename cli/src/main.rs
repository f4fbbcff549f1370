//! `chroma`: the command-line front of the Chroma VM.

mod analyze;
mod author;
mod block;
mod chain;
mod demo;
mod inspect;
mod keyring;
mod render;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use chain::{CallArgs, Ctx, DeployArgs, DEFAULT_GAS};

/// mimalloc, tuned for blocks (see `chroma-alloc`).
#[global_allocator]
static ALLOCATOR: chroma_alloc::Allocator = chroma_alloc::Allocator;

/// Chroma: a WebAssembly smart-contract VM that finds a block's parallelism before running it.
///
/// Commands that submit a transaction (deploy, call) commit it as a block and exit
/// with status 1 if it failed (reverted, ran out of gas, ...), after printing the receipt.
#[derive(Parser)]
#[command(name = "chroma", version, about, long_about)]
struct Cli {
    /// The chain's data directory.
    #[arg(long, global = true, env = "CHROMA_DATA_DIR", default_value = "chroma-data")]
    data_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a chain in the data directory, with dev accounts alice, bob, carol, dave and eve.
    Init,
    /// Deploy a contract module and run its init method.
    Deploy {
        /// A .wasm file, or example:NAME for an embedded example (token, amm, lending, registry, counter).
        module: String,
        /// The deploying account.
        #[arg(long, default_value = "alice")]
        from: String,
        /// An init argument, as name=value (repeat for each argument).
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// A label to refer to the contract by in later commands.
        #[arg(long)]
        name: Option<String>,
        /// Gas limit.
        #[arg(long, default_value_t = DEFAULT_GAS)]
        gas: u64,
    },
    /// Call a contract method in a transaction and print its receipt.
    Call {
        /// The contract: a label given at deploy, or its 0x address.
        contract: String,
        method: String,
        /// An argument, as name=value: integers, true/false, account names or 0x
        /// addresses, strings as they are, lists [a, b], tuples (a, b), none.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// The calling account.
        #[arg(long, default_value = "alice")]
        from: String,
        /// Gas limit.
        #[arg(long, default_value_t = DEFAULT_GAS)]
        gas: u64,
    },
    /// Run a method read-only against the committed state, without a transaction.
    Query {
        /// The contract: a label given at deploy, or its 0x address.
        contract: String,
        method: String,
        /// An argument, as name=value.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// Gas limit.
        #[arg(long, default_value_t = DEFAULT_GAS)]
        gas: u64,
    },
    /// Show the chain's height, state root, contracts and accounts.
    State,
    /// Manage the dev keyring's accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Print a contract module's embedded ABI after checking it as a deploy would.
    Abi {
        /// A .wasm file, or example:NAME.
        module: String,
    },
    /// Show each entry point's inferred storage reads, writes, adds and calls.
    Analyze {
        /// A .wasm file, example:NAME, or a deployed contract (label or 0x address).
        module: String,
    },
    /// Execute blocks of transactions.
    Block {
        #[command(subcommand)]
        command: BlockCommand,
    },
    /// Create a new contract crate in ./NAME: a sample contract, a test that runs its
    /// Wasm in an in-memory chain, and a README.
    New {
        name: String,
        /// The checkout's host-api/sdk to depend on (default: the checkout this chroma was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a contract crate to Wasm (rustup's wasm32 target or Debian's rustc-web,
    /// whichever works), then print its path, size, entry points and inferred accesses.
    Build {
        /// The crate's directory (default: the current one).
        path: Option<PathBuf>,
    },
    /// The main job: on an in-memory chain, deploy the example contracts, run a DeFi
    /// block in parallel, check it against serial execution, print the parallelism report.
    Demo(demo::DemoArgs),
}

#[derive(Subcommand)]
enum BlockCommand {
    /// Execute a block file (JSON) as the next block and print its parallelism report.
    ///
    /// The file is an array of transactions, each
    /// {"from": "alice", "call": "tok", "method": "transfer", "args": {"to": "bob", "amount": 5}}
    /// or {"from": "alice", "deploy": "example:token", "args": {...}, "name": "tok"},
    /// with optional "gas" and "nonce". Exits with status 1 if any transaction failed.
    Run {
        /// The block file.
        file: PathBuf,
        #[command(flatten)]
        execution: block::ExecutionArgs,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// List the dev accounts.
    List,
    /// Add a dev account.
    New { name: String },
}

fn main() -> ExitCode {
    chroma_alloc::tune();
    // Like other Unix tools, stop quietly when the reader goes away
    // (`chroma analyze ... | head`) instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restores the default disposition before any thread or output exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let ctx = Ctx { data_dir: cli.data_dir, json: cli.json };
    let result = match cli.command {
        Command::Init => chain::init(&ctx).map(|()| true),
        Command::Deploy { module, from, args, name, gas } => chain::deploy(&ctx, DeployArgs { module, from, args, name, gas }),
        Command::Call { contract, method, args, from, gas } => chain::call(&ctx, CallArgs { contract, method, args, from, gas }),
        Command::Query { contract, method, args, gas } => chain::query(&ctx, &contract, &method, &args, gas),
        Command::State => chain::state(&ctx).map(|()| true),
        Command::Account { command: AccountCommand::List } => chain::account_list(&ctx).map(|()| true),
        Command::Account { command: AccountCommand::New { name } } => chain::account_new(&ctx, &name).map(|()| true),
        Command::Abi { module } => inspect::abi(&module, ctx.json).map(|()| true),
        Command::Analyze { module } => analyze::run(&ctx, &module).map(|()| true),
        Command::Block { command: BlockCommand::Run { file, execution } } => block::run(&ctx, block::RunArgs { file, execution }),
        Command::Demo(args) => demo::run(&args, ctx.json).map(|()| true),
        Command::New { name, sdk } => author::new(&name, sdk, ctx.json).map(|()| true),
        Command::Build { path } => author::build(path, ctx.json).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
