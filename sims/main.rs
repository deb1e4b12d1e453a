//! The simulation suite: every shipped scenario over eight seeds with its expected outcome, runs that
//! must fail (each invariant caught on a deliberately broken router or a feature switched off), and
//! the determinism check. Reports land in `target/sim-reports/` for the independent report checker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use replisim::report::{self, Report};
use replisim::scenario::{self, Invariant, Scenario};
use replisim::sim::harness::{RunOptions, run_with};

const SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Scenario {
    let path = root().join("scenarios").join(format!("{name}.toml"));
    match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn report_dir() -> PathBuf {
    root().join("target").join("sim-reports")
}

/// Runs a scenario and writes its report; `tag` marks variants whose file is not the shipped one.
fn simulate(s: &Scenario, seed: u64, options: &RunOptions, tag: &str) -> Report {
    let outcome = match run_with(s, seed, options) {
        Ok(o) => o,
        Err(e) => panic!("{} seed {seed}: {e}", s.name),
    };
    let r = report::evaluate(s, &outcome);
    let dir = report_dir().join(tag);
    if let Err(e) = report::write(&dir, &r) {
        panic!("writing the report of {} to {}: {e}", s.name, dir.display());
    }
    r
}

fn describe(r: &Report) -> String {
    report::summary::render(
        r,
        &format!(
            "replisim run scenarios/{}.toml --seed {}",
            r.scenario, r.seed
        ),
    )
}

/// Every seed must pass every invariant.
fn passes_over_seeds(s: &Scenario) -> Vec<Report> {
    SEEDS
        .iter()
        .map(|&seed| {
            let r = simulate(s, seed, &RunOptions::default(), "");
            assert!(r.passed, "expected a pass:\n{}", describe(&r));
            assert!(
                r.faults.iter().all(|f| f.took_effect),
                "a fault was not observed:\n{}",
                describe(&r)
            );
            r
        })
        .collect()
}

fn invariant<'a>(r: &'a Report, kind: &str) -> &'a replisim::check::InvariantResult {
    match r.invariants.iter().find(|i| i.kind == kind) {
        Some(i) => i,
        None => panic!("{} has no {kind} invariant", r.scenario),
    }
}
