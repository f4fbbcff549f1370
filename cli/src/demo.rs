//! `chroma demo`: the README's main job. On an in-memory chain it deploys
//! the example contracts, funds users and opens positions (set-up blocks),
//! generates DeFi blocks (transfers among Zipf-skewed users, swaps on a few
//! hot pools, lending, registry and counter calls), executes each in
//! parallel, executes the same block serially on a second chain, checks that
//! receipts and state roots agree, and prints a line per block and the last
//! block's parallelism report. Several blocks, because a process's first
//! block pays once for what later blocks reuse (analyses of new input
//! shapes, caches, memory): its planning is not the steady cost.

use std::time::Instant;

use anyhow::{bail, Context};
use chroma_host_api::Address;
use chroma_vm::root::StateHash;
use chroma_vm::{BlockOptions, Outcome, Vm};
use chroma_workloads::{Workload, World, WorldConfig};
use serde_json::json;

use crate::block::{describe_tx, ExecutionArgs};
use crate::report::{self, Extras};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Transactions in the DeFi block.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub txs: u64,
    /// Users (their activity is Zipf-skewed: a few are very busy).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(2..=100_000))]
    pub users: u64,
    /// AMM pools, each over its own token pair (fewer pools, hotter pools).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub pools: u64,
    /// The block's composition.
    #[arg(long, default_value = "defi-mix", value_parser = clap::value_parser!(Workload))]
    pub workload: Workload,
    /// Seed of the generated accounts and blocks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// DeFi blocks to run one after another, each checked against serial
    /// execution; the report is of the last. The first block's planning
    /// includes work done once per process (analysing new input shapes,
    /// warming caches), so later blocks show the steady cost.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub blocks: u64,
    #[command(flatten)]
    pub execution: ExecutionArgs,
}

fn root(vm: &Vm) -> [u8; 32] {
    let entries = vm.state().snapshot();
    StateHash::of(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).root()
}

pub fn run(args: &DemoArgs, json_output: bool) -> anyhow::Result<()> {
    let config = WorldConfig {
        users: args.users as usize,
        pools: args.pools as usize,
        seed: args.seed,
        ..WorldConfig::default()
    };
    let say = |line: String| {
        if !json_output {
            eprintln!("{line}");
        }
    };
    let (mut world, setup) = World::new(config);
    let mut parallel = Vm::new().context("cannot start the VM")?;
    let mut serial = Vm::new().context("cannot start the VM")?;
    let setup_options = BlockOptions::default();
    let started = Instant::now();
    for (b, block) in setup.iter().enumerate() {
        for vm in [&mut parallel, &mut serial] {
            let done = vm.execute_block(block, &setup_options)?;
            if let Some((i, r)) = done.receipts.iter().enumerate().find(|(_, r)| !r.outcome.is_success()) {
                bail!("set-up block {b}, transaction {i} failed: {}", r.outcome);
            }
        }
        let what = match b {
            0 => format!("deployed {} contracts (tokens, {} AMM pools, a lending market, a registry, a counter)", block.len(), world.pools.len()),
            1 => format!("funded {} users and the pools' liquidity ({} transactions)", world.users.len(), block.len()),
            _ => format!("approvals and lending deposits ({} transactions)", block.len()),
        };
        say(format!("set-up block {}: {what}", b + 1));
    }
    say(format!("set-up done in {:.2} s (twice: once for the parallel chain, once for the serial reference)\n", started.elapsed().as_secs_f64()));

    let options = args.execution.options();
    let mut per_block = Vec::new();
    let (mut block, mut done, mut check, mut root_parallel) = (Vec::new(), None, String::new(), [0; 32]);
    // The block that differed from serial execution, if one did: the
    // report is then of that block.
    let mut differed = None;
    for b in 1..=args.blocks {
        block = world.block(args.workload, args.txs as usize);
        let executed = parallel.execute_block(&block, &options)?;
        let reference = serial.execute_block(&block, &BlockOptions::serial())?;
        let same_receipts = executed.receipts == reference.receipts;
        let root_serial = root(&serial);
        root_parallel = root(&parallel);
        let matches = same_receipts && root_parallel == root_serial;
        check = format!(
            "{} receipts and the state root {} equal serial execution (serial took {:.2} ms)",
            if same_receipts { "all" } else { "NOT all" },
            if root_parallel == root_serial { "also" } else { "does NOT" },
            (reference.report.execution + reference.report.planning).as_secs_f64() * 1e3,
        );
        say(format!(
            "{} block {b} of {}: {}; {}",
            args.workload,
            args.blocks,
            report::one_line(&executed.report),
            if matches { "equal to serial" } else { "NOT equal to serial" }
        ));
        per_block.push(json!({
            "transactions": executed.report.transactions(),
            "groups": executed.report.plan.groups.len(),
            "planning_ms": executed.report.planning.as_secs_f64() * 1e3,
            "execution_ms": executed.report.execution.as_secs_f64() * 1e3,
            "shape_analyses": executed.report.shape_analysis.analyses,
            "matches_serial": matches,
        }));
        done = Some(executed);
        if !matches {
            differed = Some(b);
            break;
        }
    }
    let Some(done) = done else { bail!("no block ran") };
    let names = |a: &Address| world.label(a).map(str::to_string);
    let extras = Extras { commit: None, check: Some(check.clone()) };
    let labels: Vec<String> = block.iter().map(|tx| describe_tx(tx, &names)).collect();
    args.execution.write_files(&done.report, &names, &labels, &extras)?;
    let failed = done.receipts.iter().filter(|r| !matches!(r.outcome, Outcome::Success)).count();
    if json_output {
        let out = json!({
            "workload": args.workload.name(), "users": world.users.len(), "pools": world.pools.len(),
            "failed_transactions": failed, "root": crate::render::hex(&root_parallel),
            "matches_serial": differed.is_none(),
            "blocks": per_block,
            "report": report::json(&done.report, &names, &extras),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "\n{} {} block: {} transactions over {} users and {} pools ({failed} failed, as transactions do).\n",
            match (differed, args.blocks) {
                (Some(b), _) => format!("Block {b}, the one that differed, a"),
                (None, 1) => "A".to_string(),
                (None, n) => format!("The last of the {n} blocks, a"),
            },
            args.workload,
            block.len(),
            world.users.len(),
            world.pools.len()
        );
        print!("{}", report::text(&done.report, &names, &extras));
        println!("\nstate root     {}", crate::render::hex(&root_parallel));
    }
    if let Some(b) = differed {
        bail!("block {b}: parallel execution differed from serial execution: {check}");
    }
    Ok(())
}
