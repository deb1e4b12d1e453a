//! Two JSON reports compared figure by figure: latency percentiles, failover times, operation
//! counts, the share of reads on replicas, per-node read shares, invariant and fault verdicts.
//!
//! Reports are read as plain JSON values, so a baseline written by an older version (or by real
//! mode) still compares on the figures both have.

use std::fmt::Write;

use serde_json::Value;

/// Which way a figure gets worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worse {
    /// Higher is worse (latency, failover time, failed operations).
    Higher,
    /// Lower is worse (operations served, share of reads on replicas).
    Lower,
    /// A change is shown, but is neither better nor worse (a node's read share).
    Neither,
}

/// One compared figure.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureDelta {
    /// What it is, e.g. `latency_ms.read.p99`.
    pub name: String,
    /// Base value (`None`: absent from the base report).
    pub base: Option<f64>,
    /// New value (`None`: absent from the new report).
    pub new: Option<f64>,
    /// Which way is worse.
    pub worse: Worse,
    /// Whether it got worse by more than the allowed percentage and its noise floor.
    pub regressed: bool,
}

/// A verdict (an invariant, a fault's effect, the run) in both reports.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictDelta {
    /// What it is, e.g. `invariant failover_within`.
    pub name: String,
    /// In the base report (`None`: absent).
    pub base: Option<bool>,
    /// In the new report.
    pub new: Option<bool>,
    /// The new report's detail, if any.
    pub detail: String,
}

impl VerdictDelta {
    /// Whether it went from passing (or absent) to failing.
    pub fn flipped_to_fail(&self) -> bool {
        self.new == Some(false) && self.base != Some(false)
    }
}

/// The comparison of two reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diff {
    /// Every numeric figure found in either report.
    pub figures: Vec<FigureDelta>,
    /// Every verdict found in either report.
    pub verdicts: Vec<VerdictDelta>,
    /// Whether the event traces differ (`trace_hash`).
    pub trace_changed: bool,
    /// Notes on what does not line up (different scenario or seed).
    pub notes: Vec<String>,
    /// The first field, by JSON path, where the reports differ at all (figures, verdicts and the
    /// trace included; e.g. a fault's evidence or a router counter none of them covers).
    pub first_other_difference: Option<String>,
}

impl Diff {
    /// Figures that regressed beyond the allowance.
    pub fn regressions(&self) -> impl Iterator<Item = &FigureDelta> {
        self.figures.iter().filter(|f| f.regressed)
    }

    /// Verdicts that flipped to FAIL.
    pub fn new_failures(&self) -> impl Iterator<Item = &VerdictDelta> {
        self.verdicts.iter().filter(|v| v.flipped_to_fail())
    }

    /// Whether anything differs at all (figures, verdicts or the trace).
    pub fn changed(&self) -> bool {
        self.trace_changed
            || self.figures.iter().any(|f| f.base != f.new)
            || self.verdicts.iter().any(|v| v.base != v.new)
            || self.first_other_difference.is_some()
    }

    /// Whether the new report is worse: a regression or a verdict flipped to FAIL.
    pub fn is_worse(&self) -> bool {
        self.regressions().next().is_some() || self.new_failures().next().is_some()
    }
}

/// The smallest change of a figure that can count as a regression, whatever the percentage:
/// below it a change is scheduling granularity, not behaviour.
fn noise_floor(name: &str) -> f64 {
    if name.starts_with("latency_ms.") {
        1.0
    } else if name.starts_with("failovers.") {
        10.0
    } else if name.contains("share") {
        0.01
    } else {
        0.0
    }
}

/// Compares `base` and `new`; a figure regresses when it worsens by more than `max_regression_pct`
/// percent of its base value and by more than its noise floor.
pub fn compare(base: &Value, new: &Value, max_regression_pct: f64) -> Diff {
    let mut diff = Diff::default();
    for key in ["scenario", "seed", "mode"] {
        if base.get(key) != new.get(key) {
            diff.notes.push(format!(
                "{key} differs: {} vs {}",
                base.get(key).unwrap_or(&Value::Null),
                new.get(key).unwrap_or(&Value::Null)
            ));
        }
    }
    diff.trace_changed = base.get("trace_hash") != new.get("trace_hash");
    diff.first_other_difference = first_difference(base, new, "");

    let figures = |report: &Value| -> Vec<(String, f64, Worse)> {
        let mut out = Vec::new();
        for op in ["read", "write"] {
            for p in ["p50", "p95", "p99", "max"] {
                if let Some(v) = report
                    .pointer(&format!("/latency_ms/{op}/{p}"))
                    .and_then(Value::as_f64)
                {
                    out.push((format!("latency_ms.{op}.{p}"), v, Worse::Higher));
                }
            }
        }
        for (field, worse) in [
            ("ok", Worse::Lower),
            ("failed", Worse::Higher),
            ("total", Worse::Neither),
        ] {
            if let Some(v) = report
                .pointer(&format!("/ops/{field}"))
                .and_then(Value::as_f64)
            {
                out.push((format!("ops.{field}"), v, worse));
            }
        }
        for f in report
            .get("failovers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let node = f.get("node").and_then(Value::as_str).unwrap_or("?");
            let at = f.get("fault_at_ms").and_then(Value::as_u64).unwrap_or(0);
            if let Some(ms) = f.get("failover_ms").and_then(Value::as_f64) {
                out.push((format!("failovers.{node}@{at}ms"), ms, Worse::Higher));
            }
        }
        let nodes = report.get("nodes").and_then(Value::as_array);
        let mut replica_share = None;
        for n in nodes.into_iter().flatten() {
            let name = n.get("name").and_then(Value::as_str).unwrap_or("?");
            if let Some(share) = n.get("read_share").and_then(Value::as_f64) {
                out.push((format!("nodes.{name}.read_share"), share, Worse::Neither));
                if n.get("role").and_then(Value::as_str) == Some("replica") {
                    *replica_share.get_or_insert(0.0) += share;
                }
            }
        }
        if let Some(share) = replica_share {
            out.push(("replica_read_share".to_string(), share, Worse::Lower));
        }
        out
    };
    let (base_figures, new_figures) = (figures(base), figures(new));
    let mut names: Vec<(String, Worse)> = Vec::new();
    for (name, _, worse) in base_figures.iter().chain(&new_figures) {
        if !names.iter().any(|(n, _)| n == name) {
            names.push((name.clone(), *worse));
        }
    }
    let find = |list: &[(String, f64, Worse)], name: &str| {
        list.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| *v)
    };
    for (name, worse) in names {
        let (b, n) = (find(&base_figures, &name), find(&new_figures, &name));
        let regressed = match (b, n) {
            (Some(b), Some(n)) => {
                let worsening = match worse {
                    Worse::Higher => n - b,
                    Worse::Lower => b - n,
                    Worse::Neither => 0.0,
                };
                worsening > noise_floor(&name) && worsening > b.abs() * max_regression_pct / 100.0
            }
            _ => false,
        };
        diff.figures.push(FigureDelta {
            name,
            base: b,
            new: n,
            worse,
            regressed,
        });
    }

    let verdicts = |report: &Value| -> Vec<(String, bool, String)> {
        let mut out = Vec::new();
        if let Some(p) = report.get("passed").and_then(Value::as_bool) {
            out.push(("run".to_string(), p, String::new()));
        }
        let invariants = report.get("invariants").and_then(Value::as_array);
        for (i, inv) in invariants.into_iter().flatten().enumerate() {
            let kind = inv.get("kind").and_then(Value::as_str).unwrap_or("?");
            let passed = inv.get("passed").and_then(Value::as_bool).unwrap_or(false);
            let detail = inv
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            out.push((format!("invariant #{} {kind}", i + 1), passed, detail));
        }
        let faults = report.get("faults").and_then(Value::as_array);
        for (i, f) in faults.into_iter().flatten().enumerate() {
            let kind = f.get("kind").and_then(Value::as_str).unwrap_or("?");
            let target = f.get("target").and_then(Value::as_str).unwrap_or("?");
            let took = f
                .get("took_effect")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let evidence = f
                .get("evidence")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            out.push((
                format!("fault #{} {kind} {target} took effect", i + 1),
                took,
                evidence,
            ));
        }
        out
    };
    let (base_verdicts, new_verdicts) = (verdicts(base), verdicts(new));
    let mut names: Vec<String> = Vec::new();
    for (name, _, _) in base_verdicts.iter().chain(&new_verdicts) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in names {
        let b = base_verdicts.iter().find(|(n, _, _)| *n == name);
        let n = new_verdicts.iter().find(|(n, _, _)| *n == name);
        diff.verdicts.push(VerdictDelta {
            detail: n.or(b).map(|(_, _, d)| d.clone()).unwrap_or_default(),
            name,
            base: b.map(|(_, p, _)| *p),
            new: n.map(|(_, p, _)| *p),
        });
    }
    diff
}

/// The JSON path of the first place where `a` and `b` differ (object keys in sorted order).
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                let here = format!("{path}/{key}");
                match y.get(key) {
                    Some(other) => {
                        if let Some(found) = first_difference(value, other, &here) {
                            return Some(found);
                        }
                    }
                    None => return Some(format!("{here} (only in the base)")),
                }
            }
            y.keys()
                .find(|key| !x.contains_key(*key))
                .map(|key| format!("{path}/{key} (only in the new report)"))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (value, other)) in x.iter().zip(y).enumerate() {
                if let Some(found) = first_difference(value, other, &format!("{path}/{i}")) {
                    return Some(found);
                }
            }
            (x.len() != y.len()).then(|| format!("{path} ({} vs {} entries)", x.len(), y.len()))
        }
        _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
    }
}

/// The comparison for people: every figure or verdict that changed, then a verdict line.
pub fn render(diff: &Diff, max_regression_pct: f64) -> String {
    let mut out = String::new();
    for note in &diff.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let changed: Vec<&FigureDelta> = diff.figures.iter().filter(|f| f.base != f.new).collect();
    if !changed.is_empty() {
        let width = changed
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>9}",
            "figure", "base", "new", "change"
        );
        for f in changed {
            let pct = match (f.base, f.new) {
                (Some(b), Some(n)) if b != 0.0 => format!("{:+.1}%", (n - b) / b.abs() * 100.0),
                (Some(_), Some(n)) => format!("{n:+.3}"),
                _ => "-".to_string(),
            };
            let mark = if f.regressed { "  REGRESSED" } else { "" };
            let _ = writeln!(
                out,
                "{:<width$}  {:>12}  {:>12}  {:>9}{mark}",
                f.name,
                show(f.base),
                show(f.new),
                pct
            );
        }
    }
    let verdict = |v: Option<bool>| match v {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "-",
    };
    for v in diff.verdicts.iter().filter(|v| v.base != v.new) {
        let _ = writeln!(
            out,
            "{}: {} -> {}{}",
            v.name,
            verdict(v.base),
            verdict(v.new),
            if v.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.detail)
            }
        );
    }
    if diff.trace_changed {
        out.push_str("trace: the event trace differs (trace_hash)\n");
    }
    if let Some(path) = &diff.first_other_difference {
        let _ = writeln!(out, "first differing field: {path}");
    }
    let regressions = diff.regressions().count();
    let failures = diff.new_failures().count();
    if !diff.changed() {
        out.push_str("no differences\n");
    } else if diff.is_worse() {
        let _ = writeln!(
            out,
            "WORSE: {regressions} figures regressed by more than {max_regression_pct}%, {failures} verdicts flipped to FAIL"
        );
    } else {
        let _ = writeln!(
            out,
            "changed, no regression beyond {max_regression_pct}% and no new failure"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(p99: f64, failover: u64, failed: u64, inv_passed: bool) -> Value {
        json!({
            "scenario": "s", "seed": 1, "passed": inv_passed, "trace_hash": format!("{p99}{failover}"),
            "ops": {"total": 100, "ok": 100 - failed, "failed": failed, "reads": 90, "writes": 10},
            "nodes": [
                {"name": "primary-1", "role": "primary", "read_share": 0.1},
                {"name": "replica-1", "role": "replica", "read_share": 0.9}
            ],
            "latency_ms": {"read": {"p50": 1.0, "p95": 2.0, "p99": p99, "max": 9.0},
                           "write": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "max": 9.0}},
            "faults": [{"kind": "crash", "target": "replica-1", "took_effect": true, "evidence": "x"}],
            "failovers": [{"node": "replica-1", "fault_at_ms": 1000, "failover_ms": failover}],
            "invariants": [{"kind": "latency", "passed": inv_passed, "detail": "d"}]
        })
    }

    #[test]
    fn a_field_no_figure_covers_still_counts_as_a_change() {
        let base = report(5.0, 100, 0, true);
        let mut new = base.clone();
        new["faults"][0]["evidence"] = json!("y");
        let d = compare(&base, &new, 10.0);
        assert!(d.changed() && !d.is_worse());
        assert_eq!(
            d.first_other_difference.as_deref(),
            Some("/faults/0/evidence: \"x\" vs \"y\"")
        );
        assert!(render(&d, 10.0).contains("first differing field: /faults/0/evidence"));
    }

    #[test]
    fn identical_reports_have_no_differences() {
        let r = report(5.0, 100, 0, true);
        let d = compare(&r, &r, 10.0);
        assert!(!d.changed() && !d.is_worse());
        assert!(render(&d, 10.0).contains("no differences"));
    }

    #[test]
    fn a_latency_regression_beyond_the_allowance_is_worse() {
        let d = compare(&report(5.0, 100, 0, true), &report(7.0, 100, 0, true), 10.0);
        assert!(d.is_worse());
        let r: Vec<&str> = d.regressions().map(|f| f.name.as_str()).collect();
        assert_eq!(r, vec!["latency_ms.read.p99"]);
        assert!(render(&d, 10.0).contains("REGRESSED"));
        // Within a 50% allowance it is only a change.
        let d = compare(&report(5.0, 100, 0, true), &report(7.0, 100, 0, true), 50.0);
        assert!(d.changed() && !d.is_worse());
    }

    #[test]
    fn improvements_and_noise_are_not_regressions() {
        assert!(!compare(&report(7.0, 300, 5, true), &report(5.0, 100, 0, true), 10.0).is_worse());
        // +0.5 ms is 50% of 1 ms but under the 1 ms floor.
        let d = compare(&report(1.0, 100, 0, true), &report(1.5, 105, 0, true), 10.0);
        assert!(!d.is_worse(), "{d:?}");
    }

    #[test]
    fn failovers_and_failed_operations_regress() {
        let d = compare(&report(5.0, 100, 0, true), &report(5.0, 400, 3, true), 10.0);
        let r: Vec<&str> = d.regressions().map(|f| f.name.as_str()).collect();
        // ops.ok fell by 3%: within the allowance; failed operations rose from none.
        assert_eq!(r, vec!["ops.failed", "failovers.replica-1@1000ms"]);
    }

    #[test]
    fn a_verdict_flipping_to_fail_is_worse_even_with_equal_figures() {
        let d = compare(
            &report(5.0, 100, 0, true),
            &report(5.0, 100, 0, false),
            10.0,
        );
        assert!(d.is_worse());
        assert_eq!(
            d.first_other_difference.as_deref(),
            Some("/invariants/0/passed: true vs false")
        );
        assert_eq!(d.new_failures().count(), 2, "the run and the invariant");
        assert!(
            !compare(
                &report(5.0, 100, 0, false),
                &report(5.0, 100, 0, true),
                10.0
            )
            .is_worse()
        );
    }
}
