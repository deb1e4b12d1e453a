//! The short human summary `replisim run` prints.

use std::fmt::Write;

use crate::report::{FaultEntry, Report};

/// The summary text; `replay` is the exact command that reproduces the run, printed on failure.
pub fn render(r: &Report, replay: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}  seed {}  {:.1} s simulated  trace {}",
        r.scenario,
        r.seed,
        r.duration_ms as f64 / 1000.0,
        r.trace_hash
    );
    let _ = writeln!(
        out,
        "ops {}  ok {}  failed {}  reads {}  writes {}",
        r.ops.total, r.ops.ok, r.ops.failed, r.ops.reads, r.ops.writes
    );
    let _ = writeln!(out, "nodes (server-side):");
    for n in &r.nodes {
        let _ = writeln!(
            out,
            "  {:<14} {:<4} {:<8} reads {:>8} ({:>5.1}%)  writes {:>7}  rejected {:>4}  errors {:>4}  checks {:>5}",
            n.name,
            n.shard,
            n.role,
            n.reads,
            n.read_share * 100.0,
            n.writes,
            n.rejected_writes,
            n.errors,
            n.checks
        );
    }
    for (op, p) in [("read", &r.latency_ms.read), ("write", &r.latency_ms.write)] {
        let _ = writeln!(
            out,
            "latency {op:<5} ms  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}",
            p.p50, p.p95, p.p99, p.max
        );
    }
    for f in &r.faults {
        let _ = writeln!(out, "{}", fault_line(f));
    }
    for i in &r.invariants {
        let verdict = if i.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "{verdict} {:<20} {}", i.kind, i.detail);
    }
    if !r.passed {
        let _ = writeln!(out, "replay: {replay}");
    }
    out
}

/// One fault's line: what, where, when, the verdict and its evidence.
pub fn fault_line(f: &FaultEntry) -> String {
    let until = f
        .until_ms
        .map_or_else(|| "end".to_string(), |u| format!("{u} ms"));
    let effect = if f.took_effect {
        "took effect"
    } else {
        "FAIL: effect NOT observed"
    };
    format!(
        "fault {} {} at {} ms until {until}: {effect} ({})",
        f.kind, f.target, f.at_ms, f.evidence
    )
}
