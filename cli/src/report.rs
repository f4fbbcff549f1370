//! The per-block parallelism report, for people (a table), scripts (JSON),
//! Graphviz (`--dot`: the conflict graph colored by group) and browsers
//! (`--html`: one self-contained page).

use std::fmt::Write as _;
use std::time::Duration;

use chroma_analyzer::PatternRef;
use chroma_host_api::key::{split_storage_key, KEY_PREFIX_LEN, SYSTEM_SLOT};
use chroma_host_api::{Address, ADDRESS_LEN};
use chroma_vm::BlockReport;
use serde_json::{json, Value as Json};

/// Thread counts the predicted speedup is shown for.
const SPEEDUP_THREADS: [usize; 5] = [1, 2, 4, 8, 16];
/// Hot keys listed.
const HOT_KEYS: usize = 10;
/// Groups drawn one by one in the text report before the rest is summed up.
const GROUPS_SHOWN: usize = 12;

pub type Names<'a> = &'a dyn Fn(&Address) -> Option<String>;

/// Extra measurements around the report (commit time, serial check).
#[derive(Default)]
pub struct Extras {
    pub commit: Option<Duration>,
    /// "matches serial" line of the demo.
    pub check: Option<String>,
}

fn address(a: &Address, names: Names<'_>) -> String {
    names(a).unwrap_or_else(|| format!("{a:?}"))
}

/// `pool0.slot2[user7]`, `USD.slot3[*]`, `nonce(alice)`, `*`.
pub fn describe(pattern: PatternRef<'_>, names: Names<'_>) -> String {
    let bytes = pattern.bytes();
    let wildcard = if pattern.is_exact() { "" } else { "*" };
    if bytes.len() < KEY_PREFIX_LEN {
        if bytes.len() == ADDRESS_LEN {
            let mut a = [0u8; ADDRESS_LEN];
            a.copy_from_slice(bytes);
            return format!("{}.*", address(&Address(a), names));
        }
        return if bytes.is_empty() { "* (anything)".to_string() } else { format!("0x{}…*", chroma_vm::root::hex(bytes)) };
    }
    let Some((contract, slot, key)) = split_storage_key(bytes) else { return "?".into() };
    if slot == SYSTEM_SLOT {
        return format!("{}({})", String::from_utf8_lossy(key), address(&contract, names));
    }
    let parts: Vec<String> = key
        .chunks(ADDRESS_LEN)
        .map(|chunk| match <[u8; ADDRESS_LEN]>::try_from(chunk) {
            Ok(a) if names(&Address(a)).is_some() => address(&Address(a), names),
            _ => format!("0x{}", chroma_vm::root::hex(chunk)),
        })
        .collect();
    format!("{}.slot{slot}[{}{wildcard}]", address(&contract, names), parts.join(" ‖ "))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole == 0.0 { 0.0 } else { 100.0 * part / whole }
}

/// One line of a block's figures: its size, groups, and the planning and
/// execution times (the demo prints one per block it runs).
pub fn one_line(report: &BlockReport) -> String {
    let shapes = analysing(report, false);
    format!(
        "{} transactions in {} groups; planning {:.2} ms ({:.1}% of execution{shapes}), execution {:.2} ms",
        report.transactions(),
        report.plan.groups.len(),
        ms(report.planning),
        percent(ms(report.planning), ms(report.execution)),
        ms(report.execution)
    )
}

/// What a block's planning spent on analyses for input shapes first seen
/// (`with_time`: and their time), as a clause of the planning figure; empty
/// when there were none. They are made once, then kept: told apart, so that
/// a first block's planning does not read as its steady cost.
fn analysing(report: &BlockReport, with_time: bool) -> String {
    let shapes = report.shape_analysis;
    if shapes.analyses == 0 {
        return String::new();
    }
    let plural = if shapes.analyses == 1 { "" } else { "s" };
    let time = if with_time { format!(", {:.2} ms of threads' time", ms(shapes.time)) } else { String::new() };
    format!("; it includes analysing {} new input shape{plural} once{time}", shapes.analyses)
}

pub fn text(report: &BlockReport, names: Names<'_>, extras: &Extras) -> String {
    let plan = &report.plan;
    let n = report.transactions();
    let total_gas: u64 = report.gas.iter().sum();
    let mut out = String::new();
    let mode = if report.options.serial {
        "serial (the plan is shown for reference)".to_string()
    } else {
        let mut mode = format!("{} on {} threads", report.options.strategy.name(), report.options.threads);
        if report.serial_segments > 0 {
            let plural = if report.serial_segments == 1 { "" } else { "s" };
            // Too little parallelism in its plan, or executed whole before
            // the plan was made.
            let _ = write!(mode, " ({} segment{plural} serially)", report.serial_segments);
        }
        if report.executed_while_planning > 0 {
            let _ = write!(mode, " ({} transactions serially while the block was planned)", report.executed_while_planning);
        }
        mode
    };
    let _ = writeln!(out, "block          {n} transactions, {} conflict edges, {} groups; executed {mode}", plan.graph.edge_count(), plan.groups.len());
    let _ = writeln!(
        out,
        "predictions    {} of single keys only ({:.1}%), {} mispredicted, {} plan{}",
        report.exact_predictions(),
        percent(report.exact_predictions() as f64, n as f64),
        report.mispredicted.len(),
        report.plans,
        if report.plans == 1 { "" } else { "s" }
    );
    let critical = report.critical_path_gas();
    let _ = writeln!(
        out,
        "critical path  {} transactions deep; {critical} of {total_gas} gas ({:.1}%)",
        plan.groups.len(),
        percent(critical as f64, total_gas as f64)
    );
    let speedups: Vec<String> =
        SPEEDUP_THREADS.iter().map(|&t| format!("{t}: {:.2}x", report.predicted_speedup(t))).collect();
    let _ = writeln!(out, "speedup        predicted by the plan, weighted by gas, per thread count: {}", speedups.join("  "));
    let analysing = analysing(report, true);
    let mut time = format!(
        "time           planning {:.2} ms ({:.1}% of execution{analysing}), execution {:.2} ms",
        ms(report.planning),
        percent(ms(report.planning), ms(report.execution)),
        ms(report.execution)
    );
    if let Some(commit) = extras.commit {
        let _ = write!(time, ", commit {:.2} ms", ms(commit));
    }
    let tps = n as f64 / (report.planning + report.execution).as_secs_f64().max(1e-9);
    let _ = writeln!(out, "{time}; {tps:.0} tx/s planned and executed");
    if let Some(check) = &extras.check {
        let _ = writeln!(out, "check          {check}");
    }

    let sizes: Vec<usize> = plan.groups.iter().map(<[u32]>::len).collect();
    let shown: Vec<String> = sizes.iter().take(GROUPS_SHOWN).map(|s| s.to_string()).collect();
    let rest = sizes.len().saturating_sub(GROUPS_SHOWN);
    let tail = if rest > 0 { format!(" … and {rest} more groups of {} transactions", sizes[GROUPS_SHOWN..].iter().sum::<usize>()) } else { String::new() };
    let _ = writeln!(out, "group sizes    {}{tail}", shown.join(" "));

    let hot = report.hottest_keys(HOT_KEYS);
    if !hot.is_empty() {
        let _ = writeln!(out, "\nhottest keys (conflict edges they cause)");
        for (pattern, edges) in hot {
            let _ = writeln!(out, "  {edges:>7}  {}", describe(pattern, names));
        }
    }
    let _ = writeln!(out, "\n{:<14} {:>6} {:>12} {:>10} {:>10} {:>13}", "contract", "txs", "gas", "conflicts", "single-key", "mispredicted");
    let mut shares: Vec<(String, chroma_vm::ContractShare)> = report
        .by_contract()
        .into_iter()
        .map(|(contract, share)| (contract.map_or_else(|| "(deploys)".to_string(), |c| address(&c, names)), share))
        .collect();
    shares.sort_by(|(a, x), (b, y)| y.transactions.cmp(&x.transactions).then_with(|| a.cmp(b)));
    for (label, share) in shares {
        let _ = writeln!(
            out,
            "{label:<14} {:>6} {:>12} {:>10} {:>9.1}% {:>13}",
            share.transactions,
            share.gas,
            share.conflicts,
            percent(share.exact as f64, share.transactions as f64),
            share.mispredicted
        );
    }
    out
}

pub fn json(report: &BlockReport, names: Names<'_>, extras: &Extras) -> Json {
    let plan = &report.plan;
    let hot: Vec<Json> = report
        .hottest_keys(HOT_KEYS)
        .into_iter()
        .map(|(pattern, edges)| json!({"key": describe(pattern, names), "edges": edges, "exact": pattern.is_exact()}))
        .collect();
    let contracts: Vec<Json> = report
        .by_contract()
        .into_iter()
        .map(|(contract, s)| {
            json!({
                "contract": contract.map(|c| address(&c, names)), "address": contract.map(|c| c.to_string()),
                "transactions": s.transactions, "gas": s.gas, "conflicts": s.conflicts, "exact": s.exact, "mispredicted": s.mispredicted,
            })
        })
        .collect();
    let speedup: serde_json::Map<String, Json> =
        SPEEDUP_THREADS.iter().map(|&t| (t.to_string(), json!(report.predicted_speedup(t)))).collect();
    json!({
        "transactions": report.transactions(),
        "serial": report.options.serial,
        "strategy": report.options.strategy.name(),
        "threads": report.options.threads,
        "conflict_edges": plan.graph.edge_count(),
        "groups": plan.groups.len(),
        "group_sizes": plan.groups.iter().map(<[u32]>::len).collect::<Vec<_>>(),
        "exact_predictions": report.exact_predictions(),
        "mispredicted": report.mispredicted,
        "plans": report.plans,
        "serial_segments": report.serial_segments,
        "executed_while_planning": report.executed_while_planning,
        "gas": report.gas.iter().sum::<u64>(),
        "critical_path_gas": report.critical_path_gas(),
        "predicted_speedup": speedup,
        "planning_ms": ms(report.planning),
        "shape_analyses": report.shape_analysis.analyses,
        "shape_analysis_ms": ms(report.shape_analysis.time),
        "execution_ms": ms(report.execution),
        "commit_ms": extras.commit.map(ms),
        "check": extras.check,
        "hot_keys": hot,
        "contracts": contracts,
    })
}

/// Graphviz: one node per transaction, filled by group, edges labelled by
/// the key that made them.
pub fn dot(report: &BlockReport, names: Names<'_>, labels: &[String]) -> String {
    let plan = &report.plan;
    let groups = plan.groups.len().max(1);
    let mut out = String::from("digraph block {\n  rankdir=LR;\n  node [shape=box, style=filled, fontname=\"monospace\"];\n");
    for (tx, label) in labels.iter().enumerate() {
        let group = plan.group_of[tx] as usize;
        // Hue by group, spread around the wheel; HSV as Graphviz reads it.
        let hue = (group * 7 % groups) as f64 / groups as f64;
        let _ = writeln!(out, "  t{tx} [label=\"#{tx} {}\\ngroup {group}\", fillcolor=\"{hue:.3} 0.35 0.95\"];", escape(label));
    }
    for (from, to, resource) in plan.graph.edges() {
        let key = report.resource(resource).map_or_else(|| "?".to_string(), |pattern| describe(pattern, names));
        let _ = writeln!(out, "  t{from} -> t{to} [tooltip=\"{}\"];", escape(&key));
    }
    out.push_str("}\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One self-contained page: the summary, a bar chart of group sizes (SVG), the hot keys and contracts.
pub fn html(report: &BlockReport, names: Names<'_>, extras: &Extras) -> String {
    let plan = &report.plan;
    let sizes: Vec<usize> = plan.groups.iter().map(<[u32]>::len).collect();
    let max = sizes.iter().copied().max().unwrap_or(1).max(1);
    let (width, height) = (900.0, 240.0);
    let bar = width / sizes.len().max(1) as f64;
    let mut bars = String::new();
    for (g, &size) in sizes.iter().enumerate() {
        let h = height * size as f64 / max as f64;
        let _ = write!(
            bars,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\" fill=\"#4a7bd0\"><title>group {g}: {size} transactions</title></rect>",
            g as f64 * bar,
            height - h,
            (bar * 0.9).max(0.5)
        );
    }
    let mut hot = String::new();
    for (pattern, edges) in report.hottest_keys(HOT_KEYS) {
        let _ = write!(hot, "<tr><td class=n>{edges}</td><td><code>{}</code></td></tr>", html_escape(&describe(pattern, names)));
    }
    let mut contracts = String::new();
    for (contract, s) in report.by_contract() {
        let label = contract.map_or_else(|| "(deploys)".to_string(), |c| address(&c, names));
        let _ = write!(
            contracts,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            html_escape(&label),
            s.transactions,
            s.gas,
            s.conflicts,
            s.exact,
            s.mispredicted
        );
    }
    let summary = html_escape(&text(report, names, extras).lines().take(7).collect::<Vec<_>>().join("\n"));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chroma block report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
pre {{ background: #f5f5f5; padding: 1em; overflow-x: auto; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head><body>
<h1>Block report</h1>
<pre>{summary}</pre>
<h2>Group sizes ({groups} groups, in execution order)</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="group sizes">{bars}</svg>
<p>Largest group: {max} transactions.</p>
<h2>Hottest keys</h2>
<table><tr><th>conflict edges</th><th>key</th></tr>{hot}</table>
<h2>Contracts</h2>
<table><tr><th>contract</th><th>transactions</th><th>gas</th><th>conflicts</th><th>single-key predictions</th><th>mispredicted</th></tr>{contracts}</table>
</body></html>
"#,
        groups = sizes.len(),
    )
}
