//! One simulated run reduced to what a search needs: its report, and what failed in it.

use crate::report::{self, Report};
use crate::scenario::Scenario;
use crate::sim;

/// The verdict of one (scenario, seed) run.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The run's full report (what `run` would write).
    pub report: Report,
}

impl Verdict {
    /// Whether every invariant held and every fault took effect.
    pub fn passed(&self) -> bool {
        self.report.passed
    }

    /// What failed, as kinds: each failed invariant's name, and `fault_took_effect` for a fault
    /// whose effect was not observed (SPEC 6.2). Shrinking keeps a scenario failing the same kind.
    pub fn failed_kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .report
            .invariants
            .iter()
            .filter(|i| !i.passed)
            .map(|i| i.kind)
            .collect();
        if self.report.faults.iter().any(|f| !f.took_effect) {
            kinds.push(FAULT_TOOK_EFFECT);
        }
        kinds
    }

    /// One line per failure: the invariant and its figure, or the fault and what was not seen.
    pub fn failure_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .report
            .invariants
            .iter()
            .filter(|i| !i.passed)
            .map(|i| format!("{}: {}", i.kind, i.detail))
            .collect();
        lines.extend(
            self.report
                .faults
                .iter()
                .filter(|f| !f.took_effect)
                .map(report::summary::fault_line),
        );
        lines
    }

    /// The worst failover of the run, in ms (0 with none).
    pub fn worst_failover_ms(&self) -> u64 {
        self.report
            .failovers
            .iter()
            .map(|f| f.failover_ms)
            .max()
            .unwrap_or(0)
    }
}

/// The failure kind of a fault that did not show its effect.
pub const FAULT_TOOK_EFFECT: &str = "fault_took_effect";

/// Runs `scenario` on `seed` in this thread and judges it. An error is a harness failure (a bug),
/// reported as text.
pub fn simulate(scenario: &Scenario, seed: u64) -> Result<Verdict, String> {
    simulate_keeping_trace(scenario, seed, false).map(|(verdict, _)| verdict)
}

/// As [`simulate`], and with `trace` also the run's event trace (`report::trace::lines`), for a
/// determinism check.
pub fn simulate_keeping_trace(
    scenario: &Scenario,
    seed: u64,
    trace: bool,
) -> Result<(Verdict, Vec<String>), String> {
    let outcome = sim::run(scenario, seed).map_err(|e| e.to_string())?;
    let lines = if trace {
        report::trace::lines(scenario, &outcome.events)
    } else {
        Vec::new()
    };
    let verdict = Verdict {
        report: report::evaluate(scenario, &outcome),
    };
    Ok((verdict, lines))
}
