//! The Markdown report: the same figures as the JSON, for people.

use std::fmt::Write;

use crate::report::charts::ChartFile;
use crate::report::{Percentiles, Report};

fn verdict(passed: bool) -> &'static str {
    if passed { "PASS" } else { "FAIL" }
}

fn latency_row(out: &mut String, op: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "| {op} | {:.3} | {:.3} | {:.3} | {:.3} |",
        p.p50, p.p95, p.p99, p.max
    );
}

/// Renders the report as Markdown, embedding `charts` (files beside the report) after the summary.
pub fn render(r: &Report, charts: &[ChartFile]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {} (seed {}): {}\n",
        r.scenario,
        r.seed,
        verdict(r.passed)
    );
    let _ = writeln!(
        out,
        "{} operations in {} ms simulated ({} reads, {} writes, {} failed); trace `{}`.\n",
        r.ops.total, r.duration_ms, r.ops.reads, r.ops.writes, r.ops.failed, r.trace_hash
    );
    if !charts.is_empty() {
        out.push_str("## Charts\n\n");
        for chart in charts {
            // Relative links: the charts sit beside the report, wherever the directory moves.
            let _ = writeln!(out, "![{}]({})\n", chart.kind, chart.file_name);
        }
    }
    out.push_str("## Invariants\n\n| invariant | result | detail |\n|---|---|---|\n");
    for i in &r.invariants {
        let _ = writeln!(out, "| {} | {} | {} |", i.kind, verdict(i.passed), i.detail);
    }
    out.push_str("\n## Query distribution (as the servers executed it)\n\n");
    out.push_str("| node | shard | role | reads | read share | writes | rejected writes | errors | checks |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for n in &r.nodes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1}% | {} | {} | {} | {} |",
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
    out.push_str("\n## Latency (ms, client-observed)\n\n| op | p50 | p95 | p99 | max |\n|---|---|---|---|---|\n");
    latency_row(&mut out, "read", &r.latency_ms.read);
    latency_row(&mut out, "write", &r.latency_ms.write);
    if !r.router.is_empty() {
        out.push_str("\n## Router (as the router counted itself)\n\n");
        out.push_str("| node | attempts | ok | errors | round robin | fallback primary | primary requested | retry | write | cap wait | p99 ms |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        for n in &r.router {
            let routes = &n.routes;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
                n.name,
                n.attempts,
                n.ok,
                n.errors,
                routes.round_robin,
                routes.fallback_primary,
                routes.primary_requested,
                routes.retry,
                routes.write,
                routes.cap_wait,
                n.latency_ms.p99
            );
        }
    }
    if !r.faults.is_empty() {
        out.push_str("\n## Faults\n\n| kind | target | at ms | until ms | took effect | evidence |\n|---|---|---|---|---|---|\n");
        for f in &r.faults {
            let until = f
                .until_ms
                .map_or_else(|| "-".to_string(), |u| u.to_string());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                f.kind,
                f.target,
                f.at_ms,
                until,
                f.took_effect,
                f.evidence.replace('|', "/")
            );
        }
    }
    if !r.failovers.is_empty() {
        out.push_str("\n## Failovers\n\n| node | fault at ms | last attempt ms | failover ms |\n|---|---|---|---|\n");
        for f in &r.failovers {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                f.node, f.fault_at_ms, f.last_attempt_ms, f.failover_ms
            );
        }
    }
    if !r.errors.is_empty() {
        out.push_str("\n## Client errors\n\n| count | message |\n|---|---|\n");
        for e in &r.errors {
            let _ = writeln!(out, "| {} | {} |", e.count, e.message.replace('|', "\\|"));
        }
    }
    out
}
