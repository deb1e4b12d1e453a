//! `explore` (swarm testing): from each seed a fresh fault schedule and, where `[explore]` gives
//! ranges, node and workload values are drawn (`draw`, from `ranges`), run, and every failing draw is
//! kept as a standalone scenario that fails the same way with a plain `replisim run FILE`.
//!
//! Seeds run on a few threads; their outcomes are handed on in seed order, each as soon as every
//! earlier seed is done, so the output is the same whatever `--jobs` is.

pub mod draw;
pub mod ranges;

use std::collections::BTreeMap;

use crate::scenario::Scenario;
use crate::search::batch::run_parallel;
use crate::search::seeds::SeedRange;
use crate::search::verdict::{FAULT_TOOK_EFFECT, simulate};

/// What one seed gave.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// `seed N: <what was drawn>: PASS` (or `FAIL <kinds>`, or `ERROR <why>`).
    pub line: String,
    /// What failed: invariant names, and `fault_took_effect` for a drawn fault that showed nothing.
    pub failed_kinds: Vec<&'static str>,
    /// A failing draw: its file name (`<name>-explore-seed<N>.toml`) and text.
    pub file: Option<(String, String)>,
    /// Set when no verdict was reached (no valid draw, or the harness failed): a bug.
    pub error: Option<String>,
}

/// Draws and runs one seed.
pub fn explore_seed(base: &Scenario, seed: u64) -> SeedOutcome {
    let failed = |line: String, error: String| SeedOutcome {
        seed,
        line,
        failed_kinds: Vec::new(),
        file: None,
        error: Some(error),
    };
    let drawn = match draw::draw(base, seed) {
        Ok(drawn) => drawn,
        Err(e) => return failed(format!("seed {seed}: ERROR {e}"), e),
    };
    let head = format!("seed {seed}: {}", drawn.summary);
    let verdict = match simulate(&drawn.scenario, seed) {
        Ok(verdict) => verdict,
        Err(e) => return failed(format!("{head}: ERROR {e}"), e),
    };
    if verdict.passed() {
        return SeedOutcome {
            seed,
            line: format!("{head}: PASS"),
            failed_kinds: Vec::new(),
            file: None,
            error: None,
        };
    }
    let failed_kinds = verdict.failed_kinds();
    let invariants: Vec<&str> = failed_kinds
        .iter()
        .copied()
        .filter(|k| *k != FAULT_TOOK_EFFECT)
        .collect();
    let mut verdict_text = String::from("FAIL");
    if !invariants.is_empty() {
        verdict_text.push(' ');
        verdict_text.push_str(&invariants.join(", "));
    }
    // A drawn fault that showed nothing is a flaw of the draw (or of the evidence), not of the
    // router: said apart, with the fault.
    let unseen: Vec<String> = verdict
        .report
        .faults
        .iter()
        .filter(|f| !f.took_effect)
        .map(|f| format!("{} {} at {} ms", f.kind, f.target, f.at_ms))
        .collect();
    if !unseen.is_empty() {
        if !invariants.is_empty() {
            verdict_text.push(';');
        }
        verdict_text.push_str(&format!(
            " {FAULT_TOOK_EFFECT} (not observed: {})",
            unseen.join(", ")
        ));
    }
    let file = drawn
        .scenario
        .to_toml()
        .ok()
        .map(|text| (format!("{}.toml", drawn.scenario.name), text));
    let error = file
        .is_none()
        .then(|| format!("seed {seed}: the drawn scenario cannot be written back"));
    SeedOutcome {
        seed,
        line: format!("{head}: {verdict_text}"),
        failed_kinds,
        file,
        error,
    }
}

/// Explores every seed of `seeds` with `jobs` threads; `emit` gets each outcome in seed order, as
/// soon as it and every earlier seed are done. Returns the outcomes in seed order.
pub fn explore(
    base: &Scenario,
    seeds: SeedRange,
    jobs: usize,
    mut emit: impl FnMut(&SeedOutcome),
) -> Vec<SeedOutcome> {
    let list: Vec<u64> = seeds.iter().collect();
    let mut waiting: BTreeMap<usize, SeedOutcome> = BTreeMap::new();
    let mut next = 0;
    run_parallel(
        jobs,
        &list,
        |&seed| explore_seed(base, seed),
        |index, outcome| {
            waiting.insert(index, outcome.clone());
            while let Some(ready) = waiting.remove(&next) {
                emit(&ready);
                next += 1;
            }
        },
    )
}

/// The closing line: seeds, failures by kind, files written.
pub fn summary_line(outcomes: &[SeedOutcome], written: usize, dir: &str) -> String {
    let failed = outcomes
        .iter()
        .filter(|o| !o.failed_kinds.is_empty())
        .count();
    let errors = outcomes.iter().filter(|o| o.error.is_some()).count();
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for kind in outcomes.iter().flat_map(|o| o.failed_kinds.iter()) {
        *by_kind.entry(kind).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let kinds = if kinds.is_empty() {
        String::new()
    } else {
        format!(" ({})", kinds.join(", "))
    };
    let errors = if errors > 0 {
        format!(", {errors} errors")
    } else {
        String::new()
    };
    format!(
        "explored {} seeds: {failed} failed{kinds}{errors}; {written} files written to {dir}",
        outcomes.len()
    )
}
