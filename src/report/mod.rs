//! Reports of a simulated run: the JSON file (SPEC section 5), a Markdown file, SVG charts, and the
//! printed summary. Nothing here reads the wall clock, so the same scenario and seed give
//! byte-identical files.
//!
//! - `markdown`: the Markdown report; `summary`: the printed summary; `router`: the router's own
//!   counts per node; `trace_hash`: the trace fingerprint; `charts`: latency, per-node load and
//!   failover charts.

pub mod charts;
pub mod diff;
pub mod markdown;
pub mod router;
pub mod summary;
pub mod trace;
pub mod trace_hash;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check::InvariantResult;
use crate::check::failover_within::Failover;
use crate::check::latency::{op_latency_histogram, percentile_us};
use crate::record::RunOutcome;
use crate::record::events::{Events, NodeRole, OpKind, Purpose, StatementKind};
use crate::scenario::{LatencyOp, Scenario};

/// The JSON report. Field order is the SPEC's; extra fields follow.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Crate version that produced it.
    pub replisim_version: &'static str,
    /// Scenario name.
    pub scenario: String,
    /// Seed of the run.
    pub seed: u64,
    /// The scenario's `duration`, in ms.
    pub duration_ms: u64,
    /// Whether every invariant held and every fault showed its effect (SPEC 6.2).
    pub passed: bool,
    /// Fingerprint of the event trace.
    pub trace_hash: String,
    /// Client operations.
    pub ops: OpCounts,
    /// Per node, server-side counts.
    pub nodes: Vec<NodeCounts>,
    /// Client-observed latency.
    pub latency_ms: LatencyReport,
    /// Every fault, in scenario order.
    pub faults: Vec<FaultEntry>,
    /// One per crash or partition fault.
    pub failovers: Vec<Failover>,
    /// Every invariant, in scenario order.
    pub invariants: Vec<InvariantResult>,
    /// When the last operation finished, in simulated ms.
    pub run_end_ms: u64,
    /// The first few distinct client error messages with their counts.
    pub errors: Vec<ErrorCount>,
    /// Per node, what the router counted about itself (attempts, outcomes, routing reasons).
    pub router: Vec<router::RouterNode>,
}

/// Counts of client operations.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    /// All operations.
    pub total: u64,
    /// Succeeded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
}

/// What one node executed, as the node itself recorded it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct NodeCounts {
    /// Node name.
    pub name: String,
    /// Its shard's name.
    pub shard: String,
    /// Its role at the start of the run.
    pub role: &'static str,
    /// Workload reads executed successfully.
    pub reads: u64,
    /// Workload writes executed successfully.
    pub writes: u64,
    /// Workload writes refused with SQLSTATE 25006.
    pub rejected_writes: u64,
    /// Health checks and lag probes.
    pub checks: u64,
    /// Workload statements answered with an error.
    pub errors: u64,
    /// This node's share of all workload reads executed.
    pub read_share: f64,
    /// Workload statements a CancelRequest ended (SQLSTATE 57014; counted in `errors` too): work
    /// the router abandoned and the server stopped.
    pub cancelled: u64,
}

/// Percentiles of one operation kind, in ms.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Latency by operation kind.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencyReport {
    /// Reads.
    pub read: Percentiles,
    /// Writes.
    pub write: Percentiles,
}

/// One fault as applied.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FaultEntry {
    /// Fault kind.
    pub kind: &'static str,
    /// Target node.
    pub target: String,
    /// Start, simulated ms.
    pub at_ms: u64,
    /// End, simulated ms; null = lasted to the end of the run (or an instant fault).
    pub until_ms: Option<u64>,
    /// Whether its effect was observed.
    pub took_effect: bool,
    /// What was observed (or not) that decided `took_effect`.
    pub evidence: String,
}

/// A client error message and how often it was seen.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ErrorCount {
    /// The message.
    pub message: String,
    /// Occurrences.
    pub count: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn percentiles(events: &Events, op: LatencyOp) -> Percentiles {
    let h = op_latency_histogram(&events.ops, op);
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(percentile_us(&h, 50.0)),
        p95: ms(percentile_us(&h, 95.0)),
        p99: ms(percentile_us(&h, 99.0)),
        max: ms(h.max()),
    }
}

fn node_counts(scenario: &Scenario, events: &Events) -> Vec<NodeCounts> {
    let mut nodes: Vec<NodeCounts> = scenario
        .nodes
        .iter()
        .map(|n| NodeCounts {
            name: n.name.clone(),
            shard: scenario
                .shards
                .get(n.shard)
                .map_or_else(String::new, |s| s.name.clone()),
            role: match n.initial_role {
                NodeRole::Primary => "primary",
                NodeRole::Replica => "replica",
            },
            ..NodeCounts::default()
        })
        .collect();
    for s in &events.statements {
        let Some(n) = nodes.get_mut(s.node) else {
            continue;
        };
        if s.purpose == Purpose::Check {
            n.checks += 1;
            continue;
        }
        match (&s.sqlstate, s.kind) {
            (None, StatementKind::Read) => n.reads += 1,
            (None, StatementKind::Write) => n.writes += 1,
            (Some(code), kind) => {
                n.errors += 1;
                if code == "57014" {
                    n.cancelled += 1;
                }
                if kind == StatementKind::Write && code == "25006" {
                    n.rejected_writes += 1;
                }
            }
            (None, _) => {}
        }
    }
    let total_reads: u64 = nodes.iter().map(|n| n.reads).sum();
    for n in &mut nodes {
        if total_reads > 0 {
            n.read_share = (n.reads as f64 / total_reads as f64 * 10_000.0).round() / 10_000.0;
        }
    }
    nodes
}

fn error_counts(events: &Events) -> Vec<ErrorCount> {
    let mut counts = std::collections::BTreeMap::<&str, u64>::new();
    for e in events.ops.iter().filter_map(|o| o.error.as_deref()) {
        *counts.entry(e).or_default() += 1;
    }
    let mut list: Vec<ErrorCount> = counts
        .into_iter()
        .map(|(message, count)| ErrorCount {
            message: message.to_string(),
            count,
        })
        .collect();
    list.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.message.cmp(&b.message))
    });
    list.truncate(10);
    list
}

/// Judges every invariant of the scenario on a finished run and builds its report.
pub fn evaluate(scenario: &Scenario, outcome: &RunOutcome) -> Report {
    let evidence = crate::check::Evidence {
        scenario,
        events: &outcome.events,
        faults: &outcome.faults,
        run_end_us: outcome.run_end_us,
    };
    let invariants = crate::check::check_all(&evidence);
    let failovers = crate::check::failover_within::failovers(&evidence);
    build(scenario, outcome, invariants, failovers)
}

/// Builds the report of a finished run from already judged invariants.
pub fn build(
    scenario: &Scenario,
    outcome: &RunOutcome,
    invariants: Vec<InvariantResult>,
    failovers: Vec<Failover>,
) -> Report {
    let events = &outcome.events;
    let ops = &events.ops;
    let count = |f: &dyn Fn(&crate::record::events::ClientOp) -> bool| {
        ops.iter().filter(|o| f(o)).count() as u64
    };
    Report {
        replisim_version: env!("CARGO_PKG_VERSION"),
        scenario: scenario.name.clone(),
        seed: outcome.seed,
        duration_ms: u64::try_from(scenario.duration.as_millis()).unwrap_or(u64::MAX),
        // A fault that did not show its effect proves nothing about the router: the run fails.
        passed: invariants.iter().all(|i| i.passed) && outcome.faults.iter().all(|f| f.took_effect),
        trace_hash: trace_hash::trace_hash(events),
        ops: OpCounts {
            total: ops.len() as u64,
            ok: count(&|o| o.ok),
            failed: count(&|o| !o.ok),
            reads: count(&|o| o.kind == OpKind::Read),
            writes: count(&|o| o.kind == OpKind::Write),
        },
        nodes: node_counts(scenario, events),
        latency_ms: LatencyReport {
            read: percentiles(events, LatencyOp::Read),
            write: percentiles(events, LatencyOp::Write),
        },
        faults: outcome
            .faults
            .iter()
            .map(|f| FaultEntry {
                kind: f.kind,
                target: scenario
                    .nodes
                    .get(f.target)
                    .map_or_else(String::new, |n| n.name.clone()),
                at_ms: f.at_us / 1000,
                until_ms: f.until_us.map(|u| u / 1000),
                took_effect: f.took_effect,
                evidence: f.evidence.clone(),
            })
            .collect(),
        failovers,
        invariants,
        run_end_ms: outcome.run_end_us / 1000,
        errors: error_counts(events),
        router: router::summarise(&outcome.router_metrics),
    }
}

/// The name every file of one run starts with: `<name>-seed<N>`.
pub fn stem(scenario: &str, seed: u64) -> String {
    format!("{scenario}-seed{seed}")
}

/// The paths `run` writes: `DIR/<name>-seed<N>.json` and `.md`.
pub fn paths(dir: &Path, report: &Report) -> (PathBuf, PathBuf) {
    let stem = stem(&report.scenario, report.seed);
    (
        dir.join(format!("{stem}.json")),
        dir.join(format!("{stem}.md")),
    )
}

/// The JSON text of the report (pretty, newline-terminated).
pub fn to_json(report: &Report) -> String {
    // Serialising plain structs of strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes both report files, with no charts linked; each appears whole or not at all (written aside,
/// then renamed).
pub fn write(dir: &Path, report: &Report) -> std::io::Result<(PathBuf, PathBuf)> {
    write_with_charts(dir, report, &[])
}

/// Writes both report files, the Markdown embedding `charts` (already written beside it).
pub fn write_with_charts(
    dir: &Path,
    report: &Report,
    charts: &[charts::ChartFile],
) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let (json_path, md_path) = paths(dir, report);
    write_whole(&json_path, to_json(report).as_bytes())?;
    write_whole(&md_path, markdown::render(report, charts).as_bytes())?;
    Ok((json_path, md_path))
}

/// As [`write_whole`], creating `path`'s directory first if needed (for files named on the
/// command line: `--metrics`, `--trace`, `--junit`, `shrink --out`).
pub fn write_whole_creating_dir(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_whole(path, bytes)
}

/// Writes `bytes` to `path` whole or not at all: aside first, then renamed over it.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // The aside file is unique to this process and call: two writers of the same path (parallel
    // searches or tests) must not rename each other's file away. The last rename wins, whole.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{call}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // Nothing half-written stays behind; the error says what went wrong.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
