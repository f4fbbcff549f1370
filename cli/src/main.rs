//! `chroma`: the command-line front of the Chroma VM.

mod demo;
mod examples;
mod inspect;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Chroma: a WebAssembly smart-contract VM that finds a block's parallelism before running it.
#[derive(Parser)]
#[command(name = "chroma", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the example contracts (token, AMM, lending, registry, counter) on an
    /// in-memory chain and run a short DeFi session, printing every receipt.
    Demo {
        /// Print the receipts as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the ABI a contract module embeds (methods, argument and return types, kinds),
    /// after checking the module as a deploy would.
    Abi {
        /// A contract's .wasm file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { json } => demo::run(json),
        Command::Abi { file, json } => inspect::abi(&file, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
